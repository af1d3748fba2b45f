"""The engine: a pass over the ports (poller), a video's transfer under a lease (transfer),
the pass's bookkeeping, streaming verification, and the commands' domain work (generate,
status, doctor). It never imports httpx; clock and sleep are injected."""

from .config import EngineConfig
from .poller import Poller

__all__ = ["EngineConfig", "Poller"]
