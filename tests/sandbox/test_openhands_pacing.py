"""The whole OpenHands client (adapter, retry transport, pacer) against the stand-in's per-user
limiter over real HTTP: however many requests a pass needs, the limiter never refuses one."""

from __future__ import annotations

from collections import Counter

from videopoll.model import Service
from videopoll.runtime import Runtime
from videopoll.sandbox.openhands import OpenHandsStandIn
from videopoll.services.http import make_client
from videopoll.services.openhands import OpenHandsAgent, auth_headers
from videopoll.services.pacing import Limit, Rate, RatePacer
from videopoll.settings import from_env


def populate(standin: OpenHandsStandIn, running: int, paused: int) -> list[str]:
    """Conversations: `running` decided by their batch alone, `paused` needing one events
    lookup each (their log is empty: still generating)."""
    return ([standin.add_conversation() for _ in range(running)]
            + [standin.add_conversation("PAUSED", None) for _ in range(paused)])


async def test_a_pass_larger_than_the_windows_is_sent_whole_without_a_429() -> None:
    """Short windows (4 in 0.25 s, 12 in 1.5 s) and the same limits in the client: 6 batches
    of up to 99 ids and 20 events lookups, 26 requests, more than two long windows' worth,
    all answered on the first try."""
    with OpenHandsStandIn(api_key="k-pacing", rate_limit=(4, 12),
                          rate_windows=(0.25, 1.5)) as standin:
        ids = populate(standin, running=99 * 5 + 1, paused=20)
        pacer = RatePacer(Rate(Limit(12, 1.5), Limit(4, 0.25)))
        calls: Counter[str] = Counter()
        async with make_client(Service.OPENHANDS, standin.url, calls=calls, pacer=pacer,
                               headers=auth_headers("k-pacing")) as client:
            states = await OpenHandsAgent(client, pacer=pacer).states(ids)
        assert standin.refused == 0
        assert (standin.counts["conversations"], standin.counts["events"]) == (6, 20)
        assert calls[Service.OPENHANDS] == 26 and pacer.waited > 0
        assert all(s is not None and s.lookup_error is None for s in states.values())


async def test_the_default_rate_keeps_within_clouds_limits_across_passes() -> None:
    """A bearer key's default (100 a minute, 10 a second) against the stand-in's default
    (Cloud's own figures): two passes of 16 requests each, on one Runtime as `watch` runs
    them, no 429, and the budget they spent is the same budget."""
    with OpenHandsStandIn(api_key="k-default") as standin:
        ids = populate(standin, running=3, paused=15)
        settings = from_env({"OPENHANDS_API_KEY": "k-default",
                             "OPENHANDS_BASE_URL": standin.url})
        async with Runtime(settings, need=frozenset({Service.OPENHANDS})) as rt:
            for _ in range(2):
                states = await rt.agent.states(ids)
                assert all(s is not None and s.lookup_error is None for s in states.values())
            assert rt.agent.budget() == 100 - 32
        assert standin.refused == 0 and standin.total() == 32
