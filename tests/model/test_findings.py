"""Issue 12's findings as the model-based test found them, replayed step by step.

Each test replays, in the machine's own steps (as Hypothesis prints them), the shrunk example
the machine found for one finding, with the padding steps the shrinker could not drop taken
out and a `*` fault written as the call it hit; a few ("variant") replay another path to the
same symptom that the machine also met. They run on a strict machine that tolerates no
finding. Each failed with exactly its finding's symptom on the code before the fixes
(marked xfail(strict=True) until its fix landed); now each must pass, and should one fail
again it fails with its finding's symptom (`finding(n)` turns any other failure into an
error, so a replay cannot pass by failing for some other reason).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import ClassVar

import pytest

from .faults import Fault
from .machine import VideopollModel
from .world import GenerateCmd, PollCmd


class StrictModel(VideopollModel):
    known: ClassVar[frozenset[str]] = frozenset()


@pytest.fixture
def machine() -> Iterator[StrictModel]:
    model = StrictModel()
    try:
        yield model
    finally:
        model.close()


@contextmanager
def finding(number: str) -> Iterator[None]:
    """Only finding `number`'s symptom is the expected failure; anything else is an error."""
    try:
        yield
    except AssertionError as exc:
        if f"[issue 12 finding {number}]" not in str(exc):
            raise RuntimeError(f"expected finding {number}, got: {exc}") from exc
        raise


def test_finding_1_a_row_claimed_in_vain_can_still_be_failed(machine: StrictModel) -> None:
    """As the machine found it: the answer to a claim is lost (a 502 after the claim took
    effect), so the poller neither transfers nor releases the row; the file then leaves
    GitHub. After the grace the row must end failed, not stay `transferring` for ever."""
    with finding("1"):
        machine.app_inserts_a_row(kind="normal")
        machine.agent_moves(what="finish_with_file", which=0)
        machine.run(cmds=[PollCmd(plan=(Fault("claim", 0, "server_error", "after"),))])
        machine.github_changes(change="remove", which=0)
        machine.settle()


def test_finding_1_a_killed_pollers_row_can_still_be_failed(machine: StrictModel) -> None:
    """Variant, as the review described it: a poller dies mid-upload; the agent then reports
    an error: the row must end failed (mark_failed without the owner is refused)."""
    with finding("1"):
        machine.app_inserts_a_row(kind="normal")
        machine.agent_moves(what="finish_with_file", which=0)
        machine.run(cmds=[PollCmd(plan=(Fault("put", 0, "kill", "before"),))])
        machine.agent_moves(what="error", which=0)
        machine.settle()


def test_finding_3_a_store_error_still_ends_the_pass_with_a_summary(machine: StrictModel
                                                                    ) -> None:
    """As found: the first store call of the pass fails; the pass must still end with a
    summary (its error listed), not an exception."""
    with finding("3"):
        machine.run(cmds=[PollCmd(plan=(Fault("pending", 0, "server_error", "before"),))])


def test_finding_3_one_rows_write_error_does_not_abort_the_pass(machine: StrictModel
                                                                ) -> None:
    """Variant (met as 3:mark_finished, 3:mark_failed, 3:resolve_start): one row's write
    fails and the whole pass ends in an exception, the other rows' outcomes unreported."""
    with finding("3"):
        machine.app_inserts_a_row(kind="normal")
        machine.agent_moves(what="finish_with_file", which=0)
        machine.run(cmds=[PollCmd(plan=(Fault("mark_finished", 0, "server_error", "before"),))])


def test_finding_4_one_broken_lookup_does_not_hold_up_the_others(machine: StrictModel
                                                                 ) -> None:
    """As found: one conversation's lookup fails for good; the other row, whose agent
    finishes with its file committed, must still end, not be deferred for ever."""
    with finding("4"):
        machine.app_inserts_a_row(kind="normal")
        machine.app_inserts_a_row(kind="normal")
        machine.agent_moves(what="break_lookup", which=0)
        machine.settle()


def test_finding_6_a_missing_lfs_object_ends_the_row(machine: StrictModel) -> None:
    """As found: the file is listed (an LFS pointer) but its object is gone; after the
    grace the row must end (failed), not be deferred for ever."""
    with finding("6"):
        machine.run(cmds=[GenerateCmd(lesson=0)])
        machine.github_changes(change="commit", which=0)
        machine.github_changes(change="lfs_object_missing", which=0)
        machine.settle()


def test_finding_7_a_wrong_account_fails_nothing(machine: StrictModel) -> None:
    """The machine shrank this to one row (where DESIGN 6.1's "none of several ids" rule
    cannot apply); with two rows OpenHands knows neither id and the design promises that
    nothing is failed."""
    with finding("7"):
        machine.app_inserts_a_row(kind="normal")
        machine.app_inserts_a_row(kind="normal")
        machine.time_passes(seconds=301)
        machine.run(cmds=[PollCmd(stranger=True)])


def test_finding_8_concurrent_generates_leave_one_open_video(machine: StrictModel) -> None:
    """As found: two `generate`s for one lesson at once both pass the open-video check."""
    with finding("8"):
        machine.run(cmds=[GenerateCmd(lesson=0), GenerateCmd(lesson=0)])


def test_finding_8_a_failed_generate_leaves_no_agent_without_a_row(machine: StrictModel
                                                                   ) -> None:
    """As found: the answer to the start request is lost (the agent runs), generate fails
    before inserting the row: an agent nobody follows."""
    with finding("8"):
        machine.run(cmds=[GenerateCmd(lesson=0,
                                      plan=(Fault("start", 0, "server_error", "after"),))])


def test_finding_n1_an_orphaned_claim_follows_the_agent_back_to_work(machine: StrictModel
                                                                     ) -> None:
    """The machine found it through a lost claim answer; here the poller dies mid-upload.
    The agent goes back to work (it asked a question); once the lease ran out the pass says
    `generating`, yet the row stays `transferring` (mark_generating moves only `finished`
    rows) and keeps its old finished_at."""
    with finding("N1"):
        machine.app_inserts_a_row(kind="normal")
        machine.agent_moves(what="finish_with_file", which=0)
        machine.run(cmds=[PollCmd(plan=(Fault("put", 0, "kill", "before"),))])
        machine.agent_moves(what="back_to_work", which=0)
        machine.time_passes(seconds=301)
        machine.run(cmds=[PollCmd()])


def test_finding_n2_a_deferred_takeover_reports_the_rows_real_state(machine: StrictModel
                                                                    ) -> None:
    """The machine found it with a lost claim answer and a missing LFS object; here the
    poller dies mid-upload. After the lease the next pass takes the row over, its download
    fails (a 502) and it releases the row: the item must say `finished`."""
    with finding("N2"):
        machine.app_inserts_a_row(kind="normal")
        machine.agent_moves(what="finish_with_file", which=0)
        machine.run(cmds=[PollCmd(plan=(Fault("put", 0, "kill", "before"),))])
        machine.time_passes(seconds=301)
        machine.run(cmds=[PollCmd(plan=(Fault("open", 0, "server_error", "before"),))])


def test_finding_n2_a_failed_release_reports_the_rows_real_state(machine: StrictModel
                                                                 ) -> None:
    """Found with a missing LFS object (the download's 404) and a 502 on the release; here
    the download fails with a 502. The download fails and so does the release that follows:
    the row stays `transferring` under our claim until the lease runs out; the item must say
    so."""
    with finding("N2"):
        machine.app_inserts_a_row(kind="normal")
        machine.agent_moves(what="finish_with_file", which=0)
        machine.run(cmds=[PollCmd(plan=(Fault("open", 0, "server_error", "before"),
                                        Fault("release", 0, "server_error", "before")))])
