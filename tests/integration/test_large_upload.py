"""A 256 MiB video through TUS with flat memory: generated on the fly, never held whole, with
the peak measured in this process (tracemalloc and RSS; the stand-in runs here too)."""

from __future__ import annotations

import hashlib
import os
import random
import threading
import time
import tracemalloc
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager

import pytest

from videopoll.sandbox.supabase import SupabaseStandIn
from videopoll.services.supabase.store import SupabaseStore

from .conftest import BUCKET, Seed

pytestmark = pytest.mark.postgres
MiB = 1024 * 1024
SIZE = 256 * MiB + 4321
BOUND = 64 * MiB


def _rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@contextmanager
def rss_peak(result: dict[str, int]) -> Iterator[None]:
    """Sample the resident set every 20 ms; `result["delta"]` is peak minus start."""
    base, stop = _rss(), threading.Event()
    peak = [base]

    def watch() -> None:
        while not stop.wait(0.02):
            peak[0] = max(peak[0], _rss())

    sampler = threading.Thread(target=watch, daemon=True)
    sampler.start()
    try:
        yield
    finally:
        stop.set()
        sampler.join()
        result["delta"] = max(peak[0], _rss()) - base


async def generated(size: int, digest: hashlib._Hash) -> AsyncIterator[bytes]:
    """Deterministic pseudo-random bytes in 1 MiB pieces, hashed as they go out."""
    rng = random.Random(2024)
    left = size
    while left:
        piece = rng.randbytes(min(MiB, left))
        digest.update(piece)
        left -= len(piece)
        yield piece


async def test_large_upload_keeps_memory_flat(seed: Seed, store: SupabaseStore,
                                              supa: SupabaseStandIn,
                                              figures: Callable[[str], None]) -> None:
    aid = seed.asset(status="finished")
    assert await store.claim(aid, "poller-a:1", 600)
    asset = await store.get(aid)
    assert asset is not None
    key = f"videos/{asset.lesson_id}/{asset.id}.mp4"
    sent = hashlib.sha256()
    rss: dict[str, int] = {}
    started = time.monotonic()
    tracemalloc.start()
    try:
        with rss_peak(rss):
            await store.put(asset, key, generated(SIZE, sent), size=SIZE, digest="big",
                            owner="poller-a:1")
        _, traced_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    elapsed = time.monotonic() - started
    figures(f"large upload: {SIZE / MiB:.1f} MiB via TUS in {elapsed:.1f} s; "
            f"tracemalloc peak {traced_peak / MiB:.1f} MiB, RSS peak delta "
            f"{rss['delta'] / MiB:.1f} MiB (bound {BOUND // MiB} MiB)")
    assert supa.writes[f"{BUCKET}/{key}"] == 1
    assert supa.write_log[-1].sha256 == sent.hexdigest()
    assert supa.write_log[-1].size == SIZE
    assert traced_peak < BOUND
    assert rss["delta"] < BOUND
