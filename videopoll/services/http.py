"""The one client layer: httpx clients, retries, rate limits, call counters, error translation.

Every service adapter gets its `httpx.AsyncClient` from `make_client` and sends through
`send`, so timeouts, the User-Agent, the retry predicate and the way an HTTP status becomes a
videopoll exception are the same for OpenHands, GitHub and Supabase.
"""

from __future__ import annotations

import asyncio
import collections
import email.utils
import functools
import ssl
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
import stamina

from .. import __version__
from ..errors import (
    AuthError,
    ProtocolError,
    RateLimited,
    RequestRejected,
    ServerError,
    ServiceError,
    Unreachable,
)

USER_AGENT = f"videopoll/{__version__}"
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


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


@functools.cache
def tls_context() -> ssl.SSLContext:
    """One CA bundle per process: loading it costs ~55 ms, and a run builds four clients."""
    return httpx.create_ssl_context()


class Pacer:
    """At most `rate` requests per `per` seconds, once the service has said 429: a server
    without a limit is not slowed down, and one with a limit (OpenHands Cloud: 10 a second
    per user) is not hammered after its first refusal."""

    def __init__(self, rate: int, per: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.rate, self.per, self.clock = rate, per, clock
        self.active = False
        self._sent: collections.deque[float] = collections.deque()
        self._lock = asyncio.Lock()

    async def watch(self, response: httpx.Response) -> None:
        """An httpx response hook: the first 429 switches pacing on."""
        if response.status_code == 429:
            self.active = True

    async def wait(self) -> None:
        if not self.active:
            return
        async with self._lock:
            now = self.clock()
            while self._sent and now - self._sent[0] >= self.per:
                self._sent.popleft()
            if len(self._sent) >= self.rate:
                await asyncio.sleep(self.per - (now - self._sent[0]))
                self._sent.popleft()
            self._sent.append(self.clock())


# Services whose redirects may lead to another origin: GitHub's blob, raw and LFS downloads are
# served from other hosts. OpenHands and Supabase have no reason to send us elsewhere, so a
# redirect that leaves their origin is refused rather than followed.
CROSS_ORIGIN_REDIRECTS = frozenset({"github"})
# What a request may still carry once a redirect has left the origin it was made for: nothing
# that can hold a credential. An allowlist, because credentials hide in headers of any name
# (`apikey`, `X-Session-API-Key`, the headers an LFS batch answer hands out).
CROSS_ORIGIN_HEADERS = frozenset({"host", "user-agent", "accept", "accept-encoding", "range",
                                  "connection", "content-type", "content-length",
                                  "transfer-encoding"})
_ORIGIN = "videopoll.origin"  # request extension: where the redirect chain started


def origin(url: httpx.URL) -> tuple[str, str, int | None]:
    """(scheme, host, port) with the scheme's default port made explicit."""
    default = {"http": 80, "https": 443}.get(url.scheme)
    return url.scheme, url.host, url.port or default


def origin_guard(service: str) -> Callable[[httpx.Request], Any]:
    """A request hook that keeps credentials with the origin they were made for.

    httpx runs request hooks for every hop of a redirect chain and carries a request's
    extensions over to the next hop, so the first hop records its origin there and every
    later hop is compared with it. httpx itself strips only `Authorization` across origins.
    """
    may_leave = service in CROSS_ORIGIN_REDIRECTS

    async def guard(request: httpx.Request) -> None:
        here = origin(request.url)
        first = request.extensions.setdefault(_ORIGIN, here)
        if here == first:
            return
        if not may_leave:
            start = f"{first[0]}://{first[1]}:{first[2]}"
            raise ProtocolError(
                f"{service}: refused a redirect from {start} to another origin "
                f"({safe_url(request.url.copy_with(path='/'))}); credentials stay with "
                f"{start}", service=service)
        for name in list(request.headers.keys()):
            if name.lower() not in CROSS_ORIGIN_HEADERS:
                del request.headers[name]

    return guard


def make_client(
    service: str,
    base_url: str,
    *,
    calls: Counter[str],
    headers: Mapping[str, str] | None = None,
    timeout: float = 30.0,
    transport: httpx.AsyncBaseTransport | None = None,
    max_connections: int = 10,
) -> httpx.AsyncClient:
    """A client for one service: counted, identified, bounded, following redirects without
    taking a credential to another origin (`origin_guard`).

    HTTP/1.1 only: pooled HTTP/2 connections go stale behind Supabase's gateway
    (supabase-py #1064).
    """

    async def count(request: httpx.Request) -> None:
        calls[service] += 1

    return httpx.AsyncClient(
        base_url=base_url,
        headers={"User-Agent": USER_AGENT, **(headers or {})},
        timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
        follow_redirects=True,
        max_redirects=5,
        transport=transport,
        verify=tls_context(),
        limits=httpx.Limits(max_connections=max_connections,
                            max_keepalive_connections=max_connections),
        event_hooks={"request": [origin_guard(service), count]},
    )


def safe_url(url: httpx.URL | str) -> str:
    """A URL without its query string: signed download links carry tokens there."""
    parsed = httpx.URL(str(url))
    return str(parsed.copy_with(query=None, fragment=None))


def retry_after(response: httpx.Response, *, now: float | None = None) -> float | None:
    """Seconds to wait before retrying, by GitHub's documented order of headers.

    `retry-after` first; else `x-ratelimit-remaining: 0` means wait until
    `x-ratelimit-reset`; else None (the caller backs off exponentially).
    """
    raw = response.headers.get("retry-after")
    if raw:
        try:
            # OpenHands truncates to whole seconds and often says "0": never busy-loop.
            return max(1.0, float(raw))
        except ValueError:
            parsed = email.utils.parsedate_to_datetime(raw)
            return max(0.0, parsed.timestamp() - (now or time.time()))
    if response.headers.get("x-ratelimit-remaining") == "0":
        reset = response.headers.get("x-ratelimit-reset")
        if reset and reset.isdigit():
            return max(1.0, int(reset) - (now or time.time()))
    return None


def is_rate_limited(response: httpx.Response) -> bool:
    """429, or GitHub's 403 flavour of a primary or secondary rate limit."""
    if response.status_code == 429:
        return True
    if response.status_code != 403:
        return False
    if "retry-after" in response.headers or response.headers.get("x-ratelimit-remaining") == "0":
        return True
    # A secondary limit may come with neither header; its message says so.
    return "rate limit" in _detail(response).lower()


def error_for(response: httpx.Response, service: str, what: str = "") -> ServiceError:
    """Translate an HTTP status into the exception tree (the same for every service)."""
    status = response.status_code
    label = f"{service}: {what} " if what else f"{service}: "
    detail = _detail(response)
    if is_rate_limited(response):
        wait = retry_after(response)
        shown = f" (retry in {wait:.0f}s)" if wait is not None else ""
        return RateLimited(f"{label}rate limited{shown}", retry_after=wait, service=service,
                           status=status)
    if status in (401, 403):
        return AuthError(f"{label}credentials refused (HTTP {status}){detail}",
                         service=service, status=status)
    if status >= 500:
        return ServerError(f"{label}HTTP {status}{detail}", service=service, status=status)
    return RequestRejected(f"{label}HTTP {status}{detail}", service=service, status=status)


def _detail(response: httpx.Response) -> str:
    """One short, safe line from an error body (`message`, `detail` or `error`)."""
    try:
        body = response.json()
    except Exception:  # unread or not JSON: say nothing rather than echo an HTML page
        return ""
    text: Any = None
    if isinstance(body, dict):
        text = body.get("message") or body.get("detail") or body.get("error")
    if isinstance(text, list):
        text = "; ".join(str(t.get("msg", t)) if isinstance(t, dict) else str(t) for t in text)
    if not isinstance(text, str) or not text:
        return ""
    try:
        request: httpx.Request | None = response.request
    except RuntimeError:  # a response built without a request (tests)
        request = None
    return ": " + _unechoed(" ".join(text.split()), request)[:160]


SECRET_HEADERS = ("authorization", "apikey", "x-session-api-key", "x-access-token")


def _unechoed(text: str, request: httpx.Request | None) -> str:
    """Remove our own credentials from a service's text: some services echo them back."""
    if request is None:
        return text
    for name in SECRET_HEADERS:
        value = request.headers.get(name, "")
        for part in sorted({value, value.partition(" ")[2]}, key=len, reverse=True):
            if len(part) >= 4:
                text = text.replace(part, "***")
    return text


def transport_error(exc: httpx.TransportError, service: str, url: httpx.URL | str) -> Unreachable:
    kind = "timed out" if isinstance(exc, httpx.TimeoutException) else "unreachable"
    return Unreachable(f"{service}: {safe_url(url)} {kind} ({type(exc).__name__})",
                       service=service)


class _Retry(Exception):
    def __init__(self, response: httpx.Response) -> None:
        self.response = response


def _hook(budget: Budget, idempotent: bool = True) -> Callable[[Exception], bool | float]:
    """The declared retry predicate: transport errors, 429 and 5xx; never another 4xx.

    A request that is not idempotent is retried only when it certainly did not arrive: the
    connection was never made, or a rate limiter turned it away.
    """

    def decide(exc: Exception) -> bool | float:
        if not idempotent and not (
            isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout)
            or (isinstance(exc, _Retry) and exc.response.status_code == 429)
        ):
            return False
        if isinstance(exc, httpx.TransportError):
            return budget.remaining > 0
        if isinstance(exc, _Retry):
            wait = retry_after(exc.response)
            if wait is None and is_rate_limited(exc.response):
                wait = 60.0  # GitHub: a secondary limit without headers wants >= 60 s
            if wait is None:
                return budget.remaining > 0
            return wait if budget.affordable(wait) else False
        return False

    return decide


async def send(
    client: httpx.AsyncClient,
    request: httpx.Request,
    *,
    service: str,
    budget: Budget,
    stream: bool = False,
    retry: bool = True,
    idempotent: bool = True,
    what: str = "",
) -> httpx.Response:
    """Send with retries; return a 2xx/3xx response or raise a videopoll ServiceError.

    With `stream=True` the caller owns the response (read it, then `aclose()`); only the
    request and headers are retried, never a body already half read.
    """
    try:
        async for attempt in stamina.retry_context(
            on=_hook(budget, idempotent), attempts=budget.attempts if retry else 1,
            timeout=max(budget.remaining, 0.001), wait_initial=0.5, wait_max=budget.max_wait,
        ):
            with attempt:
                response = await client.send(request, stream=stream)
                if response.status_code in RETRY_STATUSES or response.status_code == 403:
                    await response.aread()
                    await response.aclose()
                    if response.status_code != 403 or is_rate_limited(response):
                        raise _Retry(response)
    except _Retry as exc:
        raise error_for(exc.response, service, what) from None
    except httpx.TransportError as exc:
        raise transport_error(exc, service, request.url) from None
    if response.status_code >= 400:
        if stream:
            await response.aread()
            await response.aclose()
        raise error_for(response, service, what)
    return response
