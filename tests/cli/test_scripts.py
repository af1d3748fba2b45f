"""The old script names still work, as thin wrappers, in a real subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from .conftest import Stack

ROOT = Path(__file__).resolve().parents[2]
VIDEOPOLL = str(Path(sys.executable).parent / "videopoll")


def script(stack: Stack, name: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **stack.env(), "VIDEOPOLL": VIDEOPOLL}
    return subprocess.run(["bash", str(ROOT / "scripts" / name), *args], env=env,
                          capture_output=True, text=True, timeout=60, check=False)


def test_poll_github_videos_prints_the_json_and_the_closing_line(stack: Stack,
                                                                  video: bytes) -> None:
    stack.video("RUNNING", "finished", commit=video)
    stack.video()
    result = script(stack, "poll_github_videos.sh")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "🔍 Checking for completed videos..."
    summary = json.loads(lines[1])
    assert (summary["checked"], summary["processed"]) == (2, 1)
    assert lines[2:] == ["✅ 1 video(s) ready!", "⏳ 1 video(s) still generating..."]


def test_watch_videos_runs_until_nothing_is_pending(stack: Stack, video: bytes) -> None:
    asset, _, _ = stack.video("RUNNING", "finished", commit=video)
    result = script(stack, "watch_videos.sh", "0.1")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "🎉 All videos processed!"
    assert stack.seed.row(asset)["status"] == "ready"


def test_the_wrapper_keeps_videopolls_exit_codes(stack: Stack) -> None:
    env_missing = script(stack, "poll_github_videos.sh", "--limit", "0")
    assert env_missing.returncode == 2
