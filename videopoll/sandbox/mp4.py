"""Small, genuinely playable MP4 files for the stand-ins, tests and benchmarks.

The video is H.264 (Constrained Baseline) made only of I_PCM macroblocks: each macroblock
carries its pixels uncompressed, so a valid bitstream needs no real encoder, just a few
exp-Golomb header fields. Every frame is an IDR picture, so every sample is a sync sample.
`write_mp4` pads `mdat` after the samples (players read only what `stco`/`stsz` point at)
to reach an exact size, streaming to disk so a 1 GiB artifact costs no memory.
"""

from __future__ import annotations

import hashlib
import io
import re
import struct
from collections.abc import Callable
from pathlib import Path

FPS = 10
WIDTH, HEIGHT = 64, 48  # multiples of 16: whole macroblocks
_ZEROS = bytes(1024 * 1024)
_FTYP_BRANDS = (b"isom", b"iso2", b"avc1", b"mp41")
_MATRIX = struct.pack(">9I", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)


class _Bits:
    """An RBSP writer: fixed-width fields, exp-Golomb codes and aligned raw bytes."""

    def __init__(self) -> None:
        self.out = bytearray()
        self.acc = 0
        self.count = 0

    def u(self, width: int, value: int) -> None:
        self.acc = (self.acc << width) | value
        self.count += width
        while self.count >= 8:
            self.count -= 8
            self.out.append((self.acc >> self.count) & 0xFF)
        self.acc &= (1 << self.count) - 1

    def ue(self, value: int) -> None:
        code = value + 1
        self.u(code.bit_length() - 1, 0)
        self.u(code.bit_length(), code)

    def se(self, value: int) -> None:
        self.ue(2 * value - 1 if value > 0 else -2 * value)

    def align(self) -> None:
        self.u(-self.count % 8, 0)

    def raw(self, data: bytes) -> None:
        assert self.count == 0, "raw bytes need byte alignment"
        self.out += data

    def trailing(self) -> bytes:
        self.u(1, 1)  # rbsp_stop_one_bit, then zero bits to the byte boundary
        self.align()
        return bytes(self.out)


def _nal(ref_idc: int, kind: int, rbsp: bytes) -> bytes:
    # Emulation prevention: 00 00 followed by 00..03 gets a 03 inserted.
    return bytes([ref_idc << 5 | kind]) + re.sub(rb"\x00\x00(?=[\x00-\x03])", b"\x00\x00\x03",
                                                 rbsp)


def _sps(width: int, height: int) -> bytes:
    bits = _Bits()
    bits.u(8, 66)  # profile_idc: Baseline
    bits.u(8, 0b11000000)  # constraint_set0/1: Constrained Baseline
    bits.u(8, 30)  # level 3.0: room for the I_PCM bit rate
    for value in (0, 0, 2, 1):  # sps id, log2_max_frame_num-4, poc type 2, max ref frames
        bits.ue(value)
    bits.u(1, 0)  # gaps_in_frame_num_value_allowed_flag
    bits.ue(width // 16 - 1)
    bits.ue(height // 16 - 1)
    bits.u(4, 0b1100)  # frame_mbs_only, direct_8x8_inference, no cropping, no VUI
    return _nal(3, 7, bits.trailing())


def _pps() -> bytes:
    bits = _Bits()
    bits.ue(0)  # pps id
    bits.ue(0)  # sps id
    bits.u(2, 0)  # CAVLC; no bottom_field_pic_order_in_frame_present
    for value in (0, 0, 0):  # one slice group; one reference in each list
        bits.ue(value)
    bits.u(3, 0)  # no weighted prediction
    for value in (0, 0, 0):  # pic_init_qp/qs - 26, chroma_qp_index_offset
        bits.se(value)
    bits.u(3, 0)  # no deblocking control, no constrained intra, no redundant_pic_cnt
    return _nal(3, 8, bits.trailing())


def _colour(label: str) -> tuple[int, int, int]:
    digest = hashlib.sha256(label.encode()).digest()
    return 40 + digest[0] % 120, 16 + digest[1] % 224, 16 + digest[2] % 224


def _frame(index: int, width: int, height: int, colour: tuple[int, int, int]) -> bytes:
    """One IDR slice of I_PCM macroblocks: the label's colour with a bar moving across."""
    luma, cb, cr = colour
    bar = (index * 4) % width
    rows = bytes(235 if bar <= x < bar + 6 else luma for x in range(width))
    bits = _Bits()
    bits.ue(0)  # first_mb_in_slice
    bits.ue(7)  # slice_type: I, and all slices of the picture are I
    bits.ue(0)  # pps id
    bits.u(4, 0)  # frame_num (always 0 in an IDR)
    bits.ue(index % 2)  # idr_pic_id: consecutive IDR pictures must differ
    bits.u(2, 0)  # no_output_of_prior_pics, long_term_reference
    bits.se(0)  # slice_qp_delta
    chroma = bytes([cb]) * 64 + bytes([cr]) * 64
    for _ in range(height // 16):
        for mx in range(width // 16):
            bits.ue(25)  # mb_type I_PCM
            bits.align()  # pcm_alignment_zero_bit
            bits.raw(rows[mx * 16:mx * 16 + 16] * 16)  # 16 rows of luma, raster order
            bits.raw(chroma)
    return _nal(3, 5, bits.trailing())


def _box(kind: bytes, *payload: bytes) -> bytes:
    body = b"".join(payload)
    return struct.pack(">I4s", 8 + len(body), kind) + body


def _full(kind: bytes, version: int, flags: int, *payload: bytes) -> bytes:
    return _box(kind, struct.pack(">I", version << 24 | flags), *payload)


def _ftyp() -> bytes:
    return _box(b"ftyp", b"isom", struct.pack(">I", 0x200), *_FTYP_BRANDS)


def _mvhd(duration_ms: int) -> bytes:
    return _full(b"mvhd", 0, 0, struct.pack(">5I", 0, 0, 1000, duration_ms, 0x10000),
                 struct.pack(">HH2I", 0x0100, 0, 0, 0), _MATRIX, bytes(24), struct.pack(">I", 2))


def _trak(samples: list[bytes], width: int, height: int, offset: int) -> bytes:
    count, timescale = len(samples), FPS * 1000
    duration_ms = count * 1000 // FPS
    avcc = _box(b"avcC", bytes([1, 66, 0b11000000, 30, 0xFF, 0xE1]),
                struct.pack(">H", len(_sps(width, height))), _sps(width, height),
                b"\x01", struct.pack(">H", len(_pps())), _pps())
    name = b"\x0fvideopoll I_PCM".ljust(32, b"\0")
    avc1 = _box(b"avc1", bytes(6), struct.pack(">H", 1), bytes(16),
                struct.pack(">HHIIIH", width, height, 0x480000, 0x480000, 0, 1), name,
                struct.pack(">Hh", 0x18, -1), avcc)
    stbl = _box(b"stbl", _full(b"stsd", 0, 0, struct.pack(">I", 1), avc1),
                _full(b"stts", 0, 0, struct.pack(">3I", 1, count, timescale // FPS)),
                _full(b"stsc", 0, 0, struct.pack(">4I", 1, 1, count, 1)),
                _full(b"stsz", 0, 0, struct.pack(f">2I{count}I", 0, count,
                                                 *map(len, samples))),
                _full(b"stco", 0, 0, struct.pack(">2I", 1, offset)))
    minf = _box(b"minf", _full(b"vmhd", 0, 1, bytes(8)),
                _box(b"dinf", _full(b"dref", 0, 0, struct.pack(">I", 1),
                                    _full(b"url ", 0, 1))), stbl)
    mdia = _box(b"mdia", _full(b"mdhd", 0, 0, struct.pack(">4IHH", 0, 0, timescale,
                                                         count * timescale // FPS, 0x55C4, 0)),
                _full(b"hdlr", 0, 0, bytes(4), b"vide", bytes(12), b"VideoHandler\0"), minf)
    tkhd = _full(b"tkhd", 0, 3, struct.pack(">5I", 0, 0, 1, 0, duration_ms), bytes(8),
                 struct.pack(">hhhH", 0, 0, 0, 0), _MATRIX,
                 struct.pack(">II", width << 16, height << 16))
    return _box(b"trak", tkhd, mdia)


def _head(label: str, frames: int, width: int, height: int,
          mdat_header: int = 8) -> tuple[bytes, list[bytes]]:
    """ftyp + moov for `frames` frames, and the samples `mdat` must hold right after."""
    colour = _colour(label)
    samples = []
    for index in range(frames):
        nal = _frame(index, width, height, colour)
        samples.append(struct.pack(">I", len(nal)) + nal)
    udta = _box(b"udta", _box(b"\xa9nam", struct.pack(">HH", len(label.encode()), 0x55C4),
                              label.encode())) if label else b""

    def moov(offset: int) -> bytes:
        return _box(b"moov", _mvhd(frames * 1000 // FPS), _trak(samples, width, height, offset),
                    udta)

    # The chunk offset is a fixed-width field, so moov's size does not depend on it.
    offset = len(_ftyp()) + len(moov(0)) + mdat_header
    return _ftyp() + moov(offset), samples


def make_mp4(label: str = "", seconds: float = 1.0) -> bytes:
    """A playable clip: ftyp, moov (mvhd + one H.264 video trak), mdat."""
    head, samples = _head(label, max(1, round(seconds * FPS)), WIDTH, HEIGHT)
    return head + _box(b"mdat", *samples)


def _emit(write: Callable[[bytes], object], size: int, label: str) -> None:
    """Writes an MP4 of exactly `size` bytes: a clip as long as fits, then mdat padding."""
    header = 16 if size > 0xFFFFFFFF else 8  # a 64-bit mdat size beyond 4 GiB
    for frames, width, height in ((FPS, WIDTH, HEIGHT), (1, WIDTH, HEIGHT), (1, 16, 16)):
        head, samples = _head(label, frames, width, height, header)
        if len(head) + header + sum(map(len, samples)) <= size:
            break
    else:  # too small for a frame: structure only (moov with just mvhd, mdat of padding)
        head, samples = _ftyp() + _box(b"moov", _mvhd(0)), []
        if size < len(head) + header:
            raise ValueError(f"an MP4 needs at least {len(head) + header} bytes, not {size}")
    mdat = size - len(head)
    write(head)
    write(struct.pack(">I4sQ", 1, b"mdat", mdat) if header == 16
          else struct.pack(">I4s", mdat, b"mdat"))
    for sample in samples:
        write(sample)
    left = mdat - header - sum(map(len, samples))
    while left > 0:
        piece = _ZEROS[:min(left, len(_ZEROS))]
        write(piece)
        left -= len(piece)


def write_mp4(path: Path, size: int, label: str = "") -> None:
    """Writes a valid MP4 of exactly `size` bytes to `path`, in chunks (flat memory)."""
    with path.open("wb") as handle:
        _emit(handle.write, size, label)


def mp4_of_size(size: int, label: str = "") -> bytes:
    """`write_mp4` into memory, for small sizes."""
    buffer = io.BytesIO()
    _emit(buffer.write, size, label)
    return buffer.getvalue()
