"""One pass of the engine over in-memory fakes: decisions, counts and what is called."""

from __future__ import annotations

import math

import pytest

from videopoll.errors import AuthError, ServerError, Unreachable
from videopoll.model import Action, AgentState, Status
from videopoll.testing import fake_mp4

from .conftest import MP4, World


def counts(summary: object) -> tuple[int, int, int, int, int]:
    s = summary.to_json()  # type: ignore[attr-defined]
    assert s["checked"] == s["stillGenerating"] + s["processed"] + s["failed"]
    return s["checked"], s["stillGenerating"], s["found"], s["processed"], s["failed"]


async def test_running_conversations_cost_one_batch_per_99_and_no_github(world: World) -> None:
    """300 running conversations: 4 state batches, not one listing."""
    for _ in range(300):
        world.video(Status.GENERATING)
    summary = await world.poll()
    assert counts(summary) == (300, 300, 0, 0, 0)
    assert world.agent.count("states") == math.ceil(300 / 99)
    assert world.artifacts.calls == []
    assert {i.action for i in summary.items} == {Action.NONE}


async def test_a_finished_video_is_stored_and_marked_ready(world: World) -> None:
    row = world.video(Status.FINISHED, file=MP4)
    summary = await world.poll()
    assert counts(summary) == (1, 0, 1, 1, 0)
    stored = world.row(row.id)
    key = f"videos/{row.lesson_id}/{row.id}.mp4"
    assert (stored.status, stored.storage_path) == (Status.READY, key)
    assert world.store.objects[key] == MP4 and world.store.writes[key] == 1
    assert world.artifacts.count("find") == 1
    assert summary.items[0].action is Action.STORED


async def test_lfs_videos_are_verified_by_sha256(world: World) -> None:
    row = world.video(Status.FINISHED, file=MP4, lfs=True)
    summary = await world.poll()
    assert summary.processed == 1 and world.row(row.id).status is Status.READY


async def test_one_listing_serves_every_finished_video(world: World) -> None:
    rows = [world.video(Status.FINISHED, file=fake_mp4(5000, seed=i)) for i in range(7)]
    rows += [world.video(Status.GENERATING) for _ in range(5)]
    summary = await world.poll()
    assert counts(summary) == (12, 5, 7, 7, 0)
    assert world.artifacts.count("find") == 1 and world.artifacts.count("open") == 7


async def test_missing_file_waits_for_the_grace_then_fails(world: World) -> None:
    row = world.video(Status.FINISHED)
    first = await world.poll()
    assert counts(first) == (1, 1, 0, 0, 0)
    assert world.row(row.id).status is Status.FINISHED
    world.clock.advance(599)
    assert (await world.poll()).failed == 0
    world.clock.advance(1)
    last = await world.poll()
    assert counts(last) == (1, 0, 0, 0, 1)
    assert world.row(row.id).error == "conversation finished but video not in GitHub"


async def test_grace_counts_from_when_the_agent_finished_not_from_creation(world: World
                                                                          ) -> None:
    row = world.video(Status.GENERATING)
    world.clock.advance(3000)
    await world.poll()
    world.agent.set(row.conversation_id or "", Status.FINISHED)
    await world.poll()
    world.clock.advance(300)
    assert (await world.poll()).failed == 0  # 300 s after finishing, 3300 s after creation


async def test_stuck_generation_fails_after_the_limit(world: World) -> None:
    row = world.video(Status.GENERATING)
    world.clock.advance(3599)
    assert (await world.poll()).failed == 0
    world.clock.advance(1)
    summary = await world.poll()
    assert summary.failed == 1 and "stuck" in (world.row(row.id).error or "")


async def test_agent_errors_fail_the_row_with_the_agents_reason(world: World) -> None:
    row = world.video(AgentState(Status.FAILED, "RUNNING", "error", "LLM quota exceeded"))
    summary = await world.poll()
    assert counts(summary) == (1, 0, 0, 0, 1)
    assert world.row(row.id).error == "LLM quota exceeded"
    assert world.artifacts.calls == []


async def test_unknown_conversation_waits_five_minutes_then_fails(world: World) -> None:
    """The account has conversations (this key sees them), just not this one any more."""
    world.agent.set("e" * 32, Status.GENERATING)  # some other conversation of the account
    row = world.video(None)
    assert (await world.poll()).still_generating == 1
    world.clock.advance(300)
    await world.poll()
    assert world.row(row.id).error == "conversation not found"


async def test_one_unknown_conversation_of_a_key_that_sees_none_is_not_failed(
        world: World) -> None:
    """One pending video, and the key sees no conversation at all: a key of another account
    (or another server) far more likely than a video lost, so it waits, and says why."""
    row = world.video(None)
    world.clock.advance(300)
    summary = await world.poll()
    assert world.row(row.id).status is Status.GENERATING
    assert "knows none of the 1 pending conversations" in summary.errors[0].detail
    assert world.agent.count("visible") == 1


async def test_malformed_ids_and_unsafe_paths_fail_without_requests(world: World) -> None:
    lesson, other = world.store.add_lesson("x"), world.store.add_lesson("y")
    bad_id = world.store.add_asset(lesson.id, conversation_id="not-a-conversation",
                                   github_path=f"videos/{lesson.id}/a.mp4")
    bad_path = world.store.add_asset(other.id, conversation_id="a" * 32,
                                     github_path="videos/../../etc/passwd.mp4")
    good = world.video(Status.GENERATING)
    summary = await world.poll()
    assert counts(summary) == (3, 1, 0, 0, 2)
    assert world.store.rows[bad_id].error == "malformed conversation id"
    assert "unsafe github_path" in (world.store.rows[bad_path].error or "")
    asked = [cid for name, batch in world.agent.calls if name == "states" for cid in batch]
    assert asked == [good.conversation_id]


async def test_start_tasks_resolve_fail_or_wait(world: World) -> None:
    lessons = [world.store.add_lesson(f"t{i}") for i in range(3)]
    tasks = [await world.agent.start(prompt="p", repository="o/r", branch="main", title="t")
             for _ in range(3)]
    ids = [(await world.store.insert_asset(
        asset_id=f"00000000-0000-4000-8000-00000000000{i}", lesson_id=lesson.id, user_id=None,
        start_task_id=t.id, github_path=f"videos/{lesson.id}/{i}.mp4")).id
        for i, (t, lesson) in enumerate(zip(tasks, lessons, strict=True))]
    cid = world.agent.ready(tasks[0].id)
    world.agent.fail_start(tasks[1].id, "no sandbox capacity")
    summary = await world.poll()
    assert counts(summary) == (3, 2, 0, 0, 1)
    assert [i.action for i in summary.items] == [Action.RESOLVED, Action.FAILED, Action.NONE]
    assert world.row(ids[0]).conversation_id == cid
    assert world.row(ids[0]).status is Status.GENERATING
    assert "no sandbox capacity" in (world.row(ids[1]).error or "")
    assert world.row(ids[2]).status is Status.STARTING


@pytest.mark.parametrize("exc", [Unreachable("openhands: down", service="openhands"),
                                 ServerError("openhands: HTTP 503", service="openhands")])
async def test_a_flaky_agent_defers_everything_and_fails_nothing(world: World,
                                                                 exc: Exception) -> None:
    rows = [world.video(Status.FINISHED, file=MP4) for _ in range(3)]
    world.agent.fail_next("states", exc)
    summary = await world.poll()
    assert counts(summary) == (3, 3, 0, 0, 0)
    assert {i.action for i in summary.items} == {Action.DEFERRED}
    assert [e.service for e in summary.errors] == ["openhands"]
    assert all(world.row(r.id).status is Status.GENERATING for r in rows)
    assert (await world.poll()).processed == 3


async def test_refused_credentials_end_the_pass(world: World) -> None:
    world.video(Status.GENERATING)
    world.agent.fail_next("states", AuthError("openhands: credentials refused",
                                              service="openhands"))
    with pytest.raises(AuthError):
        await world.poll()


async def test_agent_going_back_to_work_clears_finished(world: World) -> None:
    row = world.video(Status.FINISHED)
    await world.poll()
    assert world.row(row.id).status is Status.FINISHED
    world.agent.set(row.conversation_id or "", Status.GENERATING)
    await world.poll()
    assert world.row(row.id).status is Status.GENERATING
    assert world.row(row.id).finished_at is None


async def test_dry_run_changes_nothing(world: World) -> None:
    ok = world.video(Status.FINISHED, file=MP4)
    bad = world.video(AgentState(Status.FAILED, "ERROR", None, "boom"))
    summary = await world.poll(dry_run=True)
    assert summary.to_json()["dryRun"] is True
    assert (summary.processed, summary.failed) == (1, 1)
    assert world.row(ok.id).status is Status.GENERATING
    assert world.row(bad.id).status is Status.GENERATING
    assert world.store.objects == {} and world.artifacts.count("open") == 0
