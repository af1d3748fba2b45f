"""The agent's rate budget plans a pass: when the pending rows need more state requests than
the budget has left, the pass asks about those least recently asked about, counts the rest as
unchecked (and says why), and the next passes go on round the rows."""

from __future__ import annotations

import math

from videopoll.model import PassSummary, Status
from videopoll.testing import FakeAgent

from .conftest import World


def budgeted(world: World, budget: int) -> FakeAgent:
    agent = FakeAgent(budget=budget)
    agent.conversations = world.agent.conversations
    world.agent = agent
    return agent


async def test_a_pass_asks_only_what_the_budget_allows_and_rotates(world: World) -> None:
    rows = [world.video(Status.GENERATING) for _ in range(1000)]
    agent = budgeted(world, 5)  # 5 requests a window (no reserve under 10): 495 rows
    seen: dict[str, int] = {}
    passes = 0
    while len(seen) < len(rows):
        summary = await world.poll()
        passes += 1
        assert agent.over_budget == 0
        assert summary.checked + summary.unchecked == 1000
        assert summary.unchecked == 0 or summary.unchecked_why
        for item in summary.items:
            seen[item.asset_id] = seen.get(item.asset_id, 0) + 1
        agent.refill()  # the window passes
    assert passes == math.ceil(1000 / 495)  # every row once a round, none skipped twice
    assert min(seen.values()) >= 1 and max(seen.values()) <= 2
    assert summary.to_json()["unchecked"] == summary.unchecked


async def test_an_ample_budget_changes_nothing(world: World) -> None:
    for _ in range(50):
        world.video(Status.GENERATING)
    agent = budgeted(world, 100)
    summary = await world.poll()
    assert (summary.checked, summary.unchecked, summary.unchecked_why) == (50, 0, None)
    assert agent.spent == 1


async def test_a_spent_budget_checks_nothing_and_watch_does_not_call_it_done(world: World
                                                                             ) -> None:
    """With nothing left, nothing is asked (no request over the budget) and `watch
    --until-done` keeps going: unchecked rows are not done rows."""
    world.video(Status.GENERATING)
    agent = budgeted(world, 0)
    summaries: list[PassSummary] = []
    done = await world.poller().watch(interval=1, sleep=world.clock.sleep, until_done=True,
                                      timeout=3, on_pass=summaries.append)
    assert not done and agent.spent == 0
    assert all(s.unchecked == 1 and s.checked == 0 for s in summaries)


async def test_the_rotation_survives_rows_leaving(world: World) -> None:
    """Rows that leave the pending set between passes (stored, failed) do not make the
    rotation start over: the next pass starts after the last row asked about."""
    rows = [world.video(Status.GENERATING) for _ in range(300)]
    agent = budgeted(world, 3)  # 297 rows a pass
    first = {i.asset_id for i in (await world.poll()).items}
    for row in rows[:50]:  # finished and taken away by another poller, say
        world.store.rows[row.id].status = Status.READY
    agent.refill()
    second = {i.asset_id for i in (await world.poll()).items}
    assert {r.id for r in rows[50:]} - first <= second
