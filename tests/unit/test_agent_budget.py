"""`AgentAPI.budget()`: what a pass may still ask the agent without waiting, counted by the
OpenHands adapter (every request through its pacer, follow-ups included), by the fake, and
kept by one Runtime across the passes of `watch`."""

from __future__ import annotations

import asyncio
from collections import Counter

import httpx
import pytest

from videopoll.model import Service, Status
from videopoll.runtime import Runtime
from videopoll.services.http import make_client
from videopoll.services.openhands import AT_ONCE, OpenHandsAgent
from videopoll.services.pacing import Limit, Rate, RatePacer
from videopoll.services.retry import Budget
from videopoll.settings import from_env
from videopoll.testing import FakeAgent, FakeClock

RUNNING = {"sandbox_status": "RUNNING", "execution_status": "running"}
PAUSED = {"sandbox_status": "PAUSED", "execution_status": None}


def ids(n: int) -> list[str]:
    return [f"{i:032x}" for i in range(n)]


def answer_batches(seen: list[str], limited: int = 0) -> httpx.MockTransport:
    """Conversations RUNNING, except those whose id starts with `f` (PAUSED, with a finished
    event log); the first `limited` requests are Cloud's 429."""

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        if len(seen) <= limited:
            return httpx.Response(429, json={"error": "Rate limit exceeded: 10 per 1 second"},
                                  headers={"Retry-After": "0", "X-RateLimit-Remaining": "0"})
        if request.url.path.endswith("/events/search"):
            return httpx.Response(200, json={"items": [
                {"kind": "ConversationStateUpdateEvent", "key": "execution_status",
                 "value": "finished", "timestamp": "2026-01-01T00:00:00"}],
                "next_page_id": None})
        return httpx.Response(200, json=[PAUSED if i.startswith("f") else RUNNING
                                         for i in request.url.params.get_list("ids")])

    return httpx.MockTransport(answer)


def paced_agent(transport: httpx.MockTransport, rate: Rate, clock: FakeClock,
                budget: Budget | None = None) -> tuple[OpenHandsAgent, httpx.AsyncClient]:
    pacer = RatePacer(rate, clock=clock.monotonic, sleep=clock.sleep)
    client = make_client(Service.OPENHANDS, "http://oh.test", calls=Counter(), budget=budget,
                         transport=transport, pacer=pacer)
    return OpenHandsAgent(client, pacer=pacer), client


async def test_budget_counts_every_request_follow_ups_included() -> None:
    """250 ids are three batches; a PAUSED conversation costs one events lookup more."""
    clock, seen = FakeClock(), list[str]()
    agent, client = paced_agent(answer_batches(seen), Rate(Limit(100, 60.0)), clock)
    async with client:
        assert agent.budget() == 100 and agent.ids_per_request == 99
        states = await agent.states(ids(250))
        assert agent.budget() == 97 and len(seen) == 3
        assert {s.state for s in states.values() if s} == {Status.GENERATING}
        await agent.states(["f" * 32])
        assert agent.budget() == 95 and seen[-1].endswith("/events/search")
        clock.advance(60)
        assert agent.budget() == 100


async def test_a_pass_over_the_budget_waits_for_slots_instead_of_a_429() -> None:
    """Ten ids' batches against a budget of 4 a minute: the pass takes (fake) minutes, every
    request is sent once, none refused."""
    clock, seen = FakeClock(), list[str]()
    agent, client = paced_agent(answer_batches(seen), Rate(Limit(4, 60.0)), clock)
    start = clock.monotonic()
    async with client:
        await agent.states(ids(99 * 10))
    assert len(seen) == 10 and clock.monotonic() - start >= 120


async def test_a_429_from_someone_else_is_retried_after_its_wait_and_paced_too() -> None:
    """Another process spent the key's budget: Cloud's 429 (Retry-After) is retried by the
    one policy, and the retry waits for its own slot in this process's budget."""
    clock, seen = FakeClock(), list[str]()
    agent, client = paced_agent(answer_batches(seen, limited=1), Rate(Limit(100, 60.0)), clock)
    async with client:
        states = await agent.states(ids(3))
    assert len(seen) == 2 and all(s is not None and s.lookup_error is None
                                  for s in states.values())
    assert agent.budget() == 98


async def test_a_429_whose_wait_the_pass_cannot_afford_defers_the_batch() -> None:
    """Retry-After longer than the pass affords: that batch is undecided this pass."""

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(429, headers={"Retry-After": "60"},
                              json={"error": "Rate limit exceeded: 100 per 1 minute"})

    clock = FakeClock()
    agent, client = paced_agent(httpx.MockTransport(answer), Rate(Limit(100, 60.0)), clock,
                                Budget(max_wait=30))
    async with client:
        states = await agent.states(ids(2))
    assert all(s is not None and s.lookup_error and "rate limited" in s.lookup_error
               for s in states.values())


async def test_without_a_pacer_the_budget_is_unlimited() -> None:
    client = make_client(Service.OPENHANDS, "http://oh.test", calls=Counter(),
                         transport=answer_batches([]))
    async with client:
        assert OpenHandsAgent(client).budget() is None


async def test_one_runtime_spends_one_budget_across_passes() -> None:
    """`watch` runs its passes on one Runtime: the agent (and its pacer) is built once."""
    seen: list[str] = []
    settings = from_env({"OPENHANDS_API_KEY": "k-123456", "VIDEOPOLL_OPENHANDS_RATE": "50/min"})
    async with Runtime(settings, need=frozenset({Service.OPENHANDS}),
                       transports={Service.OPENHANDS: answer_batches(seen)}) as rt:
        assert rt.agent is rt.agent
        for _ in range(3):  # three passes of 200 ids: three batches each
            await rt.agent.states(ids(200))
        assert rt.agent.budget() == 50 - 9


@pytest.mark.parametrize(("rate", "budget"), [("off", None), ("10/s", None), ("7/min", 7)])
async def test_the_runtime_builds_the_configured_rate(rate: str, budget: int | None) -> None:
    settings = from_env({"OPENHANDS_API_KEY": "k-123456", "VIDEOPOLL_OPENHANDS_RATE": rate})
    async with Runtime(settings, need=frozenset({Service.OPENHANDS}),
                       transports={Service.OPENHANDS: answer_batches([])}) as rt:
        assert rt.agent.budget() == budget


async def test_the_fake_agent_spends_a_budget_and_counts_what_overspends() -> None:
    agent = FakeAgent(budget=3)
    assert agent.budget() == 3 and agent.ids_per_request == 99
    await agent.states(ids(250))
    assert agent.budget() == 0 and agent.over_budget == 0
    await agent.states(ids(100))
    assert agent.budget() == 0 and agent.over_budget == 2
    agent.refill()
    assert agent.budget() == 3
    agent.reset()
    assert agent.over_budget == 0
    assert FakeAgent().budget() is None


async def test_a_thousand_rows_cost_two_round_trips_of_batches() -> None:
    """11 batches for 1,000 ids: at most AT_ONCE (10, OpenHands' per-second limit) in flight,
    so the answers come back in two round trips, not three (issue 14's pass at N=1000)."""
    in_flight, most = 0, 0
    gate = asyncio.Event()  # opens once AT_ONCE requests wait together (never, with fewer)

    async def answer(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        if in_flight == AT_ONCE:
            gate.set()
        await asyncio.wait_for(gate.wait(), 5)
        in_flight -= 1
        return httpx.Response(200, json=[RUNNING for _ in request.url.params.get_list("ids")])

    client = make_client(Service.OPENHANDS, "http://oh.test", calls=Counter(),
                         transport=httpx.MockTransport(answer))
    async with client:
        found = await OpenHandsAgent(client).states(ids(1000))
    assert len(found) == 1000 and AT_ONCE == 10
    assert most == AT_ONCE  # never more than the limit, and the limit is used
