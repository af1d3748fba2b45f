"""CLI start-up: `videopoll --help` and `videopoll poll --json` with nothing pending.

hyperfine is not installed, so each command is spawned `runs` times and the median wall time
(spawn to exit) is reported, with `python -c pass` as the interpreter's own floor.
"""

from __future__ import annotations

import re
import statistics

from . import proc
from .report import Line, Results, Target
from .world import World

FLOOR = ("asyncio", "typer", "httpx", "httpcore", "anyio")


def _median(argv: list[str], env: dict[str, str], world: World, runs: int,
            *, ok: tuple[int, ...] = (0,)) -> float:
    walls = []
    for _ in range(runs):
        done = proc.run(argv, env, world.tmp, timeout=120)
        if done.code not in ok:
            raise RuntimeError(f"{argv[-2:]} exited {done.code}: {done.err[-1000:]}")
        walls.append(done.wall)
    return statistics.median(walls)


def _imports_supabase(env: dict[str, str], world: World) -> bool:
    """Whether `videopoll poll --json` imports supabase-py (`python -X importtime`)."""
    code = "import sys; from videopoll.cli import run; sys.exit(run(sys.argv[1:]))"
    done = proc.run([proc.PYTHON, "-X", "importtime", "-c", code, "poll", "--json"], env,
                    world.tmp, timeout=120)
    return re.search(r"\|\s+supabase(\.|\s*$)", done.err, re.MULTILINE) is not None


def measure(world: World, results: Results, runs: int, stores: list[str]) -> None:
    env = proc.bench_env(world.env())
    floor = _median([proc.PYTHON, "-c", "pass"], env, world, runs)
    proc.run([proc.VIDEOPOLL, "--help"], env, world.tmp)  # warm the file cache once
    helped = _median([proc.VIDEOPOLL, "--help"], env, world, runs)
    label = "CLI start-up"
    note = f"median of {runs}; `python -c pass` alone takes {floor * 1000:.0f} ms"
    results.add(Line(label, "videopoll --help", helped, None, "s", note))
    results.targets.append(Target("videopoll --help", "< 0.3 s", f"{helped * 1000:.0f} ms",
                                  helped < 0.3, f"python itself: {floor * 1000:.0f} ms"))
    # What no `poll` can do without: the interpreter, typer, and httpx with the asyncio
    # stack under it (httpcore, anyio; h2 comes along wherever it is installed).
    libraries = _median([proc.PYTHON, "-c", f"import {', '.join(FLOOR)}"], env, world, runs)
    results.add(Line(label, "the libraries alone", libraries, None, "s",
                     f"median of {runs}; `python -c 'import {', '.join(FLOOR)}'`"))
    for store in stores:
        world.use(store)
        world.reset_store()
        world.seed([])
        env = proc.bench_env(world.env())
        polled = _median([proc.VIDEOPOLL, "poll", "--json"], env, world, runs)
        base = _median(proc.module("baseline"), env, world, runs)
        where = "local store" if store == "local" else "Supabase store"
        results.add(Line(label, f"poll --json, nothing pending ({where})", polled, base, "s",
                         f"median of {runs}; supabase-py "
                         + ("imported" if _imports_supabase(env, world) else "not imported")))
        if store == "supabase":
            results.targets.append(Target(
                "poll start-up, nothing pending (Supabase store)", "≤ 250 ms",
                f"{polled * 1000:.0f} ms", polled <= 0.25,
                f"baseline {base * 1000:.0f} ms; of which one pending-rows request "
                f"(≥ {world.network.storage * 1000:.0f} ms) and the libraries' imports "
                f"({libraries * 1000:.0f} ms with the interpreter)"))
    world.use(stores[0])
