"""SIGINT and SIGTERM: exit 130, nothing half-written marked ready, the claim handed back so
the next pass stores the video at once; SIGKILL: the claim is left behind, and reported as
such (who holds it, when it runs out) until it is taken over."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from videopoll.sandbox.mp4 import mp4_of_size
from videopoll.sandbox.server import Fault

from .conftest import LocalSeed, Stack, SupabaseSeed

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


def claim_of(stack: Stack, asset_id: str) -> tuple[str | None, datetime | None]:
    """Who holds the row's claim and until when, read from the store's bookkeeping."""
    seed = stack.seed
    if seed.kind == "local":
        assert isinstance(seed, LocalSeed)
        row = asyncio.run(seed.store.get(asset_id))
        assert row is not None
        return row.claimed_by, row.claimed_until
    assert isinstance(seed, SupabaseSeed)
    found = seed.sql("select claimed_by, claimed_until from videopoll_assets "
                     "where asset_id = %s", [asset_id])
    return (found[0][0], found[0][1]) if found else (None, None)


def start_slow_transfer(stack: Stack, data: bytes, **env: str
                        ) -> tuple[str, subprocess.Popen[str]]:
    """A finished video whose download takes 30 s, and a `poll` that is part-way into it."""
    asset, _, _ = stack.video("RUNNING", "finished", commit=data)
    stack.sandbox.github.inject("blobs", Fault("slow", delay=30, times=1))
    proc = start(stack, "poll", "--json", **env)
    wait_for(lambda: stack.sandbox.github.counts["blobs"] >= 1)
    time.sleep(0.3)  # part of the body is through: the upload has begun
    assert stack.seed.row(asset)["status"] == "transferring"
    return asset, proc


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_mid_transfer_hands_the_claim_back(stack: Stack, signum: int) -> None:
    """Ctrl+C or SIGTERM during a transfer: exit 130, nothing stored, and the row is
    `finished` and unclaimed at once (not `transferring` for a lease), so the next `poll`
    stores it without waiting (the lease is the default 300 s)."""
    data = mp4_of_size(3_000_000)
    asset, proc = start_slow_transfer(stack, data)
    try:
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert json.loads(out)["error"]["code"] == "interrupted"
    row = stack.seed.row(asset)
    assert (row["status"], row["storage_path"]) == ("finished", None)
    assert claim_of(stack, asset) == (None, None)
    key = stack.key(asset)
    assert stack.seed.object(key) is None
    leftovers = [p for p in stack.seed.bucket_dir.rglob("*") if p.is_file()]
    assert leftovers == []
    after = stack.cli("poll", "--json")
    assert after.code == 0, after.err
    assert (after.json["processed"], after.json["items"][0]["action"]) == (1, "stored")
    assert stack.seed.object(key) == data


def test_a_killed_poller_s_claim_is_reported_with_its_holder_and_end(stack: Stack) -> None:
    """SIGKILL leaves the claim behind (nothing can hand it back): the next pass skips the
    row naming the dead process and when its lease runs out, and the pass after that takes
    the row over and stores it."""
    data = mp4_of_size(3_000_000)
    asset, proc = start_slow_transfer(stack, data, VIDEOPOLL_LEASE="4")
    try:
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == -signal.SIGKILL
    holder, until = claim_of(stack, asset)
    assert holder is not None and holder.split(":")[1] == str(proc.pid)
    assert until is not None and until > datetime.now(UTC)
    expected = (f"claimed by {holder} until {until.astimezone(UTC):%H:%M:%S} UTC "
                "(if that poller is gone, the row is taken over then)")

    seen = stack.cli("poll")  # what a person reads
    assert seen.code == 0, seen.err
    assert " ".join(seen.out.split()).count("skipped") == 1
    assert f":{proc.pid}:" in seen.out and "taken over then" in " ".join(seen.out.split())
    item = stack.cli("poll", "--json").json["items"][0]
    assert (item["state"], item["action"], item["detail"]) == ("transferring", "skipped",
                                                               expected)
    assert stack.seed.object(stack.key(asset)) is None

    wait_for(lambda: datetime.now(UTC) > until + timedelta(seconds=0.2))
    taken = stack.cli("poll", "--json")
    assert (taken.code, taken.json["processed"]) == (0, 1), taken.err
    assert stack.seed.object(stack.key(asset)) == data
    assert claim_of(stack, asset) == (None, None)
