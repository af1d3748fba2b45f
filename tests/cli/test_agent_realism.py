"""`poll` on states the real OpenHands app server (1.11.0) was seen in by tests/real: a running
sandbox without an execution status, an error whose event has not arrived yet, a paused
sandbox whose last word is a `full_state` snapshot, and the self-hosted rate limiter."""

from __future__ import annotations

import pytest

from videopoll.sandbox.openhands_events import snapshot
from videopoll.sandbox.stack import Sandbox

from .conftest import Stack


def test_a_running_sandbox_without_a_status_is_decided_by_its_events(stack: Stack,
                                                                      video: bytes) -> None:
    """RUNNING with a null execution_status (the server could not get it from the agent
    server) whose events say finished: the video is stored, not waited on."""
    asset, cid, _ = stack.video("RUNNING", "finished", commit=video)
    stack.sandbox.openhands.set_state(cid, execution_status=None)
    result = stack.cli("poll", "--json")
    assert result.code == 0, result.err
    assert result.json["processed"] == 1, result.json
    assert stack.seed.row(asset)["status"] == "ready"


def test_an_error_waits_a_pass_for_its_event(stack: Stack) -> None:
    """The batch says `error` before the webhook has brought the error event: the row waits
    (not failed without its wording), and the next pass fails it with the agent's words."""
    openhands = stack.sandbox.openhands
    asset, cid, _ = stack.video("RUNNING", "running")
    openhands.delay_events(cid, None)
    openhands.set_state(cid, execution_status="error")
    openhands.add_error_event(cid, "LLMBadRequestError", "litellm.BadRequestError: quota")
    early = stack.cli("poll", "--json")
    assert early.code == 0, early.err
    assert (early.json["failed"], early.json["stillGenerating"]) == (0, 1), early.json
    assert stack.seed.row(asset)["status"] == "generating"
    openhands.delay_events(cid, 0)
    late = stack.cli("poll", "--json")
    assert late.json["failed"] == 1, late.json
    assert stack.seed.row(asset)["error"] == "litellm.BadRequestError: quota"


def test_a_paused_sandbox_is_decided_by_a_full_state_snapshot(stack: Stack,
                                                              video: bytes) -> None:
    """A log whose newest status is only in the closing `full_state` snapshot counts."""
    asset, cid, _ = stack.video("PAUSED", None, commit=video)
    stack.sandbox.openhands.add_event(cid, snapshot(cid, "finished"))
    result = stack.cli("poll", "--json")
    assert result.json["processed"] == 1, result.json
    assert stack.seed.row(asset)["status"] == "ready"


@pytest.mark.parametrize("stack", ["local"], indirect=True)
def test_a_pass_under_the_self_hosted_rate_limiter(stack: Stack) -> None:
    """A pass that needs an events lookup per row on a self-hosted server (per client: 10
    requests a second, the next 10 held a second, then 429 with Retry-After: 1) completes,
    every row checked, exit 0."""
    with Sandbox(step=0.01, run=0.05, openhands={"rate_limit": "self-hosted"}) as limited:
        stack.sandbox = limited
        for _ in range(30):
            stack.video("PAUSED", None)
        result = stack.cli("poll", "--json")
        served = limited.openhands.counts["events"]
    assert result.code == 0, result.err
    assert result.json["checked"] == 30 and result.json["stillGenerating"] == 30
    assert served >= 30
