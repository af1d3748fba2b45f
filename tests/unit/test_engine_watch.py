"""watch(): the same pass repeated, on an injected clock and sleep."""

from __future__ import annotations

import asyncio

from videopoll.model import PassSummary, Status

from .conftest import MP4, World


async def test_until_done_stops_when_nothing_is_pending(world: World) -> None:
    row = world.video(Status.GENERATING)
    passes: list[PassSummary] = []

    async def sleep(seconds: float) -> None:
        await world.clock.sleep(seconds)
        if len(passes) == 2:  # the agent finishes while we wait
            world.agent.set(row.conversation_id or "", Status.FINISHED)
            world.artifacts.add(row.github_path or "", MP4)

    done = await world.poller().watch(interval=30, sleep=sleep, until_done=True,
                                      on_pass=passes.append)
    assert done is True
    assert [p.processed for p in passes] == [0, 0, 1]
    assert world.clock.slept == [30, 30]


async def test_timeout_gives_up_and_says_so(world: World) -> None:
    world.video(Status.GENERATING)
    passes: list[PassSummary] = []
    done = await world.poller().watch(interval=30, sleep=world.clock.sleep, until_done=True,
                                      timeout=100, on_pass=passes.append)
    assert done is False
    assert len(passes) == 5  # t = 0, 30, 60, 90, then the last 10 s and one more pass
    assert world.clock.slept == [30, 30, 30, 10]


async def test_stop_event_ends_after_the_current_pass(world: World) -> None:
    world.video(Status.GENERATING)
    stop = asyncio.Event()
    passes: list[PassSummary] = []

    def on_pass(summary: PassSummary) -> None:
        passes.append(summary)
        stop.set()

    assert await world.poller().watch(interval=30, sleep=world.clock.sleep, on_pass=on_pass,
                                      stop=stop) is True
    assert len(passes) == 1
