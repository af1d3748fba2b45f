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
    concurrency: int = 4
    lease: float = 300.0
    max_attempts: int = 3
    writes_in_flight: int = 16  # row decisions at once (the store's connection pool size)
