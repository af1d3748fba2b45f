"""ArtifactSource over the GitHub REST API (DESIGN 8.2).

A pass that looks for at most BY_PATH_MAX files asks for each by path
(`contents/{path}?ref=` with the object media type, concurrently): a file up to 1 MB comes
inline with its blob SHA and size, so finding AND reading it cost that one request (the bytes
are kept until `open()` serves them, then dropped, and the engine verifies them like any
download); a larger one names its blob SHA, downloaded as below. A 404 is left to the listing
below, the one answer that tells "not pushed yet" from "a repository we cannot see".

A pass that looks for more costs one conditional request: the branch's whole tree by ref name
(`git/trees/{ref}?recursive=1` with If-None-Match), answered 304 (free of rate limit) while
the tree is unchanged; a 200 is the new listing itself, so a moved branch costs no second
round trip. The ETag and listing persist in the store (`videopoll_state`) so a cron run in a
fresh process still gets its 304. Files come by blob SHA (immutable, so never a newer
commit's bytes half-way) or, for Git LFS pointers, through the LFS batch API from whatever
host it names, without our GitHub token.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import re
from collections.abc import AsyncIterator, Coroutine, Sequence
from typing import Any, TypeVar
from urllib.parse import quote

import httpx

from ..errors import ArtifactMissing, ProtocolError, RequestRejected, ShortBody
from ..model import ArtifactRef, Service, git_blob_hash
from ..ports import StateCache
from .http import send
from .retry import idempotent

SERVICE = Service.GITHUB
API_VERSION = "2022-11-28"
POINTER_MAX = 1024  # an LFS pointer is ~130 bytes; no MP4 is this small
_POINTER = re.compile(
    rb"version https://git-lfs\.github\.com/spec/v1\n"
    rb"oid sha256:(?P<oid>[0-9a-f]{64})\n"
    rb"size (?P<size>[0-9]+)\n?\Z"
)
_SHA = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")  # SHA-1, or SHA-256 repositories
# Up to this many files a pass asks for by path, one contents request each; beyond it, the
# tree listing. Why 2: k files by path cost at worst 2k requests (files over 1 MB need their
# blob too) against 1 + k for the listing and the downloads, and DESIGN allows at most two
# GitHub requests beyond the original system's one per video (k = 2: 4 against 3). A finished
# row whose file is not pushed yet costs its 404 and then the listing (a free 304 once
# cached), which alone can tell it from a repository the token cannot see.
BY_PATH_MAX = 2
OBJECT = "application/vnd.github.object+json"  # a file or a directory, always one object
PIECE = 1024 * 1024  # kept bytes are handed out in pieces of this size, like a download


def github_headers(token: str) -> dict[str, str]:
    return {
        "Authorization": f"Bearer {token}",
        "Accept": "application/vnd.github+json",
        "X-GitHub-Api-Version": API_VERSION,
    }


def repeatable(request: httpx.Request) -> bool:
    """GitHub requests safe to send twice: reads, and the LFS batch API's download request
    (a POST that only hands out links)."""
    return idempotent(request) or request.url.path.endswith("/info/lfs/objects/batch")


def json_of(response: httpx.Response, what: str) -> Any:
    try:
        return response.json()
    except ValueError:
        raise ProtocolError(f"github: {what} answer is not JSON", service=SERVICE) from None


def parse_pointer(data: bytes) -> tuple[str, int] | None:
    match = _POINTER.match(data)
    return (match["oid"].decode(), int(match["size"])) if match else None


class GitHubArtifacts:
    """Finds and streams artifacts in one repository folder on one branch."""

    def __init__(self, api: httpx.AsyncClient, downloads: httpx.AsyncClient, *, repo: str,
                 ref: str, directory: str, lfs_url: str, token: str, state: StateCache) -> None:
        self.api = api
        self.downloads = downloads  # no GitHub token: LFS hrefs live on other hosts
        self.repo = repo
        self.ref = ref
        self.directory = directory.strip("/")
        self.lfs_url = lfs_url.rstrip("/")
        self._lfs_auth = "Basic " + base64.b64encode(f"x-access-token:{token}".encode()).decode()
        self.state = state
        self._key = f"github:{repo}@{ref}:{self.directory}"
        # Bytes that came inline with a contents answer, by blob sha, until `open()` serves
        # them; each `find()` starts afresh, so a row that was not claimed keeps none.
        self._inline: dict[str, bytes] = {}

    async def _get(self, url: str, *, what: str, **headers: str) -> httpx.Response:
        request = self.api.build_request("GET", url, headers=headers)
        return await send(self.api, request, service=SERVICE, what=what)

    # -- by path -----------------------------------------------------------------------------
    async def find(self, paths: Sequence[str]) -> dict[str, ArtifactRef | None]:
        self._inline.clear()
        wanted = list(dict.fromkeys(paths))
        if len(wanted) <= BY_PATH_MAX:
            found = await _all([self._by_path(path) for path in wanted])
            refs = {path: ref for path, ref in zip(wanted, found, strict=True)
                    if not isinstance(ref, _Listed)}
            if len(refs) == len(wanted):
                return refs
            # The listing decides every path then, so that a row's fate never depends on how
            # many others finished; bytes already in hand for the blob it names stay usable.
            listed = await self._listed(wanted, list(refs.values()))
            same = {r.sha for p, r in refs.items() if r is not None and listed.get(p) == r}
            self._inline = {sha: data for sha, data in self._inline.items() if sha in same}
            return listed
        return await self._listed(wanted)

    async def _by_path(self, path: str) -> ArtifactRef | None | _Listed:
        """The file at `path` from its contents answer; _LISTED when only the listing can
        say what the tree holds there the way it says it for every other pass."""
        quoted = "/".join(quote(part, safe="") for part in path.split("/"))
        try:
            response = await self._get(
                f"/repos/{self.repo}/contents/{quoted}?ref={quote(self.ref, safe='')}",
                what="contents", Accept=OBJECT)
        except RequestRejected as exc:
            if exc.status == 404 and "No commit found" in exc.message:  # the ref is unknown
                raise self._not_found(exc) from None
            if exc.status == 404:
                # Not pushed yet — or a repository the token cannot see (or an empty one),
                # which answers a path the same 404. Only the listing tells them apart, and
                # telling them apart matters: a file missing past VIDEOPOLL_ARTIFACT_GRACE
                # fails its video, a repository we cannot see must stop the pass instead.
                # (A pass over a file not pushed yet costs this 404 and the listing's 304.)
                return _LISTED
            raise
        body = json_of(response, "contents")
        if isinstance(body, list) or (isinstance(body, dict)
                                      and body.get("type") in ("dir", "symlink", "submodule")):
            # A directory, submodule or symlink: the listing skips the first two and lists a
            # symlink as the blob of its target's name (a file that fails as no MP4), while
            # GitHub answers by path with the target's own content. Rare enough to pay the
            # listing for, so that a row's fate never depends on how many others finished.
            return _LISTED
        if not (isinstance(body, dict) and body.get("type") == "file"
                and isinstance(body.get("sha"), str)
                and _SHA.fullmatch(body["sha"]) and _is_size(body.get("size"))
                and body.get("encoding") in ("base64", "none")
                and isinstance(body.get("content"), str)):
            raise ProtocolError(f"github: contents answer for {path} is malformed: "
                                f"{body!r:.200}", service=SERVICE)
        if body.get("path") != path:  # a symlink GitHub followed to a file elsewhere
            return _LISTED
        sha, size = body["sha"], body["size"]
        if body["encoding"] == "none":  # 1-100 MB: no content inline; `open()` fetches it
            return ArtifactRef(path, sha, size)
        try:
            data = base64.b64decode(body["content"].replace("\n", ""), validate=True)
        except (binascii.Error, ValueError):
            raise ProtocolError(f"github: contents answer for {path} has no valid base64",
                                service=SERVICE) from None
        if size <= POINTER_MAX and (pointer := parse_pointer(data)) is not None:
            # A pointer names the bytes to fetch and is kept by blob SHA for good: it must be
            # the blob the answer names (a video's own bytes are verified later instead).
            blob = git_blob_hash(len(data), sha)
            blob.update(data)
            if blob.hexdigest() != sha:
                raise ProtocolError(f"github: contents answer for {path} does not match its "
                                    "blob SHA", service=SERVICE)
            return ArtifactRef(path, sha, pointer[1], lfs_oid=pointer[0])
        # Not checked here: `verified()` checks these bytes against size and sha as it checks
        # any download, and a mismatch is counted and retried (then by blob) the same way.
        self._inline[sha] = data
        return ArtifactRef(path, sha, size)

    # -- listing -----------------------------------------------------------------------------
    async def _listed(self, paths: Sequence[str],
                      known: Sequence[ArtifactRef | None] = ()) -> dict[str, ArtifactRef | None]:
        """The listing's refs for `paths`; `known` are refs already read by path, whose LFS
        pointers need no second reading."""
        listing, pointers = await self.listing()
        fresh = {r.sha: (r.lfs_oid, r.size) for r in known if r is not None and r.lfs_oid}
        learned = bool(fresh.keys() - pointers.keys())
        pointers.update(fresh)
        found: dict[str, ArtifactRef | None] = {}
        for path in paths:
            entry = listing.get(path)
            if entry is None:
                found[path] = None
                continue
            sha, size = entry
            if size <= POINTER_MAX:
                pointer = pointers.get(sha)
                if pointer is None and (pointer := await self._pointer(sha)) is not None:
                    pointers[sha], learned = pointer, True
                if pointer is not None:
                    found[path] = ArtifactRef(path, sha, pointer[1], lfs_oid=pointer[0])
                    continue
            found[path] = ArtifactRef(path, sha, size)
        if learned:  # pointers are immutable by blob sha: parse each one once, ever
            await self._save(pointers=pointers)
        return found

    async def listing(self) -> tuple[dict[str, tuple[str, int]], dict[str, tuple[str, int]]]:
        """{path: (blob sha, size)} under the folder, and known LFS pointers by blob sha."""
        cached = await self.state.get_state(self._key) or {}
        listing = {p: (e[0], int(e[1])) for p, e in cached.get("listing", {}).items()}
        pointers = {s: (p[0], int(p[1])) for s, p in cached.get("pointers", {}).items()}
        headers = {}
        if cached.get("etag") and "listing" in cached:
            headers["If-None-Match"] = cached["etag"]
        # The tree by ref name: one request both asks "has it changed?" and, when it has,
        # answers with the new listing (GitHub takes a branch or tag name as tree_sha).
        try:
            response = await self._get(
                f"/repos/{self.repo}/git/trees/{quote(self.ref, safe='/')}?recursive=1",
                what="tree", **headers)
        except RequestRejected as exc:
            if exc.status == 409:  # an empty repository: nothing committed yet
                return {}, pointers
            raise self._not_found(exc) from None
        if response.status_code == 304:
            if "If-None-Match" not in headers:  # nothing of ours to reuse
                raise ProtocolError("github: tree answered 304 to an unconditional request",
                                    service=SERVICE)
            return listing, pointers
        listing = await self._list_tree(_tree_body(response))
        # Only now, with the whole listing parsed, do etag and listing change, together;
        # "head" was kept by versions that asked for the head commit first.
        base = {k: v for k, v in cached.items() if k != "head"}
        await self._save(base, listing=listing, pointers=pointers,
                         etag=response.headers.get("etag"))
        return listing, pointers

    async def _save(self, base: dict[str, Any] | None = None, **changes: Any) -> None:
        value = dict(base) if base is not None else await self.state.get_state(self._key) or {}
        for key, item in changes.items():
            value[key] = ({k: list(v) for k, v in item.items()} if isinstance(item, dict)
                          else item)
        await self.state.set_state(self._key, value)

    async def _tree(self, sha: str, recursive: bool) -> dict[str, Any]:
        # Any value of `recursive` turns recursion on, so it is omitted to turn it off.
        suffix = "?recursive=1" if recursive else ""
        return _tree_body(await self._get(f"/repos/{self.repo}/git/trees/{sha}{suffix}",
                                          what="tree"))

    async def _list_tree(self, root: dict[str, Any]) -> dict[str, tuple[str, int]]:
        """The folder's blobs from the root answer; when that is truncated (over 100,000
        entries or 7 MB), from the folder's own tree, or level by level if even that is."""
        prefix = self.directory + "/"
        if not root.get("truncated"):
            return _blobs(root["tree"], "", prefix)
        # Descend only by SHAs from this same answer (the root tree's own, and the sub-trees
        # it did list), never by the ref again: the branch may move meanwhile, and the
        # listing must be of the one commit whose ETag is stored.
        known = {e["path"]: e["sha"] for e in root["tree"] if e["type"] == "tree"}
        sha, path = root["sha"], ""
        for part in self.directory.split("/"):
            path = f"{path}/{part}" if path else part
            if path in known:
                sha = known[path]
                continue
            level = await self._tree(sha, recursive=False)
            sub = [e for e in level["tree"] if e["path"] == part and e["type"] == "tree"]
            if not sub:
                return {}
            sha = sub[0]["sha"]
        body = await self._tree(sha, recursive=True)
        if not body.get("truncated"):
            return _blobs(body["tree"], prefix, prefix)
        listing: dict[str, tuple[str, int]] = {}
        queue = [(sha, prefix)]
        while queue:
            sha, base = queue.pop()
            level = await self._tree(sha, recursive=False)
            queue.extend((e["sha"], f"{base}{e['path']}/") for e in level["tree"]
                         if e["type"] == "tree")
            listing.update(_blobs(level["tree"], base, prefix))
        return listing

    def _not_found(self, exc: RequestRejected) -> RequestRejected:
        # 404: no such repo, or the token cannot see it; 422: "No commit found" for the ref.
        if exc.status in (404, 422):
            return RequestRejected(
                f"github: {self.repo}@{self.ref} not found (or the token cannot see it)",
                service=SERVICE, status=404,
                hint="check VIDEOPOLL_GITHUB_REPO, VIDEOPOLL_GITHUB_REF and the token's access")
        return exc

    async def _pointer(self, sha: str) -> tuple[str, int] | None:
        response = await self._get(f"/repos/{self.repo}/git/blobs/{sha}", what="blob",
                                   Accept="application/vnd.github.raw+json")
        return parse_pointer(response.content)

    # -- download ----------------------------------------------------------------------------
    async def open(self, ref: ArtifactRef) -> AsyncIterator[bytes]:
        kept = None if ref.lfs_oid else self._inline.pop(ref.sha, None)
        if kept is not None:  # came with the contents answer: no request
            for start in range(0, len(kept), PIECE):
                yield kept[start:start + PIECE]
            return
        if ref.lfs_oid:
            request = await self._lfs_request(ref)
            client = self.downloads
        else:
            client = self.api
            request = client.build_request(
                "GET", f"/repos/{self.repo}/git/blobs/{ref.sha}",
                headers={"Accept": "application/vnd.github.raw+json"})
        try:
            response = await send(client, request, service=SERVICE, stream=True,
                                  what="download")
        except RequestRejected as exc:
            if exc.status in (404, 410):  # listed, yet gone: counted, then the video fails
                raise ArtifactMissing(f"github: {ref.path} is listed but its "
                                      f"{'LFS object' if ref.lfs else 'blob'} is missing "
                                      f"(HTTP {exc.status})") from None
            raise
        try:
            async for piece in response.aiter_bytes():
                yield piece
        except httpx.RequestError as exc:
            raise ShortBody(f"download broke off ({type(exc).__name__})") from None
        finally:
            await response.aclose()

    async def _lfs_request(self, ref: ArtifactRef) -> httpx.Request:
        lfs_type = "application/vnd.git-lfs+json"
        request = self.downloads.build_request(
            "POST", f"{self.lfs_url}/{self.repo}.git/info/lfs/objects/batch",
            json={"operation": "download", "transfers": ["basic"],
                  "objects": [{"oid": ref.lfs_oid, "size": ref.size}]},
            headers={"Accept": lfs_type, "Content-Type": lfs_type,
                     "Authorization": self._lfs_auth})
        body = json_of(await send(self.downloads, request, service=SERVICE,
                                  what="LFS batch"), "LFS batch")
        try:
            obj = body["objects"][0]
            if "error" in obj:
                # A pointer pushed without its object (a common git-lfs failure) is 404; 410
                # removed. Both are counted attempts, then the video fails; anything else is
                # the request's fault.
                error, code = obj["error"], int(obj["error"].get("code", 404))
                why = f"LFS object {ref.lfs_oid} unavailable: {error.get('message', code)}"
                if code in (404, 410):
                    raise ArtifactMissing(f"github: {ref.path}: {why}")
                raise RequestRejected(f"github: {why}", service=SERVICE, status=code)
            action = obj["actions"]["download"]
            href, header = action["href"], dict(action.get("header") or {})
        except (KeyError, IndexError, TypeError, AttributeError, ValueError):
            raise ProtocolError("github: LFS batch answer has no download action",
                                service=SERVICE) from None
        return self.downloads.build_request("GET", href, headers=header)


    async def check(self) -> list[tuple[str, bool, str]]:
        """doctor: the repository is visible to the token and the branch exists."""
        try:
            repo = await self._get(f"/repos/{self.repo}", what="repository")
        except RequestRejected as exc:
            return [(Service.GITHUB, False, self._not_found(exc).message)]
        left = repo.headers.get("x-ratelimit-remaining")
        limit = repo.headers.get("x-ratelimit-limit")
        info = json_of(repo, "repository")
        visibility = "private" if isinstance(info, dict) and info.get("private") else "public"
        checks: list[tuple[str, bool, str]] = [(
            Service.GITHUB, True, f"{self.repo} visible ({visibility}); "
            f"rate limit {left}/{limit} left")]
        try:
            head = await self._get(f"/repos/{self.repo}/commits/{self.ref}", what="branch",
                                     Accept="application/vnd.github.sha")
            checks.append(("github: branch", True, f"{self.ref} at {head.text.strip()[:12]}"))
        except RequestRejected as exc:
            ok = exc.status == 409
            checks.append(("github: branch", ok, "repository is empty (no files yet)" if ok else
                           f"{self.ref}: {exc.message}"))
        return checks


class _Listed:
    """Marks a contents answer that only the tree listing can settle."""


_LISTED = _Listed()
T = TypeVar("T")


async def _all(calls: list[Coroutine[Any, Any, T]]) -> list[T]:
    """Every call's answer, concurrently; on the first error the others are cancelled
    (gather alone would leave them running after the pass moved on)."""
    tasks = [asyncio.ensure_future(call) for call in calls]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


def _tree_body(response: httpx.Response) -> dict[str, Any]:
    """A tree answer, checked whole before anything of it is used (or cached)."""
    body = json_of(response, "tree")
    if not isinstance(body, dict) or not isinstance(body.get("tree"), list) or not (
            isinstance(body.get("sha"), str) and _SHA.fullmatch(body["sha"])):
        raise ProtocolError("github: tree answer has no 'sha' and 'tree' list", service=SERVICE)
    for entry in body["tree"]:
        if not (isinstance(entry, dict)
                and all(isinstance(entry.get(k), str) for k in ("path", "type", "sha"))
                and _SHA.fullmatch(entry["sha"])  # sub-tree SHAs go into URLs as they are
                and (entry["type"] != "blob" or _is_size(entry.get("size")))):
            raise ProtocolError(f"github: tree answer has a malformed entry: {entry!r:.200}",
                                service=SERVICE)
    return body


def _is_size(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _blobs(tree: list[dict[str, Any]], base: str, prefix: str) -> dict[str, tuple[str, int]]:
    out = {}
    for entry in tree:
        path = base + entry["path"]
        if entry["type"] == "blob" and path.startswith(prefix):
            out[path] = (entry["sha"], entry["size"])
    return out
