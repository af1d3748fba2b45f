"""Exit codes 2 and 3: configuration missing or refused, named, before or at the first call."""

from __future__ import annotations

import os

import pytest

from .conftest import Stack


@pytest.mark.parametrize(("variable", "command"), [
    ("OPENHANDS_API_KEY", ["poll"]),
    ("GITHUB_TOKEN", ["poll"]),
    ("VIDEOPOLL_GITHUB_REPO", ["watch", "--until-done"]),
    ("OPENHANDS_API_KEY", ["generate", "7d1f0c7e-1f52-4a53-9d0c-1b9e4c6f0a11"]),
    ("GITHUB_TOKEN", ["status", "a" * 32]),
])
def test_missing_configuration_is_exit_2_naming_it_with_zero_requests(
        stack: Stack, variable: str, command: list[str]) -> None:
    stack.video("RUNNING", "finished")
    result = stack.cli(*command, env={variable: None})
    assert result.code == 2
    assert f"{variable} not configured" in result.err
    assert len(result.err.strip().splitlines()) <= 2  # the error and a hint, no traceback
    assert stack.sandbox.openhands.total() == 0 and stack.sandbox.github.total() == 0


def test_supabase_store_needs_its_url(stack: Stack) -> None:
    result = stack.cli("pending", env={"VIDEOPOLL_STORE": "supabase", "SUPABASE_URL": None})
    assert result.code == 2 and "SUPABASE_URL not configured" in result.err


def test_json_errors_have_a_stable_code(stack: Stack) -> None:
    result = stack.cli("poll", "--json", env={"GITHUB_TOKEN": None})
    assert result.code == 2
    assert result.json == {"error": {"code": "config", "exit_code": 2,
                                     "message": "GITHUB_TOKEN not configured",
                                     "hint": f"set GITHUB_TOKEN in the environment or in "
                                             f"{os.devnull}"}}


@pytest.mark.parametrize(("name", "value"), [("VIDEOPOLL_INTERVAL", "-1"),
                                              ("VIDEOPOLL_STORE", "nosql"),
                                              ("VIDEOPOLL_OPENHANDS_RATE", "fast")])
def test_bad_values_are_exit_2(stack: Stack, name: str, value: str) -> None:
    result = stack.cli("poll", env={name: value})
    assert result.code == 2 and name in result.err


def test_a_bad_dotenv_line_is_exit_2(stack: Stack, tmp_path: object) -> None:
    from pathlib import Path

    env_file = Path(str(tmp_path)) / "bad.env"
    env_file.write_text("VIDEOPOLL_LEASE=ten\n")
    result = stack.cli("poll", env={"VIDEOPOLL_ENV_FILE": str(env_file)})
    assert result.code == 2 and "VIDEOPOLL_LEASE" in result.err


def test_a_rejected_openhands_key_is_exit_3(stack: Stack) -> None:
    stack.video()
    result = stack.cli("poll", env={"OPENHANDS_API_KEY": "wrong-key-123456"})
    assert result.code == 3
    assert "openhands" in result.err and "credentials refused" in result.err
    assert "wrong-key-123456" not in result.err + result.out
    assert stack.sandbox.openhands.counts["conversations"] == 1  # 401 is never retried


def test_a_rejected_github_token_is_exit_3(stack: Stack) -> None:
    stack.video("RUNNING", "finished")
    result = stack.cli("poll", "--json", env={"GITHUB_TOKEN": "ghp_revoked0000000000"})
    assert result.code == 3
    assert result.json["error"]["code"] == "auth"
    assert "ghp_revoked" not in result.out + result.err


def test_an_unreachable_service_is_exit_1_and_rows_are_deferred(stack: Stack) -> None:
    asset, _, _ = stack.video()
    result = stack.cli("poll", "--json", env={"OPENHANDS_BASE_URL": "http://127.0.0.1:9"})
    assert result.code == 1
    summary = result.json
    assert summary["items"][0]["action"] == "deferred"
    assert summary["errors"][0]["service"] == "openhands"
    assert "unreachable" in summary["errors"][0]["detail"]
    assert stack.seed.row(asset)["status"] == "generating"


def test_status_with_openhands_unreachable_is_one_line_and_exit_1(stack: Stack) -> None:
    """DESIGN 6.1: an unreachable service at start-up of `status` is one line naming it and
    its URL, exit 1; never a report that says "generating" for a state it could not read."""
    _, cid, _ = stack.video()
    dead = {"OPENHANDS_BASE_URL": "http://127.0.0.1:9"}
    result = stack.cli("status", cid, env=dead)
    assert result.code == 1 and result.out == ""
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and "openhands" in lines[0] and "127.0.0.1:9" in lines[0]
    assert "unreachable" in lines[0]
    as_json = stack.cli("status", cid, "--json", env=dead)
    assert as_json.code == 1 and "generating" not in as_json.out
    assert as_json.json["error"]["code"] == "service"


def test_status_when_the_event_log_fails_is_exit_1_not_a_guess(stack: Stack) -> None:
    """A paused sandbox is decided from its event log; when that keeps failing, `status`
    says so (exit 1) instead of reporting the state a pass would have deferred."""
    from videopoll.sandbox.server import Fault

    _, cid, _ = stack.video("PAUSED", None)
    stack.sandbox.openhands.inject("events", Fault("status", status=500, times=None))
    result = stack.cli("status", cid, "--json")
    assert result.code == 1 and result.json["error"]["code"] == "service"
    assert "openhands" in result.json["error"]["message"]


def test_usage_errors_are_exit_2(stack: Stack) -> None:
    assert stack.cli("poll", "--limit", "zero").code == 2
    assert stack.cli("no-such-command").code == 2


def test_a_401_in_the_middle_of_a_run_ends_it_without_failing_the_video(
        stack: Stack, large_video: bytes) -> None:
    """The token is revoked between the lookup and the download: exit 3, the claim is
    released, the row is not failed, and the next run (with a good token) stores it."""
    from videopoll.sandbox.server import Fault

    asset, _, _ = stack.video("RUNNING", "finished", commit=large_video)  # downloaded by blob
    stack.sandbox.github.inject("blobs", Fault(
        "status", status=401, body=b'{"message":"Bad credentials","status":"401"}'))
    result = stack.cli("poll", "--json")
    assert result.code == 3 and result.json["error"]["code"] == "auth"
    assert stack.seed.row(asset)["status"] == "finished"
    assert stack.cli("poll", "--json").json["processed"] == 1
