"""The fakes in `videopoll.testing` behave like the services they stand in for."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from videopoll.engine.verify import verified
from videopoll.errors import ArtifactMissing, ConfigError, ServerError, ShortBody
from videopoll.model import AgentState, Status
from videopoll.testing import (
    HTML_PAGE,
    FakeAgent,
    FakeArtifacts,
    FakeClock,
    InMemoryStore,
    fake_mp4,
    git_blob_sha,
    lfs_pointer,
)


async def test_fake_clock_moves_only_when_told() -> None:
    clock = FakeClock(datetime(2026, 3, 1, 12, tzinfo=UTC))
    start, mono = clock.now(), clock.monotonic()
    assert start.tzinfo is not None and start.utcoffset() == timedelta(0)
    assert clock.now() == start
    clock.advance(1.5)
    await clock.sleep(30)
    assert clock.now() - start == timedelta(seconds=31.5)
    assert clock.monotonic() - mono == 31.5 and clock.slept == [30]
    with pytest.raises(ValueError):
        clock.advance(-1)
    with pytest.raises(ValueError):
        FakeClock(datetime(2026, 1, 1))


async def test_agent_states_are_asked_in_batches_of_99() -> None:
    agent = FakeAgent()
    ids = [f"{n:032x}" for n in range(250)]
    agent.set(ids[0], Status.FINISHED)
    agent.set(ids[1], AgentState(Status.FAILED, "ERROR", None, reason="sandbox died"))
    agent.set(ids[2], Status.GENERATING)
    agent.set(ids[2], None)  # forgotten: unknown again
    got = await agent.states(ids)
    assert [len(batch) for name, batch in agent.calls] == [99, 99, 52]
    assert agent.count("states") == 3
    assert got[ids[0]] == AgentState(Status.FINISHED, "RUNNING", "finished")
    failed = got[ids[1]]
    assert failed is not None and failed.reason == "sandbox died"
    assert got[ids[2]] is None and len(got) == 250


async def test_agent_faults_fire_once_per_switch() -> None:
    agent = FakeAgent()
    agent.fail_next("states", ServerError("HTTP 502", service="openhands"))
    with pytest.raises(ServerError):
        await agent.states(["a" * 32])
    assert await agent.states(["a" * 32]) == {"a" * 32: None}
    with pytest.raises(AttributeError):
        agent.fail_next("no_such_method", ServerError())


async def test_agent_start_tasks_resolve_to_conversations() -> None:
    agent = FakeAgent()
    tasks = [await agent.start(prompt=f"make video {n}", repository="o/r", branch="main",
                               title=f"L{n}", secrets={"GEMINI_API_KEY": "s3cret"})
             for n in range(3)]
    assert all(t.state is Status.STARTING for t in tasks)
    assert agent.started[0]["secrets"] == {"GEMINI_API_KEY": "s3cret"}
    cid = agent.ready(tasks[0].id)
    agent.fail_start(tasks[1].id, "no capacity")
    got = await agent.resolve([t.id for t in tasks] + ["unknown"])
    first, second, third = (got[t.id] for t in tasks)
    assert first is not None and (first.state, first.conversation_id) == (Status.GENERATING, cid)
    assert second is not None and (second.state, second.detail) == (Status.FAILED, "no capacity")
    assert third is not None and third.state is Status.STARTING
    assert got["unknown"] is None
    assert (await agent.states([cid]))[cid] == AgentState(Status.GENERATING, "RUNNING", "running")
    assert await agent.check() == [("openhands", True, "fake agent")]


def test_git_blob_sha_matches_git() -> None:
    assert git_blob_sha(b"hello\n") == "ce013625030ba8dba906f756967f9e9ca394464a"  # git hash-object


def test_fake_mp4_is_deterministic_and_looks_like_an_mp4() -> None:
    data = fake_mp4(1000, seed=3)
    assert len(data) == 1000 and data[4:8] == b"ftyp" and data == fake_mp4(1000, seed=3)
    assert data != fake_mp4(1000, seed=4)


async def read(stream: AsyncIterator[bytes]) -> list[bytes]:
    return [piece async for piece in stream]


async def test_artifacts_list_and_stream_in_chunks() -> None:
    data = fake_mp4(10_000)
    artifacts = FakeArtifacts({"videos/a.mp4": data}, chunk_size=4096)
    found = await artifacts.find(["videos/a.mp4", "videos/missing.mp4"])
    ref = found["videos/a.mp4"]
    assert ref is not None and found["videos/missing.mp4"] is None
    assert (ref.sha, ref.size, ref.lfs) == (git_blob_sha(data), 10_000, False)
    pieces = await read(artifacts.open(ref))
    assert [len(p) for p in pieces] == [4096, 4096, 1808] and b"".join(pieces) == data
    assert b"".join(await read(verified(artifacts.open(ref), ref))) == data
    assert (artifacts.count("find"), artifacts.count("open")) == (1, 2)


async def test_lfs_refs_carry_the_pointer_sha_and_the_object_sha256() -> None:
    data = fake_mp4(5000)
    artifacts = FakeArtifacts(lfs=True)
    ref = artifacts.add("videos/big.mp4", data)
    assert ref.sha == git_blob_sha(lfs_pointer(data)) and ref.size == 5000
    assert ref.lfs_oid == hashlib.sha256(data).hexdigest()
    assert b"".join(await read(verified(artifacts.open(ref), ref))) == data
    assert not artifacts.add("videos/small.mp4", data, lfs=False).lfs  # a per-file choice


async def test_download_switches_spoil_the_bytes() -> None:
    data = fake_mp4(8000)
    artifacts = FakeArtifacts({"v.mp4": data}, chunk_size=1000)
    ref = artifacts.ref("v.mp4")
    artifacts.corrupt("v.mp4", times=1)
    spoiled = b"".join(await read(artifacts.open(ref)))
    assert len(spoiled) == len(data) and spoiled != data
    assert b"".join(await read(artifacts.open(ref))) == data  # `times=1` has run out
    artifacts.truncate("v.mp4", keep=3000)
    assert len(b"".join(await read(artifacts.open(ref)))) == 3000
    artifacts.serve_html("v.mp4")
    assert b"".join(await read(artifacts.open(ref))) == HTML_PAGE
    artifacts.break_after("v.mp4", 2000)
    got: list[bytes] = []
    with pytest.raises(ShortBody):
        async for piece in artifacts.open(ref):
            got.append(piece)
    assert len(b"".join(got)) == 2000


async def test_a_missing_lfs_object_is_listed_but_cannot_be_downloaded() -> None:
    """The pointer is in the tree, the LFS server lacks the object: the listing still shows
    the file and every download fails as the adapter reports it (ArtifactMissing, which the
    engine counts), until the file is committed again."""
    data = fake_mp4(3000)
    artifacts = FakeArtifacts({"videos/v.mp4": data})
    artifacts.missing_object("videos/v.mp4")
    ref = (await artifacts.find(["videos/v.mp4"]))["videos/v.mp4"]
    assert ref is not None and ref.lfs
    for _ in range(2):
        with pytest.raises(ArtifactMissing, match="LFS object .* unavailable"):
            await read(artifacts.open(ref))
    artifacts.add("videos/v.mp4", data)
    assert b"".join(await read(artifacts.open(ref))) == data


async def test_a_broken_lookup_leaves_only_that_conversation_undecided() -> None:
    """As the OpenHands adapter does when one conversation's events lookup fails: that id
    comes back with its lookup error, the others as they are."""
    agent = FakeAgent()
    agent.set("a" * 32, Status.GENERATING)
    agent.set("b" * 32, Status.FINISHED)
    agent.break_lookup("b" * 32)
    got = await agent.states(["a" * 32, "b" * 32])
    assert got["a" * 32] is not None and got["a" * 32].lookup_error is None
    broken = got["b" * 32]
    assert broken is not None and "events of b" in (broken.lookup_error or "")
    agent.heal_lookup("b" * 32)
    healed = (await agent.states(["b" * 32]))["b" * 32]
    assert healed is not None and healed.state is Status.FINISHED


async def test_artifact_faults_fire_when_the_stream_starts() -> None:
    artifacts = FakeArtifacts({"v.mp4": fake_mp4(100)})
    artifacts.fail_next("open", ServerError("HTTP 500", service="github"))
    stream = artifacts.open(artifacts.ref("v.mp4"))  # nothing sent yet
    with pytest.raises(ServerError):
        await read(stream)
    assert artifacts.count("open") == 1


async def test_store_logs_calls_and_injects_faults_before_or_after() -> None:
    clock = FakeClock()
    store = InMemoryStore(clock.now)
    aid = store.add_asset(store.add_lesson("L").id, conversation_id="c" * 32)
    store.fail_next("mark_finished", ServerError("HTTP 503", service="store"))
    with pytest.raises(ServerError):
        await store.mark_finished(aid)
    assert store.rows[aid].status is Status.GENERATING  # refused before the write
    store.fail_next("mark_finished", ServerError("response lost", service="store"), after=True)
    with pytest.raises(ServerError):
        await store.mark_finished(aid)
    assert store.rows[aid].status is Status.FINISHED  # written, then the answer was lost
    assert store.calls == [("mark_finished", (aid,)), ("mark_finished", (aid,))]
    assert store.count("mark_finished") == 2


async def test_store_reset_and_missing_bucket() -> None:
    store = InMemoryStore()
    lesson = store.add_lesson("L")
    aid = store.add_asset(lesson.id, conversation_id="c" * 32)
    asset = store.rows[aid].asset()

    async def body() -> AsyncIterator[bytes]:
        yield b"abc"

    store.bucket_exists = False
    with pytest.raises(ConfigError):
        await store.put(asset, "videos/a.mp4", body(), size=3, digest="d", owner="o")
    assert await store.ensure_bucket() == [("memory bucket", True, "created")]
    await store.put(asset, "videos/a.mp4", body(), size=3, digest="d", owner="o")
    assert store.objects == {"videos/a.mp4": b"abc"} and store.writes["videos/a.mp4"] == 1
    assert ("put", (aid, "videos/a.mp4", "<stream>", 3, "d", "o")) in store.calls
    store.reset()
    assert (store.rows, store.lessons, store.objects, store.calls) == ({}, {}, {}, [])
    assert not store.writes
