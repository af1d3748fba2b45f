"""`retry` (issue 16, items 2 and 3): each failure is redriven the way its cause calls for —
an agent failure under a new conversation, a transfer failure by the transfer again — with its
history kept, and ids that cannot be retried are refused with the right exit code."""

from __future__ import annotations

import uuid

from .conftest import Stack

TOO_SMALL = {"VIDEOPOLL_MAX_BYTES": "100"}  # every test video is larger: the transfer fails


def test_an_agent_failure_gets_a_new_conversation_and_reaches_ready(stack: Stack) -> None:
    """Before the fix the row went back to generating on its failed conversation and the
    next pass failed it again at once."""
    asset, old_cid, _ = stack.video("ERROR", None)
    assert stack.cli("poll").code == 0
    assert stack.seed.row(asset)["error"] == "agent sandbox failed"
    dry = stack.cli("retry", asset, "--dry-run")
    assert dry.code == 0, dry.err
    assert f"would retry 1 video(s)\n  {asset} failed: agent sandbox failed\n" \
           "    -> would start a new conversation" in dry.out
    assert stack.seed.row(asset)["status"] == "failed" and not stack.sandbox.openhands.started
    result = stack.cli("retry", asset, "--json")
    assert result.code == 0, result.err
    [row] = result.json
    assert (row["id"], row["status"], row["cause"], row["previous_error"]) == (
        asset, "starting", "agent", "agent sandbox failed")
    assert row["conversation_id"] != old_cid
    [started] = stack.sandbox.openhands.started
    assert uuid.UUID(started["conversation_id"]).hex == row["conversation_id"]
    assert f"`videos/{row['lesson_id']}/{asset}.mp4`" in \
        started["initial_message"]["content"][0]["text"]  # the same row, the same path
    history = stack.seed.metadata(asset)["error_history"]
    assert [(h["error"], h["conversation_id"]) for h in history] == [
        ("agent sandbox failed", old_cid)]
    done = stack.cli("watch", "--until-done", "--strict", "--interval", "0.05",
                     "--timeout", "20")
    assert done.code == 0, done.err
    assert stack.seed.row(asset)["status"] == "ready"


def test_a_transfer_failure_is_transferred_again_without_a_new_conversation(
        stack: Stack, video: bytes) -> None:
    asset, cid, _ = stack.video("RUNNING", "finished", commit=video)
    assert stack.cli("poll", env=TOO_SMALL).code == 0
    reason = stack.seed.row(asset)["error"]
    assert reason.startswith(f"artifact is {len(video)} bytes, over VIDEOPOLL_MAX_BYTES")
    dry = stack.cli("retry", "--failed", "--dry-run", env={"OPENHANDS_API_KEY": None})
    assert dry.code == 0, dry.err
    assert f"  {asset} failed: {reason}\n    -> would retry the transfer" in dry.out
    # A transfer needs no agent: the store is enough, as before.
    result = stack.cli("retry", asset, env={"OPENHANDS_API_KEY": None, "GITHUB_TOKEN": None})
    assert result.code == 0, result.err
    assert "-> generating: the next pass transfers it again" in result.out
    assert stack.seed.row(asset)["conversation_id"] == cid
    assert not stack.sandbox.openhands.started
    polled = stack.cli("poll", "--json")
    assert polled.code == 0 and polled.json["processed"] == 1
    assert stack.seed.row(asset)["status"] == "ready"
    assert stack.seed.metadata(asset)["error_history"][0]["error"] == reason


def test_a_new_conversation_needs_the_agent_settings_before_anything_changes(
        stack: Stack) -> None:
    asset, _, _ = stack.video("ERROR", None)
    stack.cli("poll")
    result = stack.cli("retry", asset, env={"OPENHANDS_API_KEY": None})
    assert result.code == 2 and "OPENHANDS_API_KEY not configured" in result.err
    assert stack.seed.row(asset)["status"] == "failed"
    assert "error_history" not in stack.seed.metadata(asset)


def test_retry_failed_redrives_each_by_its_cause(stack: Stack, video: bytes) -> None:
    agent, _, _ = stack.video("RUNNING", "error")
    transfer, _, _ = stack.video("RUNNING", "finished", commit=video)
    stack.cli("poll", env=TOO_SMALL)
    result = stack.cli("retry", "--failed", "--json")
    assert result.code == 0, result.err
    causes = {r["id"]: (r["cause"], r["status"]) for r in result.json}
    assert causes == {agent: ("agent", "starting"), transfer: ("transfer", "generating")}
    assert len(stack.sandbox.openhands.started) == 1


def test_retry_refuses_ids_it_cannot_retry(stack: Stack, video: bytes) -> None:
    """Malformed: usage error (2); unknown: not found (1); not failed: refused naming its
    status (1) — never a silent `retried 0 video(s)` with exit 0."""
    malformed = stack.cli("retry", "nonexist")
    assert malformed.code == 2 and "not an asset id (a UUID): nonexist" in malformed.err
    unknown = stack.cli("retry", "00000000-0000-0000-0000-000000000000")
    assert unknown.code == 1
    assert "asset not found: 00000000-0000-0000-0000-000000000000" in unknown.err
    ready, _, _ = stack.video("RUNNING", "finished", commit=video)
    stack.cli("poll")
    refused = stack.cli("retry", ready, "--json")
    assert refused.code == 1 and refused.json["error"]["code"] == "refused"
    assert f"asset {ready} is ready, not failed: nothing to retry" in refused.err
    assert not stack.sandbox.openhands.started
