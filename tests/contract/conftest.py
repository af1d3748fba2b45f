"""Fixtures of the store contract suite: one set of tests, every `Store` implementation.

Adding an implementation takes three steps here, nothing in the tests:
  1. write an async context manager `_make_<name>(request, tmp_path, clock)` that builds the
     store, yields a `StoreHarness` and closes the store (call `pytest.skip` in it when the
     service is not available);
  2. register it in `FACTORIES`;
  3. if it needs marks (say `pytest.mark.postgres`), list them in `MARKS`.
A store whose clock is a database server's `now()` returns a `StoreHarness` subclass whose
`advance(seconds)` moves that clock (tests never sleep): Supabase's is `videopoll_now()`,
which the contract database reads from a one-row table the harness sets.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from videopoll.errors import RequestRejected
from videopoll.model import Lesson, Service
from videopoll.ports import Store
from videopoll.services.local.store import LocalStore
from videopoll.testing import FakeClock, InMemoryStore, StoreHarness

from ..pgsession import migrated_database

Factory = Callable[[pytest.FixtureRequest, Path, FakeClock],
                   AbstractAsyncContextManager[StoreHarness]]
BUCKET = "lesson-assets"


@asynccontextmanager
async def _make_memory(request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock
                       ) -> AsyncIterator[StoreHarness]:
    store = InMemoryStore(clock.now)
    yield StoreHarness(store=store, clock=clock, add_lesson=store.add_lesson,
                       add_asset=store.add_asset, metadata=store.metadata,
                       objects=lambda: dict(store.objects))


@asynccontextmanager
async def _make_local(request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock
                      ) -> AsyncIterator[StoreHarness]:
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


# The contract database's clock: videopoll_now() (every timestamp the migration writes) and
# the app columns' defaults read the time the harness sets, so leases and stamps follow the
# test's FakeClock exactly. Only this throw-away database is changed.
TEST_CLOCK = """
create table public.videopoll_test_clock (at timestamptz not null);
grant select on public.videopoll_test_clock to anon, authenticated, service_role;
create or replace function public.videopoll_now() returns timestamptz
language sql stable security invoker set search_path = public, pg_temp as $$
  select coalesce((select at from public.videopoll_test_clock limit 1), now()) $$;
alter table public.lessons alter column created_at set default public.videopoll_now();
alter table public.lesson_assets alter column created_at set default public.videopoll_now();
alter table public.lesson_assets alter column updated_at set default public.videopoll_now();
alter table public.videopoll_assets alter column updated_at set default public.videopoll_now();
alter table public.videopoll_state alter column updated_at set default public.videopoll_now();
"""


@pytest.fixture(scope="session")
def contract_db() -> Iterator[str]:
    """A migrated database of the session whose server clock the tests move."""
    from videopoll.sandbox.pg import apply_sql

    for dsn in migrated_database("videopoll_contract"):
        apply_sql(dsn, TEST_CLOCK)
        yield dsn


class PgSeed:
    """Writes as the app does, straight into the contract database, and its clock."""

    def __init__(self, dsn: str, clock: FakeClock) -> None:
        self.dsn, self.clock = dsn, clock

    def sql(self, query: str, params: Any = None) -> list[tuple[Any, ...]]:
        import psycopg

        with psycopg.connect(self.dsn, autocommit=True) as conn:
            cur = conn.execute(query, params)
            return cur.fetchall() if cur.description else []

    def reset(self) -> None:
        """No rows, objects or state left by an earlier test; the clock at the test's."""
        self.sql("truncate public.lessons, public.videopoll_state cascade")
        self.sql("delete from storage.objects")
        self.sql("insert into storage.buckets (id, name) values (%s, %s) "
                 "on conflict do nothing", [BUCKET, BUCKET])
        self.sql("delete from videopoll_test_clock")
        self.sql("insert into videopoll_test_clock values (%s)", [self.clock.now()])

    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)
        self.sql("update videopoll_test_clock set at = %s", [self.clock.now()])

    def add_lesson(self, title: str, user_id: str | None = None,
                   lesson_id: str | None = None) -> Lesson:
        new_id = lesson_id or str(uuid.uuid4())
        self.sql("insert into lessons (id, title, user_id) values (%s, %s, %s)",
                 [new_id, title, user_id])
        return Lesson(id=new_id, title=title, user_id=user_id)

    def add_asset(self, lesson_id: str, *, conversation_id: str | None = None,
                  github_path: str | None = None, kind: str = "video",
                  storage_path: str | None = None, user_id: str | None = None,
                  asset_id: str | None = None, metadata: dict[str, Any] | None = None,
                  created_at: datetime | None = None) -> str:
        import psycopg

        meta = dict(metadata or {})
        if github_path is not None:
            meta["github_path"] = github_path
        new_id = asset_id or str(uuid.uuid4())
        stamp = created_at or self.clock.now()
        try:
            self.sql("insert into lesson_assets (id, lesson_id, user_id, kind, storage_path, "
                     "mime_type, conversation_id, metadata, created_at, updated_at) values "
                     "(%s, %s, %s, %s, %s, %s, %s, %s::jsonb, %s, %s)",
                     [new_id, lesson_id, user_id, kind, storage_path,
                      "video/mp4" if kind == "video" else None, conversation_id,
                      json.dumps(meta), stamp, stamp])
        except psycopg.errors.IntegrityError as exc:  # as the other stores refuse it
            raise RequestRejected(f"the app's insert was refused: {exc}", status=409) from exc
        return new_id

    def metadata(self, asset_id: str) -> dict[str, Any]:
        found = self.sql("select metadata from lesson_assets where id = %s", [asset_id])
        if not found:
            raise KeyError(asset_id)
        return dict(found[0][0])


@dataclass
class PgHarness(StoreHarness):
    """The harness of a store whose clock is the database's `videopoll_now()`."""

    seed: PgSeed | None = None

    def advance(self, seconds: float) -> None:
        assert self.seed is not None
        self.seed.advance(seconds)


@asynccontextmanager
async def _make_supabase(request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock
                         ) -> AsyncIterator[StoreHarness]:
    """The Supabase store over real HTTP, against the stand-in on real PostgreSQL."""
    from videopoll.sandbox.supabase import SupabaseStandIn
    from videopoll.services.http import make_client
    from videopoll.services.supabase.store import SupabaseStore, repeatable

    seed = PgSeed(request.getfixturevalue("contract_db"), clock)
    seed.reset()
    storage = tmp_path / "storage"
    bucket_dir = storage / "objects" / BUCKET

    def objects() -> dict[str, bytes]:
        return {p.relative_to(bucket_dir).as_posix(): p.read_bytes()
                for p in sorted(bucket_dir.rglob("*")) if p.is_file()}

    with SupabaseStandIn(seed.dsn, storage) as supa:
        async with make_client(Service.STORE, supa.url, calls=Counter(),
                               repeatable=repeatable) as http:
            store = await SupabaseStore.connect(http, url=supa.url, key=supa.service_key,
                                                bucket=BUCKET)
            try:
                yield PgHarness(store=store, clock=clock, add_lesson=seed.add_lesson,
                                add_asset=seed.add_asset, metadata=seed.metadata,
                                objects=objects, seed=seed)
            finally:
                await store.close()


FACTORIES: dict[str, Factory] = {
    "memory": _make_memory,
    "local": _make_local,
    "supabase": _make_supabase,
}
MARKS: dict[str, list[pytest.MarkDecorator]] = {
    "supabase": [pytest.mark.postgres],
}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=[pytest.param(name, marks=MARKS.get(name, [])) for name in FACTORIES])
async def harness(request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock
                  ) -> AsyncIterator[StoreHarness]:
    """Each implementation in turn, with seeding hooks; test ids end in `[memory]`, ..."""
    async with FACTORIES[request.param](request, tmp_path, clock) as built:
        yield built


@pytest.fixture
def store(harness: StoreHarness) -> Store:
    """The store under test (parametrised through `harness`)."""
    return harness.store
