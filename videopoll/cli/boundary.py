"""The one error boundary: `run(argv)` parses and runs a command and turns every videopoll
exception into one scrubbed line and its exit code; `main()` is the console script."""

from __future__ import annotations

import atexit
import errno
import io
import os
import sys
import threading
import traceback
from collections.abc import Sequence
from typing import NoReturn, TypeVar

import typer

from ..errors import ConfigError, Interrupted, UsageError, VideopollError
from ..ui.console import Output
from .app import app

T = TypeVar("T")
# A full or failing disk is the machine's trouble, not a configuration error.
DISK_FAULTS = frozenset({errno.ENOSPC, errno.EIO, errno.EDQUOT, errno.EROFS})


def run(argv: Sequence[str] | None = None) -> int:
    """Parse and run one command; map every videopoll exception to a line and an exit code.

    Typer (click) handles --help itself; its usage errors (exit 2) and everything videopoll
    raises arrive here, are printed scrubbed (an error object too under --json, a record
    under --log-format) and become the exit code.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    out = Output.for_args(args)
    try:
        with out.logging():
            # Not standalone: click's usage errors come here, to be shown in click's words
            # and, under --json, as an error object too.
            code = app(args=args, prog_name="videopoll", standalone_mode=False)
            return code if isinstance(code, int) else 0
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except CLICK_ERROR as exc:
        return usage_error(out, exc)
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


def _click_class(name: str) -> type[Exception]:
    """click's exception class by name. Typer re-exports only some of them, and newer Typer
    releases vendor click (typer._click) while older ones use click itself; BadParameter,
    which every release exports, has the others among its bases."""
    return next(c for c in typer.BadParameter.__mro__ if c.__name__ == name)


CLICK_ERROR = _click_class("ClickException")


def usage_error(out: Output, exc: Exception) -> int:
    """A usage error as click words it (the usage line, the problem, where help is), and
    under --json also as an error object with code `usage`."""
    shown = io.StringIO()
    exc.show(file=shown)  # type: ignore[attr-defined]  # ClickException.show
    context = getattr(exc, "ctx", None)
    where = getattr(context, "command_path", None) or "videopoll"
    error = UsageError(exc.format_message(),  # type: ignore[attr-defined]
                       hint=f"see `{where} --help`")
    error.exit_code = int(getattr(exc, "exit_code", 2))
    return out.fail(error, said=shown.getvalue().rstrip())


def main() -> NoReturn:
    """The `videopoll` command: run, then leave without tearing the interpreter down."""
    # Every client speaks HTTP/1.1 only (services/http.py: pooled HTTP/2 connections go
    # stale behind Supabase's gateway), yet httpcore imports h2 wherever it is installed
    # (postgrest's httpx[http2] installs it): ~10 ms of every start for nothing. Only in
    # this process: whatever imports videopoll as a library keeps its h2.
    sys.modules.setdefault("h2", None)  # type: ignore[arg-type]  # "import h2" fails fast
    exit_now(run())


def exit_now(code: int) -> NoReturn:
    """Exit at once: by now every command has closed its clients, its store and its files,
    and unloading a few hundred modules one by one costs every cron line some 40 ms of
    nothing. What an exit must still do is done: atexit handlers run (logging's flush among
    them) and the standard streams are flushed (a flush that fails exits 120, as Python's
    own exit would). With another thread still running, the normal exit, which waits for
    it, is taken."""
    if threading.active_count() > 1:
        sys.exit(code)
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (`| head`), a closed stream
            code = code or 120
    os._exit(code)
