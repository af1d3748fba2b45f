"""The world the model-based test runs videopoll in, and what is true in it.

One store (in memory, or the local SQLite store), one OpenHands account (`agent`), one
artifacts repository (`artifacts`) and one clock, shared by every process. The world keeps
its own record of each video (`Video`): when it was made, which conversation is its, since
when the agent has called it finished, how many spoiled downloads GitHub served for it, and
every content its path ever held. That record, not the rows, is what the invariants judge the
rows by: the test does not share the engine's picture of the world.
"""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import sqlite3
import uuid
import weakref
from collections import Counter
from collections.abc import AsyncIterator, Coroutine, Generator
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol, cast

from videopoll.engine import EngineConfig, Poller
from videopoll.engine.generate import generate
from videopoll.engine.transfer import object_key
from videopoll.model import AgentState, ArtifactRef, Lesson, PassSummary, Status, VideoAsset
from videopoll.model import normalise_id as normalise
from videopoll.ports import AgentAPI, ArtifactSource, Store
from videopoll.services.local.store import LocalStore
from videopoll.settings import Settings
from videopoll.testing import FakeAgent, FakeArtifacts, FakeClock, InMemoryStore, fake_mp4

from .faults import Fault, Faulty, Killed, Process

CONFIG = EngineConfig(github_dir="videos", max_generation=3600, artifact_grace=600,
                      max_bytes=8192, concurrency=2, lease=300, max_attempts=3)
NOT_FOUND_GRACE = CONFIG.not_found_grace
SETTINGS = Settings(store="local", github_repo="acme/lesson-videos")
AGENT_ERROR = "renderer crashed: out of memory"
PROCESS: contextvars.ContextVar[str | None] = contextvars.ContextVar("process", default=None)


def agent_failed(reason: str = AGENT_ERROR) -> AgentState:
    return AgentState(Status.FAILED, "RUNNING", "error", reason=reason)


@dataclass
class Video:
    """What the world knows of one video row, whatever the row says."""

    asset_id: str
    lesson_id: str
    path: str  # where the agent commits the file (the row's github_path)
    created: datetime
    start_task: str | None = None
    conversation: str | None = None  # the agent's conversation, once there is one
    unsafe: bool = False  # the app inserted an unsafe github_path
    malformed: bool = False  # the app inserted a malformed conversation id
    finished_since: datetime | None = None  # earliest "finished" since creation or retry
    retried: datetime | None = None

    @property
    def age_from(self) -> datetime:
        return max(self.created, self.retried or self.created)


@dataclass(frozen=True)
class PollCmd:
    """A `poll` (or one pass of a `watch`): `owner` "a"/"b" are long-lived watchers,
    "fresh" a new process; `stranger`: configured with another OpenHands account's key."""

    owner: str = "fresh"
    plan: tuple[Fault, ...] = ()
    limit: int | None = None
    dry_run: bool = False
    stranger: bool = False
    seed: int = 0


@dataclass(frozen=True)
class GenerateCmd:
    """A `generate <lesson>` (no --force): `lesson` picks one of the world's lessons."""

    lesson: int = 0
    plan: tuple[Fault, ...] = ()
    seed: int = 0


Command = PollCmd | GenerateCmd


@dataclass
class Outcome:
    """How one process of a step ended: a summary or a row, an exception, or killed."""

    command: Command
    process: Process
    owner: str = ""
    lesson_id: str | None = None
    summary: PassSummary | None = None
    row: VideoAsset | None = None
    error: BaseException | None = None
    killed: bool = False
    leftovers: int = 0  # tasks of the process still running when its command ended

    def pending_seen(self) -> list[VideoAsset]:
        """What `pending()` answered this process (the rows its pass examined)."""
        return next((list(r) for m, _, r in self.process.results if m == "pending"), [])

    def touched(self) -> set[str]:
        """Rows this process sent a store call about (answered or not)."""
        rows = {a[0] for m, a, _ in self.process.results if a and isinstance(a[0], str)}
        rows |= {f.asset_id for f in self.process.fired if f.asset_id}
        return rows


class Backend(Protocol):
    """A store as the world sees it from outside the processes."""

    store: Store

    def add_lesson(self, title: str) -> Lesson: ...
    def add_asset(self, lesson_id: str, *, conversation_id: str | None, github_path: str,
                  asset_id: str) -> str: ...
    async def rows(self) -> dict[str, VideoAsset]: ...
    def objects(self) -> dict[str, bytes]: ...
    async def close(self) -> None: ...


class MemoryBackend:
    def __init__(self, clock: FakeClock) -> None:
        self.memory = InMemoryStore(clock.now)
        self.store: Store = self.memory

    def add_lesson(self, title: str) -> Lesson:
        return self.memory.add_lesson(title)

    def add_asset(self, lesson_id: str, *, conversation_id: str | None, github_path: str,
                  asset_id: str) -> str:
        return self.memory.add_asset(lesson_id, conversation_id=conversation_id,
                                     github_path=github_path, asset_id=asset_id)

    async def rows(self) -> dict[str, VideoAsset]:
        return {i: r.asset() for i, r in self.memory.rows.items() if r.kind == "video"}

    def objects(self) -> dict[str, bytes]:
        return dict(self.memory.objects)

    async def close(self) -> None:
        pass


class LocalBackend:
    def __init__(self, clock: FakeClock, home: Path) -> None:
        self.local = LocalStore(home, clock=clock.now)
        self.store: Store = self.local

    def add_lesson(self, title: str) -> Lesson:
        return self.local.add_lesson(title)

    def add_asset(self, lesson_id: str, *, conversation_id: str | None, github_path: str,
                  asset_id: str) -> str:
        return self.local.add_asset(lesson_id, conversation_id=conversation_id,
                                    github_path=github_path, asset_id=asset_id)

    async def rows(self) -> dict[str, VideoAsset]:
        with closing(sqlite3.connect(self.local.db_path)) as db:
            ids = [r[0] for r in db.execute("select id from lesson_assets where kind='video'")]
        out: dict[str, VideoAsset] = {}
        for asset_id in ids:
            row = await self.local.get(asset_id)
            if row is not None:
                out[asset_id] = row
        return out

    def objects(self) -> dict[str, bytes]:
        root = self.local.bucket_dir
        return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*")
                if p.is_file() and ".part-" not in p.name}

    async def close(self) -> None:
        await self.local.close()


class WorldArtifacts(FakeArtifacts):
    """The artifacts repository, plus what a CDN sometimes does: serve damaged bytes.

    `spoil[path]` downloads of `path` to come arrive with one byte flipped (right size,
    wrong hash), decided when the body starts to flow.
    """

    def __init__(self) -> None:
        super().__init__(chunk_size=1024)
        self.spoil: Counter[str] = Counter()

    def open(self, ref: ArtifactRef) -> AsyncIterator[bytes]:
        return self._spoiled(ref, super().open(ref))

    async def _spoiled(self, ref: ArtifactRef, inner: AsyncIterator[bytes]
                       ) -> AsyncIterator[bytes]:
        first = True
        async for piece in inner:
            if first and self.spoil[ref.path] > 0 and len(piece) > 100:
                self.spoil[ref.path] -= 1
                piece = piece[:100] + bytes([piece[100] ^ 0xFF]) + piece[101:]
            first = False
            yield piece


class World:
    """The shared services, the world's record of every video, and the processes' runner."""

    def __init__(self, backend: Backend, clock: FakeClock) -> None:
        self.clock = clock
        self.backend = backend
        self.agent = FakeAgent()
        self.stranger = FakeAgent()  # another account: knows none of our conversations
        self.artifacts = WorldArtifacts()
        self.videos: dict[str, Video] = {}
        self.lessons: list[str] = []
        self.versions: dict[str, list[bytes]] = {}  # path -> every content it ever held
        self.spoiled: Counter[str] = Counter()  # path -> spoiled downloads since last retry
        self.watchers: dict[str, str] = {"a": "watch-a", "b": "watch-b"}
        self._names = iter(range(1, 1 << 30))
        self._contents = iter(range(1, 1 << 30))
        self._tags: weakref.WeakKeyDictionary[asyncio.Task[Any], str] = \
            weakref.WeakKeyDictionary()

    # -- the world's facts -------------------------------------------------------------------
    def new_content(self, size: int = 3000) -> bytes:
        return fake_mp4(size + next(self._contents) % 7 * 100, seed=next(self._contents))

    def commit(self, path: str, data: bytes, *, lfs: bool = False) -> None:
        """Commit `data` at `path` (a new version GitHub lists)."""
        self.artifacts.add(path, data, lfs=lfs)
        self.versions.setdefault(path, []).append(data)

    def remove(self, path: str) -> None:
        self.artifacts.files.pop(path, None)
        self.artifacts.missing.discard(path)

    def state_of(self, video: Video) -> AgentState | None:
        return self.agent.conversations.get(video.conversation or "")

    def set_state(self, video: Video, state: AgentState | Status | None) -> None:
        if video.conversation is None:
            return
        self.agent.set(video.conversation, state)
        now = self.clock.now()
        finished = state is Status.FINISHED or (isinstance(state, AgentState)
                                                 and state.state is Status.FINISHED)
        if finished and video.finished_since is None:
            video.finished_since = now

    def heard_download(self, ref: ArtifactRef, data: bytes) -> None:
        """A download read to its end: spoiled if its bytes are not the listed ones."""
        digest = hashlib.sha256(data).hexdigest() if ref.lfs_oid else None
        good = digest == ref.lfs_oid if ref.lfs_oid else \
            hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest() == ref.sha
        if len(data) == ref.size and not good:
            self.spoiled[ref.path] += 1

    def learn(self, rows: dict[str, VideoAsset]) -> None:
        """Rows the world has not met yet were inserted by `generate`. Which start task
        serves a row is the agent's to say: the one whose start asked for the conversation
        id the row was written with (generate writes the row first), else the row's own."""
        by_conversation = {cid: task for task, cid in self.agent.planned.items()}
        for asset_id, row in rows.items():
            if asset_id not in self.videos:
                self.videos[asset_id] = Video(asset_id, row.lesson_id, row.github_path or "",
                                              row.created_at, start_task=row.start_task_id)
            video = self.videos[asset_id]
            if video.start_task is None:
                video.start_task = by_conversation.get(row.conversation_id or "") \
                    or row.start_task_id

    def video_for_task(self, start_id: str) -> Video | None:
        return next((v for v in self.videos.values() if v.start_task == start_id), None)

    # -- seeding -------------------------------------------------------------------------------
    def lesson(self) -> str:
        lesson = self.backend.add_lesson(f"Lesson {len(self.lessons) + 1}")
        self.lessons.append(lesson.id)
        return lesson.id

    def app_row(self, *, unsafe: bool = False, malformed: bool = False) -> Video:
        """A row as the app (the old system) inserts it: a running conversation, a path."""
        lesson_id = self.lesson()
        asset_id = str(uuid.uuid4())
        path = f"videos/{lesson_id}/{asset_id}.mp4"
        if unsafe:
            path = f"videos/../{lesson_id}/{asset_id}.mp4"
        conversation = uuid.uuid4().hex
        carried = conversation[:20] if malformed else conversation
        self.backend.add_asset(lesson_id, conversation_id=carried, github_path=path,
                               asset_id=asset_id)
        video = Video(asset_id, lesson_id, path, self.clock.now(), conversation=conversation,
                      unsafe=unsafe, malformed=malformed)
        self.videos[asset_id] = video
        self.agent.set(conversation, Status.GENERATING)
        return video

    # -- processes -------------------------------------------------------------------------
    def execute(self, commands: list[Command]) -> list[Outcome]:
        """Run the commands as concurrent processes; each ends as a real one would."""
        return asyncio.run(self._execute(commands))

    async def _execute(self, commands: list[Command]) -> list[Outcome]:
        loop = asyncio.get_running_loop()
        loop.set_task_factory(cast(Any, self._task_factory))
        used: set[str] = set()
        outcomes = []
        for command in commands:
            owner = self._owner(command, used)
            outcomes.append(self._process(command, owner))
        return list(await asyncio.gather(*outcomes))

    def _owner(self, command: Command, used: set[str]) -> str:
        key = command.owner if isinstance(command, PollCmd) else "fresh"
        owner = self.watchers.get(key, "")
        if not owner or owner in used:
            owner = f"poller-{next(self._names)}"
        used.add(owner)
        return owner

    def _task_factory(self, loop: asyncio.AbstractEventLoop,
                      coro: Coroutine[Any, Any, Any] | Generator[Any, None, Any],
                      context: contextvars.Context | None = None) -> asyncio.Task[Any]:
        """Tags each task with the process that made it, so a process's leftovers can be
        ended with it (as `asyncio.run` ends them when a real process exits)."""
        task: asyncio.Task[Any] = asyncio.Task(coro, loop=loop, context=context)
        name = context.get(PROCESS) if context is not None else PROCESS.get()
        if name is not None:
            self._tags[task] = name
        return task

    async def _process(self, command: Command, owner: str) -> Outcome:
        process = Process(owner, self.clock, command.plan, seed=command.seed,
                          on_download=self.heard_download)
        outcome = Outcome(command, process, owner)
        context = contextvars.copy_context()
        context.run(PROCESS.set, owner)
        task = asyncio.get_running_loop().create_task(self._command(outcome), context=context)
        try:
            await task
        except Killed:
            outcome.killed = True
            for key, name in list(self.watchers.items()):
                if name == owner:  # a killed watcher is restarted as a new process
                    self.watchers[key] = f"watch-{key}{next(self._names)}"
        except Exception as exc:
            outcome.error = exc
        finally:
            left = [t for t, n in list(self._tags.items())
                    if n == owner and t is not task and not t.done()]
            outcome.leftovers = len(left)
            for straggler in left:
                straggler.cancel()
            await asyncio.gather(*left, return_exceptions=True)
        return outcome

    async def _command(self, outcome: Outcome) -> None:
        command, process = outcome.command, outcome.process
        store = cast(Store, Faulty(self.backend.store, process))
        agent = cast(AgentAPI, Faulty(self.stranger if isinstance(command, PollCmd)
                                      and command.stranger else self.agent, process))
        if isinstance(command, GenerateCmd):
            lesson_id = self.lessons[command.lesson % len(self.lessons)]
            outcome.lesson_id = lesson_id
            outcome.row = await generate(store, agent, SETTINGS, lesson_id)
            return
        artifacts = cast(ArtifactSource, Faulty(self.artifacts, process))
        poller = Poller(store, agent, artifacts, CONFIG, owner=outcome.owner,
                        clock=self.clock.now, monotonic=self.clock.monotonic)
        outcome.summary = await poller.poll_once(limit=command.limit,
                                                 dry_run=command.dry_run)


def new_world(kind: str, home: Path | None = None) -> World:
    clock = FakeClock()
    backend: Backend
    if kind == "local":
        assert home is not None
        backend = LocalBackend(clock, home)
    else:
        backend = MemoryBackend(clock)
    return World(backend, clock)


def malformed(conversation_id: str | None) -> bool:
    return normalise(conversation_id or "") is None


__all__ = ["CONFIG", "Command", "GenerateCmd", "Outcome", "PollCmd", "Video", "World",
           "new_world", "object_key"]
