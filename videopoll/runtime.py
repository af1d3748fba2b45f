"""Wiring: Settings -> one httpx client per service -> adapters -> the engine.

Each command opens a Runtime with the services it needs; nothing else reads Settings, and
every client is closed when the command ends (supabase-py never closes its own: #1075).
"""

from __future__ import annotations

import os
import socket
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

import httpx

from .engine import EngineConfig, Poller
from .model import Service
from .ports import AgentAPI, ArtifactSource, Store
from .services.http import make_client
from .services.pacing import RatePacer
from .services.retry import Budget, Repeatable, idempotent
from .settings import Settings


def utcnow() -> datetime:
    return datetime.now(UTC)


def owner_id() -> str:
    """Who holds a claim: readable in the table, unique per process."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class NoState:
    """The state cache of a command that opened no store (`doctor` on a home without one):
    GitHub's listing is asked for without an ETag, and nothing is kept."""

    async def get_state(self, key: str) -> dict[str, Any] | None:
        return None

    async def set_state(self, key: str, value: dict[str, Any]) -> None:
        return None

    async def flush(self) -> None:
        return None


class Runtime:
    """The adapters one command needs, over clients that share counters and a budget."""

    def __init__(self, settings: Settings, *, need: frozenset[Service],
                 transports: Mapping[str, httpx.AsyncBaseTransport] | None = None,
                 create_store: bool = True) -> None:
        settings.require(*sorted(need))
        self.settings = settings
        self.need = need
        self.create_store = create_store  # False: `doctor` without --fix writes nothing
        self.calls: Counter[str] = Counter({s: 0 for s in Service if s in need})
        self.budget = Budget(max_wait=min(30.0, settings.interval))
        self.transports = dict(transports or {})
        self.owner = owner_id()
        self._stack = AsyncExitStack()
        self._store: Store | None = None
        self._agent: AgentAPI | None = None
        self._artifacts: ArtifactSource | None = None

    def client(self, service: Service, base_url: str, headers: Mapping[str, str] | None = None,
               *, max_connections: int = 10, repeatable: Repeatable = idempotent,
               pacer: RatePacer | None = None) -> httpx.AsyncClient:
        client = make_client(service, base_url, calls=self.calls, budget=self.budget,
                             repeatable=repeatable, headers=headers,
                             timeout=self.settings.timeout,
                             transport=self.transports.get(service),
                             max_connections=max_connections, pacer=pacer)
        self._stack.push_async_callback(client.aclose)
        return client

    async def __aenter__(self) -> Runtime:
        if Service.STORE in self.need:
            try:
                self._store = await self._open_store()
            except BaseException:  # no __aexit__ follows a failed __aenter__: close here
                await self._stack.aclose()
                raise
        return self

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self._stack.aclose()

    async def _open_store(self) -> Store:
        s = self.settings
        if s.store == "local":
            from .services.local.store import LocalStore

            local = LocalStore(s.home, bucket=s.bucket, create=self.create_store)
            self._stack.push_async_callback(local.close)
            return local
        from .services.supabase.store import SupabaseStore, repeatable  # heavy: only when used

        assert s.supabase_url is not None and s.supabase_key is not None  # require() ran
        # Row writes of a pass go out in batches (engine/writes.py); what runs at once is the
        # uploads, a lease renewal for each, and a batch or two.
        client = self.client(Service.STORE, s.supabase_url,
                             max_connections=max(16, s.concurrency * 4), repeatable=repeatable)
        store = await SupabaseStore.connect(client, url=s.supabase_url,
                                            key=s.supabase_key.get(), bucket=s.bucket)
        self._stack.push_async_callback(store.close)
        return store

    @property
    def store(self) -> Store:
        assert self._store is not None, "runtime opened without the store"
        return self._store

    @property
    def agent(self) -> AgentAPI:
        if self._agent is None:
            from .services.openhands import OpenHandsAgent, auth_headers

            s = self.settings
            assert s.openhands_api_key is not None
            # One pacer for the Runtime's life: every pass of `watch` spends the same budget.
            pacer = RatePacer(s.openhands_rate)
            client = self.client(Service.OPENHANDS, s.openhands_base_url,
                                 auth_headers(s.openhands_api_key.get(), s.openhands_auth),
                                 pacer=pacer)
            self._agent = OpenHandsAgent(client, pacer=pacer)
        return self._agent

    @property
    def artifacts(self) -> ArtifactSource:
        if self._artifacts is None:
            from .services.github import GitHubArtifacts, github_headers, repeatable

            s = self.settings
            assert s.github_token is not None and s.github_repo is not None
            # Few connections: GitHub asks for serial requests (secondary rate limits).
            api = self.client(Service.GITHUB, s.github_api_url,
                              github_headers(s.github_token.get()),
                              max_connections=max(2, s.concurrency), repeatable=repeatable)
            downloads = self.client(Service.GITHUB, "", max_connections=max(2, s.concurrency),
                                    repeatable=repeatable)
            self._artifacts = GitHubArtifacts(
                api, downloads, repo=s.github_repo, ref=s.github_ref, directory=s.github_dir,
                lfs_url=s.github_lfs_url, token=s.github_token.get(),
                state=self._store if self._store is not None else NoState())
        return self._artifacts

    def engine_config(self) -> EngineConfig:
        s = self.settings
        return EngineConfig(github_dir=s.github_dir, max_generation=s.max_generation,
                            artifact_grace=s.artifact_grace, max_bytes=s.max_bytes,
                            concurrency=s.concurrency, lease=s.lease,
                            max_attempts=s.max_attempts)

    def poller(self, progress: Callable[[str, int, int], None] | None = None) -> Poller:
        return Poller(self.store, self.agent, self.artifacts, self.engine_config(),
                      owner=self.owner, clock=utcnow, calls=self.calls, progress=progress,
                      before_pass=self.budget.reset)
