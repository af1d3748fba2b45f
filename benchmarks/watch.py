"""From "conversation finished" to "row ready" under `videopoll watch --interval 2`.

`watch` runs as the real CLI in a subprocess over rows whose conversations are all running.
One at a time, at a random moment, a conversation finishes: its file is committed to the
GitHub stand-in and its state set to finished. The benchmark then watches the row (directly
in the database, as the app would) and notes when `storage_path` appears. The original was
a cron job; with `*/1` cron its figure would be up to a minute, so no ratio is given.
"""

from __future__ import annotations

import random
import statistics
import time

from videopoll.sandbox.mp4 import make_mp4

from . import proc
from .report import Line, Results
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
