"""The one client layer: every service's `httpx.AsyncClient` comes from `make_client`.

A client is identified (User-Agent), bounded (timeouts, pool), counted and retried by the one
policy (`retry.RetryTransport`), and keeps credentials with the origin they were made for
(`origin_guard`). Our adapters send through `send`, which turns an error answer or an httpx
failure into videopoll's exception tree (`translate`); supabase-py's calls go through the same
client and transport, and its errors are translated at its own edge.
"""

from __future__ import annotations

import functools
import os
import ssl
import threading
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

import httpx

from .. import __version__
from ..errors import ProtocolError
from ..model import Service
from .pacing import RatePacer
from .retry import REPEATABLE, Budget, Repeatable, RetryTransport, idempotent
from .translate import error_for, safe_url, transport_error

USER_AGENT = f"videopoll/{__version__}"


class DeferredCAContext(ssl.SSLContext):
    """`ssl.create_default_context(cafile=…)` that reads its CA bundle at the first TLS
    handshake rather than when made: parsing certifi's bundle costs ~50 ms, which a run that
    speaks only plain http (a self-hosted agent on localhost, the local store, the stand-ins)
    never needs to pay. Every handshake goes through `wrap_bio` (asyncio, anyio) or
    `wrap_socket` (blocking sockets), so none can start before the bundle is in."""

    _where: tuple[str | None, str | None]
    _loaded: bool

    @classmethod
    def create(cls, *, cafile: str | None = None, capath: str | None = None
               ) -> DeferredCAContext:
        context = cls(ssl.PROTOCOL_TLS_CLIENT)  # verify_mode CERT_REQUIRED, check_hostname on
        context._where, context._loaded = (cafile, capath), False
        return context

    def _load(self) -> None:
        with _LOADING:
            if not self._loaded:
                cafile, capath = self._where
                if cafile is None and capath is None:
                    import certifi  # httpx's default bundle

                    cafile = certifi.where()
                self.load_verify_locations(cafile=cafile, capath=capath)
                self._loaded = True

    def wrap_bio(self, *args: Any, **kwargs: Any) -> ssl.SSLObject:
        self._load()
        return super().wrap_bio(*args, **kwargs)

    def wrap_socket(self, *args: Any, **kwargs: Any) -> ssl.SSLSocket:
        self._load()
        return super().wrap_socket(*args, **kwargs)


_LOADING = threading.Lock()


@functools.cache
def tls_context() -> ssl.SSLContext:
    """One CA bundle per process, shared by every client and read only if TLS is spoken:
    httpx's own choice of bundle (SSL_CERT_FILE, SSL_CERT_DIR, else certifi's)."""
    if cafile := os.environ.get("SSL_CERT_FILE"):
        return DeferredCAContext.create(cafile=cafile)
    return DeferredCAContext.create(capath=os.environ.get("SSL_CERT_DIR") or None)


# Services whose redirects may lead to another origin: GitHub's blob, raw and LFS downloads are
# served from other hosts. OpenHands and Supabase have no reason to send us elsewhere, so a
# redirect that leaves their origin is refused rather than followed.
CROSS_ORIGIN_REDIRECTS = frozenset({Service.GITHUB})
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


def origin_guard(service: Service) -> Callable[[httpx.Request], Any]:
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
    service: Service,
    base_url: str,
    *,
    calls: Counter[str],
    budget: Budget | None = None,
    repeatable: Repeatable = idempotent,
    headers: Mapping[str, str] | None = None,
    timeout: float = 30.0,
    transport: httpx.AsyncBaseTransport | None = None,
    max_connections: int = 10,
    pacer: RatePacer | None = None,
) -> httpx.AsyncClient:
    """A client for one service: identified, bounded, counted and retried (`RetryTransport`
    with `repeatable` saying which requests are safe to send twice), following redirects
    without taking a credential to another origin (`origin_guard`).

    `pacer` holds every request of the client to a rate budget (waits, never refuses).
    HTTP/1.1 only: pooled HTTP/2 connections go stale behind Supabase's gateway
    (supabase-py #1064). `transport` replaces the network (tests); the policy wraps it too.
    """
    limits = httpx.Limits(max_connections=max_connections,
                          max_keepalive_connections=max_connections)
    inner = transport or httpx.AsyncHTTPTransport(verify=tls_context(), limits=limits)
    return httpx.AsyncClient(
        base_url=base_url,
        headers={"User-Agent": USER_AGENT, **(headers or {})},
        timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
        follow_redirects=True,
        max_redirects=5,
        transport=RetryTransport(inner, service=service, budget=budget or Budget(),
                                 calls=calls, repeatable=repeatable, pacer=pacer),
        event_hooks={"request": [origin_guard(service)]},
    )


async def send(
    client: httpx.AsyncClient,
    request: httpx.Request,
    *,
    service: Service,
    stream: bool = False,
    idempotent: bool | None = None,
    what: str = "",
) -> httpx.Response:
    """Send (retried by the client's policy); return a 2xx/3xx response or raise a videopoll
    ServiceError. `idempotent` overrides the policy for this request (False: a start that
    must not happen twice is sent again only when it certainly never arrived).

    With `stream=True` the caller owns the response (read it, then `aclose()`); only the
    request and headers are retried, never a body already half read.
    """
    if idempotent is not None:
        request.extensions[REPEATABLE] = idempotent
    try:
        response = await client.send(request, stream=stream)
    except httpx.RequestError as exc:
        raise transport_error(exc, service, request.url) from None
    if response.status_code >= 400:
        if stream:
            await response.aread()
            await response.aclose()
        raise error_for(response, service, what)
    return response
