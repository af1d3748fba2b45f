"""The README tells the truth: every `videopoll …` command line it shows (fenced blocks, the
command table's synopses, inline code) is parsed out of README.md and run against the
stand-ins on both stores, with its placeholders (`<id>`, `<lesson>`, `<asset>`, `N`, `S`,
`FILE`) filled in from a seeded world; every flag it names exists; every variable it names is
one the code reads, and every variable `settings.py` reads is in it.

What is not run as written, and why:
- `watch` without `--until-done` or `--timeout` runs until Ctrl+C, so it runs as a process and
  gets a SIGINT once the world is settled (exit 130, as the README says).
- `videopoll schema | psql … "$DATABASE_URL"` runs as that pipeline, twice (the README says
  idempotent), on a fresh database set up as a Supabase project (needs PostgreSQL and psql).
- `demo` ignores the configured store (it runs its own stand-ins), so it runs once, on the
  local parameter.
- The cron line runs with `$HOME` pointed at the test's directory.
- `videopoll status` alone (in prose, "`videopoll status` shows the detail") names the
  command; its required id is not shown, so only the command's existence is checked.
- `cmd --flag` in prose (`generate --force`) is not a command line: the flag is checked to
  exist on that command.
Each command of the command table also runs with `--json` (its heading says every command
has it) and its output is checked to be JSON (JSON Lines for `watch` and `demo`).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import typer

from videopoll.cli.app import app

from .conftest import Stack

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
VIDEOPOLL = str(Path(sys.executable).parent / "videopoll")
# click's classes, as Typer has them (newer Typer releases vendor click).
ROOT_COMMAND: Any = typer.main.get_command(app)
COMMANDS: dict[str, Any] = dict(ROOT_COMMAND.commands)

# Variables the README names that are not settings, and the file that reads each.
NOT_SETTINGS = {
    "VIDEOPOLL_DEBUG": "videopoll/cli/boundary.py",
    "VIDEOPOLL_REAL": "scripts/test",
    "GITHUB_ACTIONS": "videopoll/ui/github_actions.py",
    "GITHUB_STEP_SUMMARY": "videopoll/ui/github_actions.py",
}
VARIABLE = re.compile(r"\b(?:VIDEOPOLL_[A-Z0-9_]*[A-Z0-9]|OPENHANDS?_[A-Z_]*[A-Z]|"
                      r"GITHUB_[A-Z_]*[A-Z]|SUPABASE_[A-Z_]*[A-Z]|GEMINI_API_KEY|"
                      r"DEFAULT_USER_ID)\b")


# -- what the README shows -------------------------------------------------------------------
@dataclass(frozen=True)
class Shown:
    where: str  # "block", "table" or "inline", and the README line
    text: str  # from `videopoll` on, shell operators and comments cut off

    def __str__(self) -> str:
        return f"{self.where}: {self.text}"


def _fences(text: str) -> Iterator[tuple[int, str]]:
    """(line number, line) of every line inside a fenced block."""
    inside = False
    for number, line in enumerate(text.splitlines(), 1):
        if line.startswith("```"):
            inside = not inside
        elif inside:
            yield number, line


def _spans(text: str) -> Iterator[tuple[int, str, bool]]:
    """(line number, content, in a table row) of every inline code span outside fences."""
    inside = False
    for number, line in enumerate(text.splitlines(), 1):
        if line.startswith("```"):
            inside = not inside
            continue
        if inside:
            continue
        # A table cell escapes its `|` as `\|`; spans never nest, so pairs of backticks do.
        for span in re.findall(r"`([^`]+)`", line.replace("\\|", "\x00")):
            yield number, span.replace("\x00", "|"), line.startswith("|")


def _cut(command: str) -> str:
    """A shell line from `videopoll` to the first pipe, redirection, `&&` or comment."""
    words = []
    for word in shlex.split(command, comments=True, posix=True):
        if word in ("|", "||", "&&", ">>", ">", "2>&1", ";"):
            break
        words.append(word)
    return " ".join(shlex.quote(w) if " " in w else w for w in words)


def shown_commands() -> list[Shown]:
    """Every command line the README shows: in fenced blocks (a line that runs videopoll),
    and inline code (table cells included) that starts with `videopoll`."""
    text = README.read_text()
    found: list[Shown] = []
    invocation = re.compile(r"(?:^|[\s;&])(?:\S*/)?videopoll((?: .*)?)$")
    for number, line in _fences(text):
        for start in (m.start() for m in re.finditer(r"videopoll\b", line)):
            match = invocation.match(line, max(0, line.rfind(" ", 0, start)))
            rest = match.group(1).split() if match else []
            if match and rest and (rest[0] in COMMANDS or rest[0].startswith("-")):
                found.append(Shown(f"block line {number}", _cut("videopoll" + match.group(1))))
                break
    for number, span, in_table in _spans(text):
        match = re.match(r"^(?:\.venv/bin/)?(videopoll(?: .*)?)$", span.strip())
        if match:
            kind = "table" if in_table else "inline"
            found.append(Shown(f"{kind} line {number}", match.group(1)))
    return found


def mentions() -> list[tuple[str, str]]:
    """(command, flag) for inline code naming a command's flag without `videopoll`, such as
    `generate --force` or `watch --timeout`: checked to exist, not run (they are not whole
    command lines)."""
    out: list[tuple[str, str]] = []
    for _, span, _ in _spans(README.read_text()):
        words = span.split()
        if len(words) >= 2 and words[0] in COMMANDS:
            out.extend((words[0], w) for w in words[1:] if w.startswith("--"))
    return out


def shown_flags() -> dict[str, set[str]]:
    """Every `--flag` the README names in inline code, by the program it is given to
    (`videopoll`, or a script such as `scripts/test --fast`)."""
    flags: dict[str, set[str]] = {}
    for _, span, _ in _spans(README.read_text()):
        program = span.split()[0] if span.startswith("scripts/") else "videopoll"
        flags.setdefault(program, set()).update(
            re.findall(r"(?<![\w-])--[a-z][a-z-]*", span))
    return flags


# -- from a synopsis to command lines ----------------------------------------------------------
def _top_level_split(text: str, sep: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for char in text:
        depth += (char == "[") - (char == "]")
        if char == sep and depth == 0:
            parts.append(current.strip())
            current = ""
        else:
            current += char
    return [*parts, current.strip()]


def _group(content: str) -> list[str]:
    """One bracket's alternatives: `--failed | --all` is two options; `--log-format text|json`
    one option with two values."""
    out: list[str] = []
    for piece in (p.strip() for p in content.split("|")):
        if piece.startswith("-") or not out:
            out.append(piece)
        else:
            out.append(f"{out[-1].split()[0]} {piece}")
    return out


def expand(synopsis: str) -> list[str]:
    """The command lines a synopsis stands for: each required form (`retry <asset> |
    --failed` has two) alone, then with each optional flag (each alternative) in turn."""
    words = synopsis.split()
    command, rest = " ".join(words[:2]), " ".join(words[2:])
    groups = [option for group in re.findall(r"\[([^\]]*)\]", rest) for option in _group(group)]
    lines: list[str] = []
    for alternative in _top_level_split(rest, "|"):
        required = " ".join([command, re.sub(r"\s*\[[^\]]*\]", "", alternative).strip()]).strip()
        lines.append(required)
        lines.extend(f"{required} {option}" for option in groups)
    return list(dict.fromkeys(lines))


def invocations() -> list[tuple[str, str]]:
    """(where the README shows it, one concrete command line with placeholders)."""
    out: dict[str, str] = {}
    for shown in shown_commands():
        for line in expand(shown.text):
            out.setdefault(line, shown.where)
        if shown.where.startswith("table line") and "--help" not in shown.text \
                and "--json" not in shown.text:
            # The table's heading: "Every command has `--help` (with an example), `--json`".
            out.setdefault(f"{expand(shown.text)[0]} --json", f"{shown.where} (--json)")
    return [(where, line) for line, where in out.items()]


INVOCATIONS = invocations()


def argv(line: str, values: dict[str, str]) -> list[str]:
    """`videopoll ARGS` with placeholders filled in, as the argument list after `videopoll`."""
    words = shlex.split(line)[1:]
    filled = []
    for word in words:
        for placeholder, value in values.items():
            word = word.replace(placeholder, value)
        filled.append(word)
    return filled


SAMPLE = {"<id>": "0" * 32, "<lesson>": "1" * 8 + "-1111-1111-1111-" + "1" * 12,
          "<asset>": "2" * 8 + "-2222-2222-2222-" + "2" * 12, "$HOME": "/tmp"}


def _value(args: list[str]) -> list[str]:
    """Metavars a synopsis uses for a flag's value (N, S, FILE, …) as sample values."""
    out = []
    for i, word in enumerate(args):
        if i and args[i - 1].startswith("--") and word in ("N", "S", "FILE", "…"):
            word = {"N": "5", "S": "2", "FILE": "/tmp/videopoll.lock", "…": "json"}[word]
        out.append(word)
    return out


# -- the checks ---------------------------------------------------------------------------------
def test_the_readme_shows_every_command_and_each_is_found() -> None:
    """The extraction sees what is there: every registered command is shown (the command
    table has each), and nothing the README shows names a command that does not exist."""
    shown = shown_commands()
    assert len(shown) >= 20, [str(s) for s in shown]
    table = {s.text.split()[1] for s in shown
             if s.where.startswith("table") and not s.text.split()[1].startswith("-")}
    assert table == set(COMMANDS), (table, set(COMMANDS))
    for s in shown:
        words = s.text.split()
        assert len(words) == 1 or words[1] in COMMANDS or words[1].startswith("-"), str(s)


def _options(command: Any) -> set[str]:
    return {o for p in command.params
            for o in [*getattr(p, "opts", []), *getattr(p, "secondary_opts", [])]} | {"--help"}


def _a_reference(args: list[str]) -> bool:
    """`videopoll status` in prose names the command; it is not a line to run (its argument
    is required)."""
    command = COMMANDS[args[0]]
    needs = [p for p in command.params if getattr(p, "required", False)
             and not getattr(p, "opts", [""])[0].startswith("-")]
    return bool(needs) and len(args) == 1


@pytest.mark.parametrize(("where", "line"), INVOCATIONS, ids=[c for _, c in INVOCATIONS])
def test_every_command_line_shown_parses(where: str, line: str) -> None:
    """click accepts it: the command, every flag and every value it shows exist."""
    args = _value(argv(line, SAMPLE))
    if not args or args[0].startswith("-"):
        assert set(args) <= _options(ROOT_COMMAND)
        return
    assert args[0] in COMMANDS, where
    if not _a_reference(args):
        COMMANDS[args[0]].make_context(args[0], args[1:])


def test_every_flag_named_in_the_readme_exists() -> None:
    """Flags named on their own (`--exit-status`, `--failed`) belong to some command, those
    named with a command (`generate --force`) to that command, and a script's to the
    script."""
    flags = shown_flags()
    known = set().union(*(_options(c) for c in [ROOT_COMMAND, *COMMANDS.values()]))
    assert flags.pop("videopoll") - known == set()
    for command, flag in mentions():
        assert flag in _options(COMMANDS[command]), (command, flag)
    for script, named in flags.items():
        source = (ROOT / script).read_text()
        if script == "scripts/test":  # "Extra arguments go to pytest": its options too
            source += (ROOT / "tests" / "conftest.py").read_text()
        assert all(flag in source for flag in named), (script, named)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_has_help_with_an_example_and_json(name: str) -> None:
    """'Every command has `--help` (with an example), `--json`'."""
    command = COMMANDS[name]
    assert any("--json" in getattr(p, "opts", []) for p in command.params), name
    text = command.get_help(command.context_class(command, info_name=name))
    assert "Example" in text and f"videopoll {name}" in text, text


def _settings_variables() -> set[str]:
    source = (ROOT / "videopoll" / "settings.py").read_text()
    return set(re.findall(r"\"(" + VARIABLE.pattern.replace(r"\b", "") + r")\"", source))


def test_every_variable_the_readme_names_is_read_and_every_setting_is_documented() -> None:
    named = set(VARIABLE.findall(README.read_text()))
    settings = _settings_variables()
    assert named - settings - set(NOT_SETTINGS) == set(), "named in the README, never read"
    assert settings - named == set(), "read by settings.py, not in the README"
    for variable, reader in NOT_SETTINGS.items():
        assert variable in named and variable in (ROOT / reader).read_text(), variable


# -- running them -------------------------------------------------------------------------------
@dataclass
class World:
    """Ids to fill placeholders with: a finished video with its file (stored by a pass), an
    agent failure (failed by a pass), and a lesson without a video."""

    done: tuple[str, str]  # asset id, conversation id
    failed: str
    lesson: str


def seed(stack: Stack, video: bytes) -> World:
    done, cid, _ = stack.video("RUNNING", "finished", commit=video)
    failed, _, _ = stack.video("RUNNING", "error")
    return World((done, cid), failed, stack.seed.lesson("A lesson without a video"))


def _runs_until_interrupted(args: list[str]) -> bool:
    return args[0] == "watch" and "--until-done" not in args and "--timeout" not in args


def _expected_code(args: list[str]) -> int:
    """What the README's exit-code table says this run (the world above) ends with."""
    if _runs_until_interrupted(args):
        return 130  # Ctrl+C
    if args[0] in ("poll", "watch") and "--strict" in args:
        return 1  # "--strict and a video failed": the agent failure does
    if args[0] == "watch" and "--timeout" in args and "--until-done" not in args:
        return 1  # "watch --timeout ran out"
    return 0


def _check_output(args: list[str], out: str, err: str) -> None:
    if "--json" in args:
        if args[0] in ("watch", "demo"):
            assert all(json.loads(line) for line in out.splitlines() if line.strip())
        elif args[0] == "schema":  # the command table: `{"sql": "…"}`
            assert set(json.loads(out)) == {"sql"} and "create table" in json.loads(out)["sql"]
        else:
            json.loads(out)
    if "--log-format" in args and args[args.index("--log-format") + 1] == "json":
        lines = [line for line in err.splitlines() if line.strip()]
        assert lines and all(isinstance(json.loads(line), dict) for line in lines), err
        if "--quiet" in args:  # the cron line: "stdout stays empty"
            assert out == ""


def _interrupted(stack: Stack, args: list[str], world: World) -> tuple[int, str, str]:
    proc = subprocess.Popen([VIDEOPOLL, *args], env={**os.environ, **stack.env()},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while stack.seed.row(world.done[0])["status"] != "ready" or \
                stack.seed.row(world.failed)["status"] != "failed":
            assert time.monotonic() < deadline, "watch never settled the world"
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
    return proc.returncode, out, err


@pytest.mark.parametrize(("where", "line"), INVOCATIONS, ids=[c for _, c in INVOCATIONS])
def test_every_command_line_shown_runs(stack: Stack, video: bytes, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch, where: str,
                                       line: str) -> None:
    """Runs it on the stand-ins: the exit code the README promises, JSON where it says."""
    args = argv(line, {"$HOME": str(tmp_path)})
    if not args or args[0].startswith("-"):
        result = stack.cli(*args)
        assert result.code == 0 and "Usage: videopoll" in result.out
        return
    if _a_reference(args):
        pytest.skip("names the command in prose (its required argument is not shown)")
    if args[0] == "demo" and stack.seed.kind != "local":
        pytest.skip("demo runs on its own stand-ins whatever the store: run once, on local")
    monkeypatch.chdir(tmp_path)  # demo's home and a .env are looked for here
    world = seed(stack, video)
    if args[0] == "retry":  # its <asset> must have failed: a pass fails it
        assert stack.cli("poll").code == 0
    (tmp_path / ".cache").mkdir(exist_ok=True)
    filled = _value(argv(line, {"<id>": world.done[1], "<lesson>": world.lesson,
                                "<asset>": world.failed, "$HOME": str(tmp_path)}))
    filled = [str(tmp_path / "videopoll.lock") if a == "/tmp/videopoll.lock" else a
              for a in filled]
    if _runs_until_interrupted(filled):
        code, out, err = _interrupted(stack, filled, world)
    else:
        result = stack.cli(*filled)
        code, out, err = result.code, result.out, result.err
    assert code == _expected_code(filled), (filled, out, err)
    assert "Traceback" not in err
    _check_output(filled, out, err)
    if filled[0] == "status":  # "<id> is a conversation or asset id, or a unique prefix"
        for other in (world.done[0], world.done[0][:8]):
            again = stack.cli(*[other if a == world.done[1] else a for a in filled])
            assert again.code == 0 and world.done[0] in again.out, again.err


@pytest.mark.postgres
def test_the_migration_pipeline_runs_twice(tmp_path: Path) -> None:
    """`videopoll schema | psql -v ON_ERROR_STOP=1 --single-transaction "$DATABASE_URL"`,
    as shown, on a database set up as a Supabase project; again: it is idempotent."""
    from videopoll.sandbox.pg import bootstrap_supabase, ensure_server, fresh_database

    block = [s for s in shown_commands() if s.where.startswith("block")
             and s.text == "videopoll schema"]
    assert block, "the README's migration line moved"
    line = next(line for _, line in _fences(README.read_text())
                if line.startswith("videopoll schema |"))
    shell = line.split("  #")[0].replace("videopoll ", f"{VIDEOPOLL} ", 1)
    if not any((Path(d) / "psql").exists() for d in os.environ.get("PATH", "").split(":")):
        pytest.skip("no psql on PATH")
    with fresh_database("videopoll_readme", dsn=ensure_server()) as dsn:
        bootstrap_supabase(dsn)
        for _ in range(2):
            done = subprocess.run(["bash", "-o", "pipefail", "-c", shell],
                                  env={**os.environ, "DATABASE_URL": dsn},
                                  capture_output=True, text=True, timeout=120)
            assert done.returncode == 0, done.stderr


def test_the_units_the_readme_shows_are_accepted(stack: Stack, tmp_path: Path) -> None:
    """"Durations are seconds or carry a unit (…) in the variables and in `--interval`/
    `--timeout`; sizes are bytes or carry one (…)": each example, as a variable and a flag."""
    from videopoll.settings import from_env, parse_duration, parse_size

    sentence = " ".join(next(p for p in README.read_text().split("\n\n")
                             if "Durations are" in p).split())
    empty = tmp_path / "empty.env"
    empty.write_text("")
    durations, sizes = (re.findall(r"`(\d[\w]*)`", part)
                        for part in sentence.split("Durations are")[1].split("sizes are"))
    assert durations and sizes, sentence
    for text in durations:
        seconds = parse_duration(text)
        assert from_env({"VIDEOPOLL_LEASE": text}, env_file=empty).lease == \
            seconds
        result = stack.cli("watch", "--until-done", "--interval", text, "--timeout", text)
        assert result.code == 0, (text, result.err)
    for text in sizes:
        assert from_env({"VIDEOPOLL_MAX_BYTES": text}, env_file=empty
                        ).max_bytes == parse_size(text)
