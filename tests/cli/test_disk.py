"""A full disk is a one-line error that stays with the row it hit (exit 1), not a
configuration error and never a traceback. The disk really fills: the command runs in its own
mount namespace with a small tmpfs where it writes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from videopoll.sandbox.mp4 import mp4_of_size

from .conftest import Stack

SMALL = "1m"  # room for the database, not for the 3 MB video


def can_mount() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt"],
                           capture_output=True, check=False)
    return probe.returncode == 0


pytestmark = pytest.mark.skipif(not can_mount(), reason="needs unshare -m and tmpfs mounts "
                                                        "(root in a mount namespace)")


def test_a_full_disk_defers_the_video_with_one_line(stack: Stack, tmp_path: Path) -> None:
    """No space for the video in the local store's folder: the row waits for the next pass,
    the pass says ENOSPC once and exits 1."""
    if stack.seed.kind != "local":
        pytest.skip("the Supabase store writes nothing to disk: a video up to one TUS chunk "
                    "(6 MiB) is uploaded from memory, a larger one streamed by TUS")
    asset, _, _ = stack.video("RUNNING", "finished", commit=mp4_of_size(3 * 1024 * 1024, "big"))
    tiny = tmp_path / "tiny"
    tiny.mkdir()
    env = {**stack.env(), "PATH": "/usr/bin:/bin", "TMPDIR": str(tiny), "VIDEOPOLL_DEBUG": "1",
           "VIDEOPOLL_ENV_FILE": os.devnull}
    prepare = f"mount -t tmpfs -o size={SMALL} tmpfs {tiny}"
    if stack.seed.kind == "local":  # the store itself lives on the small disk
        prepare += f" && mkdir {tiny}/home && cp -a {env['VIDEOPOLL_HOME']}/. {tiny}/home/"
        env["VIDEOPOLL_HOME"] = f"{tiny}/home"
    command = f"{prepare} && exec {sys.executable} -c 'from videopoll.cli import main; main()'"
    result = subprocess.run(["unshare", "-m", "sh", "-c", command + " poll --json"], env=env,
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 1, result.stderr
    summary = json.loads(result.stdout)
    assert "items" in summary, result.stdout + result.stderr
    item = summary["items"][0]
    assert (item["asset_id"], item["action"], item["state"]) == (asset, "deferred", "finished")
    assert any("ENOSPC" in e["detail"] for e in summary["errors"]), summary["errors"]
    assert "Traceback" not in result.stderr


def test_a_full_disk_outside_a_pass_is_exit_1_not_a_configuration_error(
        stack: Stack, tmp_path: Path) -> None:
    """Where no row is involved (here the lock file's pid on a full disk), the boundary
    names the errno in one line and exits 1: the machine needs room, not a new setting."""
    tiny = tmp_path / "tiny"
    tiny.mkdir()
    env = {**stack.env(), "PATH": "/usr/bin:/bin",
           "VIDEOPOLL_ENV_FILE": os.devnull}
    command = (f"mount -t tmpfs -o size=64k tmpfs {tiny} && "
               f"dd if=/dev/zero of={tiny}/fill bs=1k count=128 2>/dev/null; "
               f"exec {sys.executable} -c 'from videopoll.cli import main; main()' "
               f"poll --lock {tiny}/videopoll.lock")
    result = subprocess.run(["unshare", "-m", "sh", "-c", command], env=env,
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 1, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "ENOSPC" in lines[0], result.stderr
