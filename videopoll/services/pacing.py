"""The rate budget of the agent's API: a hard limit every OpenHands request of the process
waits for, so that the budget itself never causes a 429.

A `Rate` is a budget (requests per minute or per hour: what a pass can plan with) and a cap
(requests per second: it only spaces requests out, a wait of at most a second). OpenHands Cloud
limits each user to `10/second; 100/minute` in fixed windows (`create_redis_rate_limiter(
'10/second; 100/minute')`, hit once per authenticated request in OpenHands'
enterprise/server/auth/saas_user_auth.py; its documentation gives no figure); the open-source
app server lets a client send 10 a second (`InMemoryRateLimiter(requests=10, seconds=1)`).

`RatePacer` keeps the limits against any window the server may count in, whatever the
network's delays: a request holds its slot from the moment it is handed to the network until
`window` seconds after its answer came back (the server counted it somewhere in between), so
in any `window` seconds the server never sees more than `count` of ours. The price is the
answer's latency added to each window, a few percent of a minute.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

RATE_FORM = "N/min, N/s, both (100/min, 10/s), or off"
_TERM = re.compile(r"(\d+)\s*/\s*([a-z]+)", re.IGNORECASE)
_UNITS = {**dict.fromkeys(("s", "sec", "second", "seconds"), 1.0),
          **dict.fromkeys(("m", "min", "minute", "minutes"), 60.0),
          **dict.fromkeys(("h", "hr", "hour", "hours"), 3600.0)}


@dataclass(frozen=True)
class Limit:
    """At most `count` requests in any `seconds`."""

    count: int
    seconds: float

    def __str__(self) -> str:
        unit = {1.0: "s", 60.0: "min", 3600.0: "h"}.get(self.seconds)
        return f"{self.count}/{unit}" if unit else f"{self.count}/{self.seconds:g}s"


@dataclass(frozen=True)
class Rate:
    """A budget (what a pass plans with: `budget()` counts its free slots) and a cap (spacing
    only); either may be absent, both absent is no limit."""

    budget: Limit | None = None
    cap: Limit | None = None

    @property
    def limits(self) -> tuple[Limit, ...]:
        return tuple(limit for limit in (self.budget, self.cap) if limit is not None)

    def __str__(self) -> str:
        return ", ".join(map(str, self.limits)) or "off"


CLOUD_RATE = Rate(Limit(100, 60.0), Limit(10, 1.0))  # OpenHands Cloud, per user
SELF_HOSTED_RATE = Rate(None, Limit(10, 1.0))  # the open-source app server, per client address
UNLIMITED = Rate()


def parse_rate(text: str) -> Rate:
    """`100/min`, `10/s`, `100/min, 10/s` (or `;` between), `6000/h`, `0`/`off`/`none` for no
    limit; ValueError otherwise. A per-second term is the cap, a per-minute or per-hour one
    the budget; at most one of each, each count at least 1."""
    raw = text.strip().lower()
    if raw in ("0", "off", "none", "unlimited"):
        return UNLIMITED
    budget: Limit | None = None
    cap: Limit | None = None
    for term in re.split(r"[,;]", raw):
        match = _TERM.fullmatch(term.strip())
        if match is None or match[2] not in _UNITS or int(match[1]) < 1:
            raise ValueError(text)
        limit = Limit(int(match[1]), _UNITS[match[2]])
        if limit.seconds < 60:
            if cap is not None:
                raise ValueError(text)
            cap = limit
        else:
            if budget is not None:
                raise ValueError(text)
            budget = limit
    return Rate(budget, cap)


class _Hold:
    """One request's slot: in flight until `answered`, then held `window` seconds more."""

    __slots__ = ("answered",)

    def __init__(self) -> None:
        self.answered = math.inf


class RatePacer:
    """Every request of one client waits here for a slot in each of the rate's windows.

    One pacer per process and service (the Runtime builds it with the agent's client and
    keeps it for every pass of `watch`). `clock` and `sleep` are injected: tests run minutes
    of budget in no time with `FakeClock.monotonic` and `FakeClock.sleep`.
    """

    def __init__(self, rate: Rate, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self.rate = rate
        self.clock = clock
        self.sleep = sleep
        self.waited = 0  # requests that had to wait for a slot
        self._holds: list[_Hold] = []
        self._longest = max((limit.seconds for limit in rate.limits), default=0.0)
        self._released: asyncio.Event | None = None

    def available(self) -> int | None:
        """Requests that can be sent now within the budget (None: no budget). The cap is not
        counted: it delays a request by at most its window, it does not use the budget up."""
        if self.rate.budget is None:
            return None
        return max(0, self.rate.budget.count - self._active(self.rate.budget, self.clock()))

    def wait_for(self, now: float) -> float | None:
        """Seconds until a request may go (0: now), or None when only an answer still in
        flight can free a slot."""
        wait = 0.0
        for limit in self.rate.limits:
            expiries = sorted(h.answered + limit.seconds for h in self._holds
                              if h.answered + limit.seconds > now)
            over = len(expiries) - limit.count
            if over >= 0:
                free_at = expiries[over]
                if math.isinf(free_at):
                    return None
                wait = max(wait, free_at - now)
        return wait

    def take(self, now: float) -> _Hold:
        """Hold a slot from `now` (the caller checked `wait_for(now) == 0`)."""
        self._holds = [h for h in self._holds if h.answered + self._longest > now]
        hold = _Hold()
        self._holds.append(hold)
        return hold

    def done(self, hold: _Hold, now: float) -> None:
        """The answer is in (or the request failed): the slot ends a window from now."""
        hold.answered = now
        if self._released is not None:
            self._released.set()
            self._released = None

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Wait for a slot in every window, hold it while the request runs."""
        if not self.rate.limits:
            yield
            return
        hold = await self._acquire()
        try:
            yield
        finally:
            self.done(hold, self.clock())

    async def _acquire(self) -> _Hold:
        waited = False
        while True:
            now = self.clock()
            wait = self.wait_for(now)
            if wait is not None and wait <= 0:
                self.waited += waited
                return self.take(now)
            waited = True
            if wait is None:  # every slot is held by a request in flight: wait for an answer
                if self._released is None:
                    self._released = asyncio.Event()
                await self._released.wait()
            else:  # at least a millisecond: a float clock must move for the loop to end
                await self.sleep(max(wait, 0.001))

    def _active(self, limit: Limit, now: float) -> int:
        return sum(1 for h in self._holds if h.answered + limit.seconds > now)
