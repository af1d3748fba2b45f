"""The one error boundary: `run(argv)` parses and runs a command and turns every videopoll
exception into one scrubbed line and its exit code; `main()` is the console script."""

from __future__ import annotations

import errno
import os
import sys
import traceback
from collections.abc import Sequence
from typing import TypeVar

from ..errors import ConfigError, Interrupted, VideopollError
from ..ui.console import Output
from .app import app

T = TypeVar("T")
# A full or failing disk is the machine's trouble, not a configuration error.
DISK_FAULTS = frozenset({errno.ENOSPC, errno.EIO, errno.EDQUOT, errno.EROFS})


def run(argv: Sequence[str] | None = None) -> int:
    """Parse and run one command; map every videopoll exception to a line and an exit code.

    Typer (click) handles --help and usage errors itself (exit 2); everything videopoll
    raises arrives here, is printed as one scrubbed line, and becomes its exit code.
    """
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


def main() -> None:
    sys.exit(run())
