"""videopoll's OpenHands client and CLI on the pinned real app server (OpenHands 1.11.0).

Few real conversations, each an agent-server process: one that finishes, one that errs, one
start that fails, and two second starts of a conversation id already taken. Tests that
need an earlier one's conversation find it in `SEEN` and skip with a line if it is missing.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
import uuid
from collections import Counter
from typing import Any

import httpx
import pytest

from videopoll.model import Service
from videopoll.sandbox.mp4 import make_mp4
from videopoll.sandbox.openhands_events import SHORT_RUN_KINDS
from videopoll.services.http import make_client
from videopoll.services.openhands import OpenHandsAgent, auth_headers

from .conftest import World
from .llm import FAIL_MARKER, HOLD_MARKER, REFUSAL, hold
from .openhands_server import RealOpenHands

pytestmark = pytest.mark.real
SEEN: dict[str, str] = {}  # conversation ids of earlier tests, by role


def agent_for(server: RealOpenHands, calls: Counter[str]) -> tuple[httpx.AsyncClient,
                                                                     OpenHandsAgent]:
    """videopoll's client as `Runtime` builds it, with the real server's session key."""
    client = make_client(Service.OPENHANDS, server.url, calls=calls,
                         headers=auth_headers(server.key, "session"))
    return client, OpenHandsAgent(client)


def needs(role: str) -> str:
    if role not in SEEN:
        pytest.skip(f"needs the {role} conversation of an earlier test in this module")
    return SEEN[role]


def test_unknown_ids_in_batches_of_99_and_more(openhands: RealOpenHands) -> None:
    """The batch caps (99 conversations, 100 start tasks) hold on the real server, and
    videopoll's client splits larger sets into ⌈N/99⌉ requests answered with null holes."""
    too_many = openhands.client.get("/api/v1/app-conversations",
                                    params=[("ids", uuid.uuid4().hex) for _ in range(100)])
    assert too_many.status_code == 400
    assert too_many.json() == {"detail": "Too many ids requested. Maximum is 99."}
    tasks = openhands.client.get("/api/v1/app-conversations/start-tasks",
                                 params=[("ids", uuid.uuid4().hex) for _ in range(101)])
    assert (tasks.status_code, tasks.json()) == (
        400, {"detail": "Cannot request more than 100 start tasks at once, got 101"})
    time.sleep(1.1)  # the server's rate window (10 a second per client address)

    async def go() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        calls: Counter[str] = Counter()
        client, agent = agent_for(openhands, calls)
        async with client:
            ids = [uuid.uuid4().hex for _ in range(150)]
            exactly = await agent.states(ids[:99])
            first = dict(calls)
            more = await agent.states(ids)
            started = await agent.resolve([uuid.uuid4().hex for _ in range(101)])
        return exactly, {"first": first, "all": dict(calls)}, {"more": more, "tasks": started}

    exactly, calls, rest = asyncio.run(go())
    assert len(exactly) == 99 and set(exactly.values()) == {None}
    assert len(rest["more"]) == 150 and set(rest["more"].values()) == {None}
    assert len(rest["tasks"]) == 101 and set(rest["tasks"].values()) == {None}
    assert calls["first"] == {"openhands": 1}
    assert calls["all"] == {"openhands": 1 + 2 + 2}  # 99 | 99 + 51 | 100 + 1 start tasks


def test_self_hosted_rate_limit_is_waited_out(openhands: RealOpenHands) -> None:
    """The self-hosted server's limiter (per client address: 10 a second served, the next
    10 held for a second, more refused with 429 and Retry-After: 1) never fails a pass."""
    time.sleep(1.1)

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=openhands.url,
                                     headers={"X-Session-API-Key": openhands.key}) as raw:
            return await asyncio.gather(*(
                raw.get("/api/v1/app-conversations", params={"ids": uuid.uuid4().hex})
                for _ in range(25)))

    answers = asyncio.run(burst())
    refused = [a for a in answers if a.status_code == 429]
    assert refused and all(a.status_code == 200 for a in answers if a not in refused)
    assert refused[0].json() == {"message": "Too many requests"}
    assert refused[0].headers["retry-after"] == "1"
    assert "x-ratelimit-limit" not in refused[0].headers
    time.sleep(1.1)

    async def many(connections: int
                   ) -> tuple[list[dict[str, Any]], Counter[int], float, int]:
        calls: Counter[str] = Counter()
        client = make_client(Service.OPENHANDS, openhands.url, calls=calls,
                             headers=auth_headers(openhands.key, "session"),
                             max_connections=connections)
        agent = OpenHandsAgent(client, concurrency=30)
        statuses: Counter[int] = Counter()

        async def seen(response: httpx.Response) -> None:
            statuses[response.status_code] += 1

        client.event_hooks["response"].append(seen)
        started = time.monotonic()
        async with client:
            found = await asyncio.gather(*(agent.states([uuid.uuid4().hex]) for _ in range(30)))
        # `calls` counts every attempt the retry policy made (the hook sees only answers
        # that reach the caller: a 429 is waited out below it).
        return list(found), statuses, time.monotonic() - started, calls["openhands"]

    # videopoll's own pool (10 connections) never gets past the held band: it is slowed down.
    found, statuses, took, sent = asyncio.run(many(10))
    assert len(found) == 30 and all(set(f.values()) == {None} for f in found)
    assert statuses == {200: 30} and took >= 1.0 and sent == 30
    time.sleep(1.1)
    # A wider pool meets the refusals, waits Retry-After and paces itself from then on.
    found, statuses, took, sent = asyncio.run(many(30))
    assert len(found) == 30 and all(set(f.values()) == {None} for f in found)
    assert sent > 30 and statuses == {200: 30}  # some 429s, each waited out and sent again
    time.sleep(1.1)


def test_generate_runs_a_real_conversation_to_a_stored_video(world: World) -> None:
    """generate → poll (start task resolved) → status running → finished → the file is
    committed → poll stores it: the row ends ready, on the real server."""
    server = world.openhands
    lesson = world.seed.lesson(f"Fractions {HOLD_MARKER}")
    started = world.cli("generate", lesson, "--json")
    assert started.code == 0, started.err
    row = started.json
    # The row is written first, under the conversation id videopoll chose for the start.
    assert row["status"] == "starting" and len(row["conversation_id"]) == 32
    task = server.wait_task(world.start_task(row["id"]))
    assert task["status"] == "READY", task
    assert task["request"]["selected_repository"] == "demo-org/video-artifacts"
    assert task["request"]["secrets"] == {"GEMINI_API_KEY": "**********"}

    polled = world.cli("poll", "--json")
    assert polled.code == 0, polled.err
    item = polled.json["items"][0]
    assert (item["action"], item["state"]) == ("resolved", "generating"), item
    cid = world.seed.row(row["id"])["conversation_id"]
    assert cid == row["conversation_id"] == task["app_conversation_id"].replace("-", "")
    SEEN["finished"] = cid

    running = world.cli("status", cid, "--json")
    assert running.code == 0, running.err
    assert running.json["agent"]["sandbox_status"] == "RUNNING"
    assert running.json["agent"]["execution_status"] == "running"

    server.llm.release()
    server.wait_execution(cid, {"finished"})
    waiting = world.cli("poll", "--json")
    assert waiting.code == 0, waiting.err
    assert waiting.json["items"][0]["state"] == "finished", waiting.json  # no file yet
    video = make_mp4("Fractions")
    world.github.put_file("demo-org/video-artifacts", row["github_path"], video)
    stored = world.cli("poll", "--json")
    assert stored.code == 0, stored.err
    assert (stored.json["processed"], stored.json["items"][0]["state"]) == (1, "ready")
    assert world.seed.row(row["id"])["status"] == "ready"
    assert world.seed.object(f"videos/{lesson}/{row['id']}.mp4") == video

    # The secret reached the agent (its registry lists it) and no event carries its value.
    everything = json.dumps(server.events(cid))
    assert '"GEMINI_API_KEY": {"value": "**********"' in everything
    assert world.gemini_key not in everything


def test_a_short_conversation_records_these_events(openhands: RealOpenHands) -> None:
    """The event log of a conversation that finished at its first step, in order: what the
    stand-in reproduces (SHORT_RUN_KINDS), status changes and snapshots included."""
    cid = needs("finished")
    deadline = time.monotonic() + 30  # the closing snapshot comes seconds after the rest
    while (events := openhands.events(cid))[-1].get("key") != "full_state" \
            and time.monotonic() < deadline:
        time.sleep(0.5)
    kinds = [e["kind"] + (f":{e['key']}" if "key" in e else "") for e in events]
    assert kinds == list(SHORT_RUN_KINDS["finished"])
    statuses = [e["value"] if e["key"] == "execution_status" else e["value"]["execution_status"]
                for e in events if e.get("key") in ("execution_status", "full_state")]
    assert statuses == ["idle", "running", "finished", "finished"]
    assert all("Z" not in e["timestamp"] and "+" not in e["timestamp"] for e in events)


def test_an_agent_error_fails_the_row_with_the_real_wording(world: World) -> None:
    """The LLM refuses: the conversation ends `error`; poll fails the row with the text of
    the real ConversationErrorEvent."""
    server = world.openhands
    lesson = world.seed.lesson(f"Volcanoes {FAIL_MARKER} {hold('volcanoes')}")
    started = world.cli("generate", lesson, "--wait", "--json",
                        VIDEOPOLL_INTERVAL="12")  # --wait gives up after 10 intervals
    assert started.code == 0, started.err
    cid = started.json["conversation_id"]
    assert cid, started.json
    SEEN["error"] = cid
    server.wait_execution(cid, {"running"})
    server.llm.release("volcanoes")
    server.wait_execution(cid, {"error"})
    polled = world.cli("poll", "--json")
    assert polled.code == 0, polled.err
    assert polled.json["failed"] == 1, polled.json
    error = world.seed.row(started.json["id"])["error"]
    assert REFUSAL in error and "BadRequestError" in error, error


def test_a_start_the_server_cannot_prepare_fails_the_row(world: World) -> None:
    """A repository the server's git provider does not know: the start task ends ERROR and
    poll fails the row with the server's reason."""
    lesson = world.seed.lesson("Tides")
    other = {"VIDEOPOLL_GITHUB_REPO": "demo-org/not-on-the-git-host"}
    started = world.cli("generate", lesson, "--json", **other)
    assert started.code == 0, started.err
    task_id = world.start_task(started.json["id"])
    assert world.openhands.wait_task(task_id)["status"] == "ERROR"
    polled = world.cli("poll", "--json", **other)
    assert polled.code == 0, polled.err
    assert world.seed.row(started.json["id"])["error"] == (
        "agent could not start: Git provider authentication issue when getting remote URL")


def test_a_gone_agent_server_still_has_its_events(world: World) -> None:
    """When a finished conversation's agent server is gone the batch says MISSING with a
    null execution_status, events search still answers (200, from the app server's copy),
    and status decides `finished` from them."""
    server = world.openhands
    cid = needs("finished")
    pid = server.agent_server_pid(cid)
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    gone = server.wait_execution(cid, {None})
    assert gone["sandbox_status"] == "MISSING"
    answer = server.client.get(f"/api/v1/conversation/{cid}/events/search",
                               params={"kind__eq": "ConversationStateUpdateEvent",
                                       "sort_order": "TIMESTAMP_DESC"})
    assert answer.status_code == 200 and answer.json()["items"]
    status = world.cli("status", cid, "--json")
    assert status.code == 0, status.err
    assert status.json["agent"]["sandbox_status"] == "MISSING"
    assert status.json["agent"]["state"] == "finished"


def test_starting_a_gone_conversation_id_again_runs_it_again(openhands: RealOpenHands) -> None:
    """A second start with the conversation_id of a conversation whose agent server is gone
    is accepted and READY under the same id and sandbox id: no second conversation, but the
    old one runs again, its event log continuing (not deduplicated: never re-POST a start)."""
    cid = needs("finished")
    before = openhands.events(cid)
    task = openhands.start_conversation("a second start", conversation_id=cid)
    assert task["status"] == "WORKING" and task["id"] != cid
    assert task["request"]["conversation_id"] == str(uuid.UUID(cid))  # echoed with dashes
    done = openhands.wait_task(task["id"])
    assert (done["status"], done["app_conversation_id"], done["sandbox_id"]) == (
        "READY", cid, cid)
    again = openhands.wait_execution(cid, {"finished"})
    assert again["sandbox_status"] == "RUNNING"
    listed = openhands.ok(openhands.client.get("/api/v1/app-conversations/search"))["items"]
    assert [c["id"] for c in listed].count(cid) == 1
    time.sleep(1)
    after = openhands.events(cid)
    assert after[:len(before)] == before and len(after) > len(before)


def test_starting_a_running_conversation_id_again_fails_and_blinds_the_first(
        world: World) -> None:
    """A second start with the conversation_id of a conversation whose agent is at work ends
    ERROR (a second agent server under the same sandbox id answers 500), and the first is
    lost to the server: the batch says RUNNING with a null execution_status and its events
    stop, even after its agent finishes. videopoll can only keep it generating."""
    server = world.openhands
    cid = uuid.uuid4().hex  # chosen by the client, as an idempotent start would
    first = server.start_conversation(f"a long job {hold('busy')}", conversation_id=cid)
    assert server.wait_task(first["id"])["app_conversation_id"] == cid
    running = server.wait_execution(cid, {"running"})
    agent = (running["conversation_url"], {"X-Session-API-Key": running["session_api_key"]})
    second = server.start_conversation("a second start", conversation_id=cid)
    done = server.wait_task(second["id"])
    assert done["status"] == "ERROR" and done["app_conversation_id"] is None
    assert done["detail"].startswith("Server error '500 Internal Server Error' for url "
                                     "'http://localhost:"), done["detail"]
    assert done["detail"].split("\n")[0].endswith("/api/conversations'")
    server.llm.release("busy")
    deadline = time.monotonic() + 30
    while httpx.get(agent[0], headers=agent[1]).json()["execution_status"] != "finished":
        assert time.monotonic() < deadline, "the first agent did not finish"
        time.sleep(0.5)
    time.sleep(5)  # ample for its webhooks, were they accepted
    blind = server.conversation(cid)
    assert blind is not None
    assert (blind["sandbox_status"], blind["execution_status"]) == ("RUNNING", None)
    statuses = [e["value"] for e in server.events(cid) if e.get("key") == "execution_status"]
    assert statuses == ["running"]
    status = world.cli("status", cid, "--json")
    assert status.code == 0, status.err
    assert status.json["agent"] == {"sandbox_status": "RUNNING", "execution_status": None,
                                    "state": "generating"}
