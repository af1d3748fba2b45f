"""The command line: `app` (app.py) carries every command; `run` (boundary.py) is the one
error boundary; `main` is the console script."""

from .app import app
from .boundary import main, run

__all__ = ["app", "main", "run"]
