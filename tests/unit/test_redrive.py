"""`retry`'s cause of a failure, read from what a real pass recorded: every way a transfer
fails reads as a transfer failure, every way the agent fails as an agent failure (so a
reworded message cannot silently change what `retry` does), and the redrive on fakes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from videopoll.engine.redrive import cause_of, failed_rows, redrive
from videopoll.errors import NotFound, Refused
from videopoll.model import AgentState, Cause, Status, VideoAsset
from videopoll.testing import fake_mp4

from .conftest import MP4, World


async def _too_large(world: World) -> VideoAsset:
    row = world.video(Status.FINISHED, file=fake_mp4(20_000))
    await world.poller(max_bytes=10_000).poll_once()
    return row


async def _too_small(world: World) -> VideoAsset:
    return world.video(Status.FINISHED, file=b"tiny")


async def _not_mp4(world: World) -> VideoAsset:
    return world.video(Status.FINISHED, file=b"GIF89a" + bytes(4000))


async def _mismatch(world: World) -> VideoAsset:
    row = world.video(Status.FINISHED, file=MP4)
    world.artifacts.corrupt(row.github_path or "")
    return row


async def _missing_object(world: World) -> VideoAsset:
    row = world.video(Status.FINISHED, file=MP4, lfs=True)
    world.artifacts.missing_object(row.github_path or "")
    return row


async def _unsafe_path(world: World) -> VideoAsset:
    lesson = world.store.add_lesson("L")
    aid = world.store.add_asset(lesson.id, conversation_id="a" * 32,
                                github_path="videos/../etc/x.mp4")
    world.agent.set("a" * 32, Status.FINISHED)
    return world.row(aid)


async def _agent_error(world: World) -> VideoAsset:
    return world.video(AgentState(Status.FAILED, "RUNNING", "error", reason="ffmpeg crashed"))


async def _not_found(world: World) -> VideoAsset:
    row = world.video(None)
    world.clock.advance(3600)
    world.video(Status.GENERATING)  # the key sees conversations: that one is gone
    return row


async def _stuck(world: World) -> VideoAsset:
    row = world.video(Status.GENERATING)
    world.clock.advance(7200)
    return row


async def _no_file(world: World) -> VideoAsset:
    row = world.video(Status.FINISHED)
    await world.poll()
    world.clock.advance(601)
    return row


async def _error_after_finishing(world: World) -> VideoAsset:
    row = world.video(Status.FINISHED)
    await world.poll()  # finished, waiting for its file
    world.agent.set(row.conversation_id or "", AgentState(Status.FAILED, reason="AgentError: "
                                                          "ran out of budget"))
    return row


Make = Callable[[World], Awaitable[VideoAsset]]
CASES: list[tuple[str, Make, Cause]] = [
    ("too large", _too_large, Cause.TRANSFER),
    ("too small", _too_small, Cause.TRANSFER),
    ("not an MP4", _not_mp4, Cause.TRANSFER),
    ("bytes never match", _mismatch, Cause.TRANSFER),
    ("LFS object missing", _missing_object, Cause.TRANSFER),
    ("unsafe github_path", _unsafe_path, Cause.TRANSFER),
    ("agent error", _agent_error, Cause.AGENT),
    ("conversation not found", _not_found, Cause.AGENT),
    ("stuck", _stuck, Cause.AGENT),
    ("no file after the grace", _no_file, Cause.AGENT),
    ("error after finishing", _error_after_finishing, Cause.AGENT),
]


@pytest.mark.parametrize(("make", "cause"), [(m, c) for _, m, c in CASES],
                         ids=[name for name, _, _ in CASES])
async def test_the_cause_of_each_failure_a_pass_records(world: World, make: Make,
                                                        cause: Cause) -> None:
    row = await make(world)
    for _ in range(4):  # enough passes for VIDEOPOLL_MAX_ATTEMPTS (3)
        if world.row(row.id).status is Status.FAILED:
            break
        await world.poll()
    failed = world.row(row.id)
    assert failed.status is Status.FAILED
    assert cause_of(failed) is cause, failed.error


async def test_redrive_restarts_agent_failures_and_requeues_transfers(world: World) -> None:
    agent = await _agent_error(world)
    transfer = await _not_mp4(world)
    await world.poll()
    started: list[str] = []

    async def start(row: VideoAsset) -> VideoAsset:
        started.append(row.id)
        assert await world.store.record_start(row.id, "task-1")
        return world.row(row.id)

    rows = await failed_rows(world.store, None)
    dry = await redrive(world.store, rows, dry_run=True, start=None)
    assert {d.row.id: d.cause for d in dry} == {agent.id: Cause.AGENT,
                                                transfer.id: Cause.TRANSFER}
    assert world.row(agent.id).status is Status.FAILED and not started
    done = {d.row.id: d for d in await redrive(world.store, rows, dry_run=False, start=start)}
    assert started == [agent.id]
    assert done[agent.id].row.start_task_id == "task-1"
    assert done[agent.id].row.conversation_id != agent.conversation_id
    assert done[agent.id].reason == "ffmpeg crashed"
    assert done[transfer.id].row.status is Status.GENERATING
    assert done[transfer.id].row.conversation_id == transfer.conversation_id


async def test_failed_rows_refuses_unknown_and_unfailed_ids(world: World) -> None:
    live = world.video(Status.GENERATING)
    with pytest.raises(NotFound, match="asset not found"):
        await failed_rows(world.store, "00000000-0000-0000-0000-000000000000")
    with pytest.raises(Refused, match=f"asset {live.id} is generating, not failed"):
        await failed_rows(world.store, live.id)
