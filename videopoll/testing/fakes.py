"""`FakeAgent` (AgentAPI) and `FakeArtifacts` (ArtifactSource), plus byte helpers."""

from __future__ import annotations

import asyncio
import hashlib
import random
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..errors import ArtifactMissing, ServerError, ShortBody
from ..model import AgentState, ArtifactRef, Service, StartTask, Status
from .faults import Recorder

STATES_BATCH = 99  # OpenHands: "Too many ids requested. Maximum is 99."
START_TASKS_BATCH = 100


def git_blob_sha(data: bytes) -> str:
    """The sha GitHub's tree listing gives a file: sha1 of `blob <len>\\0` + bytes."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(data: bytes) -> bytes:
    """The Git LFS pointer file the tree holds in place of `data`."""
    oid = hashlib.sha256(data).hexdigest()
    return (f"version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\n"
            f"size {len(data)}\n").encode()


def fake_mp4(size: int = 4096, *, seed: int = 0) -> bytes:
    """Deterministic bytes that pass the MP4 check: an `ftyp` box, then an `mdat` box."""
    ftyp = (24).to_bytes(4, "big") + b"ftypisom" + (0x200).to_bytes(4, "big") + b"isomiso2"
    if size < len(ftyp) + 8:
        raise ValueError(f"an MP4 needs at least {len(ftyp) + 8} bytes")
    body = random.Random(seed).randbytes(size - len(ftyp) - 8)
    return ftyp + (size - len(ftyp)).to_bytes(4, "big") + b"mdat" + body


def _batches(ids: Sequence[str], size: int) -> list[Sequence[str]]:
    return [ids[i:i + size] for i in range(0, len(ids), size)]


_SHORTHAND = {
    Status.GENERATING: AgentState(Status.GENERATING, "RUNNING", "running"),
    Status.FINISHED: AgentState(Status.FINISHED, "RUNNING", "finished"),
    Status.FAILED: AgentState(Status.FAILED, "RUNNING", "error", reason="agent error"),
}


class FakeAgent(Recorder):
    """`AgentAPI` in memory: conversations you `set`, start tasks you `ready` or `fail_start`.

    `calls` gets one entry per request the real client would send: `("states", batch)` for
    each batch of at most 99 ids, `("resolve", batch)` for each ≤100, `("start", (title,))`.

    `budget` is a rate budget of that many requests (None: unlimited): `budget()` says how
    many are left, every recorded request spends one, `refill()` is the window passing.
    A request sent with none left is counted in `over_budget` (the real client would have
    waited for its slot, up to a minute) rather than refused.
    """

    ids_per_request = STATES_BATCH

    def __init__(self, *, budget: int | None = None) -> None:
        super().__init__()
        self.limit = budget
        self.spent = 0
        self.over_budget = 0
        self.conversations: dict[str, AgentState] = {}
        self.start_tasks: dict[str, StartTask] = {}
        self.planned: dict[str, str] = {}  # start task -> the conversation id asked for
        self.started: list[dict[str, Any]] = []  # every start request, secrets included
        self.broken: dict[str, BaseException] = {}  # conversation id -> its lookup's error

    def set(self, conversation_id: str, state: AgentState | Status | None) -> None:
        """What the agent says about a conversation; None makes it unknown (null)."""
        if state is None:
            self.conversations.pop(conversation_id, None)
        elif isinstance(state, AgentState):
            self.conversations[conversation_id] = state
        else:
            self.conversations[conversation_id] = _SHORTHAND[state]

    def break_lookup(self, conversation_id: str, exc: BaseException | None = None) -> None:
        """The follow-up lookup of one conversation fails until `heal_lookup` (say its
        events endpoint answers 500 while its sandbox is PAUSED). As the OpenHands adapter
        does, that conversation alone is undecided (`lookup_error`); a non-service `exc`
        (a bug, a kill) is raised instead."""
        self.broken[conversation_id] = exc or ServerError(
            f"openhands: events of {conversation_id} failed (HTTP 500)", service=Service.OPENHANDS,
            status=500)

    def heal_lookup(self, conversation_id: str) -> None:
        self.broken.pop(conversation_id, None)

    def budget(self) -> int | None:
        return None if self.limit is None else max(0, self.limit - self.spent)

    def refill(self) -> None:
        """The budget's window has passed: every request is available again."""
        self.spent = 0

    def _record(self, method: str, *args: Any) -> None:
        if self.limit is not None and self.spent >= self.limit:
            self.over_budget += 1
        self.spent += 1
        super()._record(method, *args)

    def reset(self) -> None:
        self.reset_calls()
        self.conversations.clear()
        self.start_tasks.clear()
        self.planned.clear()
        self.started.clear()
        self.broken.clear()
        self.spent = self.over_budget = 0

    async def explain(self, conversation_id: str, state: AgentState) -> AgentState:
        return state  # the fake's states come with their reasons

    async def states(self, conversation_ids: Sequence[str], *, explain_later: bool = False
                     ) -> dict[str, AgentState | None]:
        out: dict[str, AgentState | None] = {}
        for batch in _batches(list(conversation_ids), STATES_BATCH):
            self._record("states", *batch)
            self._fault("states")
            for cid in batch:
                broken = self.broken.get(cid)
                if broken is not None and not isinstance(broken, ServerError):
                    raise broken
                out[cid] = self.conversations.get(cid) if broken is None else AgentState(
                    Status.GENERATING, lookup_error=str(broken))
        return out

    async def start(self, *, prompt: str, repository: str, branch: str, title: str,
                    secrets: Mapping[str, str] | None = None,
                    conversation_id: str | None = None) -> StartTask:
        self._record("start", title)
        self._fault("start")
        task = StartTask(id=uuid.uuid4().hex, status="WORKING", state=Status.STARTING)
        self.start_tasks[task.id] = task
        if conversation_id is not None:
            self.planned[task.id] = conversation_id
        self.started.append({"prompt": prompt, "repository": repository, "branch": branch,
                             "title": title, "secrets": dict(secrets or {}), "task": task.id,
                             "conversation_id": conversation_id})
        self._fault("start", after=True)
        return task

    async def resolve(self, start_ids: Sequence[str]) -> dict[str, StartTask | None]:
        out: dict[str, StartTask | None] = {}
        for batch in _batches(list(start_ids), START_TASKS_BATCH):
            self._record("resolve", *batch)
            self._fault("resolve")
            out.update((sid, self.start_tasks.get(sid)) for sid in batch)
        return out

    async def visible(self) -> bool:
        self._record("visible")
        self._fault("visible")
        return bool(self.conversations)

    async def find_start(self, conversation_id: str, since: datetime) -> StartTask | None:
        self._record("find_start", conversation_id)
        self._fault("find_start")
        task = next((t for t, c in self.planned.items() if c == conversation_id), None)
        return self.start_tasks.get(task) if task else None

    async def check(self) -> list[tuple[str, bool, str]]:
        self._record("check")
        self._fault("check")
        return [(Service.OPENHANDS, True, "fake agent")]

    def ready(self, start_id: str, conversation_id: str | None = None,
              state: AgentState | Status = Status.GENERATING) -> str:
        """The start task became a conversation (in `state`, under the id the start asked
        for unless told otherwise); returns its id."""
        cid = conversation_id or self.planned.get(start_id) or uuid.uuid4().hex
        self.start_tasks[start_id] = StartTask(id=start_id, status="READY",
                                               state=Status.GENERATING, conversation_id=cid)
        self.set(cid, state)
        return cid

    def fail_start(self, start_id: str, detail: str = "sandbox failed to start") -> None:
        self.start_tasks[start_id] = StartTask(id=start_id, status="ERROR",
                                               state=Status.FAILED, detail=detail)


@dataclass
class _Tamper:
    mode: str  # corrupt | truncate | html | break
    keep: int | None = None
    exc: BaseException | None = None
    times: int | None = None  # None: every open


HTML_PAGE = b"<!DOCTYPE html><html><head><title>Sign in</title></head><body></body></html>"


class FakeArtifacts(Recorder):
    """`ArtifactSource` over `files` (path -> bytes), with switches that spoil downloads.

    `find` answers as one listing would (one `("find", paths)` call); refs carry the git
    blob sha, or for LFS files (`lfs=True`, or `add(..., lfs=True)`) the pointer's sha and
    the object's sha256. `open` streams `chunk_size` pieces unless `corrupt`, `truncate`,
    `serve_html` or `break_after` says otherwise for that path.
    """

    def __init__(self, files: Mapping[str, bytes] | None = None, *, lfs: bool = False,
                 chunk_size: int = 64 * 1024) -> None:
        super().__init__()
        self.files: dict[str, bytes] = dict(files or {})
        self.lfs = lfs
        self.lfs_of: dict[str, bool] = {}  # per-path choice, over the `lfs` default
        self.missing: set[str] = set()  # LFS pointers whose object the LFS server lacks
        self.chunk_size = chunk_size
        self._tampers: dict[str, _Tamper] = {}

    def add(self, path: str, data: bytes, *, lfs: bool | None = None) -> ArtifactRef:
        self.files[path] = data
        self.missing.discard(path)
        if lfs is not None:
            self.lfs_of[path] = lfs
        return self.ref(path)

    def ref(self, path: str) -> ArtifactRef:
        data = self.files[path]
        if self.lfs_of.get(path, self.lfs):
            return ArtifactRef(path=path, sha=git_blob_sha(lfs_pointer(data)), size=len(data),
                               lfs_oid=hashlib.sha256(data).hexdigest())
        return ArtifactRef(path=path, sha=git_blob_sha(data), size=len(data))

    def missing_object(self, path: str) -> None:
        """The tree holds the LFS pointer of `path` but the LFS server lacks its object (the
        push of the object failed): the listing still shows the file, and every download
        fails as the GitHub adapter fails on a per-object error in the LFS batch answer
        (ArtifactMissing: counted, then the video fails), until `add` commits it again."""
        if path not in self.files:
            raise KeyError(path)
        self.lfs_of[path] = True
        self.missing.add(path)

    def corrupt(self, path: str, *, times: int | None = None) -> None:
        """Flip one byte in the middle: right size, wrong hash."""
        self._tampers[path] = _Tamper("corrupt", times=times)

    def truncate(self, path: str, keep: int | None = None, *, times: int | None = None) -> None:
        """End the body early (after `keep` bytes, default half) without an error."""
        self._tampers[path] = _Tamper("truncate", keep=keep, times=times)

    def serve_html(self, path: str, *, times: int | None = None) -> None:
        """Answer with an HTML page instead of the video (a login or error page)."""
        self._tampers[path] = _Tamper("html", times=times)

    def break_after(self, path: str, nbytes: int, exc: BaseException | None = None, *,
                    times: int | None = None) -> None:
        """Raise `exc` (default ShortBody) after `nbytes` bytes: the connection broke."""
        self._tampers[path] = _Tamper("break", keep=nbytes, exc=exc or ShortBody(), times=times)

    def reset(self) -> None:
        self.reset_calls()
        self.files.clear()
        self.lfs_of.clear()
        self.missing.clear()
        self._tampers.clear()
        self.missing.clear()

    async def find(self, paths: Sequence[str]) -> dict[str, ArtifactRef | None]:
        self._record("find", *paths)
        self._fault("find")
        return {p: self.ref(p) if p in self.files else None for p in paths}

    async def check(self) -> list[tuple[str, bool, str]]:
        self._record("check")
        self._fault("check")
        return [(Service.GITHUB, True, f"fake repository, {len(self.files)} files")]

    def open(self, ref: ArtifactRef) -> AsyncIterator[bytes]:
        self._record("open", ref.path)
        return self._stream(ref)

    def _spoil(self, path: str, data: bytes) -> tuple[bytes, BaseException | None]:
        tamper = self._tampers.get(path)
        if tamper is None:
            return data, None
        if tamper.times is not None:
            tamper.times -= 1
            if tamper.times <= 0:
                del self._tampers[path]
        if tamper.mode == "corrupt":
            middle = len(data) // 2
            return data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1:], None
        if tamper.mode == "html":
            return HTML_PAGE, None
        keep = len(data) // 2 if tamper.keep is None else tamper.keep
        return data[:keep], tamper.exc

    async def _stream(self, ref: ArtifactRef) -> AsyncIterator[bytes]:
        # Faults fire on first iteration: a streaming client sends its request then.
        self._fault("open")
        # What the GitHub adapter raises for a blob that 404s or an LFS object the server
        # lacks: counted by the engine, then the video fails.
        if ref.path not in self.files:
            raise ArtifactMissing(f"github: {ref.path} is listed but its blob is missing")
        if ref.path in self.missing:
            raise ArtifactMissing(f"github: {ref.path}: LFS object {ref.lfs_oid} unavailable: "
                                  "Object does not exist")
        data, exc = self._spoil(ref.path, self.files[ref.path])
        for start in range(0, len(data), self.chunk_size):
            yield data[start:start + self.chunk_size]
            await asyncio.sleep(0)  # let other transfers run, as network reads would
        if exc is not None:
            raise exc
