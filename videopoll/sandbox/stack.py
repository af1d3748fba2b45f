"""The stand-ins wired together: OpenHands with a simulated agent that commits into the
GitHub stand-in, its LFS object host, and the settings that point videopoll at them."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .agent import SimulatedAgent
from .github import GitHubStandIn
from .mp4 import make_mp4
from .openhands import OpenHandsStandIn

REPO = "demo-org/video-artifacts"


class Sandbox:
    """OpenHands + GitHub stand-ins on loopback, with one private artifacts repository.

    Tokens are fresh random strings each time, so tests can look for them in any output.
    `fail_when(title, prompt)` makes the simulated agent fail a conversation (the reason it
    returns becomes the agent's error).
    """

    def __init__(self, *, step: float = 0.2, run: float = 1.0,
                 fail_when: Callable[[str | None, str], str | None] | None = None,
                 make_video: Callable[[str], bytes] | None = None,
                 openhands: dict[str, Any] | None = None,
                 github: dict[str, Any] | None = None) -> None:
        self.openhands_key = "oh-" + secrets.token_hex(12)
        self.github_token = "ghp_" + secrets.token_hex(12)
        self.repo = REPO
        self.github = GitHubStandIn(tokens={self.github_token: [REPO]}, **(github or {}))
        self.github.add_repo(REPO, private=True)
        self.agent = SimulatedAgent(commit=self._commit, step=step, run=run,
                                    fail_when=fail_when,
                                    make_video=make_video or (lambda title: make_mp4(title)))
        self.openhands = OpenHandsStandIn(api_key=self.openhands_key, agent=self.agent,
                                          **(openhands or {}))

    def _commit(self, repository: str, branch: str, path: str, data: bytes) -> None:
        self.github.put_file(repository, path, data, branch=branch)

    def start(self) -> Sandbox:
        self.github.start()
        self.openhands.start()
        return self

    def stop(self) -> None:
        self.openhands.stop()
        self.github.stop()

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def env(self, home: Path | None = None) -> dict[str, str]:
        """Environment variables that point videopoll at this sandbox (local store)."""
        env = {
            "OPENHANDS_API_KEY": self.openhands_key,
            "OPENHANDS_BASE_URL": self.openhands.url,
            "GITHUB_TOKEN": self.github_token,
            "GITHUB_API_URL": self.github.url,
            "VIDEOPOLL_GITHUB_REPO": self.repo,
            "VIDEOPOLL_STORE": "local",
        }
        if (rate := self.openhands.client_rate()) is not None:
            env["VIDEOPOLL_OPENHANDS_RATE"] = rate  # the client paces itself to the stand-in
        if home is not None:
            env["VIDEOPOLL_HOME"] = str(home)
        return env

    def counts(self) -> dict[str, int]:
        """Requests per service so far (what `calls` in a summary should add up to)."""
        return {"openhands": self.openhands.total(),
                "github": self.github.total() + self.github.objects.total()}
