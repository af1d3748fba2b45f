"""DESIGN 8.1's mapping, one row per case: what each agent state means for the video."""

from __future__ import annotations

import pytest

from videopoll.model import Status
from videopoll.services.openhands import map_state, map_task

G, F, X = Status.GENERATING, Status.FINISHED, Status.FAILED


@pytest.mark.parametrize(("sandbox", "execution", "newest", "expected", "reason"), [
    ("STARTING", None, None, G, None),
    ("STARTING", "idle", None, G, None),
    ("RUNNING", None, None, G, None),
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
