"""The migration (`videopoll schema`) on a database shaped like a new Supabase project."""

from __future__ import annotations

import psycopg
import pytest

from videopoll.sandbox.pg import apply_sql, bootstrap_supabase, fresh_database
from videopoll.sql import schema_sql

from .conftest import Seed

pytestmark = pytest.mark.postgres

FUNCTIONS = ["videopoll_apply(jsonb,jsonb)",
             "videopoll_pending(integer,timestamptz,uuid,boolean)",
             "videopoll_transitions()",
             "videopoll_retry(uuid[],boolean,jsonb)",
             "videopoll_save_upload(uuid,text,text,text,bigint,text)"]


def test_applied_twice_backfills_once_and_keeps_live_states(pg_admin: str) -> None:
    """Existing rows are backfilled (storage_path → ready, else generating) on the first run;
    a second run changes nothing, not even states reached since."""
    with fresh_database("videopoll_mig", dsn=pg_admin) as dsn:
        bootstrap_supabase(dsn)
        with psycopg.connect(dsn, autocommit=True) as conn:
            lesson = conn.execute("insert into lessons (title) values ('L') returning id"
                                  ).fetchone()[0]  # type: ignore[index]
            conn.execute("insert into lesson_assets (lesson_id, kind, storage_path) values "
                         "(%s, 'video', 'videos/a.mp4'), (%s, 'video', null)", [lesson, lesson])
        apply_sql(dsn, schema_sql())
        with psycopg.connect(dsn, autocommit=True) as conn:
            states = conn.execute("select storage_path is null, status from lesson_assets "
                                  "order by 1").fetchall()
            assert states == [(False, "ready"), (True, "generating")]
            conn.execute("update lesson_assets set status = 'failed', error = 'x' "
                         "where storage_path is null")
        apply_sql(dsn, schema_sql())
        apply_sql(dsn, schema_sql())
        with psycopg.connect(dsn, autocommit=True) as conn:
            states = conn.execute("select status, error from lesson_assets order by 1").fetchall()
            assert states == [("failed", "x"), ("ready", None)]
            publications = conn.execute(
                "select count(*) from pg_publication_tables where pubname = 'supabase_realtime'"
                " and tablename = 'lesson_assets'").fetchone()
            assert publications == (1,)


def test_migration_creates_a_missing_publication(pg_admin: str) -> None:
    """A fresh self-hosted database may lack supabase_realtime: the migration creates it."""
    with fresh_database("videopoll_mig", dsn=pg_admin) as dsn:
        bootstrap_supabase(dsn)
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("drop publication supabase_realtime")
        apply_sql(dsn, schema_sql())
        with psycopg.connect(dsn, autocommit=True) as conn:
            assert conn.execute("select count(*) from pg_publication_tables where pubname = "
                                "'supabase_realtime' and tablename = 'lesson_assets'"
                                ).fetchone() == (1,)


def test_publication_replica_identity_and_rls(seed: Seed) -> None:
    """Realtime sees lesson_assets with old values; RLS stays on for both tables."""
    assert seed.sql("select schemaname, tablename from pg_publication_tables "
                    "where pubname = 'supabase_realtime'") == [("public", "lesson_assets")]
    assert seed.sql("select relreplident, relrowsecurity from pg_class "
                    "where oid = 'public.lesson_assets'::regclass") == [("f", True)]
    assert seed.sql("select relrowsecurity from pg_class "
                    "where oid = 'public.videopoll_state'::regclass") == [(True,)]
    assert seed.sql("select count(*) from pg_policies where tablename = 'videopoll_state'"
                    ) == [(0,)]


@pytest.mark.parametrize("function", FUNCTIONS)
def test_functions_are_for_the_service_role_only(seed: Seed, function: str) -> None:
    """Supabase's default privileges would let anon execute new functions; not these."""
    rows = seed.sql("select has_function_privilege('anon', %s, 'execute'), "
                    "has_function_privilege('authenticated', %s, 'execute'), "
                    "has_function_privilege('service_role', %s, 'execute')",
                    [f"public.{function}"] * 3)
    assert rows == [(False, False, True)]


def test_functions_are_volatile_invoker_with_a_pinned_search_path(seed: Seed) -> None:
    rows = seed.sql("select proname, provolatile, prosecdef, proconfig from pg_proc "
                    "where proname like 'videopoll\\_%%' and proname <> 'videopoll_touch'")
    assert len(rows) == 8
    # Reads are STABLE (the clock, the schema report) or IMMUTABLE (the transition table);
    # anything that writes is VOLATILE.
    kinds = {"videopoll_schema_check": "s", "videopoll_now": "s", "videopoll_pending": "s",
             "videopoll_transitions": "i"}
    for name, volatile, definer, config in rows:
        assert (name, volatile, definer) == (name, kinds.get(name, "v"), False)
        assert config == ["search_path=public, pg_temp"]


def test_status_check_and_defaults(seed: Seed) -> None:
    aid = seed.asset()
    row = seed.row(aid)
    assert (row["status"], row["attempts"]) == ("generating", 0)
    assert row["updated_at"] is not None
    with pytest.raises(psycopg.errors.CheckViolation):
        seed.sql("update lesson_assets set status = 'lost' where id = %s", [aid])


def test_updated_at_follows_every_update(seed: Seed) -> None:
    aid = seed.asset()
    before = seed.row(aid)["updated_at"]
    seed.sql("update lesson_assets set metadata = '{}' where id = %s", [aid])
    assert seed.row(aid)["updated_at"] > before


def test_pending_query_can_use_the_partial_index(seed: Seed) -> None:
    """The pending query's shape matches the partial index's predicate."""
    with psycopg.connect(seed.dsn, autocommit=True) as conn:
        conn.execute("set enable_seqscan = off")
        plan = "\n".join(r[0] for r in conn.execute(
            "explain select id from lesson_assets where kind = 'video' and storage_path is null"
            " and status in ('starting', 'generating', 'finished', 'transferring')"
            " order by created_at limit 10").fetchall())
    assert "lesson_assets_videopoll_pending" in plan
