"""A failure while handling one row stays with that row; the pass always ends with its
summary; a missing artifact or an unknown account never leaves rows stuck or wrongly failed."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from videopoll.errors import AuthError, RequestRejected, ServerError, Unreachable
from videopoll.model import Action, AgentState, Status

from .conftest import MP4, World


def actions(world: World, summary: object) -> dict[str, tuple[Status, Action]]:
    items = summary.items  # type: ignore[attr-defined]
    return {i.asset_id: (world.row(i.asset_id).status, i.action) for i in items}


def _five_rows(world: World) -> dict[str, str]:
    """One row for each kind of write a pass makes, by the method that writes it."""
    finished = world.video(Status.FINISHED)  # no file: claimed, then handed back
    failed = world.video(Status.FAILED)
    stored = world.video(Status.FINISHED, file=MP4)
    world.store.rows[stored.id].status = Status.FINISHED  # so it skips mark_finished
    back = world.video(Status.GENERATING)
    world.store.rows[back.id].status = Status.FINISHED  # agent went back to work
    lesson = world.store.add_lesson("starting")
    task = uuid.uuid4().hex
    starting = world.store.add_asset(lesson.id, github_path=f"videos/{lesson.id}/s.mp4")
    world.store.rows[starting].status = Status.STARTING
    world.store.rows[starting].start_task_id = task
    world.agent.ready(task)
    return {"mark_finished": finished.id, "mark_failed": failed.id, "mark_generating": back.id,
            "resolve_start": starting, "claim": stored.id, "mark_ready": stored.id}


METHODS = ["mark_finished", "mark_failed", "mark_generating", "resolve_start", "claim",
           "mark_ready"]


@pytest.mark.parametrize("method", METHODS)
async def test_a_change_the_store_rejects_defers_only_its_row(world: World, method: str
                                                              ) -> None:
    """One row's change rejected (a 4xx about that change): the pass's batch is split until
    the change stands alone, that row waits for the next pass, every other row is decided as
    usual, and the pass returns its summary with the error in it."""
    hit = _five_rows(world)[method]
    # Rejected each time it is sent, as a change the store cannot take would be.
    world.store.fail_next(method, RequestRejected("store: HTTP 400", service="store"),
                          times=50, match=hit)
    summary = await world.poll()
    assert summary.checked == 5
    assert len(summary.errors) >= 1 and summary.errors[0].service == "store"
    deferred = [i.asset_id for i in summary.items if i.action is Action.DEFERRED]
    assert deferred == [hit], [(i.detail, i.action) for i in summary.items]
    decided = {i.action for i in summary.items} - {Action.DEFERRED}
    assert decided, "the other rows were decided"
    assert summary.checked == summary.still_generating + summary.processed + summary.failed


@pytest.mark.parametrize("method", METHODS)
async def test_a_store_down_for_a_batch_defers_its_rows_and_nothing_else(
        world: World, method: str) -> None:
    """The store fails a whole batch (a 503 after the client's retries): the rows of that
    batch wait, none is failed or stored wrongly, the others are decided, the pass ends
    with its summary, and the next pass settles everything."""
    rows = _five_rows(world)
    hit = rows[method]
    before = {i: world.row(i).status for i in rows.values()}
    world.store.fail_next(method, ServerError("store: HTTP 503", service="store"))
    summary = await world.poll()
    assert summary.checked == 5 and summary.errors[0].service == "store"
    deferred = {i.asset_id for i in summary.items if i.action is Action.DEFERRED}
    assert hit in deferred
    for asset_id in deferred - {rows["mark_ready"]}:  # a deferred decision changed nothing
        assert world.row(asset_id).status is before[asset_id]
    assert summary.checked == summary.still_generating + summary.processed + summary.failed
    again = await world.poll()
    assert not again.errors
    assert world.row(rows["claim"]).status is Status.READY
    assert world.row(rows["mark_failed"]).status is Status.FAILED


async def test_pending_failing_still_ends_with_a_summary(world: World) -> None:
    """The store cannot even list the rows: an empty pass whose errors say why (exit 1)."""
    world.video(Status.FINISHED, file=MP4)
    world.store.fail_next("pending", Unreachable("store: unreachable", service="store"))
    summary = await world.poll()
    assert summary.checked == 0 and summary.errors[0].detail == "store: unreachable"
    assert (await world.poll()).processed == 1  # and the next pass goes on


async def test_watch_goes_on_after_a_failed_pass(world: World) -> None:
    """`watch` keeps polling after a pass that failed as a whole."""
    world.video(Status.FINISHED, file=MP4)
    world.store.fail_next("pending", Unreachable("store: unreachable", service="store"))
    seen: list[int] = []
    done = await world.poller().watch(interval=1, sleep=world.clock.sleep, until_done=True,
                                      timeout=60, on_pass=lambda s: seen.append(s.processed))
    assert done and seen == [0, 1]


async def test_refused_credentials_still_end_the_pass_and_cancel_the_rest(
        world: World) -> None:
    """A refused key is no row's own problem: the pass ends (exit 3) and no sibling task is
    left writing after it."""
    for _ in range(5):
        world.video(Status.FAILED)
    world.store.fail_next("mark_failed", AuthError("store: refused", service="store"))
    with pytest.raises(AuthError):
        await world.poll()
    await asyncio.sleep(0)
    pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    assert pending == []


async def test_a_listed_file_whose_bytes_are_gone_fails_after_max_attempts(
        world: World) -> None:
    """An LFS pointer pushed without its object is not deferred forever: each try counts,
    and after VIDEOPOLL_MAX_ATTEMPTS the video fails with the reason."""
    row = world.video(Status.FINISHED, file=MP4, lfs=True)
    world.artifacts.missing_object(row.github_path or "")
    for attempt in range(1, 4):
        summary = await world.poll()
        status = world.row(row.id).status
        if attempt < 3:
            assert status is Status.FINISHED and summary.items[0].action is Action.DEFERRED
        else:
            assert status is Status.FAILED
            assert "unavailable" in (world.row(row.id).error or "")
            assert "(3 attempts)" in (world.row(row.id).error or "")


async def test_when_openhands_knows_none_of_several_ids_nothing_is_failed(
        world: World) -> None:
    """A key of another account (or another server): every id unknown. Failing them all
    "conversation not found" would be wrong; the pass fails none and says why."""
    rows = [world.video(None) for _ in range(4)]
    world.clock.advance(3600)
    summary = await world.poll()
    assert {world.row(r.id).status for r in rows} == {Status.GENERATING}
    assert summary.failed == 0 and summary.still_generating == 4
    assert "knows none of the 4 pending conversations" in summary.errors[0].detail
    assert "OPENHANDS_BASE_URL" in summary.errors[0].detail


async def test_one_unknown_id_among_known_ones_still_fails_after_its_grace(
        world: World) -> None:
    """The guard is for all-unknown passes only: a single lost conversation fails as before."""
    lost = world.video(None)
    world.video(Status.GENERATING)
    world.clock.advance(3000)
    summary = await world.poll()
    assert world.row(lost.id).status is Status.FAILED
    assert world.row(lost.id).error == "conversation not found" and not summary.errors


async def test_a_state_that_could_not_be_read_defers_only_that_row(world: World) -> None:
    """A conversation whose event log did not answer waits; its neighbours are decided."""
    unread = world.video(None)
    world.agent.set(unread.conversation_id or "", AgentState(
        Status.GENERATING, "PAUSED", None, lookup_error="openhands: events HTTP 500"))
    done = world.video(Status.FAILED)
    summary = await world.poll()
    got = actions(world, summary)
    assert got[unread.id] == (Status.GENERATING, Action.DEFERRED)
    assert got[done.id] == (Status.FAILED, Action.FAILED)
    assert summary.errors[0].detail == "openhands: events HTTP 500"


@pytest.mark.parametrize("why", ["agent failed", "file never came", "too large"])
async def test_a_killed_pollers_transfer_is_settled_once_its_lease_runs_out(
        world: World, why: str) -> None:
    """A poller killed mid-transfer left the row transferring under its claim. While the
    lease is live nobody touches it; once it has run out, the next pass settles the row by
    what the world says now, whoever runs it — and `watch --until-done` can end."""
    if why == "agent failed":
        row = world.video(Status.FAILED)
    elif why == "file never came":
        row = world.video(Status.FINISHED)
    else:
        row = world.video(Status.FINISHED, file=b"\0" * 20_000_000)
    world.store.rows[row.id].status = Status.FINISHED
    world.store.rows[row.id].finished_at = world.clock.now()
    assert await world.store.claim(row.id, "killed:1", 300)
    held = await world.poll()
    assert held.items[0].action is Action.SKIPPED
    world.clock.advance(3600)
    await world.poll()
    assert world.row(row.id).status is Status.FAILED
