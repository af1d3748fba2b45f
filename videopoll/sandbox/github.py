"""A GitHub REST API (2022-11-28) stand-in as strict as the real one (DESIGN 8.2).

Routes (names for `counts`): `commits`, `ref` (git/ref/...), `refs` (git/refs/...), `trees`,
`blobs`, `contents` (answered in githubapi.py), `rate_limit`, and `lfs_batch`
({o}/{r}.git/info/lfs/objects/batch, answered in lfs.py); `lfs_object`, `raw` and
`redirected` live on `objects`, the second host. This module is the gate every REST request
passes (User-Agent, API version, credentials, rate limit, visibility), the scripting tests
use, and the GitHub-specific faults.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import functools
import itertools
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from urllib.parse import unquote

from . import githubapi
from .gitdata import Repo, pointer_text, prepare
from .githubapi import API_VERSIONS, RATE_DOCS, UA_REQUIRED, error
from .lfs import ObjectHost, lfs_error
from .server import Fault, Request, Response, StandIn

_REPO = r"/repos/(?P<owner>[^/]+)/(?P<repo>[^/]+)"


class Budget:
    """One primary rate-limit window (x-ratelimit-*)."""

    def __init__(self, limit: int, now: float, resource: str = "core") -> None:
        self.limit, self.remaining, self.reset = limit, limit, int(now) + 3600
        self.resource, self.status = resource, 403

    def take(self, now: float) -> bool:
        if now >= self.reset:  # a new window
            self.remaining, self.reset = self.limit, int(now) + 3600
        if self.remaining <= 0:
            return False
        self.remaining -= 1
        return True

    def headers(self) -> dict[str, str]:
        return {"x-ratelimit-limit": str(self.limit), "x-ratelimit-remaining": str(self.remaining),
                "x-ratelimit-used": str(self.limit - self.remaining),
                "x-ratelimit-reset": str(self.reset), "x-ratelimit-resource": self.resource}


class GitHubStandIn(StandIn):
    """GitHub's REST API and Git LFS batch API on 127.0.0.1, objects on 127.0.0.2.

    `tokens` maps each valid token to the repositories ("owner/name") it may read; public
    repositories are readable by any valid token and anonymously. The LFS base URL is this
    stand-in's own `url` (DESIGN 6.1).
    """

    name = "github"

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *,
                 tokens: Mapping[str, Iterable[str]] | None = None,
                 objects_host: str = "127.0.0.2", rate_limit: int = 5000,
                 anonymous_limit: int = 60, clock: Callable[[], float] = time.time,
                 tree_limit: int = 100_000, tree_bytes: int = 7 * 1024 * 1024,
                 redirect: int | None = None, lfs_ttl: int = 3600, lfs_token_in: str = "header",
                 lfs_bearer: bool = False, raw_ttl: int = 600, latency: float = 0.0,
                 bandwidth: float | None = None) -> None:
        super().__init__(host, port, latency=latency, bandwidth=bandwidth)
        self.clock = clock
        self.tokens: dict[str, set[str]] = {t: {r.lower() for r in repos}
                                            for t, repos in (tokens or {}).items()}
        self.repos: dict[str, Repo] = {}
        self.budget = Budget(rate_limit, clock())
        self.anonymous = Budget(anonymous_limit, clock())
        self.tree_limit, self.tree_bytes = tree_limit, tree_bytes
        self.redirect = redirect  # 301/302/307: raw blob and contents answers move to `objects`
        self.lfs_bearer = lfs_bearer  # stand-in choice: off, as GitHub documents only Basic
        self.raw_ttl = raw_ttl
        self.not_modified: Counter[str] = Counter()  # 304 answers by route
        self.objects = ObjectHost(objects_host, clock=clock, lfs_ttl=lfs_ttl,
                                  token_in=lfs_token_in)
        self._ids = itertools.count(1)  # next() on a count is atomic under the GIL
        for name, pattern, handler in githubapi.ROUTES:
            self.route("GET", _REPO + pattern, name, self._api(name, handler))
        self.route("GET", "/rate_limit", "rate_limit", self._rate_limit)
        self.route("POST", r"/(?P<owner>[^/]+)/(?P<repo>[^/]+?)\.git/info/lfs/objects/batch",
                   "lfs_batch", self._lfs_batch)

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> GitHubStandIn:
        self.objects.start()
        super().start()
        return self

    def stop(self) -> None:
        # serve_forever sees a shutdown only when its 0.5 s select() times out or a connection
        # arrives: stopping both hosts at once and poking them takes milliseconds, not a second.
        stops = [threading.Thread(target=stop) for stop in (super().stop, self.objects.stop)]
        for thread in stops:
            thread.start()
        while any(thread.is_alive() for thread in stops):
            for host, port in ((self.host, self.port), (self.objects.host, self.objects.port)):
                with contextlib.suppress(OSError):
                    socket.create_connection((host, port), timeout=0.05).close()
            for thread in stops:
                thread.join(0.01)

    def __enter__(self) -> GitHubStandIn:
        return self.start()

    @property
    def lfs_url(self) -> str:
        return self.url

    # -- scripting ------------------------------------------------------------------------------
    def add_repo(self, full_name: str, *, private: bool = True, default_branch: str = "main",
                 empty: bool = False) -> Repo:
        """A repository; unless `empty`, with a first commit holding a README."""
        with self.lock:
            repo = self.repos[full_name.lower()] = Repo(full_name, private, default_branch)
            if not empty:
                readme = prepare("README.md", b"# sandbox\n", False)
                repo.put([readme], default_branch, int(self.clock()))
            return repo

    def grant(self, token: str, repo: str) -> None:
        with self.lock:
            self.tokens.setdefault(token, set()).add(repo.lower())

    def put_file(self, repo: str, path: str, data: bytes, *, branch: str | None = None,
                 lfs: bool | None = None) -> str:
        """Commits one file; returns the blob sha the tree shows (the pointer's, for LFS)."""
        return self.put_files(repo, {path: data}, branch=branch, lfs=lfs)[path]

    def put_files(self, repo: str, files: Mapping[str, bytes | Path], *,
                  branch: str | None = None, lfs: bool | None = None) -> dict[str, str]:
        """Commits many files at once (one commit): bytes, or paths served from disk.

        Keys are the paths given; the answer maps each to the blob sha the tree shows. Every
        call is a new commit with a new head SHA; `branch` defaults to the default branch.
        """
        prepared = {path: prepare(path, source, lfs) for path, source in files.items()}
        with self.lock:
            target = self._repo(repo)
            shas = target.put(prepared.values(), branch or target.default_branch,
                              int(self.clock()))
        return {path: shas[item.path] for path, item in prepared.items()}

    def put_file_from_path(self, repo: str, path: str, src: Path, *, branch: str | None = None,
                           lfs: bool | None = None) -> str:
        """Like put_file, for huge files: hashed in one streaming read, served from disk."""
        return self.put_files(repo, {path: src}, branch=branch, lfs=lfs)[path]

    def remove_file(self, repo: str, path: str, *, branch: str | None = None) -> str:
        """Commits the file's removal; returns the new head SHA."""
        with self.lock:
            target = self._repo(repo)
            return target.commit({path.strip("/"): None}, branch or target.default_branch,
                                 int(self.clock()))

    def head(self, repo: str, branch: str | None = None) -> str:
        with self.lock:
            target = self._repo(repo)
            return target.branches[branch or target.default_branch]

    def set_rate_limit(self, remaining: int, *, reset: float | None = None,
                       limit: int | None = None, status: int = 403) -> None:
        """The token budget from now on; `status` is 403 or 429 once it is used up."""
        with self.lock:
            budget = self.budget
            budget.limit, budget.remaining, budget.status = limit or budget.limit, remaining, status
            budget.reset = int(reset if reset is not None else self.clock() + 3600)

    def _repo(self, name: str) -> Repo:
        return self.repos[name.lower()]

    # -- the REST gate --------------------------------------------------------------------------
    def _identity(self, request: Request) -> str | None:
        """"" anonymous, the token, or None for credentials GitHub would call bad."""
        header = request.header("Authorization")
        if header is None:
            return ""
        scheme, _, value = header.strip().partition(" ")
        value = value.strip()
        if scheme.lower() == "basic":  # REST accepts a token as the Basic password too
            try:
                value = base64.b64decode(value, validate=True).decode().partition(":")[2]
            except (binascii.Error, UnicodeDecodeError):
                return None
        elif scheme.lower() not in ("bearer", "token"):
            return None
        return value if value in self.tokens else None

    def _visible(self, owner: str, name: str, token: str) -> Repo | None:
        key = f"{unquote(owner)}/{unquote(name)}".lower()
        repo = self.repos.get(key)
        if repo is None or (repo.private and key not in self.tokens.get(token, set())):
            return None  # a private repository the token cannot see is a 404, never a 403
        return repo

    def _api(self, route: str, handler: githubapi.Handler) -> Callable[[Request], Response]:
        def gate(request: Request) -> Response:
            if not (request.header("User-Agent") or "").strip():
                return Response(403, UA_REQUIRED, {"Content-Type": "text/html"})
            version = request.header("X-GitHub-Api-Version")
            if version is not None and version not in API_VERSIONS:
                return error(400, f"Unsupported 'X-GitHub-Api-Version': '{version}'",
                             "https://docs.github.com/rest/overview/api-versions")
            with self.lock:
                token = self._identity(request)
                budget = self.budget if token else self.anonymous
                if token is None:
                    return error(401, "Bad credentials", headers=budget.headers())
                if not budget.take(self.clock()):
                    who = "user ID 1" if token else "127.0.0.1"
                    return error(budget.status, f"API rate limit exceeded for {who}.",
                                 RATE_DOCS, headers=self._common(budget))
                repo = self._visible(request.params["owner"], request.params["repo"], token)
                response = (handler(self, request, repo) if repo is not None
                            else error(404, "Not Found"))
                if response.status == 304:
                    self.not_modified[route] += 1
                    if token:  # an authenticated 304 costs no rate limit
                        budget.remaining += 1
                response.headers.update(self._common(budget))
            return response
        return gate

    def _common(self, budget: Budget) -> dict[str, str]:
        return {**budget.headers(), "X-GitHub-Api-Version-Selected": "2022-11-28",
                "X-GitHub-Request-Id": f"{next(self._ids):08X}:SANDBOX",
                "Vary": "Accept, Authorization, Cookie",
                "Cache-Control": "private, max-age=60, s-maxage=60"}

    def _rate_limit(self, request: Request) -> Response:
        # GET /rate_limit is free (it does not count against the budget).
        with self.lock:
            token = self._identity(request)
            if token is None:
                return error(401, "Bad credentials")
            budget = self.budget if token else self.anonymous
            core = {"limit": budget.limit, "remaining": budget.remaining,
                    "used": budget.limit - budget.remaining, "reset": budget.reset}
            return Response.json({"resources": {"core": core}, "rate": core},
                                 headers=self._common(budget))

    def not_found(self, request: Request) -> Response:
        return error(404, "Not Found")

    # -- Git LFS --------------------------------------------------------------------------------
    def _lfs_batch(self, request: Request) -> Response:
        scheme, _, value = (request.header("Authorization") or "").strip().partition(" ")
        token: str | None = ""
        if scheme.lower() == "basic":  # what git-lfs sends: any user name, token as password
            token = self._identity(request)
        elif scheme and (scheme.lower() not in ("bearer", "token") or not self.lfs_bearer):
            token = ""  # an unsupported scheme counts as no credentials
        elif scheme:
            token = value.strip() if value.strip() in self.tokens else None
        if token is None:
            return lfs_error(401, "Bad credentials", {"LFS-Authenticate": 'Basic realm="GitHub"'})
        with self.lock:
            repo = self._visible(request.params["owner"], request.params["repo"], token)
            if repo is None and not token:
                return lfs_error(401, "Must authenticate to access this API.",
                                 {"LFS-Authenticate": 'Basic realm="GitHub"'})
            if repo is None:
                return lfs_error(404, "Repository not found.")
        return self.objects.batch(repo, request)

    # -- GitHub-specific faults -----------------------------------------------------------------
    def fault_response(self, fault: Fault, request: Request) -> Response | None:
        status = fault.status if fault.status in (403, 429) else 403
        if fault.kind == "rate_limit":  # primary: the budget is used up until reset
            reset = int(self.clock() + (fault.delay or 60))
            headers = {**self.budget.headers(), "x-ratelimit-remaining": "0",
                       "x-ratelimit-used": str(self.budget.limit), "x-ratelimit-reset": str(reset),
                       **fault.headers}
            return error(status, "API rate limit exceeded for user ID 1.", RATE_DOCS,
                         headers=headers)
        if fault.kind == "secondary_rate_limit":  # budget left, but slow down
            headers = {**self.budget.headers(), **fault.headers}
            if fault.delay:
                headers["retry-after"] = str(int(fault.delay))
            message = ("You have exceeded a secondary rate limit. Please wait a few minutes "
                       "before you try again.")
            return error(status, message, RATE_DOCS + "#about-secondary-rate-limits", headers)
        if fault.kind == "wrong_bytes" and request.route in ("blobs", "contents"):
            # The route's own answer through the usual gate, with the file's bytes changed.
            handler = githubapi.blobs if request.route == "blobs" else githubapi.contents
            return self._api(request.route, functools.partial(handler, damage=True))(request)
        if fault.kind == "lfs_pointer":
            with self.lock:
                content = githubapi.requested_content(self, request)
            if content is not None:
                text = pointer_text(content.sha256(), content.size)
                return Response(200, text, {"Content-Type": "application/octet-stream"})
        return None

