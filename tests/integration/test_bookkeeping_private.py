"""An app user cannot reach videopoll's bookkeeping (issue 11): over real HTTP through the
Supabase stand-in, as an `authenticated` user whose app lets them read and update their own
`lesson_assets` rows, the claims, leases and resumable-upload state can be neither read nor
changed, and no videopoll function can be called. PostgreSQL answers as it would behind the
real PostgREST: no privilege on the table or function is SQLSTATE 42501, HTTP 403 for a
signed-in user."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from videopoll.sandbox.supabase import SupabaseStandIn
from videopoll.services.supabase.checks import EXPECTED_BOOKKEEPING, EXPECTED_FUNCTIONS

from .conftest import Seed

pytestmark = pytest.mark.postgres
HOLDER = "poller-a:1"
EVIL = "https://collector.example/upload/resumable/steal"
# The columns lesson_assets has after the migration: the app's (DESIGN 7) plus what it reads.
APP_VISIBLE = {"id", "lesson_id", "user_id", "kind", "storage_path", "mime_type",
               "conversation_id", "metadata", "created_at", "status", "error", "attempts",
               "finished_at", "updated_at", "start_task_id"}
# Plausible named arguments for each function, so that PostgREST finds the function and the
# refusal comes from the database's permission check, not from a lookup miss.
CALLS: dict[str, dict[str, Any]] = {
    "videopoll_apply": {"changes": [
        {"id": "{aid}", "event": event, "owner": "me", "lease_s": 60, "value": "x.mp4"}
        for event in ("claim", "renew", "release", "ready", "fail", "finish", "reopen",
                      "resolve", "start")], "state": {"github": {"etag": "forged"}}},
    # a read, but of every pending row's bookkeeping and of videopoll_state
    "videopoll_pending": {"page_size": 1000, "with_state": True},
    "videopoll_transitions": {},
    "videopoll_record_error": {"asset_id": "{aid}", "error": "x", "mismatch": True},
    "videopoll_retry": {"ids": ["{aid}"], "dry_run": False},
    "videopoll_save_upload": {"asset_id": "{aid}", "owner": HOLDER, "url": EVIL,
                              "digest": "d", "upload_offset": 0, "prefix_sha256": "p"},
    "videopoll_schema_check": {},
}


@pytest.fixture
def app_policies(seed: Seed) -> Iterator[None]:
    """What many apps have: users may read and update their own asset rows."""
    seed.sql("create policy \"read own assets\" on lesson_assets for select to authenticated "
             "using (user_id = auth.uid())")
    seed.sql("create policy \"update own assets\" on lesson_assets for update to authenticated "
             "using (user_id = auth.uid()) with check (user_id = auth.uid())")
    yield
    seed.sql("drop policy \"read own assets\" on lesson_assets")
    seed.sql("drop policy \"update own assets\" on lesson_assets")


@pytest.fixture
def held(seed: Seed, wire: Any) -> tuple[str, str]:
    """(user id, asset id): the user's video, claimed by a poller mid-way through a resumable
    upload (set up through the service role's RPCs, as a poller would)."""
    user = str(uuid.uuid4())
    lesson = seed.lesson(user_id=user)
    aid = str(seed.sql("insert into lesson_assets (lesson_id, user_id, kind, conversation_id, "
                       "status) values (%s, %s, 'video', %s, 'finished') returning id",
                       [lesson, user, uuid.uuid4().hex])[0][0])
    service = wire()
    claim = [{"id": aid, "event": "claim", "owner": HOLDER, "lease_s": 300}]
    assert service.post("/rest/v1/rpc/videopoll_apply", json={"changes": claim}).json() == [True]
    assert service.post("/rest/v1/rpc/videopoll_save_upload", json={
        "asset_id": aid, "owner": HOLDER, "digest": "sha-1",
        "url": "https://project.supabase.co/storage/v1/upload/resumable/ok",
        "upload_offset": 6291456, "prefix_sha256": "ab" * 32}).json() is True
    return user, aid


def as_user(supa: SupabaseStandIn, wire: Any, user: str) -> httpx.Client:
    """A signed-in app user, as supabase-js sends one: the anon key plus the user's JWT."""
    token = supa.make_key("authenticated", sub=user)
    client: httpx.Client = wire(key=supa.anon_key, Authorization=f"Bearer {token}")
    return client


def refused(response: httpx.Response, table_or_function: str) -> bool:
    body = response.json()
    return (response.status_code, body["code"]) == (403, "42501") and \
        body["message"].startswith("permission denied for ") and \
        body["message"].endswith(table_or_function)


@pytest.mark.usefixtures("app_policies")
def test_own_row_is_readable_and_writable_but_holds_no_bookkeeping(
        seed: Seed, supa: SupabaseStandIn, wire: Any, held: tuple[str, str]) -> None:
    """The user reads and updates their row; it shows status and the outcome, never a claim,
    a lease or an upload URL, and those names are not columns they could write."""
    user, aid = held
    me = as_user(supa, wire, user)
    [row] = me.get("/rest/v1/lesson_assets", params={"select": "*"}).json()
    assert set(row) == APP_VISIBLE
    assert (row["id"], row["status"]) == (aid, "transferring")
    assert "resumable" not in str(row) and HOLDER not in str(row)
    changed = me.patch("/rest/v1/lesson_assets", params={"id": f"eq.{aid}"},
                       json={"mime_type": "video/webm"},
                       headers={"Prefer": "return=representation"})
    assert (changed.status_code, changed.json()[0]["mime_type"]) == (200, "video/webm")
    for column in ("upload_url", "claimed_by", "claimed_until"):
        sneak = me.patch("/rest/v1/lesson_assets", params={"id": f"eq.{aid}"},
                         json={column: EVIL})
        assert (sneak.status_code, sneak.json()["code"]) == (400, "PGRST204"), column
    embedded = me.get("/rest/v1/lesson_assets",
                      params={"select": "id,videopoll_assets(upload_url)"})
    assert refused(embedded, "table videopoll_assets")


@pytest.mark.usefixtures("app_policies")
def test_the_bookkeeping_table_refuses_every_verb(seed: Seed, supa: SupabaseStandIn,
                                                 wire: Any, held: tuple[str, str]) -> None:
    """select, insert, update and delete on videopoll_assets: 403 42501 each (no grant, so
    PostgreSQL refuses before row-level security is even asked); nothing changes."""
    user, aid = held
    before = seed.book(aid)
    assert before is not None and before["claimed_by"] == HOLDER
    me = as_user(supa, wire, user)
    where = {"asset_id": f"eq.{aid}"}
    answers = {
        "select": me.get("/rest/v1/videopoll_assets", params={"select": "*"}),
        "insert": me.post("/rest/v1/videopoll_assets",
                          json={"asset_id": str(uuid.uuid4()), "upload_url": EVIL}),
        "upsert": me.post("/rest/v1/videopoll_assets", json={"asset_id": aid, "upload_url": EVIL},
                          headers={"Prefer": "resolution=merge-duplicates"}),
        "update": me.patch("/rest/v1/videopoll_assets", params=where,
                           json={"upload_url": EVIL, "claimed_by": "me"}),
        "delete": me.delete("/rest/v1/videopoll_assets", params=where),
    }
    for verb, answer in answers.items():
        assert refused(answer, "table videopoll_assets"), (verb, answer.text)
    assert seed.book(aid) == before
    anon = wire(key=supa.anon_key).get("/rest/v1/videopoll_assets")
    assert (anon.status_code, anon.json()["code"]) == (401, "42501")


@pytest.mark.usefixtures("app_policies")
@pytest.mark.parametrize("function", sorted(EXPECTED_FUNCTIONS - {"videopoll_now"}))
def test_every_videopoll_function_is_refused(seed: Seed, supa: SupabaseStandIn, wire: Any,
                                             held: tuple[str, str], function: str) -> None:
    """The user calls each videopoll function on their own row: 403, nothing changes."""
    user, aid = held
    row, book = seed.row(aid), seed.book(aid)
    args = json.loads(json.dumps(CALLS[function]).replace("{aid}", aid))
    answer = as_user(supa, wire, user).post(f"/rest/v1/rpc/{function}", json=args)
    assert refused(answer, f"function {function}"), answer.text
    assert (seed.row(aid), seed.book(aid)) == (row, book)


def test_every_function_has_a_refusal_case() -> None:
    """The table above covers each function doctor expects (a new one must be added), but
    the clock, which the updated_at trigger reads on the app's own writes."""
    assert set(CALLS) == set(EXPECTED_FUNCTIONS) - {"videopoll_now"}


@pytest.mark.usefixtures("app_policies")
def test_the_clock_is_the_only_function_an_app_user_may_call(seed: Seed, supa: SupabaseStandIn,
                                                            wire: Any,
                                                            held: tuple[str, str]) -> None:
    """videopoll_now() tells the time and nothing else; the app's own updates need it."""
    user, _ = held
    answer = as_user(supa, wire, user).post("/rest/v1/rpc/videopoll_now", json={})
    assert answer.status_code == 200 and answer.json().startswith("20")


def test_catalogue_grants_nothing_of_the_bookkeeping_to_app_roles(seed: Seed) -> None:
    """No privilege for anon/authenticated on videopoll_assets, RLS on, no policy; and no
    bookkeeping column on lesson_assets for an app policy to expose."""
    privileges = ("select", "insert", "update", "delete", "truncate", "references", "trigger")
    granted = seed.sql(
        "select r, p from unnest(array['anon', 'authenticated', 'public']) r, "
        "unnest(%s::text[]) p where has_table_privilege(r, 'public.videopoll_assets', p)",
        [list(privileges)])
    assert granted == []
    assert seed.sql("select relrowsecurity from pg_class "
                    "where oid = 'public.videopoll_assets'::regclass") == [(True,)]
    assert seed.sql("select count(*) from pg_policies where tablename = 'videopoll_assets'"
                    ) == [(0,)]
    columns = {c for (c,) in seed.sql("select column_name from information_schema.columns "
                                      "where table_name = 'lesson_assets'")}
    assert columns == APP_VISIBLE
    assert not columns & (EXPECTED_BOOKKEEPING - {"updated_at"})
