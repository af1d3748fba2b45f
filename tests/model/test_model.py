"""The model-based test of issue 12 (see `machine.py`): a bounded, deterministic run in CI,
a long random hunt under `--slow`, and a smaller run over the local SQLite store."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis.stateful import run_state_machine_as_test

from .machine import LocalStoreModel, VideopollModel

QUIET = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]
# No `explain` phase: on Python 3.11 it traces every line and takes minutes per failure.
PHASES = [Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink]
CI = settings(phases=PHASES, max_examples=400, stateful_step_count=40, deadline=None,
              derandomize=True, database=None, suppress_health_check=QUIET, print_blob=True)
LONG = settings(phases=PHASES, max_examples=5000, stateful_step_count=60, deadline=None,
                database=None, suppress_health_check=QUIET, print_blob=True)


def test_model_on_the_in_memory_store() -> None:
    """Concurrent pollers, generates, faults and kills on the fakes: every invariant holds."""
    run_state_machine_as_test(VideopollModel, settings=CI)


def test_model_on_the_local_store() -> None:
    """The same machine over SQLite and a folder, fewer examples."""
    run_state_machine_as_test(LocalStoreModel,
                              settings=settings(CI, max_examples=40, stateful_step_count=25))


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_model_long_hunt_on_the_in_memory_store() -> None:
    """The long profile: many more, longer, random examples (`--slow`)."""
    run_state_machine_as_test(VideopollModel, settings=LONG)


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_model_long_hunt_on_the_local_store() -> None:
    run_state_machine_as_test(LocalStoreModel,
                              settings=settings(LONG, max_examples=500, stateful_step_count=40))
