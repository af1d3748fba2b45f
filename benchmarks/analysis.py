"""For each missed target: why (from the traces and the copy's anatomy) and what would close
it. Written into RESULTS.md; the reasoning is fixed, the figures come from the run."""

from __future__ import annotations

from typing import Any

from .report import Results, Target

STATE_CALLS = "OpenHands: conversation states (batched)"
EVENTS = "OpenHands: events (error reason)"


def _group(trace: list[tuple[float, str, int, float]], kind: str) -> tuple[float, int, float]:
    """(seconds in flight, count, average at once) of one kind of request, zeros if absent."""
    for busy, name, count, at_once in trace:
        if name == kind:
            return busy, count, at_once
    return 0.0, 0, 0.0


def explain(results: Results) -> None:
    for target in results.targets:
        if target.met:
            continue
        name = target.name
        if name.startswith("pass at") and "speed-up" in name:
            results.analysis += _speed(results, target)
        elif name.startswith("pass at") and "process wall" in name:
            results.analysis += _small(results, target)
        elif name.startswith("pass at") and "OpenHands" in name:
            results.analysis += _openhands(results, target)
        elif name.startswith("throughput") and "file" in name:
            results.analysis += _to_file(results, target)
        elif name.startswith(("throughput", "TUS at")):
            results.analysis += _to_storage(results, target)
        else:
            results.analysis += [f"**{name}: {target.measured}** (goal {target.goal}): see "
                                 "the figures above; no automatic analysis for this one.", ""]


def _speed(results: Results, target: Target) -> list[str]:
    if "pass_trace" not in results.data:
        return [f"**{target.name}: {target.measured}.** (Run the `profile` part for why.)", ""]
    n, seconds, trace = results.data["pass_trace"]
    base = results.pass_times[n][1]
    busiest = sorted(trace, key=lambda group: -group[0])[:5]
    lines = [f"- {name}: {count} request(s), {busy:.2f} s in flight, {at_once:.1f} at once"
             for busy, name, count, at_once in busiest]
    return [
        f"**{target.name}: {target.measured}, goal {target.goal}.** The baseline's "
        f"{base:.1f} s is almost all OpenHands round trips ({n} × one status request). "
        f"Of videopoll's traced {seconds:.2f} s pass (see *Where the time goes*), the "
        "request kinds that were in flight longest:", "", *lines, "",
        "A pass writes its decisions in one batch while GitHub is asked for the files, so "
        "what is left is the chain one finished video needs (pending rows → agent states → "
        "its file by path, which brings a file up to 1 MB inline (else the listing, then the "
        "download) → upload → ready, each a round trip) and the copies themselves, "
        "VIDEOPOLL_CONCURRENCY at a time.", ""]


def _chain(spans: list[tuple[str, float, float]]) -> list[tuple[str, float, float]]:
    """The requests that held the pass up: from the last answer back, each time the request
    whose answer came last before the current one started."""
    chain = [max(spans, key=lambda s: s[2])]
    while True:
        before = [s for s in spans  # started earlier (so this ends), answered before it
                  if s[1] < chain[-1][1] and s[2] <= chain[-1][1] + 0.002]
        if not before:
            return chain[::-1]
        chain.append(max(before, key=lambda s: s[2]))


def _small(results: Results, target: Target) -> list[str]:
    head = f"**{target.name}: {target.measured}, goal {target.goal}.**"
    if "small_timeline" not in results.data:
        return [f"{head} (Run the `profile` part for why.)", ""]
    n, wall, seconds, spans = results.data["small_timeline"]
    chain = _chain(spans)
    waited = sum(b - a for _, a, b in chain)
    steps = " → ".join(f"{kind} ({(b - a) * 1000:.0f} ms)" for kind, a, b in chain)
    libraries = next((line.videopoll for line in results.lines
                      if line.measure == "the libraries alone"), None)
    floor = (f"; the interpreter and the libraries a pass cannot do without (typer, httpx, "
             f"httpcore, anyio, asyncio) take {libraries * 1000:.0f} ms of that to import"
             if libraries else "")
    return [
        f"{head} In the traced run (see *A videopoll pass at N={n}, request by request*) "
        f"the process took {wall:.2f} s: {wall - seconds:.2f} s of start-up and exit"
        f"{floor}, and a {seconds:.2f} s pass, {waited:.2f} s of it waiting on one round "
        f"trip after another: {steps}. Each depends on the one before: the agent's answer "
        "needs the pending rows, the claim and the file need the answer, the upload needs "
        "the claim and the bytes, the ready mark needs the upload. The original's "
        "process, whose start-up imports httpx alone, spends its time on ten OpenHands round "
        "trips; videopoll's on a chain this long and on its start-up.", ""]


def _openhands(results: Results, target: Target) -> list[str]:
    n = max(results.pass_times)
    events = _group(results.data.get("pass_trace", (0, 0, []))[2], EVENTS)
    return [
        f"**{target.name}: {target.measured}, goal {target.goal}.** The {-(-n // 99)} state "
        "calls are the batches of ≤ 99 ids the target counts. The rest are one "
        "`GET /api/v1/conversation/{id}/events/search?kind__eq=ConversationErrorEvent` per "
        "conversation that failed in this pass, for the failure reason (DESIGN 8.1: "
        "\"reason from the newest ConversationErrorEvent\"; V1 has no batched events query). "
        "A row fails once, so the idle pass pays only the batches. To meet the target as "
        "written: mark the row failed with what the batch says (`agent error`) and look the "
        "detail up lazily (in `videopoll status`), or cap the lookups per pass in "
        "`OpenHandsAgent.states` (`videopoll/services/openhands.py`). In time they cost "
        f"{events[0]:.2f} s (4 at a time); see the speed-up analysis for moving them off the "
        "critical path.", ""]


def _to_file(results: Results, target: Target) -> list[str]:
    lines = [f"**{target.name}: {target.measured}, goal {target.goal}.**"]
    if "anatomy" in results.data:
        size, rates = results.data["anatomy"]
        plain = rates[""]

        def share(v: str) -> str:
            return f"{rates[v] / plain:.0%}"

        lines[0] += (
            f" The copy's anatomy at {size / 1e6:.0f} MB (*Where the time goes*) shows the two "
            "costs videopoll adds to a plain copy: re-chunking the response to 1 MiB "
            "(`response.aiter_bytes(1024 * 1024)` in `GitHubArtifacts.open`, "
            f"`videopoll/services/github.py`) alone brings the plain copy to {share('rechunk')}:"
            " httpx's chunker copies every byte through a `BytesIO`; hashing every piece on "
            f"the event loop (`verified()` in `videopoll/transfer.py`) to {share('hash')}; both "
            f"to {share('rechunk+hash')}. Fixes: iterate `aiter_bytes()` with no chunk size "
            "(the stores re-chunk as they must: TUS into 6 MiB anyway), and hash off the event "
            "loop — hashlib releases the GIL for large buffers, so `await asyncio.to_thread("
            "digest.update, batch)` on ~4 MiB batches overlaps hashing with receiving the next "
            "bytes. Verification itself stays (DESIGN promise 2).")
    return [*lines, ""]


def _to_storage(results: Results, target: Target) -> list[str]:
    latency = results.data.get("storage_latency", 0.08)
    ceiling = 6 * 1024**2 / 1e6 / latency if latency else float("inf")
    big = max(size for size, _ in results.transfer)
    got: dict[str, Any] = results.transfer.get((big, "supabase"), {})
    text = (f"**{target.name}: {target.measured}, goal {target.goal}.** The plain copy streams "
            "the download into one upload request; videopoll uploads resumably (TUS, exactly "
            "6 MiB chunks as hosted Supabase requires, DESIGN 8.3).")
    if "tus_trace" in results.data:
        size, seconds, trace = results.data["tus_trace"]
        patch = _group(trace, "Storage: TUS PATCH")
        save = _group(trace, "REST: rpc videopoll_save_upload")
        text += (f" The trace of one {size / 1e6:.0f} MB video ({seconds:.2f} s in `put`) "
                 f"shows {patch[1]} PATCHes ({patch[0]:.2f} s) and {save[1]} "
                 f"`videopoll_save_upload` RPCs ({save[0]:.2f} s).")
    text += (
        " Since issue 14 `upload()` (`videopoll/services/supabase/tus.py`) saves the position "
        "every 64 MiB or 10 s (beside the next PATCH) rather than after every chunk, hashes "
        "the prefix off the event loop, reads one chunk ahead and creates the upload while the "
        "first chunk is read. That leaves one round trip per 6 MiB, "
        "which TUS cannot avoid (the PATCHes of one upload are sequential): at "
        f"{latency * 1000:.0f} ms that is a ceiling of {ceiling:.0f} MB/s on this loopback"
        + (f", {ceiling / got['plain']:.0%} of the plain copy" if got else "")
        + "; on a real uplink of tens of MB/s the round trip is a small part of each chunk. "
        "The baseline's single POST is faster here"
        + (f" ({got['baseline']:.0f} vs {got['videopoll']:.0f} MB/s)" if got else "")
        + " but cannot resume and holds the whole file in memory"
        + (f" ({got['rss_base']:.0f} MB peak vs videopoll's {got['rss']:.0f} MB)" if got else "")
        + ".")
    return [text, ""]
