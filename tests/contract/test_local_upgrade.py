"""LocalStore opening a `videopoll.db` made by the previous version (issue 11): the
bookkeeping it kept on lesson_assets moves to videopoll_assets and those columns go, in one
transaction, once, even when two processes open the file at the same moment.

`fixtures/videopoll_db_previous.sql` is the previous version's schema (`localdb.SCHEMA` as of
commit 133f6f6), rendered.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import sqlite3
import time
from contextlib import closing
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from videopoll.model import Status, VideoAsset
from videopoll.services.local.schema import MOVED_COLUMNS, ts
from videopoll.services.local.store import LocalStore
from videopoll.testing import FakeClock

PREVIOUS = (Path(__file__).parent / "fixtures" / "videopoll_db_previous.sql").read_text()

def lesson_of(asset_id: str) -> str:
    """Each video its own lesson: a lesson has one open video at a time."""
    return asset_id[:9] + "1111-1111-1111-111111111111"

HELD, RETRIED, MISMATCHED, PLAIN = (f"{n}" * 8 + "-2222-2222-2222-222222222222"
                                    for n in "abcd")
OLD = "old-poller:1"


def old_file(home: Path, clock: FakeClock, *, drop: tuple[str, ...] = ()) -> Path:
    """A videopoll.db as the previous version left it; `drop` removes columns an even older
    version did not have yet."""
    home.mkdir(parents=True, exist_ok=True)
    path = home / "videopoll.db"
    now = clock.now()
    with closing(sqlite3.connect(path)) as db, db:
        db.executescript(PREVIOUS)
        for column in drop:
            db.execute(f"alter table lesson_assets drop column {column}")
        for aid in (HELD, RETRIED, MISMATCHED, PLAIN):
            db.execute("insert into lessons (id, title, created_at) values (?, 'L', ?)",
                       (lesson_of(aid), ts(now)))
            db.execute("insert into lesson_assets (id, lesson_id, kind, conversation_id, "
                       "metadata, created_at, updated_at) values (?, ?, 'video', ?, '{}', ?, ?)",
                       (aid, lesson_of(aid), aid.replace("-", ""), ts(now), ts(now)))
        upload = ", upload_url = 'https://x/u', upload_offset = 6" if "upload_url" not in drop \
            else ""
        db.execute(f"update lesson_assets set status = 'transferring', claimed_by = ?, "
                   f"claimed_until = ?, mismatches = 1{upload} where id = ?",
                   (OLD, ts(now + timedelta(seconds=300)), HELD))
        db.execute("update lesson_assets set retried_at = ?, error = 'x', attempts = 3 "
                   "where id = ?", (ts(now + timedelta(seconds=5)), RETRIED))
        db.execute("update lesson_assets set status = 'finished', finished_at = ?, "
                   "mismatches = 2 where id = ?", (ts(now), MISMATCHED))
    return path


def dump(path: Path) -> dict[str, Any]:
    """Schema and rows of the file, to compare before and after."""
    with closing(sqlite3.connect(path)) as db:
        return {
            "schema": db.execute("select type, name, sql from sqlite_master order by name"
                                 ).fetchall(),
            "assets": db.execute("select * from lesson_assets order by id").fetchall(),
            "book": db.execute("select * from videopoll_assets order by asset_id").fetchall(),
        }


def columns(path: Path, table: str) -> set[str]:
    with closing(sqlite3.connect(path)) as db:
        return {row[1] for row in db.execute(f"pragma table_info({table})")}


async def read_all(store: LocalStore) -> dict[str, VideoAsset]:
    found = {aid: await store.get(aid) for aid in (HELD, RETRIED, MISMATCHED, PLAIN)}
    return {aid: asset for aid, asset in found.items() if asset is not None}


@pytest.mark.parametrize("drop", [(), ("upload_url", "upload_digest", "upload_offset",
                                       "upload_prefix_sha256")], ids=["previous", "older"])
async def test_opening_an_old_file_moves_the_bookkeeping(tmp_path: Path,
                                                         drop: tuple[str, ...]) -> None:
    """The rows read the same through the Store; the columns are gone; videopoll_assets has
    exactly the saved state; the holder's live claim still finishes; reopening is a no-op."""
    clock = FakeClock()
    path = old_file(tmp_path, clock, drop=drop)
    store = LocalStore(tmp_path, clock=clock.now)
    try:
        rows = await read_all(store)
        assert set(rows) == {HELD, RETRIED, MISMATCHED, PLAIN}
        held = rows[HELD]
        assert (held.status, held.claimed_by, held.claimed_until, held.mismatches) == (
            Status.TRANSFERRING, OLD, clock.now() + timedelta(seconds=300), 1)
        assert rows[RETRIED].retried_at == clock.now() + timedelta(seconds=5)
        assert (rows[RETRIED].error, rows[RETRIED].attempts) == ("x", 3)
        assert (rows[MISMATCHED].status, rows[MISMATCHED].mismatches) == (Status.FINISHED, 2)
        assert (rows[PLAIN].claimed_by, rows[PLAIN].mismatches) == (None, 0)
        assert not columns(path, "lesson_assets") & set(MOVED_COLUMNS)
        book = dump(path)["book"]
        assert [row[0] for row in book] == sorted([HELD, RETRIED, MISMATCHED])
        # Never saved by LocalStore; not carried over, as in the Supabase migration.
        assert next(r for r in book if r[0] == HELD)[5:9] == (None, None, None, None)
        [(_, ok, detail)] = [c for c in await store.check() if c[0] == "local schema"]
        assert (ok, detail) == (True, "tables present")
        assert not await store.claim(HELD, "new:2", 60)  # the lease is still live
        assert await store.mark_ready(HELD, OLD, "videos/held.mp4")
        assert await store.record_error(MISMATCHED, "again", mismatch=True) == 3
    finally:
        await store.close()
    before = dump(path)
    again = LocalStore(tmp_path, clock=clock.now)
    await again.close()
    assert dump(path) == before


def _open_at(home: str, start_at: float) -> list[tuple[str, str | None]]:
    """One process opening the store (the upgrade happens on open), then reading the rows."""

    async def run() -> list[tuple[str, str | None]]:
        store = LocalStore(Path(home))
        try:
            return sorted((a.id, a.claimed_by) for a in (await read_all(store)).values())
        finally:
            await store.close()

    time.sleep(max(0.0, start_at - time.time()))  # open together, to collide
    return asyncio.run(run())


def test_two_processes_opening_an_old_file_upgrade_it_once(tmp_path: Path) -> None:
    """Both opens succeed and see the same rows; the state is moved exactly once."""
    path = old_file(tmp_path, FakeClock())
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        start_at = time.time() + 1.0
        results = pool.starmap(_open_at, [(str(tmp_path), start_at)] * 2)
    expected = sorted([(HELD, OLD), (RETRIED, None), (MISMATCHED, None), (PLAIN, None)])
    assert results == [expected, expected]
    assert len(dump(path)["book"]) == 3
    assert not columns(path, "lesson_assets") & set(MOVED_COLUMNS)
