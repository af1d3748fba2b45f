"""What unattended runs need: a lock so overlapping cron runs skip, and a dead-man's switch.

The lock only saves work: claims in the store already make overlapping passes safe.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import httpx

from .errors import ConfigError
from .services.http import USER_AGENT


@contextmanager
def pass_lock(path: Path | None) -> Iterator[bool]:
    """Hold an exclusive, non-blocking flock on `path`; yields False when another run has it.
    The kernel drops the lock when the process dies, so a crash never leaves it stuck."""
    if path is None:
        yield True
        return
    try:
        handle: IO[str] = open(path, "a+")  # noqa: SIM115 - held for the whole pass
    except OSError as exc:
        raise ConfigError(f"--lock {path}: {exc.strerror}") from None
    try:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        yield True
    finally:
        handle.close()


class Pinger:
    """healthchecks.io-style pings: `/start`, then the bare URL on success, `/fail` or
    `/<exit code>` otherwise. A ping that fails is reported and never fails the pass."""

    def __init__(self, url: str | None, *, timeout: float = 10.0,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.url = url.rstrip("/") if url else None
        self.timeout = timeout
        self.transport = transport
        self.problems: list[str] = []

    def _send(self, suffix: str, body: str = "") -> None:
        if not self.url:
            return
        target = self.url + suffix
        try:
            with httpx.Client(timeout=self.timeout, transport=self.transport,
                              headers={"User-Agent": USER_AGENT}) as client:
                client.post(target, content=body.encode()[:10_000]).raise_for_status()
        except httpx.HTTPError as exc:
            # Ping URLs carry their check's secret in the path: name the host only.
            host = httpx.URL(target).host
            self.problems.append(f"ping to {host} failed ({type(exc).__name__})")

    def start(self) -> None:
        self._send("/start")

    def finish(self, code: int, body: str = "") -> None:
        self._send("" if code == 0 else f"/{code}", body)
