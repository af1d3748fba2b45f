"""DESIGN 8.1's mapping, one row per case: what each agent state means for the video."""

from __future__ import annotations

from collections import Counter
from typing import Any

import httpx
import pytest

from videopoll.model import Service, Status
from videopoll.services.http import make_client
from videopoll.services.openhands import OpenHandsAgent, map_state, map_task, newest_status

G, F, X = Status.GENERATING, Status.FINISHED, Status.FAILED


@pytest.mark.parametrize(("sandbox", "execution", "newest", "expected", "reason"), [
    ("STARTING", None, None, G, None),
    ("STARTING", "idle", None, G, None),
    ("RUNNING", None, None, G, None),
    ("RUNNING", None, "finished", F, None),  # the server lost touch with a running agent
    ("RUNNING", None, "error", X, "agent error"),
    ("RUNNING", None, "running", G, None),
    ("RUNNING", "idle", None, G, None),
    ("RUNNING", "running", None, G, None),
    ("RUNNING", "paused", None, G, None),
    ("RUNNING", "finished", None, F, None),
    ("RUNNING", "error", None, X, "agent error"),
    ("RUNNING", "stuck", None, X, "agent stuck"),
    ("RUNNING", "waiting_for_confirmation", None, X, "needs a human"),
    ("RUNNING", "deleting", None, X, "being deleted"),
    ("ERROR", None, None, X, "sandbox failed"),
    ("PAUSED", None, "finished", F, None),
    ("PAUSED", None, "error", X, "agent error"),
    ("PAUSED", None, "stuck", X, "agent stuck"),
    ("PAUSED", None, "running", G, None),
    ("PAUSED", None, None, G, None),
    ("MISSING", None, "finished", F, None),
    ("MISSING", None, "error", X, "agent error"),
    ("MISSING", None, "running", X, "sandbox is gone"),
    ("MISSING", None, None, X, "sandbox is gone"),
])
def test_mapping_table(sandbox: str, execution: str | None, newest: str | None,
                       expected: Status, reason: str | None) -> None:
    state = map_state(sandbox, execution, newest)
    assert state.state is expected
    assert (state.reason is None) == (reason is None)
    if reason:
        assert state.reason is not None and reason in state.reason
    assert state.warning is None


def test_error_reason_comes_from_the_error_event() -> None:
    state = map_state("RUNNING", "error", None, "LLM quota exceeded")
    assert (state.state, state.reason) == (X, "LLM quota exceeded")


@pytest.mark.parametrize(("sandbox", "execution"), [("HIBERNATING", None),
                                                     ("RUNNING", "levitating")])
def test_unknown_enum_values_keep_generating_with_a_warning(sandbox: str, execution: str
                                                            ) -> None:
    state = map_state(sandbox, execution)
    assert state.state is G and state.warning is not None and "unknown" in state.warning


@pytest.mark.parametrize("status", ["WORKING", "WAITING_FOR_SANDBOX", "PREPARING_REPOSITORY",
                                    "RUNNING_SETUP_SCRIPT", "SETTING_UP_GIT_HOOKS",
                                    "SETTING_UP_SKILLS", "STARTING_CONVERSATION"])
def test_start_tasks_still_starting(status: str) -> None:
    task = map_task({"id": "t1", "status": status, "app_conversation_id": None})
    assert (task.state, task.conversation_id) == (Status.STARTING, None)


def test_ready_start_task_names_its_conversation() -> None:
    dashed = "4f9c2a0e-5b7d-4c1e-9a8b-7c6d5e4f3a2b"
    task = map_task({"id": "t1", "status": "READY", "app_conversation_id": dashed})
    assert (task.state, task.conversation_id) == (G, dashed.replace("-", ""))


def test_failed_start_task_carries_its_detail() -> None:
    task = map_task({"id": "t1", "status": "ERROR", "detail": "no sandbox capacity"})
    assert (task.state, task.detail) == (X, "no sandbox capacity")


@pytest.mark.parametrize(("events", "expected"), [
    ([], None),
    ([{"key": "stats", "value": {}}, {"key": "execution_status", "value": "running"}],
     "running"),
    ([{"key": "full_state", "value": {"execution_status": "finished"}},
      {"key": "execution_status", "value": "running"}], "finished"),
    ([{"key": "full_state", "value": {"id": "x"}}], None),
])
def test_newest_status_reads_status_events_and_snapshots(events: list[dict[str, Any]],
                                                         expected: str | None) -> None:
    """The newest (first) of `execution_status` changes and `full_state` snapshots wins."""
    assert newest_status(events) == expected


async def _agent_error_state(state_events: list[dict[str, Any]],
                             error_events: list[dict[str, Any]], later: bool = False
                             ) -> tuple[Any, list[str]]:
    """states() of one RUNNING/error conversation over a scripted transport (`later`: with
    explain_later, then `explain`, as a pass asks: the same answer, the same requests)."""
    asked: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        kind = request.url.params.get("kind__eq")
        asked.append(kind or "batch")
        if kind is None:
            return httpx.Response(200, json=[{"sandbox_status": "RUNNING",
                                              "execution_status": "error"}])
        items = state_events if kind == "ConversationStateUpdateEvent" else error_events
        return httpx.Response(200, json={"items": items, "next_page_id": None})

    client = make_client(Service.OPENHANDS, "http://oh.test", calls=Counter(),
                         transport=httpx.MockTransport(answer))
    async with client:
        agent = OpenHandsAgent(client)
        state = (await agent.states(["a" * 32], explain_later=later))["a" * 32]
        if later:
            assert state is not None and state.unexplained and state.state is X
            assert asked == ["batch"]  # the lookup waits for explain()
            state = await agent.explain("a" * 32, state)
    assert state is not None and not state.unexplained
    return state, asked


@pytest.mark.parametrize("later", [False, True])
async def test_an_error_with_its_event_fails_with_its_words(later: bool) -> None:
    """One lookup: the error event's detail is the reason."""
    state, asked = await _agent_error_state(
        [], [{"code": "LLMError", "detail": "quota  exceeded"}], later)
    assert (state.state, state.reason) == (X, "quota exceeded")
    assert asked == ["batch", "ConversationErrorEvent"]


@pytest.mark.parametrize("later", [False, True])
async def test_an_error_whose_events_lag_waits(later: bool) -> None:
    """No error event yet and a log that still says running: the webhook is behind, so
    the row keeps generating for a pass instead of failing without the agent's words."""
    state, asked = await _agent_error_state([{"key": "execution_status", "value": "running"}],
                                            [], later)
    assert (state.state, state.reason) == (G, None)
    assert asked == ["batch", "ConversationErrorEvent", "ConversationStateUpdateEvent"]


@pytest.mark.parametrize("logged", [
    [],  # a server whose agents send no events at all (no webhooks): nothing will come
    [{"key": "execution_status", "value": "error"}],  # caught up, no error event was written
])
async def test_an_error_without_an_event_to_wait_for_fails_at_once(
        logged: list[dict[str, Any]]) -> None:
    """Waiting is only for a log that is behind; otherwise the generic reason, now."""
    state, _ = await _agent_error_state(logged, [])
    assert (state.state, state.reason) == (X, "agent error")
