"""How the engine is tuned: the settings it runs on, apart from where they come from."""

from __future__ import annotations

from dataclasses import dataclass

NOT_FOUND_GRACE = 300.0  # an id OpenHands does not know yet: give it five minutes


@dataclass(frozen=True)
class EngineConfig:
    github_dir: str = "videos"
    max_generation: float = 3600.0
    artifact_grace: float = 600.0
    not_found_grace: float = NOT_FOUND_GRACE
    max_bytes: int = 2 * 1024**3
    concurrency: int = 8  # GitHub downloads at once (settings.py says why 8 is safe)
    lease: float = 300.0
    max_attempts: int = 3
    # How long a row's write may wait for others to share its batch (engine/writes.py):
    # longer means fewer store requests when transfers end close together, never a later
    # decision than this.
    write_linger: float = 0.25
    # A failure whose reason arrives after the pass's decisions were written waits this long
    # for the next batch (the ready marks of the pass's transfers) rather than costing a
    # store request of its own.
    late_linger: float = 1.0
    # On the way out (Ctrl+C, SIGTERM, refused credentials) this pass's claims are handed
    # back in one request, bounded so that an exit never hangs on an unreachable store.
    hand_back_timeout: float = 5.0
    # Agent requests a pass leaves unspent for its follow-ups (start tasks, error reasons,
    # events pages) when the rate budget decides how many rows it asks about.
    agent_reserve: int = 10
