"""A videopoll process that can be told to die: the chaos tests' launcher.

    python -m tests.chaos.poller [--kill-at SPEC] [--marker FILE] [--writes FILE]
                                 [--start-at EPOCH] -- poll --json

It wraps, in this process only, the methods of the adapters the Runtime builds (the stores,
the GitHub artifact source, the TUS client, the local store's rename) and then runs
`videopoll.cli.run(ARGS)` unchanged. No test hook lives in production code.

SPEC is `POINT[#N][~MATCH][@K]`: the N-th call (default 1) at POINT whose identifying text
(asset id, object key, blob sha...) contains MATCH kills this process with SIGKILL, before or
after the call as POINT says; `@K` is a byte or chunk count for the points that stream.
Points (see `POINTS`):

  store.<write>.before|after   a Store write: claim, mark_finished, renew, mark_ready, ...
  store.save_upload.before|after  Supabase: saving a resumable upload's progress on the row
  store.put.before|after       the whole upload into the store
  store.put.chunks@K           the store has consumed K chunks and asks for the next
  github.find.before|after     the artifact lookup as a whole
  github.tree.after            a tree answer arrived (the first: the conditional listing by ref)
  github.contents.after        a contents answer arrived (a file looked up by path)
  github.download.bytes@K      at least K bytes of the download arrived (K=0: before asking)
  local.rename.before|after    the local store's temp-file rename onto the object key
  tus.create|tus.patch.before|after, storage.upload.before|after   Supabase Storage requests

`--writes FILE` appends one JSON line per object the local store committed (key, sha256 of
the bytes renamed into place, size, pid): a write log shared by every process of a test.
`--marker FILE` gets one line naming the point just before the kill. `--start-at EPOCH`
sleeps (after the imports) until that wall-clock time, so several pollers start together.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import re
import signal
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

STORE_WRITES = ("resolve_start", "mark_finished", "mark_generating", "claim", "renew",
                "release", "mark_ready", "mark_failed", "record_error", "set_state")
POINTS = frozenset(
    [f"store.{w}.{p}" for w in (*STORE_WRITES, "save_upload", "put") for p in ("before", "after")]
    + ["store.put.chunks", "github.find.before", "github.find.after", "github.tree.after",
       "github.contents.after", "github.download.bytes", "local.rename.before",
       "local.rename.after",
       "tus.create.before", "tus.create.after", "tus.patch.before", "tus.patch.after",
       "storage.upload.before", "storage.upload.after"])
_SPEC = re.compile(r"(?P<point>[a-z_.]+)(?:#(?P<n>\d+))?(?:~(?P<match>[^@]+))?(?:@(?P<k>\d+))?")


@dataclass(frozen=True)
class Kill:
    """Where to die: the n-th call at `site` whose identity contains `match`; `phase` is
    before/after/chunks/bytes; `k` the byte or chunk count of streaming points."""

    point: str
    n: int = 1
    match: str = ""
    k: int = 0

    @property
    def site(self) -> str:
        return self.point.rsplit(".", 1)[0]

    @property
    def phase(self) -> str:
        return self.point.rsplit(".", 1)[1]

    @classmethod
    def parse(cls, spec: str) -> Kill:
        found = _SPEC.fullmatch(spec)
        if found is None or found["point"] not in POINTS:
            raise SystemExit(f"chaos poller: bad --kill-at {spec!r}")
        return cls(found["point"], int(found["n"] or 1), found["match"] or "",
                   int(found["k"] or 0))

    def __str__(self) -> str:
        text = self.point + (f"#{self.n}" if self.n != 1 else "")
        text += f"~{self.match}" if self.match else ""
        return text + (f"@{self.k}" if self.phase in ("chunks", "bytes") else "")


@dataclass
class Trigger:
    kill: Kill | None
    marker: Path | None
    calls: Counter[str] = field(default_factory=Counter)

    def phase(self, site: str, ident: str = "") -> str | None:
        """Count a call at `site`; the kill's phase if this is the chosen call, else None."""
        kill = self.kill
        if kill is None or kill.site != site or kill.match not in ident:
            return None
        self.calls[site] += 1
        return kill.phase if self.calls[site] == kill.n else None

    def die(self, detail: str = "") -> None:
        if self.marker is not None:
            line = json.dumps({"point": str(self.kill), "detail": detail, "pid": os.getpid()})
            fd = os.open(self.marker, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, line.encode() + b"\n")
                os.fsync(fd)
            finally:
                os.close(fd)
        os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(60)  # never reached: SIGKILL to oneself is delivered at once


def _wrap(cls: type, name: str, site: str, trigger: Trigger,
          ident: Callable[[tuple[Any, ...], dict[str, Any]], str] | None = None) -> None:
    """Make `cls.name` (a coroutine method) die before or after the chosen call."""
    original = getattr(cls, name)

    @functools.wraps(original)
    async def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        text = ident(args, kwargs) if ident is not None else (str(args[0]) if args else "")
        phase = trigger.phase(site, text)
        if phase == "before":
            trigger.die(text)
        result = await original(self, *args, **kwargs)
        if phase == "after":
            trigger.die(text)
        return result

    setattr(cls, name, wrapper)


async def _chunks_until(source: AsyncIterator[bytes], k: int, trigger: Trigger, key: str
                        ) -> AsyncIterator[bytes]:
    """Pass `source` on; die when the consumer asks for chunk k+1 (after taking k)."""
    taken = 0
    iterator = aiter(source)
    while True:
        if taken == k:
            trigger.die(f"{key}: store took {k} chunks")
        try:
            piece = await anext(iterator)
        except StopAsyncIteration:
            return
        taken += 1
        yield piece


def _install_store(cls: type, trigger: Trigger) -> None:
    from videopoll.states import METHODS

    transitions = set(METHODS.values())
    for write in STORE_WRITES:
        if hasattr(cls, write) and write not in transitions:
            _wrap(cls, write, f"store.{write}", trigger)
    # Every transition reaches the store through one guarded `apply` (a pass sends its rows'
    # changes in batches): a point names one change of one row, wherever its batch goes.
    original_apply = cls.apply  # type: ignore[attr-defined]

    @functools.wraps(original_apply)
    async def apply(self: Any, changes: Any, *args: Any, **kwargs: Any) -> Any:
        phases = {trigger.phase(f"store.{METHODS[c.event]}", c.asset_id) for c in changes}
        if "before" in phases:
            trigger.die(" ".join(f"{c.event}:{c.asset_id}" for c in changes))
        result = await original_apply(self, changes, *args, **kwargs)
        if "after" in phases:
            trigger.die(" ".join(f"{c.event}:{c.asset_id}" for c in changes))
        return result

    cls.apply = apply  # type: ignore[attr-defined]
    original_put = cls.put  # type: ignore[attr-defined]

    @functools.wraps(original_put)
    async def put(self: Any, asset: Any, key: str, chunks: AsyncIterator[bytes],
                  **kwargs: Any) -> None:
        phase = trigger.phase("store.put", key)
        if phase == "before":
            trigger.die(key)
        if phase == "chunks" and trigger.kill is not None:
            chunks = _chunks_until(chunks, trigger.kill.k, trigger, key)
        await original_put(self, asset, key, chunks, **kwargs)
        if phase == "after":
            trigger.die(key)

    cls.put = put  # type: ignore[attr-defined]


def _install_github(trigger: Trigger) -> None:
    from videopoll.services.github import GitHubArtifacts

    _wrap(GitHubArtifacts, "find", "github.find", trigger, lambda a, kw: "")
    original_get = GitHubArtifacts._get

    @functools.wraps(original_get)
    async def get(self: Any, url: str, *, what: str, **headers: str) -> Any:
        site = f"github.{what}" if what in ("tree", "contents") else "github.other"
        phase = trigger.phase(site, url)
        response = await original_get(self, url, what=what, **headers)
        if phase == "after":
            trigger.die(url)
        return response

    GitHubArtifacts._get = get  # type: ignore[method-assign]
    original_open = GitHubArtifacts.open

    def open_(self: Any, ref: Any) -> AsyncIterator[bytes]:
        phase = trigger.phase("github.download", f"{ref.sha} {ref.path}")
        if phase != "bytes" or trigger.kill is None:
            return original_open(self, ref)
        return _bytes_until(original_open(self, ref), trigger.kill.k, trigger, ref.path)

    GitHubArtifacts.open = open_  # type: ignore[method-assign]


async def _bytes_until(source: AsyncIterator[bytes], k: int, trigger: Trigger, path: str
                       ) -> AsyncIterator[bytes]:
    """Die once at least k bytes arrived, before passing the piece that reached k on."""
    if k == 0:
        trigger.die(f"{path}: before the download")
    seen = 0
    async for piece in source:
        seen += len(piece)
        if seen >= k:
            trigger.die(f"{path}: {seen} bytes arrived")
        yield piece


class _Os(ModuleType):
    """`os` for the local store's module, with `replace` watched (this process only)."""

    def __init__(self, trigger: Trigger, writes: Path | None) -> None:
        super().__init__("os")
        self._trigger = trigger
        self._writes = writes

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)

    def replace(self, src: Any, dst: Any) -> None:
        source, target = os.fspath(src), os.fspath(dst)
        if ".part-" not in source:
            os.replace(src, dst)
            return
        phase = self._trigger.phase("local.rename", target)
        record = None
        if self._writes is not None:
            digest, size = hashlib.sha256(), 0
            with open(source, "rb") as part:
                while piece := part.read(1 << 20):
                    digest.update(piece)
                    size += len(piece)
            record = {"path": target, "sha256": digest.hexdigest(), "size": size,
                      "pid": os.getpid()}
        if phase == "before":
            self._trigger.die(target)
        os.replace(src, dst)
        if record is not None and self._writes is not None:
            fd = os.open(self._writes, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, json.dumps(record).encode() + b"\n")
            finally:
                os.close(fd)
        if phase == "after":
            self._trigger.die(target)


def _install_local(trigger: Trigger, writes: Path | None) -> None:
    from videopoll.services.local import store as local
    from videopoll.services.local.store import LocalStore

    _install_store(LocalStore, trigger)
    local.os = _Os(trigger, writes)  # type: ignore[attr-defined]


def _install_supabase(trigger: Trigger) -> None:
    from videopoll.services.supabase import tus
    from videopoll.services.supabase.store import SupabaseStore

    _install_store(SupabaseStore, trigger)
    _wrap(tus.TusClient, "create", "tus.create", trigger,
          lambda a, kw: str(kw.get("name", "")))
    _wrap(tus.TusClient, "patch", "tus.patch", trigger, lambda a, kw: str(a[0]) if a else "")
    original_rpc = SupabaseStore._rpc
    original_call = SupabaseStore._call

    @functools.wraps(original_rpc)
    async def rpc(self: Any, fn: str, **args: Any) -> Any:
        site = "store.save_upload" if fn == "videopoll_save_upload" else "store.rpc"
        phase = trigger.phase(site, str(args.get("asset_id", "")))
        if phase == "before":
            trigger.die(fn)
        result = await original_rpc(self, fn, **args)
        if phase == "after":
            trigger.die(fn)
        return result

    @functools.wraps(original_call)
    async def call(self: Any, what: str, op: Any) -> Any:
        phase = trigger.phase("storage.upload", "") if what == "upload" else None
        if phase == "before":
            op.close()  # the coroutine never runs: no "never awaited" warning
            trigger.die(what)
        result = await original_call(self, what, op)
        if phase == "after":
            trigger.die(what)
        return result

    # A small video's standard upload (raw httpx since it no longer goes through storage3).
    original_upload = SupabaseStore._upload

    @functools.wraps(original_upload)
    async def upload(self: Any, key: str, body: bytes, content_type: str) -> None:
        phase = trigger.phase("storage.upload", "")
        if phase == "before":
            trigger.die(key)
        await original_upload(self, key, body, content_type)
        if phase == "after":
            trigger.die(key)

    SupabaseStore._upload = upload  # type: ignore[method-assign]

    SupabaseStore._rpc = rpc  # type: ignore[method-assign]
    SupabaseStore._call = call  # type: ignore[method-assign]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.chaos.poller")
    parser.add_argument("--kill-at", type=Kill.parse, default=None)
    parser.add_argument("--marker", type=Path, default=None)
    parser.add_argument("--writes", type=Path, default=None)
    parser.add_argument("--start-at", type=float, default=None)
    parser.add_argument("args", nargs=argparse.REMAINDER)
    options = parser.parse_args(argv)
    args = options.args[1:] if options.args[:1] == ["--"] else options.args

    from videopoll.cli import run  # the whole command line, imported before the start line

    trigger = Trigger(options.kill_at, options.marker)
    _install_github(trigger)
    _install_local(trigger, options.writes)
    if os.environ.get("VIDEOPOLL_STORE") == "supabase":
        _install_supabase(trigger)
    if options.start_at is not None:
        time.sleep(max(0.0, options.start_at - time.time()))
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
