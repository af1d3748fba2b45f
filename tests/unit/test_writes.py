"""A pass's row writes go to the store in batches: its decisions (failures, status changes,
claims) in one guarded `apply`, its closing writes in as few as the transfers allow, each
change still guarded on its own."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace

import pytest

from videopoll.engine.writes import Writes
from videopoll.errors import RequestRejected, ServerError
from videopoll.model import AgentState, Status
from videopoll.states import Change, Event
from videopoll.testing import FakeAgent, InMemoryStore

from .conftest import MP4, World


def _rows(store: InMemoryStore, n: int) -> list[str]:
    """`n` generating rows, one lesson each (a lesson has one open video)."""
    ids = []
    for i in range(n):
        lesson = store.add_lesson(f"l{i}")
        ids.append(store.add_asset(lesson.id, conversation_id=f"{i:032x}",
                                   github_path=f"videos/{lesson.id}/{i}.mp4"))
    return ids


def counted(store: InMemoryStore) -> list[int]:
    """The size of each `apply` the store receives, in order."""
    sizes: list[int] = []
    original = store.apply

    async def apply(changes: Sequence[Change]) -> list[bool]:
        sizes.append(len(changes))
        return await original(changes)

    store.apply = apply  # type: ignore[method-assign]
    return sizes


@pytest.mark.parametrize(("n", "finished", "errored"), [(10, 1, 1), (100, 5, 5), (1000, 50, 50)])
async def test_a_pass_writes_all_its_decisions_in_one_batch(world: World, n: int, finished: int,
                                                            errored: int) -> None:
    """The issue's passes: every decision of the pass in one apply (plus the few batches the
    transfers' mark-ready go out in), never one write a row."""
    done = [world.video(Status.FINISHED, file=MP4) for _ in range(finished)]
    for _ in range(errored):
        world.video(AgentState(Status.FAILED, reason="renderer crashed"))
    for _ in range(n - finished - errored):
        world.video(Status.GENERATING)
    sizes = counted(world.store)
    summary = await world.poll()
    assert (summary.checked, summary.processed, summary.failed) == (n, finished, errored)
    assert sizes[0] == errored + 2 * finished  # failures, and finish + claim of each finished
    ready = sizes[1:]
    assert sum(ready) == finished and len(ready) <= max(1, finished // 2)
    assert all(world.row(v.id).status is Status.READY for v in done)


async def test_nothing_to_decide_writes_nothing(world: World) -> None:
    for _ in range(20):
        world.video(Status.GENERATING)
    sizes = counted(world.store)
    assert (await world.poll()).still_generating == 20
    assert sizes == []


async def test_a_dry_run_writes_nothing(world: World) -> None:
    world.video(Status.FINISHED, file=MP4)
    world.video(AgentState(Status.FAILED, reason="x"))
    sizes = counted(world.store)
    await world.poll(dry_run=True)
    assert sizes == []


async def test_a_rejected_change_is_found_by_splitting_and_the_rest_applies() -> None:
    """One change the store refuses among 16: halves are tried until it stands alone (a
    handful of extra requests, not one a row), every other change applies."""
    store = InMemoryStore()
    ids = _rows(store, 16)
    bad = ids[11]
    store.fail_next("mark_failed", RequestRejected("store: HTTP 400", service="store"),
                    times=100, match=bad)
    sizes = counted(store)
    writes = Writes(store)
    writes.join(16)

    async def row(asset_id: str) -> bool | BaseException:
        try:
            return await writes.one(Change(asset_id, Event.FAIL, value="x"))
        except RequestRejected as exc:
            return exc
        finally:
            writes.leave()

    answers = await asyncio.gather(*(row(i) for i in ids))
    assert [isinstance(a, RequestRejected) for a in answers] == [i == bad for i in ids]
    assert all(a is True for i, a in zip(ids, answers, strict=True) if i != bad)
    assert sizes[0] == 16 and len(sizes) <= 1 + 2 * 4  # log2(16) levels, two halves each
    assert {store.rows[i].status for i in ids if i != bad} == {Status.FAILED}


async def test_a_store_error_reaches_every_row_of_its_batch_once() -> None:
    store = InMemoryStore()
    ids = _rows(store, 4)
    store.fail_next("mark_failed", ServerError("store: HTTP 503", service="store"))
    sizes = counted(store)
    writes = Writes(store)
    writes.join(4)

    async def row(asset_id: str) -> object:
        try:
            return await writes.one(Change(asset_id, Event.FAIL, value="x"))
        except ServerError as exc:
            return exc
        finally:
            writes.leave()

    answers = await asyncio.gather(*(row(i) for i in ids))
    assert all(isinstance(a, ServerError) for a in answers) and sizes == [4]
    assert {store.rows[i].status for i in ids} == {Status.GENERATING}


async def test_a_lone_writer_does_not_wait_for_the_linger() -> None:
    """Everyone still at work is waiting: the batch goes at once (no 0.25 s per write)."""
    store = InMemoryStore()
    lesson = store.add_lesson("l")
    asset = store.add_asset(lesson.id, conversation_id="a" * 32,
                            github_path=f"videos/{lesson.id}/a.mp4")
    writes = Writes(store, linger=3600)
    writes.join(1)
    assert await asyncio.wait_for(writes.one(Change(asset, Event.FAIL, value="x")), 5)


class LateReasons(FakeAgent):
    """An agent whose failed conversations need a lookup for their reason (OpenHands'
    error events): `states(explain_later=True)` answers them `unexplained`, and `explain`
    answers only once `reasons` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.reasons = asyncio.Event()
        self.explained: list[str] = []

    async def states(self, conversation_ids: Sequence[str], *, explain_later: bool = False
                     ) -> dict[str, AgentState | None]:
        found = await super().states(conversation_ids)
        return {cid: replace(s, unexplained=True)
                if explain_later and s is not None and s.state is Status.FAILED else s
                for cid, s in found.items()}

    async def explain(self, conversation_id: str, state: AgentState) -> AgentState:
        await asyncio.wait_for(self.reasons.wait(), 5)
        self.explained.append(conversation_id)
        return replace(state, reason="renderer crashed", unexplained=False)


def late_world(world: World) -> tuple[World, LateReasons]:
    agent = LateReasons()
    return replace(world, agent=agent), agent


async def test_a_claim_does_not_wait_for_a_failure_s_reason(world: World) -> None:
    """N=10's everyday pass (issue 14): the finished row's claim goes out while the failed
    row's reason is still being looked up, and the failure then rides with the ready mark —
    the same two applies as before, neither waiting for the lookup."""
    world, agent = late_world(world)
    done = world.video(Status.FINISHED, file=MP4)
    failed = world.video(AgentState(Status.FAILED, "RUNNING", "error", reason="agent error"))
    for _ in range(8):
        world.video(Status.GENERATING)
    sizes = counted(world.store)
    original = world.store.apply

    async def apply(changes: Sequence[Change]) -> list[bool]:
        answer = await original(changes)
        if any(c.event is Event.CLAIM for c in changes):
            agent.reasons.set()  # the reason arrives only after the claim was written
        return answer

    world.store.apply = apply  # type: ignore[method-assign]
    summary = await world.poll()
    assert (summary.processed, summary.failed) == (1, 1)
    assert sizes == [2, 2]  # finish + claim; then ready + the failure, together
    assert world.row(done.id).status is Status.READY
    assert (world.row(failed.id).status, world.row(failed.id).error) == (
        Status.FAILED, "renderer crashed")


async def test_a_late_failure_with_nothing_else_at_work_goes_at_once(world: World) -> None:
    """No transfer to ride with: the failure is written as soon as its reason is in."""
    world, agent = late_world(world)
    agent.reasons.set()
    failed = world.video(AgentState(Status.FAILED, "RUNNING", "error"))
    world.video(Status.GENERATING)
    sizes = counted(world.store)
    summary = await asyncio.wait_for(world.poller(late_linger=3600.0).poll_once(), 10)
    assert (summary.failed, sizes) == (1, [1])
    assert world.row(failed.id).error == "renderer crashed"


async def test_a_change_rides_with_the_first_batch_due() -> None:
    """A change that may wait longer goes with the next batch, not on its own clock."""
    store = InMemoryStore()
    ids = _rows(store, 2)
    sizes = counted(store)
    writes = Writes(store, linger=0.01)
    writes.join(3)  # a third row is at work and never writes: only deadlines send
    patient = asyncio.ensure_future(writes.apply([Change(ids[0], Event.FAIL, value="x")],
                                                 linger=3600.0))
    await asyncio.sleep(0)
    assert await asyncio.wait_for(writes.one(Change(ids[1], Event.FAIL, value="y")), 5)
    assert await patient == [True]
    assert sizes == [2]
