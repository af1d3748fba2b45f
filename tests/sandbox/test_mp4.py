"""The MP4 maker writes valid ISO-BMFF with a decodable H.264 track, at exact sizes.

No ffprobe here, so the test reads the files back itself: the box tree, the sample table,
and the H.264 bitstream (exp-Golomb headers and I_PCM macroblocks), written independently
of the maker from the H.264 syntax tables.
"""

from __future__ import annotations

import struct
import tracemalloc
from pathlib import Path

import pytest

from videopoll.sandbox import mp4
from videopoll.sandbox.mp4 import make_mp4, mp4_of_size, write_mp4

CONTAINERS = {b"moov", b"trak", b"mdia", b"minf", b"stbl", b"dinf", b"udta"}


def boxes(data: bytes, start: int = 0, end: int | None = None) -> dict[bytes, tuple[int, int]]:
    """{type: (payload start, box end)} of the boxes in data[start:end], recursively."""
    found: dict[bytes, tuple[int, int]] = {}
    end = len(data) if end is None else end
    while start < end:
        size, kind = struct.unpack(">I4s", data[start:start + 8])
        header = 8
        if size == 1:
            size, header = struct.unpack(">Q", data[start + 8:start + 16])[0], 16
        assert 8 <= size <= end - start, f"{kind!r} overruns its parent"
        found[kind] = (start + header, start + size)
        if kind in CONTAINERS:
            found.update(boxes(data, start + header, start + size))
        start += size
    assert start == end
    return found


class Bits:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data.replace(b"\x00\x00\x03", b"\x00\x00"), 0

    def u(self, n: int) -> int:
        value = 0
        for _ in range(n):
            value = value << 1 | (self.data[self.pos >> 3] >> (7 - (self.pos & 7))) & 1
            self.pos += 1
        return value

    def ue(self) -> int:
        zeros = 0
        while self.u(1) == 0:
            zeros += 1
        return (1 << zeros) - 1 + self.u(zeros)

    def se(self) -> int:
        code = self.ue()
        return (code + 1) // 2 if code % 2 else -(code // 2)

    def trailing(self) -> None:
        assert self.u(1) == 1  # rbsp_stop_one_bit
        assert self.u(-self.pos % 8) == 0  # then zeros to the byte boundary, and nothing more
        assert self.pos == len(self.data) * 8


def parse_sps(nal: bytes) -> tuple[int, int]:
    assert nal[0] & 0x1F == 7
    bits = Bits(nal[1:])
    assert (bits.u(8), bits.u(8), bits.u(8)) == (66, 0b11000000, 30)
    assert [bits.ue(), bits.ue(), bits.ue(), bits.ue(), bits.u(1)] == [0, 0, 2, 1, 0]
    width, height = (bits.ue() + 1) * 16, (bits.ue() + 1) * 16
    assert [bits.u(1), bits.u(1), bits.u(1), bits.u(1)] == [1, 1, 0, 0]
    bits.trailing()
    return width, height


def decode_idr(nal: bytes, width: int, height: int) -> list[bytes]:
    """The luma rows of an all-I_PCM IDR picture."""
    assert nal[0] == 0x65  # nal_ref_idc 3, IDR slice
    bits = Bits(nal[1:])
    assert [bits.ue(), bits.ue(), bits.ue(), bits.u(4)] == [0, 7, 0, 0]
    bits.ue()  # idr_pic_id
    assert [bits.u(1), bits.u(1), bits.se()] == [0, 0, 0]
    rows = [bytearray(width) for _ in range(height)]
    for my in range(height // 16):
        for mx in range(width // 16):
            assert bits.ue() == 25  # I_PCM
            bits.u(-bits.pos % 8)
            for y in range(16):
                rows[my * 16 + y][mx * 16:mx * 16 + 16] = bytes(bits.u(8) for _ in range(16))
            bits.pos += 128 * 8  # chroma
    bits.trailing()
    return [bytes(r) for r in rows]


def samples(data: bytes, tree: dict[bytes, tuple[int, int]]) -> list[bytes]:
    start, _ = tree[b"stsz"]
    _, _, count = struct.unpack(">III", data[start:start + 12])
    sizes = struct.unpack(f">{count}I", data[start + 12:start + 12 + 4 * count])
    offset = struct.unpack(">I", data[tree[b"stco"][0] + 8:tree[b"stco"][0] + 12])[0]
    assert tree[b"mdat"][0] == offset  # the one chunk starts right at mdat's payload
    out = []
    for size in sizes:
        assert struct.unpack(">I", data[offset:offset + 4])[0] == size - 4
        out.append(data[offset + 4:offset + size])
        offset += size
    return out


def test_clip_structure_and_bitstream() -> None:
    data = make_mp4("lesson 1", seconds=1.0)
    tree = boxes(data)
    assert data[4:8] == b"ftyp" and data[8:12] == b"isom"
    assert list(tree)[:2] == [b"ftyp", b"moov"] and b"mdat" in tree
    mvhd = tree[b"mvhd"][0]
    assert struct.unpack(">II", data[mvhd + 12:mvhd + 20]) == (1000, 1000)  # 1 s at 1000/s
    tkhd_end = tree[b"tkhd"][1]
    assert struct.unpack(">II", data[tkhd_end - 8:tkhd_end]) == (64 << 16, 48 << 16)
    assert data[tree[b"hdlr"][0] + 8:tree[b"hdlr"][0] + 12] == b"vide"
    avcc = data[tree[b"stsd"][0]:tree[b"stsd"][1]].split(b"avcC", 1)[1]
    sps = avcc[8:8 + struct.unpack(">H", avcc[6:8])[0]]
    assert parse_sps(sps) == (64, 48)
    frames = samples(data, tree)
    assert len(frames) == mp4.FPS
    first, second = (decode_idr(f, 64, 48) for f in frames[:2])
    assert first != second  # the bar moves
    assert all(row == first[0] for row in first)  # and fills whole columns
    assert data[tree[b"\xa9nam"][0] + 4:tree[b"\xa9nam"][1]] == b"lesson 1"


def test_labels_and_lengths_differ() -> None:
    assert make_mp4("a") != make_mp4("b")
    three = make_mp4(seconds=3)
    assert len(samples(three, boxes(three))) == 3 * mp4.FPS


@pytest.mark.parametrize("size", [156, 400, 1000, 5000, 47_000, 200_000])
def test_mp4_of_size_is_exact_and_valid(size: int) -> None:
    data = mp4_of_size(size, "x")
    assert len(data) == size and data[4:8] == b"ftyp"
    tree = boxes(data)
    assert {b"ftyp", b"moov", b"mvhd", b"mdat"} <= set(tree)
    if b"trak" in tree:
        for frame in samples(data, tree):
            assert frame[0] == 0x65


def test_too_small_is_refused() -> None:
    with pytest.raises(ValueError, match="at least"):
        mp4_of_size(100)


def test_write_mp4_streams_to_disk(tmp_path: Path) -> None:
    path = tmp_path / "big.mp4"
    tracemalloc.start()
    try:
        write_mp4(path, 24 * 1024 * 1024 + 3)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert path.stat().st_size == 24 * 1024 * 1024 + 3
    assert peak < 4 * 1024 * 1024  # chunks, not the whole file
    data = path.read_bytes()
    tree = boxes(data)
    assert tree[b"mdat"][1] == len(data) and len(samples(data, tree)) == mp4.FPS


def test_sizes_beyond_4_gib_get_a_64_bit_mdat() -> None:
    written: list[bytes] = []

    class Enough(Exception):
        pass

    def write(piece: bytes) -> None:
        written.append(bytes(piece))
        if len(written) == 2:
            raise Enough

    with pytest.raises(Enough):
        mp4._emit(write, 5 << 30, "")
    head, mdat = written
    assert struct.unpack(">I4sQ", mdat) == (1, b"mdat", (5 << 30) - len(head))
    stco = head.split(b"stco", 1)[1]
    assert struct.unpack(">I", stco[8:12])[0] == len(head) + 16
