"""`watch`'s live table as data (the engine on fakes, a fake clock), then rendered: a row with
bytes flowing reads `transferring`, and outcomes stay listed with their age for a while."""

from __future__ import annotations

import io
from dataclasses import replace

from rich.console import Console

from videopoll.engine import Poller
from videopoll.model import Action, Item, PassSummary, Status
from videopoll.ui.board import Board, LiveBoard
from videopoll.ui.render import board_table

from .conftest import MP4, World


def screen(board: Board) -> str:
    console = Console(width=150, color_system=None, file=io.StringIO())
    with console.capture() as captured:
        console.print(board_table(board))
    return captured.get()


def row_text(text: str, asset_id: str) -> str:
    lines = [line for line in text.splitlines() if line.startswith(asset_id[:8])]
    assert len(lines) == 1, text
    return lines[0]


def poller(world: World, board: LiveBoard | None = None,
           seen: list[Board] | None = None) -> Poller:
    def progress(asset_id: str, done: int, total: int) -> None:
        assert board is not None and seen is not None
        board.progress(asset_id, done, total)
        seen.append(board.board())

    return Poller(world.store, world.agent, world.artifacts, world.config, owner="poller-1",
                  clock=world.clock.now, monotonic=world.clock.monotonic,
                  progress=progress if board is not None else None)


async def test_a_row_with_bytes_flowing_reads_transferring(world: World) -> None:
    """The last pass said `generating`; while its bytes flow the row says `transferring`
    with how far along, and the pass that stores it says `ready`."""
    board = LiveBoard(clock=world.clock.now)
    row = world.video(Status.GENERATING, file=MP4)
    board.passed(await poller(world).poll_once())
    assert "generating" in row_text(screen(board.board()), row.id)

    world.agent.set(row.conversation_id or "", Status.FINISHED)
    seen: list[Board] = []
    summary = await poller(world, board, seen).poll_once()
    assert len(seen) > 1  # several progress calls, one look at the table each
    middle = seen[0]
    (line,) = middle.lines
    assert line.state is Status.TRANSFERRING and line.action is Action.NONE
    assert line.transfer == (64 * 1024, len(MP4))
    text = row_text(screen(middle), row.id)
    assert "transferring" in text and "32% of 200.0 kB" in text and "generating" not in text

    board.passed(summary)
    (line,) = board.board().lines
    assert (line.state, line.action, line.transfer, line.past) == \
        (Status.READY, Action.STORED, None, False)


async def test_a_transfer_before_the_first_pass_ends_is_listed(world: World) -> None:
    """No pass has ended yet (the first is moving the file): the row is still shown."""
    board = LiveBoard(clock=world.clock.now)
    row = world.video(Status.FINISHED, file=MP4)
    seen: list[Board] = []
    await poller(world, board, seen).poll_once()
    (line,) = seen[0].lines
    assert (line.asset_id, line.state, line.lesson_id) == (row.id, Status.TRANSFERRING, "")
    assert "transferring" in row_text(screen(seen[0]), row.id)


async def test_outcomes_stay_listed_with_their_age_then_go(world: World) -> None:
    """After they leave the pending set, a ready and a failed video stay on screen (dimmed,
    below the pending rows) with how long ago, until `keep_for` has passed."""
    board = LiveBoard(clock=world.clock.now, keep_for=600)
    stored = world.video(Status.FINISHED, file=MP4)
    failed = world.video(Status.FAILED)
    waiting = world.video(Status.GENERATING)
    first = await world.poll()
    assert (first.processed, first.failed) == (1, 1)
    board.passed(first)

    world.clock.advance(120)
    second = await world.poll()
    assert second.checked == 1  # only the waiting one is pending now
    board.passed(second)
    now = board.board()
    outcomes = [i.asset_id for i in first.items if i.asset_id != waiting.id]  # pass order
    assert [(line.asset_id, line.past) for line in now.lines] == \
        [(waiting.id, False), *((asset_id, True) for asset_id in outcomes)]
    text = screen(now)
    assert "ready" in row_text(text, stored.id) and "2m ago" in row_text(text, stored.id)
    assert "stored" in row_text(text, stored.id)
    assert "failed" in row_text(text, failed.id) and "2m ago" in row_text(text, failed.id)
    assert "stay listed 10m after they leave the pending set" in text

    world.clock.advance(481)  # 601 s after the outcomes
    assert [line.asset_id for line in board.board().lines] == [waiting.id]
    assert "stay listed" not in screen(board.board())


async def test_only_the_newest_outcomes_are_kept(world: World) -> None:
    """`keep_max` bounds the list: the oldest outcome goes first."""
    board = LiveBoard(clock=world.clock.now, keep_max=2)
    rows = []
    for _ in range(3):
        rows.append(world.video(Status.FINISHED, file=MP4))
        board.passed(await world.poll())
        world.clock.advance(1)
    board.passed(await world.poll())
    assert [line.asset_id for line in board.board().lines] == [rows[2].id, rows[1].id]


def test_a_row_back_in_the_pending_set_is_not_listed_twice(world: World) -> None:
    """A failed video retried: the pass that checks it again is the truth, not the outcome."""
    board = LiveBoard(clock=world.clock.now)
    row = world.video(Status.GENERATING)
    item = replace(_item(row.id, row.lesson_id), state=Status.FAILED, action=Action.FAILED,
                   changed_at=world.clock.now())
    board.passed(PassSummary(world.clock.now(), items=[item]))
    board.passed(PassSummary(world.clock.now(), items=[]))
    assert [line.past for line in board.board().lines] == [True]
    board.passed(PassSummary(world.clock.now(), items=[_item(row.id, row.lesson_id)]))
    assert [(line.state, line.past) for line in board.board().lines] == \
        [(Status.GENERATING, False)]


def _item(asset_id: str, lesson_id: str) -> Item:
    return Item(asset_id, lesson_id, None, Status.GENERATING, Action.NONE, "agent working")
