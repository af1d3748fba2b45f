-- videopoll migration for a Supabase project (printed by `videopoll schema`).
--
-- Idempotent: running it twice changes nothing. It assumes only the app's tables `lessons` and
-- `lesson_assets` plus what every Supabase project has (the roles anon, authenticated and
-- service_role; the publication supabase_realtime, created here when a fresh self-hosted
-- database lacks it). Every state change of a video row is one guarded UPDATE in a function
-- below, using the database server's clock, so racing pollers and repeated calls are harmless.
--
-- The functions are SECURITY INVOKER: they run with the caller's rights, so they can do no more
-- than the caller could with plain SQL (service_role bypasses row-level security; anyone else
-- stays subject to RLS even if EXECUTE were granted by mistake). search_path is pinned so a
-- caller's path cannot redirect the table names.

-- 1. Columns ------------------------------------------------------------------------------------
do $$
begin
  if not exists (select 1 from information_schema.columns
                 where table_schema = 'public' and table_name = 'lesson_assets'
                   and column_name = 'status') then
    alter table public.lesson_assets add column status text not null default 'generating';
    -- Backfill only when the column is new: a second run must not reset live states.
    update public.lesson_assets set status = 'ready' where storage_path is not null;
  end if;
end $$;

alter table public.lesson_assets
  add column if not exists error text,
  add column if not exists attempts int not null default 0,
  add column if not exists mismatches int not null default 0,
  add column if not exists claimed_by text,
  add column if not exists claimed_until timestamptz,
  add column if not exists finished_at timestamptz,
  add column if not exists retried_at timestamptz,
  add column if not exists updated_at timestamptz not null default now(),
  add column if not exists start_task_id text,
  -- A resumable (TUS) upload left by a crash: where it is, which artifact it holds (git blob
  -- sha or LFS oid), how far it got and the sha256 of the bytes sent so far.
  add column if not exists upload_url text,
  add column if not exists upload_digest text,
  add column if not exists upload_offset bigint,
  add column if not exists upload_prefix_sha256 text;

-- Dropped and re-added so a later version can widen the list; NOT VALID is not used because
-- every existing row was backfilled into one of these states.
alter table public.lesson_assets drop constraint if exists lesson_assets_status_check;
alter table public.lesson_assets add constraint lesson_assets_status_check
  check (status in ('starting', 'generating', 'finished', 'transferring', 'ready', 'failed'));

-- The pending query: kind = video, no storage_path, a pending status, oldest first.
create index if not exists lesson_assets_videopoll_pending
  on public.lesson_assets (created_at)
  where kind = 'video' and storage_path is null
    and status in ('starting', 'generating', 'finished', 'transferring');

-- 2. updated_at, maintained for every UPDATE (the app's own writes included) -------------------
create or replace function public.videopoll_touch() returns trigger
language plpgsql security invoker set search_path = public, pg_temp as $$
begin
  new.updated_at := now();
  return new;
end $$;

create or replace trigger videopoll_touch before update on public.lesson_assets
  for each row execute function public.videopoll_touch();

-- 3. Key-value state (the GitHub ETag and listing), private to the service role ----------------
create table if not exists public.videopoll_state (
  key text primary key,
  value jsonb not null,
  updated_at timestamptz not null default now()
);
alter table public.videopoll_state enable row level security;

create or replace trigger videopoll_touch before update on public.videopoll_state
  for each row execute function public.videopoll_touch();

-- 4. Transitions: one guarded statement each, returning whether it matched ---------------------
create or replace function public.videopoll_claim(asset_id uuid, owner text, lease_s double precision)
returns boolean language sql volatile security invoker set search_path = public, pg_temp as $$
  -- Two racing claims serialise on the row lock; the loser re-checks the WHERE against the
  -- winner's row (READ COMMITTED) and matches nothing.
  with hit as (
    update public.lesson_assets a
       set status = 'transferring', claimed_by = videopoll_claim.owner,
           claimed_until = now() + make_interval(secs => videopoll_claim.lease_s)
     where a.id = videopoll_claim.asset_id and a.kind = 'video'
       and (a.status = 'finished' or (a.status = 'transferring' and a.claimed_until < now()))
    returning 1)
  select exists (select 1 from hit);
$$;

create or replace function public.videopoll_renew(asset_id uuid, owner text, lease_s double precision)
returns boolean language sql volatile security invoker set search_path = public, pg_temp as $$
  with hit as (
    update public.lesson_assets a
       set claimed_until = now() + make_interval(secs => videopoll_renew.lease_s)
     where a.id = videopoll_renew.asset_id and a.status = 'transferring'
       and a.claimed_by = videopoll_renew.owner and a.claimed_until > now()
    returning 1)
  select exists (select 1 from hit);
$$;

create or replace function public.videopoll_release(asset_id uuid, owner text)
returns boolean language sql volatile security invoker set search_path = public, pg_temp as $$
  with hit as (
    update public.lesson_assets a
       set status = 'finished', claimed_by = null, claimed_until = null
     where a.id = videopoll_release.asset_id and a.status = 'transferring'
       and a.claimed_by = videopoll_release.owner
    returning 1)
  select exists (select 1 from hit);
$$;

create or replace function public.videopoll_mark_ready(asset_id uuid, owner text, storage_path text)
returns boolean language sql volatile security invoker set search_path = public, pg_temp as $$
  -- Only the holder of a live lease: a poller whose lease ran out (and was perhaps taken over)
  -- can no longer finish the row.
  with hit as (
    update public.lesson_assets a
       set status = 'ready', storage_path = videopoll_mark_ready.storage_path, error = null,
           claimed_by = null, claimed_until = null, upload_url = null, upload_digest = null,
           upload_offset = null, upload_prefix_sha256 = null
     where a.id = videopoll_mark_ready.asset_id and a.status = 'transferring'
       and a.claimed_by = videopoll_mark_ready.owner and a.claimed_until > now()
    returning 1)
  select exists (select 1 from hit);
$$;

create or replace function public.videopoll_mark_failed(asset_id uuid, reason text, owner text default null)
returns boolean language sql volatile security invoker set search_path = public, pg_temp as $$
  with hit as (
    update public.lesson_assets a
       set status = 'failed', error = videopoll_mark_failed.reason,
           claimed_by = null, claimed_until = null
     where a.id = videopoll_mark_failed.asset_id
       and (a.status in ('starting', 'generating', 'finished')
            or (a.status = 'transferring' and a.claimed_by = videopoll_mark_failed.owner))
    returning 1)
  select exists (select 1 from hit);
$$;

create or replace function public.videopoll_mark_finished(asset_id uuid)
returns boolean language sql volatile security invoker set search_path = public, pg_temp as $$
  with hit as (
    update public.lesson_assets a set status = 'finished', finished_at = now()
     where a.id = videopoll_mark_finished.asset_id and a.status = 'generating'
    returning 1)
  select exists (select 1 from hit);
$$;

create or replace function public.videopoll_mark_generating(asset_id uuid)
returns boolean language sql volatile security invoker set search_path = public, pg_temp as $$
  with hit as (
    update public.lesson_assets a set status = 'generating', finished_at = null
     where a.id = videopoll_mark_generating.asset_id and a.status = 'finished'
    returning 1)
  select exists (select 1 from hit);
$$;

create or replace function public.videopoll_resolve_start(asset_id uuid, conversation_id text)
returns boolean language sql volatile security invoker set search_path = public, pg_temp as $$
  with hit as (
    update public.lesson_assets a
       set status = 'generating', conversation_id = videopoll_resolve_start.conversation_id
     where a.id = videopoll_resolve_start.asset_id and a.status = 'starting'
    returning 1)
  select exists (select 1 from hit);
$$;

create or replace function public.videopoll_record_error(asset_id uuid, error text, mismatch boolean default false)
returns int language sql volatile security invoker set search_path = public, pg_temp as $$
  -- A transient problem: counted, the status untouched. Returns the new mismatch count
  -- (0 when the row is not pending any more).
  with hit as (
    update public.lesson_assets a
       set error = videopoll_record_error.error, attempts = a.attempts + 1,
           mismatches = a.mismatches + case when videopoll_record_error.mismatch then 1 else 0 end
     where a.id = videopoll_record_error.asset_id
       and a.status in ('starting', 'generating', 'finished', 'transferring')
    returning a.mismatches)
  select coalesce((select mismatches from hit), 0);
$$;

create or replace function public.videopoll_retry(ids uuid[] default null, dry_run boolean default false)
returns setof public.lesson_assets
language sql volatile security invoker set search_path = public, pg_temp as $$
  -- failed -> generating (starting when only a start task exists); the old error goes to
  -- metadata.error_history and retried_at restarts VIDEOPOLL_MAX_GENERATION's clock.
  -- `plan` is each row as it will be; a dry run returns it without writing.
  with plan as (
    select (jsonb_populate_record(a, jsonb_build_object(
              'status', case when a.conversation_id is null and a.start_task_id is not null
                             then 'starting' else 'generating' end,
              'metadata', jsonb_set(coalesce(a.metadata, '{}'::jsonb), '{error_history}',
                 coalesce(a.metadata -> 'error_history', '[]'::jsonb)
                   || jsonb_build_array(jsonb_build_object('at', now(), 'error', a.error))),
              'error', null, 'retried_at', now(), 'mismatches', 0, 'claimed_by', null,
              'claimed_until', null, 'finished_at', null))).*
      from public.lesson_assets a
     where a.status = 'failed' and a.kind = 'video'
       and (videopoll_retry.ids is null or a.id = any (videopoll_retry.ids))),
  moved as (
    update public.lesson_assets a
       set status = p.status, metadata = p.metadata, error = null, retried_at = p.retried_at,
           mismatches = 0, claimed_by = null, claimed_until = null, finished_at = null
      from plan p
     where a.id = p.id and a.status = 'failed' and not videopoll_retry.dry_run
    returning a.*)
  select * from moved
  union all
  select * from plan where videopoll_retry.dry_run;
$$;

create or replace function public.videopoll_save_upload(
  asset_id uuid, owner text, url text, digest text, upload_offset bigint, prefix_sha256 text)
returns boolean language sql volatile security invoker set search_path = public, pg_temp as $$
  -- Where a resumable upload stands; only the live lease holder may say so.
  with hit as (
    update public.lesson_assets a
       set upload_url = videopoll_save_upload.url, upload_digest = videopoll_save_upload.digest,
           upload_offset = videopoll_save_upload.upload_offset,
           upload_prefix_sha256 = videopoll_save_upload.prefix_sha256
     where a.id = videopoll_save_upload.asset_id and a.status = 'transferring'
       and a.claimed_by = videopoll_save_upload.owner and a.claimed_until > now()
    returning 1)
  select exists (select 1 from hit);
$$;

-- What `videopoll doctor` compares with what it expects: the lesson_assets columns, the
-- videopoll functions, the realtime publication, the replica identity and RLS, as one object.
create or replace function public.videopoll_schema_check()
returns jsonb language sql stable security invoker set search_path = public, pg_temp as $$
  select jsonb_build_object(
    'columns', (select coalesce(jsonb_agg(column_name::text order by column_name), '[]')
                  from information_schema.columns
                 where table_schema = 'public' and table_name = 'lesson_assets'),
    'functions', (select coalesce(jsonb_agg(distinct p.proname::text), '[]')
                    from pg_proc p join pg_namespace n on n.oid = p.pronamespace
                   where n.nspname = 'public' and p.proname like 'videopoll\_%'),
    'publication', exists (select 1 from pg_publication where pubname = 'supabase_realtime'),
    'in_publication', exists (select 1 from pg_publication_tables
                               where pubname = 'supabase_realtime' and schemaname = 'public'
                                 and tablename = 'lesson_assets'),
    'replica_identity_full', (select c.relreplident = 'f' from pg_class c
                               where c.oid = 'public.lesson_assets'::regclass),
    'rls', (select c.relrowsecurity from pg_class c
             where c.oid = 'public.lesson_assets'::regclass),
    'state_table', to_regclass('public.videopoll_state') is not null);
$$;

-- 5. Who may call them: the service role only --------------------------------------------------
-- Supabase's default privileges grant EXECUTE on new functions in `public` to anon and
-- authenticated as well as PUBLIC, so each is revoked by name.
do $$
declare
  fn regprocedure;
begin
  for fn in select p.oid::regprocedure from pg_proc p
             join pg_namespace n on n.oid = p.pronamespace
            where n.nspname = 'public' and p.proname like 'videopoll\_%'
  loop
    execute format('revoke all on function %s from public, anon, authenticated', fn);
    execute format('grant execute on function %s to service_role', fn);
  end loop;
end $$;

revoke all on table public.videopoll_state from anon, authenticated;
grant all on table public.videopoll_state to service_role;

-- 6. Row-level security stays on; realtime sees the rows with their old values -----------------
alter table public.lesson_assets enable row level security;
alter table public.lesson_assets replica identity full;

do $$
begin
  if not exists (select 1 from pg_publication where pubname = 'supabase_realtime') then
    create publication supabase_realtime;
  end if;
  if not exists (select 1 from pg_publication p where p.pubname = 'supabase_realtime'
                    and p.puballtables)
     and not exists (select 1 from pg_publication_tables
                      where pubname = 'supabase_realtime' and schemaname = 'public'
                        and tablename = 'lesson_assets') then
    alter publication supabase_realtime add table public.lesson_assets;
  end if;
end $$;
