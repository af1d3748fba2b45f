"""Results as one table (videopoll | baseline | ratio), the targets, RESULTS.md and the plot."""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


@dataclass
class Line:
    """One measured figure for both systems. `ratio` is how many times better videopoll is
    (baseline / videopoll for times, requests and memory; the inverse for throughput)."""

    section: str
    measure: str
    videopoll: float | None
    baseline: float | None
    unit: str  # s, req, MB/s, MB
    note: str = ""

    @property
    def ratio(self) -> str:
        v, b = self.videopoll, self.baseline
        if v is None or b is None:
            return "—"
        if self.unit == "MB/s":
            v, b = b, v
        if v == 0:
            return "—" if b == 0 else "∞"
        value = b / v
        return f"{value:.0f}×" if value >= 100 else f"{value:.1f}×" if value >= 10 \
            else f"{value:.2f}×"


@dataclass
class Target:
    name: str
    goal: str
    measured: str
    met: bool
    note: str = ""


@dataclass
class Results:
    mode: str
    network: str
    store: str
    lines: list[Line] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    pass_times: dict[int, tuple[float, float]] = field(default_factory=dict)
    pass_runs: dict[int, tuple[dict[str, int], dict[str, int]]] = field(default_factory=dict)
    pass_walls: dict[int, tuple[float, float]] = field(default_factory=dict)
    # The same passes on the local store (SQLite + folder), when the main run is Supabase's.
    local_pass_times: dict[int, tuple[float, float]] = field(default_factory=dict)
    transfer: dict[tuple[int, str], dict[str, float]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)  # traces and such, for the analysis
    analysis: list[str] = field(default_factory=list)
    profile: list[str] = field(default_factory=list)
    started: datetime = field(default_factory=lambda: datetime.now(UTC))
    seconds: float = 0.0

    def add(self, *lines: Line) -> None:
        self.lines.extend(lines)


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    if unit == "s":
        return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"
    if unit == "req":
        return f"{value:.0f}"
    if unit in ("MB/s", "MB"):
        return f"{value:.1f} {unit}" if value < 100 else f"{value:.0f} {unit}"
    return f"{value:g} {unit}"


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = ""
    try:
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f", {kib / 1024**2:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    return (f"{cpu}, {os.cpu_count()} cores{memory}; {platform.system()} "
            f"{platform.release()}; Python {platform.python_version()}")


def table(results: Results) -> list[list[str]]:
    rows = [["measure", "videopoll", "baseline", "ratio", "note"]]
    for line in results.lines:
        rows.append([f"{line.section}: {line.measure}", fmt(line.videopoll, line.unit),
                     fmt(line.baseline, line.unit), line.ratio, line.note])
    return rows


def text_table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    out = []
    for n, row in enumerate(rows):
        cells = [c.ljust(w) if i in (0, 4) else c.rjust(w)
                 for i, (c, w) in enumerate(zip(row, widths, strict=True))]
        out.append("  ".join(cells).rstrip())
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def md_table(rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(rows[0]) + " |", "|---|--:|--:|--:|---|"]
    out += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows[1:]]
    return "\n".join(out)


def target_rows(results: Results) -> list[list[str]]:
    rows = [["target", "goal", "measured", "", "note"]]
    for t in results.targets:
        rows.append([t.name, t.goal, t.measured, "met" if t.met else "MISSED", t.note])
    return rows


def console(results: Results) -> str:
    parts = [f"videopoll benchmark ({results.mode}) — store: {results.store}; {results.network}",
             "", text_table(table(results)), "", "Targets", "",
             text_table(target_rows(results))]
    if results.notes:
        parts += ["", *[f"* {n}" for n in results.notes]]
    return "\n".join(parts)


def markdown(results: Results, plot: str | None) -> str:
    when = results.started.strftime("%Y-%m-%d %H:%M UTC")
    parts = [
        "# videopoll benchmark results", "",
        "Written by `scripts/bench` (`python -m benchmarks`); do not edit by hand.", "",
        f"- **Run**: {results.mode}, {when}, {results.seconds / 60:.1f} min",
        f"- **Machine**: {machine()}",
        f"- **Setting**: the stand-ins on loopback; {results.network}",
        f"- **Store**: {results.store}",
        "- **videopoll** runs as the real CLI in a subprocess (`videopoll poll --json`; for "
        "transfers `python -m benchmarks.timed poll --json`, the same CLI with a stopwatch "
        "around the store's `put`); the **baseline** (`benchmarks/baseline.py`) re-implements "
        "the original edge function: per row one OpenHands request, per finished row one "
        "GitHub contents request read into memory, one upload, one row update; sequential.",
        "- **ratio** = how many times better videopoll is (baseline ÷ videopoll for times, "
        "requests and memory; videopoll ÷ baseline for throughput).", "",
        "## Results", "", md_table(table(results)), "",
        "## Targets", "", md_table(target_rows(results)), "",
    ]
    if plot:
        parts += ["## Pass time against N", "", f"![pass time against N]({plot})", ""]
    if results.analysis:
        parts += ["## Missed targets: why, and what would close them", "", *results.analysis,
                  ""]
    if results.notes:
        parts += ["## Notes", "", *[f"- {n}" for n in results.notes], ""]
    if results.profile:
        parts += ["## Where the time goes", "", *results.profile, ""]
    return "\n".join(parts)


def plot(results: Results, path: Path) -> bool:
    """Pass time against N for both, log-log; False when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    ns = sorted(results.pass_times)
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    ax.plot(ns, [results.pass_times[n][0] for n in ns], "o-", label="videopoll")
    ax.plot(ns, [results.pass_times[n][1] for n in ns], "s--", label="baseline (original)")
    for n in ns:
        v, b = results.pass_times[n]
        ax.annotate(f"{b / v:.1f}×", (n, (v * b) ** 0.5), ha="center", fontsize=8)
    local = sorted(results.local_pass_times)
    if local:
        ax.plot(local, [results.local_pass_times[n][0] for n in local], "o:",
                label="videopoll, local store")
        ax.plot(local, [results.local_pass_times[n][1] for n in local], "s:",
                label="baseline, local store")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("pending rows N (90% running, 5% finished, 5% failed)")
    ax.set_ylabel("pass time (s)")
    ax.set_title("One pass: videopoll vs the original per-row poller")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True
