"""`retry`: put failed videos back, each the way its failure calls for.

Why a row failed is read from what the engine recorded: only a failure of the transfer leaves
one of the reasons below (the file was on GitHub but could not be stored as it was), and then
the transfer is tried again. Anything else (the agent's own reason, "conversation not
found", "stuck", a start that never came, no file after the grace period) means the agent
did not deliver: its conversation is over, so reading it again would fail the row again at
once. Such a row starts over under a new conversation, as `generate --force` would start
one, but on the same row (its id, path and error history stay).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from ..errors import NotFound, Refused
from ..model import Cause, Status, VideoAsset
from ..ports import Rows

# The reasons a transfer fails with (engine.verify and engine.transfer): a path that cannot
# be used, a file too large or too small, bytes that are not a video, bytes that never
# matched GitHub's size or hash, or a listed file that could not be had, after
# VIDEOPOLL_MAX_ATTEMPTS attempts. tests/unit/test_redrive.py fails every one of them through
# a real pass, so a reworded message cannot silently turn into an agent failure.
TRANSFER_REASONS = re.compile(
    r"unsafe github_path\b|artifact is \d+ bytes\b|not an MP4\b|.*\(\d+ attempts\)\Z")


def cause_of(row: VideoAsset) -> Cause:
    """Why the failed `row` failed: its transfer, or (anything else) its agent."""
    return Cause.TRANSFER if TRANSFER_REASONS.match(row.error or "") else Cause.AGENT


@dataclass(frozen=True)
class Redriven:
    """One failed row `retry` put back (or would): the row as it is now, why it had failed
    and how it is redriven."""

    row: VideoAsset
    reason: str | None
    cause: Cause


class RetryStore(Rows, Protocol):
    """What retry uses of the store: the rows and their retry."""


Start = Callable[[VideoAsset], Awaitable[VideoAsset]]


async def failed_rows(store: Rows, asset_id: str | None) -> list[VideoAsset]:
    """The failed rows to retry: the one asked for (which must exist and be failed), or every
    failed row."""
    if asset_id is None:
        return await store.videos([Status.FAILED])
    row = await store.get(asset_id)
    if row is None:
        raise NotFound(f"asset not found: {asset_id}")
    if row.status is not Status.FAILED:
        raise Refused(f"asset {asset_id} is {row.status}, not failed: nothing to retry")
    return [row]


async def redrive(store: RetryStore, rows: Sequence[VideoAsset], *, dry_run: bool,
                  start: Start | None) -> list[Redriven]:
    """Put `rows` back: a transfer failure to generating (the next pass finds the finished
    conversation and transfers again), an agent failure to starting under a new conversation
    that `start` then starts (as `generate` does: the row is written first, so an
    interrupted start is resumed by `generate` or failed by a pass, never run twice). The
    store keeps one failed video per lesson coming back, and the old error in the history.
    `start` may be None only for a dry run."""
    causes = {row.id: (row.error, cause_of(row)) for row in rows}
    restart = {row.id: uuid.uuid4().hex for row in rows if causes[row.id][1] is Cause.AGENT}
    assert dry_run or start is not None or not restart, "an agent failure needs `start`"
    back = await store.retry([row.id for row in rows], dry_run=dry_run, restart=restart)
    done = []
    for row in back:
        if not dry_run and row.id in restart and start is not None:
            row = await start(row)
        reason, cause = causes[row.id]
        done.append(Redriven(row, reason, cause))
    return done
