"""GitHubArtifacts' listing against the GitHub stand-in: request counts, never times.

One pass lists the folder with ONE conditional request, `git/trees/{ref}?recursive=1` with
If-None-Match: 304 (free) while the tree is unchanged, 200 with the new listing when it is not.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from videopoll.errors import ProtocolError, RequestRejected
from videopoll.model import Service
from videopoll.sandbox import gitdata
from videopoll.sandbox.github import GitHubStandIn
from videopoll.services.github import GitHubArtifacts, github_headers, repeatable
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

