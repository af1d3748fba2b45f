"""Shared fixtures: every test runs hermetic (no ambient configuration, no waiting)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import stamina
from hypothesis import settings

# Generated tests are reproducible in CI (the same examples every run); `--slow` explores more.
settings.register_profile("default", derandomize=True, deadline=None)
settings.register_profile("slow", derandomize=False, deadline=None, max_examples=1000)
settings.load_profile("default")

SERVICE_VARS = ("OPENHANDS_", "OPENHAND_", "GITHUB_", "SUPABASE_", "VIDEOPOLL_", "GEMINI_",
                "DEFAULT_USER_ID", "NO_COLOR")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--slow", action="store_true", help="also run tests marked slow")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--slow"):
        settings.load_profile("slow")
        return
    skip = pytest.mark.skip(reason="slow: run with --slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def hermetic(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """No inherited service settings, no .env from the checkout, a private working folder."""
    for name in list(os.environ):
        if name.startswith(SERVICE_VARS):
            monkeypatch.delenv(name)
    monkeypatch.setenv("VIDEOPOLL_ENV_FILE", os.devnull)
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.chdir(tmp_path)
    yield tmp_path


@pytest.fixture(autouse=True)
def no_backoff() -> Iterator[None]:
    """stamina's test mode: retries happen (up to 3 attempts) without sleeping."""
    with stamina.set_testing(True, attempts=3):
        yield


# Figures some tests measure (claims per claimer, a large upload's memory, chaos tallies): kept
# apart from assertions and shown once, in pytest's closing summary, instead of print()s.
FIGURES = pytest.StashKey[list[str]]()


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> Callable[[str], None]:
    """`figures(line)` adds a line to the run's "figures" section."""
    lines = request.config.stash.setdefault(FIGURES, [])
    return lambda line: lines.append(f"{request.node.nodeid}: {line}")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter,
                            config: pytest.Config) -> None:
    lines = config.stash.get(FIGURES, [])
    if lines:
        terminalreporter.section("figures")
        for line in lines:
            terminalreporter.write_line(line)
