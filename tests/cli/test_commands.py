"""status, pending, generate, doctor, watch, schema, demo: shapes, exit codes, what users read."""

from __future__ import annotations

import uuid

import pytest

from .conftest import Stack, SupabaseSeed

ROW_KEYS = {"id", "lesson_id", "conversation_id", "status", "storage_path", "error", "attempts",
            "github_path", "created_at", "updated_at"}


def test_status_explains_a_conversation(stack: Stack, video: bytes) -> None:
    asset, cid, path = stack.video("RUNNING", "finished", commit=video)
    dashed = str(uuid.UUID(cid))
    result = stack.cli("status", dashed, "--json")
    assert result.code == 0, result.err
    report = result.json
    assert set(report) == {"conversation_id", "agent", "assets", "artifact"}
    assert report["conversation_id"] == cid
    assert report["agent"] == {"sandbox_status": "RUNNING", "execution_status": "finished",
                               "state": "finished"}
    assert [r["id"] for r in report["assets"]] == [asset]
    assert set(report["assets"][0]) == ROW_KEYS
    assert report["artifact"]["path"] == path and report["artifact"]["size"] == len(video)
    assert report["artifact"]["lfs"] is False
    human = stack.cli("status", cid)
    assert human.code == 0 and path in human.out


def test_status_of_unknown_and_malformed_ids(stack: Stack) -> None:
    unknown = stack.cli("status", "f" * 32, "--json")
    assert unknown.code == 1 and "unknown to OpenHands and to the store" in unknown.err
    malformed = stack.cli("status", "../../etc/passwd")
    assert malformed.code == 2 and "not an id: ../../etc/passwd" in malformed.err
    assert stack.sandbox.openhands.counts["conversations"] == 1


def test_status_of_a_conversation_the_store_does_not_track(stack: Stack) -> None:
    cid = stack.sandbox.openhands.add_conversation("PAUSED", None)
    report = stack.cli("status", cid, "--json").json
    assert report["agent"]["state"] == "generating" and report["assets"] == []
    assert report["artifact"] is None


def test_pending_reads_only_the_store(stack: Stack) -> None:
    first, _, _ = stack.video()
    second, _, _ = stack.video("RUNNING", "finished")
    result = stack.cli("pending", "--json", env={"OPENHANDS_API_KEY": None,
                                                  "GITHUB_TOKEN": None})
    assert result.code == 0, result.err
    rows = result.json
    assert [r["id"] for r in rows] == [first, second]
    assert all(set(r) == ROW_KEYS for r in rows)
    assert stack.sandbox.openhands.total() == 0 and stack.sandbox.github.total() == 0
    assert first in stack.cli("pending").out


def test_generate_starts_a_conversation_and_inserts_the_row(stack: Stack) -> None:
    lesson = stack.seed.lesson("Cell division", user_id=str(uuid.uuid4()))
    result = stack.cli("generate", lesson, "--json", env={"GEMINI_API_KEY": "gem-SECRET-42"})
    assert result.code == 0, result.err
    row = result.json
    assert set(row) == ROW_KEYS
    assert (row["lesson_id"], row["status"]) == (lesson, "starting")
    assert row["github_path"] == f"videos/{lesson}/{row['id']}.mp4"
    started = stack.sandbox.openhands.started[-1]
    # The conversation id is chosen by videopoll and written first, so that whether a start
    # arrived can be asked later by that id.
    assert uuid.UUID(started["conversation_id"]).hex == row["conversation_id"]
    text = started["initial_message"]["content"][0]["text"]
    assert f"`{row['github_path']}`" in text and "Cell division" in text
    assert started["selected_repository"] == stack.sandbox.repo
    assert "GEMINI_API_KEY" in str(started.get("secrets"))
    assert "gem-SECRET-42" not in result.out + result.err


def test_generate_refuses_a_second_pending_video_unless_forced(stack: Stack) -> None:
    lesson = stack.seed.lesson()
    first = stack.cli("generate", lesson, "--json").json
    again = stack.cli("generate", lesson)
    assert again.code == 1 and first["id"] in again.err and "--force" in again.err
    forced = stack.cli("generate", lesson, "--force", "--json")
    assert forced.code == 0 and forced.json["id"] != first["id"]
    replaced = stack.seed.row(first["id"])  # one open video per lesson: the first gave way
    assert (replaced["status"], replaced["error"]) == (
        "failed", "replaced by a new video (generate --force)")


def test_generate_for_a_missing_lesson(stack: Stack) -> None:
    result = stack.cli("generate", str(uuid.uuid4()))
    assert result.code == 1 and "lesson not found" in result.err
    assert stack.sandbox.openhands.total() == 0


def test_generate_wait_resolves_the_conversation(stack: Stack) -> None:
    lesson = stack.seed.lesson()
    result = stack.cli("generate", lesson, "--wait", "--json",
                       env={"VIDEOPOLL_INTERVAL": "0.02"})
    assert result.code == 0, result.err
    row = result.json
    assert row["status"] == "generating" and len(row["conversation_id"]) == 32


def test_generated_video_goes_all_the_way(stack: Stack) -> None:
    lesson = stack.seed.lesson("Fractions")
    row = stack.cli("generate", lesson, "--json").json
    result = stack.cli("watch", "--until-done", "--json", "--interval", "0.05",
                       "--timeout", "20")
    assert result.code == 0, result.err
    passes = result.lines
    assert sum(p["processed"] for p in passes) == 1
    assert passes[-1]["stillGenerating"] == 0
    assert stack.seed.row(row["id"])["status"] == "ready"
    assert stack.seed.object(stack.key(row["id"])) is not None


def test_watch_timeout_is_exit_1(stack: Stack) -> None:
    stack.video()
    result = stack.cli("watch", "--until-done", "--interval", "0.05", "--timeout", "0.2")
    assert result.code == 1 and "timed out" in result.err
    assert len(result.out.strip().splitlines()) >= 2  # one plain line per pass


def test_doctor_all_good(stack: Stack) -> None:
    result = stack.cli("doctor", "--json")
    assert result.code == 0, result.out
    checks = result.json["checks"]
    assert all(set(c) == {"name", "ok", "detail"} and c["ok"] for c in checks)
    names = {c["name"] for c in checks}
    assert {"openhands", "github"} <= names


def test_doctor_reports_missing_config_and_refused_tokens(stack: Stack) -> None:
    missing = stack.cli("doctor", "--json", env={"OPENHANDS_API_KEY": None})
    assert missing.code == 1
    assert any(not c["ok"] and "OPENHANDS_API_KEY" in c["detail"]
               for c in missing.json["checks"])
    refused = stack.cli("doctor", "--json", env={"GITHUB_TOKEN": "ghp_nope000000000"})
    assert refused.code == 3


def test_help_version_and_schema(stack: Stack) -> None:
    help_text = stack.cli("--help").out
    for command in ("poll", "watch", "status", "pending", "generate", "demo", "doctor",
                    "schema", "retry"):
        assert command in help_text
    # Every command's help ends with examples, one to a line (never run together).
    for command in ("poll", "watch", "status", "pending", "generate", "retry", "doctor",
                    "schema", "demo"):
        shown = stack.cli(command, "--help").out
        examples = [line.strip() for line in shown.splitlines()
                    if line.strip().startswith("videopoll ")]
        assert examples and all(line.count("videopoll ") == 1 for line in examples), command
    assert "\n    videopoll poll --json\n" in stack.cli("poll", "--help").out
    assert "Examples:" in help_text and "videopoll doctor" in help_text
    assert stack.cli("--version").out.startswith("videopoll ")


def test_a_missing_bucket_is_a_configuration_error_and_doctor_fix_makes_it(
        stack: Stack, video: bytes) -> None:
    if not isinstance(stack.seed, SupabaseSeed):
        pytest.skip("the local store's bucket is a folder it makes when it opens")
    asset, _, _ = stack.video("RUNNING", "finished", commit=video)
    stack.seed.sql("delete from storage.buckets where id = 'lesson-assets'")
    result = stack.cli("poll", "--json")
    assert result.code == 2 and "VIDEOPOLL_BUCKET" in result.err + result.out
    assert stack.seed.row(asset)["status"] in ("finished", "generating")
    assert stack.cli("doctor").code == 1
    fixed = stack.cli("doctor", "--fix", "--json")
    assert fixed.code == 0, fixed.out
    assert stack.cli("poll", "--json").json["processed"] == 1


def test_doctor_checks_pending_conversations_are_visible_with_the_key(stack: Stack) -> None:
    """Pending rows whose conversations OpenHands does not know at all: the sign of a key of
    another account or another server, which doctor names (exit 1)."""
    _, known, _ = stack.video("RUNNING", "running")
    for _ in range(2):
        stack.seed.video(stack.seed.lesson(), uuid.uuid4().hex)

    def check() -> tuple[int, dict[str, object]]:
        result = stack.cli("doctor", "--json")
        found = {c["name"]: c for c in result.json["checks"]}
        return result.code, found["openhands: pending conversations"]

    code, seen = check()
    assert code == 0 and seen["ok"] and seen["detail"] == "1 of 3 visible with this key"
    stack.sandbox.openhands.remove(known)
    code, seen = check()
    assert code == 1 and not seen["ok"]
    assert "0 of 3 visible" in str(seen["detail"]) and "OPENHANDS_BASE_URL" in str(seen["detail"])
