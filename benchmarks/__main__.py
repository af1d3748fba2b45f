"""`python -m benchmarks [--quick]`: videopoll against the original per-row poller, one run.

Prints one table (videopoll | baseline | ratio) and the targets; a full run also writes
`benchmarks/RESULTS.md` and `benchmarks/pass_time.png`. `--quick` (about a minute) uses
N up to 100 and transfers of 10 and 100 MB and writes nothing unless `--out` is given.
"""

from __future__ import annotations

import argparse
import compileall
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from . import analysis, passes, startup, transfers, watch
from .report import HERE, Results, console, markdown, plot
from .world import Network, World

SUITES = ("passes", "idle", "profile", "transfers", "startup", "watch")


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="scripts/bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="smaller N and sizes (~1 minute)")
    p.add_argument("--store", choices=("supabase", "local"), default="supabase",
                   help="store for the passes (default: the Supabase stand-in over "
                        "PostgreSQL, falling back to local when PostgreSQL is missing)")
    p.add_argument("--openhands-ms", type=float, default=50, help="OpenHands latency per "
                   "request (default 50)")
    p.add_argument("--github-ms", type=float, default=80, help="GitHub latency (default 80)")
    p.add_argument("--storage-ms", type=float, default=80,
                   help="Supabase REST and Storage latency (default 80)")
    p.add_argument("--bandwidth", type=float, metavar="MB/S",
                   help="cap every stand-in's response bodies at this many MB (10^6 B) a "
                        "second (default: no cap)")
    p.add_argument("--only", action="append", choices=SUITES, help="run only these parts")
    p.add_argument("--out", type=Path, help="folder for RESULTS.md and pass_time.png "
                   "(default: benchmarks/ for a full run, nothing for --quick)")
    p.add_argument("--no-write", action="store_true", help="print only")
    return p.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse(argv)
    quick = args.quick
    ns = [10, 100] if quick else [10, 100, 1000]
    sizes = [10 * 10**6, 100 * 10**6] if quick else [10 * 10**6, 100 * 10**6, 1024**3]
    suites = set(args.only or SUITES)
    network = Network(openhands=args.openhands_ms / 1000, github=args.github_ms / 1000,
                      storage=args.storage_ms / 1000,
                      bandwidth=args.bandwidth * 10**6 if args.bandwidth else None)
    out = args.out or (None if quick or args.only else HERE)
    if args.no_write:
        out = None
    tmp = Path(tempfile.mkdtemp(prefix="videopoll-bench-", dir=_scratch(max(sizes))))
    # Byte-compile what the measured processes import, as `pip install` does for an installed
    # package: the children run with PYTHONDONTWRITEBYTECODE (the tree stays clean) and would
    # otherwise compile every module of videopoll (and the baseline's) on every start.
    for package in ("videopoll", "benchmarks"):
        compileall.compile_dir(HERE.parent / package, quiet=1)
    started, load = time.perf_counter(), os.getloadavg()[0]
    try:
        with World(network, tmp, store=args.store) as world:
            results = Results("quick" if quick else "full", network.describe(),
                              _store_name(world.store))
            results.data["storage_latency"] = network.storage
            if world.note:
                results.notes.append(world.note)
            stores = [world.store] + (["local"] if world.store == "supabase" else [])

            def step(name: str) -> bool:
                if name in suites:
                    print(f"· {name} ({time.perf_counter() - started:.0f} s)", file=sys.stderr)
                return name in suites

            if step("passes"):
                for n in ns:
                    passes.pass_over(world, results, n, repeats=1 if quick or n > 100 else 3)
                passes.pass_targets(results)
                if world.store == "supabase":  # the same passes on the local store
                    (tmp / "local").mkdir(exist_ok=True)
                    with World(network, tmp / "local", store="local") as local:
                        for n in ns:
                            passes.pass_over(local, results, n, repeats=1 if quick or n > 100
                                             else 3, local=True)
            if step("idle"):
                passes.idle_and_repeated(world, results, ns[-1])
            if step("profile"):
                passes.profile(world, results, ns[-1])
                passes.timeline(world, results, ns[0])
            if step("transfers"):
                for size in sizes:
                    # A 1 GiB copy into Storage takes ~15 s for videopoll and ~35 s (and 3.7 GB)
                    # for the baseline: the three copies run once, and videopoll twice more,
                    # so the TUS target is a median like the other figures.
                    big = size > 2**29
                    repeats = {s: 1 if quick or (s == "supabase" and big) else 3
                               for s in stores}
                    more = {"supabase": 2} if big and not quick else {}
                    transfers.measure(world, results, size, stores, repeats, more)
                transfers.targets(results, sizes, stores)
                if not quick:
                    transfers.anatomy(world, results, max(sizes), 3)
                    if "supabase" in stores:
                        transfers.traced_tus(world, results, 100 * 10**6)
            if step("startup"):
                startup.measure(world, results, 5 if quick else 11, stores)
            if step("watch"):
                watch.measure(world, results, 3 if quick else 6)
                if not quick:
                    watch.at_scale(world, results)
            results.notes += notes(world, tmp, load)
            analysis.explain(results)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    results.seconds = time.perf_counter() - started
    print(console(results))
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        picture = "pass_time.png" if results.pass_times and plot(results,
                                                                 out / "pass_time.png") else None
        (out / "RESULTS.md").write_text(markdown(results, picture), encoding="utf-8")
        print(f"\nwrote {out / 'RESULTS.md'}" + (f" and {out / picture}" if picture else ""),
              file=sys.stderr)
    return 0


def _store_name(store: str) -> str:
    return ("Supabase stand-in (PostgREST + Storage over PostgreSQL)" if store == "supabase"
            else "local store (SQLite + folder)")


def _scratch(largest: int) -> str | None:
    """tmpfs when it has room for the artifacts and their copies (fsync is then free, so
    disk speed stays out of the transfer figures), else the default temp folder."""
    shm = Path("/dev/shm")
    try:
        if shm.is_dir() and shutil.disk_usage(shm).free > 5 * largest + 2**30:
            return str(shm)
    except OSError:
        pass
    return None


def notes(world: World, tmp: Path, load: float) -> list[str]:
    where = ("tmpfs (/dev/shm): writes and fsync cost no disk time, so the transfer figures "
             "compare the copying, not the disk" if str(tmp).startswith("/dev/shm") else
             f"{tmp.parent} (a disk: fsync and write-back are part of the transfer figures)")
    return [
        f"Temporary files (artifacts, the local store, Storage objects) lived on {where}.",
        f"Load average when the run started: {load:.1f}, when it ended: "
        f"{os.getloadavg()[0]:.1f} (other sessions may share the machine; figures are "
        "medians where repeated, and runs of the two systems are interleaved).",
        "Pass time is the pass as each process measured it (videopoll: the summary's "
        "`durationMs`, from the pending-rows query to the last write; baseline: from its "
        "first request to its last); process start-up is measured separately.",
        "Requests are counted by the stand-ins (server side). In the pass benchmarks each "
        "finished video is a 47 kB playable MP4; sizes are the transfer benchmark's business.",
        "Transfer throughput is bytes ÷ the copy's own time: videopoll's `Store.put` (download "
        "request → streamed verification → committed object, including the resumable upload's "
        "setup and saves), the baseline's contents request → upload done, the plain copy's "
        "request → last byte written (and fsynced, for a file).",
        "Peak RSS is the `VmHWM` each measured process reads from /proc/self/status as it "
        "exits (not `ru_maxrss` from `wait4`: Linux carries the forking parent's RSS across "
        "`exec` into the child's `ru_maxrss`, which would report the benchmark's own size).",
        "The bandwidth cap (when given) applies to response bodies; uploads are not capped.",
        "videopoll's and the benchmark's modules were byte-compiled before the run, as "
        "`pip install` does; the children do not write bytecode (PYTHONDONTWRITEBYTECODE).",
    ]


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
