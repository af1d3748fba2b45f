"""The OpenHands stand-in does what the real app server (1.11.0) was seen doing in tests/real:
the same event log, events trailing the live status, second starts of a taken id, the
self-hosted rate limiter, pydantic's wording and the dropped connection after a 500."""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from videopoll.sandbox.agent import SimulatedAgent
from videopoll.sandbox.openhands import OpenHandsStandIn
from videopoll.sandbox.openhands_events import SHORT_RUN_KINDS

V1 = "/api/v1/app-conversations"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def server(clock: Clock) -> Iterator[OpenHandsStandIn]:
    agent = SimulatedAgent(step=0.1, run=1.0, clock=clock,
                           fail_when=lambda title, prompt: "the LLM refused"
                           if "fail" in prompt else None)
    with OpenHandsStandIn(agent=agent, event_lag=0.5) as standin:
        yield standin


@pytest.fixture
def client(server: OpenHandsStandIn) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, headers={"Authorization": "Bearer test-key"},
                      timeout=10) as http:
        yield http


def start(client: httpx.Client, prompt: str, **extra: Any) -> dict[str, Any]:
    """A start request the simulated agent can carry out (a repository and an .mp4 path)."""
    text = f"{prompt}: commit the video to `videos/l1/{uuid.uuid4().hex}.mp4`"
    body = {"initial_message": {"content": [{"type": "text", "text": text}]},
            "selected_repository": "acme/videos", **extra}
    answer = client.post(V1, json=body)
    assert answer.status_code == 200, answer.text
    task: dict[str, Any] = answer.json()
    return task


def task_of(client: httpx.Client, task_id: str) -> dict[str, Any]:
    found: dict[str, Any] = client.get(f"{V1}/start-tasks", params={"ids": task_id}).json()[0]
    return found


def conversation(client: httpx.Client, cid: str) -> dict[str, Any]:
    found: dict[str, Any] = client.get(V1, params={"ids": cid}).json()[0]
    return found


def log(client: httpx.Client, cid: str) -> list[dict[str, Any]]:
    body = client.get(f"/api/v1/conversation/{cid}/events/search", params={"limit": 100}).json()
    items: list[dict[str, Any]] = body["items"]
    return items


def kinds(events: list[dict[str, Any]]) -> list[str]:
    return [e["kind"] + (f":{e['key']}" if "key" in e else "") for e in events]


@pytest.mark.parametrize(("prompt", "outcome"), [("render it", "finished"),
                                                 ("fail it", "error")])
def test_a_short_run_logs_what_the_real_server_logs(client: httpx.Client, clock: Clock,
                                                    prompt: str, outcome: str) -> None:
    """Finished or failed at the first step, the log is the real one, in order; snapshots
    carry the dashed conversation id and the status; the error event follows the status."""
    task = start(client, prompt)
    clock.now += 1.0
    cid = task_of(client, task["id"])["app_conversation_id"]
    clock.now += 2.0
    assert conversation(client, cid)["execution_status"] == outcome
    clock.now += 1.0  # the webhooks' lag
    events = log(client, cid)
    assert kinds(events) == list(SHORT_RUN_KINDS[outcome])
    assert events[0]["value"] == {"id": str(uuid.UUID(cid)), "execution_status": "idle"}
    assert events[-1]["value"]["execution_status"] == outcome
    if outcome == "error":
        assert (events[-2]["code"], events[-2]["detail"]) == ("AgentError", "the LLM refused")


def test_events_reach_the_server_after_the_live_status(client: httpx.Client,
                                                       clock: Clock) -> None:
    """With event_lag the batch says `error` before the events search has the error event:
    what a poller meets between the agent server's answer and the webhook's."""
    task = start(client, "fail it")
    clock.now += 1.0
    cid = task_of(client, task["id"])["app_conversation_id"]
    clock.now += 2.0
    assert conversation(client, cid)["execution_status"] == "error"
    assert "ConversationErrorEvent" not in kinds(log(client, cid))
    clock.now += 0.5
    assert "ConversationErrorEvent" in kinds(log(client, cid))


def test_delay_events_holds_them_until_released(server: OpenHandsStandIn,
                                                client: httpx.Client) -> None:
    """Scripted lag: held events are invisible until `delay_events(cid, 0)`."""
    cid = server.add_conversation("RUNNING", "running")
    server.delay_events(cid, None)
    server.set_state(cid, execution_status="error")
    server.add_error_event(cid, "LLMBadRequestError", "quota")
    assert conversation(client, cid)["execution_status"] == "error"
    assert [e.get("value") for e in log(client, cid)][-1] == "running"
    server.delay_events(cid, 0)
    assert kinds(log(client, cid))[-2:] == ["ConversationStateUpdateEvent:execution_status",
                                            "ConversationErrorEvent"]


def test_a_second_start_of_a_running_conversation_fails_and_blinds_it(
        server: OpenHandsStandIn, client: httpx.Client, clock: Clock) -> None:
    """The real server's behaviour: the second task ends ERROR with the agent server's 500,
    and the first conversation is lost to the server: no execution_status, and no event of
    it arrives any more although its agent finishes."""
    cid = uuid.uuid4().hex
    first = start(client, "render it slowly", conversation_id=cid)
    clock.now += 0.8
    assert task_of(client, first["id"])["status"] == "READY"
    second = start(client, "again", conversation_id=str(uuid.UUID(cid)))
    assert second["request"]["conversation_id"] == str(uuid.UUID(cid))
    clock.now += 0.8
    failed = task_of(client, second["id"])
    assert failed["status"] == "ERROR" and failed["app_conversation_id"] is None
    assert failed["detail"].startswith("Server error '500 Internal Server Error' for url '")
    assert failed["sandbox_id"] == cid
    clock.now += 5
    blind = conversation(client, cid)
    assert (blind["sandbox_status"], blind["execution_status"]) == ("RUNNING", None)
    clock.now += 1  # the webhooks' lag
    assert server.agent_status(cid) == "finished"
    assert [e["value"] for e in log(client, cid)
            if e.get("key") == "execution_status"] == ["running"]


def test_a_second_start_of_a_stopped_conversation_runs_it_again(
        server: OpenHandsStandIn, client: httpx.Client, clock: Clock) -> None:
    """Same id, READY again, one conversation, the old log continued by a new run."""
    cid = uuid.uuid4().hex
    first = start(client, "render it", conversation_id=cid)
    clock.now += 5
    assert task_of(client, first["id"])["status"] == "READY"
    clock.now += 1  # the webhooks' lag
    before = log(client, cid)
    assert len(before) == len(SHORT_RUN_KINDS["finished"])
    server.set_state(cid, "MISSING")
    again = start(client, "render it once more", conversation_id=cid)
    clock.now += 5
    assert task_of(client, again["id"])["app_conversation_id"] == cid
    assert conversation(client, cid)["execution_status"] == "finished"
    clock.now += 1
    after = log(client, cid)
    assert after[:len(before)] == before
    assert kinds(after[len(before):]) == list(SHORT_RUN_KINDS["finished"])


def test_self_hosted_rate_limit() -> None:
    """Per client: 10 a second served, the next 10 held a second, more refused with the
    middleware's body and Retry-After: 1 (no X-RateLimit headers)."""
    with OpenHandsStandIn(rate_limit="self-hosted") as standin, \
            ThreadPoolExecutor(25) as pool:
        def one(_: int) -> tuple[int, float, httpx.Response]:
            began = time.monotonic()
            answer = httpx.get(f"{standin.url}{V1}", params={"ids": uuid.uuid4().hex},
                               headers={"Authorization": "Bearer test-key"}, timeout=10)
            return answer.status_code, time.monotonic() - began, answer

        results = list(pool.map(one, range(25)))
    refused = [r for status, _, r in results if status == 429]
    assert refused and {status for status, _, _ in results} == {200, 429}
    assert refused[0].json() == {"message": "Too many requests"}
    assert refused[0].headers["retry-after"] == "1"
    assert "x-ratelimit-limit" not in refused[0].headers
    held = [took for status, took, _ in results if status == 200 and took >= 0.9]
    assert held  # served, but only after the second's wait


@pytest.mark.parametrize(("raw", "problem"), [
    ("abc", "invalid length: found 3"),
    ("abcg", "invalid character: found `g` at 3"),
    ("0123456789abcdef0123456789abcdef0", "invalid length: found 33"),
    ("01234567x89ab-cdef-0123-456789abcdef", "invalid character: found `x` at 8"),
])
def test_uuid_errors_are_worded_like_the_real_server(client: httpx.Client, raw: str,
                                                     problem: str) -> None:
    """pydantic names the first impossible character, else the length."""
    answer = client.get(f"{V1}/start-tasks", params={"ids": raw})
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["msg"] == f"Input should be a valid UUID, {problem}"


def test_a_500_from_a_malformed_events_path_drops_the_connection(
        server: OpenHandsStandIn) -> None:
    """After the unhandled error's 500 the server closes the connection."""
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as raw:
        raw.sendall(b"GET /api/v1/conversation/nope/events/search HTTP/1.1\r\nHost: x\r\n"
                    b"Authorization: Bearer test-key\r\n\r\n")
        received = b""
        while chunk := raw.recv(4096):
            received += chunk
    assert received.startswith(b"HTTP/1.1 500") and received.endswith(b"Internal Server Error")


def test_start_tasks_echo_the_request_as_the_real_server(client: httpx.Client) -> None:
    """The echoed request carries agent_profile_id and the chosen id with dashes; the
    sandbox is named after the chosen conversation."""
    cid = uuid.uuid4().hex
    task = start(client, "render it", conversation_id=cid)
    assert task["request"]["agent_profile_id"] is None
    assert task["request"]["conversation_id"] == str(uuid.UUID(cid))
