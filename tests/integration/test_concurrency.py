"""Eight pollers, each with its own client and store, race for the same 100 claimable rows:
the claim is one guarded transition on the server, so each row goes to exactly one of them.

Rows are either `finished` or `transferring` under a crashed poller's expired lease. The
second kind is the one a careless claim would double: the lease lives in videopoll_assets,
and a claimer that waited for the row lock must judge the lease its winner just wrote, not
the expired one it saw before waiting."""

from __future__ import annotations

import asyncio
import random
import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest

from videopoll.model import Service
from videopoll.sandbox.supabase import SupabaseStandIn
from videopoll.services.http import make_client
from videopoll.services.supabase.store import SupabaseStore

from .conftest import BUCKET, Seed

pytestmark = pytest.mark.postgres
CLAIMERS, ROWS = 8, 100


@pytest.mark.parametrize("shape", ["finished", "expired"])
def test_each_row_is_claimed_exactly_once(seed: Seed, supa: SupabaseStandIn, shape: str,
                                          figures: Callable[[str], None]) -> None:
    """100 rows, 8 claimers in random orders at once: every row claimed, none twice."""
    ids = [seed.asset(status="finished") for _ in range(ROWS)]  # a lesson each
    if shape == "expired":
        seed.sql("update lesson_assets set status = 'transferring' where id = any(%s::uuid[])",
                 [ids])
        seed.sql("insert into videopoll_assets (asset_id, claimed_by, claimed_until) "
                 "select unnest(%s::uuid[]), 'crashed:1', now() - interval '1 second'", [ids])
    start = threading.Barrier(CLAIMERS)

    async def claimer(owner: str) -> list[str]:
        async with make_client(Service.STORE, supa.url, calls=Counter()) as http:
            store = await SupabaseStore.connect(http, url=supa.url, key=supa.service_key,
                                                bucket=BUCKET)
            order = random.Random(owner).sample(ids, len(ids))
            start.wait()  # everyone hammers at once
            won = [aid for aid in order if await store.claim(aid, owner, 300)]
            await store.close()
            return won

    owners = [f"poller-{n}" for n in range(CLAIMERS)]
    with ThreadPoolExecutor(CLAIMERS) as pool:
        results = dict(zip(owners, pool.map(lambda o: asyncio.run(claimer(o)), owners),
                           strict=True))
    claims = Counter(aid for won in results.values() for aid in won)
    figures(f"claims per claimer ({ROWS} {shape} rows, {CLAIMERS} claimers, "
            f"{CLAIMERS * ROWS} attempts): "
            + ", ".join(f"{o}={len(w)}" for o, w in results.items())
            + f"; total={sum(claims.values())}, rows claimed twice="
            + str(sum(1 for n in claims.values() if n > 1)))
    assert sorted(claims) == sorted(ids)
    assert set(claims.values()) == {1}
    holders = dict(seed.sql("select a.id::text, v.claimed_by from lesson_assets a "
                            "join videopoll_assets v on v.asset_id = a.id "
                            "where a.status = 'transferring'"))
    assert holders == {aid: owner for owner, won in results.items() for aid in won}
