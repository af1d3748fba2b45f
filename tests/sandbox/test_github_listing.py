"""GitHubArtifacts' lookups against the GitHub stand-in: request counts, never times.

A pass looking for more than BY_PATH_MAX files lists the folder with ONE conditional request,
`git/trees/{ref}?recursive=1` with If-None-Match: 304 (free) while the tree is unchanged, 200
with the new listing when it is not. One looking for fewer asks for each by path (contents
API): a file up to 1 MB is found and read with that one request.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from videopoll.engine.verify import check_github_path, verified
from videopoll.errors import ContentMismatch, ProtocolError, RequestRejected
from videopoll.model import ArtifactRef, Service
from videopoll.sandbox import gitdata
from videopoll.sandbox.gitdata import Entry
from videopoll.sandbox.github import GitHubStandIn
from videopoll.sandbox.githubapi import INLINE_MAX
from videopoll.sandbox.mp4 import mp4_of_size
from videopoll.sandbox.server import Fault
from videopoll.services.github import BY_PATH_MAX, GitHubArtifacts, github_headers, repeatable
from videopoll.services.http import make_client

TOKEN, REPO = "ghp_listing", "acme/videos"
Listing = dict[str, tuple[str, int]]


class JsonState:
    """A StateCache that keeps values as JSON text, as the stores' state table does."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {}

    async def get_state(self, key: str) -> dict[str, Any] | None:
        text = self.values.get(key)
        return None if text is None else dict(json.loads(text))

    async def set_state(self, key: str, value: dict[str, Any]) -> None:
        self.values[key] = json.dumps(value)

    async def flush(self) -> None:
        return None  # every set_state is kept at once

    def only(self) -> dict[str, Any]:
        (text,) = self.values.values()
        return dict(json.loads(text))


def source(gh: GitHubStandIn, state: JsonState, *, repo: str = REPO, ref: str = "main",
           transport: httpx.AsyncBaseTransport | None = None) -> GitHubArtifacts:
    """An adapter as the Runtime builds it (same client factory, headers and retries)."""
    api = make_client(Service.GITHUB, gh.url, calls=Counter(), headers=github_headers(TOKEN),
                      repeatable=repeatable, transport=transport)
    downloads = make_client(Service.GITHUB, "", calls=Counter(), repeatable=repeatable)
    artifacts = GitHubArtifacts(api, downloads, repo=repo, ref=ref, directory="videos",
                                lfs_url=gh.lfs_url, token=TOKEN, state=state)
    OPEN.append(artifacts)
    return artifacts


OPEN: list[GitHubArtifacts] = []


async def close(artifacts: GitHubArtifacts) -> None:
    OPEN.remove(artifacts)
    await artifacts.api.aclose()
    await artifacts.downloads.aclose()


@pytest.fixture(autouse=True)
async def closed() -> AsyncIterator[None]:
    """Every adapter a test opened is closed, failed assertion or not."""
    yield
    while OPEN:
        await close(OPEN[-1])


def expected(files: dict[str, bytes]) -> Listing:
    return {p: (gitdata.blob_sha(d), len(d)) for p, d in files.items() if p.startswith("videos/")}


class Requests:
    """What the stand-in answered since the last `take()`."""

    def __init__(self, gh: GitHubStandIn) -> None:
        self.gh = gh
        self.take()

    def take(self) -> tuple[Counter[str], Counter[str]]:
        with self.gh.lock:
            answered, not_modified = Counter(self.gh.counts), Counter(self.gh.not_modified)
            self.gh.counts.clear()
            self.gh.not_modified.clear()
        return answered, not_modified


@pytest.fixture
def gh() -> Iterator[GitHubStandIn]:
    with GitHubStandIn(tokens={TOKEN: [REPO]}) as stand:
        stand.add_repo(REPO)
        yield stand


FILES = {"videos/l1/a.mp4": b"a" * 2000, "videos/l1/b.mp4": b"b" * 3000,
         "videos/l2/c.mp4": b"c" * 1500, "docs/x.md": b"x", "videosx/y.mp4": b"y"}


async def test_fresh_cache_unchanged_and_moved_branch_each_cost_one_request(
        gh: GitHubStandIn) -> None:
    gh.put_files(REPO, FILES)
    state, seen = JsonState(), Requests(gh)
    first = source(gh, state)
    listing, _ = await first.listing()
    assert listing == expected(FILES)
    assert seen.take() == (Counter(trees=1), Counter())  # no head-commit request any more
    assert state.only()["etag"].startswith('W/"')

    assert (await first.listing())[0] == listing
    assert seen.take() == (Counter(trees=1), Counter(trees=1))
    second = source(gh, state)  # a fresh process: the ETag comes from the state
    assert (await second.listing())[0] == listing
    assert seen.take() == (Counter(trees=1), Counter(trees=1))

    tag = state.only()["etag"]
    gh.put_file(REPO, "videos/l3/d.mp4", b"d" * 1200)
    moved, _ = await second.listing()
    assert moved == expected({**FILES, "videos/l3/d.mp4": b"d" * 1200})
    assert seen.take() == (Counter(trees=1), Counter())
    assert state.only()["etag"] != tag and "head" not in state.only()


async def test_a_commit_outside_the_tree_change_costs_a_304(gh: GitHubStandIn) -> None:
    """The ETag follows the tree, not the commit: re-committing the same bytes moves the
    branch yet leaves the tree, so the answer is still 304 and the listing stays right."""
    gh.put_files(REPO, FILES)
    state, seen = JsonState(), Requests(gh)
    artifacts = source(gh, state)
    await artifacts.listing()
    head = gh.head(REPO)
    gh.put_files(REPO, {"videos/l1/a.mp4": FILES["videos/l1/a.mp4"]})
    seen.take()
    assert gh.head(REPO) != head
    assert (await artifacts.listing())[0] == expected(FILES)
    assert seen.take() == (Counter(trees=1), Counter(trees=1))


async def test_truncated_tree_is_listed_by_the_folder_and_then_level_by_level(
        gh: GitHubStandIn) -> None:
    files = {f"videos/{i}/v{j}.mp4": bytes([i, j]) * 700 for i in range(4) for j in range(2)}
    gh.put_files(REPO, {**files, **{f"a/{i}.txt": b"%d" % i for i in range(20)}})
    state, seen = JsonState(), Requests(gh)
    artifacts = source(gh, state)
    # 12 entries: the root is truncated inside a/ (videos/ is not in that answer), while
    # videos/ itself (4 folders, 8 files) just fits.
    gh.tree_limit = 12
    assert (await artifacts.listing())[0] == expected(files)
    answered, _ = seen.take()
    assert answered["trees"] == 3  # root (truncated), root level, videos/ recursive
    gh.tree_limit = 3  # even videos/ is truncated: walk it level by level
    state.values.clear()
    assert (await artifacts.listing())[0] == expected(files)
    answered, _ = seen.take()
    assert answered["trees"] == 1 + 1 + 1 + 1 + 4  # root, root level, videos/, then 1 + 4 levels
    assert (await artifacts.listing())[0] == expected(files)  # the root's ETag was stored
    assert seen.take() == (Counter(trees=1), Counter(trees=1))


async def test_truncated_listing_is_of_one_commit_even_if_the_branch_moves_meanwhile(
        gh: GitHubStandIn) -> None:
    files = {f"videos/{i}.mp4": bytes([i]) * 900 for i in range(6)}
    gh.put_files(REPO, files)
    gh.tree_limit = 4
    state, seen = JsonState(), Requests(gh)
    artifacts = source(gh, state)
    pushed: list[str] = []

    async def push_after_the_root_answer(response: httpx.Response) -> None:
        if not pushed:  # between the truncated root answer and the descent
            pushed.append(gh.put_file(REPO, "videos/late.mp4", b"late" * 300))

    artifacts.api.event_hooks["response"].append(push_after_the_root_answer)
    assert (await artifacts.listing())[0] == expected(files)  # the root's commit, whole
    assert pushed
    seen.take()
    # The stored ETag is the old root's: the next pass sees the move and lists it.
    later = (await artifacts.listing())[0]
    assert later == expected({**files, "videos/late.mp4": b"late" * 300})
    assert seen.take()[1] == Counter()


async def test_empty_repository_lists_nothing_and_caches_nothing(gh: GitHubStandIn) -> None:
    gh.add_repo("acme/empty", empty=True)
    gh.grant(TOKEN, "acme/empty")
    state, seen = JsonState(), Requests(gh)
    artifacts = source(gh, state, repo="acme/empty")
    assert await artifacts.listing() == ({}, {})
    assert seen.take() == (Counter(trees=1), Counter()) and state.values == {}
    gh.put_file("acme/empty", "videos/a.mp4", b"a" * 2000)  # the first commit is seen at once
    assert (await artifacts.listing())[0] == expected({"videos/a.mp4": b"a" * 2000})


@pytest.mark.parametrize(("repo", "ref"), [(REPO, "no-such-branch"), ("acme/hidden", "main")])
async def test_unknown_ref_or_invisible_repo_is_not_found(gh: GitHubStandIn, repo: str,
                                                          ref: str) -> None:
    gh.add_repo("acme/hidden")  # private, and the token is not granted it: 404, not 403
    artifacts = source(gh, JsonState(), repo=repo, ref=ref)
    with pytest.raises(RequestRejected) as caught:
        await artifacts.listing()
    assert caught.value.status == 404 and f"{repo}@{ref} not found" in caught.value.message


async def test_a_branch_name_with_a_slash(gh: GitHubStandIn) -> None:
    gh.put_file(REPO, "videos/f.mp4", b"f" * 2000, branch="feature/x")
    artifacts = source(gh, JsonState(), ref="feature/x")
    assert (await artifacts.listing())[0] == expected({"videos/f.mp4": b"f" * 2000})


MALFORMED: list[Any] = [
    [], {"sha": "0" * 40}, {"sha": "0" * 40, "tree": {}}, {"tree": []},
    {"sha": "0" * 40, "tree": [{"path": "videos/a.mp4", "type": "blob", "sha": "1" * 40}]},
    {"sha": "0" * 40, "tree": [{"path": "videos/a.mp4", "type": "blob", "sha": "1" * 40,
                                "size": "12"}]},
    {"sha": "0" * 40, "tree": ["videos/a.mp4"]},
    {"sha": "0" * 40, "tree": [{"path": "videos", "type": "tree", "sha": "../../user"}]},
]


@pytest.mark.parametrize("body", [*MALFORMED, "not json"])
async def test_a_malformed_answer_is_a_protocol_error_and_keeps_the_cache(
        gh: GitHubStandIn, body: Any) -> None:
    gh.put_files(REPO, FILES)
    state = JsonState()
    good = source(gh, state)
    await good.listing()
    before = dict(state.values)

    def answer(request: httpx.Request) -> httpx.Response:
        content = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        return httpx.Response(200, content=content, headers={"ETag": 'W/"other"'})

    bad = source(gh, state, transport=httpx.MockTransport(answer))
    with pytest.raises(ProtocolError):
        await bad.listing()
    assert state.values == before


async def test_a_304_to_an_unconditional_request_is_a_protocol_error(gh: GitHubStandIn) -> None:
    artifacts = source(gh, JsonState(), transport=httpx.MockTransport(
        lambda request: httpx.Response(304)))
    with pytest.raises(ProtocolError, match="304"):
        await artifacts.listing()


# -- any history of pushes -------------------------------------------------------------------------
PATHS = ["videos/a.mp4", "videos/l1/b.mp4", "videos/l1/c.mp4", "videos/l2/d/e.mp4",
         "other/x.mp4", "videosx/y.mp4"]
CONTENTS = [b"1" * 1100, b"2" * 1300, b"3"]
Push = tuple[dict[str, bytes], list[str]]  # files committed together, then files removed
pushes: st.SearchStrategy[Push | None] = st.none() | st.tuples(
    st.dictionaries(st.sampled_from(PATHS), st.sampled_from(CONTENTS), max_size=3),
    st.lists(st.sampled_from(PATHS), max_size=2, unique=True))
_repos = itertools.count()


@pytest.fixture(scope="module")
def shared_gh() -> Iterator[GitHubStandIn]:
    with GitHubStandIn(tokens={TOKEN: []}) as stand:
        yield stand


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(history=st.lists(st.tuples(pushes, st.booleans()), min_size=1, max_size=6),
       small_trees=st.booleans())
def test_any_push_history(shared_gh: GitHubStandIn, history: list[tuple[Push | None, bool]],
                          small_trees: bool) -> None:
    """After any pushes (or none) between passes, the listing is the branch's files under
    the folder; a pass with no change in between costs exactly one request, answered 304,
    and a pass after a change, with a tree that fits one answer, exactly one 200."""
    gh, repo = shared_gh, f"acme/h{next(_repos)}"
    gh.add_repo(repo)
    gh.grant(TOKEN, repo)
    gh.tree_limit = 3 if small_trees else 100_000
    files: dict[str, bytes] = {"README.md": b"# sandbox\n"}
    state = JsonState()

    async def run() -> None:
        artifacts = source(gh, state, repo=repo)
        seen = Requests(gh)
        try:
            await passes(artifacts, seen)
        finally:
            while OPEN:
                await close(OPEN[-1])

    async def passes(artifacts: GitHubArtifacts, seen: Requests) -> None:
        for step, (push, fresh_process) in enumerate(history):
            before = dict(files)
            if push is not None:
                apply(gh, repo, files, push)
            if fresh_process:
                await close(artifacts)
                artifacts = source(gh, state, repo=repo)
            seen.take()
            listing, _ = await artifacts.listing()
            answered, not_modified = seen.take()
            assert listing == expected(files), step
            if step and files == before:
                assert (answered, not_modified) == (Counter(trees=1), Counter(trees=1)), step
            elif not small_trees:
                assert (answered, not_modified) == (Counter(trees=1), Counter()), step

    try:
        asyncio.run(run())
    finally:
        gh.tree_limit = 100_000


def apply(gh: GitHubStandIn, repo: str, files: dict[str, bytes], push: Push) -> None:
    added, removed = push
    if added:
        gh.put_files(repo, added)
        files.update(added)
    for path in removed:
        if path in files:
            gh.remove_file(repo, path)
            del files[path]



# -- a few files by path ---------------------------------------------------------------------------
async def read(artifacts: GitHubArtifacts, ref: ArtifactRef) -> bytes:
    """What the engine stores: open()'s bytes through the same verification."""
    return b"".join([piece async for piece in verified(artifacts.open(ref), ref)])


def clip(size: int, label: str = "") -> bytes:
    return mp4_of_size(size, label)


async def test_a_small_file_is_found_and_read_with_one_request(gh: GitHubStandIn) -> None:
    data = clip(47_000)
    sha = gh.put_file(REPO, "videos/l1/a.mp4", data)
    state, seen = JsonState(), Requests(gh)
    artifacts = source(gh, state)
    found = await artifacts.find(["videos/l1/a.mp4"])
    ref = ArtifactRef("videos/l1/a.mp4", sha, len(data))
    assert found == {"videos/l1/a.mp4": ref}
    assert seen.take() == (Counter(contents=1), Counter())
    assert await read(artifacts, ref) == data
    assert seen.take() == (Counter(), Counter())  # the bytes came with the contents answer
    assert state.values == {}  # no listing was made, so nothing of it is cached
    # Served once, then dropped: another open() downloads the blob.
    assert await read(artifacts, ref) == data
    assert seen.take() == (Counter(blobs=1), Counter())


async def test_kept_bytes_are_dropped_by_the_next_lookup(gh: GitHubStandIn) -> None:
    """A row found but never claimed leaves nothing behind once the next pass looks."""
    data = clip(5000)
    gh.put_file(REPO, "videos/a.mp4", data)
    artifacts = source(gh, JsonState())
    ref = (await artifacts.find(["videos/a.mp4"]))["videos/a.mp4"]
    assert ref is not None
    await artifacts.find(["videos/other.mp4"])
    seen = Requests(gh)
    assert await read(artifacts, ref) == data
    assert seen.take() == (Counter(blobs=1), Counter())


async def test_a_file_over_1_mb_costs_its_contents_answer_and_a_blob(gh: GitHubStandIn) -> None:
    data = clip(2 * INLINE_MAX)
    sha = gh.put_file(REPO, "videos/big.mp4", data)
    seen = Requests(gh)
    artifacts = source(gh, JsonState())
    ref = (await artifacts.find(["videos/big.mp4"]))["videos/big.mp4"]
    assert ref == ArtifactRef("videos/big.mp4", sha, len(data))
    assert await read(artifacts, ref) == data
    assert seen.take() == (Counter(contents=1, blobs=1), Counter())


async def test_an_lfs_pointer_by_path(gh: GitHubStandIn) -> None:
    data = clip(30_000)
    sha = gh.put_file(REPO, "videos/lfs.mp4", data, lfs=True)
    seen = Requests(gh)
    artifacts = source(gh, JsonState())
    ref = (await artifacts.find(["videos/lfs.mp4"]))["videos/lfs.mp4"]
    assert ref == ArtifactRef("videos/lfs.mp4", sha, len(data),
                              lfs_oid=hashlib.sha256(data).hexdigest())
    assert await read(artifacts, ref) == data
    assert seen.take() == (Counter(contents=1, lfs_batch=1), Counter())
    assert gh.objects.counts["lfs_object"] == 1


async def test_a_path_not_pushed_yet_is_none_once_the_listing_agrees(gh: GitHubStandIn) -> None:
    gh.put_files(REPO, FILES)
    seen = Requests(gh)
    artifacts = source(gh, JsonState())
    assert await artifacts.find(["videos/l1/none.mp4"]) == {"videos/l1/none.mp4": None}
    # The 404 alone cannot tell it from a repository the token cannot see: the listing can.
    assert seen.take() == (Counter(contents=1, trees=1), Counter())


async def test_an_empty_repository_has_nothing_yet(gh: GitHubStandIn) -> None:
    gh.add_repo("acme/empty", empty=True)
    gh.grant(TOKEN, "acme/empty")
    artifacts = source(gh, JsonState(), repo="acme/empty")
    assert await artifacts.find(["videos/a.mp4"]) == {"videos/a.mp4": None}


async def test_an_unknown_ref_by_path_is_not_found_as_by_the_listing(gh: GitHubStandIn) -> None:
    gh.put_files(REPO, FILES)
    artifacts = source(gh, JsonState(), ref="no-such-branch")
    with pytest.raises(RequestRejected) as caught:
        await artifacts.find(["videos/l1/a.mp4"])
    assert caught.value.status == 404 and f"{REPO}@no-such-branch not found" in \
        caught.value.message


async def test_three_paths_take_the_listing(gh: GitHubStandIn) -> None:
    gh.put_files(REPO, FILES)
    seen = Requests(gh)
    artifacts = source(gh, JsonState())
    wanted = ["videos/l1/a.mp4", "videos/l1/b.mp4", "videos/l2/c.mp4"]
    found = await artifacts.find(wanted)
    assert {p: (r.sha, r.size) if r else None for p, r in found.items()} == expected(FILES)
    assert seen.take() == (Counter(trees=1), Counter())
    # The same path twice is one path.
    await artifacts.find(["videos/l1/a.mp4", "videos/l1/a.mp4", "videos/l1/b.mp4"])
    assert seen.take() == (Counter(contents=2), Counter())


async def test_two_paths_are_asked_for_at_once(gh: GitHubStandIn) -> None:
    """Neither contents request is answered until both were sent (no timing involved)."""
    gh.put_files(REPO, FILES)
    both = asyncio.Event()
    arrived = 0

    class Together(httpx.AsyncBaseTransport):
        def __init__(self) -> None:
            self.inner = httpx.AsyncHTTPTransport()

        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            nonlocal arrived
            if "/contents/" in request.url.path:
                arrived += 1
                if arrived == 2:
                    both.set()
                await asyncio.wait_for(both.wait(), 10)  # one at a time would stop here
            return await self.inner.handle_async_request(request)

        async def aclose(self) -> None:
            await self.inner.aclose()

    artifacts = source(gh, JsonState(), transport=Together())
    found = await artifacts.find(["videos/l1/a.mp4", "videos/l2/c.mp4"])
    assert [r.size if r else None for r in found.values()] == [2000, 1500]


async def test_a_path_that_needs_quoting(gh: GitHubStandIn) -> None:
    path = "videos/l#1/a?b&c=d+e;f.mp4"  # every character check_github_path lets through
    check_github_path(path, "videos")
    data = clip(3000)
    gh.put_files(REPO, {path: data, "videos/l": b"not it"})
    artifacts = source(gh, JsonState(), ref="feature/x#1")
    gh.put_file(REPO, path, data, branch="feature/x#1")
    gh.log.clear()
    ref = (await artifacts.find([path]))[path]
    assert ref is not None and await read(artifacts, ref) == data
    (sent,) = [p for _, p, _ in gh.log]
    assert sent == (f"/repos/{REPO}/contents/videos/l%231/a%3Fb%26c%3Dd%2Be%3Bf.mp4"
                    "?ref=feature%2Fx%231")


async def test_wrong_inline_bytes_fail_verification(gh: GitHubStandIn) -> None:
    data = clip(20_000)
    gh.put_file(REPO, "videos/a.mp4", data)
    gh.inject("contents", Fault("wrong_bytes"))
    artifacts = source(gh, JsonState())
    ref = (await artifacts.find(["videos/a.mp4"]))["videos/a.mp4"]
    assert ref is not None and ref.sha == gitdata.blob_sha(data)
    with pytest.raises(ContentMismatch, match="do not match"):
        await read(artifacts, ref)
    assert await read(artifacts, ref) == data  # the retry downloads the blob


async def test_a_directory_or_submodule_is_settled_by_the_listing(gh: GitHubStandIn) -> None:
    """What the listing says for them (no file there), at the cost of one more request."""
    gh.put_files(REPO, {"videos/d.mp4/inner.mp4": b"x" * 100})
    with gh.lock:
        repo = gh.repos[REPO]
        repo.commit({"videos/sub.mp4": Entry("160000", "commit", "c" * 40)}, "main", 0)
    seen = Requests(gh)
    artifacts = source(gh, JsonState())
    assert await artifacts.find(["videos/d.mp4", "videos/sub.mp4"]) == {
        "videos/d.mp4": None, "videos/sub.mp4": None}
    assert seen.take() == (Counter(contents=2, trees=1), Counter())


def contents_answer(path: str, **fields: Any) -> dict[str, Any]:
    data = clip(1000)
    return {"type": "file", "path": path, "sha": gitdata.blob_sha(data), "size": len(data),
            "content": gitdata.b64_lines(data).decode(), "encoding": "base64", **fields}


async def test_a_followed_symlink_is_settled_by_the_listing(gh: GitHubStandIn) -> None:
    """GitHub answers a symlink to a file with that file (its own path); the listing lists
    the link itself, so the listing decides, as it would with three files to find."""
    gh.put_files(REPO, FILES)
    listed = Counter[str]()
    inner = httpx.AsyncHTTPTransport()

    async def answer(request: httpx.Request) -> httpx.Response:
        if "/contents/" in request.url.path:
            return httpx.Response(200, json=contents_answer("videos/elsewhere.mp4"))
        listed[request.url.path] += 1
        return await inner.handle_async_request(request)

    artifacts = source(gh, JsonState(), transport=httpx.MockTransport(answer))
    try:
        found = await artifacts.find(["videos/l1/a.mp4"])
    finally:
        await inner.aclose()
    assert found == {"videos/l1/a.mp4": ArtifactRef("videos/l1/a.mp4",
                                                    gitdata.blob_sha(b"a" * 2000), 2000)}
    assert list(listed) == [f"/repos/{REPO}/git/trees/main"]


async def test_a_pointer_whose_bytes_are_not_its_blob_is_refused(gh: GitHubStandIn) -> None:
    """An LFS pointer names what to fetch and is kept by blob SHA for good: inline bytes that
    are not the blob the answer names must not become one."""
    pointer = (b"version https://git-lfs.github.com/spec/v1\noid sha256:" + b"a" * 64
               + b"\nsize 5000\n")
    other = gitdata.blob_sha(pointer.replace(b"a" * 64, b"b" * 64))

    async def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=contents_answer(
            "videos/lfs.mp4", sha=other, size=len(pointer),
            content=gitdata.b64_lines(pointer).decode()))

    artifacts = source(gh, JsonState(), transport=httpx.MockTransport(answer))
    with pytest.raises(ProtocolError, match="does not match its blob SHA"):
        await artifacts.find(["videos/lfs.mp4"])


MALFORMED_CONTENTS: list[Any] = [
    "not json", 12, {"type": "file"}, contents_answer("videos/a.mp4", type=None),
    contents_answer("videos/a.mp4", type="blob"), contents_answer("videos/a.mp4", sha="../../x"),
    contents_answer("videos/a.mp4", size=-1), contents_answer("videos/a.mp4", size="1000"),
    contents_answer("videos/a.mp4", encoding="utf-8"),
    contents_answer("videos/a.mp4", content=None),
    contents_answer("videos/a.mp4", content="!!not base64!!"),
    contents_answer("videos/a.mp4", content="AAAA\n!AAAA\n"),  # lenient decoding would pass
]


@pytest.mark.parametrize("body", MALFORMED_CONTENTS)
async def test_a_malformed_contents_answer_is_a_protocol_error(gh: GitHubStandIn,
                                                               body: Any) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        content = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        return httpx.Response(200, content=content)

    artifacts = source(gh, JsonState(), transport=httpx.MockTransport(answer))
    with pytest.raises(ProtocolError):
        await artifacts.find(["videos/a.mp4"])


EDGE = [3000, INLINE_MAX - 1, INLINE_MAX, INLINE_MAX + 1, 2 * INLINE_MAX]
Kind = tuple[str, int]  # ("missing" | "file" | "lfs", size)
kinds: st.SearchStrategy[Kind] = st.one_of(
    st.just(("missing", 0)), st.tuples(st.just("file"), st.sampled_from(EDGE)),
    st.tuples(st.just("lfs"), st.sampled_from([3000, 2 * INLINE_MAX])))


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(files=st.lists(kinds, min_size=1, max_size=BY_PATH_MAX))
def test_any_few_files_by_path(shared_gh: GitHubStandIn, files: list[Kind]) -> None:
    """Up to BY_PATH_MAX paths of sizes around the 1 MB edge, present or not: find + open
    yield exactly the pushed bytes, for one request per file up to 1 MB or missing, two per
    larger file, one listing when any is missing, and contents + LFS batch (+ the object, on
    the other host) per LFS file."""
    gh, repo = shared_gh, f"acme/p{next(_repos)}"
    gh.add_repo(repo)
    gh.grant(TOKEN, repo)
    paths = [f"videos/{i}.mp4" for i in range(len(files))]
    pushed = {p: clip(size, p) for p, (kind, size) in zip(paths, files, strict=True)
              if kind != "missing"}
    for path, (kind, _) in zip(paths, files, strict=True):
        if kind != "missing":
            gh.put_file(repo, path, pushed[path], lfs=kind == "lfs")
    # A missing file (404) is confirmed by the listing; a small file's bytes stay in hand.
    want = Counter(contents=len(files), trees=int(any(k == "missing" for k, _ in files)))
    for kind, size in files:
        want["blobs"] += kind == "file" and size > INLINE_MAX
        want["lfs_batch"] += kind == "lfs"
    want = +want

    async def run() -> None:
        artifacts = source(gh, JsonState(), repo=repo)
        try:
            seen = Requests(gh)
            found = await artifacts.find(paths)
            got = {p: await read(artifacts, r) for p, r in found.items() if r is not None}
            assert got == pushed
            assert seen.take() == (want, Counter())
        finally:
            await close(artifacts)

    asyncio.run(run())
