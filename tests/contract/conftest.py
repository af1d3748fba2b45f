"""Fixtures of the store contract suite: one set of tests, every `Store` implementation.

Adding an implementation (e.g. `supabase`) takes three steps here, nothing in the tests:
  1. write an async context manager `_make_<name>(tmp_path, clock)` that builds the store,
     yields a `StoreHarness` and closes the store (call `pytest.skip` in it when the
     service is not available);
  2. register it in `FACTORIES`;
  3. if it needs marks (say `pytest.mark.postgres`), list them in `MARKS`.
A store whose clock is a database server's `now()` returns a `StoreHarness` subclass whose
`advance(seconds)` moves that clock (tests never sleep).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import pytest

from videopoll.ports import Store
from videopoll.services.local.store import LocalStore
from videopoll.testing import FakeClock, InMemoryStore, StoreHarness

Factory = Callable[[Path, FakeClock], AbstractAsyncContextManager[StoreHarness]]


@asynccontextmanager
async def _make_memory(tmp_path: Path, clock: FakeClock) -> AsyncIterator[StoreHarness]:
    store = InMemoryStore(clock.now)
    yield StoreHarness(store=store, clock=clock, add_lesson=store.add_lesson,
                       add_asset=store.add_asset, metadata=store.metadata,
                       objects=lambda: dict(store.objects))


@asynccontextmanager
async def _make_local(tmp_path: Path, clock: FakeClock) -> AsyncIterator[StoreHarness]:
    store = LocalStore(tmp_path / "home", clock=clock.now)

    def objects() -> dict[str, bytes]:
        root = store.bucket_dir
        return {p.relative_to(root).as_posix(): p.read_bytes()
                for p in sorted(root.rglob("*")) if p.is_file()}

    try:
        yield StoreHarness(store=store, clock=clock, add_lesson=store.add_lesson,
                           add_asset=store.add_asset, metadata=store.metadata, objects=objects)
    finally:
        await store.close()  # an unclosed sqlite connection is a ResourceWarning (an error)


FACTORIES: dict[str, Factory] = {
    "memory": _make_memory,
    "local": _make_local,
    # "supabase": _make_supabase,
}
MARKS: dict[str, list[pytest.MarkDecorator]] = {
    # "supabase": [pytest.mark.postgres],
}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=[pytest.param(name, marks=MARKS.get(name, [])) for name in FACTORIES])
async def harness(request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock
                  ) -> AsyncIterator[StoreHarness]:
    """Each implementation in turn, with seeding hooks; test ids end in `[memory]`, ..."""
    async with FACTORIES[request.param](tmp_path, clock) as built:
        yield built


@pytest.fixture
def store(harness: StoreHarness) -> Store:
    """The store under test (parametrised through `harness`)."""
    return harness.store
