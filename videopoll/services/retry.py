"""The one retry policy, declared once, for every service: a transport every client gets from
`make_client`, so OpenHands, GitHub, supabase-py's PostgREST and Storage calls and the TUS
client are all retried the same way, and a new service cannot skip it.

What is retried: transport failures, 429 (and GitHub's 403 rate limits) and 5xx (500, 502,
503, 504 and Cloudflare's 520-524 in front of Supabase); never another 4xx. Which requests:
those that are safe to send twice (`Repeatable`): idempotent methods, plus what each service
declares (guarded RPCs, upserts to a fixed key); any other request only when it certainly did
not arrive (the connection was never made, or a rate limiter turned it away). A body that
cannot be replayed (a stream) is never sent twice. Waits honour `Retry-After` and GitHub's
rate-limit headers, and come out of one budget per pass: a wait the pass cannot afford is not
slept, the error goes up and the work is deferred to the next pass. A service with a rate
budget (OpenHands) hands a `pacing.RatePacer`: each attempt waits for its slot first, so the
budget holds for retries too and a 429 comes only from someone else spending the same key's.
"""

from __future__ import annotations

import contextvars
import functools
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx

from ..model import Service
from .pacing import RatePacer
from .translate import is_rate_limited, retry_after, safe_url

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504, 520, 521, 522, 523, 524})
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
REPEATABLE = "videopoll.repeatable"  # request extension: True/False overrides the policy
SECONDARY_LIMIT_WAIT = 60.0  # GitHub: a secondary limit without headers wants >= 60 s

log = logging.getLogger("videopoll.retry")
# The request a retry loop is running for (stamina's hook sees only "<context block>").
_SENDING: contextvars.ContextVar[tuple[Service, httpx.Request] | None] = \
    contextvars.ContextVar("videopoll_sending", default=None)


if TYPE_CHECKING:
    import stamina


def report_retry(details: stamina.instrumentation.RetryDetails) -> None:
    """stamina's on-retry hook: a retry that is really scheduled (not one the attempts or the
    budget will refuse) becomes a record of videopoll's own, on logger `videopoll.retry` —
    a JSON record under `--log-format json`, nothing without `--log-format`."""
    sending = _SENDING.get()
    if sending is None:  # someone else's stamina loop: not ours to report
        return
    service, request = sending
    exc = details.caused_by
    cause = f"HTTP {exc.response.status_code}" if isinstance(exc, _Retry) else type(exc).__name__
    log.info("retrying %s %s %s after %s", service, request.method, safe_url(request.url),
             cause, extra={"fields": {"service": str(service), "method": request.method,
                                      "url": safe_url(request.url), "cause": cause,
                                      "attempt": details.retry_num,
                                      "wait_s": round(details.wait_for, 3)}})


@functools.cache
def _stamina() -> Any:
    """stamina, imported when a first attempt fails: most runs never retry, and its import
    (with tenacity's) is ~10 ms of every start. Retries are reported as videopoll's own
    records, never as stamina's bare `stamina.retry_scheduled` log lines (its default hook),
    which is set once, here."""
    import stamina

    stamina.instrumentation.set_on_retry_hooks([report_retry])
    return stamina

Repeatable = Callable[[httpx.Request], bool]


def idempotent(request: httpx.Request) -> bool:
    """The default: what HTTP itself says may be repeated."""
    return request.method in IDEMPOTENT_METHODS


@dataclass
class Budget:
    """How long retries may wait in this pass; longer waits defer the work to the next pass."""

    deadline: float = field(default_factory=lambda: time.monotonic() + 60.0)
    max_wait: float = 30.0
    attempts: int = 4
    clock: Callable[[], float] = time.monotonic

    pass_seconds: float = 60.0

    def reset(self) -> None:
        """A new pass: retries may wait up to `pass_seconds` in all."""
        self.deadline = self.clock() + self.pass_seconds

    def affordable(self, wait: float) -> bool:
        return wait <= self.max_wait and self.clock() + wait < self.deadline

    @property
    def remaining(self) -> float:
        return max(0.0, self.deadline - self.clock())


class _Retry(Exception):
    """An answer worth asking again for (5xx, 429)."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response


def _replayable(request: httpx.Request) -> bool:
    """A body httpx can send again: bytes, or a multipart form (storage3's uploads) over files
    httpx rewinds before each send. A stream from an iterator is consumed by the first try.
    (httpx does not export its multipart stream class, hence the name.)"""
    stream = request.stream
    return isinstance(stream, httpx.ByteStream) or type(stream).__name__ == "MultipartStream"


class RetryTransport(httpx.AsyncBaseTransport):
    """Wraps a client's transport: counts every attempt, retries by the policy, and hands
    the last answer on when it gives up (already read, so the caller's own error handling —
    ours, postgrest's, storage3's — sees the real status and body)."""

    def __init__(self, inner: httpx.AsyncBaseTransport, *, service: Service, budget: Budget,
                 calls: Counter[str], repeatable: Repeatable = idempotent,
                 pacer: RatePacer | None = None) -> None:
        self.inner = inner
        self.pacer = pacer
        self.service = service
        self.budget = budget
        self.calls = calls
        self.repeatable = repeatable

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        override = request.extensions.get(REPEATABLE)
        safe = (self.repeatable(request) if override is None else bool(override)) \
            and _replayable(request)
        decide = self._decide(request, safe)
        try:
            return await self._attempt(request)
        except _Retry as exc:
            if not decide(exc):
                return exc.response
            first: list[Exception] = [exc]
        except Exception as exc:
            if not decide(exc):
                raise
            first = [exc]
        # The first attempt failed in a way worth retrying: stamina's loop takes over, its
        # first iteration replaying that failure so its backoff, attempts and hooks count it.
        answer: httpx.Response | None = None
        token = _SENDING.set((self.service, request))
        try:
            async for attempt in _stamina().retry_context(
                on=decide, attempts=self.budget.attempts,
                timeout=max(self.budget.remaining, 0.001), wait_initial=0.5,
                wait_max=self.budget.max_wait,
            ):
                with attempt:
                    if first:
                        raise first.pop()
                    answer = await self._attempt(request)
        except _Retry as exc:
            return exc.response
        finally:
            _SENDING.reset(token)
        assert answer is not None
        return answer

    async def _attempt(self, request: httpx.Request) -> httpx.Response:
        """One attempt, counted; an answer worth asking again for is read and raised."""
        self.calls[self.service] += 1
        if self.pacer is None:
            answer = await self.inner.handle_async_request(request)
        else:  # every attempt, a retry too, waits for its slot in the budget
            async with self.pacer.slot():
                answer = await self.inner.handle_async_request(request)
        if answer.status_code in RETRY_STATUSES or answer.status_code == 403:
            await answer.aread()
            await answer.aclose()
            if answer.status_code != 403 or is_rate_limited(answer):
                raise _Retry(answer)
        return answer

    def _decide(self, request: httpx.Request, safe: bool) -> Callable[[Exception], bool | float]:
        """The declared predicate, for one request."""

        def decide(exc: Exception) -> bool | float:
            arrived = not isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout)
            limited = isinstance(exc, _Retry) and is_rate_limited(exc.response)
            if not safe and arrived and not limited:
                return False  # it may have done its work: sending it again could do it twice
            if isinstance(exc, httpx.TransportError):
                wait: float | bool = self.budget.remaining > 0
            elif isinstance(exc, _Retry):
                advised = retry_after(exc.response)
                if advised is None and limited:
                    advised = SECONDARY_LIMIT_WAIT
                wait = (self.budget.remaining > 0 if advised is None
                        else advised if self.budget.affordable(advised) else False)
            else:
                return False
            return wait  # reported by `report_retry` once stamina really schedules it

        return decide

    async def aclose(self) -> None:
        await self.inner.aclose()
