"""Issue 16 (items 1, 6, 8, 12): what the user reads is true and says what to fix.

JSON logs are JSON to the last line (retries included, as our own records); a refused
credential names its variable; a home that cannot be written is exit 2 naming
VIDEOPOLL_HOME, and `doctor` creates nothing without --fix; `--json` errors keep their hint
and usage errors have an object too; the cron log has each event once; the examples hold.
"""

from __future__ import annotations

import configparser
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from .conftest import Result, Stack

ROOT = Path(__file__).resolve().parents[2]
DEAD = "http://127.0.0.1:9"  # nothing listens on the discard port: connection refused


def records(text: str) -> list[dict[str, Any]]:
    """Every line of `text` as a JSON object (fails on any line that is not one)."""
    parsed = [json.loads(line) for line in text.splitlines()]
    assert all(isinstance(r, dict) for r in parsed)
    return parsed


# -- 1: JSON logs are JSON, retries are our own records --------------------------------------

def test_retries_are_json_records_under_log_format_json(stack: Stack) -> None:
    """An unreachable OpenHands is retried; each retry is a JSON record of ours (service,
    cause, attempt), never stamina's bare `stamina.retry_scheduled` line."""
    stack.video()
    result = stack.cli("poll", "--quiet", "--log-format", "json",
                       env={"OPENHANDS_BASE_URL": DEAD})
    assert result.code == 1 and result.out == ""
    logged = records(result.err)
    retries = [r for r in logged if r["msg"].startswith("retrying openhands GET")]
    assert [r["attempt"] for r in retries] == [1, 2]  # the test mode allows 3 attempts
    assert {r["service"] for r in retries} == {"openhands"}
    assert {r["cause"] for r in retries} == {"ConnectError"}
    assert "stamina" not in result.err
    assert logged[-1]["msg"] == "pass"


def test_retries_are_text_records_under_log_format_text(stack: Stack) -> None:
    stack.video()
    result = stack.cli("poll", "--quiet", "--log-format", "text",
                       env={"OPENHANDS_BASE_URL": DEAD})
    assert result.code == 1
    retries = [line for line in result.err.splitlines() if " INFO    retrying openhands" in line]
    assert len(retries) == 2 and "stamina" not in result.err


@pytest.mark.parametrize("command", [["poll"], ["poll", "--quiet"], ["generate", "LESSON"]])
def test_without_log_format_retries_leave_no_line(stack: Stack, command: list[str]) -> None:
    """No --log-format: a retry is not worth a line (the outcome is reported once)."""
    stack.video()
    lesson = stack.seed.lesson("Retried")
    args = [lesson if a == "LESSON" else a for a in command]
    result = stack.cli(*args, env={"OPENHANDS_BASE_URL": DEAD})
    assert result.code == 1
    assert "stamina" not in result.err and "retrying" not in result.err


def test_the_last_words_of_a_failed_run_are_a_record_too(stack: Stack) -> None:
    """A run that ends in an error (here a refused key) under --log-format json ends with a
    JSON error record carrying the code, the hint and the exit code."""
    stack.video()
    result = stack.cli("poll", "--log-format", "json", "--quiet",
                       env={"OPENHANDS_API_KEY": "not-the-key-0123"})
    assert result.code == 3
    last = records(result.err)[-1]
    assert (last["level"], last["code"], last["exit_code"]) == ("error", "auth", 3)
    assert "OPENHANDS_API_KEY" in last["hint"]
    assert "not-the-key-0123" not in result.err


# -- 6: a refused credential names its variable ----------------------------------------------

def refused(stack: Stack, variable: str, *args: str, extra: dict[str, str | None] | None = None
            ) -> Result:
    return stack.cli(*args, env={variable: "not-the-key-0123", **(extra or {})})


@pytest.mark.parametrize("variable", ["OPENHANDS_API_KEY", "GITHUB_TOKEN"])
def test_a_refused_credential_names_its_variable(stack: Stack, video: bytes,
                                                 variable: str) -> None:
    stack.video("RUNNING", "finished", commit=video)  # the pass needs GitHub too
    result = refused(stack, variable, "poll")
    assert result.code == 3
    hint = [line for line in result.err.splitlines() if line.startswith("hint:")]
    assert len(hint) == 1 and f"check {variable} (set in the environment)" in hint[0]
    as_json = refused(stack, variable, "poll", "--json")
    assert as_json.code == 3 and variable in as_json.json["error"]["hint"]
    assert "not-the-key-0123" not in result.out + result.err + as_json.out + as_json.err


@pytest.mark.postgres
def test_a_refused_service_role_key_names_its_variable(stack: Stack) -> None:
    if stack.seed.kind != "supabase":
        pytest.skip("the local store takes no key")
    for args in (["pending"], ["poll"]):
        result = refused(stack, "SUPABASE_SERVICE_ROLE_KEY", *args)
        assert result.code == 3, result.err
        assert "hint: check SUPABASE_SERVICE_ROLE_KEY (set in the environment)" in result.err
    doctor = refused(stack, "SUPABASE_SERVICE_ROLE_KEY", "doctor", "--json")
    assert doctor.code == 3
    store = [c for c in doctor.json["checks"] if c["name"] == "store"]
    assert store and "SUPABASE_SERVICE_ROLE_KEY" in store[0]["hint"]


@pytest.mark.parametrize("variable", ["OPENHANDS_API_KEY", "GITHUB_TOKEN"])
def test_doctor_names_the_refused_variable(stack: Stack, variable: str) -> None:
    result = refused(stack, variable, "doctor", "--json")
    assert result.code == 3
    refusals = [c for c in result.json["checks"] if not c["ok"]]
    assert refusals and all(variable in c["hint"] for c in refusals)
    human = refused(stack, variable, "doctor")
    assert human.code == 3 and f"hint: check {variable}" in human.out


def test_a_refused_key_from_the_env_file_says_so(stack: Stack, tmp_path: Path) -> None:
    """The hint says where the value came from: the .env file, not the environment; and the
    original system's OPENHAND_API_KEY is named when that is the one set."""
    stack.video()
    env_file = tmp_path / "videopoll.env"
    env_file.write_text("OPENHAND_API_KEY=not-the-key-0123\n")
    result = stack.cli("poll", env={"OPENHANDS_API_KEY": None,
                                    "VIDEOPOLL_ENV_FILE": str(env_file)})
    assert result.code == 3
    assert f"hint: check OPENHAND_API_KEY (set in {env_file})" in result.err


# -- 8: VIDEOPOLL_HOME -------------------------------------------------------------------------

def local_only(stack: Stack) -> None:
    if stack.seed.kind != "local":
        pytest.skip("VIDEOPOLL_HOME is the local store's")


@pytest.mark.parametrize("command", [["pending"], ["poll"], ["retry", "--failed"]])
def test_a_home_that_cannot_be_created_is_a_configuration_error(
        stack: Stack, tmp_path: Path, command: list[str]) -> None:
    local_only(stack)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder\n")
    result = stack.cli(*command, env={"VIDEOPOLL_HOME": str(blocker / "home")})
    assert result.code == 2
    assert result.err.splitlines()[0].startswith(
        f"error: VIDEOPOLL_HOME={blocker / 'home'} cannot be created: Not a directory")
    assert "hint: point VIDEOPOLL_HOME at a folder" in result.err
    as_json = stack.cli(*command, "--json", env={"VIDEOPOLL_HOME": str(blocker / "home")})
    assert as_json.code == 2 and as_json.json["error"]["code"] == "config"
    assert "VIDEOPOLL_HOME" in as_json.json["error"]["hint"]


def test_doctor_creates_nothing_without_fix(stack: Stack, tmp_path: Path) -> None:
    """A mistyped home: doctor says there is no store there and exits 1, leaving no folder;
    with --fix it creates the store."""
    local_only(stack)
    typo = tmp_path / "hoem"
    result = stack.cli("doctor", "--json", env={"VIDEOPOLL_HOME": str(typo)})
    assert result.code == 1
    assert not typo.exists()
    store = {c["name"]: c for c in result.json["checks"]}["store"]
    assert not store["ok"] and f"no local store in VIDEOPOLL_HOME={typo}" in store["detail"]
    assert "doctor --fix" in store["hint"]
    assert {c["name"]: c["ok"] for c in result.json["checks"]}["openhands"] is True
    fixed = stack.cli("doctor", "--fix", env={"VIDEOPOLL_HOME": str(typo)})
    assert fixed.code == 0, fixed.out
    assert (typo / "videopoll.db").is_file() and (typo / "storage" / "lesson-assets").is_dir()


def can_mount() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs tmpfs /mnt"],
                           capture_output=True, check=False)
    return probe.returncode == 0


@pytest.mark.skipif(not can_mount(), reason="needs unshare -m (root in a mount namespace)")
def test_a_read_only_home_is_exit_2_and_never_calls_a_finished_row_generating(
        stack: Stack, video: bytes) -> None:
    """The home mounted read-only: the pass does not run (no row called "still
    generating"), exit 2 naming VIDEOPOLL_HOME; writable again, the video is stored."""
    local_only(stack)
    asset, _, _ = stack.video("RUNNING", "finished", commit=video)
    env = {**os.environ, **stack.env(), "VIDEOPOLL_ENV_FILE": os.devnull}
    home = env["VIDEOPOLL_HOME"]
    command = (f"mount --bind {home} {home} && mount -o remount,ro,bind {home} && "
               f"exec {sys.executable} -m videopoll poll")
    done = subprocess.run(["unshare", "-m", "sh", "-c", command], env=env, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 2, done.stderr
    assert f"error: VIDEOPOLL_HOME={home} cannot be written" in done.stderr
    assert "still generating" not in done.stdout + done.stderr
    assert stack.seed.row(asset)["status"] == "generating"
    after = stack.cli("poll", "--json")
    assert after.code == 0 and after.json["processed"] == 1


# -- 12: errors under --json, usage errors, the cron log, the examples ------------------------

def test_json_errors_keep_the_hint(stack: Stack) -> None:
    result = stack.cli("poll", "--json", env={"OPENHANDS_API_KEY": None})
    assert result.code == 2
    error = result.json["error"]
    assert error["code"] == "config" and error["message"] == "OPENHANDS_API_KEY not configured"
    assert error["hint"].startswith("set OPENHANDS_API_KEY in the environment")


@pytest.mark.parametrize("args", [["poll", "--limit", "x"], ["watch", "--interval", "soon"],
                                  ["status"], ["pending", "--bogus"]])
def test_usage_errors_print_a_json_object_under_json(stack: Stack, args: list[str]) -> None:
    """click's usage errors: its own words on stderr, and under --json an error object."""
    result = stack.cli(*args, "--json")
    assert result.code == 2
    assert result.err.startswith("Usage: videopoll ")
    error = result.json["error"]
    assert error["code"] == "usage" and error["exit_code"] == 2
    assert error["message"] and error["hint"].startswith(f"see `videopoll {args[0]} --help`")
    plain = stack.cli(*args)
    assert plain.code == 2 and plain.out == "" and plain.err.startswith("Usage: videopoll ")


@pytest.mark.parametrize("args", [["status", "nonsense"], ["generate", "not-a-uuid"],
                                  ["retry", "not-a-uuid"]])
def test_a_malformed_id_is_a_usage_error(stack: Stack, args: list[str]) -> None:
    result = stack.cli(*args, "--json")
    assert result.code == 2
    assert result.json["error"]["code"] == "usage"
    assert sum(line.startswith("error: ") for line in result.err.splitlines()) == 1


def test_the_cron_log_gets_each_event_once(stack: Stack, video: bytes, tmp_path: Path) -> None:
    """README's crontab line, stdout and stderr into one log: only JSON records, each
    stored or failed video once."""
    stored, _, _ = stack.video("RUNNING", "finished", commit=video)
    failed, _, _ = stack.video("ERROR", None)
    lock = tmp_path / "videopoll.lock"
    result = stack.cli("poll", "--quiet", "--lock", str(lock), "--log-format", "json")
    assert result.code == 0 and result.out == ""
    logged = records(result.out + result.err)
    assert sum(r.get("asset_id") == stored for r in logged) == 1
    assert sum(r.get("asset_id") == failed for r in logged) == 1
    assert logged[-1]["msg"] == "pass"


def test_a_skipped_pass_is_a_record_in_the_cron_log(stack: Stack, tmp_path: Path) -> None:
    import fcntl

    lock = tmp_path / "videopoll.lock"
    with lock.open("a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        result = stack.cli("poll", "--quiet", "--lock", str(lock), "--log-format", "json")
    assert result.code == 0 and result.out == ""
    (only,) = records(result.err)
    assert only["level"] == "info" and "skipping this pass" in only["msg"]


def test_the_readme_crontab_line_is_the_one_tested() -> None:
    readme = (ROOT / "README.md").read_text()
    assert ("videopoll poll --quiet --lock \"$HOME/.cache/videopoll.lock\" --log-format json "
            ">> /var/log/videopoll.log 2>&1") in readme


def test_the_systemd_timer_persists_a_calendar_schedule() -> None:
    """`Persistent=true` only acts on `OnCalendar=` timers: the example has one, and the
    monotonic timers that would make Persistent a no-op are gone."""
    timer = configparser.ConfigParser(strict=False, interpolation=None)
    timer.optionxform = str  # type: ignore[assignment,method-assign]  # keep the keys' case
    timer.read(ROOT / "examples" / "systemd" / "videopoll.timer")
    section = timer["Timer"]
    assert section.get("Persistent") == "true"
    assert section.get("OnCalendar")
    assert "OnUnitActiveSec" not in section and "OnBootSec" not in section
    check = shutil.which("systemd-analyze")
    if check:
        done = subprocess.run([check, "calendar", section["OnCalendar"]], capture_output=True,
                              text=True, check=False)
        assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("name", ["poll-videos.yml", "poll-on-push.yml"])
def test_the_actions_example_installs_a_pinned_videopoll_from_a_known_place(name: str) -> None:
    """No guessed repository URL, no unpinned install: videopoll comes from a checked-out
    path at a pinned commit."""
    workflow = (ROOT / "examples" / "github-actions" / name).read_text()
    assert "git+https://github.com/${{" not in workflow
    installs = [line.strip() for line in workflow.splitlines()
                if "pip install" in line and not line.strip().startswith("#")]
    assert installs and all("./" in line for line in installs), installs
    assert "submodules: true" in workflow


def test_the_on_push_example_runs_one_pass_when_videos_are_pushed() -> None:
    """The artifacts repository's workflow: a push under the videos folder (the default
    VIDEOPOLL_GITHUB_DIR) runs one `videopoll poll` on the branch pushed to; the README's
    schedule section names it."""
    workflow = (ROOT / "examples" / "github-actions" / "poll-on-push.yml").read_text()
    on = workflow.split("\non:", 1)[1].split("\njobs:", 1)[0]
    assert "push:" in on and 'paths: ["videos/**"]' in on and "schedule" not in on
    runs = [line.strip() for line in workflow.splitlines()
            if line.strip().startswith("run: videopoll")]
    assert runs == ["run: videopoll poll --log-format json"]
    assert "VIDEOPOLL_GITHUB_REF: ${{ github.ref_name }}" in workflow
    assert "poll-on-push.yml" in (ROOT / "README.md").read_text()
