"""Leak watch: RSS, open descriptors, threads and child processes of every process of the soak,
read from /proc (no psutil), and the verdict on each series that spans the run."""

from __future__ import annotations

import os
import statistics
from dataclasses import dataclass, field

METRICS = ("rss_mb", "fds", "threads", "children")


@dataclass
class Series:
    """One process (a role's pid) sampled over time; ``pending`` for callers only."""

    key: str
    pid: int
    t: list[float] = field(default_factory=list)
    values: dict[str, list[float]] = field(default_factory=lambda: {m: [] for m in (*METRICS, "pending")})


def children_by_parent() -> dict[int, int]:
    """How many live children each pid has (one pass over /proc)."""
    counts: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                rest = stat.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if rest[0] != "Z":
            ppid = int(rest[1])
            counts[ppid] = counts.get(ppid, 0) + 1
    return counts


def sample(pid: int, children: dict[int, int]) -> dict[str, float] | None:
    """One sample of ``pid``, or None when it is gone."""
    try:
        rss = threads = 0.0
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1]) / 1024
                elif line.startswith("Threads:"):
                    threads = int(line.split()[1])
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return {"rss_mb": rss, "fds": fds, "threads": threads, "children": children.get(pid, 0)}


@dataclass
class Verdict:
    key: str
    pid: int
    metric: str
    first: float  # the first sample after warm-up
    last: float
    middle: float  # median of the second third
    final: float  # median of the last third
    limit: float
    ok: bool


# How much the last third's median may exceed the second third's before it counts as growth.
# Generous for memory (a garbage collector breathes), tight for things that should not move.
TOLERANCE = {
    "rss_mb": (0.10, 8.0),
    "fds": (0.0, 3.0),
    "threads": (0.0, 2.0),
    "children": (0.0, 0.5),
    "pending": (0.0, 2.0),
}


def judge(series: Series, warmup: float, skip: tuple[str, ...] = ()) -> list[Verdict]:
    """Flat or not, per metric: median of the last third against the median of the second third
    of the samples after ``warmup`` (robust to the odd spike a fault causes)."""
    start = next((i for i, t in enumerate(series.t) if t >= warmup), len(series.t))
    verdicts = []
    for metric, values in series.values.items():
        if metric in skip:
            continue
        kept = [v for v in values[start:] if v >= 0]  # (-1: not known at that moment)
        if len(kept) < 6:
            continue
        third = len(kept) // 3
        middle = statistics.median(kept[third : 2 * third])
        final = statistics.median(kept[2 * third :])
        share, floor = TOLERANCE[metric]
        limit = middle + max(middle * share, floor)
        verdicts.append(
            Verdict(series.key, series.pid, metric, kept[0], kept[-1], middle, final, limit, final <= limit)
        )
    return verdicts
