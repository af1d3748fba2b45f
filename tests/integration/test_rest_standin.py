"""The PostgREST stand-in on the wire: the behaviours DESIGN 8.3 relies on, over real SQL."""

from __future__ import annotations

import json
from typing import Any

import pytest

from videopoll.sandbox.supabase import SupabaseStandIn

from .conftest import Seed

pytestmark = pytest.mark.postgres


def test_gateway_wants_an_apikey(supa: SupabaseStandIn, wire: Any) -> None:
    """Supabase's gateway answers 401 before any service when the apikey is missing or wrong."""
    missing = wire(key="").get("/rest/v1/lessons")
    assert missing.status_code == 401
    assert missing.json()["message"] == "No API key found in request"
    forged = supa.make_key("service_role", secret="not-the-project-secret")
    wrong = wire(key=forged).get("/rest/v1/lessons")
    assert (wrong.status_code, wrong.json()["message"]) == (401, "Invalid API key")


def test_bad_and_expired_jwts(supa: SupabaseStandIn, wire: Any) -> None:
    forged = supa.make_key("service_role", secret="x" * 32)
    bad = wire(key=supa.anon_key, Authorization=f"Bearer {forged}").get("/rest/v1/lessons")
    assert (bad.status_code, bad.json()["code"]) == (401, "PGRST301")
    assert "invalid_token" in bad.headers["WWW-Authenticate"]
    old = supa.make_key("service_role", expires_in=-10)
    expired = wire(key=old).get("/rest/v1/lessons")
    assert (expired.status_code, expired.json()) == (401, {
        "code": "PGRST303", "details": None, "hint": None, "message": "JWT expired"})


def test_anon_can_neither_read_nor_claim(seed: Seed, supa: SupabaseStandIn, wire: Any) -> None:
    """RLS hides every row from anon (200 []); the claim function is not anon's (401)."""
    aid = seed.asset(status="finished")
    anon = wire(key=supa.anon_key)
    read = anon.get("/rest/v1/lesson_assets", params={"select": "id"})
    assert (read.status_code, read.json()) == (200, [])
    claim = anon.post("/rest/v1/rpc/videopoll_apply", json={"changes": [
        {"id": aid, "event": "claim", "owner": "thief", "lease_s": 60}]})
    assert claim.status_code == 401
    assert claim.json()["code"] == "42501"
    assert "permission denied for function videopoll_apply" in claim.json()["message"]
    assert seed.row(aid)["status"] == "finished"
    state = anon.get("/rest/v1/videopoll_state")
    assert (state.status_code, state.json()["code"]) == (401, "42501")
    service = wire().get("/rest/v1/lesson_assets", params={"select": "id"})
    assert service.json() == [{"id": aid}]


def test_authenticated_user_sees_own_rows_only(seed: Seed, supa: SupabaseStandIn,
                                               wire: Any) -> None:
    mine, theirs = "11111111-1111-1111-1111-111111111111", "22222222-2222-2222-2222-222222222222"
    seed.sql("insert into lessons (title, user_id) values ('a', %s), ('b', %s)", [mine, theirs])
    token = supa.make_key("authenticated", sub=mine)
    got = wire(key=supa.anon_key, Authorization=f"Bearer {token}").get(
        "/rest/v1/lessons", params={"select": "title"})
    assert got.json() == [{"title": "a"}]


def test_select_arrows_aliases_filters_order_and_count(seed: Seed, wire: Any) -> None:
    ids = [seed.asset(github_path=f"videos/{n}.mp4") for n in range(3)]
    seed.sql("update lesson_assets set conversation_id = null where id = %s", [ids[2]])
    got = wire(Prefer="count=exact").get("/rest/v1/lesson_assets", params=[
        ("select", "id,metadata->>github_path,state:status"), ("kind", "eq.video"),
        ("storage_path", "is.null"), ("status", "in.(generating,finished)"),
        ("or", "(conversation_id.not.is.null,start_task_id.not.is.null)"),
        ("order", "created_at.desc.nullslast"), ("limit", "1"), ("offset", "1")])
    assert got.status_code == 200
    assert got.json() == [{"id": ids[0], "github_path": "videos/0.mp4", "state": "generating"}]
    assert got.headers["Content-Range"] == "1-1/2"
    like = wire().get("/rest/v1/lesson_assets", params=[
        ("select", "id"), ("metadata->>github_path", "like.*2.mp4")])
    assert like.json() == [{"id": ids[2]}]
    negated = wire().get("/rest/v1/lesson_assets", params=[
        ("select", "id"), ("id", f"not.in.({ids[0]},{ids[1]})")])
    assert negated.json() == [{"id": ids[2]}]


def test_patch_is_one_guarded_update(seed: Seed, wire: Any) -> None:
    """A filter on the old state is a compare-and-set: 0 matched rows is not an error."""
    aid = seed.asset()
    client = wire(Prefer="return=representation")
    first = client.patch("/rest/v1/lesson_assets", params={"id": f"eq.{aid}",
                                                           "status": "eq.generating"},
                         json={"status": "finished"})
    assert (first.status_code, first.json()[0]["status"]) == (200, "finished")
    again = client.patch("/rest/v1/lesson_assets", params={"id": f"eq.{aid}",
                                                           "status": "eq.generating"},
                         json={"status": "finished"})
    assert (again.status_code, again.json()) == (200, [])
    minimal = wire().patch("/rest/v1/lesson_assets", params={"id": f"eq.{aid}"},
                           json={"error": "x"})
    assert minimal.status_code == 204


def test_unfiltered_patch_and_delete_are_refused(seed: Seed, wire: Any) -> None:
    seed.asset()
    patch = wire().patch("/rest/v1/lesson_assets", json={"error": "x"})
    assert (patch.status_code, patch.json()["code"]) == (400, "21000")
    delete = wire().delete("/rest/v1/lesson_assets")
    assert (delete.status_code, delete.json()["code"]) == (400, "21000")


def test_singular_response_rolls_back(seed: Seed, wire: Any) -> None:
    """Accept: vnd.pgrst.object+json with two matched rows: 406 PGRST116, nothing written."""
    lesson = seed.lesson()
    a, b = seed.asset(lesson), seed.asset(lesson, kind="image")  # one open video a lesson
    client = wire(Accept="application/vnd.pgrst.object+json",
                  Prefer="return=representation")
    got = client.patch("/rest/v1/lesson_assets", params={"lesson_id": f"eq.{lesson}"},
                       json={"error": "both"})
    assert (got.status_code, got.json()["code"]) == (406, "PGRST116")
    assert got.json()["details"] == "The result contains 2 rows"
    assert seed.row(a)["error"] is None and seed.row(b)["error"] is None
    one = client.get("/rest/v1/lesson_assets", params={"id": f"eq.{a}", "select": "id"})
    assert one.json() == {"id": a}


def test_insert_upsert_and_conflicts(seed: Seed, wire: Any) -> None:
    client = wire(Prefer="return=representation")
    made = client.post("/rest/v1/videopoll_state", json={"key": "k", "value": {"n": 1}})
    assert (made.status_code, made.json()[0]["value"]) == (201, {"n": 1})
    duplicate = client.post("/rest/v1/videopoll_state", json={"key": "k", "value": {"n": 2}})
    assert (duplicate.status_code, duplicate.json()["code"]) == (409, "23505")
    merged = wire(Prefer="return=representation,resolution=merge-duplicates").post(
        "/rest/v1/videopoll_state", json=[{"key": "k", "value": {"n": 3}}])
    assert merged.json()[0]["value"] == {"n": 3}
    orphan = client.post("/rest/v1/lesson_assets", json={
        "lesson_id": "00000000-0000-0000-0000-000000000000", "kind": "video"})
    assert (orphan.status_code, orphan.json()["code"]) == (409, "23503")
    bad_uuid = client.get("/rest/v1/lesson_assets", params={"id": "eq.not-a-uuid"})
    assert (bad_uuid.status_code, bad_uuid.json()["code"]) == (400, "22P02")
    unknown = client.post("/rest/v1/lessons", json={"nope": 1})
    assert (unknown.status_code, unknown.json()["code"]) == (400, "PGRST204")


def test_unknown_table_function_and_bad_query(wire: Any) -> None:
    table = wire().get("/rest/v1/nothing_here")
    assert (table.status_code, table.json()["code"]) == (404, "PGRST205")
    assert table.headers["Proxy-Status"] == "PostgREST; error=PGRST205"
    fn = wire().post("/rest/v1/rpc/videopoll_apply", json={"wrong": 1})
    assert (fn.status_code, fn.json()["code"]) == (404, "PGRST202")
    parse = wire().get("/rest/v1/lessons", params={"id": "approx.3"})
    assert (parse.status_code, parse.json()["code"]) == (400, "PGRST100")
    injected = wire().get("/rest/v1/lessons", params={"select": 'id;drop table lessons'})
    assert injected.status_code == 400


def test_rpc_shapes_and_read_only_functions(seed: Seed, wire: Any) -> None:
    """Scalar → value, void → 204, RAISE → 400 P0001; STABLE (and any GET) runs read-only."""
    seed.sql("create or replace function public.t_void() returns void language sql as 'select'")
    seed.sql("create or replace function public.t_raise() returns int language plpgsql as "
             "$$ begin raise exception 'nope' using hint = 'h'; end $$")
    seed.sql("create or replace function public.t_read_only() returns text language sql stable "
             "as $$ select current_setting('transaction_read_only') $$")
    seed.sql("create or replace function public.t_write() returns int language sql as "
             "$$ insert into videopoll_state (key, value) values ('w', '{}') "
             "on conflict (key) do nothing returning 1 $$")
    void = wire().post("/rest/v1/rpc/t_void", json={})
    assert (void.status_code, void.content) == (204, b"")
    raised = wire().post("/rest/v1/rpc/t_raise", json={})
    assert (raised.status_code, raised.json()) == (400, {
        "code": "P0001", "details": None, "hint": "h", "message": "nope"})
    assert wire().post("/rest/v1/rpc/t_read_only", json={}).json() == "on"
    as_get = wire().get("/rest/v1/rpc/t_write")  # GET always runs read-only
    assert (as_get.status_code, as_get.json()["code"]) == (405, "25006")
    assert wire().post("/rest/v1/rpc/t_write", json={}).json() == 1
    check = wire().post("/rest/v1/rpc/videopoll_schema_check", json={})
    assert check.json()["replica_identity_full"] is True
    failed = seed.asset(status="failed")
    rows = wire().post("/rest/v1/rpc/videopoll_retry", content=json.dumps(
        {"ids": [failed], "dry_run": True}), headers={"Content-Type": "application/json"})
    assert [r["status"] for r in rows.json()] == ["generating"]
    assert seed.row(failed)["status"] == "failed"


def test_embedding_follows_foreign_keys(seed: Seed, wire: Any) -> None:
    """One-to-one (the child's key is its primary key): an object or null; many-to-one: an
    object; one-to-many: an array; no foreign key: 400 PGRST200. Also after a write."""
    lesson = seed.lesson("Fractions")
    kept, bare = seed.asset(lesson, status="transferring"), seed.asset(lesson, kind="image")
    seed.sql("insert into videopoll_assets (asset_id, claimed_by) values (%s, 'p:1')", [kept])
    got = wire().get("/rest/v1/lesson_assets", params=[
        ("select", "id,videopoll_assets(claimed_by,mismatches),owner:lessons(title)"),
        ("order", "created_at")])
    assert got.json() == [
        {"id": kept, "videopoll_assets": {"claimed_by": "p:1", "mismatches": 0},
         "owner": {"title": "Fractions"}},
        {"id": bare, "videopoll_assets": None, "owner": {"title": "Fractions"}}]
    many = wire().get("/rest/v1/lessons", params={"select": "title,lesson_assets(id)"})
    assert sorted(a["id"] for a in many.json()[0]["lesson_assets"]) == sorted([kept, bare])
    patched = wire(Prefer="return=representation").patch(
        "/rest/v1/lesson_assets", params={"id": f"eq.{kept}", "select": "id,videopoll_assets(*)"},
        json={"error": "x"})
    assert patched.json()[0]["videopoll_assets"]["claimed_by"] == "p:1"
    missing = wire().get("/rest/v1/lessons", params={"select": "id,videopoll_state(key)"})
    assert (missing.status_code, missing.json()["code"]) == (400, "PGRST200")
    wrong = wire().get("/rest/v1/lesson_assets", params={"select": "id,videopoll_assets(status)"})
    assert (wrong.status_code, wrong.json()["code"]) == (400, "42703")  # not the outer status
