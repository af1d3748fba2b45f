"""The agent's rate budget (`RatePacer`): a hard limit, kept whatever the network's delays,
on a fake clock so that minutes of budget pass in no time."""

from __future__ import annotations

import asyncio
import heapq

from hypothesis import given
from hypothesis import strategies as st

from videopoll.services.pacing import CLOUD_RATE, Limit, Rate, RatePacer
from videopoll.testing import FakeClock

# (start, duration) of each request: when the caller asks for a slot, how long its answer takes
Requests = list[tuple[float, float]]


def simulate(rate: Rate, requests: Requests) -> list[tuple[float, float]]:
    """Run `requests` through a pacer in virtual time, as concurrent callers would: each asks
    at its start, waits as the pacer says (a time, or the next answer), and holds its slot
    for its duration. Returns each request's (sent, answered)."""
    now = [0.0]
    pacer = RatePacer(rate, clock=lambda: now[0])
    events: list[tuple[float, int, int, str]] = []  # (time, order, request, "try"|"answer")
    order = 0
    for index, (start, _) in enumerate(requests):
        heapq.heappush(events, (start, order := order + 1, index, "try"))
    blocked: list[int] = []
    holds: dict[int, object] = {}
    sent: dict[int, float] = {}
    answered: dict[int, float] = {}
    while events:
        at, _, index, kind = heapq.heappop(events)
        assert at >= now[0]
        now[0] = at
        if kind == "answer":
            pacer.done(holds.pop(index), at)  # type: ignore[arg-type]
            answered[index] = at
            for waiting in blocked:
                heapq.heappush(events, (at, order := order + 1, waiting, "try"))
            blocked.clear()
            continue
        wait = pacer.wait_for(at)
        if wait is None:
            blocked.append(index)
        elif wait > 0:
            heapq.heappush(events, (at + max(wait, 0.001), order := order + 1, index, "try"))
        else:
            holds[index] = pacer.take(at)
            sent[index] = at
            heapq.heappush(events, (at + requests[index][1], order := order + 1, index,
                                    "answer"))
    assert not blocked and len(sent) == len(requests)  # every request went, in the end
    return [(sent[i], answered[i]) for i in range(len(requests))]


def most_in_a_window(moments: list[float], seconds: float) -> int:
    """The most of `moments` any window [w, w + seconds) holds (one starting at a moment)."""
    ordered = sorted(moments)
    return max((sum(1 for m in ordered if w <= m < w + seconds) for w in ordered), default=0)


limits = st.builds(Limit, st.integers(1, 6), st.sampled_from([0.5, 1.0, 2.0, 60.0]))
rates = st.builds(Rate, st.one_of(st.none(), limits), st.one_of(st.none(), limits))
requests = st.lists(st.tuples(st.floats(0, 120, allow_nan=False),
                              st.floats(0, 3, allow_nan=False)), max_size=40)


@given(rates, requests)
def test_no_window_ever_holds_more_than_the_limit(rate: Rate, asked: Requests) -> None:
    """Whenever the server counts a request — when it leaves, when its answer comes back, or
    anywhere in between — no window of any limit holds more than the limit's count."""
    served = simulate(rate, asked)
    for limit in rate.limits:
        for sent_at, _ in served:  # at each send, the requests the server may still count
            live = sum(1 for s, a in served if s <= sent_at < a + limit.seconds)
            assert live <= limit.count, (limit, sent_at)
        assert most_in_a_window([s for s, _ in served], limit.seconds) <= limit.count
        assert most_in_a_window([a for _, a in served], limit.seconds) <= limit.count


@given(rates, requests)
def test_a_request_waits_only_when_a_limit_is_full(rate: Rate, asked: Requests) -> None:
    """Not slower than it must be: a request that did not go at once found, just before it
    went, some limit with every slot still held."""
    served = simulate(rate, asked)
    for (start, _), (sent_at, _) in zip(asked, served, strict=True):
        if sent_at > start:
            assert any(sum(1 for s, a in served if s < sent_at and sent_at - 0.0011
                           < a + limit.seconds) >= limit.count for limit in rate.limits)


def test_without_limits_nothing_waits() -> None:
    served = simulate(Rate(), [(0.0, 1.0)] * 50)
    assert {s for s, _ in served} == {0.0}


async def test_the_cloud_budget_spreads_250_requests_over_two_minutes() -> None:
    """100 a minute, 10 a second, answers instant: the 101st waits for the first minute's
    window, the 201st for the second's; the fake clock moves, nothing really waits."""
    clock = FakeClock()
    pacer = RatePacer(CLOUD_RATE, clock=clock.monotonic, sleep=clock.sleep)
    start = clock.monotonic()
    sent: list[float] = []
    for _ in range(250):
        async with pacer.slot():
            sent.append(clock.monotonic() - start)
    assert 120 <= sent[-1] < 126
    assert most_in_a_window(sent, 60.0) == 100 and most_in_a_window(sent, 1.0) == 10
    assert pacer.waited > 0


async def test_available_counts_the_budget_not_the_cap() -> None:
    clock = FakeClock()
    pacer = RatePacer(CLOUD_RATE, clock=clock.monotonic, sleep=clock.sleep)
    assert pacer.available() == 100
    for _ in range(30):
        async with pacer.slot():
            pass
    assert pacer.available() == 70  # three seconds' caps passed; the minute's budget did not
    clock.advance(61)
    assert pacer.available() == 100
    assert RatePacer(Rate(None, Limit(10, 1.0))).available() is None
    assert RatePacer(Rate()).available() is None


async def test_a_request_in_flight_holds_its_slot_until_a_window_after_its_answer() -> None:
    """Two slots, both taken by requests still waiting for their answers: a third waits for
    an answer, then a whole window more (the server may have counted the answered one late)."""
    clock = FakeClock()
    pacer = RatePacer(Rate(Limit(2, 60.0)), clock=clock.monotonic, sleep=clock.sleep)
    answer = [asyncio.Event(), asyncio.Event()]
    entered: list[float] = []

    async def request(gate: asyncio.Event | None) -> None:
        async with pacer.slot():
            entered.append(clock.monotonic())
            if gate is not None:
                await gate.wait()

    first = [asyncio.create_task(request(gate)) for gate in answer]
    await asyncio.sleep(0)
    third = asyncio.create_task(request(None))
    for _ in range(5):
        await asyncio.sleep(0)
    assert len(entered) == 2 and pacer.available() == 0
    clock.advance(10)
    answered_at = clock.monotonic()
    answer[0].set()
    await asyncio.wait_for(third, 1)
    assert entered[2] >= answered_at + 60
    answer[1].set()
    await asyncio.gather(*first)


async def test_a_cancelled_request_gives_its_slot_back_a_window_later() -> None:
    clock = FakeClock()
    pacer = RatePacer(Rate(Limit(1, 5.0)), clock=clock.monotonic, sleep=clock.sleep)

    async def hang() -> None:
        async with pacer.slot():
            await asyncio.Event().wait()

    task = asyncio.create_task(hang())
    await asyncio.sleep(0)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    before = clock.monotonic()
    async with pacer.slot():
        assert clock.monotonic() >= before + 5.0 - 1e-9
