"""Real PostgreSQL: one fresh database per test session (bootstrapped like a new Supabase
project, then migrated), dropped afterwards; the Supabase stand-in over it per test.

Skips with one line only when no PostgreSQL is installed at all; a PostgreSQL that is
installed but will not start fails loudly instead.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from videopoll.model import Service
from videopoll.sandbox.pg import PostgresUnavailable, ensure_server
from videopoll.sandbox.supabase import SupabaseStandIn
from videopoll.services.http import make_client
from videopoll.services.supabase.store import SupabaseStore

from ..pgsession import migrated_database

BUCKET = "lesson-assets"


@pytest.fixture(scope="session")
def pg_admin() -> str:
    try:
        return ensure_server()
    except PostgresUnavailable as exc:
        if not exc.installed:
            pytest.skip(f"no PostgreSQL installed: {exc}")
        raise


@pytest.fixture(scope="session")
def db(pg_admin: str) -> Iterator[str]:
    """The session's database: Supabase's bootstrap plus the videopoll migration."""
    yield from migrated_database("videopoll_it")


class Seed:
    """Rows written as the app (or a test) would, straight into PostgreSQL."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn

    def sql(self, query: str, params: Any = None) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            cur = conn.execute(query, params)
            return cur.fetchall() if cur.description else []

    def lesson(self, title: str = "Fractions", user_id: str | None = None) -> str:
        return str(self.sql("insert into lessons (title, user_id) values (%s, %s) returning id",
                            [title, user_id])[0][0])

    def asset(self, lesson_id: str | None = None, *, conversation_id: str | None = "auto",
              status: str | None = None, storage_path: str | None = None,
              github_path: str | None = None, kind: str = "video") -> str:
        """An app-style insert (base columns only), then optionally a forced status."""
        lesson_id = lesson_id or self.lesson()
        cid = uuid.uuid4().hex if conversation_id == "auto" else conversation_id
        path = github_path or f"videos/{lesson_id}/{uuid.uuid4()}.mp4"
        aid = str(self.sql(
            "insert into lesson_assets (lesson_id, kind, conversation_id, storage_path, "
            "metadata) values (%s, %s, %s, %s, jsonb_build_object('github_path', %s::text)) "
            "returning id", [lesson_id, kind, cid, storage_path, path])[0][0])
        if status is not None:
            self.sql("update lesson_assets set status = %s where id = %s", [status, aid])
        return aid

    def _one(self, query: str, asset_id: str) -> dict[str, Any] | None:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            cur = conn.execute(query, [asset_id])
            names = [d.name for d in cur.description or []]
            found = cur.fetchone()
            return None if found is None else dict(zip(names, found, strict=True))

    def row(self, asset_id: str) -> dict[str, Any]:
        """The asset's lesson_assets row: what the app (and its users) can see."""
        found = self._one("select * from lesson_assets where id = %s", asset_id)
        assert found is not None
        return found

    def book(self, asset_id: str) -> dict[str, Any] | None:
        """The asset's videopoll_assets row (claim, lease, upload state), None when it has none."""
        return self._one("select * from videopoll_assets where asset_id = %s", asset_id)

    def expire_lease(self, asset_id: str) -> None:
        """Moves the lease into the past instead of waiting for the server clock."""
        self.sql("update videopoll_assets set claimed_until = now() - interval '1 second' "
                 "where asset_id = %s", [asset_id])


@pytest.fixture
def seed(db: str) -> Seed:
    """A clean slate for each test: no lessons, rows, objects or state left over."""
    helper = Seed(db)
    helper.sql("truncate public.lessons, public.videopoll_state cascade")
    helper.sql("delete from storage.objects")
    helper.sql("insert into storage.buckets (id, name) values (%s, %s) on conflict do nothing",
               [BUCKET, BUCKET])
    return helper


@pytest.fixture
def supa(seed: Seed, tmp_path: Path) -> Iterator[SupabaseStandIn]:
    with SupabaseStandIn(seed.dsn, tmp_path / "storage") as standin:
        yield standin


@pytest.fixture
async def http(supa: SupabaseStandIn) -> AsyncIterator[httpx.AsyncClient]:
    """The run's client, as the lead's client layer builds it (counted, bounded)."""
    async with make_client(Service.STORE, supa.url, calls=Counter()) as client:
        yield client


@pytest.fixture
async def store(supa: SupabaseStandIn, http: httpx.AsyncClient) -> AsyncIterator[SupabaseStore]:
    built = await SupabaseStore.connect(http, url=supa.url, key=supa.service_key, bucket=BUCKET)
    yield built
    await built.close()


@pytest.fixture
def wire(supa: SupabaseStandIn) -> Iterator[Any]:
    """Plain HTTP clients for wire-level checks: `wire(key=None, **headers)` (key "" sends
    neither apikey nor Authorization); all closed at the end of the test."""
    made: list[httpx.Client] = []

    def build(key: str | None = None, **headers: str) -> httpx.Client:
        key = supa.service_key if key is None else key
        base = {"apikey": key, "Authorization": f"Bearer {key}"} if key else {}
        client = httpx.Client(base_url=supa.url, headers={**base, **headers}, timeout=30)
        made.append(client)
        return client

    yield build
    for client in made:
        client.close()
