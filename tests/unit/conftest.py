"""The engine on in-memory fakes, with a clock that moves only when told."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import pytest

from videopoll.engine import EngineConfig, Poller
from videopoll.model import AgentState, PassSummary, Status, VideoAsset
from videopoll.testing import FakeAgent, FakeArtifacts, FakeClock, InMemoryStore, fake_mp4


@dataclass
class World:
    clock: FakeClock
    store: InMemoryStore
    agent: FakeAgent
    artifacts: FakeArtifacts
    config: EngineConfig

    def poller(self, owner: str = "poller-1", **changes: object) -> Poller:
        config = EngineConfig(**{**self.config.__dict__, **changes})
        return Poller(self.store, self.agent, self.artifacts, config, owner=owner,
                      clock=self.clock.now, monotonic=self.clock.monotonic)

    async def poll(self, **kwargs: object) -> PassSummary:
        return await self.poller().poll_once(**kwargs)  # type: ignore[arg-type]

    def video(self, agent_state: Status | AgentState | None = Status.GENERATING, *,
              file: bytes | None = None, lfs: bool = False) -> VideoAsset:
        """A row as the app inserts it, its conversation, and (optionally) its file."""
        lesson = self.store.add_lesson(f"Lesson {len(self.store.lessons) + 1}")
        cid = uuid.uuid4().hex
        asset_id = str(uuid.uuid4())
        path = f"videos/{lesson.id}/{asset_id}.mp4"
        self.store.add_asset(lesson.id, conversation_id=cid, github_path=path,
                             asset_id=asset_id)
        if agent_state is not None:
            self.agent.set(cid, agent_state)
        if file is not None:
            self.artifacts.add(path, file, lfs=lfs)
        return self.row(asset_id)

    def row(self, asset_id: str) -> VideoAsset:
        return self.store.rows[asset_id].asset()


@pytest.fixture
def world() -> World:
    clock = FakeClock()
    return World(clock, InMemoryStore(clock.now), FakeAgent(), FakeArtifacts(),
                 EngineConfig(max_generation=3600, artifact_grace=600, max_bytes=10_000_000,
                              concurrency=2, lease=300, max_attempts=3))


MP4 = fake_mp4(200_000, seed=1)
