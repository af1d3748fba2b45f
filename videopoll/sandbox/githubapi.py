"""The GitHub stand-in's REST answers: commits, refs, trees, blobs and contents.

Each handler gets the stand-in, the request and a repository the caller may read (the gate
in github.py has done User-Agent, credentials, rate limit and visibility). ETags are derived
from the git objects an answer shows, so an unchanged answer gets the same tag cheaply: a
tree asked for by branch name carries the same ETag as by its SHA, and stays 304 across a
commit that leaves the tree as it was (GitHub's tags follow the answer's body the same way).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from itertools import islice
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote

from .gitdata import Commit, Content, Entry, Repo, b64_lines
from .server import Request, Response

if TYPE_CHECKING:
    from .github import GitHubStandIn

API_VERSIONS = frozenset({"2022-11-28", "2026-03-10"})
UA_REQUIRED = (b"\r\nRequest forbidden by administrative rules. Please make sure your request "
               b"has a User-Agent header (https://docs.github.com/en/rest/overview/resources-in-"
               b"the-rest-api#user-agent-required). Check https://developer.github.com for other "
               b"possible causes.\r\n")
RATE_DOCS = "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api"
Handler = Callable[["GitHubStandIn", Request, Repo], Response]
INLINE_MAX = 1024 * 1024  # the contents API inlines base64 up to 1 MB
DIR_CAP = 1000  # the contents API lists at most 1,000 entries of a directory
_DOCS = "https://docs.github.com/rest/"
DOC_COMMIT = _DOCS + "commits/commits#get-a-commit"
DOC_REF = _DOCS + "git/refs#get-a-reference"
DOC_TREE = _DOCS + "git/trees#get-a-tree"
DOC_BLOB = _DOCS + "git/blobs#get-a-blob"
DOC_CONTENTS = _DOCS + "repos/contents#get-repository-content"
_MEDIA = re.compile(r"application/vnd\.github(?:\.v3)?(?:\.(?P<param>[a-z]+))?(?:\+json)?")
_SHA = re.compile(r"[0-9a-f]{40}")


def error(status: int, message: str, doc: str = "https://docs.github.com/rest",
          headers: dict[str, str] | None = None) -> Response:
    body = {"message": message, "documentation_url": doc, "status": str(status)}
    return Response.json(body, status, headers)


def media(request: Request) -> str:
    """The custom media type asked for (sha, raw, object, ...) or "json"."""
    for part in (request.header("Accept") or "").split(","):
        match = _MEDIA.fullmatch(part.split(";")[0].strip())
        if match and match["param"]:
            return match["param"]
    return "json"


def etag(*parts: str, weak: bool = True) -> str:
    digest = hashlib.sha1("\0".join(parts).encode()).hexdigest()
    return f'W/"{digest}"' if weak else f'"{digest}"'


def fresh(request: Request, tag: str) -> bool:
    """If-None-Match uses the weak comparison: W/"x" and "x" match."""
    wanted = tag.removeprefix("W/")
    return any(t.strip() == "*" or t.strip().removeprefix("W/") == wanted
               for t in (request.header("If-None-Match") or "").split(",") if t.strip())


def _api(gh: GitHubStandIn, repo: Repo) -> str:
    return f"{gh.url}/repos/{repo.full_name}"


def repository(gh: GitHubStandIn, request: Request, repo: Repo) -> Response:
    """GET /repos/{o}/{r} (doctor's visibility check); it answers for empty repositories too."""
    owner, name = repo.full_name.split("/", 1)
    return _json_tagged(request, {
        "id": int(hashlib.sha1(repo.full_name.encode()).hexdigest()[:8], 16), "name": name,
        "full_name": repo.full_name, "private": repo.private, "owner": {"login": owner},
        "visibility": "private" if repo.private else "public", "url": _api(gh, repo),
        "html_url": f"{gh.url}/{repo.full_name}", "default_branch": repo.default_branch,
        "permissions": {"admin": False, "maintain": False, "push": False, "triage": False,
                        "pull": True}})


# -- commits and refs ---------------------------------------------------------------------------
def commits(gh: GitHubStandIn, request: Request, repo: Repo) -> Response:
    if repo.empty:
        return error(409, "Git Repository is empty.", DOC_COMMIT)
    ref = unquote(request.params["ref"])
    commit = repo.resolve(ref)
    if commit is None:
        return error(422, f"No commit found for SHA: {ref}", DOC_COMMIT)
    kind = media(request)
    tag = etag(commit.sha, kind, weak=kind != "sha")
    if fresh(request, tag):
        return Response(304, b"", {"ETag": tag})
    if kind == "sha":
        return Response(200, commit.sha.encode(), {
            "Content-Type": "application/vnd.github.sha; charset=utf-8", "ETag": tag})
    return Response.json(_commit_json(gh, repo, commit), headers={"ETag": tag})


def _commit_json(gh: GitHubStandIn, repo: Repo, commit: Commit) -> dict[str, Any]:
    api = _api(gh, repo)
    when = datetime.fromtimestamp(commit.time, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    person = {"name": "videopoll-sandbox", "email": "sandbox@videopoll.invalid", "date": when}
    files = [{"sha": entry.sha if (entry := repo.lookup(commit.tree, path)) else None,
              "filename": path, "status": status, "additions": 0, "deletions": 0, "changes": 0}
             for path, status in commit.files]
    parents = [{"sha": p, "url": f"{api}/commits/{p}"} for p in [commit.parent] if p]
    return {
        "sha": commit.sha, "node_id": f"C_{commit.sha[:20]}", "url": f"{api}/commits/{commit.sha}",
        "html_url": f"{gh.url}/{repo.full_name}/commit/{commit.sha}",
        "commit": {"author": person, "committer": person, "message": commit.message,
                   "tree": {"sha": commit.tree, "url": f"{api}/git/trees/{commit.tree}"},
                   "url": f"{api}/git/commits/{commit.sha}", "comment_count": 0},
        "author": None, "committer": None, "parents": parents,
        "stats": {"total": 0, "additions": 0, "deletions": 0}, "files": files,
    }


def _refs(gh: GitHubStandIn, repo: Repo) -> list[dict[str, Any]]:
    api = _api(gh, repo)
    return [{"ref": f"refs/heads/{name}", "node_id": f"REF_{sha[:16]}",
             "url": f"{api}/git/refs/heads/{quote(name)}",
             "object": {"sha": sha, "type": "commit", "url": f"{api}/git/commits/{sha}"}}
            for name, sha in sorted(repo.branches.items())]


def _json_tagged(request: Request, data: Any) -> Response:
    body = json.dumps(data).encode()
    tag = etag(hashlib.sha1(body).hexdigest())
    if fresh(request, tag):
        return Response(304, b"", {"ETag": tag})
    return Response(200, body, {"Content-Type": "application/json; charset=utf-8", "ETag": tag})


def refs(gh: GitHubStandIn, request: Request, repo: Repo) -> Response:
    """git/ref/{ref}: exactly that reference; git/refs/{ref}: that, else all it prefixes."""
    if repo.empty:
        return error(409, "Git Repository is empty.", DOC_REF)
    name = "refs/" + unquote(request.params["ref"])
    every = _refs(gh, repo)
    exact = [r for r in every if r["ref"] == name]
    if exact:
        return _json_tagged(request, exact[0])
    matches = [r for r in every if r["ref"].startswith(name)] if request.route == "refs" else []
    return _json_tagged(request, matches) if matches else error(404, "Not Found", DOC_REF)


# -- trees --------------------------------------------------------------------------------------
def trees(gh: GitHubStandIn, request: Request, repo: Repo) -> Response:
    """tree_sha is "the SHA1 value or ref (branch or tag) name of the tree" (a commit SHA
    names its tree too); an unknown one is 404, any name in an empty repository 409."""
    if repo.empty:
        return error(409, "Git Repository is empty.", DOC_TREE)
    tree = repo.tree_sha(unquote(request.params["sha"]))
    if tree is None:
        return error(404, "Not Found", DOC_TREE)
    recursive = "recursive" in request.query  # any value turns it on, even 0 or "false"
    tag = etag(tree, str(recursive), str(gh.tree_limit), str(gh.tree_bytes))
    if fresh(request, tag):
        return Response(304, b"", {"ETag": tag})
    api = _api(gh, repo)
    items: list[dict[str, Any]] = []
    size, truncated = 0, False
    for path, entry in repo.walk(tree, recursive):
        item: dict[str, Any] = {"path": path, "mode": entry.mode, "type": entry.type,
                                "sha": entry.sha}
        if entry.type == "blob":
            item["size"] = repo.blobs[entry.sha].size
            item["url"] = f"{api}/git/blobs/{entry.sha}"
        elif entry.type == "tree":
            item["url"] = f"{api}/git/trees/{entry.sha}"
        size += len(json.dumps(item)) + 2
        if recursive and (len(items) >= gh.tree_limit or size > gh.tree_bytes):
            truncated = True
            break
        items.append(item)
    body = {"sha": tree, "url": f"{api}/git/trees/{tree}", "tree": items, "truncated": truncated}
    return Response.json(body, headers={"ETag": tag})


# -- blobs and contents -------------------------------------------------------------------------
def _raw(gh: GitHubStandIn, content: Content, route: str, path: str, tag: str) -> Response:
    """Raw bytes, streamed; or, with redirects on, a redirect to a one-off URL elsewhere."""
    if gh.redirect:
        token = gh.objects.issue(route, path, content, ttl=gh.raw_ttl, uses=1)
        return Response(gh.redirect, b"", {"Location": f"{gh.objects.url}{path}?token={token}"})
    return Response(200, content.chunks(), {"Content-Type": "application/octet-stream",
                                            "ETag": tag}, content.size)


def damaged(content: Content) -> Content:
    """The same number of bytes with the middle one changed: no longer the blob its SHA names
    (the `wrong_bytes` fault; "corrupt" flips a byte of the whole answer, JSON and all)."""
    data = bytearray(content.read())
    if data:
        data[len(data) // 2] ^= 0xFF
    return Content(len(data), data=bytes(data))


def blobs(gh: GitHubStandIn, request: Request, repo: Repo, *, damage: bool = False
          ) -> Response:
    sha = unquote(request.params["sha"])
    if not _SHA.fullmatch(sha):
        return error(422, "The sha parameter must be exactly 40 characters and contain only "
                     "[0-9a-f].", DOC_BLOB)
    if repo.empty:
        return error(409, "Git Repository is empty.", DOC_BLOB)
    content = repo.blobs.get(sha)
    if content is None:
        return error(404, "Not Found", DOC_BLOB)
    content = damaged(content) if damage else content
    kind = media(request)
    tag = etag(sha, kind, weak=kind != "raw")
    if fresh(request, tag):
        return Response(304, b"", {"ETag": tag})
    if kind == "raw":
        return _raw(gh, content, "redirected", f"/blob/{repo.full_name}/{sha}", tag)
    head = json.dumps({"sha": sha, "node_id": f"B_{sha[:20]}", "size": content.size,
                       "url": f"{_api(gh, repo)}/git/blobs/{sha}"})[:-1] + ', "content": "'
    tail = '", "encoding": "base64"}'
    chars = 4 * ((content.size + 2) // 3)
    length = len(head) + chars + 2 * ((chars + 59) // 60) + len(tail)

    def body() -> Iterator[bytes]:  # streamed: a 100 MB blob is never held as base64
        yield head.encode()
        yield from content.base64_json()
        yield tail.encode()

    return Response(200, body(), {"Content-Type": "application/json; charset=utf-8",
                                  "ETag": tag}, length)


def _item(gh: GitHubStandIn, repo: Repo, ref: str, commit: Commit, path: str,
          entry: Entry) -> dict[str, Any]:
    api, is_dir = _api(gh, repo), entry.type == "tree"
    quoted = quote(path)
    git_url = f"{api}/git/{'trees' if is_dir else 'blobs'}/{entry.sha}"
    html = f"{gh.url}/{repo.full_name}/{'tree' if is_dir else 'blob'}/{quote(ref)}/{quoted}"
    download = None
    if entry.type == "commit":  # a submodule: listed as a "file" (GitHub's compatibility)
        git_url = f"{api}/git/trees/{entry.sha}"
    elif not is_dir:  # download_url: another host, expiring, single use
        raw_path = f"/raw/{repo.full_name}/{commit.sha}/{quoted}"
        token = gh.objects.issue("raw", raw_path, repo.blobs[entry.sha], ttl=gh.raw_ttl, uses=1)
        download = f"{gh.objects.url}{raw_path}?token={token}"
    self_url = f"{api}/contents/{quoted}?ref={quote(ref)}"
    return {"type": "dir" if is_dir else "file", "size": 0 if entry.type != "blob" else
            repo.blobs[entry.sha].size, "name": path.rsplit("/", 1)[-1], "path": path,
            "sha": entry.sha, "url": self_url, "git_url": git_url, "html_url": html,
            "download_url": download, "_links": {"self": self_url, "git": git_url, "html": html}}


def contents(gh: GitHubStandIn, request: Request, repo: Repo, *, damage: bool = False
             ) -> Response:
    """A file, a directory, or a submodule at `path` on `ref`; 404 where there is none.

    As GitHub: files up to 1 MB come inline (base64 with newlines); from 1 to 100 MB with
    `content` "" and `encoding` "none" (documented for the object media type; GitHub answers
    the default one the same way); a directory is a list, or with the object media type one
    object with `entries`; a submodule is an object of type "submodule"."""
    if repo.empty:
        return error(404, "This repository is empty.", DOC_CONTENTS)
    ref = request.arg("ref") or repo.default_branch
    commit = repo.resolve(ref)
    if commit is None:
        return error(404, f"No commit found for the ref {ref}", DOC_CONTENTS)
    path = unquote(request.params.get("path") or "").strip("/")
    entry = repo.lookup(commit.tree, path)
    if entry is None:
        return error(404, "Not Found", DOC_CONTENTS)
    kind = media(request)
    tag = etag(entry.sha, kind, path, weak=kind != "raw")
    if fresh(request, tag):
        return Response(304, b"", {"ETag": tag})
    if entry.type == "commit":
        api = _api(gh, repo)
        self_url = f"{api}/contents/{quote(path)}?ref={quote(ref)}"
        return Response.json({
            "type": "submodule", "submodule_git_url": f"{gh.url}/{path}.git", "size": 0,
            "name": path.rsplit("/", 1)[-1], "path": path, "sha": entry.sha, "url": self_url,
            "git_url": f"{api}/git/trees/{entry.sha}", "html_url": None, "download_url": None,
            "_links": {"self": self_url, "git": f"{api}/git/trees/{entry.sha}", "html": None},
        }, headers={"ETag": tag})
    if entry.type == "tree":
        prefix = path + "/" if path else ""
        listing = [_item(gh, repo, ref, commit, p, e)
                   for p, e in islice(repo.walk(entry.sha, False, prefix), DIR_CAP)]
        if kind != "object":
            return Response.json(listing, headers={"ETag": tag})
        whole = _item(gh, repo, ref, commit, path, entry) if path else {"type": "dir"}
        return Response.json({**whole, "entries": listing}, headers={"ETag": tag})
    content = repo.blobs[entry.sha]
    content = damaged(content) if damage else content
    if kind == "raw":
        raw_path = f"/raw/{repo.full_name}/{commit.sha}/{quote(path)}"
        return _raw(gh, content, "raw", raw_path, tag)
    item = _item(gh, repo, ref, commit, path, entry)
    if content.size <= INLINE_MAX:
        item.update(content=b64_lines(content.read()).decode(), encoding="base64")
    else:  # 1-100 MB: documented as an empty content with encoding "none"
        item.update(content="", encoding="none")
    return Response.json(item, headers={"ETag": tag})


def requested_content(gh: GitHubStandIn, request: Request) -> Content | None:
    """The file a blobs or contents request is after (for the lfs_pointer fault)."""
    params = request.params
    repo = gh.repos.get(unquote(f"{params.get('owner')}/{params.get('repo')}").lower())
    if repo is None or repo.empty or request.route not in ("blobs", "contents"):
        return None
    if request.route == "blobs":
        return repo.blobs.get(unquote(params["sha"]))
    commit = repo.resolve(request.arg("ref") or repo.default_branch)
    entry = repo.lookup(commit.tree, unquote(params.get("path") or "")) if commit else None
    return repo.blobs.get(entry.sha) if entry is not None else None

ROUTES: list[tuple[str, str, Handler]] = [
    ("repo", "", repository),
    ("commits", r"/commits/(?P<ref>.+)", commits),
    ("ref", r"/git/ref/(?P<ref>.+)", refs),
    ("refs", r"/git/refs/(?P<ref>.+)", refs),
    ("trees", r"/git/trees/(?P<sha>.+)", trees),
    ("blobs", r"/git/blobs/(?P<sha>[^/]+)", blobs),
    ("contents", r"/contents(?:/(?P<path>.*))?", contents),
]
