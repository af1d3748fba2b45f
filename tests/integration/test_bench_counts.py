"""The benchmark's request counts, side by side, as `scripts/bench` takes them: the real
`videopoll poll --json` and the baseline (`benchmarks/baseline.py`) as subprocesses over the
same seeded rows, the Supabase stand-in over real PostgreSQL, counted on the servers.

Issue 14: never more store requests (REST + Storage) than the original at any N, at most 60
at N=1000, and the original counted as the issue counts it: one query, one write per decided
row (a failed one included), one upload per video.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks import passes
from benchmarks.world import Network, World, mix


@pytest.fixture(scope="module")
def world(pg_admin: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp: Path = tmp_path_factory.mktemp("bench")
    with World(Network(openhands=0.0, github=0.0, storage=0.0), tmp) as started:
        assert started.store == "supabase", started.note
        yield started


@pytest.mark.parametrize("n", [10, 100, 1000])
def test_store_requests_never_exceed_the_original_s(world: World, n: int) -> None:
    kinds = mix(n)
    done, failed = kinds.count("finished"), kinds.count("failed")
    rows = world.conversations(kinds)
    base = passes.one(world, rows, "baseline")
    assert world.sql("select count(*) from lesson_assets where metadata ? 'error'")[0][0] \
        == failed
    ours = passes.one(world, rows, "videopoll")
    for run in (base, ours):
        assert (run.summary["processed"], run.summary["failed"]) == (done, failed)
    theirs = base.requests["rest"] + base.requests["storage"]
    assert theirs == 1 + (done + failed) + done
    assert base.requests["openhands"] == n
    mine = ours.requests["rest"] + ours.requests["storage"]
    assert mine <= theirs
    if n == 1000:
        assert mine <= 60
    assert ours.requests["github"] <= base.requests["github"] + 2
