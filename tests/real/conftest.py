"""The `real` tier: videopoll against the pinned real servers (tests/real/versions.env).

scripts/real-setup installs them and tells these fixtures where (VIDEOPOLL_REAL_*); without
that, every test here is skipped with one line saying why. The servers are started once per
module and torn down at its end, processes included.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from videopoll.cli import run
from videopoll.sandbox.github import GitHubStandIn

from ..cli.conftest import LocalSeed, Result
from .openhands_server import REPOSITORY, RealOpenHands
from .tus_server import RealTus

# Read at import: the autouse `hermetic` fixture removes VIDEOPOLL_* variables from each test.
_SETUP = {name: os.environ.get(name, "") for name in (
    "VIDEOPOLL_REAL_SKIP", "VIDEOPOLL_REAL_OPENHANDS_PYTHON", "VIDEOPOLL_REAL_TUS_DIR")}


def _setup(variable: str) -> str:
    if reason := _SETUP["VIDEOPOLL_REAL_SKIP"]:
        pytest.skip(f"real tier: {reason}")
    if not (value := _SETUP[variable]):
        pytest.skip("real tier not set up: scripts/test --real installs the real servers")
    return value


@pytest.fixture(autouse=True)
def no_backoff() -> Iterator[None]:
    """Real waits: the real servers' Retry-After and rate windows are in real seconds."""
    yield


@pytest.fixture(scope="module")
def openhands(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealOpenHands]:
    python = _setup("VIDEOPOLL_REAL_OPENHANDS_PYTHON")
    server = RealOpenHands(python, tmp_path_factory.mktemp("openhands")).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def tus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealTus]:
    modules = _setup("VIDEOPOLL_REAL_TUS_DIR")
    server = RealTus(Path(modules), tmp_path_factory.mktemp("tus")).start()
    try:
        yield server
    finally:
        server.stop()


@dataclass
class World:
    """videopoll's CLI pointed at the real app server, the GitHub stand-in and a local store."""

    openhands: RealOpenHands
    github: GitHubStandIn
    github_token: str
    seed: LocalSeed
    monkeypatch: pytest.MonkeyPatch
    capsys: pytest.CaptureFixture[str]
    gemini_key: str

    def env(self) -> dict[str, str]:
        return {"OPENHANDS_BASE_URL": self.openhands.url, "OPENHANDS_API_KEY": self.openhands.key,
                "OPENHANDS_AUTH": "session", "GITHUB_TOKEN": self.github_token,
                "GITHUB_API_URL": self.github.url, "VIDEOPOLL_GITHUB_REPO": REPOSITORY,
                "GEMINI_API_KEY": self.gemini_key, **self.seed.env()}

    def start_task(self, asset_id: str) -> str:
        """The start task `generate` recorded on the row."""
        row = asyncio.run(self.seed.store.get(asset_id))
        assert row is not None and row.start_task_id, asset_id
        return row.start_task_id

    def cli(self, *args: str, **env: str) -> Result:
        with self.monkeypatch.context() as patch:
            for name, value in {**self.env(), **env}.items():
                patch.setenv(name, value)
            self.capsys.readouterr()
            code = run(list(args))
            captured = self.capsys.readouterr()
        return Result(code, captured.out, captured.err)


@pytest.fixture
def world(openhands: RealOpenHands, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
          capsys: pytest.CaptureFixture[str]) -> Iterator[World]:
    token = "ghp_" + secrets.token_hex(12)
    github = GitHubStandIn(tokens={token: [REPOSITORY]})
    github.add_repo(REPOSITORY, private=True)
    seed = LocalSeed(tmp_path / "home")
    with github:
        yield World(openhands, github, token, seed, monkeypatch, capsys,
                    "gem-" + secrets.token_hex(12))
    seed.close()
