"""The setting every measurement runs in: the stand-ins on loopback with injected per-request
latency (and an optional bandwidth cap), a store, and helpers that seed identical data for
videopoll and for the baseline.

The store is the Supabase stand-in (PostgREST + Storage over real PostgreSQL) when a
PostgreSQL server is available, else the local store (SQLite + a folder). The stand-ins run
as threads of the benchmark process; both pollers run as subprocesses, so they never share
an interpreter (or its GIL) with the servers they talk to.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sqlite3
import uuid
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from videopoll.sandbox.mp4 import make_mp4
from videopoll.sandbox.stack import Sandbox

BUCKET = "lesson-assets"


@dataclass(frozen=True)
class Network:
    """Per-request latency of each service (seconds) and a bandwidth cap (bytes/s or None)."""

    openhands: float = 0.05
    github: float = 0.08
    storage: float = 0.08
    bandwidth: float | None = None

    def describe(self) -> str:
        cap = f"{self.bandwidth / 1e6:g} MB/s" if self.bandwidth else "no bandwidth cap"
        return (f"latency per request: OpenHands {self.openhands * 1000:g} ms, GitHub "
                f"{self.github * 1000:g} ms, Storage/REST {self.storage * 1000:g} ms; {cap}")


@dataclass
class Row:
    """One pending video as the app inserts it, and what its conversation is doing."""

    asset_id: str
    lesson_id: str
    conversation_id: str
    path: str
    kind: str  # running, finished, failed, finished-no-file

    @property
    def key(self) -> str:
        return f"videos/{self.lesson_id}/{self.asset_id}.mp4"


@dataclass
class World:
    network: Network
    tmp: Path
    store: str = "supabase"  # or "local"
    sandbox: Sandbox = field(init=False)
    _stack: ExitStack = field(default_factory=ExitStack)
    dsn: str | None = None
    supa: Any = None
    note: str = ""
    _reader: Any = None

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> World:
        net = self.network
        if self.store == "supabase":
            try:
                self._start_supabase()
            except Exception as exc:  # no PostgreSQL here: say so and fall back
                self.store = "local"
                self.note = (f"Supabase stand-in unavailable ({type(exc).__name__}: {exc}); "
                             "the local store (SQLite + folder) was used instead")
        self.sandbox = Sandbox(
            # No rate limit: the baseline paces nothing, and a pass here is timed, not throttled.
            openhands={"latency": net.openhands, "bandwidth": net.bandwidth, "rate_limit": None},
            github={"latency": net.github, "bandwidth": net.bandwidth, "rate_limit": 10**9})
        objects = self.sandbox.github.objects  # the LFS / raw host: same network as GitHub
        objects.latency, objects.bandwidth = net.github, net.bandwidth
        self.sandbox.start()
        self._stack.callback(self.sandbox.stop)
        return self

    def _start_supabase(self) -> None:
        from videopoll.sandbox.pg import apply_sql, bootstrap_supabase, ensure_server
        from videopoll.sandbox.pg import fresh_database as fresh
        from videopoll.sandbox.supabase import SupabaseStandIn
        from videopoll.sql import schema_sql

        admin = ensure_server()
        self.dsn = self._stack.enter_context(fresh("videopoll_bench", dsn=admin))
        bootstrap_supabase(self.dsn)
        apply_sql(self.dsn, schema_sql())
        self.sql("insert into storage.buckets (id, name) values (%s, %s)", [BUCKET, BUCKET])
        supa = SupabaseStandIn(self.dsn, self.tmp / "supabase", latency=self.network.storage,
                               bandwidth=self.network.bandwidth, pool_size=24)
        self.supa = supa.start()
        self._stack.callback(supa.stop)

    def stop(self) -> None:
        self._stack.close()

    def use(self, store: str) -> None:
        """Point the next runs at the local store or (when it runs) the Supabase stand-in."""
        if store == "supabase" and self.supa is None:
            raise RuntimeError("the Supabase stand-in is not running")
        self.store = store

    def __enter__(self) -> World:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- configuration for the subprocesses ------------------------------------------------------
    @property
    def home(self) -> Path:
        return self.tmp / "home"

    def env(self, **extra: str) -> dict[str, str]:
        """A clean environment: the stand-ins, the store, nothing from the caller's shell."""
        base = {k: v for k, v in os.environ.items()
                if k in ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "SYSTEMROOT")}
        env = {**base, **self.sandbox.env(self.home), "NO_COLOR": "1", "TERM": "dumb",
               "VIDEOPOLL_ENV_FILE": os.devnull, "PYTHONDONTWRITEBYTECODE": "1"}
        if self.store == "supabase":
            env.update(VIDEOPOLL_STORE="supabase", SUPABASE_URL=self.supa.url,
                       SUPABASE_SERVICE_ROLE_KEY=self.supa.service_key, VIDEOPOLL_BUCKET=BUCKET)
        else:
            env.update(VIDEOPOLL_STORE="local", VIDEOPOLL_BUCKET=BUCKET)
        env.update(extra)
        return env

    # -- the store -------------------------------------------------------------------------------
    def sql(self, query: str, params: Any = None) -> list[tuple[Any, ...]]:
        import psycopg

        assert self.dsn is not None
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            cur = conn.execute(query, params)
            return cur.fetchall() if cur.description else []

    def reset_store(self) -> None:
        """No rows, no objects, no remembered GitHub ETag: every run starts the same."""
        if self.store == "supabase":
            self.sql("truncate public.lessons, public.videopoll_state cascade")
            self.sql("delete from storage.objects")
            shutil.rmtree(self.tmp / "supabase", ignore_errors=True)
        else:
            shutil.rmtree(self.home, ignore_errors=True)
        self.sandbox.github.objects.grants.clear()

    def seed(self, rows: list[Row]) -> None:
        lessons = [(r.lesson_id, f"Lesson {r.lesson_id[:8]}") for r in rows]
        assets = [(r.asset_id, r.lesson_id, r.conversation_id, r.path) for r in rows]
        if self.store == "supabase":
            import psycopg
            from psycopg.types.json import Jsonb

            assert self.dsn is not None
            with psycopg.connect(self.dsn) as conn, conn.cursor() as cur:
                cur.executemany("insert into lessons (id, title) values (%s, %s)", lessons)
                cur.executemany(
                    "insert into lesson_assets (id, lesson_id, kind, mime_type, conversation_id,"
                    " metadata) values (%s, %s, 'video', 'video/mp4', %s, %s)",
                    [(a, lesson, c, Jsonb({"github_path": p})) for a, lesson, c, p in assets])
            return
        from videopoll.services.local.store import LocalStore

        store = LocalStore(self.home, bucket=BUCKET)
        try:
            for lesson_id, title in lessons:
                store.add_lesson(title, lesson_id=lesson_id)
            for asset_id, lesson_id, cid, path in assets:
                store.add_asset(lesson_id, conversation_id=cid, github_path=path,
                                asset_id=asset_id)
        finally:
            asyncio.run(store.close())

    def storage_path(self, asset_id: str) -> str | None:
        """The row's storage_path as the app would read it (None while pending); one
        connection kept open, so polling this every few milliseconds stays cheap."""
        if self.store == "supabase":
            import psycopg

            if self._reader is None:
                self._reader = psycopg.connect(self.dsn or "", autocommit=True)
                self._stack.callback(self._reader.close)
            found = self._reader.execute(
                "select storage_path from lesson_assets where id = %s", [asset_id]).fetchall()
        else:
            with sqlite3.connect(self.home / "videopoll.db", timeout=30) as db:
                found = db.execute("select storage_path from lesson_assets where id = ?",
                                   (asset_id,)).fetchall()
        return found[0][0] if found else None

    def ready_count(self) -> int:
        query = "select count(*) from lesson_assets where storage_path is not null"
        if self.store == "supabase":
            return int(self.sql(query)[0][0])
        with sqlite3.connect(self.home / "videopoll.db", timeout=30) as db:
            return int(db.execute(query).fetchone()[0])

    def object_size(self, key: str) -> int | None:
        """The stored object's size (None if absent), to check a run really copied it."""
        base = self.tmp / "supabase" / "objects" if self.store == "supabase" else \
            self.home / "storage"
        path = base / BUCKET / key
        return path.stat().st_size if path.exists() else None

    # -- the services ----------------------------------------------------------------------------
    def conversations(self, kinds: list[str]) -> list[Row]:
        """Rows with conversations in the given states (files for `finished` committed in one
        commit, as a busy agent fleet would leave the repository)."""
        oh = self.sandbox.openhands
        rows, files = [], {}
        for kind in kinds:
            lesson, asset = str(uuid.uuid4()), str(uuid.uuid4())
            path = f"videos/{lesson}/{asset}.mp4"
            if kind == "failed":
                cid = oh.add_conversation("RUNNING", "error")
                oh.add_error_event(cid, "AgentError", "the agent gave up on the render")
            elif kind in ("finished", "finished-no-file"):
                cid = oh.add_conversation("RUNNING", "finished")
                if kind == "finished":
                    files[path] = make_mp4(f"lesson {lesson[:8]}")
            else:
                cid = oh.add_conversation("RUNNING", "running")
            rows.append(Row(asset, lesson, cid, path, kind))
        if files:
            self.sandbox.github.put_files(self.sandbox.repo, files)
        return rows

    def counts(self) -> dict[str, int]:
        """Requests each service has answered so far (server side)."""
        gh = self.sandbox.github
        out = {"openhands": self.sandbox.openhands.total(),
               "github": gh.total() + gh.objects.total(),
               "github_304": sum(gh.not_modified.values())}
        if self.supa is not None:
            storage = sum(v for k, v in self.supa.counts.items()
                          if k.startswith(("storage.", "tus.")))
            out["storage"] = storage
            out["rest"] = self.supa.total() - storage
        else:
            out["storage"] = out["rest"] = 0
        return out

    def reset_counts(self) -> None:
        self.sandbox.openhands.reset_counts()
        self.sandbox.github.reset_counts()
        self.sandbox.github.objects.reset_counts()
        self.sandbox.github.not_modified.clear()
        if self.supa is not None:
            self.supa.reset_counts()


def mix(n: int, finished: float = 0.05, failed: float = 0.05) -> list[str]:
    """n conversation states: 90% running, 5% finished with a file, 5% failed, spread out."""
    k_done, k_fail = max(1, round(n * finished)), max(1, round(n * failed))
    kinds = ["running"] * n
    step = n / (k_done + k_fail)
    for i in range(k_done + k_fail):
        kinds[min(n - 1, int(i * step))] = "finished" if i % 2 == 0 else "failed"
    # k_done/k_fail alternate; fix the counts if rounding made them unequal
    while kinds.count("finished") < k_done:
        kinds[kinds.index("running")] = "finished"
    while kinds.count("failed") < k_fail:
        kinds[kinds.index("running")] = "failed"
    return kinds
