"""The call log and fault switches every fake shares, plus a fake clock."""

from __future__ import annotations

import asyncio
import functools
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any, Concatenate, ParamSpec, TypeVar

from ..model import VideoAsset

P = ParamSpec("P")
R = TypeVar("R")


class Recorder:
    """A call log (`calls`) and switches that make a named method raise.

    `fail_next("mark_ready", ServerError())` makes the next `mark_ready` raise before it
    changes anything; `after=True` raises *after* the change took effect, which is how a
    lost response looks to the caller (the write happened, the caller saw an error).
    """

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self._faults: defaultdict[str, list[tuple[BaseException, bool, str | None]]] = \
            defaultdict(list)

    def fail_next(self, method: str, exc: BaseException, times: int = 1, *,
                  after: bool = False, match: str | None = None) -> None:
        """Make the next `times` calls of `method` raise `exc` (only calls about the row
        `match`, when given: a change one row's data makes the store refuse)."""
        if not hasattr(self, method):
            raise AttributeError(f"{type(self).__name__} has no method {method!r}")
        self._faults[method].extend([(exc, after, match)] * times)

    def count(self, method: str) -> int:
        """How many calls of `method` the log holds (batches, for batched calls)."""
        return sum(1 for name, _ in self.calls if name == method)

    def reset_calls(self) -> None:
        self.calls.clear()
        self._faults.clear()

    def _record(self, method: str, *args: Any) -> None:
        self.calls.append((method, args))

    def _fault(self, method: str, *, after: bool = False, subject: str | None = None) -> None:
        queue = self._faults.get(method)
        if queue and queue[0][1] == after and queue[0][2] in (None, subject):
            exc, _, _ = queue.pop(0)
            raise exc


S = TypeVar("S", bound=Recorder)


def _loggable(value: Any) -> Any:
    if isinstance(value, VideoAsset):
        return value.id
    if isinstance(value, AsyncIterator):
        return "<stream>"
    return value


def recorded(fn: Callable[Concatenate[S, P], Awaitable[R]]
             ) -> Callable[Concatenate[S, P], Coroutine[Any, Any, R]]:
    """Log an async method's call (arguments as passed) and apply its `fail_next` switch."""

    @functools.wraps(fn)
    async def wrapper(self: S, /, *args: P.args, **kwargs: P.kwargs) -> R:
        self._record(fn.__name__, *map(_loggable, (*args, *kwargs.values())))
        self._fault(fn.__name__)
        result = await fn(self, *args, **kwargs)
        self._fault(fn.__name__, after=True)
        return result

    return wrapper


class FakeClock:
    """Wall clock and monotonic clock that move only when told; `sleep` advances them.

    Pass `clock.now` as a store's clock and `clock.sleep` as the engine's sleep, so a test
    of leases or grace periods runs in no time.
    """

    def __init__(self, start: datetime | None = None) -> None:
        start = start or datetime(2026, 1, 1, tzinfo=UTC)
        if start.tzinfo is None:
            raise ValueError("FakeClock needs an aware datetime")
        self._now = start.astimezone(UTC)
        self._mono = 1000.0
        self.slept: list[float] = []

    def now(self) -> datetime:
        return self._now

    def monotonic(self) -> float:
        return self._mono

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("time does not go backwards")
        self._now += timedelta(seconds=seconds)
        self._mono += seconds

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.advance(max(seconds, 0.0))
        await asyncio.sleep(0)  # still a scheduling point, as a real sleep is
