"""The GitHub stand-in's second host and its Git LFS batch API.

Real GitHub hands out LFS objects, raw `download_url`s and redirected downloads from other
hosts (media.githubusercontent.com, raw.githubusercontent.com, S3) that know nothing of the
API token: they take a short-lived token of their own. `ObjectHost` plays all of them on
127.0.0.2, so a client that forwards `Authorization` across hosts, ignores the batch
answer's `header`, or reuses an expired href is caught. Batch API: git-lfs docs/api/batch.md.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from .gitdata import Content, Repo, pointer_text
from .server import Fault, Request, Response, StandIn

LFS_JSON = "application/vnd.git-lfs+json"
_OID_CHARS = frozenset("0123456789abcdef")


@dataclass
class Grant:
    route: str  # lfs_object, raw or redirected
    path: str  # the exact URL path the token was issued for
    content: Content
    expires: float
    uses: int | None  # None: any number until it expires
    oid: str | None = None


def _s3_error(status: int, code: str, message: str) -> Response:
    # The object stores behind these hosts answer like S3: XML, not GitHub's JSON.
    body = f"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code>" \
           f"<Message>{message}</Message></Error>"
    return Response(status, body.encode(), {"Content-Type": "application/xml"})


def lfs_error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    body = {"message": message, "documentation_url": "https://docs.github.com/repositories/"
            "working-with-files/managing-large-files"}
    return Response.json(body, status, {"Content-Type": LFS_JSON, **(headers or {})})


class ObjectHost(StandIn):
    """Serves LFS objects, raw download URLs and redirect targets against one-off tokens.

    Routes: `lfs_object` (GET /lfs/{o}/{r}/{oid}), `raw` (GET /raw/{o}/{r}/{commit}/{path},
    a contents `download_url`: single use), `redirected` (GET /blob/{o}/{r}/{sha}, where the
    blob endpoint redirects when redirects are on). `received` keeps (route, headers) of
    every request so a test can assert that no GitHub token arrived here.
    """

    name = "github-objects"

    def __init__(self, host: str = "127.0.0.2", port: int = 0, *,
                 clock: Callable[[], float] = time.time, lfs_ttl: int = 3600,
                 token_in: str = "header", batch_limit: int = 100) -> None:
        super().__init__(host, port)
        if token_in not in ("header", "query"):
            raise ValueError("token_in is 'header' (RemoteAuth) or 'query' (signed URL)")
        self.clock = clock
        self.lfs_ttl = lfs_ttl
        self.token_in = token_in
        self.batch_limit = batch_limit
        self.grants: dict[str, Grant] = {}
        self._issued = 0
        self.received: list[tuple[str, dict[str, str]]] = []
        for route in ("lfs_object", "raw", "redirected"):
            prefix = {"lfs_object": "lfs", "raw": "raw", "redirected": "blob"}[route]
            self.route("GET", rf"/{prefix}/.+", route, self._serve)

    # -- tokens -------------------------------------------------------------------------------
    def issue(self, route: str, path: str, content: Content, *, ttl: float,
              uses: int | None = None, oid: str | None = None) -> str:
        token = secrets.token_urlsafe(24)
        with self.lock:
            self.grants[token] = Grant(route, path, content, self.clock() + ttl, uses, oid)
            self._issued += 1
            if self._issued % 10_000 == 0:  # a long benchmark must not pile up dead tokens
                now = self.clock()
                self.grants = {k: g for k, g in self.grants.items() if g.expires > now}
        return token

    def expire_all(self) -> None:
        """Every token issued so far stops working (as after `expires_in`)."""
        with self.lock:
            for grant in self.grants.values():
                grant.expires = 0.0

    def authorizations(self, route: str) -> list[str | None]:
        """The Authorization header (or None) of each request `route` received."""
        with self.lock:
            return [next((v for k, v in h.items() if k.lower() == "authorization"), None)
                    for r, h in self.received if r == route]

    def _token(self, request: Request) -> tuple[str | None, bool]:
        """The token and whether it came in the query string."""
        query = request.arg("token")
        if query:
            return query, True
        scheme, _, value = (request.header("Authorization") or "").partition(" ")
        return (value.strip(), False) if scheme == "RemoteAuth" else (None, False)

    def _grant(self, request: Request, *, consume: bool) -> Grant | Response:
        token, in_query = self._token(request)
        if in_query and request.header("Authorization") is not None:
            # A signed URL plus an Authorization header is refused, as S3 does; here that
            # header can only be a credential forwarded from another host.
            return _s3_error(400, "InvalidArgument", "Only one auth mechanism allowed")
        with self.lock:
            grant = self.grants.get(token or "")
            if grant is None or grant.route != request.route or grant.path != request.raw_path:
                return _s3_error(403, "AccessDenied", "Access Denied")
            if self.clock() >= grant.expires:
                return _s3_error(403, "AccessDenied", "Request has expired")
            if consume and grant.uses is not None:
                grant.uses -= 1
                if grant.uses <= 0:
                    del self.grants[token or ""]
        return grant

    # -- serving ------------------------------------------------------------------------------
    def _serve(self, request: Request) -> Response:
        with self.lock:
            self.received.append((request.route, dict(request.headers.items())))
        grant = self._grant(request, consume=True)
        if isinstance(grant, Response):
            return grant
        content = grant.content
        spec = request.header("Range")
        start, end = 0, content.size
        if spec:  # git-lfs resumes a broken download with a byte range
            bounds = _byte_range(spec, content.size)
            if bounds is None:
                return Response(416, b"", {"Content-Range": f"bytes */{content.size}"})
            start, end = bounds
        headers = {"Content-Type": "application/octet-stream", "Accept-Ranges": "bytes"}
        if spec:
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{content.size}"
        return Response(206 if spec else 200, content.chunks(start, end), headers, end - start)

    def fault_response(self, fault: Fault, request: Request) -> Response | None:
        if fault.kind != "lfs_pointer":
            return None
        grant = self._grant(request, consume=False)
        if isinstance(grant, Response):
            return None
        text = pointer_text(grant.oid or grant.content.sha256(), grant.content.size)
        return Response(200, text, {"Content-Type": "application/octet-stream"})

    # -- the batch API (served on the GitHub host, answered here) -----------------------------
    def batch(self, repo: Repo, request: Request) -> Response:
        if LFS_JSON not in (request.header("Accept") or ""):
            # What github.com answers without the Git LFS Accept header.
            return Response.json({"message": "Not Acceptable",
                                  "documentation_url": "https://support.github.com/contact"}, 406)
        if not (request.header("Content-Type") or "").startswith(LFS_JSON):
            return lfs_error(415, f"Content-Type must be {LFS_JSON}")
        try:
            body = request.json()
        except ValueError:
            return lfs_error(400, "Invalid JSON in request body")
        problem = _invalid(body)
        if problem:
            return lfs_error(422, problem)
        if body["operation"] == "upload":
            return lfs_error(403, "You do not have write access to this repository")
        if len(body["objects"]) > self.batch_limit:
            return lfs_error(413, f"Too many objects: at most {self.batch_limit} a batch")
        answer = [self._action(repo, item["oid"], item["size"]) for item in body["objects"]]
        return Response.json({"transfer": "basic", "objects": answer},
                             headers={"Content-Type": LFS_JSON})

    def _action(self, repo: Repo, oid: str, size: int) -> dict[str, Any]:
        item: dict[str, Any] = {"oid": oid, "size": size}
        content = repo.lfs.get(oid)
        if content is None:
            return {**item, "error": {"code": 404, "message": "Object does not exist"}}
        if content.size != size:
            return {**item, "error": {"code": 422, "message": "Object size does not match"}}
        path = f"/lfs/{quote(repo.full_name)}/{oid}"
        token = self.issue("lfs_object", path, content, ttl=self.lfs_ttl, oid=oid)
        expires = datetime.fromtimestamp(self.clock() + self.lfs_ttl, UTC)
        action: dict[str, Any] = {"href": self.url + path, "expires_in": self.lfs_ttl,
                                  "expires_at": expires.strftime("%Y-%m-%dT%H:%M:%SZ")}
        if self.token_in == "query":
            action["href"] += f"?token={token}"
        else:
            action["header"] = {"Authorization": f"RemoteAuth {token}"}
        return {**item, "authenticated": True, "actions": {"download": action}}


def _invalid(body: Any) -> str | None:
    """Why a batch request breaks the spec's schema, or None."""
    if not isinstance(body, dict):
        return "Request body must be a JSON object"
    if body.get("operation") not in ("download", "upload"):
        return "operation must be 'download' or 'upload'"
    transfers = body.get("transfers", ["basic"])
    if not isinstance(transfers, list) or "basic" not in transfers:
        return "Only the 'basic' transfer adapter is supported"
    objects = body.get("objects")
    if not isinstance(objects, list):
        return "objects must be an array"
    for item in objects:
        if not isinstance(item, dict):
            return "each object must be a JSON object"
        oid, size = item.get("oid"), item.get("size")
        if not isinstance(oid, str) or len(oid) != 64 or not set(oid) <= _OID_CHARS:
            return f"Invalid oid: {oid!r}"
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            return f"Invalid size for {oid}: {size!r}"
    return None


def _byte_range(spec: str, size: int) -> tuple[int, int] | None:
    """`bytes=a-b` or `bytes=a-` as (start, end exclusive), or None when unsatisfiable."""
    match = re.fullmatch(r"bytes=(\d+)-(\d*)", spec.strip())
    if match is None or int(match[1]) >= size:
        return None
    end = min(int(match[2]) + 1, size) if match[2] else size
    return (int(match[1]), end) if end > int(match[1]) else None
