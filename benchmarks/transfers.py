"""Moving one generated video of 10 MB, 100 MB or 1 GiB: throughput against a plain httpx
stream copy on the same loopback, and the peak RSS of the process doing it.

For each size and each store: the plain copy (download -> file + fsync for the local store;
download streamed into one upload request for Supabase Storage), videopoll (the real CLI,
its `put` timed by benchmarks.timed) and the baseline (whole file in memory, one upload).
Files over 100 MiB are Git LFS in the GitHub stand-in, as on GitHub.
"""

from __future__ import annotations

import base64
import json
import os
import statistics
import uuid
from pathlib import Path
from typing import Any

from videopoll.sandbox.mp4 import write_mp4
from videopoll.services.supabase.tus import CHUNK as TUS_CHUNK

from . import proc
from .report import Line, Results, Target
from .world import BUCKET, Row, World

MB = 1_000_000
LFS_JSON = "application/vnd.git-lfs+json"


def size_label(size: int) -> str:
    return f"{size // 1024**3} GiB" if size % 1024**3 == 0 else f"{size // MB} MB"


def _plain_spec(world: World, sha: str, size: int, lfs_oid: str | None, store: str,
                dest: Path) -> dict[str, Any]:
    gh, repo, token = world.sandbox.github, world.sandbox.repo, world.sandbox.github_token
    spec: dict[str, Any]
    if lfs_oid:
        basic = base64.b64encode(f"x-access-token:{token}".encode()).decode()
        spec = {"lfs_batch": {
            "url": f"{gh.url}/{repo}.git/info/lfs/objects/batch",
            "headers": {"Accept": LFS_JSON, "Content-Type": LFS_JSON,
                        "Authorization": f"Basic {basic}"},
            "json": {"operation": "download", "transfers": ["basic"],
                     "objects": [{"oid": lfs_oid, "size": size}]}}}
    else:
        spec = {"url": f"{gh.url}/repos/{repo}/git/blobs/{sha}", "headers": {
            "Authorization": f"Bearer {token}", "Accept": "application/vnd.github.raw+json",
            "X-GitHub-Api-Version": "2022-11-28", "User-Agent": "plain-copy"}}
    if store == "local":
        spec["file"] = str(dest)
    else:
        key = world.supa.service_key
        spec["upload_url"] = f"{world.supa.url}/storage/v1/object/{BUCKET}/plain/{dest.name}"
        spec["upload_headers"] = {"apikey": key, "Authorization": f"Bearer {key}",
                                  "Content-Type": "video/mp4", "x-upsert": "true"}
    return spec


def measure(world: World, results: Results, size: int, stores: list[str],
            repeats: dict[str, int], more: dict[str, int] | None = None) -> None:
    """`repeats` runs of the three copies per store, interleaved; `more` videopoll runs on
    top (its figure is then the median of all its runs; the plain copy's and the baseline's
    stay as they were measured)."""
    src = world.tmp / f"artifact-{size}.mp4"
    write_mp4(src, size, label="benchmark")
    lesson, asset = str(uuid.uuid4()), str(uuid.uuid4())
    path = f"videos/{lesson}/{asset}.mp4"
    gh = world.sandbox.github
    sha = gh.put_file_from_path(world.sandbox.repo, path, src)
    lfs_oid = None
    pointer = gh._repo(world.sandbox.repo).blobs[sha]
    if pointer.size < 1024:  # over 100 MiB: the tree shows a pointer, the object is on LFS
        lfs_oid = pointer.read().decode().split("oid sha256:")[1].split()[0]
    cid = world.sandbox.openhands.add_conversation("RUNNING", "finished")
    row = Row(asset, lesson, cid, path, "finished")
    try:
        for store in stores:
            _one_store(world, results, row, size, sha, lfs_oid, store, repeats[store],
                       (more or {}).get(store, 0))
    finally:
        world.use(stores[0])
        world.reset_store()
        src.unlink(missing_ok=True)


def _plain(world: World, spec: dict[str, Any], size: int) -> float:
    os.sync()  # earlier runs' dirty pages must not throttle this one
    plain = proc.run(proc.module("plaincopy", json.dumps(spec)), proc.bench_env(world.env()),
                     world.tmp).check().json()
    Path(spec.get("file", world.tmp / "none")).unlink(missing_ok=True)
    if plain["bytes"] != size:
        raise RuntimeError(f"plain copy moved {plain['bytes']} of {size} bytes")
    return float(plain["seconds"])


def _videopoll(world: World, row: Row, size: int, **env: str) -> tuple[float, int]:
    """(seconds in `put`, peak RSS) of one `poll` that moves the row's video."""
    times, hwm = world.tmp / "put-times.jsonl", world.tmp / "hwm.txt"
    times.unlink(missing_ok=True)
    world.reset_store()
    world.seed([row])
    os.sync()
    vp = proc.run(proc.module("timed", "poll", "--json"), proc.bench_env(world.env(
        BENCH_PUT_TIMES=str(times), BENCH_HWM=str(hwm), **env)), world.tmp).check()
    if world.object_size(row.key) != size:
        raise RuntimeError(f"videopoll did not store {row.key}: {vp.err[-1000:]}")
    seconds = float(json.loads(times.read_text().splitlines()[-1])["seconds"])
    world.reset_store()
    return seconds, int(hwm.read_text())


def _baseline(world: World, row: Row, size: int) -> tuple[float, int]:
    world.reset_store()
    world.seed([row])
    os.sync()
    base = proc.run(proc.module("baseline"), proc.bench_env(world.env()), world.tmp).check()
    if world.object_size(row.key) != size:
        raise RuntimeError(f"baseline did not store {row.key}: {base.err[-1000:]}")
    world.reset_store()
    summary = base.json()
    return float(summary["copyS"]), int(summary["vmHWM"])


def _one_store(world: World, results: Results, row: Row, size: int, sha: str,
               lfs_oid: str | None, store: str, repeats: int, more: int = 0) -> None:
    world.use(store)
    world.reset_store()
    spec = _plain_spec(world, sha, size, lfs_oid, store, world.tmp / f"plain-{size}.mp4")
    plain_s, vp_s, base_s, vp_rss, base_rss = [], [], [], [], []
    for _ in range(repeats):  # interleaved, so a noisy moment hits all three alike
        plain_s.append(_plain(world, spec, size))
        seconds, rss = _videopoll(world, row, size)
        vp_s.append(seconds)
        vp_rss.append(rss)
        seconds, rss = _baseline(world, row, size)
        base_s.append(seconds)
        base_rss.append(rss)
    for _ in range(more):
        seconds, rss = _videopoll(world, row, size)
        vp_s.append(seconds)
        vp_rss.append(rss)

    mb = size / MB
    plain_rate = mb / statistics.median(plain_s)
    vp_rate, base_rate = mb / statistics.median(vp_s), mb / statistics.median(base_s)
    share = vp_rate / plain_rate
    label = f"transfer {size_label(size)}{' LFS' if lfs_oid else ''} " + \
        ("→ file" if store == "local" else "→ Storage")
    runs = f"median of {repeats}; " if repeats > 1 else \
        f"videopoll median of {len(vp_s)}; " if len(vp_s) > 1 else ""
    results.add(
        Line(label, "throughput", vp_rate, base_rate, "MB/s",
             f"{runs}plain stream copy {plain_rate:.0f} MB/s: videopoll {share:.0%} of it"),
        Line(label, "peak RSS", max(vp_rss) / MB, max(base_rss) / MB, "MB",
             "local store" if store == "local" else "Supabase store (TUS upload)"))
    results.transfer[(size, store)] = {"videopoll": vp_rate, "baseline": base_rate,
                                       "plain": plain_rate, "rss": max(vp_rss) / MB,
                                       "rss_base": max(base_rss) / MB, "share": share}


def anatomy(world: World, results: Results, size: int, repeats: int) -> None:
    """The plain copy to a file with one of videopoll's costs added at a time."""
    src = world.tmp / f"anatomy-{size}.mp4"
    write_mp4(src, size, label="anatomy")
    path = f"videos/anatomy/{uuid.uuid4()}.mp4"
    gh = world.sandbox.github
    sha = gh.put_file_from_path(world.sandbox.repo, path, src)
    pointer = gh._repo(world.sandbox.repo).blobs[sha]
    oid = pointer.read().decode().split("oid sha256:")[1].split()[0] \
        if pointer.size < 1024 else None
    base = _plain_spec(world, sha, size, oid, "local", world.tmp / "anatomy-copy.mp4")
    variants = ("", "rechunk", "hash", "rechunk+hash")
    got: dict[str, list[float]] = {v: [] for v in variants}
    try:
        for _ in range(repeats):
            for variant in variants:
                got[variant].append(_plain(world, {**base, "variant": variant}, size))
    finally:
        src.unlink(missing_ok=True)
    plain = statistics.median(got[""])
    results.data["anatomy"] = (size, {v: size / MB / statistics.median(got[v])
                                      for v in variants})
    what = {"": "plain stream copy to a file (+ fsync)",
            "rechunk": "+ re-chunked to 1 MiB (`aiter_bytes(1024 * 1024)`)",
            "hash": "+ sha256 of every piece on the event loop",
            "rechunk+hash": "+ both (what videopoll's copy does, less its bookkeeping)"}
    results.profile += [
        "", f"### The copy to a file, cost by cost ({size_label(size)}, median of {repeats})",
        "", "The plain copy with one of videopoll's costs added at a time (same stand-in, "
        "same loopback, a separate process each):", "",
        "| copy | MB/s | share of plain |", "|---|--:|--:|"]
    for variant in variants:
        seconds = statistics.median(got[variant])
        results.profile.append(f"| {what[variant]} | {size / MB / seconds:.0f} | "
                               f"{plain / seconds:.0%} |")


def traced_tus(world: World, results: Results, size: int) -> None:
    """One videopoll transfer into Supabase Storage under a request trace."""
    from .passes import TRACE_HELP, trace_groups, trace_summary

    world.use("supabase")
    src = world.tmp / f"traced-{size}.mp4"
    write_mp4(src, size, label="traced")
    lesson, asset = str(uuid.uuid4()), str(uuid.uuid4())
    path = f"videos/{lesson}/{asset}.mp4"
    world.sandbox.github.put_file_from_path(world.sandbox.repo, path, src)
    cid = world.sandbox.openhands.add_conversation("RUNNING", "finished")
    trace = world.tmp / "tus-trace.jsonl"
    trace.unlink(missing_ok=True)
    try:
        seconds, _ = _videopoll(world, Row(asset, lesson, cid, path, "finished"), size,
                                BENCH_TRACE=str(trace))
    finally:
        src.unlink(missing_ok=True)
    events = [json.loads(line) for line in trace.read_text().splitlines() if line.strip()]
    trace.unlink(missing_ok=True)
    results.data["tus_trace"] = (size, seconds, trace_groups(events))
    results.profile += ["", f"### One {size_label(size)} video into Supabase Storage "
                        f"(`put` took {seconds:.2f} s)", "", "Every request of one `poll` that "
                        "moved it, grouped by kind. " + TRACE_HELP, "", *trace_summary(events)]


def tus_ceiling(latency: float) -> float:
    """MB/s of one 6 MiB chunk per round trip: TUS PATCHes of one upload go one at a time, so
    no client moves more at this latency, however fast the link."""
    return TUS_CHUNK / MB / latency if latency else float("inf")


def targets(results: Results, sizes: list[int], stores: list[str]) -> None:
    big = max(sizes)
    if "supabase" in stores:
        latency = float(results.data.get("storage_latency", 0.08))
        ceiling, got = tus_ceiling(latency), results.transfer[(big, "supabase")]
        share = got["videopoll"] / ceiling
        results.targets.append(Target(
            f"TUS at {size_label(big)} (→ Storage, 6 MiB chunks)",
            "≥ 90% of the one-chunk-per-round-trip ceiling",
            f"{share:.0%} ({got['videopoll']:.1f} of {ceiling:.1f} MB/s)", share >= 0.9,
            f"ceiling = 6 MiB per {latency * 1000:g} ms round trip"))
    for store in stores:
        got = results.transfer[(big, store)]
        where = "local store" if store == "local" else "Supabase store"
        results.targets.append(Target(
            f"peak RSS moving {size_label(big)} ({where})", "< 150 MB",
            f"{got['rss']:.0f} MB (baseline {got['rss_base']:.0f} MB)", got["rss"] < 150))
    for store in stores:
        got = results.transfer[(big, store)]
        where = "→ file, local store" if store == "local" else "→ Storage, Supabase store"
        results.targets.append(Target(
            f"throughput at {size_label(big)} ({where})", "≥ 70% of a plain stream copy",
            f"{got['share']:.0%} ({got['videopoll']:.0f} vs {got['plain']:.0f} MB/s)",
            got["share"] >= 0.7))
