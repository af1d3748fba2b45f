"""Crash safety (DESIGN 9.3, issue #5 item 3): SIGKILL a poller at many points, recover.

Each kill point gets a round of its own: two finished videos (A, a 47 kB clip; B, a few MiB —
over the 6 MiB TUS threshold on Supabase) and one row whose agent failed (F), committed on
the GitHub stand-in in one commit. Two files are looked up by path: A comes inline with its
contents answer, B by blob download; the tree listing's point gets a third finished clip (C)
so that its pass lists the tree instead. A poller process is killed at the chosen point; fresh
pollers then run (each once the dead poller's 1 s lease ran out) until nothing is pending.
Then: A and B (and C) are `ready` with exactly their bytes, F is `failed` with the agent's
reason, every object write (whoever made it) carried the source's bytes, no other object exists, and
the pollers left no temp file behind.

The points are drawn by `random.Random(seed)` from a catalogue covering the GitHub listing,
the download (after K bytes, in the poller or from inside the stand-in), the upload into the
store (after K chunks, around the commit, mid-TUS), and each database write before and after
it commits. Every catalogue entry is tried once before any is repeated. Reproduce a run with
VIDEOPOLL_CHAOS_SEED and VIDEOPOLL_CHAOS_POINTS (printed at the start); run only some of the
points with VIDEOPOLL_CHAOS_ONLY=3,17 (their numbers in the printed list).
"""

from __future__ import annotations

import json
import os
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from videopoll.sandbox.githubapi import INLINE_MAX
from videopoll.sandbox.server import Fault

from .conftest import Figures, ServerKill, Video, World

DEFAULT_SEED = 20260505
DEFAULT_POINTS = 50
SLOW_POINTS = 200
MIB = 1024 * 1024
TUS_CHUNK = 6 * MIB
PIECE = MIB  # the GitHub adapter reads downloads in 1 MiB pieces
SIZES = {"local": 2 * MIB + 512 * 1024 + 4321, "supabase": 7 * MIB + 4321}
CLIP = 48_000  # A: a small clip, sent by Storage's standard upload on Supabase
# Read at import: the autouse `hermetic` fixture removes every VIDEOPOLL_* variable.
CHAOS_ENV = {name: os.environ.get(name) for name in (
    "VIDEOPOLL_CHAOS_SEED", "VIDEOPOLL_CHAOS_POINTS", "VIDEOPOLL_CHAOS_ONLY")}



@dataclass(frozen=True)
class Template:
    point: str
    category: str  # listing, download, upload, db
    target: str = ""  # "AB": A or B (drawn), "A", "B", "F", "": none
    n_max: int = 1
    streams: bool = False  # draws K
    setup: str = ""  # "short": a broken download of the target; "slow": a slow one
    store: str = ""  # "" both, else only this store
    listed: bool = False  # a third finished video: more than BY_PATH_MAX, the tree listing


def _catalogue() -> list[Template]:
    entries = [
        Template("github.find.before", "listing"),
        Template("github.tree.after", "listing", listed=True),
        Template("github.contents.after", "listing", "AB"),
        Template("github.find.after", "listing"),
        Template("github.download.bytes", "download", "AB", streams=True),
        Template("server.blob.bytes", "download", "B", streams=True),  # A comes inline
        Template("store.put.chunks", "upload", "AB", streams=True),
        Template("store.put.before", "upload", "AB"),
        Template("store.put.after", "upload", "AB"),
        Template("local.rename.before", "upload", "AB", store="local"),
        Template("local.rename.after", "upload", "AB", store="local"),
        Template("tus.create.before", "upload", "B", store="supabase"),
        Template("tus.create.after", "upload", "B", store="supabase"),
        Template("tus.patch.before", "upload", "B", n_max=2, store="supabase"),
        Template("tus.patch.after", "upload", "B", n_max=2, store="supabase"),
        Template("server.tus_patch.bytes", "upload", "B", n_max=2, streams=True,
                 store="supabase"),
        Template("storage.upload.before", "upload", "A", store="supabase"),
        Template("storage.upload.after", "upload", "A", store="supabase"),
        Template("server.upload.bytes", "upload", "A", streams=True, store="supabase"),
    ]
    for phase in ("before", "after"):
        entries += [
            Template(f"store.mark_finished.{phase}", "db", "AB"),
            Template(f"store.claim.{phase}", "db", "AB"),
            Template(f"store.mark_ready.{phase}", "db", "AB"),
            # The listing's cache is the state a pass writes; lookups by path write none.
            Template(f"store.set_state.{phase}", "db", listed=True),
            Template(f"store.mark_failed.{phase}", "db", "F"),
            Template(f"store.record_error.{phase}", "db", "AB", setup="short"),
            Template(f"store.release.{phase}", "db", "AB", setup="short"),
            Template(f"store.renew.{phase}", "db", "B", n_max=2, setup="slow"),
            # B's upload saves once: its URL after create (B is under tus.SAVE_BYTES, and
            # nothing is saved after the last chunk: the ready mark clears the state).
            Template(f"store.save_upload.{phase}", "db", "B", store="supabase"),
        ]
    return entries


@dataclass(frozen=True)
class Point:
    """One drawn kill point: a template with its target video, N, K and noise."""

    template: Template
    target: str
    n: int
    k: int
    noise: bool  # a broken download of the other good video in the same round
    lfs: bool  # B is a Git LFS file (pointer in the tree, bytes from the LFS object host)

    def __str__(self) -> str:
        text = self.template.point + (f"#{self.n}" if self.n != 1 else "")
        text += f"~{self.target}" if self.target else ""
        text += f"@{self.k}" if self.template.streams else ""
        return text + (" +noise" if self.noise else "") + (" +lfs" if self.lfs else "")


def _sizes(store: str) -> dict[str, int]:
    return {"A": CLIP, "B": SIZES[store]}


def _stream_limit(template: Template, target: str, n: int, store: str) -> int:
    """How far K may go: bytes of the file, chunks the store takes, bytes of a TUS PATCH."""
    size = _sizes(store)[target]
    if template.point == "store.put.chunks":
        return -(-size // PIECE)  # K == pieces: all taken, the end of the stream asked for
    if template.point == "server.tus_patch.bytes":
        return TUS_CHUNK - 1 if n == 1 else size - TUS_CHUNK - 1
    return size - 1


def choose(seed: int, count: int, store: str) -> list[Point]:
    """`count` points for `store`: every catalogue entry once (shuffled), then random ones."""
    rng = random.Random(seed)
    catalogue = [t for t in _catalogue() if t.store in ("", store)]
    picks = rng.sample(catalogue, len(catalogue))
    while len(picks) < count:
        picks.append(rng.choice(catalogue))
    points = []
    for template in picks[:count]:
        target = rng.choice("AB") if template.target == "AB" else template.target
        n = rng.randint(1, template.n_max)
        k = rng.randint(0, _stream_limit(template, target, n, store)) if template.streams else 0
        # The stand-in's blob faults and kills do not reach LFS downloads: no LFS with them.
        lfs = (template.setup == "" and template.point != "server.blob.bytes"
               and rng.random() < 0.25)
        noise = template.setup == "" and not lfs and rng.random() < 0.3
        points.append(Point(template, target, n, k, noise, lfs))
    return points


def _seed_and_count(default_count: int) -> tuple[int, int]:
    seed = int(CHAOS_ENV["VIDEOPOLL_CHAOS_SEED"] or DEFAULT_SEED)
    count = int(CHAOS_ENV["VIDEOPOLL_CHAOS_POINTS"] or default_count)
    return seed, count


@dataclass
class Tally:
    store: str
    seed: int
    tried: Counter[str]
    fired: Counter[str]
    figures: Figures
    points: Counter[str] = field(default_factory=Counter)  # fired, by catalogue entry
    runs: int = 0
    errors: int = 0

    def line(self) -> str:
        cats = ", ".join(f"{c} {self.fired[c]}/{self.tried[c]}"
                         for c in ("listing", "download", "upload", "db"))
        f = self.figures
        return (f"chaos crash [{self.store}] seed={self.seed}: kill points fired/tried: {cats}"
                f" (total {sum(self.fired.values())}/{sum(self.tried.values())}); "
                f"poller runs {self.runs} ({self.errors} recovery passes with errors); "
                f"lost {len(f.lost)}, doubled {len(f.doubled)}, wrongly failed "
                f"{len(f.wrongly_failed)}, agent failures not failed {len(f.not_failed)}, "
                f"same-bytes rewrites {f.rewrites}, leftover temp files {len(f.leftovers)}")

    def breakdown(self) -> str:
        return "  by point: " + ", ".join(f"{p} {n}" for p, n in sorted(self.points.items()))


def _break(world: World, video: Video, kind: str, delay: float = 0.0) -> None:
    """One failed transfer attempt of `video`: its blob download broken (`kind`), or for A,
    whose bytes come inline with the contents answer, those bytes wrong (same size)."""
    if video.data is not None and len(video.data) <= INLINE_MAX and not video.lfs:
        assert kind == "short", "A's bytes come inline: they can be wrong, not slow"
        world.sandbox.github.inject("contents", Fault("wrong_bytes", times=1,
                                                      match=video.path))
    else:
        world.sandbox.github.inject("blobs", Fault(kind, delay=delay, times=1,
                                                   match=video.blob))


def _arm(world: World, point: Point, videos: dict[str, Video]) -> tuple[str | None,
                                                                          ServerKill | None]:
    """Switch on the round's faults; the launcher's --kill-at, or the stand-in that kills."""
    t = point.template
    target = videos.get(point.target)
    if t.setup and target is not None:
        # "slow": 2 s for the body, so the 1 s lease is renewed a few times meanwhile.
        _break(world, target, t.setup, 2.0 if t.setup == "slow" else 0.0)
    if point.noise:
        other = videos["A" if point.target == "B" else "B"]
        if point.target not in ("A", "B"):
            other = videos[random.Random(str(point)).choice("AB")]
        _break(world, other, "short")
    if t.point.startswith("server."):
        assert target is not None
        if t.point == "server.blob.bytes":
            server, match = world.blob_kill, target.blob
        elif t.point == "server.tus_patch.bytes":
            server, match = world.upload_kills["tus.patch"], ""
        else:
            server, match = world.upload_kills["storage.object.upload"], target.key
        server.arm(point.n, match, point.k)
        return None, server
    match = ""
    if target is not None and t.point.startswith("store.put"):
        match = target.key
    elif target is not None and t.point.startswith("local.rename"):
        match = target.key
    elif target is not None and t.point in ("github.download.bytes", "github.contents.after"):
        match = target.path
    elif target is not None and t.point.startswith("store.") and \
            t.point.split(".")[1] not in ("set_state", "save_upload"):
        match = target.asset_id
    spec = t.point + (f"#{point.n}" if point.n != 1 else "") + (f"~{match}" if match else "")
    return spec + (f"@{point.k}" if t.streams else ""), None


def _marker_size(world: World) -> int:
    return world.marker.stat().st_size if world.marker.exists() else 0


def _kill_detail(world: World, since: int, pid: int) -> str | None:
    """What the launcher `pid` wrote (after byte `since`) just before it killed itself."""
    with world.marker.open("rb") as marker:
        marker.seek(since)
        found = [json.loads(line) for line in marker.read().splitlines()]
    mine = [line for line in found if line["pid"] == pid]
    return str(mine[-1]["detail"]) if mine else None


def crash_rounds(world: World, seed: int, count: int, report: Callable[[str], None]
                 ) -> Tally:
    store = world.backend.kind
    points = choose(seed, count, store)
    report(f"chaos crash [{store}] seed={seed} points={count} "
            f"(VIDEOPOLL_CHAOS_SEED / VIDEOPOLL_CHAOS_POINTS to change): "
            + "; ".join(f"{i}:{p}" for i, p in enumerate(points, 1)))
    tally = Tally(store, seed, Counter(), Counter(), Figures())
    only = {int(i) for i in (CHAOS_ENV["VIDEOPOLL_CHAOS_ONLY"] or "").split(",") if i}
    for index, point in enumerate(points, 1):
        if only and index not in only:
            continue
        extra = [CLIP] if point.template.listed else []
        a, b, *c, f = world.add_videos([CLIP, SIZES[store], *extra], failing=1,
                                       lfs=frozenset({1}) if point.lfs else frozenset())
        videos = {"A": a, "B": b, "F": f, **({"C": c[0]} if c else {})}
        spec, server = _arm(world, point, videos)
        category = point.template.category
        tally.tried[category] += 1
        since = _marker_size(world)
        try:
            run = world.run(["poll", "--json"], kill=spec, server=server)
        finally:
            world.sandbox.github.clear_faults()
            if server is not None:
                server.disarm()
        where = f"point {index} ({point}, kill {spec or 'from the stand-in'})"
        assert run.killed, f"{where} was not reached:\n{run.explain()}"
        if server is None:
            detail = _kill_detail(world, since, run.pid)
            assert detail is not None, f"{where}: the process died, but not at the point"
        else:
            assert server.fired, f"{where}: the process died, but not from the stand-in"
            detail = server.fired
        tally.fired[category] += 1
        tally.points[point.template.point] += 1
        recovery = world.recover()
        tally.errors += sum(1 for r in recovery if r.code != 0)
        figures = world.check(list(videos.values()))
        tally.figures.merge(figures)
        problems = figures.lost + figures.doubled + figures.wrongly_failed + figures.not_failed
        assert not problems, f"{where} [{detail}]: {problems}\n" + "\n".join(
            r.explain() for r in recovery)
    # Earlier rounds' videos must still be intact after all the later chaos.
    final = world.check()
    tally.figures.leftovers = final.leftovers
    assert not (final.lost + final.doubled + final.wrongly_failed + final.not_failed), final
    tally.runs = len(world.runs)
    return tally


def _report(tally: Tally, figures: Callable[[str], None]) -> None:
    figures(tally.line())
    figures(tally.breakdown())
    for path in tally.figures.leftovers[:3]:
        figures(f"  leftover: {path}")
    if len(tally.figures.leftovers) > 3:
        figures(f"  ... and {len(tally.figures.leftovers) - 3} more")
    assert not tally.figures.leftovers, f"temp files left behind: {tally.figures.leftovers}"
    assert sum(tally.fired.values()) == sum(tally.tried.values())


@pytest.mark.timeout(900)  # about 1.5-2 minutes per store on 2 cores
def test_crash_at_seeded_points(world: World, figures: Callable[[str], None]) -> None:
    """SIGKILL at DEFAULT_POINTS seeded points; nothing lost, doubled or wrongly failed."""
    seed, count = _seed_and_count(DEFAULT_POINTS)
    _report(crash_rounds(world, seed, count, figures), figures)


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_crash_at_many_points(world: World, figures: Callable[[str], None]) -> None:
    """The same with SLOW_POINTS points and another seed (run with --slow)."""
    seed, count = _seed_and_count(SLOW_POINTS)
    if CHAOS_ENV["VIDEOPOLL_CHAOS_SEED"] is None:
        seed += 1
    _report(crash_rounds(world, seed, count, figures), figures)


def test_killed_upload_leaves_no_temp_file(world: World) -> None:
    """A poller killed while its upload streams leaves nothing behind once another poller
    has stored the video."""
    (video,) = world.add_videos([2 * MIB + 4321])
    run = world.run(["poll", "--json"], kill=f"store.put.chunks~{video.key}@1")
    assert run.killed, run.explain()
    world.recover()
    figures = world.check([video])
    assert not (figures.lost + figures.doubled + figures.wrongly_failed), figures
    assert figures.leftovers == []
