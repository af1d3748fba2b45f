"""The command line: `app` carries every command; `main` is the console script."""

from .boundary import main, run

__all__ = ["main", "run"]
