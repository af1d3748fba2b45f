"""The Typer app and the explicit registration of every command: importing `app` from here
gives the whole command line (for `run`, for CliRunner, for a docs generator)."""

from __future__ import annotations

from typing import Annotated

import typer

from .. import __version__
from . import admin, demo, inspect, manage, poll, watch

app = typer.Typer(
    name="videopoll",
    no_args_is_help=True,
    pretty_exceptions_enable=False,  # never print locals: they hold tokens
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)


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

    Examples:

      videopoll doctor

      videopoll poll --json

      videopoll watch --until-done
    """


# In the order `--help` lists them: the everyday commands first.
for command in (poll.poll, watch.watch, inspect.status, inspect.pending, manage.generate,
                manage.retry, admin.doctor, admin.schema, demo.demo):
    app.command()(command)
