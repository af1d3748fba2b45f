"""Chaos fixtures: real poller processes (tests/chaos/poller.py) over the stand-ins, on a store.

`world` is parametrised over the stores: `local` (SQLite + a folder) and `supabase` (the
Supabase stand-in over a real PostgreSQL, skipped when none is installed). A `World` seeds
finished videos (rows, OpenHands conversations, files committed on the GitHub stand-in),
launches pollers that may be told to die, recovers with fresh pollers and checks the promise:
nothing lost, nothing doubled, nothing wrongly failed, nothing half-written left behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import closing, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import pytest

from videopoll.sandbox import githubapi
from videopoll.sandbox.github import GitHubStandIn
from videopoll.sandbox.mp4 import make_mp4, mp4_of_size
from videopoll.sandbox.server import CHUNK, Fault, Request, Response, StandIn
from videopoll.sandbox.stack import Sandbox
from videopoll.services.local.schema import parse_ts, ts
from videopoll.services.local.store import LocalStore

from ..pgsession import migrated_database

ROOT = Path(__file__).resolve().parents[2]
BUCKET = "lesson-assets"
PENDING = ("starting", "generating", "finished", "transferring")
AGENT_ERROR = "renderer crashed: out of memory"


def git_blob_sha(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass(frozen=True)
class Video:
    """One seeded row; `data` is None for a row whose conversation fails (no file)."""

    asset_id: str
    lesson_id: str
    conversation_id: str
    path: str
    data: bytes | None
    lfs: bool = False  # committed as a Git LFS pointer; the bytes come from the object host

    @property
    def key(self) -> str:
        return f"videos/{self.lesson_id}/{self.asset_id}.mp4"

    @property
    def good(self) -> bool:
        return self.data is not None

    @property
    def blob(self) -> str:
        assert self.data is not None
        return git_blob_sha(self.data)

    @property
    def sha256(self) -> str:
        assert self.data is not None
        return hashlib.sha256(self.data).hexdigest()


@dataclass(frozen=True)
class Row:
    status: str
    storage_path: str | None
    error: str | None
    claimed_until: datetime | None


class Backend(Protocol):
    """One store as the test sees it from outside the pollers."""

    kind: str

    def env(self) -> dict[str, str]: ...
    def add_video(self, lesson_id: str, asset_id: str, conversation_id: str,
                  github_path: str) -> None: ...
    def add_lesson(self) -> str: ...
    def mark_finished(self, asset_ids: list[str]) -> None: ...
    def rows(self) -> dict[str, Row]: ...
    def live_leases(self) -> int: ...
    def object(self, key: str) -> bytes | None: ...
    def object_keys(self) -> set[str]: ...
    def writes(self) -> list[tuple[str, str]]: ...
    def temp_files(self) -> list[Path]: ...
    def close(self) -> None: ...


class LocalBackend:
    """The local store: seeded through LocalStore, read with a plain SQLite connection; the
    write log comes from the launchers (`--writes`), as LocalStore counts per instance only."""

    kind = "local"

    def __init__(self, home: Path, write_log: Path) -> None:
        self.home = home
        self.write_log = write_log
        self.store = LocalStore(home, bucket=BUCKET)
        self.bucket_dir = self.store.bucket_dir

    def env(self) -> dict[str, str]:
        return {"VIDEOPOLL_STORE": "local", "VIDEOPOLL_HOME": str(self.home),
                "VIDEOPOLL_BUCKET": BUCKET}

    def add_lesson(self) -> str:
        return self.store.add_lesson("A lesson").id

    def add_video(self, lesson_id: str, asset_id: str, conversation_id: str,
                  github_path: str) -> None:
        self.store.add_asset(lesson_id, conversation_id=conversation_id,
                             github_path=github_path, asset_id=asset_id)

    def _query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with closing(sqlite3.connect(self.store.db_path, timeout=30)) as db, db:
            return db.execute(sql, params).fetchall()

    def mark_finished(self, asset_ids: list[str]) -> None:
        """As a pass that saw the agents finish would leave the rows."""
        for asset_id in asset_ids:
            self._query("update lesson_assets set status = 'finished', finished_at = ? "
                        "where id = ?", (ts(datetime.now(UTC)), asset_id))

    def rows(self) -> dict[str, Row]:
        found = self._query("select a.id, a.status, a.storage_path, a.error, v.claimed_until "
                            "from lesson_assets a left join videopoll_assets v "
                            "on v.asset_id = a.id where a.kind = 'video'")
        return {r[0]: Row(r[1], r[2], r[3], parse_ts(r[4])) for r in found}

    def live_leases(self) -> int:
        now = datetime.now(UTC)
        return sum(1 for row in self.rows().values() if row.status == "transferring"
                   and row.claimed_until is not None and row.claimed_until > now)

    def object(self, key: str) -> bytes | None:
        path = self.bucket_dir / key
        return path.read_bytes() if path.is_file() else None

    def object_keys(self) -> set[str]:
        return {p.relative_to(self.bucket_dir).as_posix() for p in self.bucket_dir.rglob("*")
                if p.is_file() and ".part-" not in p.name}

    def writes(self) -> list[tuple[str, str]]:
        if not self.write_log.exists():
            return []
        out = []
        for line in self.write_log.read_text().splitlines():
            record = json.loads(line)
            out.append((Path(record["path"]).relative_to(self.bucket_dir).as_posix(),
                        record["sha256"]))
        return out

    def temp_files(self) -> list[Path]:
        return sorted(p for p in self.bucket_dir.rglob("*") if ".part-" in p.name)

    def close(self) -> None:
        import asyncio

        asyncio.run(self.store.close())


class SupabaseBackend:
    """The Supabase stand-in over PostgreSQL; its `write_log` has the sha256 of every object
    write, whoever made it."""

    kind = "supabase"

    def __init__(self, dsn: str, storage_dir: Path) -> None:
        import psycopg

        from videopoll.sandbox.supabase import SupabaseStandIn

        self.dsn = dsn
        self.conn = psycopg.connect(dsn, autocommit=True)
        self.conn.execute("truncate public.lessons, public.videopoll_state cascade")
        self.conn.execute("delete from storage.objects")
        self.conn.execute("insert into storage.buckets (id, name) values (%s, %s) "
                          "on conflict do nothing", [BUCKET, BUCKET])
        self.supa = SupabaseStandIn(dsn, storage_dir)
        self.supa.start()

    def env(self) -> dict[str, str]:
        return {"VIDEOPOLL_STORE": "supabase", "SUPABASE_URL": self.supa.url,
                "SUPABASE_SERVICE_ROLE_KEY": self.supa.service_key, "VIDEOPOLL_BUCKET": BUCKET}

    def add_lesson(self) -> str:
        found = self.conn.execute("insert into lessons (title) values ('A lesson') returning id"
                                  ).fetchone()
        assert found is not None
        return str(found[0])

    def add_video(self, lesson_id: str, asset_id: str, conversation_id: str,
                  github_path: str) -> None:
        self.conn.execute(
            "insert into lesson_assets (id, lesson_id, kind, mime_type, conversation_id, "
            "metadata) values (%s, %s, 'video', 'video/mp4', %s, "
            "jsonb_build_object('github_path', %s::text))",
            [asset_id, lesson_id, conversation_id, github_path])

    def mark_finished(self, asset_ids: list[str]) -> None:
        self.conn.execute("update lesson_assets set status = 'finished', finished_at = now() "
                          "where id = any(%s::uuid[])", [asset_ids])

    def rows(self) -> dict[str, Row]:
        found = self.conn.execute("select a.id, a.status, a.storage_path, a.error, "
                                  "v.claimed_until from lesson_assets a left join "
                                  "videopoll_assets v on v.asset_id = a.id "
                                  "where a.kind = 'video'").fetchall()
        return {str(r[0]): Row(r[1], r[2], r[3], r[4]) for r in found}

    def live_leases(self) -> int:
        found = self.conn.execute("select count(*) from lesson_assets a join videopoll_assets v"
                                  " on v.asset_id = a.id where a.status = 'transferring' "
                                  "and v.claimed_until > now()").fetchone()
        return int(found[0]) if found else 0

    def object(self, key: str) -> bytes | None:
        path = self.supa.storage_dir / "objects" / BUCKET / key
        return path.read_bytes() if path.is_file() else None

    def object_keys(self) -> set[str]:
        found = self.conn.execute("select name from storage.objects where bucket_id = %s",
                                  [BUCKET]).fetchall()
        root = self.supa.storage_dir / "objects" / BUCKET
        files = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
        return {str(r[0]) for r in found} | files

    def writes(self) -> list[tuple[str, str]]:
        with self.supa.lock:
            return [(w.key.removeprefix(BUCKET + "/"), w.sha256) for w in self.supa.write_log]

    def temp_files(self) -> list[Path]:
        return []  # the pollers' own temp files are looked for in World.tmp

    def close(self) -> None:
        self.supa.stop()
        self.conn.close()


@dataclass
class Run:
    args: list[str]
    code: int
    out: str
    err: str
    kill: str | None = None
    seconds: float = 0.0
    pid: int = 0

    @property
    def killed(self) -> bool:
        return self.code == -signal.SIGKILL

    def explain(self) -> str:
        return (f"videopoll {' '.join(self.args)} (kill {self.kill}) exited {self.code}\n"
                f"stdout: {self.out[-2000:]}\nstderr: {self.err[-4000:]}")


class ServerKill:
    """Kill a poller from inside a stand-in, in the middle of a request: after the stand-in
    sent K bytes of the N-th matching blob, or received K bytes of the N-th matching upload.

    Installed once per stand-in; `arm()` sets the next target, `pid` is the poller's."""

    def __init__(self, standin: StandIn, route: str, mode: str) -> None:
        self.standin, self.route, self.mode = standin, route, mode
        self.original = standin.fault_response
        standin.fault_response = self.respond  # type: ignore[method-assign]
        self.lock = threading.Lock()
        self.pid: int | None = None
        self.target: tuple[int, str, int] | None = None
        self.seen = 0
        self.fired: str | None = None
        self.fault: Fault | None = None

    def arm(self, n: int, match: str, k: int) -> None:
        with self.lock:
            self.target, self.seen, self.fired, self.pid = (n, match, k), 0, None, None
        self.fault = self.standin.inject(self.route, Fault("chaos_kill", times=None))

    def disarm(self) -> None:
        with self.standin.lock:
            faults = self.standin.faults.get(self.route, [])
            if self.fault in faults:
                faults.remove(self.fault)
        with self.lock:
            self.target = None
        self.fault = None

    def _kill(self, detail: str) -> None:
        deadline = time.monotonic() + 10
        while self.pid is None and time.monotonic() < deadline:
            time.sleep(0.005)  # the launcher has only just been started
        with self.lock:
            if self.fired is None and self.pid is not None:
                self.fired = detail
                with suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGKILL)

    def respond(self, fault: Fault, request: Request) -> Response | None:
        if fault is not self.fault:  # another ServerKill's, or an ordinary fault
            return self.original(fault, request)
        with self.lock:
            if self.target is None or self.target[1] not in request.path:
                return None
            self.seen += 1
            if self.seen != self.target[0]:
                return None
            k = self.target[2]
        if self.mode == "download":
            return self._download(request, k)
        original = request.stream

        def stream(piece_size: int = CHUNK) -> Iterator[bytes]:
            got = 0
            for piece in original(piece_size):
                got += len(piece)
                if got >= k:
                    self._kill(f"{request.method} {request.path}: {got} bytes received")
                yield piece

        if k == 0:
            self._kill(f"{request.method} {request.path}: before the body")
        request.stream = stream  # type: ignore[method-assign]
        return None  # the real handler runs, reading through `stream`

    def _download(self, request: Request, k: int) -> Response | None:
        assert isinstance(self.standin, GitHubStandIn)
        content = githubapi.requested_content(self.standin, request)
        if content is None:
            return None

        def body() -> Iterator[bytes]:
            sent = 0
            for piece in content.chunks():
                if sent + len(piece) >= k:
                    yield piece[:k - sent]
                    self._kill(f"GET {request.path}: {k} of {content.size} bytes sent")
                    return
                sent += len(piece)
                yield piece

        return Response(200, body(), {"Content-Type": "application/octet-stream"},
                        content.size)


@dataclass
class Figures:
    lost: list[str] = field(default_factory=list)
    doubled: list[str] = field(default_factory=list)
    wrongly_failed: list[str] = field(default_factory=list)
    not_failed: list[str] = field(default_factory=list)
    leftovers: list[str] = field(default_factory=list)
    rewrites: int = 0

    def merge(self, other: Figures) -> None:
        for name in ("lost", "doubled", "wrongly_failed", "not_failed", "leftovers"):
            getattr(self, name).extend(getattr(other, name))
        self.rewrites += other.rewrites


class World:
    """A sandbox, a store and the poller processes of one test."""

    def __init__(self, sandbox: Sandbox, backend: Backend, root: Path, *,
                 lease: float = 1.0) -> None:
        self.sandbox, self.backend, self.root, self.lease = sandbox, backend, root, lease
        self.tmp = root / "tmp"  # TMPDIR of every poller: their own temp files land here
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.marker = root / "kills.jsonl"
        self.write_log = root / "writes.jsonl"
        self.videos: list[Video] = []
        self.runs: list[Run] = []
        self.blob_kill = ServerKill(sandbox.github, "blobs", "download")
        self.upload_kills: dict[str, ServerKill] = {}
        supa = getattr(backend, "supa", None)
        if supa is not None:
            self.upload_kills = {"tus.patch": ServerKill(supa, "tus.patch", "upload"),
                                 "storage.object.upload":
                                     ServerKill(supa, "storage.object.upload", "upload")}
        self._labels = iter(range(1, 1 << 30))

    # -- seeding ----------------------------------------------------------------------------
    def add_videos(self, sizes: list[int | None], *, failing: int = 0,
                   lfs: frozenset[int] = frozenset()) -> list[Video]:
        """Rows for finished conversations whose files (sizes in bytes; None: the 47 kB
        clip) are committed on GitHub, plus `failing` rows whose agent failed. Files whose
        index is in `lfs` go to Git LFS (a second commit), the others in one commit."""
        made: list[Video] = []
        files: dict[str, bytes] = {}
        pointers: dict[str, bytes] = {}
        for index, size in enumerate([*sizes, *([-1] * failing)]):
            lesson = self.backend.add_lesson()
            asset = str(uuid.uuid4())
            path = f"videos/{lesson}/{asset}.mp4"
            label = f"chaos {next(self._labels)} {asset}"
            if size == -1:
                cid = self.sandbox.openhands.add_conversation("RUNNING", "error")
                self.sandbox.openhands.add_error_event(cid, "AgentError", AGENT_ERROR)
                data = None
            else:
                cid = self.sandbox.openhands.add_conversation("RUNNING", "finished")
                data = make_mp4(label) if size is None else mp4_of_size(size, label)
                (pointers if index in lfs else files)[path] = data
            self.backend.add_video(lesson, asset, cid, path)
            made.append(Video(asset, lesson, cid, path, data, index in lfs))
        if files:
            self.sandbox.github.put_files(self.sandbox.repo, files)
        if pointers:
            self.sandbox.github.put_files(self.sandbox.repo, pointers, lfs=True)
        self.videos.extend(made)
        return made

    # -- processes --------------------------------------------------------------------------
    def env(self) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
        return {**base, **self.sandbox.env(), **self.backend.env(),
                "VIDEOPOLL_LEASE": str(self.lease), "VIDEOPOLL_INTERVAL": "0.2",
                "TMPDIR": str(self.tmp), "PYTHONPATH": str(ROOT), "NO_COLOR": "1",
                "PYTHONDONTWRITEBYTECODE": "1"}

    def command(self, args: list[str], kill: str | None = None,
                start_at: float | None = None) -> list[str]:
        cmd = [sys.executable, "-m", "tests.chaos.poller", "--marker", str(self.marker),
               "--writes", str(self.write_log)]
        if kill is not None:
            cmd += ["--kill-at", kill]
        if start_at is not None:
            cmd += ["--start-at", repr(start_at)]
        return [*cmd, "--", *args]

    def launch(self, args: list[str], kill: str | None = None,
               start_at: float | None = None) -> subprocess.Popen[str]:
        return subprocess.Popen(self.command(args, kill, start_at), env=self.env(),
                                cwd=self.root, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                stdin=subprocess.DEVNULL, text=True)

    def run(self, args: list[str], *, kill: str | None = None, server: ServerKill | None = None,
            timeout: float = 120.0) -> Run:
        started = time.monotonic()
        proc = self.launch(args, kill)
        if server is not None:
            server.pid = proc.pid
        try:
            out, err = proc.communicate(timeout=timeout)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        run = Run(args, proc.returncode, out, err, kill, time.monotonic() - started, proc.pid)
        self.runs.append(run)
        return run

    # -- recovery and checks ------------------------------------------------------------------
    def pending(self) -> list[str]:
        return [i for i, row in self.backend.rows().items() if row.status in PENDING]

    def wait_for_leases(self, timeout: float = 30.0) -> None:
        """Until no row is held by a live lease (a killed poller's lease runs out)."""
        wait_until(lambda: self.backend.live_leases() == 0, timeout, "leases to expire")

    def recover(self, *, passes: int = 8) -> list[Run]:
        """Fresh pollers, each after the leases ran out, until nothing is pending."""
        done: list[Run] = []
        for _ in range(passes):
            if not self.pending():
                return done
            self.wait_for_leases()
            run = self.run(["poll", "--json"])
            done.append(run)
            assert run.code in (0, 1), run.explain()
        assert not self.pending(), f"still pending after {passes} passes: {self.pending()}"
        return done

    def check(self, videos: list[Video] | None = None) -> Figures:
        """Where each video ended, what was written, what was left behind."""
        videos = self.videos if videos is None else videos
        figures = Figures()
        rows = self.backend.rows()
        known = {v.key: v for v in self.videos if v.good}
        for video in videos:
            row = rows[video.asset_id]
            if not video.good:
                if row.status != "failed" or AGENT_ERROR not in (row.error or ""):
                    figures.not_failed.append(f"{video.asset_id}: {row}")
                continue
            if row.status == "failed":
                figures.wrongly_failed.append(f"{video.asset_id}: {row.error}")
            stored = self.backend.object(video.key)
            if row.status != "ready" or row.storage_path != video.key or stored != video.data:
                figures.lost.append(f"{video.asset_id}: {row} stored "
                                    f"{None if stored is None else len(stored)} bytes")
        mine = {v.key for v in videos}
        counts: Counter[str] = Counter()
        for key, sha256 in self.backend.writes():
            if key not in known:
                figures.doubled.append(f"write to unknown key {key}")
            elif key in mine:
                counts[key] += 1
                if sha256 != known[key].sha256:
                    figures.doubled.append(f"{key} written with other bytes ({sha256})")
        figures.rewrites = sum(n - 1 for n in counts.values())
        for key in self.backend.object_keys() - set(known):
            figures.doubled.append(f"unexpected object {key}")
        leftovers = [*self.backend.temp_files(), *sorted(self.tmp.rglob("*"))]
        figures.leftovers = [str(p) for p in leftovers]
        return figures

    def blob_downloads(self) -> Counter[str]:
        """GET .../git/blobs/{sha} per sha, as the GitHub stand-in saw them."""
        counts: Counter[str] = Counter()
        with self.sandbox.github.lock:
            log = list(self.sandbox.github.log)
        for method, path, _headers in log:
            if method == "GET" and "/git/blobs/" in path:
                counts[path.rsplit("/", 1)[-1].split("?")[0]] += 1
        return counts


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


# -- fixtures ---------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def chaos_pg() -> Iterator[str]:
    """One throw-away database for the session: Supabase's bootstrap plus the migration."""
    yield from migrated_database("videopoll_chaos")


STORES = [pytest.param("local", id="local"),
          pytest.param("supabase", id="supabase", marks=pytest.mark.postgres)]


@pytest.fixture(params=STORES)
def world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[World]:
    backend: Backend
    if request.param == "supabase":
        dsn = request.getfixturevalue("chaos_pg")
        backend = SupabaseBackend(dsn, tmp_path / "supabase-storage")
    else:
        backend = LocalBackend(tmp_path / "home", tmp_path / "world" / "writes.jsonl")
    try:
        # A self-hosted server's limiter (10 a second per client), not Cloud's 100 a minute
        # per key: a chaos run spawns a hundred pollers within a minute, each pacing only
        # itself, so Cloud's window would be spent by the scenario and starve the recovery
        # passes the checks wait for; the rate budget has tests of its own
        # (tests/sandbox/test_watch_budget.py, tests/unit/test_agent_budget.py).
        with Sandbox(openhands={"rate_limit": "self-hosted"}) as sandbox:
            yield World(sandbox, backend, tmp_path / "world")
    finally:
        backend.close()
