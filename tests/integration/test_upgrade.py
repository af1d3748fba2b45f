"""Upgrading a database migrated by the previous version (issue 11): its bookkeeping columns
on lesson_assets move to videopoll_assets, a second run changes nothing, and the functions
carry on with the moved state (a live claim can still finish). A saved resumable upload is
not carried over: its URL was writable by app users, and the poller sends its key there.

`fixtures/schema_previous.sql` is a verbatim copy of `videopoll/sql/schema.sql` as it was
before the move (commit 133f6f6).
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from videopoll.errors import ConfigError
from videopoll.model import Service, Status
from videopoll.sandbox.pg import apply_sql, bootstrap_supabase, fresh_database
from videopoll.sandbox.supabase import SupabaseStandIn
from videopoll.services.http import make_client
from videopoll.services.supabase.checks import MOVED_COLUMNS
from videopoll.services.supabase.store import SupabaseStore
from videopoll.sql import schema_sql

from .conftest import BUCKET

pytestmark = pytest.mark.postgres
PREVIOUS = (Path(__file__).parent / "fixtures" / "schema_previous.sql").read_text()
OLD = "old-poller:1"
UPLOAD = "https://project.supabase.co/storage/v1/upload/resumable/abc"


def query(dsn: str, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        cur = conn.execute(sql, params)
        return cur.fetchall() if cur.description else []


@pytest.fixture
def old_db(pg_admin: str) -> Iterator[str]:
    """A Supabase-shaped database migrated by the previous version."""
    with fresh_database("videopoll_up", dsn=pg_admin) as dsn:
        bootstrap_supabase(dsn)
        apply_sql(dsn, PREVIOUS)
        yield dsn


def seed_old_state(dsn: str) -> dict[str, str]:
    """Rows as pollers of the previous version left them, bookkeeping on lesson_assets."""
    ids = {name: str(uuid.uuid4()) for name in
           ("held", "crashed", "retried", "mismatched", "plain", "done")}
    for aid in ids.values():  # a lesson each: a lesson has one open video at a time
        lesson = query(dsn, "insert into lessons (title) values ('L') returning id")[0][0]
        query(dsn, "insert into lesson_assets (id, lesson_id, kind, conversation_id, metadata) "
                   "values (%s, %s, 'video', %s, jsonb_build_object('github_path', %s::text))",
              [aid, lesson, uuid.uuid4().hex, f"videos/{lesson}/{aid}.mp4"])
    changes = {
        # mid-way through a resumable upload, under a live lease
        "held": ("status = 'transferring', claimed_by = %s, claimed_until = now() + "
                 "interval '5 minutes', mismatches = 1, upload_url = %s, upload_digest = 'sha-1',"
                 " upload_offset = 12582912, upload_prefix_sha256 = 'ab'", [OLD, UPLOAD]),
        "crashed": ("status = 'transferring', claimed_by = 'crashed:9', claimed_until = now() - "
                    "interval '1 minute'", []),
        "retried": ("created_at = now() - interval '2 hours', "
                    "retried_at = now() - interval '1 hour', error = 'x', attempts = 2", []),
        "mismatched": ("status = 'finished', finished_at = now(), mismatches = 2", []),
        "done": ("status = 'ready', storage_path = 'videos/d.mp4'", []),
    }
    for name, (sets, params) in changes.items():
        query(dsn, f"update lesson_assets set {sets} where id = %s", [*params, ids[name]])
    return ids


def snapshot(dsn: str) -> dict[str, Any]:
    """Everything the migration manages: rows of both tables, columns, functions (oid and
    body), grants, policies, constraints, indexes, triggers, realtime."""
    parts = {
        "assets": "select to_jsonb(a) from lesson_assets a order by id",
        "book": "select to_jsonb(v) from videopoll_assets v order by asset_id",
        "state": "select to_jsonb(s) from videopoll_state s order by key",
        "columns": "select table_name, column_name, data_type, is_nullable, column_default "
                   "from information_schema.columns where table_schema = 'public' "
                   "order by 1, 2",
        "functions": "select oid::int, proname, md5(prosrc), proacl::text, proconfig::text "
                     "from pg_proc where proname like 'videopoll%%' order by 2",
        "tables": "select relname, relacl::text, relrowsecurity, relreplident from pg_class "
                  "where relnamespace = 'public'::regnamespace and relkind = 'r' order by 1",
        "policies": "select tablename, policyname from pg_policies order by 1, 2",
        "constraints": "select conrelid::regclass::text, conname, pg_get_constraintdef(oid) "
                       "from pg_constraint where connamespace = 'public'::regnamespace "
                       "order by 1, 2",
        "indexes": "select indexname, indexdef from pg_indexes where schemaname = 'public' "
                   "order by 1",
        "triggers": "select tgrelid::regclass::text, tgname from pg_trigger "
                    "where not tgisinternal order by 1, 2",
        "realtime": "select schemaname, tablename from pg_publication_tables "
                    "where pubname = 'supabase_realtime' order by 2",
    }
    return {name: query(dsn, sql) for name, sql in parts.items()}


def test_upgrade_moves_the_state_and_drops_the_columns(old_db: str) -> None:
    """First run: the saved state is in videopoll_assets, the 8 columns are gone, the app's
    rows are otherwise untouched. Second run: nothing changes at all."""
    ids = seed_old_state(old_db)
    before = {str(r[0]): r[1:] for r in query(
        old_db, "select id, status, error, attempts, storage_path, finished_at, updated_at "
                "from lesson_assets")}
    old_book = {str(r[0]): r[1:] for r in query(
        old_db, "select id, claimed_by, claimed_until, mismatches, retried_at, upload_url, "
                "upload_digest, upload_offset, upload_prefix_sha256 from lesson_assets")}
    apply_sql(old_db, schema_sql())
    first = snapshot(old_db)
    after = {str(r[0]): r[1:] for r in query(
        old_db, "select id, status, error, attempts, storage_path, finished_at, updated_at "
                "from lesson_assets")}
    assert after == before
    book = {str(r[0]): r[1:] for r in query(
        old_db, "select asset_id, claimed_by, claimed_until, mismatches, retried_at, "
                "upload_url, upload_digest, upload_offset, upload_prefix_sha256 "
                "from videopoll_assets")}
    moved = ("held", "crashed", "retried", "mismatched")
    assert old_book[ids["held"]][4:] == (UPLOAD, "sha-1", 12582912, "ab")
    assert book == {ids[n]: old_book[ids[n]][:4] + (None,) * 4 for n in moved}
    columns = {c for (c,) in query(old_db, "select column_name from information_schema.columns"
                                           " where table_name = 'lesson_assets'")}
    assert not columns & MOVED_COLUMNS
    assert {"status", "error", "attempts", "finished_at", "updated_at",
            "start_task_id"} <= columns
    assert first["realtime"] == [("public", "lesson_assets")]
    tables = {name: (rls, ident) for name, _, rls, ident in first["tables"]}
    assert (tables["lesson_assets"], tables["videopoll_assets"]) == ((True, "f"), (True, "d"))
    apply_sql(old_db, schema_sql())
    assert snapshot(old_db) == first


def test_upgrade_refuses_to_cascade_into_the_apps_objects(old_db: str) -> None:
    """A view of the app's that uses an old column stops the upgrade with a clear error, and
    nothing is half done (the migration is one transaction)."""
    seed_old_state(old_db)
    query(old_db, "create view app_claims as select id, claimed_by from lesson_assets")
    before = snapshot_tables(old_db)
    with pytest.raises(psycopg.errors.RaiseException) as stopped:
        apply_sql(old_db, schema_sql())
    assert "cannot drop the bookkeeping columns of lesson_assets" in str(stopped.value)
    assert "view app_claims depends on column" in (stopped.value.diag.message_detail or "")
    assert snapshot_tables(old_db) == before
    assert query(old_db, "select to_regclass('public.videopoll_assets')") == [(None,)]


def snapshot_tables(dsn: str) -> list[tuple[Any, ...]]:
    return query(dsn, "select to_jsonb(a) from lesson_assets a order by id")


async def test_functions_carry_on_with_the_moved_state(old_db: str, tmp_path: Path) -> None:
    """Before: the new client calls the database outdated. After: the old poller's live claim
    still finishes (with no saved upload to resume), a crashed poller's expired claim is
    taken over, retried_at still restarts the clock, and doctor says complete."""
    ids = seed_old_state(old_db)
    with SupabaseStandIn(old_db, tmp_path / "storage") as supa:
        query(old_db, "insert into storage.buckets (id, name) values (%s, %s)", [BUCKET, BUCKET])
        async with make_client(Service.STORE, supa.url, calls=Counter()) as http:
            store = await SupabaseStore.connect(http, url=supa.url, key=supa.service_key,
                                                bucket=BUCKET)
            checks = {n: (ok, d) for n, ok, d in await store.check()}
            ok, detail = checks["supabase migration"]
            assert not ok and detail.startswith("outdated (lesson_assets still holds claimed_by")
            assert "videopoll schema" in detail
            with pytest.raises(ConfigError) as outdated:
                await store.pending()
            assert "migration" in outdated.value.message
            apply_sql(old_db, schema_sql())
            supa.schema.reload()  # Supabase reloads PostgREST's schema cache after DDL
            checks = {n: (ok, d) for n, ok, d in await store.check()}
            assert checks["supabase migration"] == (True, "complete")
            held = await store.get(ids["held"])
            assert held is not None
            assert (held.status, held.claimed_by, held.mismatches) == (
                Status.TRANSFERRING, OLD, 1)
            assert await store._saved_upload(ids["held"]) is None  # not trusted: not kept
            assert not await store.claim(ids["held"], "new:2", 60)  # still a live lease
            assert await store.renew(ids["held"], OLD, 300)
            assert await store.mark_ready(ids["held"], OLD, "videos/held.mp4")
            assert await store.claim(ids["crashed"], "new:2", 60)  # its lease ran out
            retried = await store.get(ids["retried"])
            assert retried is not None and retried.retried_at is not None
            assert retried.age_from == retried.retried_at > retried.created_at
            mismatched = await store.get(ids["mismatched"])
            assert mismatched is not None
            assert await store.record_error(ids["mismatched"], "again", mismatch=True) == 3
            pending = {a.id: a for a in await store.pending()}
            assert set(pending) == {ids[n] for n in ("crashed", "retried", "mismatched",
                                                     "plain")}
            assert pending[ids["crashed"]].claimed_by == "new:2"
            until = pending[ids["crashed"]].claimed_until
            assert isinstance(until, datetime)
            assert until - datetime.now(until.tzinfo) < timedelta(seconds=61)
