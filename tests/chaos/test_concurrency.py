"""Concurrent pollers (DESIGN 6.1 and 9.3, issue #5 item 4): overlapping cron runs are safe.

Four `videopoll poll --json` processes start at the same instant over 100 finished videos whose
files are on GitHub. Every video must be moved exactly once: one object write per key (the
Supabase stand-in's write counts; on the local store, the launchers' shared write log of every
rename into the bucket), at most one blob download per file (the GitHub stand-in's request log;
a pass that finds at most two files by path gets a small one inline with its contents answer,
as may a poller that then loses the claim, so those reads are not downloads), one poller
reporting it `stored` and the others `skipped` (or not seeing it), and the pollers' `processed`
adding up to exactly 100. The same holds for a `watch` overlapping cron `poll`s.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from videopoll.sandbox.server import Fault

from .conftest import Video, World, wait_until

VIDEOS = 100
POLLERS = 4


def _finish(procs: list[subprocess.Popen[str]], timeout: float = 240.0
            ) -> list[tuple[int, str, str]]:
    """Wait for every process; kill (and reap) any still running when this returns."""
    results = []
    try:
        deadline = time.monotonic() + timeout
        for proc in procs:
            out, err = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
            results.append((proc.returncode, out, err))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    return results


def _start_together(world: World, commands: list[list[str]]) -> list[tuple[int, str, str]]:
    # Every launcher imports first, then sleeps until the same instant.
    start_at = time.time() + 2.0
    procs = []
    try:
        for args in commands:
            procs.append(world.launch(args, start_at=start_at))
    except BaseException:
        _finish(procs, timeout=5)
        raise
    return _finish(procs)


def _check_exactly_once(world: World, videos: list[Video],
                        summaries: list[list[dict[str, Any]]]) -> Counter[int]:
    """The promise, from every angle; returns how many videos each process stored."""
    ids = {v.asset_id for v in videos}
    stored_by: dict[str, list[int]] = {}
    per_process: Counter[int] = Counter()
    for index, passes in enumerate(summaries):
        for summary in passes:
            assert summary["errors"] == [], summary["errors"]
            assert summary["failed"] == 0
            assert summary["checked"] == (summary["stillGenerating"] + summary["processed"]
                                          + summary["failed"])
            stored = [i for i in summary["items"] if i["action"] == "stored"]
            assert len(stored) == summary["processed"]
            for item in summary["items"]:
                assert item["asset_id"] in ids
                assert item["action"] in ("stored", "skipped"), item
                if item["action"] == "stored":
                    stored_by.setdefault(item["asset_id"], []).append(index)
                    per_process[index] += 1
    twice = {a: who for a, who in stored_by.items() if len(who) > 1}
    assert not twice, f"reported stored by more than one poller: {twice}"
    assert set(stored_by) == ids, f"never reported stored: {ids - set(stored_by)}"
    assert sum(s["processed"] for passes in summaries for s in passes) == len(videos)

    figures = world.check(videos)
    assert not (figures.lost + figures.doubled + figures.wrongly_failed), figures
    assert figures.leftovers == []
    writes = Counter(key for key, _sha in world.backend.writes())
    assert {v.key: writes[v.key] for v in videos} == {v.key: 1 for v in videos}, \
        "an object was written more than once"
    downloads = world.blob_downloads()
    assert all(downloads[v.blob] <= 1 for v in videos), \
        "a file was downloaded from GitHub more than once"
    return per_process


@pytest.mark.parametrize("state", ["finished", "generating"])
def test_four_pollers_move_each_video_exactly_once(world: World, state: str,
                                                   figures: Callable[[str], None]) -> None:
    """`finished`: the pollers race for the claims; `generating` (as the app inserts rows):
    they race one step earlier, for marking each conversation finished."""
    world.lease = 300.0  # the default: no crash here, so no lease may run out
    videos = world.add_videos([None] * VIDEOS)
    if state == "finished":
        world.backend.mark_finished([v.asset_id for v in videos])
    results = _start_together(world, [["poll", "--json"]] * POLLERS)
    for code, out, err in results:
        assert code == 0, f"exit {code}\n{out[-2000:]}\n{err[-4000:]}"
    summaries = [[json.loads(out)] for _code, out, _err in results]
    per_process = _check_exactly_once(world, videos, summaries)
    figures(f"chaos concurrency [{world.backend.kind}]: {POLLERS} pollers over {VIDEOS} "
            f"{state} videos: checked {[s[0]['checked'] for s in summaries]}, stored "
            f"{[per_process[i] for i in range(POLLERS)]} (sum "
            f"{sum(per_process.values())}); object writes per video 1, blob downloads per "
            f"video at most 1; lost 0, doubled 0, wrongly failed 0")



def test_watch_overlapping_cron_polls(world: World, figures: Callable[[str], None]) -> None:
    world.lease = 300.0
    videos = world.add_videos([None] * 30)
    commands = [["watch", "--until-done", "--interval", "0.2", "--timeout", "120", "--json"],
                ["poll", "--json"], ["poll", "--json"]]
    results = _start_together(world, commands)
    for code, out, err in results:
        assert code == 0, f"exit {code}\n{out[-2000:]}\n{err[-4000:]}"
    summaries = [[json.loads(line) for line in out.splitlines() if line.strip()]
                 for _code, out, _err in results]
    per_process = _check_exactly_once(world, videos, summaries)
    assert world.pending() == []
    figures(f"chaos watch+poll [{world.backend.kind}]: watch ({len(summaries[0])} passes) "
            f"and 2 polls over 30 videos stored {[per_process[i] for i in range(3)]}; "
            "lost 0, doubled 0")


def test_claim_queued_behind_slow_downloads_keeps_its_lease(world: World) -> None:
    """One poller (1 download slot, 2 s lease) claims three videos; the first two downloads
    take 2.5 s each, so the others wait longer than their lease for the slot. A cron poll
    that starts meanwhile must find them held, not take them over and move them again."""
    world.lease = 2.0
    first, second, third = world.add_videos([None, None, None])
    for slow in (first, second):
        world.sandbox.github.inject("blobs", Fault("slow", delay=2.5, times=1, match=slow.blob))
    env = {**world.env(), "VIDEOPOLL_CONCURRENCY": "1"}
    slow_poller = subprocess.Popen(world.command(["poll", "--json"]), env=env, cwd=world.root,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    cron: list[subprocess.Popen[str]] = []
    try:
        def cron_time() -> bool:
            """The slow poller holds all three, one claim is no longer live (queued leases
            ran out, or the first video is stored) and it is still at work."""
            rows = world.backend.rows()
            claimed = all(rows[v.asset_id].status in ("transferring", "ready")
                          for v in (first, second, third))
            return (claimed and rows[third.asset_id].status == "transferring"
                    and world.backend.live_leases() < 3 and slow_poller.poll() is None)

        wait_until(cron_time, 30, "a claim of the slow poller to stop being live")
        cron.append(world.launch(["poll", "--json"]))
        results = _finish([slow_poller, *cron], timeout=60)
    finally:
        _finish([slow_poller, *cron], timeout=5)
    for code, out, err in results:
        assert code in (0, 1), f"exit {code}\n{out[-2000:]}\n{err[-4000:]}"
    world.recover()
    videos = [first, second, third]
    figures = world.check(videos)
    assert not (figures.lost + figures.doubled + figures.wrongly_failed), figures
    downloads = world.blob_downloads()
    writes = Counter(key for key, _sha in world.backend.writes())
    assert {v.asset_id: (downloads[v.blob], writes[v.key]) for v in videos} == {
        v.asset_id: (1, 1) for v in videos}, "a video was moved twice"
