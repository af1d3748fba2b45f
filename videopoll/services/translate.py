"""How an HTTP answer or an httpx failure becomes a videopoll exception, the same for every
service: 401/403 refused credentials, 429 (and GitHub's 403 flavour) rate limits, 5xx server
errors, any other 4xx a rejected request; transport failures unreachable; a redirect loop or
an undecodable body a protocol error. Error text quoted from a service never carries our own
credentials back (some services echo them)."""

from __future__ import annotations

import email.utils
import time
from typing import Any

import httpx

from ..errors import (
    AuthError,
    ProtocolError,
    RateLimited,
    RequestRejected,
    ServerError,
    ServiceError,
    Unreachable,
)
from ..model import Service

SECRET_HEADERS = ("authorization", "apikey", "x-session-api-key", "x-access-token")


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
            try:
                parsed = email.utils.parsedate_to_datetime(raw)
            except (TypeError, ValueError):  # neither seconds nor a date: no advice
                return None
            return max(0.0, parsed.timestamp() - (now or time.time()))
    if response.headers.get("x-ratelimit-remaining") == "0":
        reset = response.headers.get("x-ratelimit-reset")
        if reset and reset.isdigit():
            return max(1.0, int(reset) - (now or time.time()))
    return None


def is_rate_limited(response: httpx.Response) -> bool:
    """429, or GitHub's 403 flavour of a primary or secondary rate limit (the body must
    have been read)."""
    if response.status_code == 429:
        return True
    if response.status_code != 403:
        return False
    if "retry-after" in response.headers or response.headers.get("x-ratelimit-remaining") == "0":
        return True
    # A secondary limit may come with neither header; its message says so.
    return "rate limit" in _detail(response).lower()


def error_for(response: httpx.Response, service: Service, what: str = "") -> ServiceError:
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
    return ": " + unechoed(" ".join(text.split()), request)[:160]


def unechoed(text: str, request: httpx.Request | None) -> str:
    """Remove our own credentials from a service's text: some services echo them back."""
    if request is None:
        return text
    for name in SECRET_HEADERS:
        value = request.headers.get(name, "")
        for part in sorted({value, value.partition(" ")[2]}, key=len, reverse=True):
            if len(part) >= 4:
                text = text.replace(part, "***")
    return text


def transport_error(exc: httpx.HTTPError, service: Service, url: httpx.URL | str
                    ) -> ServiceError:
    """Any httpx failure without an answer to translate: a dead or slow connection is
    Unreachable; a redirect loop or a body that cannot be decoded breaks the protocol."""
    if isinstance(exc, httpx.TooManyRedirects):
        return ProtocolError(f"{service}: {safe_url(url)} redirects in a loop", service=service)
    if isinstance(exc, httpx.DecodingError):
        return ProtocolError(f"{service}: {safe_url(url)} sent a body that cannot be decoded "
                             f"({type(exc).__name__})", service=service)
    kind = "timed out" if isinstance(exc, httpx.TimeoutException) else "unreachable"
    return Unreachable(f"{service}: {safe_url(url)} {kind} ({type(exc).__name__})",
                       service=service)
