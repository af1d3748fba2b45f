"""The GitHub stand-in answers like GitHub (DESIGN 8.2), through real HTTP on 127.0.0.1/.2."""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import subprocess
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from videopoll.sandbox import gitdata
from videopoll.sandbox.gitdata import Entry
from videopoll.sandbox.github import GitHubStandIn
from videopoll.sandbox.githubapi import INLINE_MAX
from videopoll.sandbox.server import Fault

TOKEN, REPO = "ghp_sandbox", "acme/videos"
HEADERS = {"Authorization": f"Bearer {TOKEN}", "Accept": "application/vnd.github+json",
           "X-GitHub-Api-Version": "2022-11-28", "User-Agent": "videopoll-tests"}
SHA_MEDIA = {"Accept": "application/vnd.github.sha"}
RAW_MEDIA = {"Accept": "application/vnd.github.raw+json"}
LFS_HEADERS = {"Accept": "application/vnd.git-lfs+json",
               "Content-Type": "application/vnd.git-lfs+json"}


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def gh(clock: Clock) -> Iterator[GitHubStandIn]:
    with GitHubStandIn(tokens={TOKEN: [REPO], "ghp_other": []}, clock=clock) as stand:
        stand.add_repo(REPO)
        yield stand


@pytest.fixture
def api(gh: GitHubStandIn) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gh.url, headers=HEADERS, timeout=5) as client:
        yield client


def lfs_batch(gh: GitHubStandIn, objects: list[dict[str, Any]], token: str = TOKEN,
              **headers: str) -> httpx.Response:
    body = json.dumps({"operation": "download", "transfers": ["basic"], "objects": objects})
    return httpx.post(f"{gh.lfs_url}/{REPO}.git/info/lfs/objects/batch", content=body,
                      auth=("x-access-token", token), headers={**LFS_HEADERS, **headers})


def assert_error(response: httpx.Response, status: int, message: str) -> None:
    assert response.status_code == status
    body = response.json()
    assert body["message"] == message and body["status"] == str(status)
    assert body["documentation_url"].startswith("https://docs.github.com/")


# -- the gate -------------------------------------------------------------------------------------
def test_user_agent_is_required(gh: GitHubStandIn) -> None:
    """No User-Agent: 403 with GitHub's plain-text page, not JSON."""
    with httpx.Client(headers=HEADERS) as client:
        client.headers.pop("User-Agent")
        answer = client.get(f"{gh.url}/repos/{REPO}/commits/main")
    assert answer.status_code == 403 and answer.headers["content-type"] == "text/html"
    assert b"User-Agent header" in answer.content


def test_credentials(gh: GitHubStandIn, api: httpx.Client) -> None:
    """Bearer, token and Basic forms work; a wrong token is 401 with the standard body."""
    assert_error(api.get(f"/repos/{REPO}/commits/main", headers={"Authorization": "Bearer no"}),
                 401, "Bad credentials")
    for value in (f"token {TOKEN}", "Basic " + base64.b64encode(f"me:{TOKEN}".encode()).decode()):
        assert api.get(f"/repos/{REPO}/commits/main", headers={"Authorization": value}).is_success
    assert_error(api.get(f"/repos/{REPO}/commits/main",
                         headers={"X-GitHub-Api-Version": "2019-01-01"}), 400,
                 "Unsupported 'X-GitHub-Api-Version': '2019-01-01'")


def test_private_repo_the_token_cannot_see_is_404(gh: GitHubStandIn, api: httpx.Client) -> None:
    gh.add_repo("acme/public", private=False)
    assert_error(api.get(f"/repos/{REPO}/commits/main",
                         headers={"Authorization": "Bearer ghp_other"}), 404, "Not Found")
    anonymous = {k: v for k, v in HEADERS.items() if k != "Authorization"}
    with httpx.Client(base_url=gh.url, headers=anonymous) as client:
        assert client.get(f"/repos/{REPO}/commits/main").status_code == 404
        answer = client.get("/repos/ACME/Public/commits/main")  # names are case-insensitive
        assert answer.status_code == 200 and answer.headers["x-ratelimit-limit"] == "60"


def test_empty_repository(gh: GitHubStandIn, api: httpx.Client) -> None:
    """409 "Git Repository is empty." for git data; the contents API says 404."""
    gh.add_repo("acme/empty", empty=True)
    gh.grant(TOKEN, "acme/empty")
    for path in ("commits/main", "git/trees/main", "git/ref/heads/main"):
        assert_error(api.get(f"/repos/acme/empty/{path}"), 409, "Git Repository is empty.")
    assert_error(api.get("/repos/acme/empty/contents/videos"), 404, "This repository is empty.")
    repo = api.get("/repos/acme/empty").json()  # the repository itself is there
    assert (repo["full_name"], repo["private"], repo["default_branch"]) == ("acme/empty", True,
                                                                            "main")


# -- has anything changed? ------------------------------------------------------------------------
def test_commits_sha_etag_and_free_304(gh: GitHubStandIn, api: httpx.Client) -> None:
    first = api.get(f"/repos/{REPO}/commits/main", headers=SHA_MEDIA)
    assert first.text == gh.head(REPO) and first.headers["etag"].startswith('"')
    remaining = int(first.headers["x-ratelimit-remaining"])
    for tag in (first.headers["etag"], "W/" + first.headers["etag"]):  # weak comparison
        again = api.get(f"/repos/{REPO}/commits/main", headers={**SHA_MEDIA, "If-None-Match": tag})
        assert again.status_code == 304 and again.content == b""
        assert int(again.headers["x-ratelimit-remaining"]) == remaining  # free when authenticated
    assert gh.not_modified["commits"] == 2
    gh.put_file(REPO, "videos/a.mp4", b"new")
    moved = api.get(f"/repos/{REPO}/commits/main",
                    headers={**SHA_MEDIA, "If-None-Match": first.headers["etag"]})
    assert moved.status_code == 200 and moved.text == gh.head(REPO) != first.text
    commit = api.get(f"/repos/{REPO}/commits/main").json()
    assert commit["sha"] == moved.text and commit["files"][0]["filename"] == "videos/a.mp4"
    assert api.get(f"/repos/{REPO}/commits/main").headers["etag"].startswith('W/"')
    assert_error(api.get(f"/repos/{REPO}/commits/nope"), 422, "No commit found for SHA: nope")


def test_refs(gh: GitHubStandIn, api: httpx.Client) -> None:
    gh.put_file(REPO, "x", b"1", branch="feature-a")
    ref = api.get(f"/repos/{REPO}/git/ref/heads/main").json()
    assert ref["ref"] == "refs/heads/main" and ref["object"]["sha"] == gh.head(REPO)
    assert api.get(f"/repos/{REPO}/git/refs/heads/main").json()["ref"] == "refs/heads/main"
    prefixed = api.get(f"/repos/{REPO}/git/refs/heads/feature").json()  # legacy prefix match
    assert [r["ref"] for r in prefixed] == ["refs/heads/feature-a"]
    assert_error(api.get(f"/repos/{REPO}/git/ref/heads/feature"), 404, "Not Found")


def test_remove_file_and_other_default_branch(gh: GitHubStandIn, api: httpx.Client) -> None:
    """Removing a folder's last file removes the folder; every change moves the head."""
    gh.add_repo("acme/trunk", default_branch="trunk")
    gh.grant(TOKEN, "acme/trunk")
    before = gh.head("acme/trunk")
    gh.put_file("acme/trunk", "videos/a/v.mp4", b"v")
    after = gh.remove_file("acme/trunk", "videos/a/v.mp4")
    assert len({before, gh.head("acme/trunk"), after}) == 2 and after != before
    listing = api.get("/repos/acme/trunk/git/trees/trunk?recursive=1").json()["tree"]
    assert [e["path"] for e in listing] == ["README.md"]
    free = api.get("/rate_limit").json()["rate"]
    assert api.get("/rate_limit").json()["rate"]["remaining"] == free["remaining"]


def test_tree_by_ref_name_etag_and_free_304(gh: GitHubStandIn, api: httpx.Client) -> None:
    """tree_sha takes a branch name or a commit SHA as well as a tree SHA; the answer's weak
    ETag follows the tree, so If-None-Match by ref is 304 (free) until the tree changes."""
    gh.put_file(REPO, "videos/a.mp4", b"a")
    url = f"/repos/{REPO}/git/trees/main?recursive=1"
    by_ref = api.get(url)
    tree = by_ref.json()["sha"]
    for other in (tree, gh.head(REPO)):
        by_sha = api.get(f"/repos/{REPO}/git/trees/{other}?recursive=1")
        assert by_sha.json() == by_ref.json() and by_sha.headers["etag"] == by_ref.headers["etag"]
    tag = by_ref.headers["etag"]
    assert tag.startswith('W/"')
    remaining = int(by_ref.headers["x-ratelimit-remaining"])
    again = api.get(url, headers={"If-None-Match": tag})
    assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == tag
    assert int(again.headers["x-ratelimit-remaining"]) == remaining - 2  # the two by SHA
    assert gh.not_modified["trees"] == 1
    gh.put_file(REPO, "videos/b.mp4", b"b")
    moved = api.get(url, headers={"If-None-Match": tag})
    assert moved.status_code == 200 and moved.headers["etag"] != tag
    assert moved.json()["sha"] != tree and "videos/b.mp4" in [e["path"]
                                                               for e in moved.json()["tree"]]
    assert_error(api.get(f"/repos/{REPO}/git/trees/no-such-branch?recursive=1"), 404,
                 "Not Found")


# -- listing --------------------------------------------------------------------------------------
@pytest.mark.parametrize("value", ["1", "0", "false", "true", ""])
def test_any_recursive_value_turns_recursion_on(gh: GitHubStandIn, api: httpx.Client,
                                                value: str) -> None:
    gh.put_file(REPO, "videos/l1/a.mp4", b"a")
    deep = api.get(f"/repos/{REPO}/git/trees/main", params={"recursive": value}).json()
    assert "videos/l1/a.mp4" in [e["path"] for e in deep["tree"]]
    flat = api.get(f"/repos/{REPO}/git/trees/main").json()
    assert sorted(e["path"] for e in flat["tree"]) == ["README.md", "videos"]
    assert not flat["truncated"] and "size" not in flat["tree"][1]


def test_tree_shas_are_gits(gh: GitHubStandIn, api: httpx.Client, tmp_path: Path) -> None:
    """Blob, tree and listing agree with git itself."""
    files = {"videos/x/1.mp4": b"one", "videos/x-y.mp4": b"two", "videos/x.mp4": b"3"}
    gh.put_files(REPO, files)
    listing = api.get(f"/repos/{REPO}/git/trees/main?recursive=1").json()
    entries = {e["path"]: e for e in listing["tree"]}
    assert entries["videos/x/1.mp4"] == {**entries["videos/x/1.mp4"], "size": 3,
                                         "sha": gitdata.blob_sha(b"one"), "mode": "100644"}
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    for path, data in {**files, "README.md": b"# sandbox\n"}.items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_bytes(data)
    subprocess.run(["git", "init", "-q"], check=True, cwd=tmp_path)
    subprocess.run(["git", "add", "-A"], check=True, cwd=tmp_path)
    tree = subprocess.run(["git", "write-tree"], check=True, cwd=tmp_path, capture_output=True,
                          text=True).stdout.strip()
    assert listing["sha"] == tree


def test_truncated_listing_is_walked_by_sub_tree(gh: GitHubStandIn, api: httpx.Client) -> None:
    gh.tree_limit = 3
    gh.put_files(REPO, {f"videos/{i}/v.mp4": b"v" for i in range(4)})
    whole = api.get(f"/repos/{REPO}/git/trees/main?recursive=1").json()
    assert whole["truncated"] and len(whole["tree"]) == 3
    videos = next(e for e in api.get(f"/repos/{REPO}/git/trees/main").json()["tree"]
                  if e["path"] == "videos")
    level = api.get(f"/repos/{REPO}/git/trees/{videos['sha']}").json()
    assert not level["truncated"] and [e["path"] for e in level["tree"]] == ["0", "1", "2", "3"]
    tag = api.get(f"/repos/{REPO}/git/trees/{videos['sha']}").headers["etag"]
    again = api.get(f"/repos/{REPO}/git/trees/{videos['sha']}", headers={"If-None-Match": tag})
    assert again.status_code == 304 and gh.not_modified["trees"] == 1
    assert_error(api.get(f"/repos/{REPO}/git/trees/{'0' * 40}"), 404, "Not Found")


# -- downloads ------------------------------------------------------------------------------------
@pytest.mark.parametrize("size", [0, 1, 44, 45, 46, 3 * 1024 * 1024 + 7])
def test_blob_raw_stream_and_base64_json(gh: GitHubStandIn, api: httpx.Client,
                                         size: int) -> None:
    data = bytes(i % 251 for i in range(size))
    sha = gh.put_file(REPO, "videos/v.mp4", data)
    with api.stream("GET", f"/repos/{REPO}/git/blobs/{sha}", headers=RAW_MEDIA) as raw:
        assert raw.headers["content-type"] == "application/octet-stream"
        assert int(raw.headers["content-length"]) == size and raw.read() == data
    body = api.get(f"/repos/{REPO}/git/blobs/{sha}").json()  # Content-Length checked by httpx
    assert (body["sha"], body["size"], body["encoding"]) == (sha, size, "base64")
    assert all(len(line) <= 60 for line in body["content"].split("\n"))
    assert base64.b64decode(body["content"]) == data


def test_blob_errors(gh: GitHubStandIn, api: httpx.Client) -> None:
    assert_error(api.get(f"/repos/{REPO}/git/blobs/{'a' * 40}"), 404, "Not Found")
    assert api.get(f"/repos/{REPO}/git/blobs/main").status_code == 422


def test_contents(gh: GitHubStandIn, api: httpx.Client) -> None:
    big = bytes(2 * 1024 * 1024)
    gh.put_files(REPO, {"videos/small.mp4": b"small", "videos/big.mp4": big})
    small = api.get(f"/repos/{REPO}/contents/videos/small.mp4").json()
    assert base64.b64decode(small["content"]) == b"small" and small["encoding"] == "base64"
    large = api.get(f"/repos/{REPO}/contents/videos/big.mp4?ref=main").json()
    assert (large["content"], large["encoding"], large["size"]) == ("", "none", len(big))
    raw = api.get(f"/repos/{REPO}/contents/videos/big.mp4",
                  headers={"Accept": "application/vnd.github.raw"})
    assert raw.content == big
    listing = api.get(f"/repos/{REPO}/contents/videos").json()
    assert [i["name"] for i in listing] == ["big.mp4", "small.mp4"]
    url = listing[1]["download_url"]
    assert url.startswith(gh.objects.url)  # another host, single use
    assert httpx.get(url).content == b"small" and httpx.get(url).status_code == 403
    assert_error(api.get(f"/repos/{REPO}/contents/videos/none.mp4"), 404, "Not Found")
    gh.put_files(REPO, {f"many/{i:04}": b"" for i in range(1001)})
    assert len(api.get(f"/repos/{REPO}/contents/many").json()) == 1000


def test_contents_object_media_type(gh: GitHubStandIn, api: httpx.Client) -> None:
    """What GitHubArtifacts asks for by path: inline up to exactly 1 MB, "none" above it, a
    directory as one object, a submodule by its type, 404, and a weak ETag (304 when fresh)."""
    edge, over = bytes(range(256)) * (INLINE_MAX // 256), b"o" * (INLINE_MAX + 1)
    gh.put_files(REPO, {"videos/edge.mp4": edge, "videos/over.mp4": over})
    with gh.lock:
        gh.repos[REPO].commit({"videos/sub": Entry("160000", "commit", "c" * 40)}, "main", 0)
    obj = {"Accept": "application/vnd.github.object+json"}

    def get(path: str, **headers: str) -> httpx.Response:
        return api.get(f"/repos/{REPO}/contents/{path}?ref=main", headers={**obj, **headers})

    at_edge = get("videos/edge.mp4")
    body = at_edge.json()
    assert (body["type"], body["encoding"], body["size"]) == ("file", "base64", INLINE_MAX)
    assert base64.b64decode(body["content"]) == edge and body["sha"] == gitdata.blob_sha(edge)
    assert "\n" in body["content"]  # GitHub wraps the base64
    tag = at_edge.headers["etag"]
    assert tag.startswith('W/"') and get("videos/edge.mp4", **{"If-None-Match": tag}
                                         ).status_code == 304
    body = get("videos/over.mp4").json()
    assert (body["content"], body["encoding"], body["size"]) == ("", "none", len(over))
    folder = get("videos").json()
    assert folder["type"] == "dir" and [e["name"] for e in folder["entries"]] == [
        "edge.mp4", "over.mp4", "sub"]
    assert isinstance(api.get(f"/repos/{REPO}/contents/videos").json(), list)
    sub = get("videos/sub").json()
    assert (sub["type"], sub["sha"]) == ("submodule", "c" * 40) and "content" not in sub
    assert_error(get("videos/none.mp4"), 404, "Not Found")


@pytest.mark.parametrize("route", ["contents", "blobs"])
def test_the_wrong_bytes_fault_keeps_size_and_sha(gh: GitHubStandIn, api: httpx.Client,
                                                  route: str) -> None:
    data = b"the right bytes" * 100
    sha = gh.put_file(REPO, "videos/w.mp4", data)
    gh.inject(route, Fault("wrong_bytes"))
    url = (f"/repos/{REPO}/contents/videos/w.mp4" if route == "contents"
           else f"/repos/{REPO}/git/blobs/{sha}")
    body = api.get(url).json()
    got = base64.b64decode(body["content"])
    assert (body["sha"], body["size"], len(got)) == (sha, len(data), len(data))
    assert got != data and sum(a != b for a, b in zip(got, data, strict=True)) == 1
    assert base64.b64decode(api.get(url).json()["content"]) == data  # once only


@pytest.mark.parametrize("status", [302, 307])
def test_redirects_do_not_carry_the_token(gh: GitHubStandIn, api: httpx.Client,
                                          status: int) -> None:
    gh.redirect = status
    sha = gh.put_file(REPO, "videos/r.mp4", b"redirected bytes")
    hop = api.get(f"/repos/{REPO}/git/blobs/{sha}", headers=RAW_MEDIA)
    assert hop.status_code == status and hop.headers["location"].startswith(gh.objects.url)
    followed = api.get(f"/repos/{REPO}/git/blobs/{sha}", headers=RAW_MEDIA,
                       follow_redirects=True)
    assert followed.content == b"redirected bytes"
    assert gh.objects.authorizations("redirected") == [None]
    leaked = api.get(f"/repos/{REPO}/git/blobs/{sha}", headers=RAW_MEDIA)
    assert httpx.get(leaked.headers["location"], headers=HEADERS).status_code == 400


# -- Git LFS --------------------------------------------------------------------------------------
def test_lfs_pointer_batch_and_second_host(gh: GitHubStandIn, api: httpx.Client,
                                           clock: Clock) -> None:
    video = bytes(range(256)) * 4000
    oid = hashlib.sha256(video).hexdigest()
    sha = gh.put_file(REPO, "videos/big.mp4", video, lfs=True)
    pointer = f"version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\nsize {len(video)}\n"
    assert sha == gitdata.blob_sha(pointer.encode())
    assert api.get(f"/repos/{REPO}/git/blobs/{sha}", headers=RAW_MEDIA).text == pointer
    answer = lfs_batch(gh, [{"oid": oid, "size": len(video)}, {"oid": "0" * 64, "size": 1},
                            {"oid": oid, "size": 5}])
    assert answer.headers["content-type"].startswith("application/vnd.git-lfs+json")
    found, missing, wrong = answer.json()["objects"]
    assert missing["error"]["code"] == 404 and wrong["error"]["code"] == 422
    action = found["actions"]["download"]
    assert action["href"].startswith(gh.objects.url) and action["expires_in"] > 0
    assert httpx.get(action["href"]).status_code == 403  # the header's token is required
    with httpx.stream("GET", action["href"], headers=action["header"]) as stream:
        assert hashlib.sha256(stream.read()).hexdigest() == oid
    part = httpx.get(action["href"], headers={**action["header"], "Range": "bytes=10-19"})
    assert part.status_code == 206 and part.content == video[10:20]
    clock.now += action["expires_in"]
    expired = httpx.get(action["href"], headers=action["header"])
    assert expired.status_code == 403 and b"expired" in expired.content
    assert gh.counts["lfs_batch"] == 1 and gh.objects.counts["lfs_object"] == 4


def test_lfs_batch_refusals(gh: GitHubStandIn) -> None:
    oid = hashlib.sha256(b"v").hexdigest()
    gh.put_file(REPO, "v.mp4", b"v", lfs=True)
    assert lfs_batch(gh, [{"oid": oid, "size": 1}], Accept="application/json").status_code == 406
    assert lfs_batch(gh, [{"oid": "x", "size": 1}]).status_code == 422
    assert lfs_batch(gh, [{"oid": oid, "size": 1}], token="ghp_other").status_code == 404
    bearer = httpx.post(f"{gh.lfs_url}/{REPO}.git/info/lfs/objects/batch", headers={
        **LFS_HEADERS, "Authorization": f"Bearer {TOKEN}"}, content=b"{}")
    assert bearer.status_code == 401 and bearer.headers["lfs-authenticate"].startswith("Basic")
    gh.objects.token_in = "query"  # signed-URL style: the token rides in the href
    action = lfs_batch(gh, [{"oid": oid, "size": 1}]).json()["objects"][0]["actions"]["download"]
    assert "header" not in action and httpx.get(action["href"]).content == b"v"


def test_files_over_100_mib_go_to_lfs(gh: GitHubStandIn, api: httpx.Client,
                                      monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(gitdata, "MAX_BLOB", 1024 * 1024)  # GitHub's 100 MiB, scaled down
    src = tmp_path / "huge.mp4"
    src.write_bytes(b"\x01" * (1024 * 1024 + 1))
    sha = gh.put_file_from_path(REPO, "videos/huge.mp4", src)
    assert api.get(f"/repos/{REPO}/git/blobs/{sha}", headers=RAW_MEDIA).content.startswith(
        b"version https://git-lfs.github.com/spec/v1\n")
    assert gh.repos[REPO].lfs[hashlib.sha256(src.read_bytes()).hexdigest()].path == src
    with pytest.raises(ValueError, match="100 MiB"):
        gh.put_file_from_path(REPO, "videos/no.mp4", src, lfs=False)
    small = tmp_path / "small.mp4"
    small.write_bytes(b"from disk")
    sha = gh.put_file_from_path(REPO, "videos/small.mp4", small)
    assert api.get(f"/repos/{REPO}/git/blobs/{sha}", headers=RAW_MEDIA).content == b"from disk"


def test_files_from_disk_are_served_in_chunks(gh: GitHubStandIn, api: httpx.Client,
                                              tmp_path: Path) -> None:
    """A big file is streamed from disk by both hosts: server memory stays flat."""
    src = tmp_path / "big.mp4"
    with src.open("wb") as handle:
        handle.truncate(24 * 1024 * 1024)
    sha = gh.put_file_from_path(REPO, "videos/big.mp4", src)
    lfs = gh.put_file_from_path(REPO, "videos/lfs.mp4", src, lfs=True)
    pointer = api.get(f"/repos/{REPO}/git/blobs/{lfs}", headers=RAW_MEDIA).text
    oid = pointer.split("sha256:")[1].split("\n")[0]
    action = lfs_batch(gh, [{"oid": oid, "size": src.stat().st_size}]).json()
    download = action["objects"][0]["actions"]["download"]
    tracemalloc.start()
    try:
        for client, url, headers in ((api, f"/repos/{REPO}/git/blobs/{sha}", RAW_MEDIA),
                                     (api, download["href"], download["header"])):
            with client.stream("GET", url, headers=headers) as answer:
                assert sum(len(piece) for piece in answer.iter_raw()) == src.stat().st_size
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 * 1024 * 1024


# -- rate limits and faults -----------------------------------------------------------------------
@pytest.mark.parametrize("status", [403, 429])
def test_rate_limit_budget(gh: GitHubStandIn, api: httpx.Client, clock: Clock,
                           status: int) -> None:
    gh.set_rate_limit(1, reset=clock.now + 60, status=status)
    ok = api.get(f"/repos/{REPO}/commits/main")
    assert ok.headers["x-ratelimit-remaining"] == "0" and ok.headers["x-ratelimit-used"] == "5000"
    assert ok.headers["x-ratelimit-resource"] == "core"
    refused = api.get(f"/repos/{REPO}/commits/main")
    assert_error(refused, status, "API rate limit exceeded for user ID 1.")
    assert refused.headers["x-ratelimit-reset"] == str(int(clock.now + 60))
    clock.now += 61
    renewed = api.get(f"/repos/{REPO}/commits/main")
    assert renewed.status_code == 200 and renewed.headers["x-ratelimit-remaining"] == "4999"


def test_github_faults(gh: GitHubStandIn, api: httpx.Client, clock: Clock) -> None:
    gh.inject("commits", Fault("rate_limit", status=429, delay=30))
    primary = api.get(f"/repos/{REPO}/commits/main")
    assert primary.status_code == 429 and primary.headers["x-ratelimit-remaining"] == "0"
    assert primary.headers["x-ratelimit-reset"] == str(int(clock.now + 30))
    gh.inject("trees", Fault("secondary_rate_limit", status=403, delay=7))
    secondary = api.get(f"/repos/{REPO}/git/trees/main")
    assert secondary.status_code == 403 and secondary.headers["retry-after"] == "7"
    assert "secondary rate limit" in secondary.json()["message"]
    sha = gh.put_file(REPO, "videos/p.mp4", b"payload")
    gh.inject("blobs", Fault("lfs_pointer"))
    served = api.get(f"/repos/{REPO}/git/blobs/{sha}", headers=RAW_MEDIA).content
    assert served.startswith(b"version https://git-lfs.github.com/spec/v1\noid sha256:")
    assert api.get(f"/repos/{REPO}/git/blobs/{sha}", headers=RAW_MEDIA).content == b"payload"
    assert set(gh.counts) == {"commits", "trees", "blobs"}
