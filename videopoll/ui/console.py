"""Where things are printed: data to stdout, chatter and errors to stderr, secrets nowhere."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import sys
from collections.abc import Iterator, Sequence
from typing import Any

from rich.console import Console, RenderableType

from ..errors import VideopollError
from ..reports import Report
from ..settings import env_file_path, read_env_file, scrub_order, secret_values
from .render import dumps, view


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


def _wide(file: Any) -> bool:
    return bool(getattr(file, "isatty", lambda: False)())


class Output:
    """The two consoles of one command run."""

    def __init__(self, *, json_mode: bool = False, scrub: Scrubber | None = None) -> None:
        self.json_mode = json_mode
        self.scrub = scrub or Scrubber.from_environment()
        # Not a terminal: no colour, no live redraw, and wide enough that tables do not fold.
        self.out = Console(file=sys.stdout, soft_wrap=False, highlight=False,
                           width=None if _wide(sys.stdout) else 200)
        self.err = Console(file=sys.stderr, highlight=False,
                           width=None if _wide(sys.stderr) else 200)

    @classmethod
    def for_args(cls, args: Sequence[str]) -> Output:
        return cls(json_mode="--json" in args)

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
        """Progress and notes: stderr, so stdout stays data."""
        self.err.print(self.scrub(text), markup=False)

    @contextlib.contextmanager
    def logging(self) -> Iterator[None]:
        """Route videopoll's own log records (logger `videopoll`) here for one command:
        warnings and errors as `warning: …` lines on stderr, scrubbed like everything else."""
        logger = logging.getLogger("videopoll")
        handler = _LogHandler(self)
        logger.addHandler(handler)
        propagate, logger.propagate = logger.propagate, False  # not twice, not unscrubbed
        try:
            yield
        finally:
            logger.removeHandler(handler)
            logger.propagate = propagate

    def fail(self, exc: VideopollError) -> int:
        message = self.scrub(exc.message)
        self.err.print(f"error: {message}", markup=False, style="red")
        if exc.hint:
            self.err.print(f"hint: {self.scrub(exc.hint)}", markup=False)
        if self.json_mode:
            self.json({"error": {"code": exc.code, "message": message,
                                 "exit_code": exc.exit_code}})
        return exc.exit_code


class _LogHandler(logging.Handler):
    def __init__(self, out: Output) -> None:
        super().__init__(logging.WARNING)
        self.out = out

    def emit(self, record: logging.LogRecord) -> None:
        self.out.say(f"{record.levelname.lower()}: {record.getMessage()}")
