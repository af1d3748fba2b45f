"""Sizes read the same everywhere: the stored note says the unit the progress bar shows."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from videopoll.model import Action, Status, size

from .conftest import MP4, World


async def test_a_stored_video_is_reported_in_the_bars_units(world: World) -> None:
    world.video(Status.FINISHED, file=MP4)
    item = (await world.poll()).items[0]
    assert item.action is Action.STORED
    assert item.detail.endswith(f"({size(len(MP4))})") and "kB" in item.detail
    assert "bytes" not in item.detail


@given(st.integers(min_value=0, max_value=10**13) | st.sampled_from([999, 1000, 999_949,
                                                                     999_950, 999_999_999]))
def test_size_is_one_short_number_and_a_unit(n: int) -> None:
    number, unit = size(n).split(" ")
    assert unit in ("bytes", "kB", "MB", "GB")
    assert float(number) < 1000 or unit == "GB"
    assert (unit == "bytes") == (n < 1000)
