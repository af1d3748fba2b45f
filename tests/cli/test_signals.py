"""SIGINT and SIGTERM: exit 130, nothing half-written marked ready, the claim left to expire."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from videopoll.sandbox.mp4 import mp4_of_size
from videopoll.sandbox.server import Fault

from .conftest import Stack

VIDEOPOLL = str(Path(sys.executable).parent / "videopoll")


def start(stack: Stack, *args: str, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen([VIDEOPOLL, *args], env={**os.environ, **stack.env(), **env},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(condition: object, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.02)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_watch_exits_130(stack: Stack, signum: int) -> None:
    stack.video()
    proc = start(stack, "watch", "--interval", "0.1")
    try:
        wait_for(lambda: stack.sandbox.openhands.counts["conversations"] >= 2)
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "Traceback" not in err and err.strip().startswith("error: ")


def test_a_signal_mid_transfer_leaves_nothing_half_done(stack: Stack) -> None:
    data = mp4_of_size(3_000_000)
    asset, _, _ = stack.video("RUNNING", "finished", commit=data)
    stack.sandbox.github.inject("blobs", Fault("slow", delay=30, times=1))
    proc = start(stack, "poll", "--json", VIDEOPOLL_LEASE="1")
    try:
        wait_for(lambda: stack.sandbox.github.counts["blobs"] >= 1)
        time.sleep(0.3)  # part of the body is through: the upload has begun
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    row = stack.seed.row(asset)
    assert row["status"] in ("transferring", "finished") and row["storage_path"] is None
    key = stack.key(asset)
    assert stack.seed.object(key) is None
    leftovers = [p for p in stack.seed.bucket_dir.rglob("*") if p.is_file()]
    assert leftovers == []
    time.sleep(1.1)  # the abandoned claim expires
    assert stack.cli("poll", "--json").json["processed"] == 1
    assert stack.seed.object(key) == data
