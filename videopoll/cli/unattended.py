"""What unattended runs need: a lock so overlapping cron runs skip, and a dead-man's switch.

The lock only saves work: claims in the store already make overlapping passes safe.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from ..errors import ConfigError
from ..services.http import USER_AGENT
from ..ui.console import Output


@contextmanager
def pass_lock(path: Path | None) -> Iterator[bool]:
    """Hold an exclusive, non-blocking flock on `path`; yields False when another run has it.
    The kernel drops the lock when the process dies, so a crash never leaves it stuck.

    The file is opened without following a symlink (in a shared directory anyone could plant
    one pointing at a file of ours) and never truncated: only a file this call creates gets
    our pid written into it.
    """
    if path is None:
        yield True
        return
    flags = os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW
    try:
        try:
            fd, created = os.open(path, flags | os.O_CREAT | os.O_EXCL, 0o600), True
        except FileExistsError:
            fd, created = os.open(path, flags), False
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ConfigError(f"--lock {path} is a symbolic link; refusing to follow it",
                              hint="use a path in a directory only you can write, e.g. "
                                   "~/.cache/videopoll.lock") from None
        raise ConfigError(f"--lock {path}: {exc.strerror}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ConfigError(f"--lock {path} is not a regular file")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        if created:
            os.write(fd, f"{os.getpid()}\n".encode())
        yield True
    finally:
        os.close(fd)


class Pinger:
    """healthchecks.io-style pings: `/start`, then the bare URL on success, `/fail` or
    `/<exit code>` otherwise. A ping that fails is reported and never fails the pass."""

    def __init__(self, url: str | None, *, scrub: Callable[[str], str],
                 timeout: float = 10.0, transport: httpx.BaseTransport | None = None) -> None:
        self.url = url.rstrip("/") if url else None
        self.scrub = scrub  # the body quotes error messages, which may quote a service
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
                client.post(target, content=self.scrub(body).encode()[:10_000]
                            ).raise_for_status()
        except httpx.HTTPError as exc:
            # Ping URLs carry their check's secret in the path: name the host only.
            host = httpx.URL(target).host
            self.problems.append(f"ping to {host} failed ({type(exc).__name__})")

    def start(self) -> None:
        self._send("/start")

    def finish(self, code: int, body: str = "") -> None:
        self._send("" if code == 0 else f"/{code}", body)

    def report(self, out: Output) -> None:
        """Say on stderr which pings failed (they never fail the pass)."""
        for problem in self.problems:
            out.say(problem)
