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
        elif name.startswith("pass at") and "store requests" in name:
            results.analysis += _store_requests(target)
        elif name.startswith("poll start-up"):
            results.analysis += _start_up(results, target)
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


def _store_requests(target: Target) -> list[str]:
    return [
        f"**{target.name}: {target.measured}, goal {target.goal}.** A pass that stores a "
        "video needs four store requests however it is arranged: the pending rows, the "
        "claim (with the pass's other decisions: failures, status changes), the upload, and "
        "the ready mark (with what came late: a failure whose reason was still being looked "
        "up). The claim is what makes a second poller, a crash or a retry unable to upload a "
        "video twice or store an old one over a new one; the ready mark cannot go before the "
        "object is stored. The baseline makes one request fewer per stored video because it "
        "claims nothing; what it spends on writing each failed row, videopoll folds into the "
        f"claim's batch ({target.note}).", ""]


def _start_up(results: Results, target: Target) -> list[str]:
    libraries = next((line.videopoll for line in results.lines
                      if line.measure == "the libraries alone"), None)
    latency = results.data.get("storage_latency", 0.08)
    floor = (f"{libraries * 1000:.0f} ms to start the interpreter and import the libraries "
             "no pass can do without (typer, httpx and the asyncio stack under it: "
             "httpcore, anyio)" if libraries else "the interpreter and the libraries")
    return [
        f"**{target.name}: {target.measured}, goal {target.goal}.** Before any of "
        f"videopoll's own code runs, such a process spends {floor}, and then waits one "
        f"round trip for the pending rows ({latency * 1000:.0f} ms here plus the first "
        "request's connection): together close to the goal on their own. What videopoll "
        "adds is kept small: rich, python-dotenv, postgrest-py, storage3, h2 and the CA "
        "bundle are never loaded by such a pass (tests/unit/test_layout.py, "
        "tests/cli/test_exit.py), the modules are byte-compiled, and the process exits "
        "without unloading the interpreter. Closing the rest would take a lighter command "
        "line or HTTP library than the design card's typer and httpx.", ""]


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
            f" The copy's anatomy at {size / 1e6:.0f} MB (*Where the time goes*) prices what "
            "verification costs when done naively: re-chunking the response to 1 MiB "
            f"(httpx copies every byte through a `BytesIO`) brings the plain copy to "
            f"{share('rechunk')}, hashing every piece on the event loop to {share('hash')}, "
            f"both to {share('rechunk+hash')}. videopoll's copy does neither: it takes "
            "httpx's pieces as they come (`GitHubArtifacts.open`) and hashes them in 4 MiB "
            "batches on a worker thread (`_Digest` in `videopoll/engine/verify.py`), hashlib "
            "releasing the GIL. What is left is the hash itself — every byte through sha256 "
            "(SHA-1 for a plain blob), on a thread that shares this machine's two cores with "
            "the event loop and the stand-in serving the bytes — and the per-piece work of "
            "checking, counting and writing. The plain copy does none of it, so the share "
            "follows how fast the machine serves the plain copy: an earlier run on another "
            "machine measured 100% (204 MB/s both). Verification stays (DESIGN promise 2).")
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
        "every 64 MiB or 10 s (beside the next PATCH) rather than after every chunk, and not "
        "after the last one (the ready mark clears it), hashes the prefix off the event loop, "
        "reads one chunk ahead, joins each chunk once from the download's pieces, reads the "
        "saved position while the download starts and creates the upload while the first "
        "chunk is read. That leaves one round trip per 6 MiB, plus moving the chunk itself "
        "(a few ms over loopback, through both ends' Python HTTP stacks), "
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
