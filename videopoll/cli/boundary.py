"""The command line: parse, wire, call the engine, render. `run()` is the one error boundary."""

from __future__ import annotations

import asyncio
import errno
import os
import signal
import sys
import threading
import traceback
from collections.abc import Coroutine, Sequence
from typing import Annotated, Any, TypeVar

import typer

from .. import __version__
from ..errors import ConfigError, Interrupted, VideopollError
from ..settings import Settings, from_env
from ..ui.console import Output

T = TypeVar("T")
# A full or failing disk is the machine's trouble, not a configuration error.
DISK_FAULTS = frozenset({errno.ENOSPC, errno.EIO, errno.EDQUOT, errno.EROFS})

app = typer.Typer(
    name="videopoll",
    no_args_is_help=True,
    pretty_exceptions_enable=False,  # never print locals: they hold tokens
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)

Json = Annotated[bool, typer.Option("--json", help="Print JSON to stdout.")]
Limit = Annotated[int | None, typer.Option("--limit", min=1, help="At most N rows.")]
ALL = frozenset({"store", "openhands", "github"})
STORE = frozenset({"store"})


def _version(value: bool) -> None:
    if value:
        typer.echo(f"videopoll {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Show the version and exit.")] = False,
) -> None:
    """Move AI-generated lesson videos from OpenHands + GitHub into Supabase Storage.

    Exit codes: 0 ran, 1 errors during the run, 2 usage or configuration, 3 credentials
    refused, 130 interrupted. Configuration: environment variables, then ./.env.
    """


def load_settings(out: Output, **overrides: Any) -> Settings:
    """Settings from the environment, `.env` and flags; their credentials go to `out`'s
    scrubber before anything can print them."""
    settings = from_env().with_overrides(**overrides)
    out.scrub.learn(settings.secrets())
    return settings


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run a command's coroutine. Ctrl+C (SIGINT) and SIGTERM cancel it; its clean-up runs
    (a transfer in flight is abandoned unfinished, its claim left to expire), then exit 130."""
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


def run(argv: Sequence[str] | None = None) -> int:
    """Parse and run one command; map every videopoll exception to a line and an exit code.

    Typer (click) handles --help and usage errors itself (exit 2); everything videopoll
    raises arrives here, is printed as one scrubbed line, and becomes its exit code.
    """
    from . import commands  # noqa: F401  (registers the commands on `app`)

    args = list(sys.argv[1:] if argv is None else argv)
    out = Output.for_args(args)
    try:
        with out.logging():
            app(args=args, prog_name="videopoll")
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except VideopollError as exc:
        return out.fail(exc)
    except KeyboardInterrupt:
        return out.fail(Interrupted("interrupted"))
    except OSError as exc:
        if os.environ.get("VIDEOPOLL_DEBUG"):
            out.raw(traceback.format_exc().rstrip())
        if exc.errno in DISK_FAULTS:  # the machine, not the configuration: exit 1
            from ..services.local.schema import disk_error

            return out.fail(disk_error(exc, "writing a local file"))
        return out.fail(ConfigError(f"{type(exc).__name__}: {exc.strerror or exc}"))
    except Exception as exc:  # a bug: one scrubbed line; the traceback only when asked for
        if os.environ.get("VIDEOPOLL_DEBUG"):
            out.raw(traceback.format_exc().rstrip())
        return out.fail(VideopollError(f"internal error: {type(exc).__name__}: {exc}",
                                       hint="run again with VIDEOPOLL_DEBUG=1 for a traceback"))
    return 0


def finish(code: int) -> None:
    """End a command with an exit code (Typer ignores return values)."""
    if code:
        raise typer.Exit(code)


def main() -> None:
    sys.exit(run())
