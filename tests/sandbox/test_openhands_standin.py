"""The OpenHands stand-in over real HTTP: every route, error shape, limit and the agent's walk."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import httpx
import pytest

from videopoll.sandbox.agent import START_STEPS, SimulatedAgent, placeholder_mp4
from videopoll.sandbox.openhands import OpenHandsStandIn
from videopoll.sandbox.openhands_events import new_event

V1 = "/api/v1/app-conversations"
Make = Callable[..., OpenHandsStandIn]
Connect = Callable[..., httpx.Client]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def make() -> Iterator[Make]:
    servers: list[OpenHandsStandIn] = []

    def build(**kwargs: Any) -> OpenHandsStandIn:
        # These tests poll in tight loops, as no paced client does: no limiter unless a test
        # of the limiter asks for one (the shared server keeps Cloud's default).
        kwargs.setdefault("rate_limit", None)
        server = OpenHandsStandIn(**kwargs)
        server.start()
        servers.append(server)
        return server

    yield build
    for server in servers:
        server.stop()


@pytest.fixture
def connect() -> Iterator[Connect]:
    clients: list[httpx.Client] = []

    def build(server: OpenHandsStandIn, key: str | None = "test-key",
              header: str = "Authorization") -> httpx.Client:
        headers = {} if key is None else {
            header: f"Bearer {key}" if header == "Authorization" else key}
        client = httpx.Client(base_url=server.url, headers=headers, timeout=5)
        clients.append(client)
        return client

    yield build
    for client in clients:
        client.close()


@pytest.fixture(scope="module")
def shared() -> Iterator[OpenHandsStandIn]:
    # One server for the default configuration: stopping one costs half a second.
    server = OpenHandsStandIn()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def server(shared: OpenHandsStandIn) -> OpenHandsStandIn:
    shared.reset()
    return shared


@pytest.fixture
def client(server: OpenHandsStandIn, connect: Connect) -> httpx.Client:
    return connect(server)


def body(prompt: str = "Make the lesson video and commit it to `videos/l1/a1.mp4`.",
         **extra: Any) -> dict[str, Any]:
    return {"initial_message": {"content": [{"type": "text", "text": prompt}]},
            "selected_repository": "acme/video-artifacts", "selected_branch": "main",
            "title": "Lesson one", **extra}


def conversations(client: httpx.Client, *ids: str) -> list[Any]:
    response = client.get(V1, params={"ids": list(ids)})
    assert response.status_code == 200, response.text
    result: list[Any] = response.json()
    return result


def tasks(client: httpx.Client, *ids: str) -> list[Any]:
    response = client.get(f"{V1}/start-tasks", params={"ids": list(ids)})
    assert response.status_code == 200, response.text
    result: list[Any] = response.json()
    return result


def events(client: httpx.Client, cid: str, **params: Any) -> dict[str, Any]:
    response = client.get(f"/api/v1/conversation/{cid}/events/search", params=params)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


# -- auth ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("headers", "error"), [
    ({}, "NoCredentialsError"),
    ({"Authorization": "Bearer wrong"}, "failed to authenticate"),
    ({"Authorization": "bearer test-key"}, "NoCredentialsError"),
    ({"Authorization": "Token test-key"}, "NoCredentialsError"),
    ({"X-Session-API-Key": "wrong"}, "failed to authenticate"),
])
def test_bearer_auth_refusals_use_the_middleware_shape(
        server: OpenHandsStandIn, connect: Connect, headers: dict[str, str], error: str) -> None:
    """Cloud refuses a missing or wrong key with 401 {"error": ...}."""
    response = connect(server, key=None).get(V1, params={"ids": [uuid.uuid4().hex]},
                                             headers=headers)
    assert response.status_code == 401
    assert response.json() == {"error": error}


def test_bearer_mode_accepts_the_session_header_as_fallback(
        server: OpenHandsStandIn, connect: Connect) -> None:
    """Cloud's middleware falls back to X-Session-API-Key when there is no Bearer header."""
    client = connect(server, key="test-key", header="X-Session-API-Key")
    assert client.get(V1, params={"ids": [uuid.uuid4().hex]}).status_code == 200


def test_session_mode_wants_the_session_header(make: Make, connect: Connect) -> None:
    """A self-hosted server checks X-Session-API-Key only and answers {"detail": ...}."""
    server = make(auth="session", api_key="s-key")
    ok = connect(server, key="s-key", header="X-Session-API-Key")
    assert ok.get(V1, params={"ids": [uuid.uuid4().hex]}).status_code == 200
    for client in (connect(server, key="s-key"), connect(server, key=None),
                   connect(server, key="nope", header="X-Session-API-Key")):
        response = client.get(V1, params={"ids": [uuid.uuid4().hex]})
        assert (response.status_code, response.json()) == (401, {"detail": "Unauthorized"})


def test_several_keys_and_bad_mode(make: Make, connect: Connect) -> None:
    server = make(api_key=["k1", "k2"])
    assert all(connect(server, key=k).get(V1, params={"ids": [uuid.uuid4().hex]})
               .status_code == 200 for k in ("k1", "k2"))
    with pytest.raises(ValueError, match="auth"):
        OpenHandsStandIn(auth="basic")


# -- rate limits -------------------------------------------------------------------------------
def test_rate_limit_per_second(make: Make, connect: Connect) -> None:
    """The fourth request in a 3/second window is a 429 with Cloud's body and headers."""
    server = make(rate_limit=(3, 100))
    client = connect(server)
    codes = [client.get(V1, params={"ids": [uuid.uuid4().hex]}) for _ in range(4)]
    assert [r.status_code for r in codes] == [200, 200, 200, 429]
    limited = codes[-1]
    assert limited.json() == {"error": "Rate limit exceeded: 3 per 1 second"}
    assert limited.headers["X-RateLimit-Limit"] == "3 per 1 second"
    assert limited.headers["X-RateLimit-Remaining"] == "0"
    assert 0 <= int(limited.headers["X-RateLimit-Reset"]) - int(time.time()) <= 1
    assert int(limited.headers["Retry-After"]) in (0, 1)
    assert server.counts["conversations"] == 4


def test_rate_limit_per_minute_and_per_key(make: Make, connect: Connect) -> None:
    server = make(rate_limit=(100, 5), api_key=["a", "b"])
    first, second = connect(server, key="a"), connect(server, key="b")
    codes = [first.get(V1, params={"ids": [uuid.uuid4().hex]}).status_code for _ in range(6)]
    assert codes == [200] * 5 + [429]
    limited = first.get(V1, params={"ids": [uuid.uuid4().hex]})
    assert limited.json() == {"error": "Rate limit exceeded: 5 per 1 minute"}
    assert 55 <= int(limited.headers["Retry-After"]) <= 60
    assert second.get(V1, params={"ids": [uuid.uuid4().hex]}).status_code == 200


def test_rate_limit_counts_only_authenticated_requests(make: Make, connect: Connect) -> None:
    server = make(rate_limit=(3, 100))
    for _ in range(5):
        assert connect(server, key="bad").get(V1, params={"ids": ["x"]}).status_code == 401
    good = connect(server)
    assert all(good.get(V1, params={"ids": [uuid.uuid4().hex]}).status_code == 200
               for _ in range(3))


def test_clouds_limits_by_default(client: httpx.Client, server: OpenHandsStandIn) -> None:
    """As strict as Cloud unless told otherwise: the eleventh request in a second is a 429."""
    codes = [client.get(V1, params={"ids": [uuid.uuid4().hex]}).status_code for _ in range(11)]
    assert codes[:10] == [200] * 10 and codes[10] == 429
    assert server.refused == 1 and server.client_rate() == "100/min, 10/s"


def test_no_rate_limit_when_turned_off(make: Make, connect: Connect) -> None:
    server = make(rate_limit=None)
    client = connect(server)
    assert all(client.get(V1, params={"ids": [uuid.uuid4().hex]}).status_code == 200
               for _ in range(12))
    assert server.client_rate() == "off"


def test_short_windows_for_tests_that_cannot_wait_a_minute(make: Make, connect: Connect
                                                           ) -> None:
    """The windows shrink (here 2 in 0.2 s and 3 in 1 s) and reopen when they have passed."""
    server = make(rate_limit=(2, 3), rate_windows=(0.2, 1.0))
    client = connect(server)

    def code() -> int:
        return client.get(V1, params={"ids": [uuid.uuid4().hex]}).status_code

    assert [code(), code(), code()] == [200, 200, 429]
    time.sleep(0.25)  # the short window has passed, the long one (3 in 1 s) not yet
    assert code() == 200
    limited = client.get(V1, params={"ids": [uuid.uuid4().hex]})
    assert limited.status_code == 429
    assert limited.json() == {"error": "Rate limit exceeded: 3 per 1 second"}
    time.sleep(1.0)
    assert code() == 200
    assert server.client_rate() is None


# -- start -----------------------------------------------------------------------------------------
def test_start_returns_a_working_task_and_records_secrets(
        server: OpenHandsStandIn, client: httpx.Client) -> None:
    response = client.post(V1, json=body(secrets={"GEMINI_API_KEY": "gem-s3cret"}))
    assert response.status_code == 200
    task = response.json()
    assert len(task["id"]) == 32 and int(task["id"], 16) >= 0
    assert (task["status"], task["app_conversation_id"], task["detail"]) == ("WORKING", None, None)
    assert task["created_at"].endswith("Z") and datetime.fromisoformat(task["created_at"])
    assert task["request"]["selected_repository"] == "acme/video-artifacts"
    assert task["request"]["secrets"] == {"GEMINI_API_KEY": "**********"}
    assert "gem-s3cret" not in response.text
    assert server.started[0]["secrets"] == {"GEMINI_API_KEY": "gem-s3cret"}
    again = tasks(client, task["id"])[0]
    assert again["status"] == "WORKING" and "gem-s3cret" not in str(again)
    assert server.counts["start"] == 1


def test_start_accepts_what_the_real_model_accepts(
        server: OpenHandsStandIn, client: httpx.Client) -> None:
    """Every field is optional and unknown fields are ignored, as in the real request model."""
    assert client.post(V1, json={}).status_code == 200
    assert client.post(V1, json=body(unknown_field=1, git_provider="github")).status_code == 200
    assert len(server.started) == 2


TEXT = ("body", "initial_message", "content", 0, "TextContent")


@pytest.mark.parametrize(("content", "payload", "kind", "loc"), [
    ("application/json", b"{nope", "json_invalid", ["body", 1]),
    ("application/json", b"", "missing", ["body"]),
    ("application/json", b"null", "missing", ["body"]),
    ("application/json", b"[1, 2]", "model_attributes_type", ["body"]),
    ("text/plain", b'{"title": "x"}', "model_attributes_type", ["body"]),
    (None, {"selected_repository": 5}, "string_type", ["body", "selected_repository"]),
    (None, {"title": ["x"]}, "string_type", ["body", "title"]),
    (None, {"secrets": {"GEMINI_API_KEY": 5}}, "string_type",
     ["body", "secrets", "GEMINI_API_KEY"]),
    (None, {"secrets": ["GEMINI_API_KEY"]}, "dict_type", ["body", "secrets"]),
    (None, {"initial_message": "hi"}, "model_attributes_type", ["body", "initial_message"]),
    (None, {"initial_message": {"content": "hi"}}, "list_type",
     ["body", "initial_message", "content"]),
    (None, {"initial_message": {"content": [{"type": "text"}]}}, "missing", [*TEXT, "text"]),
    (None, {"initial_message": {"content": [{"text": 3}]}}, "string_type", [*TEXT, "text"]),
    (None, {"initial_message": {"content": [{"text": "x", "lang": "en"}]}}, "extra_forbidden",
     [*TEXT, "lang"]),
    (None, {"initial_message": {"role": "robot", "content": []}}, "literal_error",
     ["body", "initial_message", "role"]),
    (None, {"git_provider": "svn"}, "enum", ["body", "git_provider"]),
    (None, {"conversation_id": "nope"}, "uuid_parsing", ["body", "conversation_id"]),
])
def test_start_rejects_bad_bodies_like_fastapi(
        server: OpenHandsStandIn, client: httpx.Client, content: str | None, payload: Any,
        kind: str, loc: list[Any]) -> None:
    if content is None:
        response = client.post(V1, json=payload)
    else:
        response = client.post(V1, content=payload, headers={"Content-Type": content})
    assert response.status_code == 422
    first = response.json()["detail"][0]
    assert (first["type"], first["loc"]) == (kind, loc)
    assert {"msg", "input"} <= set(first)
    assert server.started == []


def test_start_text_part_error_lists_both_union_members(client: httpx.Client) -> None:
    detail = client.post(V1, json={"initial_message": {"content": [{"type": "text"}]}}).json()
    locs = [e["loc"][4] for e in detail["detail"]]
    assert locs == ["TextContent", "ImageContent", "ImageContent"]
    assert detail["detail"][0]["msg"] == "Field required"


# -- start tasks -------------------------------------------------------------------------------
def test_start_tasks_in_request_order_with_null_holes(
        server: OpenHandsStandIn, client: httpx.Client) -> None:
    first = client.post(V1, json=body()).json()["id"]
    second = server.add_start_task("ERROR", detail="sandbox failed to start")
    unknown = uuid.uuid4().hex
    dashed = str(uuid.UUID(first))
    result = tasks(client, second, unknown, dashed)
    assert [t and t["id"] for t in result] == [second, None, first]
    assert (result[0]["status"], result[0]["detail"]) == ("ERROR", "sandbox failed to start")


@pytest.mark.parametrize("status", START_STEPS)
def test_start_task_statuses_are_served_verbatim(
        server: OpenHandsStandIn, client: httpx.Client, status: str) -> None:
    task_id = server.add_start_task(status)
    task = tasks(client, task_id)[0]
    assert task["status"] == status
    if status == "READY":
        assert conversations(client, task["app_conversation_id"])[0]["sandbox_status"] == \
            "RUNNING"
    else:
        assert task["app_conversation_id"] is None


def test_start_tasks_limits_and_errors(client: httpx.Client) -> None:
    hundred = [uuid.uuid4().hex for _ in range(100)]
    assert tasks(client, *hundred) == [None] * 100
    too_many = client.get(f"{V1}/start-tasks", params={"ids": [*hundred, uuid.uuid4().hex]})
    assert too_many.status_code == 400
    assert too_many.json() == {
        "detail": "Cannot request more than 100 start tasks at once, got 101"}
    bad = client.get(f"{V1}/start-tasks", params={"ids": [uuid.uuid4().hex, "nope"]})
    assert bad.status_code == 422
    assert (bad.json()["detail"][0]["type"], bad.json()["detail"][0]["loc"]) == (
        "uuid_parsing", ["query", "ids", 1])
    missing = client.get(f"{V1}/start-tasks")
    assert missing.status_code == 422
    assert missing.json()["detail"][0]["loc"] == ["query", "ids"]


def test_start_task_search_by_conversation(
        server: OpenHandsStandIn, client: httpx.Client) -> None:
    ready = server.add_start_task("READY")
    server.add_start_task("WORKING")
    cid = tasks(client, ready)[0]["app_conversation_id"]
    page = client.get(f"{V1}/start-tasks/search", params={"conversation_id__eq": cid}).json()
    assert [t["id"] for t in page["items"]] == [ready] and page["next_page_id"] is None
    everything = client.get(f"{V1}/start-tasks/search", params={"limit": 1}).json()
    assert len(everything["items"]) == 1 and everything["next_page_id"] == "1"
    assert client.get(f"{V1}/start-tasks/search", params={"sort_order": "NEWEST"}
                      ).status_code == 422


# -- conversations -------------------------------------------------------------------------------
def test_conversations_in_request_order_with_null_holes(
        server: OpenHandsStandIn, client: httpx.Client) -> None:
    one = server.add_conversation("RUNNING", "running", title="One", repository="acme/v")
    two = server.add_conversation("PAUSED", "finished")
    unknown = uuid.uuid4().hex
    result = conversations(client, two, unknown, str(uuid.UUID(one)).upper())
    assert [c and c["id"] for c in result] == [two, None, one]
    item = result[2]
    assert item["title"] == "One" and item["selected_repository"] == "acme/v"
    assert item["selected_branch"] == "main" and item["sandbox_id"]
    for key in ("created_at", "updated_at"):
        assert item[key].endswith("Z") and datetime.fromisoformat(item[key])
    assert {"conversation_url", "session_api_key", "tags", "llm_model", "metrics",
            "created_by_user_id"} <= set(item)


@pytest.mark.parametrize("sandbox", ["STARTING", "PAUSED", "ERROR", "MISSING", "RUNNING"])
def test_execution_status_is_null_unless_the_sandbox_runs(
        server: OpenHandsStandIn, client: httpx.Client, sandbox: str) -> None:
    cid = server.add_conversation(sandbox, "finished")
    item = conversations(client, cid)[0]
    assert item["sandbox_status"] == sandbox
    running = sandbox == "RUNNING"
    assert item["execution_status"] == ("finished" if running else None)
    assert (item["conversation_url"] is not None) is running
    assert (item["session_api_key"] is not None) is running


def test_conversation_limits_and_errors(client: httpx.Client) -> None:
    ninety_nine = [uuid.uuid4().hex for _ in range(99)]
    assert conversations(client, *ninety_nine) == [None] * 99
    too_many = client.get(V1, params={"ids": [*ninety_nine, uuid.uuid4().hex]})
    assert too_many.status_code == 400
    assert too_many.json() == {"detail": "Too many ids requested. Maximum is 99."}
    bad = client.get(V1, params={"ids": [uuid.uuid4().hex, "nope"]})
    assert bad.status_code == 400
    assert bad.json() == {"detail": "Invalid UUID format for ids: ['nope']"}
    missing = client.get(V1)
    assert missing.status_code == 422 and missing.json()["detail"][0]["type"] == "missing"


def test_set_state_remove_and_unknown_enum_values(
        server: OpenHandsStandIn, client: httpx.Client) -> None:
    cid = server.add_conversation()
    server.set_state(cid, execution_status="finished")
    assert conversations(client, cid)[0]["execution_status"] == "finished"
    server.set_state(cid, sandbox_status="PAUSED")
    assert conversations(client, cid)[0]["execution_status"] is None
    server.set_state(cid, sandbox_status="HIBERNATING", execution_status="pondering")
    assert conversations(client, cid)[0]["sandbox_status"] == "HIBERNATING"
    server.set_state(cid, sandbox_status="RUNNING")
    assert conversations(client, cid)[0]["execution_status"] == "pondering"
    server.remove(cid)
    assert conversations(client, cid) == [None]


def test_search_conversations(server: OpenHandsStandIn, client: httpx.Client) -> None:
    server.add_conversation(title="Algebra video")
    server.add_conversation(title="Biology video")
    found = client.get(f"{V1}/search", params={"title__contains": "Bio"}).json()
    assert [c["title"] for c in found["items"]] == ["Biology video"]
    paged = client.get(f"{V1}/search", params={"limit": 1}).json()
    assert len(paged["items"]) == 1 and paged["next_page_id"] == "1"
    rest = client.get(f"{V1}/search", params={"limit": 1, "page_id": "1"}).json()
    assert len(rest["items"]) == 1 and rest["next_page_id"] is None
    assert client.get(f"{V1}/search", params={"limit": 101}).status_code == 422


# -- events ---------------------------------------------------------------------------------------
def test_events_filtered_and_sorted(server: OpenHandsStandIn, client: httpx.Client) -> None:
    cid = server.add_conversation("RUNNING", "running")
    server.add_error_event(cid, "LLMBadRequestError", "context window exceeded")
    server.set_state(cid, execution_status="error")
    newest = events(client, cid, kind__eq="ConversationStateUpdateEvent",
                    sort_order="TIMESTAMP_DESC", limit=20)
    assert newest["next_page_id"] is None
    assert [(e["key"], e["value"]) for e in newest["items"]] == [
        ("execution_status", "error"), ("execution_status", "running"),
        ("full_state", {"id": str(uuid.UUID(cid)), "execution_status": "idle"})]
    oldest = events(client, cid, kind__eq="ConversationStateUpdateEvent")
    assert oldest["items"] == newest["items"][::-1]
    errors = events(client, cid, kind__eq="ConversationErrorEvent")["items"]
    assert [(e["code"], e["detail"]) for e in errors] == [
        ("LLMBadRequestError", "context window exceeded")]
    for event in newest["items"] + errors:
        assert not event["timestamp"].endswith("Z") and datetime.fromisoformat(event["timestamp"])
        assert {"id", "kind", "source"} <= set(event)


def test_events_paging_filters_and_count(server: OpenHandsStandIn, client: httpx.Client) -> None:
    cid = server.add_conversation("RUNNING", None)
    for n in range(5):
        server.add_event(cid, new_event("MessageEvent", text=str(n)))
    first = events(client, cid, kind__eq="MessageEvent", limit=2)
    assert [e["text"] for e in first["items"]] == ["0", "1"] and first["next_page_id"] == "2"
    second = events(client, cid, kind__eq="MessageEvent", limit=2, page_id=first["next_page_id"])
    assert [e["text"] for e in second["items"]] == ["2", "3"]
    middle = first["items"][1]["timestamp"]
    later = events(client, cid, kind__eq="MessageEvent", timestamp__gte=middle + "Z")
    assert [e["text"] for e in later["items"]] == ["1", "2", "3", "4"]
    count = client.get(f"/api/v1/conversation/{cid}/events/count",
                       params={"kind__eq": "MessageEvent"})
    assert count.json() == 5
    assert server.counts["events"] == 3 and server.counts["events_count"] == 1


@pytest.mark.parametrize(("params", "kind"), [
    ({"kind__eq": "StateEvent"}, "literal_error"),
    ({"limit": 0}, "greater_than"),
    ({"limit": 101}, "less_than_equal"),
    ({"limit": "many"}, "int_parsing"),
    ({"sort_order": "NEWEST"}, "enum"),
    ({"timestamp__gte": "yesterday"}, "datetime_from_date_parsing"),
])
def test_events_query_errors(server: OpenHandsStandIn, client: httpx.Client,
                             params: dict[str, Any], kind: str) -> None:
    cid = server.add_conversation()
    response = client.get(f"/api/v1/conversation/{cid}/events/search", params=params)
    assert response.status_code == 422
    assert response.json()["detail"][0]["type"] == kind


def test_events_of_unknown_and_malformed_conversations(client: httpx.Client) -> None:
    assert events(client, uuid.uuid4().hex) == {"items": [], "next_page_id": None}
    broken = client.get("/api/v1/conversation/not-a-uuid/events/search")
    assert broken.status_code == 500


def test_paused_conversation_keeps_its_status_in_events(
        server: OpenHandsStandIn, client: httpx.Client) -> None:
    """PAUSED hides execution_status in the batch; the events still say what happened."""
    cid = server.add_conversation("PAUSED", "finished")
    assert conversations(client, cid)[0]["execution_status"] is None
    newest = events(client, cid, kind__eq="ConversationStateUpdateEvent",
                    sort_order="TIMESTAMP_DESC", limit=1)["items"][0]
    assert (newest["key"], newest["value"]) == ("execution_status", "finished")


# -- routing ---------------------------------------------------------------------------------------
def test_wrong_method_and_unknown_path(server: OpenHandsStandIn, client: httpx.Client) -> None:
    assert client.delete(V1).status_code == 405
    assert client.delete(V1).json() == {"detail": "Method Not Allowed"}
    assert client.get("/api/conversations").status_code == 404
    assert server.counts["405"] == 2


# -- the simulated agent -------------------------------------------------------------------------
def test_agent_walks_a_start_to_a_committed_video(make: Make, connect: Connect) -> None:
    """Start statuses step by step, READY with a running conversation, then a commit and
    `finished`, all driven by a fake clock."""
    clock, commits = FakeClock(), []
    agent = SimulatedAgent(commit=lambda *args: commits.append(args), step=1.0, run=5.0,
                           clock=clock)
    server = make(agent=agent)
    client = connect(server)
    task_id = client.post(V1, json=body()).json()["id"]
    seen = []
    for _ in range(len(START_STEPS)):
        task = tasks(client, task_id)[0]
        seen.append(task["status"])
        clock.now += 1.0
    assert seen == list(START_STEPS)
    assert task["sandbox_id"] and task["agent_server_url"]
    cid = task["app_conversation_id"]
    item = conversations(client, cid)[0]
    assert (item["sandbox_status"], item["execution_status"]) == ("RUNNING", "running")
    assert item["title"] == "Make the lesson video and commit it to `videos/..."
    assert item["sandbox_id"] == task["sandbox_id"] and commits == []
    clock.now += 4.0
    assert conversations(client, cid)[0]["execution_status"] == "finished"
    [(repository, branch, path, data)] = commits
    assert (repository, branch, path) == ("acme/video-artifacts", "main", "videos/l1/a1.mp4")
    assert data[4:8] == b"ftyp"
    newest = events(client, cid, kind__eq="ConversationStateUpdateEvent",
                    sort_order="TIMESTAMP_DESC")["items"]
    assert [e["value"] for e in newest if e["key"] == "execution_status"][0] == "finished"


def test_agent_in_real_time(make: Make, connect: Connect) -> None:
    commits: list[tuple[str, str, str, bytes]] = []
    server = make(agent=SimulatedAgent(commit=lambda *a: commits.append(a), step=0.01, run=0.05))
    client = connect(server)
    task_id = client.post(V1, json=body(selected_branch="videos")).json()["id"]
    deadline = time.monotonic() + 1.5
    while (task := tasks(client, task_id)[0])["status"] != "READY":
        assert time.monotonic() < deadline
        time.sleep(0.01)
    while conversations(client, task["app_conversation_id"])[0]["execution_status"] != "finished":
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert [c[:3] for c in commits] == [("acme/video-artifacts", "videos", "videos/l1/a1.mp4")]


def test_agent_fail_when_ends_in_error_without_commit(make: Make, connect: Connect) -> None:
    clock, commits, asked = FakeClock(), [], []

    def fail_when(title: str | None, prompt: str) -> str | None:
        asked.append((title, prompt))
        return "Gemini quota exhausted"

    server = make(agent=SimulatedAgent(commit=lambda *a: commits.append(a), step=0.1, run=1.0,
                                       fail_when=fail_when, clock=clock))
    client = connect(server)
    task_id = client.post(V1, json=body()).json()["id"]
    clock.now += 10
    cid = tasks(client, task_id)[0]["app_conversation_id"]
    assert conversations(client, cid)[0]["execution_status"] == "error"
    assert commits == [] and asked == [("Lesson one", body()["initial_message"]["content"][0]
                                        ["text"])]
    [error] = events(client, cid, kind__eq="ConversationErrorEvent")["items"]
    assert error["detail"] == "Gemini quota exhausted"


@pytest.mark.parametrize(("extra", "detail"), [
    ({"initial_message": {"content": [{"type": "text", "text": "no path here"}]}},
     "no `.mp4` path"),
    ({"selected_repository": None}, "no repository"),
])
def test_agent_errors_when_it_cannot_commit(make: Make, connect: Connect,
                                            extra: dict[str, Any], detail: str) -> None:
    clock = FakeClock()
    server = make(agent=SimulatedAgent(step=0.1, run=1.0, clock=clock))
    client = connect(server)
    task_id = client.post(V1, json={**body(), **extra}).json()["id"]
    clock.now += 10
    cid = tasks(client, task_id)[0]["app_conversation_id"]
    assert conversations(client, cid)[0]["execution_status"] == "error"
    [error] = events(client, cid, kind__eq="ConversationErrorEvent")["items"]
    assert detail in error["detail"]


def test_agent_reports_a_failed_push(make: Make, connect: Connect) -> None:
    def commit(*_: Any) -> None:
        raise ConnectionError("remote hung up")

    clock = FakeClock()
    server = make(agent=SimulatedAgent(commit=commit, step=0.1, run=1.0, clock=clock))
    client = connect(server)
    task_id = client.post(V1, json=body()).json()["id"]
    clock.now += 10
    cid = tasks(client, task_id)[0]["app_conversation_id"]
    [error] = events(client, cid, kind__eq="ConversationErrorEvent")["items"]
    assert (error["code"], error["detail"]) == ("ConnectionError",
                                                 "git push failed: remote hung up")


def test_agent_bad_repository_fails_the_start_task(make: Make, connect: Connect) -> None:
    """A repository the server's git provider cannot find fails the task with the real
    server's words (which do not name the repository)."""
    clock = FakeClock()
    server = make(agent=SimulatedAgent(step=1.0, clock=clock))
    client = connect(server)
    task_id = client.post(V1, json=body(selected_repository="not a repo")).json()["id"]
    clock.now += 2.5
    task = tasks(client, task_id)[0]
    assert task["status"] == "ERROR"
    assert task["detail"] == "Git provider authentication issue when getting remote URL"
    clock.now += 10
    assert tasks(client, task_id)[0]["app_conversation_id"] is None


def test_agent_uses_make_video_and_a_chosen_conversation_id(make: Make, connect: Connect) -> None:
    clock, commits, titles = FakeClock(), [], []

    def make_video(title: str) -> bytes:
        titles.append(title)
        return b"\x00\x00\x00\x18ftypmp42" + bytes(16)

    server = make(agent=SimulatedAgent(commit=lambda *a: commits.append(a), make_video=make_video,
                                       step=0.1, run=1.0, clock=clock))
    client = connect(server)
    chosen = str(uuid.uuid4())
    task_id = client.post(V1, json=body(conversation_id=chosen)).json()["id"]
    clock.now += 10
    assert tasks(client, task_id)[0]["app_conversation_id"] == uuid.UUID(chosen).hex
    assert titles == ["Lesson one"] and commits[0][3].startswith(b"\x00\x00\x00\x18ftyp")


def test_agent_is_lazy_and_commits_once_under_concurrency(make: Make, connect: Connect) -> None:
    """Nothing happens between requests; concurrent pollers trigger exactly one commit."""
    clock, commits = FakeClock(), []

    def slow_commit(*args: Any) -> None:
        time.sleep(0.2)
        commits.append(args)

    server = make(agent=SimulatedAgent(commit=slow_commit, step=0.1, run=1.0, clock=clock))
    client = connect(server)
    task_id = client.post(V1, json=body()).json()["id"]
    clock.now += 10
    assert commits == []
    barrier = threading.Barrier(8)

    def poll() -> None:
        with httpx.Client(base_url=server.url, headers=client.headers, timeout=5) as mine:
            barrier.wait()
            mine.get(f"{V1}/start-tasks", params={"ids": [task_id]}).raise_for_status()

    threads = [threading.Thread(target=poll) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(commits) == 1
    cid = tasks(client, task_id)[0]["app_conversation_id"]
    assert conversations(client, cid)[0]["execution_status"] == "finished"


def test_tick_without_requests_and_scripting_takes_over(make: Make, connect: Connect) -> None:
    clock, commits = FakeClock(), []
    server = make(agent=SimulatedAgent(commit=lambda *a: commits.append(a), step=0.1, run=1.0,
                                       clock=clock))
    client = connect(server)
    first = client.post(V1, json=body()).json()["id"]
    second = client.post(V1, json=body()).json()["id"]
    clock.now += 1.0
    server.tick()
    cid = tasks(client, second)[0]["app_conversation_id"]
    server.set_state(cid, execution_status="stuck")  # scripted: the agent leaves it alone
    clock.now += 10
    server.tick()
    assert len(commits) == 1
    first_cid = tasks(client, first)[0]["app_conversation_id"]
    assert conversations(client, first_cid, cid)[0]["execution_status"] == "finished"
    assert conversations(client, cid)[0]["execution_status"] == "stuck"


def test_placeholder_mp4_boxes() -> None:
    data = placeholder_mp4("Lesson")
    offset, kinds = 0, []
    while offset < len(data):
        size = int.from_bytes(data[offset:offset + 4], "big")
        kinds.append(data[offset + 4:offset + 8])
        offset += size
    assert offset == len(data) and kinds == [b"ftyp", b"moov", b"mdat"]
    assert data[4:8] == b"ftyp" and data.endswith(b"Lesson")


def test_reset_forgets_everything(server: OpenHandsStandIn, client: httpx.Client) -> None:
    cid = server.add_conversation()
    task_id = server.add_start_task()
    client.post(V1, json=body())
    server.reset()
    assert server.started == [] and server.total() == 0
    assert conversations(client, cid) == [None] and tasks(client, task_id) == [None]


def test_agent_pauses_idle_sandboxes(make: Make, connect: Connect) -> None:
    """With pause_after the finished conversation's sandbox is PAUSED: execution_status reads
    null and the newest execution_status event still says finished."""
    clock = FakeClock()
    server = make(agent=SimulatedAgent(step=0.1, run=1.0, pause_after=30.0, clock=clock))
    client = connect(server)
    task_id = client.post(V1, json=body()).json()["id"]
    clock.now += 2.0
    cid = tasks(client, task_id)[0]["app_conversation_id"]
    assert conversations(client, cid)[0]["execution_status"] == "finished"
    clock.now += 30.0
    item = conversations(client, cid)[0]
    assert (item["sandbox_status"], item["execution_status"]) == ("PAUSED", None)
    newest = events(client, cid, kind__eq="ConversationStateUpdateEvent",
                    sort_order="TIMESTAMP_DESC")["items"]
    assert [e["value"] for e in newest if e["key"] == "execution_status"][0] == "finished"


def test_context_manager_returns_the_openhands_stand_in() -> None:
    with OpenHandsStandIn() as server:
        assert server.add_conversation()
