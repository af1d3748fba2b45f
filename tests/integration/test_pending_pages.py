"""Hosted Supabase answers at most `max_rows` (1,000) rows a request, whatever `limit` says;
the stand-in does the same. `pending()` reads pages of 1,000 through `videopoll_pending` (one
JSON value a request, which says whether another page follows) by key, so no row goes unseen
and no request is spent learning that there is no more."""

from __future__ import annotations

from typing import Any

import pytest

from videopoll.sandbox.supabase import SupabaseStandIn
from videopoll.services.supabase.store import SupabaseStore

from .conftest import Seed

pytestmark = pytest.mark.postgres
ROWS = 2_500


def seed_many(seed: Seed, n: int) -> list[str]:
    """n pending videos, a lesson each, several sharing one created_at (the key's tie)."""
    seed.sql("insert into lessons (id, title) select gen_random_uuid(), 'L' || i "
             "from generate_series(1, %s) i", [n])
    rows = seed.sql(
        "insert into lesson_assets (lesson_id, kind, conversation_id, metadata, created_at) "
        "select l.id, 'video', md5(l.id::text), jsonb_build_object('github_path', "
        "'videos/' || l.id || '/v.mp4'), timestamptz '2026-01-01' + (row_number() over () / 7) "
        "* interval '1 second' from lessons l returning id::text")
    return [r[0] for r in rows]


def test_the_stand_in_caps_answers_like_hosted_supabase(seed: Seed, wire: Any) -> None:
    seed_many(seed, 1_200)
    got = wire().get("/rest/v1/lesson_assets", params={"select": "id", "limit": "5000"})
    assert len(got.json()) == 1_000


async def test_pending_sees_every_row_past_max_rows(seed: Seed, store: SupabaseStore,
                                                    supa: SupabaseStandIn) -> None:
    """2,500 pending rows: all of them, oldest first, each exactly once, in 3 requests."""
    ids = seed_many(seed, ROWS)
    order = [r[0] for r in seed.sql("select id::text from lesson_assets "
                                    "order by created_at, id")]
    supa.reset_counts()
    got = await store.pending()
    assert [a.id for a in got] == order and sorted(order) == sorted(ids)
    assert supa.counts["rest.rpc"] == 3 and supa.counts["rest.table.get"] == 0
    assert [a.id for a in await store.pending(limit=1_200)] == order[:1_200]


async def test_a_full_last_page_costs_no_extra_request(seed: Seed, store: SupabaseStore,
                                                       supa: SupabaseStandIn) -> None:
    seed_many(seed, 2_000)
    supa.reset_counts()
    assert len(await store.pending()) == 2_000
    assert supa.counts["rest.rpc"] == 2
