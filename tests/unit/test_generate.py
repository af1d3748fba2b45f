"""`generate` is safe to repeat and to race: the row comes first, under a conversation id
chosen here; a start that may have arrived is recognised before another is sent."""

from __future__ import annotations

import uuid

import pytest

from videopoll.engine.generate import generate
from videopoll.errors import Refused, ServerError
from videopoll.model import Status, VideoAsset
from videopoll.settings import Settings
from videopoll.testing import FakeAgent, FakeClock, InMemoryStore

from .conftest import World

SETTINGS = Settings(github_repo="org/artifacts")


class Killed(BaseException):
    """A SIGKILL between two awaits: no handler of ours ever sees it."""


async def test_the_row_is_written_before_the_agent_is_asked(world: World) -> None:
    """A kill right after the insert leaves a row a later run can finish, never an agent
    whose video nobody collects."""
    lesson = world.store.add_lesson("Fractions")
    world.agent.fail_next("start", Killed())
    with pytest.raises(Killed):
        await generate(world.store, world.agent, SETTINGS, lesson.id)
    [row] = world.store.rows.values()
    assert (row.status, row.start_task_id) == (Status.STARTING, None)
    assert row.conversation_id and len(row.conversation_id) == 32
    again = await generate(world.store, world.agent, SETTINGS, lesson.id)
    assert again.id == row.id and again.start_task_id is not None
    assert [c["conversation_id"] for c in world.agent.started] == [row.conversation_id]


async def test_a_start_whose_answer_was_lost_is_not_sent_again(world: World) -> None:
    """An ambiguous 5xx: the start arrived, the answer did not. The next run finds its start
    task by the conversation id it asked for and records it; no second agent."""
    lesson = world.store.add_lesson("Fractions")
    world.agent.fail_next("start", ServerError("openhands: HTTP 502"), after=True)
    with pytest.raises(ServerError):
        await generate(world.store, world.agent, SETTINGS, lesson.id)
    again = await generate(world.store, world.agent, SETTINGS, lesson.id)
    assert world.agent.count("start") == 1
    assert again.start_task_id == world.agent.started[0]["task"]
    world.agent.ready(again.start_task_id or "")
    summary = await world.poll()
    assert world.row(again.id).status is Status.GENERATING, summary.items


async def test_a_started_conversation_is_recognised_by_its_id(world: World) -> None:
    """The lost start already became a conversation: the rerun resolves the row."""
    lesson = world.store.add_lesson("Fractions")
    world.agent.fail_next("start", ServerError("openhands: HTTP 502"), after=True)
    with pytest.raises(ServerError):
        await generate(world.store, world.agent, SETTINGS, lesson.id)
    world.agent.ready(world.agent.started[0]["task"])
    again = await generate(world.store, world.agent, SETTINGS, lesson.id)
    assert again.status is Status.GENERATING and world.agent.count("start") == 1


async def test_a_start_never_made_is_failed_by_a_pass_after_the_grace(world: World) -> None:
    """Nobody reruns generate: the pass waits out the not-found grace, finds no start task
    for the row's conversation id, then fails the row with a reason that says what to do,
    rather than leaving it starting forever."""
    world.agent.set("e" * 32, Status.GENERATING)  # the key sees its account's conversations
    lesson = world.store.add_lesson("Fractions")
    world.agent.fail_next("start", Killed())
    with pytest.raises(Killed):
        await generate(world.store, world.agent, SETTINGS, lesson.id)
    assert (await world.poll()).still_generating == 1
    world.clock.advance(301)
    await world.poll()
    [row] = world.store.rows.values()
    assert row.status is Status.FAILED and "run `videopoll generate`" in (row.error or "")


async def test_a_refused_start_fails_the_row_at_once(world: World) -> None:
    """The agent says no (4xx): the video will never start; the row says why."""
    from videopoll.errors import RequestRejected

    lesson = world.store.add_lesson("Fractions")
    world.agent.fail_next("start", RequestRejected("openhands: HTTP 422: bad repo"))
    with pytest.raises(RequestRejected):
        await generate(world.store, world.agent, SETTINGS, lesson.id)
    [row] = world.store.rows.values()
    assert row.status is Status.FAILED and "bad repo" in (row.error or "")


class RacingStore(InMemoryStore):
    """Another run inserts its row between our check and our insert."""

    async def open_video(self, lesson_id: str) -> VideoAsset | None:
        found = await super().open_video(lesson_id)
        if found is None and not self.rows:
            self.add_asset(lesson_id, conversation_id=uuid.uuid4().hex, asset_id=WINNER)
        return found


WINNER = "0f0f0f0f-0000-4000-8000-000000000001"


async def test_the_loser_of_a_race_is_told_the_winners_row() -> None:
    """The database's one-open-video index decides; the loser starts no agent."""
    clock = FakeClock()
    store, agent = RacingStore(clock.now), FakeAgent()
    lesson = store.add_lesson("Fractions")
    with pytest.raises(Refused) as refused:
        await generate(store, agent, SETTINGS, lesson.id)
    assert WINNER in refused.value.message and agent.count("start") == 0


async def test_force_replaces_the_open_video(world: World) -> None:
    """--force: the lesson's open video is failed ("replaced"), then a new one starts."""
    lesson = world.store.add_lesson("Fractions")
    first = await generate(world.store, world.agent, SETTINGS, lesson.id)
    with pytest.raises(Refused):
        await generate(world.store, world.agent, SETTINGS, lesson.id)
    second = await generate(world.store, world.agent, SETTINGS, lesson.id, force=True)
    assert second.id != first.id
    assert world.row(first.id).status is Status.FAILED
    assert world.row(first.id).error == "replaced by a new video (generate --force)"


async def test_a_lost_start_under_a_key_that_sees_nothing_fails_nothing(world: World) -> None:
    """The same row, but the key sees no conversation at all (another account's?): the start
    may be running there, so the row waits and the pass says why (rerun generate)."""
    lesson = world.store.add_lesson("Fractions")
    world.agent.fail_next("start", Killed())
    with pytest.raises(Killed):
        await generate(world.store, world.agent, SETTINGS, lesson.id)
    world.clock.advance(301)
    summary = await world.poll()
    [row] = world.store.rows.values()
    assert row.status is Status.STARTING
    assert "no start of this video" in summary.errors[0].detail
