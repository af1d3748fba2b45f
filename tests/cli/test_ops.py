"""Unattended runs: --quiet, --lock, --log-format json, the ping, GitHub Actions, retry (more
in test_retry.py)."""

from __future__ import annotations

import fcntl
import json
from pathlib import Path

from videopoll.sandbox.server import Response, StandIn

from .conftest import Stack


def test_quiet_prints_nothing_when_nothing_happened(stack: Stack) -> None:
    stack.video()
    result = stack.cli("poll", "--quiet")
    assert result.code == 0 and result.out == "" and result.err == ""


def test_quiet_prints_one_line_per_stored_or_failed_video(stack: Stack, video: bytes) -> None:
    stored, _, _ = stack.video("RUNNING", "finished", commit=video)
    failed, _, _ = stack.video("ERROR", None)
    stack.video()
    lines = stack.cli("poll", "--quiet").out.splitlines()
    assert len(lines) == 2
    assert any(line.startswith(f"stored {stored} ") for line in lines)
    assert any(line.startswith(f"failed {failed} ") for line in lines)


def test_a_held_lock_skips_the_pass(stack: Stack, tmp_path: Path) -> None:
    lock = tmp_path / "videopoll.lock"
    stack.video()
    with lock.open("a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        result = stack.cli("poll", "--lock", str(lock))
    assert result.code == 0 and "skipping this pass" in result.err and result.out == ""
    assert stack.sandbox.openhands.total() == 0
    assert stack.cli("poll", "--lock", str(lock), "--json").json["checked"] == 1


def test_a_symlinked_lock_is_refused_and_its_target_untouched(stack: Stack,
                                                              tmp_path: Path) -> None:
    """A symlink planted at the lock path (a shared /tmp) is not followed: one line, exit 2,
    and the file it points at keeps every byte."""
    target = tmp_path / "precious.txt"
    target.write_text("keep me\n")
    lock = tmp_path / "videopoll.lock"
    lock.symlink_to(target)
    result = stack.cli("poll", "--lock", str(lock))
    assert result.code == 2
    assert "is a symbolic link" in result.err and len(result.err.strip().splitlines()) <= 2
    assert target.read_text() == "keep me\n"
    assert stack.sandbox.openhands.total() == 0


def test_an_existing_lock_file_is_never_truncated(stack: Stack, tmp_path: Path) -> None:
    """A file we did not create keeps its content; one we create gets our pid."""
    existing = tmp_path / "existing.lock"
    existing.write_text("someone else's notes\n")
    assert stack.cli("poll", "--lock", str(existing)).code == 0
    assert existing.read_text() == "someone else's notes\n"
    fresh = tmp_path / "fresh.lock"
    assert stack.cli("poll", "--lock", str(fresh)).code == 0
    assert fresh.read_text().strip().isdigit()
    assert oct(fresh.stat().st_mode & 0o777) == "0o600"


def test_json_logs_on_stderr(stack: Stack, video: bytes) -> None:
    asset, _, _ = stack.video("RUNNING", "finished", commit=video)
    result = stack.cli("poll", "--quiet", "--log-format", "json")
    records = [json.loads(line) for line in result.err.splitlines()]
    assert {"ts", "level", "msg"} <= set(records[0])
    stored = [r for r in records if r.get("asset_id") == asset]
    assert stored and stored[0]["msg"].startswith("stored") and stored[0]["level"] == "info"
    assert records[-1]["msg"] == "pass" and records[-1]["processed"] == 1


class PingServer(StandIn):
    name = "pings"

    def __init__(self, status: int = 200) -> None:
        super().__init__()
        self.status = status
        self.route("POST", r"/ping/[^/]+(?:/(?P<what>\w+))?", "ping",
                   lambda request: Response(self.status, b"OK"))

    def paths(self) -> list[str]:
        return [path for method, path, _ in self.log]


def test_the_ping_wraps_the_pass(stack: Stack) -> None:
    stack.video()
    with PingServer() as pings:
        url = f"{pings.url}/ping/0b0e6c1f-check"
        assert stack.cli("poll", env={"VIDEOPOLL_PING_URL": url}).code == 0
        assert stack.cli("poll", env={"VIDEOPOLL_PING_URL": url,
                                      "OPENHANDS_BASE_URL": "http://127.0.0.1:9"}).code == 1
        assert pings.paths() == ["/ping/0b0e6c1f-check/start", "/ping/0b0e6c1f-check",
                                 "/ping/0b0e6c1f-check/start", "/ping/0b0e6c1f-check/1"]


def test_a_failing_ping_never_fails_the_pass(stack: Stack) -> None:
    stack.video()
    with PingServer(status=500) as pings:
        result = stack.cli("poll", env={"VIDEOPOLL_PING_URL": f"{pings.url}/ping/secret-uuid"})
    assert result.code == 0
    assert "ping to 127.0.0.1 failed" in result.err and "secret-uuid" not in result.err


def test_github_actions_step_summary_and_annotations(stack: Stack, video: bytes,
                                                     tmp_path: Path) -> None:
    summary_file = tmp_path / "step-summary.md"
    stack.video("RUNNING", "finished", commit=video)
    failed, cid, _ = stack.video("RUNNING", "error")
    stack.sandbox.openhands.add_error_event(cid, "AgentError", "ffmpeg crashed")
    result = stack.cli("poll", "--json", env={"GITHUB_ACTIONS": "true",
                                              "GITHUB_STEP_SUMMARY": str(summary_file)})
    assert result.json["processed"] == 1  # stdout stays pure JSON
    text = summary_file.read_text()
    assert "| checked | still generating | found | processed | failed | errors |" in text
    assert "| 2 | 0 | 1 | 1 | 1 | 0 |" in text
    assert "ffmpeg crashed" in text
    assert f"::error title=video failed::{failed}: ffmpeg crashed" in result.err.splitlines()


def test_retry_puts_failed_rows_back_with_their_history(stack: Stack) -> None:
    asset, cid, _ = stack.video("ERROR", None)
    stack.cli("poll")
    assert stack.seed.row(asset)["status"] == "failed"
    dry = stack.cli("retry", "--failed", "--dry-run", "--json")
    assert [r["id"] for r in dry.json] == [asset]
    assert stack.seed.row(asset)["status"] == "failed"
    result = stack.cli("retry", asset, "--json")
    assert result.code == 0 and result.json[0]["status"] == "starting"  # a new conversation
    history = stack.seed.metadata(asset)["error_history"]
    assert history[0]["error"] == "agent sandbox failed"
    assert stack.cli("retry").code == 2


