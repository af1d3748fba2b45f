"""The client layer: the retry predicate, rate limits, counters and error translation."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from collections.abc import Callable

import httpx
import pytest

from videopoll.errors import AuthError, RateLimited, RequestRejected, ServerError, Unreachable
from videopoll.model import Service
from videopoll.services.http import USER_AGENT, make_client, send
from videopoll.services.retry import Budget
from videopoll.services.translate import retry_after

Handler = Callable[[httpx.Request], httpx.Response]


def client_for(handler: Handler, calls: Counter[str], budget: Budget | None = None
               ) -> httpx.AsyncClient:
    return make_client(Service.GITHUB, "http://api.test", calls=calls, budget=budget,
                       transport=httpx.MockTransport(handler))


async def call(handler: Handler, *, idempotent: bool = True, budget: Budget | None = None
               ) -> tuple[httpx.Response | Exception, Counter[str], list[httpx.Request]]:
    calls: Counter[str] = Counter()
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return handler(request)

    async with client_for(record, calls, budget) as client:
        request = client.build_request("GET", "/x")
        try:
            result: httpx.Response | Exception = await send(
                client, request, service=Service.GITHUB, idempotent=idempotent)
        except Exception as exc:
            result = exc
    return result, calls, seen


def sequence(*responses: httpx.Response | Exception) -> Handler:
    items = list(responses)

    def handler(request: httpx.Request) -> httpx.Response:
        item = items.pop(0) if len(items) > 1 else items[0]
        if isinstance(item, Exception):
            raise item
        return item

    return handler


async def test_every_request_is_counted_and_identified() -> None:
    result, calls, seen = await call(sequence(httpx.Response(200, json={})))
    assert isinstance(result, httpx.Response) and result.status_code == 200
    assert calls == Counter({"github": 1})
    assert seen[0].headers["User-Agent"] == USER_AGENT


@pytest.mark.parametrize("status", [500, 502, 503, 504])
async def test_server_errors_are_retried(status: int) -> None:
    result, calls, _ = await call(sequence(httpx.Response(status), httpx.Response(200)))
    assert isinstance(result, httpx.Response) and calls["github"] == 2


async def test_server_errors_give_up_after_the_attempts() -> None:
    result, calls, _ = await call(sequence(httpx.Response(503, json={"message": "down"})))
    assert isinstance(result, ServerError) and "HTTP 503: down" in result.message
    assert calls["github"] == 3  # stamina's test mode caps attempts at 3


@pytest.mark.parametrize(("status", "kind"), [
    (400, RequestRejected), (404, RequestRejected), (409, RequestRejected), (422, RequestRejected),
    (401, AuthError), (403, AuthError),
])
async def test_other_client_errors_are_never_retried(status: int, kind: type[Exception]) -> None:
    result, calls, _ = await call(sequence(httpx.Response(status, json={"message": "no"})))
    assert isinstance(result, kind) and calls["github"] == 1


async def test_auth_error_exits_3() -> None:
    result, _, _ = await call(sequence(httpx.Response(401, json={"message": "Bad credentials"})))
    assert isinstance(result, AuthError) and result.exit_code == 3
    assert "Bad credentials" in result.message


async def test_transport_errors_are_retried_then_unreachable() -> None:
    result, calls, _ = await call(sequence(httpx.ConnectError("refused")))
    assert isinstance(result, Unreachable) and calls["github"] == 3
    assert "http://api.test/x unreachable" in result.message


async def test_429_with_an_affordable_retry_after_is_retried() -> None:
    limited = httpx.Response(429, headers={"retry-after": "2"})
    result, calls, _ = await call(sequence(limited, httpx.Response(200)))
    assert isinstance(result, httpx.Response) and calls["github"] == 2


async def test_a_wait_longer_than_the_pass_defers_instead_of_sleeping() -> None:
    limited = httpx.Response(429, headers={"retry-after": "3600"})
    result, calls, _ = await call(sequence(limited), budget=Budget(max_wait=30))
    assert isinstance(result, RateLimited) and result.retry_after == 3600
    assert calls["github"] == 1


@pytest.mark.parametrize("headers", [
    {"x-ratelimit-remaining": "0", "x-ratelimit-reset": "9999999999"},
    {"retry-after": "120"},
])
async def test_github_primary_and_secondary_403_limits_are_rate_limits(
        headers: dict[str, str]) -> None:
    result, calls, _ = await call(sequence(httpx.Response(403, headers=headers)),
                                  budget=Budget(max_wait=30))
    assert isinstance(result, RateLimited) and calls["github"] == 1


async def test_secondary_limit_without_headers_is_recognised_by_its_message() -> None:
    body = {"message": "You have exceeded a secondary rate limit."}
    result, _, _ = await call(sequence(httpx.Response(403, json=body)),
                              budget=Budget(max_wait=30))
    assert isinstance(result, RateLimited)


def test_retry_after_order() -> None:
    both = httpx.Response(403, headers={"retry-after": "5", "x-ratelimit-remaining": "0",
                                        "x-ratelimit-reset": "2000"})
    assert retry_after(both, now=1000) == 5
    reset = httpx.Response(403, headers={"x-ratelimit-remaining": "0",
                                         "x-ratelimit-reset": "1060"})
    assert retry_after(reset, now=1000) == 60
    assert retry_after(httpx.Response(429), now=1000) is None


async def test_non_idempotent_requests_are_retried_only_when_they_never_arrived() -> None:
    result, calls, _ = await call(sequence(httpx.Response(503)), idempotent=False)
    assert isinstance(result, ServerError) and calls["github"] == 1
    result, calls, _ = await call(sequence(httpx.ReadTimeout("slow")), idempotent=False)
    assert isinstance(result, Unreachable) and calls["github"] == 1
    result, calls, _ = await call(sequence(httpx.ConnectError("refused"), httpx.Response(201)),
                                  idempotent=False)
    assert isinstance(result, httpx.Response) and calls["github"] == 2


async def test_messages_carry_no_query_strings() -> None:
    calls: Counter[str] = Counter()
    async with client_for(sequence(httpx.ConnectError("x")), calls) as client:
        request = client.build_request("GET", "/obj?token=s3cr3t-signature")
        with pytest.raises(Unreachable) as info:
            await send(client, request, service=Service.GITHUB)
    assert "s3cr3t" not in info.value.message


async def test_a_service_echoing_our_token_is_scrubbed_at_the_client_layer() -> None:
    calls: Counter[str] = Counter()

    def echo(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, json={"message": f"bad {request.headers['Authorization']}"})

    async with make_client(Service.GITHUB, "http://api.test", calls=calls,
                           headers={"Authorization": "Bearer ghp_ECHOED123"},
                           transport=httpx.MockTransport(echo)) as client:
        with pytest.raises(RequestRejected) as info:
            await send(client, client.build_request("GET", "/x"), service=Service.GITHUB)
    assert "ghp_ECHOED123" not in info.value.message and "bad ***" in info.value.message


def test_every_client_is_built_under_the_retry_policy() -> None:
    """A new service cannot skip the policy: the only place that builds an async client is
    `make_client`, and what it builds always sends through `RetryTransport`."""
    from pathlib import Path

    import videopoll
    from videopoll.services.retry import RetryTransport

    root = Path(videopoll.__file__).parent
    builders = sorted(str(p.relative_to(root)) for p in root.rglob("*.py")
                      if "AsyncClient(" in p.read_text() and "sandbox" not in p.parts)
    assert builders == ["services/http.py"]
    client = make_client(Service.STORE, "http://x.test", calls=Counter(),
                         transport=httpx.MockTransport(lambda r: httpx.Response(200)))
    assert isinstance(client._transport, RetryTransport)


@pytest.mark.parametrize(("error", "kind", "words"), [
    (httpx.TooManyRedirects("loop"), "ProtocolError", "redirects in a loop"),
    (httpx.DecodingError("bad gzip"), "ProtocolError", "cannot be decoded"),
    (httpx.ReadTimeout("slow"), "Unreachable", "timed out"),
    (httpx.RemoteProtocolError("closed"), "Unreachable", "unreachable"),
])
async def test_every_httpx_failure_maps_into_the_tree(error: Exception, kind: str,
                                                      words: str) -> None:
    """No httpx error escapes as an "internal error": each one has its class and words."""
    result, _, _ = await call(sequence(error))
    assert type(result).__name__ == kind and words in str(result)


def test_stamina_is_imported_only_for_a_retry() -> None:
    """Most runs never retry, so a clean answer does not load stamina (and tenacity under it,
    ~10 ms of every start); the first failure worth retrying does, and is counted once."""
    code = """
import asyncio, json, sys
from collections import Counter
import httpx
from videopoll.model import Service
from videopoll.services.http import make_client

answers = [httpx.Response(200), httpx.Response(503), httpx.Response(200)]
async def main():
    seen = []
    calls = Counter()
    async with make_client(Service.GITHUB, "http://api.test", calls=calls,
                           transport=httpx.MockTransport(lambda r: answers.pop(0))) as client:
        for _ in range(2):
            status = (await client.get("/x")).status_code
            seen.append([status, calls["github"], "stamina" in sys.modules])
    print(json.dumps(seen))
asyncio.run(main())
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert json.loads(done.stdout) == [[200, 1, False], [200, 3, True]], done.stderr
