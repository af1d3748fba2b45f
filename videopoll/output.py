"""Where things are printed: data to stdout, chatter and errors to stderr, secrets nowhere."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dotenv import dotenv_values
from rich.console import Console, RenderableType

from .errors import VideopollError
from .render import dumps

SECRET_VARS = ("OPENHANDS_API_KEY", "OPENHAND_API_KEY", "GITHUB_TOKEN",
               "SUPABASE_SERVICE_ROLE_KEY", "GEMINI_API_KEY")


def secret_values() -> list[str]:
    """Every secret this process could know of, from the environment and `.env`."""
    values = [os.environ.get(name, "") for name in SECRET_VARS]
    env_file = Path(os.environ.get("VIDEOPOLL_ENV_FILE", ".env"))
    try:
        if env_file.is_file():
            found = dotenv_values(env_file)
            values += [found.get(name) or "" for name in SECRET_VARS]
    except Exception:  # an unreadable .env is reported by Settings, not here
        pass
    return sorted({v.strip() for v in values if len(v.strip()) >= 4}, key=len, reverse=True)


def scrub(text: str, secrets: Sequence[str] | None = None) -> str:
    for value in secret_values() if secrets is None else secrets:
        text = text.replace(value, "***")
    return text


def _wide(file: Any) -> bool:
    return bool(getattr(file, "isatty", lambda: False)())


class Output:
    """The two consoles of one command run."""

    def __init__(self, *, json_mode: bool = False) -> None:
        self.json_mode = json_mode
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

    def json(self, data: Any) -> None:
        sys.stdout.write(scrub(dumps(data)) + "\n")
        sys.stdout.flush()

    def show(self, renderable: RenderableType) -> None:
        # Render first, then scrub: a table cell may quote a service's error text.
        with self.out.capture() as captured:
            self.out.print(renderable)
        sys.stdout.write(scrub(captured.get()))
        sys.stdout.flush()

    def line(self, text: str) -> None:
        self.out.print(scrub(text), markup=False)

    def raw(self, text: str) -> None:
        """A line on stderr exactly as given (workflow commands, log records)."""
        sys.stderr.write(scrub(text) + "\n")
        sys.stderr.flush()

    def say(self, text: str) -> None:
        """Progress and notes: stderr, so stdout stays data."""
        self.err.print(scrub(text), markup=False)

    def fail(self, exc: VideopollError) -> int:
        message = scrub(exc.message)
        self.err.print(f"error: {message}", markup=False, style="red")
        if exc.hint:
            self.err.print(f"hint: {scrub(exc.hint)}", markup=False)
        if self.json_mode:
            self.json({"error": {"code": exc.code, "message": message,
                                 "exit_code": exc.exit_code}})
        return exc.exit_code
