-- videopoll migration for a Supabase project (printed by `videopoll schema`).
--
-- Idempotent: running it twice changes nothing. It assumes only the app's tables `lessons` and
-- `lesson_assets` plus what every Supabase project has (the roles anon, authenticated and
-- service_role; the publication supabase_realtime, created here when a fresh self-hosted
-- database lacks it). Run it in one transaction (`psql -v ON_ERROR_STOP=1 --single-transaction`,
-- or the SQL editor, which does): then it is applied entirely or not at all.
--
-- Where things live:
--   lesson_assets     gets what the app reads: status, error, attempts, finished_at,
--                     updated_at, start_task_id. The app's users may see these.
--   videopoll_assets  videopoll's own bookkeeping, one row per asset that has any: the claim
--                     and its lease, the mismatch count, when `retry` restarted the clock, and
--                     where a resumable upload stands. Row-level security on, no policy and no
--                     grant for anon or authenticated: no app user can read or write it, nor
--                     see it through Realtime. Only service_role (the poller) reaches it.
--   videopoll_state   key -> JSON (the GitHub ETag and listing), private the same way.
-- A database migrated by an earlier version, which kept the bookkeeping in lesson_assets, is
-- upgraded in place: the saved state moves to videopoll_assets and the old columns go.
--
-- Every state change of a video row is a function below, guarded by the row's current state
-- and using the database server's clock, so racing pollers and repeated calls are harmless.
-- The functions are SECURITY INVOKER: they run with the caller's rights, so they can do no more
-- than the caller could with plain SQL (service_role bypasses row-level security; anyone else
-- stays subject to RLS and has no grant on videopoll_assets, even if EXECUTE were granted by
-- mistake). search_path is pinned so a caller's path cannot redirect the table names.

-- 1. Columns of lesson_assets: what the app reads ----------------------------------------------
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
  add column if not exists finished_at timestamptz,
  add column if not exists updated_at timestamptz not null default now(),
  add column if not exists start_task_id text;

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

-- One open video per lesson, enforced here so that two `videopoll generate` runs racing for one
-- lesson cannot both insert (the loser is told the winner's row). A database that already holds
-- two open videos of one lesson keeps working without it; `videopoll doctor` names them.
do $$
begin
  if to_regclass('public.lesson_assets_one_open_video') is not null then
    return;
  end if;
  if exists (select 1 from public.lesson_assets
              where kind = 'video' and status in ('starting', 'generating', 'finished',
                                                  'transferring')
              group by lesson_id having count(*) > 1) then
    raise warning 'videopoll: some lessons have more than one open video, so the index that '
                  'allows one per lesson was not created; `videopoll doctor` lists them';
    return;
  end if;
  create unique index lesson_assets_one_open_video on public.lesson_assets (lesson_id)
   where kind = 'video' and status in ('starting', 'generating', 'finished', 'transferring');
end $$;

-- 2. updated_at, maintained for every UPDATE (the app's own writes included) -------------------
-- The clock of every lease and timestamp: this server's, one value per transaction. (A test
-- database may replace this function to move time; nothing else reads the clock.)
create or replace function public.videopoll_now() returns timestamptz
language sql stable security invoker set search_path = public, pg_temp as $$ select now() $$;

create or replace function public.videopoll_touch() returns trigger
language plpgsql security invoker set search_path = public, pg_temp as $$
begin
  new.updated_at := videopoll_now();
  return new;
end $$;

create or replace trigger videopoll_touch before update on public.lesson_assets
  for each row execute function public.videopoll_touch();

-- 3. videopoll's bookkeeping, private to the service role --------------------------------------
-- No row means nothing to keep: no claim, no mismatch, never retried, no upload to resume.
create table if not exists public.videopoll_assets (
  asset_id uuid not null references public.lesson_assets (id) on delete cascade,
  claimed_by text,                 -- the poller holding the claim: host name and pid
  claimed_until timestamptz,       -- the lease, on this server's clock
  mismatches int not null default 0,  -- downloads whose bytes did not match GitHub's hash
  retried_at timestamptz,          -- `retry` restarts VIDEOPOLL_MAX_GENERATION's clock here
  -- A resumable (TUS) upload left by a crash: where it is, which artifact it holds (git blob
  -- sha or LFS oid), how far it got and the sha256 of the bytes sent so far. The poller sends
  -- the service-role key to upload_url, which is why no app user may write this table.
  upload_url text,
  upload_digest text,
  upload_offset bigint,
  upload_prefix_sha256 text,
  updated_at timestamptz not null default now(),
  constraint videopoll_assets_pkey primary key (asset_id)
);
alter table public.videopoll_assets enable row level security;

create or replace trigger videopoll_touch before update on public.videopoll_assets
  for each row execute function public.videopoll_touch();

-- 4. Upgrade from a version that kept the bookkeeping in lesson_assets --------------------------
-- Moves what such a database saved (claims and leases of transferring rows, mismatch counts,
-- retry times) and drops the columns, in one statement, so it happens entirely or not at all.
-- Saved resumable uploads are not carried over: their URL sat where app users could write it,
-- and the poller sends the service-role key to it; such a video uploads again from the start.
-- On a fresh or already upgraded database it finds none of the columns and does nothing.
do $$
declare
  moved int;
  discarded int;
  dependents text;
  verbosity text := current_setting('client_min_messages');
begin
  if not exists (select 1 from pg_attribute
                  where attrelid = 'public.lesson_assets'::regclass and attnum > 0
                    and not attisdropped
                    and attname in ('claimed_by', 'claimed_until', 'mismatches', 'retried_at',
                                    'upload_url', 'upload_digest', 'upload_offset',
                                    'upload_prefix_sha256')) then
    return;
  end if;
  -- No poller of the old version may write a claim between the copy and the drop.
  lock table public.lesson_assets in access exclusive mode;
  -- An even older version had only some of them: add the rest (empty) so one copy fits all;
  -- "already exists" is the expected answer for most, not worth a notice each.
  perform set_config('client_min_messages', 'warning', true);
  alter table public.lesson_assets
    add column if not exists claimed_by text,
    add column if not exists claimed_until timestamptz,
    add column if not exists mismatches int,
    add column if not exists retried_at timestamptz,
    add column if not exists upload_url text,
    add column if not exists upload_digest text,
    add column if not exists upload_offset bigint,
    add column if not exists upload_prefix_sha256 text;
  perform set_config('client_min_messages', verbosity, true);
  insert into public.videopoll_assets (asset_id, claimed_by, claimed_until, mismatches,
                                       retried_at)
  select a.id, a.claimed_by, a.claimed_until, coalesce(a.mismatches, 0), a.retried_at
    from public.lesson_assets a
   where a.claimed_by is not null or a.claimed_until is not null
      or coalesce(a.mismatches, 0) <> 0 or a.retried_at is not null
  on conflict on constraint videopoll_assets_pkey do nothing;
  get diagnostics moved = row_count;
  select count(*) into discarded from public.lesson_assets a where a.upload_url is not null;
  begin
    alter table public.lesson_assets
      drop column claimed_by, drop column claimed_until, drop column mismatches,
      drop column retried_at, drop column upload_url, drop column upload_digest,
      drop column upload_offset, drop column upload_prefix_sha256;
  exception when dependent_objects_still_exist then
    -- Never CASCADE: that would drop the app's own objects (say, a view over lesson_assets).
    get stacked diagnostics dependents = pg_exception_detail;
    raise exception 'videopoll: cannot drop the bookkeeping columns of lesson_assets: %',
      sqlerrm using detail = dependents,
                    hint = 'recreate the objects that use them without those columns, then '
                           'run the migration again';
  end;
  raise notice 'videopoll: moved the bookkeeping of % row(s) from lesson_assets to '
               'videopoll_assets and dropped its 8 columns; % saved resumable upload(s) not '
               'carried over (their URL was writable by app users)', moved, discarded;
end $$;

-- 5. Key-value state (the GitHub ETag and listing), private to the service role ----------------
create table if not exists public.videopoll_state (
  key text primary key,
  value jsonb not null,
  updated_at timestamptz not null default now()
);
alter table public.videopoll_state enable row level security;

create or replace trigger videopoll_touch before update on public.videopoll_state
  for each row execute function public.videopoll_touch();

-- 6. Transitions ---------------------------------------------------------------------------------
-- The state machine: which event may move a row from which status, under which guard, to which
-- status. Rendered by `videopoll schema` from videopoll.model.TRANSITIONS, the one place it is
-- written; every store applies the same table.
create or replace function public.videopoll_transitions()
returns table (event text, source text, guard text, target text)
language sql immutable security invoker set search_path = public, pg_temp as $$
  values {{TRANSITIONS}}
$$;

-- Every change of a row's state is one element of `changes`
-- ([{"id", "event", "owner", "lease_s", "value"}, ...]), applied when videopoll_transitions()
-- allows it, all of them in this one call (one transaction). Returns whether each was applied,
-- in the order given. Guards: holder = the caller holds the claim; live = and its lease has not
-- run out; expired = no live lease (a killed poller's claim ran out: anyone may move the row
-- on); same = the row already is what the event would make it (a repeated call).
--
-- Each row's lesson_assets row is locked first (FOR NO KEY UPDATE, the lock an UPDATE of it
-- takes) and only then is its bookkeeping read, in a later statement: every writer of an
-- asset's bookkeeping holds that lock, so under READ COMMITTED that read sees the last holder's
-- committed writes and nothing can change before this transaction ends. (One statement
-- joining both tables would not do: on a lock conflict PostgreSQL re-checks the locked row only
-- and keeps the joined bookkeeping row it read before waiting.) Rows are locked in id order,
-- whatever order the changes come in, so two batches over the same rows cannot deadlock.
--
-- `state` ({key: value}, optional) is upserted into videopoll_state in the same call: what a
-- pass leaves for the next one (the GitHub ETag and listing) rides on a write the pass makes
-- anyway instead of costing a request of its own.
drop function if exists public.videopoll_apply(jsonb);  -- the earlier one-argument form
create or replace function public.videopoll_apply(changes jsonb, state jsonb default null)
returns jsonb language plpgsql volatile security invoker set search_path = public, pg_temp as $$
#variable_conflict use_column
declare
  c record;
  a public.lesson_assets;
  holder text;
  held_until timestamptz;
  step record;
  stamp timestamptz := videopoll_now();
  applied boolean[] := array_fill(false, array[jsonb_array_length(changes)]);
begin
  for c in select (x.item ->> 'id')::uuid as id, x.item ->> 'event' as event,
                  x.item ->> 'owner' as owner,
                  (x.item ->> 'lease_s')::double precision as lease_s,
                  x.item ->> 'value' as value, x.n
             from jsonb_array_elements(videopoll_apply.changes) with ordinality as x(item, n)
            order by 1, x.n
  loop
    select t.* into a from public.lesson_assets t
     where t.id = c.id and t.kind = 'video' for no key update;
    continue when not found;
    holder := null;
    held_until := null;
    select v.claimed_by, v.claimed_until into holder, held_until
      from public.videopoll_assets v where v.asset_id = c.id;
    select t.* into step from videopoll_transitions() t
     where t.event = c.event and t.source = a.status
       and case t.guard
             when 'none' then true
             when 'holder' then coalesce(holder = c.owner, false)
             when 'live' then coalesce(holder = c.owner and held_until > stamp, false)
             when 'expired' then held_until is null or held_until <= stamp
             when 'same' then c.value is null or c.value is not distinct from (
               case c.event when 'start' then a.start_task_id
                            when 'resolve' then a.conversation_id
                            when 'ready' then a.storage_path
                            when 'fail' then a.error end)
           end;
    continue when not found;
    applied[c.n] := true;
    continue when step.guard = 'same';
    if c.event <> 'renew' then  -- a renewal is bookkeeping only: the app's row stays as it is
      update public.lesson_assets t
         set status = step.target,
             start_task_id = case when c.event = 'start' then c.value else t.start_task_id end,
             conversation_id = case when c.event = 'resolve' and c.value is not null
                                    then c.value else t.conversation_id end,
             finished_at = case c.event when 'finish' then stamp when 'reopen' then null
                                        else t.finished_at end,
             storage_path = case when c.event = 'ready' then c.value else t.storage_path end,
             error = case c.event when 'ready' then null when 'fail' then c.value
                                  else t.error end
       where t.id = c.id;
    end if;
    if c.event = 'claim' then
      insert into public.videopoll_assets as v (asset_id, claimed_by, claimed_until)
      values (c.id, c.owner, stamp + make_interval(secs => c.lease_s))
      on conflict on constraint videopoll_assets_pkey
      do update set claimed_by = excluded.claimed_by, claimed_until = excluded.claimed_until;
    elsif c.event = 'renew' then
      update public.videopoll_assets v
         set claimed_until = stamp + make_interval(secs => c.lease_s) where v.asset_id = c.id;
    elsif c.event in ('release', 'fail', 'reopen') then
      update public.videopoll_assets v set claimed_by = null, claimed_until = null
       where v.asset_id = c.id;
    elsif c.event = 'ready' then  -- the upload it may have resumed is done: forget it too
      update public.videopoll_assets v
         set claimed_by = null, claimed_until = null, upload_url = null, upload_digest = null,
             upload_offset = null, upload_prefix_sha256 = null
       where v.asset_id = c.id;
    end if;
  end loop;
  if videopoll_apply.state is not null and jsonb_typeof(videopoll_apply.state) = 'object' then
    insert into public.videopoll_state as s (key, value)
    select e.key, e.value from jsonb_each(videopoll_apply.state) e
    on conflict (key) do update set value = excluded.value;
  end if;
  return to_jsonb(applied);
end $$;

-- A pass's pending rows, oldest first, one page (created_at, then id: a key, so paging after
-- the last row of a page skips and repeats nothing), each with its bookkeeping under
-- "videopoll_assets" (the shape of the REST embed); with `with_state`, videopoll_state as
-- {key: value} too, so a pass reads its rows and what the last pass left in one request. One
-- JSON value rather than a set: PostgREST's max_rows does not cut it, `more` says whether
-- another page follows.
create or replace function public.videopoll_pending(
  page_size integer default 1000, after_created timestamptz default null,
  after_id uuid default null, with_state boolean default false)
returns jsonb language sql stable security invoker set search_path = public, pg_temp as $$
  with page as (
    select a.id, a.lesson_id, a.user_id, a.status, a.conversation_id, a.start_task_id,
           a.storage_path, a.error, a.attempts, a.metadata ->> 'github_path' as github_path,
           a.finished_at, a.created_at, a.updated_at,
           (select jsonb_build_object('claimed_by', v.claimed_by,
                                      'claimed_until', v.claimed_until,
                                      'mismatches', v.mismatches, 'retried_at', v.retried_at)
              from public.videopoll_assets v where v.asset_id = a.id) as videopoll_assets
      from public.lesson_assets a
     where a.kind = 'video' and a.storage_path is null
       and a.status in ('starting', 'generating', 'finished', 'transferring')
       and (a.conversation_id is not null or a.start_task_id is not null)
       and (videopoll_pending.after_created is null
            or (a.created_at, a.id) > (videopoll_pending.after_created,
                                       videopoll_pending.after_id))
     order by a.created_at, a.id
     limit greatest(videopoll_pending.page_size, 0) + 1)
  select jsonb_build_object(
    'rows', coalesce((select jsonb_agg(to_jsonb(p) order by p.created_at, p.id)
                        from (select * from page order by created_at, id
                               limit greatest(videopoll_pending.page_size, 0)) p), '[]'),
    'more', (select count(*) from page) > greatest(videopoll_pending.page_size, 0),
    'state', case when videopoll_pending.with_state
                  then (select coalesce(jsonb_object_agg(s.key, s.value), '{}')
                          from public.videopoll_state s) end);
$$;

-- One function per transition, as earlier versions had, all replaced by videopoll_apply.
drop function if exists public.videopoll_claim(uuid, text, double precision),
  public.videopoll_renew(uuid, text, double precision), public.videopoll_release(uuid, text),
  public.videopoll_mark_ready(uuid, text, text), public.videopoll_mark_failed(uuid, text, text),
  public.videopoll_mark_finished(uuid), public.videopoll_mark_generating(uuid),
  public.videopoll_resolve_start(uuid, text);

create or replace function public.videopoll_record_error(asset_id uuid, error text, mismatch boolean default false)
returns int language plpgsql volatile security invoker set search_path = public, pg_temp as $$
#variable_conflict use_column
-- A transient problem: counted, the status untouched. Returns the new mismatch count
-- (0 when the row is not pending any more).
declare
  row_status text;
  counted int;
begin
  select a.status into row_status from public.lesson_assets a
   where a.id = videopoll_record_error.asset_id for no key update;
  if not coalesce(row_status in ('starting', 'generating', 'finished', 'transferring'), false) then
    return 0;
  end if;
  update public.lesson_assets a
     set error = videopoll_record_error.error, attempts = a.attempts + 1
   where a.id = videopoll_record_error.asset_id;
  if videopoll_record_error.mismatch then
    insert into public.videopoll_assets as v (asset_id, mismatches)
    values (videopoll_record_error.asset_id, 1)
    on conflict on constraint videopoll_assets_pkey
    do update set mismatches = v.mismatches + 1
    returning v.mismatches into counted;
  else
    select v.mismatches into counted from public.videopoll_assets v
     where v.asset_id = videopoll_record_error.asset_id;
  end if;
  return coalesce(counted, 0);
end $$;

-- An earlier version returned `setof lesson_assets`, which held the bookkeeping, and one
-- before `restart` took two arguments; a function's result type cannot be replaced in place,
-- and another argument list would be a second function (PostgREST could not choose between
-- them), so the old one is dropped (once) and created anew.
do $$
begin
  if to_regprocedure('public.videopoll_retry(uuid[], boolean)') is not null then
    drop function public.videopoll_retry(uuid[], boolean);
  end if;
end $$;

create or replace function public.videopoll_retry(ids uuid[] default null, dry_run boolean default false,
                                                  restart jsonb default null)
returns setof jsonb
language plpgsql volatile security invoker set search_path = public, pg_temp as $$
#variable_conflict use_column
-- failed -> generating (starting when only a start task exists); the old error (and its
-- conversation) goes to metadata.error_history and retried_at restarts
-- VIDEOPOLL_MAX_GENERATION's clock. A row named in `restart` (asset id -> new conversation id)
-- starts over instead: starting, under that conversation id, with no start task. Each row
-- comes back as the lesson_assets row with its bookkeeping under "videopoll_assets" (the shape
-- of the REST embed); a dry run returns the rows as they would be, writing nothing.
declare
  a public.lesson_assets;
  next_status text;
  next_metadata jsonb;
  next_conversation text;
  lessons uuid[] := '{}';
begin
  -- The lock re-checks `status = 'failed'` against a racing writer's row, so two retries
  -- never move (or archive the error of) one row twice.
  -- A lesson that has another open video keeps its failed one (one open video per lesson).
  for a in select * from public.lesson_assets t
            where t.status = 'failed' and t.kind = 'video'
              and (videopoll_retry.ids is null or t.id = any (videopoll_retry.ids))
              and not exists (select 1 from public.lesson_assets o
                               where o.lesson_id = t.lesson_id and o.kind = 'video'
                                 and o.status in ('starting', 'generating', 'finished',
                                                  'transferring'))
            order by t.created_at desc, t.id desc
              for no key update
  loop
    -- The newest failed video of a lesson comes back; an older one of the same lesson stays.
    continue when a.lesson_id = any (lessons);
    lessons := lessons || a.lesson_id;
    next_conversation := videopoll_retry.restart ->> a.id::text;
    next_status := case when next_conversation is not null then 'starting'
                        when a.conversation_id is null and a.start_task_id is not null
                        then 'starting' else 'generating' end;
    next_metadata := jsonb_set(coalesce(a.metadata, '{}'::jsonb), '{error_history}',
                               coalesce(a.metadata -> 'error_history', '[]'::jsonb)
                                 || jsonb_build_array(jsonb_build_object(
                                      'at', videopoll_now(), 'error', a.error,
                                      'conversation_id', a.conversation_id)));
    if videopoll_retry.dry_run then
      a.status := next_status;
      a.metadata := next_metadata;
      a.error := null;
      a.finished_at := null;
      if next_conversation is not null then
        a.conversation_id := next_conversation;
        a.start_task_id := null;
      end if;
    else
      update public.lesson_assets t
         set status = next_status, metadata = next_metadata, error = null, finished_at = null,
             conversation_id = coalesce(next_conversation, t.conversation_id),
             start_task_id = case when next_conversation is null then t.start_task_id end
       where t.id = a.id
      returning * into a;
      insert into public.videopoll_assets as v (asset_id, retried_at)
      values (a.id, videopoll_now())
      on conflict on constraint videopoll_assets_pkey
      do update set retried_at = excluded.retried_at, mismatches = 0, claimed_by = null,
                    claimed_until = null;
    end if;
    return next to_jsonb(a) || jsonb_build_object('videopoll_assets', jsonb_build_object(
      'claimed_by', null, 'claimed_until', null, 'mismatches', 0, 'retried_at',
      videopoll_now()));
  end loop;
end $$;

create or replace function public.videopoll_save_upload(
  asset_id uuid, owner text, url text, digest text, upload_offset bigint, prefix_sha256 text)
returns boolean language plpgsql volatile security invoker set search_path = public, pg_temp as $$
#variable_conflict use_column
-- Where a resumable upload stands; only the live lease holder may say so.
declare
  row_status text;
begin
  select a.status into row_status from public.lesson_assets a
   where a.id = videopoll_save_upload.asset_id for no key update;
  if row_status is distinct from 'transferring' then
    return false;
  end if;
  update public.videopoll_assets v
     set upload_url = videopoll_save_upload.url, upload_digest = videopoll_save_upload.digest,
         upload_offset = videopoll_save_upload.upload_offset,
         upload_prefix_sha256 = videopoll_save_upload.prefix_sha256
   where v.asset_id = videopoll_save_upload.asset_id and v.claimed_by = videopoll_save_upload.owner
     and v.claimed_until > videopoll_now();
  return found;
end $$;

-- What `videopoll doctor` compares with what it expects: the columns of both tables, the
-- videopoll functions, the realtime publication, the replica identity, RLS, and that the
-- bookkeeping stays private (RLS on, no policy, no grant to anon or authenticated).
create or replace function public.videopoll_schema_check()
returns jsonb language sql stable security invoker set search_path = public, pg_temp as $$
  select jsonb_build_object(
    'columns', (select coalesce(jsonb_agg(column_name::text order by column_name), '[]')
                  from information_schema.columns
                 where table_schema = 'public' and table_name = 'lesson_assets'),
    'bookkeeping_columns', (select coalesce(jsonb_agg(column_name::text order by column_name),
                                            '[]')
                              from information_schema.columns
                             where table_schema = 'public' and table_name = 'videopoll_assets'),
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
    'state_table', to_regclass('public.videopoll_state') is not null,
    'one_open_video', to_regclass('public.lesson_assets_one_open_video') is not null,
    'bookkeeping_private', coalesce((
      select c.relrowsecurity
             and not exists (select 1 from pg_policy p where p.polrelid = c.oid)
             and not exists (
               select 1 from aclexplode(coalesce(c.relacl, acldefault('r', c.relowner))) g
                where g.grantee = 0  -- PUBLIC
                   or g.grantee in (select r.oid from pg_roles r
                                     where r.rolname in ('anon', 'authenticated')))
        from pg_class c where c.oid = to_regclass('public.videopoll_assets')), false));
$$;

-- 7. Who may call and read them: the service role only -----------------------------------------
-- Supabase's default privileges grant EXECUTE on new functions in `public` to anon and
-- authenticated as well as PUBLIC, so each is revoked by name; likewise its default grants on
-- new tables.
do $$
declare
  fn regprocedure;
begin
  for fn in select p.oid::regprocedure from pg_proc p
             join pg_namespace n on n.oid = p.pronamespace
            where n.nspname = 'public' and p.proname like 'videopoll\_%'
              and p.proname <> 'videopoll_now'
  loop
    execute format('revoke all on function %s from public, anon, authenticated', fn);
    execute format('grant execute on function %s to service_role', fn);
  end loop;
end $$;
-- The clock is everyone's: the updated_at trigger reads it on the app's own writes too.
grant execute on function public.videopoll_now() to anon, authenticated, service_role;

revoke all on table public.videopoll_assets, public.videopoll_state
  from public, anon, authenticated;
grant all on table public.videopoll_assets, public.videopoll_state to service_role;

-- 8. Row-level security stays on; realtime sees the app's rows with their old values ----------
-- Only lesson_assets is published, and it no longer carries any bookkeeping. (On a publication
-- FOR ALL TABLES videopoll_assets is published too, but Realtime sends a subscriber only rows
-- its role may select, and anon and authenticated may select nothing there.)
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
