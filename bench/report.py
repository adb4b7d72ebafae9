"""The benchmark report: runs every benchmark, one after the other, each rewriting its section of
RESULTS.md (and its sidecar, results/SECTION.json), then writes the header of RESULTS.md (machine,
date, commit, versions) and draws the charts (charts/*.png, linked from a "Charts" section).

    python bench/report.py                     every benchmark (tens of minutes), then the charts
    python bench/report.py --only codec,calls  a subset (the other sections keep their numbers)
    python bench/report.py --charts-only       redraw the charts from what is recorded
    python bench/report.py --quick             every benchmark in a short run, into a scratch copy
                                               of RESULTS.md (see --results), for a smoke test

A progress line on stderr says which benchmark runs, n of N, the time so far and an estimate of
what is left (from the last run's times, kept in results/timings.json). Each benchmark's output
goes to results/logs/NAME.log; a benchmark that fails is reported (the end of its log) and the
others still run; the exit status is then 1.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from common import Row, load_tables, machine, markers, replace_section  # noqa: E402


@dataclass(frozen=True)
class Benchmark:
    name: str  # its section in RESULTS.md, and bench/NAME.py
    quick: tuple[str, ...]  # its arguments for --quick
    estimate: float  # seconds a full run takes, until one has been timed here
    quick_estimate: float


BENCHMARKS = (  # the order of the Makefile's former bench target
    Benchmark("codec", ("--seconds", "0.2", "--rounds", "1"), 100, 15),
    Benchmark("stdio", ("--quick", "--rounds", "1"), 180, 15),
    Benchmark("channels", ("--rounds", "1", "--count", "20000"), 300, 40),
    Benchmark("calls", ("--rounds", "1"), 200, 45),
    Benchmark("objects", ("--quick", "--rounds", "1"), 240, 40),
    Benchmark("startup", ("--rounds", "3"), 15, 5),
    Benchmark("load", ("--quick", "--rounds", "1"), 150, 15),
    Benchmark("telemetry", ("--quick",), 480, 80),
    Benchmark("scale", ("--readings", "3000", "--rounds", "1", "--calls", "100"), 180, 45),
)
NAMES = tuple(b.name for b in BENCHMARKS)


def clock(seconds: float) -> str:
    seconds = max(0, int(seconds + 0.5))
    return (
        f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
        if seconds >= 3600
        else (f"{seconds // 60}:{seconds % 60:02d}")
    )


# -- running ---------------------------------------------------------------------------------------


class Progress:
    """One line on stderr, rewritten every second on a terminal (else a line every minute)."""

    def __init__(self, plan: list[Benchmark], estimates: dict[str, float], out: TextIO = sys.stderr) -> None:
        self.plan, self.estimates, self.out = plan, estimates, out
        self.tty = out.isatty()
        self.began = time.monotonic()
        self.index = 0
        self.started = self.began
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._width = 0

    def line(self) -> str:
        now = time.monotonic()
        bench = self.plan[self.index]
        this = now - self.started
        left = max(self.estimates[bench.name] - this, 0.0) + sum(
            self.estimates[b.name] for b in self.plan[self.index + 1 :]
        )
        return (
            f"[{self.index + 1}/{len(self.plan)}] {bench.name}: {clock(this)} of "
            f"~{clock(self.estimates[bench.name])}; {clock(now - self.began)} so far, ~{clock(left)} left"
        )

    def show(self, final: str | None = None) -> None:
        text = final if final is not None else self.line()
        if self.tty:
            self.out.write("\r" + text.ljust(self._width) + ("\n" if final is not None else ""))
            self._width = len(text)
        else:
            self.out.write(text + "\n")
        self.out.flush()

    def start(self, index: int) -> None:
        self.index, self.started = index, time.monotonic()
        self._stop.clear()
        self._width = 0
        self.show()
        self._thread = threading.Thread(target=self._tick, daemon=True)
        self._thread.start()

    def _tick(self) -> None:
        every = 1.0 if self.tty else 60.0
        while not self._stop.wait(every):
            self.show()

    def finish(self, text: str) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.show(text)


def run_benchmark(bench: Benchmark, quick: bool, results: Path, log: Path) -> tuple[int, float]:
    """Runs bench/NAME.py --record RESULTS (its output into ``log``): exit status and seconds."""
    argv = [
        sys.executable,
        str(HERE / f"{bench.name}.py"),
        *(bench.quick if quick else ()),
        "--record",
        str(results),
    ]
    log.parent.mkdir(parents=True, exist_ok=True)
    began = time.monotonic()
    with log.open("w") as out:
        out.write(f"$ {' '.join(argv)}\n")
        out.flush()
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        status = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, env=env).returncode
    return status, time.monotonic() - began


def tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def load_timings(path: Path) -> dict[str, dict[str, float]]:
    try:
        data: dict[str, dict[str, float]] = json.loads(path.read_text())
        return data
    except (OSError, ValueError):
        return {}


def run_all(plan: list[Benchmark], quick: bool, results: Path, timings_path: Path) -> list[str]:
    """Runs ``plan``; the names of the benchmarks that failed."""
    timings = load_timings(timings_path)
    mode = "quick" if quick else "full"
    known = timings.get(mode, {})
    estimates = {b.name: known.get(b.name, b.quick_estimate if quick else b.estimate) for b in plan}
    progress = Progress(plan, estimates)
    logs = results.parent / "results" / "logs"
    failed = []
    for index, bench in enumerate(plan):
        progress.start(index)
        status, took = run_benchmark(bench, quick, results, logs / f"{bench.name}.log")
        if status == 0:
            progress.finish(f"[{index + 1}/{len(plan)}] {bench.name}: done in {clock(took)}")
            timings.setdefault(mode, {})[bench.name] = round(took, 1)
            timings_path.parent.mkdir(parents=True, exist_ok=True)
            timings_path.write_text(json.dumps(timings, indent=1, sort_keys=True) + "\n")
        else:
            failed.append(bench.name)
            progress.finish(
                f"[{index + 1}/{len(plan)}] {bench.name}: FAILED (exit {status}) after {clock(took)}; "
                f"the end of {logs / (bench.name + '.log')}:\n{tail(logs / f'{bench.name}.log')}"
            )
    total = time.monotonic() - progress.began
    print(f"{len(plan) - len(failed)} of {len(plan)} benchmarks in {clock(total)}", file=sys.stderr)
    return failed


# -- the header ------------------------------------------------------------------------------------


def git(*args: str) -> str:
    out = subprocess.run(["git", *args], capture_output=True, text=True, cwd=ROOT)
    return out.stdout.strip() if out.returncode == 0 else ""


def header(ran: list[str], failed: list[str], quick: bool) -> str:
    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    if git("status", "--porcelain", "--untracked-files=no"):
        commit += " with uncommitted changes"
    try:
        load = f", load average {os.getloadavg()[0]:.1f} at the start"
    except OSError:
        load = ""
    os_name = f"{platform.system()} {platform.release()}"
    if not ran:
        what = "no benchmark run (charts only)"
    elif len(ran) == len(NAMES):
        what = "every benchmark"
    else:
        what = "only " + ", ".join(ran) + " (the other sections keep the numbers of their own dates)"
    lines = [
        f"Last run of `bench/report.py` (`make bench`): {datetime.date.today().isoformat()}, {what}"
        f"{' with --quick (short smoke runs: not numbers to compare)' if quick else ''}.",
        f"Commit {commit}; {os_name}; {machine()}{load}.",
    ]
    if failed:
        lines.append(f"Failed in that run: {', '.join(failed)} (their sections are older).")
    return "\n".join(lines)


def write_header(results: Path, text: str, charts: list[tuple[str, str, str]]) -> None:
    markdown = results.read_text() if results.exists() else "# Benchmark results\n"
    markdown = replace_section(markdown, "header", text, after_title=True)
    figure_lines = ["## Charts", ""]
    if charts:
        figure_lines.append(
            "Drawn by `bench/report.py` from the tables below (their sidecars in `results/`)."
        )
        for file, title, caption in charts:
            figure_lines += ["", f"**{title}.** {caption}", "", f"![{title}](charts/{file})"]
    else:
        figure_lines.append("(no charts: nothing recorded to draw from)")
    block = "\n".join(figure_lines)
    begin, end = markers("charts")
    if begin in markdown:
        markdown = replace_section(markdown, "charts", block)
    else:  # right under the header
        _, header_end = markers("header")
        cut = markdown.index(header_end) + len(header_end)
        rest = markdown[cut:].lstrip("\n")
        markdown = f"{markdown[:cut]}\n\n{begin}\n{block}\n{end}\n\n{rest}"
    results.write_text(markdown)


# -- the charts ------------------------------------------------------------------------------------

OURS, OURS_LIGHT, REFERENCE, PEER, RAW = "#1f6fb4", "#8cb8e0", "#7f7f7f", "#e3812b", "#b0b0b0"
CHANNELS = ("stdio", "tcp", "ws", "fifo", "file")
DIRECTIONS = ("py->node", "node->py")
DIRECTION_TITLES = {"py->node": "Python -> Node", "node->py": "Node -> Python"}


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) else None


def _find(rows: list[Row], **where: Any) -> Row | None:
    for row in rows:
        if all(row.get(key) == value for key, value in where.items()):
            return row
    return None


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update(
        {
            "font.size": 10,
            "axes.titlesize": 11,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "axes.grid": True,
            "grid.alpha": 0.3,
            "legend.fontsize": 9,
            "legend.frameon": False,
        }
    )
    return plt


def _save(fig: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, metadata={"Software": None})
    _pyplot().close(fig)


def _millions(value: float, _: Any = None) -> str:
    return f"{value / 1e6:g}M" if value >= 1e6 else f"{value / 1e3:g}k" if value >= 1e3 else f"{value:g}"


def chart_channels(results: Path, out: Path) -> str | None:
    channels, _ = load_tables(results, "channels")
    stdio, _ = load_tables(results, "stdio")
    if not channels and not stdio:
        return None
    rows = channels[0] if channels else []
    small = [r for r in (stdio[0] if stdio else []) if str(r.get("messages", "")).startswith("small")]
    plt = _pyplot()
    from matplotlib.ticker import FuncFormatter

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.8), sharey=True)
    width = 0.26
    for ax, direction in zip(axes, DIRECTIONS, strict=False):
        for x, scheme in enumerate(CHANNELS):
            if scheme == "stdio":
                many = "ours, send_many" if direction == "py->node" else "ours, sendMany"
                ours = _find(small, direction=direction, way=many)
                single = _find(small, direction=direction, way="ours")
                reference = _find(small, direction=direction, way="codec-bound")
                key = "msg/s"
            else:
                ours = _find(rows, scheme=scheme, direction=direction, way="ours")
                single = _find(rows, scheme=scheme, direction=direction, way="ours, asyncio")
                reference = (
                    _find(rows, scheme=scheme, direction=direction, way="raw")
                    if scheme == "ws"
                    else (_find(rows, scheme="(none)", direction=direction, way="codec-bound"))
                )
                key = "msg/s"
            bars = (
                (ours, -width, OURS, "ours (send_many / sendMany)"),
                (single, 0.0, OURS_LIGHT, "ours, one message per send/await"),
                (reference, width, REFERENCE, "reference: codec-bound (ws: bare websockets<->ws pair)"),
            )
            ours_rate = _number(ours.get(key)) if ours else None
            ref_rate = _number(reference.get(key)) if reference else None
            for row, shift, color, label in bars:
                rate = _number(row.get(key)) if row else None
                if rate is None:
                    continue
                ax.bar(x + shift, rate, width, color=color, label=label if x == 0 or scheme == "ws" else None)
            if ours_rate and ref_rate:
                ax.annotate(
                    f"{ours_rate / ref_rate:.2f}x",
                    (x - width, ours_rate),
                    ha="center",
                    va="bottom",
                    fontsize=8,
                    xytext=(0, 2),
                    textcoords="offset points",
                )
        ax.set_xticks(range(len(CHANNELS)), CHANNELS)
        ax.set_title(DIRECTION_TITLES[direction])
        ax.grid(axis="x", visible=False)
        ax.yaxis.set_major_formatter(FuncFormatter(_millions))
    axes[0].set_ylabel("small messages (56 B) per second")
    handles: dict[str, Any] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=False):
            handles.setdefault(label, handle)
    fig.legend(handles.values(), handles.keys(), loc="lower center", ncol=3)
    fig.suptitle("Messages per second per channel, ours beside its reference (the label: ours / reference)")
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    _save(fig, out / "channels.png")
    return "channels.png"


def _percentiles(row: Row) -> dict[int, float]:
    found: dict[int, float] = {}
    for key, value in (row.get("percentiles (µs)") or {}).items():
        found[int(key[1:])] = float(value)
    for q in (50, 90, 99):
        value = _number(row.get(f"p{q} (µs)"))
        if value is not None:
            found.setdefault(q, value)
    return found


def _way_color(way: str) -> str:
    if way.startswith("ours"):
        return OURS
    if way.startswith("raw"):
        return RAW
    return PEER


def chart_calls(results: Path, out: Path) -> str | None:
    tables, _ = load_tables(results, "calls")
    if not tables:
        return None
    rows = [r for r in tables[0] if _number(r.get("p50 (µs)")) is not None]
    if not rows:
        return None
    plt = _pyplot()
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    per = {d: [r for r in rows if r.get("direction") == d] for d in DIRECTIONS}
    heights = [max(len(per[d]), 1) for d in DIRECTIONS]
    fig, axes = plt.subplots(
        2, 1, figsize=(11, 1.2 + 0.42 * sum(heights)), sharex=True, gridspec_kw={"height_ratios": heights}
    )
    for ax, direction in zip(axes, DIRECTIONS, strict=False):
        ways = per[direction]
        for y, row in enumerate(reversed(ways)):
            p = _percentiles(row)
            color = _way_color(str(row["way"]))
            low, high = p.get(10), p.get(90)
            if low is not None and high is not None:
                ax.hlines(y, low, high, color=color, linewidth=1.2)
            if 25 in p and 75 in p:
                ax.barh(y, p[75] - p[25], left=p[25], height=0.55, color=color, alpha=0.55, edgecolor=color)
            ax.vlines(p[50], y - 0.3, y + 0.3, color="black", linewidth=1.8)
            if 99 in p:
                ax.plot(p[99], y, marker="x", color=color, markersize=7, linestyle="none")
            if 1 in p:
                ax.plot(p[1], y, marker="|", color=color, markersize=9, linestyle="none")
            ax.annotate(f"{p[50]:,.1f}", (p[50], y + 0.3), fontsize=8, ha="center", va="bottom")
        labels = [str(r["way"]).replace("ours: ", "ours: ") for r in reversed(ways)]
        ax.set_yticks(range(len(ways)), labels)
        ax.set_ylim(-0.7, len(ways) - 0.3)
        ax.set_title(f"{DIRECTION_TITLES[direction]}: add(a, b), sequential round trips", loc="left")
        ax.grid(axis="y", visible=False)
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
    axes[-1].set_xlabel("round-trip latency (µs, log scale): box p25-p75, line p10-p90, | p1, x p99, bar p50")
    legend = [
        Patch(color=OURS, alpha=0.6, label="bothways"),
        Patch(color=RAW, alpha=0.6, label="raw ping-pong (no JSON-RPC)"),
        Patch(color=PEER, alpha=0.6, label="other libraries"),
        Line2D([], [], color="black", linewidth=1.8, label="p50"),
    ]
    fig.legend(handles=legend, loc="lower center", ncol=4)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    _save(fig, out / "calls.png")
    return "calls.png"


def chart_sizes(results: Path, out: Path) -> str | None:
    tables, _ = load_tables(results, "stdio")
    if not tables:
        return None
    if len(tables) > 1 and tables[1]:
        rows = [
            {**r, "bytes": r["message size (B)"], "msg/s": r["msg/s"], "MB/s": r["MB/s"]}
            for r in tables[1]
            if _number(r.get("message size (B)")) is not None
        ]
        ways = {"py->node": ("ours, send_many", "codec-bound"), "node->py": ("ours, sendMany", "codec-bound")}
    else:  # only the small and large rows: two points a line
        rows = []
        for r in tables[0]:
            size = _number(r.get("bytes"))
            if size is None and isinstance(r.get("messages"), str) and "(" in r["messages"]:
                size = _number(float(r["messages"].split("(")[1].split(" ")[0].replace(",", "")))
            rows.append({**r, "bytes": size})
        ways = {"py->node": ("ours, send_many", "codec-bound"), "node->py": ("ours, sendMany", "codec-bound")}
    plt = _pyplot()
    from matplotlib.ticker import FuncFormatter

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.6))
    styles = {"py->node": OURS, "node->py": PEER}
    for direction, (ours, reference) in ways.items():
        for way, style, label in ((ours, "-", "ours"), (reference, "--", "codec-bound")):
            points = sorted(
                (float(r["bytes"]), float(r["MB/s"]), float(r["msg/s"]))
                for r in rows
                if r.get("direction") == direction and r.get("way") == way and _number(r.get("bytes"))
            )
            if not points:
                continue
            sizes = [p[0] for p in points]
            name = f"{DIRECTION_TITLES[direction]}, {label}" + (
                f" ({way.split(', ')[-1]})" if label == "ours" else ""
            )
            axes[0].plot(
                sizes, [p[1] for p in points], style, marker="o", color=styles[direction], label=name
            )
            axes[1].plot(
                sizes, [p[2] for p in points], style, marker="o", color=styles[direction], label=name
            )
    size_format = FuncFormatter(
        lambda v, _: f"{v / 2**20:g} MiB" if v >= 2**20 else f"{v / 1024:g} KiB" if v >= 1024 else f"{v:g} B"
    )
    for ax in axes:
        ax.set_xscale("log", base=2)
        ax.xaxis.set_major_formatter(size_format)
        ax.set_xlabel("message size (log scale)")
    axes[0].set_ylabel("MB/s across the pipe")
    axes[0].set_ylim(bottom=0)
    axes[1].set_yscale("log")
    axes[1].set_ylabel("messages/s (log scale)")
    axes[1].yaxis.set_major_formatter(FuncFormatter(_millions))
    axes[0].set_title("Throughput")
    axes[1].set_title("Messages per second")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=2)
    fig.suptitle("Child process pipe (bench/stdio.py): throughput against message size")
    fig.tight_layout(rect=(0, 0.12, 1, 1))
    _save(fig, out / "sizes.png")
    return "sizes.png"


def chart_objects(results: Path, out: Path) -> str | None:
    tables, _ = load_tables(results, "objects")
    if not tables:
        return None
    rows = tables[0]
    panels = (
        ("(µs", "µs per operation (log scale; lower is better)", True),
        ("(MB/s", "MB/s (higher is better)", False),
        ("(ms;", "ms (lower is better)", False),
    )
    chosen = [
        (key, title, log, [r for r in rows if key in str(r.get("measure", ""))]) for key, title, log in panels
    ]
    chosen = [c for c in chosen if c[3]]
    if not chosen:
        return None
    plt = _pyplot()
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    heights = [len(c[3]) for c in chosen]
    fig, axes = plt.subplots(
        len(chosen), 1, figsize=(11, 1.6 + 0.36 * sum(heights)), gridspec_kw={"height_ratios": heights}
    )
    axes = list(axes) if len(chosen) > 1 else [axes]
    for ax, (_, title, log, panel) in zip(axes, chosen, strict=False):
        labels = []
        for y, row in enumerate(reversed(panel)):
            ours, theirs = _number(row.get("ours")), _number(row.get("reference's"))
            reference = str(row.get("reference") or "")
            if ours is not None:
                ax.barh(y + 0.2, ours, 0.4, color=OURS, label="bothways" if y == 0 else None)
            if theirs is not None:
                color = REFERENCE if reference.startswith(("raw", "the same")) else PEER
                ax.barh(y - 0.2, theirs, 0.4, color=color)
                ax.annotate(
                    reference.split(" (")[0].replace(", let go", ""),
                    (theirs, y - 0.2),
                    fontsize=7,
                    va="center",
                    xytext=(3, 0),
                    textcoords="offset points",
                )
            ratio = _number(row.get("ratio"))
            if ours is not None and ratio is not None:
                ax.annotate(
                    f"{ratio:.2f}x better" if ratio >= 1 else f"{ratio:.2f}x of it",
                    (ours, y + 0.2),
                    fontsize=7,
                    va="center",
                    xytext=(3, 0),
                    textcoords="offset points",
                )
            measure, _, unit = str(row.get("measure", "")).partition(" (")
            caller = unit.rstrip(")").split("; ")[1] if "; " in unit else ""  # "(MB/s; Python calls)"
            labels.append(", ".join(part for part in (measure, caller, str(row.get("direction"))) if part))
        ax.set_yticks(range(len(panel)), labels, fontsize=8)
        ax.set_title(title, loc="left")
        ax.grid(axis="y", visible=False)
        if log:
            ax.set_xscale("log")
            ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            ax.xaxis.set_minor_formatter(NullFormatter())
        left, right = ax.get_xlim()
        ax.set_xlim(left, right * (3 if log else 1.25))
    from matplotlib.patches import Patch

    fig.legend(
        handles=[
            Patch(color=OURS, label="bothways"),
            Patch(color=PEER, label="JSPyBridge / pythonia"),
            Patch(color=REFERENCE, label="raw pipe / JSON list"),
        ],
        loc="lower center",
        ncol=3,
    )
    fig.suptitle("Remote objects, callbacks, bytes and arrays (bench/objects.py)")
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    _save(fig, out / "objects.png")
    return "objects.png"


def chart_load(results: Path, out: Path) -> str | None:
    tables, _ = load_tables(results, "load")
    if not tables or not tables[0]:
        return None
    rows = tables[0]
    groups = list(dict.fromkeys(str(r.get("clients x messages")) for r in rows))
    listeners = list(dict.fromkeys(str(r.get("listener")) for r in rows))
    plt = _pyplot()
    from matplotlib.ticker import FuncFormatter

    fig, axes = plt.subplots(1, len(groups), figsize=(11, 4.4), squeeze=False)
    for ax, group in zip(axes[0], groups, strict=False):
        for y, listener in enumerate(reversed(listeners)):
            row = _find(rows, **{"clients x messages": group, "listener": listener})
            rate = _number(row.get("messages/s")) if row else None
            color = REFERENCE if listener.startswith("bare") else OURS
            if rate is None:
                ax.annotate("failed", (0, y), va="center", fontsize=8)
                continue
            ax.barh(y, rate, 0.6, color=color)
            ratio = _number(row.get("vs bare (same runtime)")) if row else None
            if ratio is not None and not listener.startswith("bare"):
                ax.annotate(
                    f"{ratio:.2f}x bare",
                    (rate, y),
                    va="center",
                    fontsize=8,
                    xytext=(3, 0),
                    textcoords="offset points",
                )
        ax.set_yticks(range(len(listeners)), [n.replace("`", "") for n in reversed(listeners)], fontsize=8)
        ax.set_title(f"{group} messages, all clients at once", loc="left")
        ax.xaxis.set_major_formatter(FuncFormatter(_millions))
        ax.set_xlabel("messages/s")
        ax.grid(axis="y", visible=False)
        left, right = ax.get_xlim()
        ax.set_xlim(left, right * 1.2)
    for ax in axes[0][1:]:
        ax.set_yticks(range(len(listeners)), [""] * len(listeners))
    fig.suptitle(
        "Many clients into one tcp listener (bench/load.py); grey: the bare server of the same runtime"
    )
    fig.tight_layout()
    _save(fig, out / "load.png")
    return "load.png"


CHARTS: tuple[tuple[str, Callable[[Path, Path], str | None], str, str], ...] = (
    (
        "channels",
        chart_channels,
        "Messages per second per channel",
        "Small messages, Python -> Node and Node -> Python, over each channel: ours with "
        "`send_many`, ours one message at a time where measured, and the reference of the table "
        "(the codec-bound rate; for ws, a bare websockets <-> ws pair). From the Channels and "
        "Child processes tables.",
    ),
    (
        "calls",
        chart_calls,
        "Call latency",
        "Sequential add(a, b) round trips, pinned to one CPU: ours beside the raw ping-pongs and the "
        "other libraries (percentiles; log scale). From the Calls table.",
    ),
    (
        "sizes",
        chart_sizes,
        "Throughput against message size",
        "Across a child process's pipe, `send_many` beside the codec-bound rate, both directions. "
        "From the Child processes tables.",
    ),
    (
        "objects",
        chart_objects,
        "Objects, callbacks and bytes",
        "Method calls on handles, objects, callbacks beside JSPyBridge and pythonia; bytes beside a "
        "raw pipe; float64 arrays beside the same numbers as a JSON list. From the Objects table.",
    ),
    (
        "load",
        chart_load,
        "Many clients",
        "Messages/s into each listener with every client connecting at once, beside the bare server "
        "of the same runtime. From the Many clients table.",
    ),
)


def draw_charts(results: Path, out: Path) -> list[tuple[str, str, str]]:
    """Draws every chart there is data for; (file, title, caption) of each drawn."""
    drawn = []
    for name, draw, title, caption in CHARTS:
        try:
            file = draw(results, out)
        except Exception as exc:  # a chart must not lose the run's numbers: say so and go on
            print(f"chart {name}: {type(exc).__name__}: {exc}", file=sys.stderr)
            continue
        if file is None:
            print(f"chart {name}: nothing recorded to draw from", file=sys.stderr)
            stale = out / f"{name}.png"
            stale.unlink(missing_ok=True)
            continue
        size = (out / file).stat().st_size
        print(f"chart {out / file} ({size / 1024:.0f} KiB)", file=sys.stderr)
        drawn.append((file, title, caption))
    return drawn


# -- main ------------------------------------------------------------------------------------------


def scratch_copy(source: Path) -> Path:
    """A copy of RESULTS.md and its sidecars in a scratch folder, for --quick."""
    folder = Path(tempfile.gettempdir()) / "bothways-bench-quick"
    folder.mkdir(exist_ok=True)
    target = folder / "RESULTS.md"
    if source.exists():
        shutil.copyfile(source, target)
    sidecars = source.parent / "results"
    if sidecars.is_dir():
        (folder / "results").mkdir(exist_ok=True)
        for file in sidecars.glob("*.json"):
            shutil.copyfile(file, folder / "results" / file.name)
    return target


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", help=f"comma-separated, of {','.join(NAMES)} (default: all)")
    parser.add_argument("--charts-only", action="store_true", help="run nothing: redraw the charts")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="short runs of every benchmark, into a scratch copy of RESULTS.md",
    )
    parser.add_argument(
        "--results",
        type=Path,
        help="the Markdown file (default bench/RESULTS.md; with --quick, a copy of it in "
        f"{Path(tempfile.gettempdir()) / 'bothways-bench-quick'})",
    )
    args = parser.parse_args()
    plan = list(BENCHMARKS)
    if args.only:
        wanted = [name.strip() for name in args.only.split(",") if name.strip()]
        unknown = sorted(set(wanted) - set(NAMES))
        if unknown or not wanted:
            parser.error(f"--only: unknown {', '.join(unknown) or '(none given)'}; known: {', '.join(NAMES)}")
        plan = [b for b in BENCHMARKS if b.name in wanted]
    if args.results is not None:
        results = args.results.resolve()
    elif args.quick and not args.charts_only:
        results = scratch_copy(HERE / "RESULTS.md")
        print(f"--quick: recording into {results}", file=sys.stderr)
    else:
        results = HERE / "RESULTS.md"
    failed: list[str] = []
    ran: list[str] = []
    if not args.charts_only:
        failed = run_all(plan, args.quick, results, results.parent / "results" / "timings.json")
        ran = [b.name for b in plan]
    drawn = draw_charts(results, results.parent / "charts")
    if not args.charts_only:
        write_header(results, header(ran, failed, args.quick), drawn)
    else:
        markdown = results.read_text() if results.exists() else ""
        begin, _ = markers("header")
        text = None
        if begin in markdown:
            from common import section_text

            text = section_text(markdown, "header")
        write_header(results, text or header([], [], False), drawn)
    print(f"wrote {results} and {len(drawn)} charts in {results.parent / 'charts'}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
