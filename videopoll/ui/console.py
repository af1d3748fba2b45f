"""Where things are printed: data to stdout, chatter and errors to stderr, secrets nowhere."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import sys
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from enum import StrEnum
from functools import cached_property
from typing import TYPE_CHECKING, Any, TextIO

from ..errors import VideopollError
from ..model import iso
from ..settings import env_file_path, read_env_file, scrub_order, secret_values

if TYPE_CHECKING:
    from rich.console import Console, RenderableType

    from ..reports import Report


class Scrubber:
    """The one place that keeps credentials out of what leaves the process: stdout, stderr,
    log records, `--json`, the ping body, the GitHub Actions step summary and annotations,
    debug tracebacks. Every writer goes through one of these.

    It starts with the credentials of the environment and `.env` (read once, so an error
    raised before Settings exist is scrubbed too) and learns those of the Settings in use.
    """

    def __init__(self, values: Sequence[str] = ()) -> None:
        self._values = scrub_order(values)

    @classmethod
    def from_environment(cls) -> Scrubber:
        values = secret_values(os.environ)
        path, _ = env_file_path(os.environ)
        if path.is_file():  # what does not parse is reported by Settings, not here
            values += secret_values(read_env_file(path, strict=False))
        return cls(values)

    def learn(self, values: Sequence[str]) -> None:
        self._values = scrub_order([*self._values, *values])

    def __call__(self, text: str) -> str:
        for value in self._values:
            if value in text:
                text = text.replace(value, "***")
        return text

    def data(self, value: Any) -> Any:
        """A JSON-able structure with every string scrubbed (before serialising, so a
        secret is found even where JSON would escape some of its characters)."""
        if isinstance(value, str):
            return self(value)
        if isinstance(value, dict):
            return {self(str(k)): self.data(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.data(v) for v in value]
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            # A result before it is rendered: its strings scrubbed where they are, so no
            # table can fold a secret across two lines before the text is scrubbed.
            return dataclasses.replace(value, **{f.name: self.data(getattr(value, f.name))
                                                 for f in dataclasses.fields(value) if f.init})
        return value


class LogStyle(StrEnum):
    """`--log-format`: how log records are written to stderr."""

    TEXT = "text"
    JSON = "json"


def write_record(stream: TextIO, style: LogStyle, scrub: Scrubber, level: str, message: str,
                 **fields: Any) -> None:
    """One log record on one line: JSON (`ts`, `level`, `msg`, then the fields) or text."""
    now = iso(datetime.now(UTC))
    if style == LogStyle.JSON:
        record = {"ts": now, "level": level, "msg": message, **fields}
        stream.write(json.dumps(scrub.data(record), ensure_ascii=False) + "\n")
    else:
        extra = " ".join(f"{k}={v}" for k, v in fields.items() if v is not None)
        stream.write(scrub(f"{now} {level.upper():7} {message} {extra}".rstrip()) + "\n")
    stream.flush()


def log_style(args: Sequence[str]) -> LogStyle | None:
    """The `--log-format` asked for on a command line (before Typer parses it), so that the
    error boundary writes its last words in the same format as the records before them."""
    for i, arg in enumerate(args):
        value = None
        if arg == "--log-format" and i + 1 < len(args):
            value = args[i + 1]
        elif arg.startswith("--log-format="):
            value = arg.partition("=")[2]
        if value is not None and value.lower() in tuple(LogStyle):
            return LogStyle(value.lower())
    return None


def dumps(data: Any) -> str:
    """The one JSON form of what `--json` prints: compact, one document a line."""
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def _wide(file: Any) -> bool:
    return bool(getattr(file, "isatty", lambda: False)())


class Output:
    """The two consoles of one command run."""

    def __init__(self, *, json_mode: bool = False, scrub: Scrubber | None = None,
                 log_format: LogStyle | None = None) -> None:
        self.json_mode = json_mode
        # With --log-format, everything said on stderr is a record of that format (a `jq`
        # over a cron log never meets a bare line); without it, plain lines.
        self.log_format = log_format
        self.scrub = scrub or Scrubber.from_environment()

    # rich is loaded only by what draws: a `poll --json` from cron never pays its import.
    # Not a terminal: no colour, no live redraw, and wide enough that tables do not fold.
    @cached_property
    def out(self) -> Console:
        from rich.console import Console

        return Console(file=sys.stdout, soft_wrap=False, highlight=False,
                       width=None if _wide(sys.stdout) else 200)

    @cached_property
    def err(self) -> Console:
        from rich.console import Console

        return Console(file=sys.stderr, highlight=False,
                       width=None if _wide(sys.stderr) else 200)

    @classmethod
    def for_args(cls, args: Sequence[str]) -> Output:
        return cls(json_mode="--json" in args, log_format=log_style(args))

    @property
    def live(self) -> bool:
        """Live redraws only on a real terminal that wants colour."""
        return self.out.is_terminal and not os.environ.get("NO_COLOR")

    def emit(self, result: Report) -> None:
        """A command's result, once: its JSON form under --json, else its view."""
        clean = self.scrub.data(result)
        if self.json_mode:
            self.json(clean.to_json())
        else:
            from .render import view

            self.show(view(clean))

    def json(self, data: Any) -> None:
        sys.stdout.write(dumps(self.scrub.data(data)) + "\n")
        sys.stdout.flush()

    def show(self, renderable: RenderableType) -> None:
        # Render first, then scrub: a table cell may quote a service's error text.
        with self.out.capture() as captured:
            self.out.print(renderable)
        sys.stdout.write(self.scrub(captured.get()))
        sys.stdout.flush()

    def line(self, text: str) -> None:
        self.out.print(self.scrub(text), markup=False)

    def raw(self, text: str) -> None:
        """A line on stderr exactly as given (workflow commands, log records)."""
        sys.stderr.write(self.scrub(text) + "\n")
        sys.stderr.flush()

    def say(self, text: str) -> None:
        """Progress and notes: stderr, so stdout stays data (a record with --log-format)."""
        if self.log_format is not None:
            self.record("info", text)
        else:
            self.err.print(self.scrub(text), markup=False)

    def record(self, level: str, message: str, **fields: Any) -> None:
        """One log record on stderr, in the --log-format asked for (text when none was)."""
        write_record(sys.stderr, self.log_format or LogStyle.TEXT, self.scrub, level, message,
                     **fields)

    @contextlib.contextmanager
    def logging(self) -> Iterator[None]:
        """Route videopoll's own log records (logger `videopoll`) here for one command,
        scrubbed like everything else. With --log-format they are records of that format,
        from INFO up (a retry is one); without, warnings and errors as `warning: …` lines."""
        logger = logging.getLogger("videopoll")
        handler = _LogHandler(self)
        logger.addHandler(handler)
        propagate, logger.propagate = logger.propagate, False  # not twice, not unscrubbed
        level = logger.level
        if self.log_format is not None:
            logger.setLevel(logging.INFO)
        try:
            yield
        finally:
            logger.removeHandler(handler)
            logger.propagate = propagate
            logger.setLevel(level)

    def fail(self, exc: VideopollError, *, said: str | None = None) -> int:
        """A command's failure: one `error:` line and its `hint:` on stderr (`said` instead,
        when the words are click's), a record with --log-format, and under --json an error
        object on stdout; returns the exit code."""
        message = self.scrub(exc.message)
        hint = self.scrub(exc.hint) if exc.hint else None
        if self.log_format is not None:
            self.record("error", message, code=exc.code, hint=hint, exit_code=exc.exit_code)
        elif said is not None:
            self.raw(said)
        else:
            self.err.print(f"error: {message}", markup=False, style="red")
            if hint:
                self.err.print(f"hint: {hint}", markup=False)
        if self.json_mode:
            error: dict[str, Any] = {"code": exc.code, "message": message,
                                     "exit_code": exc.exit_code}
            if hint:
                error["hint"] = hint
            self.json({"error": error})
        return exc.exit_code


class _LogHandler(logging.Handler):
    def __init__(self, out: Output) -> None:
        super().__init__(logging.INFO if out.log_format is not None else logging.WARNING)
        self.out = out

    def emit(self, record: logging.LogRecord) -> None:
        fields = getattr(record, "fields", None)
        if self.out.log_format is not None:
            self.out.record(record.levelname.lower(), record.getMessage(),
                            **(fields if isinstance(fields, dict) else {}))
        else:
            self.out.say(f"{record.levelname.lower()}: {record.getMessage()}")
