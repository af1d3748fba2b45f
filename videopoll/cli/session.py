"""What every command does around its own work, written once: its Output, its Settings (their
credentials handed to the scrubber first), the Runtime with the services it needs, signal
handling, and one exit code."""

from __future__ import annotations

import asyncio
import signal
import sys
import threading
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

import typer

from ..errors import AuthError, Interrupted
from ..model import Service
from ..runtime import Runtime
from ..settings import Settings, from_env
from ..ui.console import LogStyle, Output

T = TypeVar("T")
ALL = frozenset(Service)
STORE = frozenset({Service.STORE})


@dataclass
class Session:
    """One command run: where it prints, and what it was configured with."""

    out: Output
    settings: Settings

    @classmethod
    def start(cls, *, json: bool = False, log_format: LogStyle | None = None,
              **overrides: Any) -> Session:
        out = Output(json_mode=json, log_format=log_format)
        settings = from_env().with_overrides(**overrides)
        out.scrub.learn(settings.secrets())
        return cls(out, settings)

    def run(self, need: frozenset[Service], work: Callable[[Runtime], Awaitable[T]]) -> T:
        """`work` on a Runtime holding the services `need` (all closed afterwards), under
        the signal handling of `run_async`."""

        async def go() -> T:
            async with Runtime(self.settings, need=need) as rt:
                return await work(rt)

        try:
            return run_async(go())
        except AuthError as exc:  # name the variable to fix, wherever the refusal came from
            exc.hint = exc.hint or self.settings.refused_hint(exc.service)
            raise


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run a command's coroutine. Ctrl+C (SIGINT) and SIGTERM cancel it; its clean-up runs
    (a transfer in flight hands its claim back), then exit 130."""
    terminated = False

    async def main() -> T:
        task = asyncio.current_task()
        assert task is not None

        def terminate() -> None:
            nonlocal terminated
            terminated = True
            task.cancel()

        loop = asyncio.get_running_loop()
        # Signal handlers exist only on POSIX and only in the main thread (not under tests'
        # worker threads, for instance); elsewhere SIGTERM keeps its default.
        handled = sys.platform != "win32" and threading.current_thread() is threading.main_thread()
        if handled:
            loop.add_signal_handler(signal.SIGTERM, terminate)
        try:
            return await coro
        except asyncio.CancelledError:
            if terminated:
                raise Interrupted("terminated") from None
            raise
        finally:
            if handled:
                loop.remove_signal_handler(signal.SIGTERM)

    try:
        return asyncio.run(main())
    except KeyboardInterrupt:
        raise Interrupted("interrupted") from None


def finish(code: int) -> None:
    """End a command with an exit code (Typer ignores return values)."""
    if code:
        raise typer.Exit(code)
