"""End-to-end fixtures: the real CLI in-process, over real HTTP to the stand-ins, on a store.

`stack` is parametrised over the stores, so every CLI test runs on each of them.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from videopoll.cli import run
from videopoll.sandbox.githubapi import INLINE_MAX
from videopoll.sandbox.mp4 import make_mp4, mp4_of_size
from videopoll.sandbox.stack import Sandbox
from videopoll.services.local.store import LocalStore

from ..pgsession import migrated_database


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def json(self) -> Any:
        return json.loads(self.out)

    @property
    def lines(self) -> list[Any]:
        return [json.loads(line) for line in self.out.splitlines() if line.strip()]


class LocalSeed:
    """Rows as the app inserts them, and a look at the results, on the local store."""

    kind = "local"

    def __init__(self, home: Path) -> None:
        self.home = home
        self.store = LocalStore(home)

    def env(self) -> dict[str, str]:
        return {"VIDEOPOLL_STORE": "local", "VIDEOPOLL_HOME": str(self.home)}

    def lesson(self, title: str = "A lesson", user_id: str | None = None) -> str:
        return self.store.add_lesson(title, user_id=user_id).id

    def video(self, lesson_id: str, conversation_id: str, github_path: str | None = None,
              asset_id: str | None = None) -> str:
        asset_id = asset_id or str(uuid.uuid4())
        path = github_path or f"videos/{lesson_id}/{asset_id}.mp4"
        return self.store.add_asset(lesson_id, conversation_id=conversation_id,
                                    github_path=path, asset_id=asset_id)

    def row(self, asset_id: str) -> dict[str, Any]:
        found = asyncio.run(self.store.get(asset_id))
        assert found is not None
        return found.to_json()

    def metadata(self, asset_id: str) -> dict[str, Any]:
        return self.store.metadata(asset_id)

    @property
    def bucket_dir(self) -> Path:
        return self.store.bucket_dir

    def object(self, key: str) -> bytes | None:
        path = self.store.object_path(key)
        return path.read_bytes() if path.exists() else None

    def close(self) -> None:
        asyncio.run(self.store.close())


class SupabaseSeed:
    """The same, on the Supabase store: rows straight into PostgreSQL as the app inserts
    them, objects read from the Storage stand-in's disk."""

    kind = "supabase"

    def __init__(self, dsn: str, storage: Path) -> None:
        from videopoll.sandbox.supabase import SupabaseStandIn

        self.dsn = dsn
        self.sql("truncate public.lessons, public.videopoll_state cascade")
        self.sql("delete from storage.objects")
        self.sql("insert into storage.buckets (id, name) values ('lesson-assets', "
                 "'lesson-assets') on conflict do nothing")
        self.standin = SupabaseStandIn(dsn, storage).start()
        self.bucket_dir = storage / "objects" / "lesson-assets"

    def sql(self, query: str, params: Any = None) -> list[tuple[Any, ...]]:
        import psycopg

        with psycopg.connect(self.dsn, autocommit=True) as conn:
            cur = conn.execute(query, params)
            return cur.fetchall() if cur.description else []

    def env(self) -> dict[str, str]:
        return {"VIDEOPOLL_STORE": "supabase", "SUPABASE_URL": self.standin.url,
                "SUPABASE_SERVICE_ROLE_KEY": self.standin.service_key}

    def lesson(self, title: str = "A lesson", user_id: str | None = None) -> str:
        return str(self.sql("insert into lessons (title, user_id) values (%s, %s) returning id",
                            [title, user_id])[0][0])

    def video(self, lesson_id: str, conversation_id: str, github_path: str | None = None,
              asset_id: str | None = None) -> str:
        asset_id = asset_id or str(uuid.uuid4())
        path = github_path or f"videos/{lesson_id}/{asset_id}.mp4"
        self.sql("insert into lesson_assets (id, lesson_id, kind, conversation_id, mime_type, "
                 "metadata) values (%s, %s, 'video', %s, 'video/mp4', "
                 "jsonb_build_object('github_path', %s::text))",
                 [asset_id, lesson_id, conversation_id, path])
        return asset_id

    def row(self, asset_id: str) -> dict[str, Any]:
        found = self.sql(
            "select id::text, lesson_id::text, conversation_id, status, storage_path, error, "
            "attempts, metadata->>'github_path' from lesson_assets where id = %s", [asset_id])
        assert found, asset_id
        keys = ("id", "lesson_id", "conversation_id", "status", "storage_path", "error",
                "attempts", "github_path")
        return dict(zip(keys, found[0], strict=True))

    def metadata(self, asset_id: str) -> dict[str, Any]:
        return dict(self.sql("select metadata from lesson_assets where id = %s",
                             [asset_id])[0][0])

    def object(self, key: str) -> bytes | None:
        path = self.bucket_dir / key
        return path.read_bytes() if path.exists() else None

    def close(self) -> None:
        self.standin.stop()


@dataclass
class Stack:
    sandbox: Sandbox
    seed: LocalSeed | SupabaseSeed
    monkeypatch: pytest.MonkeyPatch
    capsys: pytest.CaptureFixture[str]

    def env(self) -> dict[str, str]:
        return {**self.sandbox.env(), **self.seed.env()}

    def cli(self, *args: str, env: Mapping[str, str | None] | None = None) -> Result:
        """Run `videopoll ARGS` in this process with the stack's environment."""
        merged: dict[str, str | None] = {**self.env(), **(env or {})}
        with self.monkeypatch.context() as patch:
            for name, value in merged.items():
                if value is None:
                    patch.delenv(name, raising=False)
                else:
                    patch.setenv(name, value)
            self.capsys.readouterr()
            code = run(list(args))
            captured = self.capsys.readouterr()
        return Result(code, captured.out, captured.err)

    # -- scenario helpers ----------------------------------------------------------------------
    def video(self, sandbox_status: str = "RUNNING", execution: str | None = "running", *,
              commit: bytes | None = None, lfs: bool | None = None) -> tuple[str, str, str]:
        """A pending row, its conversation in the given state, and optionally its file.
        Returns (asset id, conversation id, github path)."""
        lesson = self.seed.lesson()
        cid = self.sandbox.openhands.add_conversation(sandbox_status, execution)
        asset = str(uuid.uuid4())
        path = f"videos/{lesson}/{asset}.mp4"
        self.seed.video(lesson, cid, path, asset_id=asset)
        if commit is not None:
            self.sandbox.github.put_file(self.sandbox.repo, path, commit, lfs=lfs)
        return asset, cid, path

    def key(self, asset_id: str) -> str:
        row = self.seed.row(asset_id)
        return f"videos/{row['lesson_id']}/{asset_id}.mp4"


@pytest.fixture(scope="session")
def supabase_db() -> Iterator[str]:
    """A fresh database for the CLI tests: Supabase's bootstrap plus our migration."""
    yield from migrated_database("videopoll_cli")


@pytest.fixture(params=["local", pytest.param("supabase", marks=pytest.mark.postgres)])
def stack(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
          capsys: pytest.CaptureFixture[str]) -> Iterator[Stack]:
    """The stand-ins and a store; every CLI test runs once per store."""
    seed: LocalSeed | SupabaseSeed
    if request.param == "local":
        seed = LocalSeed(tmp_path / "home")
    else:
        seed = SupabaseSeed(request.getfixturevalue("supabase_db"), tmp_path / "storage")
    try:
        with Sandbox(step=0.01, run=0.05) as sandbox:
            yield Stack(sandbox, seed, monkeypatch, capsys)
    finally:
        seed.close()


@pytest.fixture(scope="session")
def video() -> bytes:
    """A short clip (47 kB): GitHub's contents answer carries it inline, so a pass that
    finds it by path reads it with that one request."""
    return make_mp4("a lesson")


@pytest.fixture(scope="session")
def large_video() -> bytes:
    """Over the contents API's 1 MB inline limit: its bytes come by blob download."""
    return mp4_of_size(2 * INLINE_MAX + 4321, "a longer lesson")
