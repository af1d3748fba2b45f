"""Real PostgreSQL for the Supabase stand-in and the integration tests.

`ensure_server()` finds (or starts) a local server, `fresh_database()` gives a throw-away
database, and `bootstrap_supabase()` reproduces what a new Supabase project has before any app
migration: its roles and grants, the realtime publication, a `storage` schema, an `auth.uid()`
helper and the app's two tables (DESIGN section 7).
"""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg import sql

DEFAULT_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server could be reached or started.

    `installed` is False when there is no PostgreSQL on this machine at all (tests skip then);
    True when one is installed but would not come up (tests fail then: something is wrong).
    """

    def __init__(self, message: str, *, installed: bool) -> None:
        super().__init__(message)
        self.installed = installed


def _reachable(dsn: str) -> bool:
    try:
        with psycopg.connect(dsn, connect_timeout=3):
            return True
    except psycopg.OperationalError:
        return False


def ensure_server(dsn: str = DEFAULT_DSN, *, wait_s: float = 20.0) -> str:
    """The DSN of a reachable PostgreSQL; starts a Debian cluster with pg_ctlcluster if down."""
    if _reachable(dsn):
        return dsn
    if shutil.which("pg_lsclusters") is None or shutil.which("pg_ctlcluster") is None:
        installed = shutil.which("postgres") is not None or shutil.which("pg_ctl") is not None
        raise PostgresUnavailable(
            "PostgreSQL is not reachable at 127.0.0.1:5432 and pg_ctlcluster is not installed",
            installed=installed)
    listing = subprocess.run(["pg_lsclusters", "--no-header"], capture_output=True, text=True,
                             check=False).stdout.split()
    # Rows of: version cluster port status owner datadir logfile
    rows = [listing[i:i + 7] for i in range(0, len(listing), 7)]
    if not rows:
        raise PostgresUnavailable("PostgreSQL is installed but has no cluster", installed=True)
    for version, cluster, port, status, *_ in rows:
        candidate = psycopg.conninfo.make_conninfo(dsn, port=port)
        if status != "online":
            subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", version, cluster,
                            "start"], capture_output=True, check=False)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if _reachable(candidate):
                return candidate
            time.sleep(0.2)
    raise PostgresUnavailable("PostgreSQL is installed but did not start", installed=True)


@contextmanager
def fresh_database(prefix: str = "videopoll", *, dsn: str | None = None) -> Iterator[str]:
    """Create an empty database, yield its DSN, drop it afterwards (even if still in use)."""
    admin = dsn or ensure_server()
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    try:
        yield psycopg.conninfo.make_conninfo(admin, dbname=name)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("drop database if exists {} with (force)").format(
                sql.Identifier(name)))


# Roles are cluster-wide: another database (or a parallel test session) may have made them.
_BOOTSTRAP = """
do $$
declare
  r text;
begin
  foreach r in array array['anon', 'authenticated', 'service_role'] loop
    begin
      execute format('create role %I nologin noinherit', r);
    exception when duplicate_object or unique_violation then null;
    end;
  end loop;
end $$;
alter role service_role bypassrls;

-- Supabase grants the API roles everything in `public` and relies on row-level security.
grant usage on schema public to anon, authenticated, service_role;
alter default privileges in schema public
  grant all on tables to anon, authenticated, service_role;
alter default privileges in schema public
  grant all on sequences to anon, authenticated, service_role;
alter default privileges in schema public
  grant all on functions to anon, authenticated, service_role;

create schema if not exists auth;
grant usage on schema auth to anon, authenticated, service_role;
create or replace function auth.uid() returns uuid language sql stable as $f$
  select nullif(nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub', '')::uuid
$f$;

do $$
begin
  if not exists (select 1 from pg_publication where pubname = 'supabase_realtime') then
    create publication supabase_realtime;
  end if;
end $$;

-- The Storage API's metadata (a subset of supabase/storage's migrations).
create schema if not exists storage;
grant usage on schema storage to anon, authenticated, service_role;
create table if not exists storage.buckets (
  id text primary key, name text not null unique, owner uuid,
  public boolean not null default false, file_size_limit bigint, allowed_mime_types text[],
  created_at timestamptz default now(), updated_at timestamptz default now());
create table if not exists storage.objects (
  id uuid primary key default gen_random_uuid(),
  bucket_id text references storage.buckets (id), name text, owner uuid,
  created_at timestamptz default now(), updated_at timestamptz default now(),
  last_accessed_at timestamptz default now(), metadata jsonb, version text,
  unique (bucket_id, name));
alter table storage.buckets enable row level security;
alter table storage.objects enable row level security;
grant all on storage.buckets, storage.objects to anon, authenticated, service_role;

-- The app's tables, exactly as DESIGN section 7 has them, with RLS as the app would.
create table if not exists public.lessons (
  id uuid primary key default gen_random_uuid(), user_id uuid, title text not null,
  created_at timestamptz not null default now());
create table if not exists public.lesson_assets (
  id uuid primary key default gen_random_uuid(),
  lesson_id uuid not null references public.lessons (id) on delete cascade, user_id uuid,
  kind text not null, storage_path text, mime_type text, conversation_id text,
  metadata jsonb not null default '{}'::jsonb, created_at timestamptz not null default now());
alter table public.lessons enable row level security;
alter table public.lesson_assets enable row level security;
drop policy if exists "own lessons" on public.lessons;
create policy "own lessons" on public.lessons for select to authenticated
  using (user_id = auth.uid());
drop policy if exists "own assets" on public.lesson_assets;
create policy "own assets" on public.lesson_assets for select to authenticated
  using (user_id = auth.uid());
"""


def bootstrap_supabase(dsn: str) -> None:
    """Give the database at `dsn` what a new Supabase project has (idempotent)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(_BOOTSTRAP)


def apply_sql(dsn: str, script: str) -> None:
    """Run a multi-statement script (e.g. the migration) in one transaction."""
    with psycopg.connect(dsn) as conn:
        conn.execute(script)  # a trusted script (the migration), never request data
