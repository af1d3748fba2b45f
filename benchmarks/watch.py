"""From "conversation finished" to "row ready" under `videopoll watch --interval 2`.

`watch` runs as the real CLI in a subprocess over rows whose conversations are all running.
One at a time, at a random moment, a conversation finishes: its file is committed to the
GitHub stand-in and its state set to finished. The benchmark then watches the row (directly
in the database, as the app would) and notes when `storage_path` appears. The original was
a cron job; with `*/1` cron its figure would be up to a minute, so no ratio is given.
"""

from __future__ import annotations

import json
import math
import random
import statistics
import time

from videopoll.sandbox.mp4 import make_mp4

from . import proc
from .report import Line, Results, Target
from .world import World

INTERVAL = 2.0


def measure(world: World, results: Results, trials: int) -> None:
    rows = world.conversations(["running"] * (trials + 5))
    world.reset_store()
    world.seed(rows)
    world.reset_counts()
    env = proc.bench_env(world.env())
    watch = proc.Running([proc.VIDEOPOLL, "watch", "--interval", str(INTERVAL), "--json"], env,
                         world.tmp, timeout=trials * 10 + 60)
    lags = []
    rng = random.Random(6)
    try:
        deadline = time.monotonic() + 30
        while world.counts()["openhands"] == 0:  # the first pass has run: watch is up
            if time.monotonic() > deadline or watch.popen.poll() is not None:
                raise RuntimeError("videopoll watch did not start")
            time.sleep(0.05)
        for row in rows[:trials]:
            time.sleep(rng.uniform(0.2, INTERVAL + 0.2))
            world.sandbox.github.put_file(world.sandbox.repo, row.path, make_mp4(row.path))
            world.sandbox.openhands.set_state(row.conversation_id, "RUNNING", "finished")
            finished = time.monotonic()
            while world.storage_path(row.asset_id) is None:
                if time.monotonic() - finished > 30:
                    raise RuntimeError("a finished video was not ready within 30 s")
                time.sleep(0.02)
            lags.append(time.monotonic() - finished)
    finally:
        watch.terminate()
        done = watch.finish()
    if done.code not in (0, 130, -15):
        raise RuntimeError(f"videopoll watch exited {done.code}: {done.err[-1000:]}")
    results.add(Line(
        "watch --interval 2", "conversation finished → row ready (median)",
        statistics.median(lags), None, "s",
        f"{trials} videos finishing at random moments; min {min(lags):.2f} s, "
        f"max {max(lags):.2f} s (expected ≈ half the interval + one pass)"))


SCALE_N = 10_000
SCALE_SECONDS = 120.0
SCALE_INTERVAL = 10.0


def at_scale(world: World, results: Results, n: int = SCALE_N,
             seconds: float = SCALE_SECONDS) -> None:
    """`videopoll watch` over `n` running videos for `seconds` against a stand-in that
    enforces OpenHands Cloud's per-user limits (10 a second, 100 a minute): no 429, every
    row asked about within ceil(n / 99) / 100 minutes (the issue's goal), memory."""
    from videopoll.sandbox.openhands import CLOUD_LIMITS

    rows = world.conversations(["running"] * n)
    world.reset_store()
    world.seed(rows)
    world.reset_counts()
    openhands = world.sandbox.openhands
    openhands.set_rate_limit(CLOUD_LIMITS)
    env = proc.bench_env(world.env(VIDEOPOLL_OPENHANDS_RATE="100/min,10/s"))
    watch = proc.Running([proc.VIDEOPOLL, "watch", "--interval", f"{SCALE_INTERVAL:g}",
                          "--json"], env, world.tmp, timeout=seconds + 120)
    try:
        time.sleep(seconds)
        peak = proc.vm_hwm(watch.popen.pid)
    finally:
        watch.terminate()
        done = watch.finish()
        refused = openhands.refused
        openhands.set_rate_limit(None)
    if done.code not in (0, 130, -15):
        raise RuntimeError(f"videopoll watch exited {done.code}: {done.err[-1000:]}")
    passes = [json.loads(line) for line in done.out.splitlines() if line.startswith("{")]
    checked = sum(int(p.get("checked", 0)) for p in passes)
    rounds = checked / n
    goal_minutes = math.ceil(n / 99) / 100
    # Each row is asked about once a round: the time a round takes is the time a row waits.
    per_round = seconds / 60 / rounds if rounds else float("inf")
    label = f"watch N={n}, {seconds:g} s"
    results.add(
        Line(label, "OpenHands 429s", refused, None, "req",
             f"stand-in enforcing 10/s and 100/min; {world.counts()['openhands']} requests "
             f"in {len(passes)} passes"),
        Line(label, "rows asked about", checked, None, "req",
             f"{rounds:.2f} rounds of {n}: one round every {per_round:.2f} min"),
        Line(label, "peak RSS", peak / 1e6, None, "MB"))
    results.targets.append(Target(f"watch at N={n}: 429s from the budget", "none",
                                  str(refused), refused == 0))
    results.targets.append(Target(
        f"watch at N={n}: every row checked every ceil(N/99)/budget min",
        f"≤ {goal_minutes:.2f} min", f"one round every {per_round:.2f} min",
        per_round <= goal_minutes, "rounds counted from the passes' `checked` over the run"))
    results.targets.append(Target(f"watch at N={n}: memory", "≤ 150 MB",
                                  f"{peak / 1e6:.0f} MB", 0 < peak <= 150e6))
