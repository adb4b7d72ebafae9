"""REPORT.md and soak.png from a finished soak; the exit status (0 only when nothing failed)."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

from . import probe
from .findings import FINDINGS
from .ledger import SLACK, StreamResult
from .streams import CALL_FAILURES, CALLS, STREAMS

if TYPE_CHECKING:
    from .run import Soak

ROOT = Path(__file__).resolve().parent.parent


def output(argv: list[str]) -> str:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=10, cwd=ROOT).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "?"


def machine() -> str:
    memory = "?"
    try:
        with open("/proc/meminfo") as meminfo:
            memory = f"{int(meminfo.readline().split()[1]) / 1024 / 1024:.0f} GiB RAM"
    except OSError:
        pass
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            cpu = next(
                (line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), "?"
            )
    except OSError:
        pass
    return f"{platform.node()}: Linux {platform.release()}, {os.cpu_count()} CPUs ({cpu}), {memory}"


def versions() -> str:
    node = output([shutil.which("node") or "node", "--version"])
    mosquitto = output(["sh", "-c", "mosquitto -h 2>&1 | head -1; /usr/sbin/mosquitto -h 2>&1 | head -1"])
    mosquitto = next((line for line in mosquitto.splitlines() if "version" in line), "?")
    return f"Python {platform.python_version()}, Node {node}, {mosquitto}"


def commit() -> str:
    head = output(["git", "rev-parse", "--short=12", "HEAD"])
    dirty = output(["git", "status", "--porcelain", "--untracked-files=no"])
    return f"{head}" + (" (with uncommitted changes in the work tree)" if dirty else "")


def num(value: int) -> str:
    return f"{value:,}"


class Verdicts:
    """Everything that fails the run, gathered from every check."""

    def __init__(self, soak: Soak) -> None:
        self.soak = soak
        ledger = soak.ledger
        self.results = ledger.judge(soak.clock.now(), final=True)
        self.problems: list[str] = list(ledger.failures)
        for result in self.results.values():
            if result.lost:
                self.problems.append(
                    f"{result.name}: {result.lost} message(s) LOST against the channel's promise, e.g. "
                    + "; ".join(result.lost_samples[:3])
                )
            if result.dup_unexplained:
                self.problems.append(
                    f"{result.name}: {result.dup_unexplained} unexplained duplicate(s), e.g. "
                    + "; ".join(result.dup_samples[:3])
                )
        for stream, value in ledger.strays[:20]:
            self.problems.append(f"{stream}: a message that is not one we sent: {value}")
        self.garbage = ledger.garbage_verdicts()
        self.problems += self.garbage[3]
        self.calls = {spec.name: self.judge_calls(spec.name) for spec in CALLS}
        self.leaks = self.judge_leaks()
        for verdict in self.leaks:
            if not verdict.ok:
                self.problems.append(
                    f"leak? {verdict.key} (pid {verdict.pid}): {verdict.metric} grew from a median of "
                    f"{verdict.middle:.1f} to {verdict.final:.1f} (limit {verdict.limit:.1f})"
                )
        if not soak.tmp_removed:
            self.problems.append(f"the temporary folder {soak.tmp} could not be removed")

    def judge_calls(self, name: str) -> dict[str, object]:
        book = self.soak.ledger.call_book(name)
        kills = sorted(book.host_kills + book.caller_kills)
        documented = Counter[str]()
        other = []
        for t, kind, phase, text in book.failures:
            near = any(k - SLACK <= t <= k + 10 for k in kills)
            if kind in CALL_FAILURES and phase in ("call", "start") and near:
                documented[kind] += 1
            else:
                other.append(f"{name}: a call failed at {t:.1f} s ({phase}) with {kind}: {text}")
        self.problems.extend(other[:20])
        if book.total("wrong"):
            self.problems.append(f"{name}: {book.total('wrong')} call(s) answered with a wrong value")
        return {
            "made": book.total("made"),
            "ok": book.total("ok"),
            "wrong": book.total("wrong"),
            "failed": book.total("failed"),
            "documented": documented,
            "other": len(other),
            "host_kills": len(book.host_kills),
            "caller_kills": len(book.caller_kills),
        }

    def survivors(self) -> list[probe.Series]:
        """Series that cover the run from the end of the warm-up to the end."""
        soak = self.soak
        return [
            series
            for series in soak.series.values()
            if series.t
            and series.t[0] <= soak.warmup + 2 * soak.o.sample_every
            and series.t[-1] >= soak.ended_at - 2 * soak.o.sample_every
            and series.key != "mosquitto"
        ]

    def judge_leaks(self) -> list[probe.Verdict]:
        verdicts = []
        for series in self.survivors():
            # The orchestrator's books grow with every message by design: its memory is not judged.
            skip = ("rss_mb",) if series.key.startswith("orchestrator") else ()
            verdicts += probe.judge(series, self.soak.warmup, skip)
        for cs in self.soak.callers.values():
            stopped = cs.agent is not None and cs.agent.fate == "stopping" and cs.agent.exit_text == "exited"
            if stopped and (cs.pending or cs.lib_pending > 0):
                self.problems.append(
                    f"{cs.spec.name}: calls still pending after the caller stopped: {cs.pending} "
                    "by our count, "
                    f"{cs.lib_pending} in the library's table"
                )
        return verdicts


def stream_row(spec_name: str, result: StreamResult, soak: Soak) -> str:
    spec = next(s for s in STREAMS if s.name == spec_name)
    faults = Counter(f.kind for f in soak.ledger.faults if f.stream == spec_name)
    if spec.channel == "mqtt":
        faults.update(f.kind for f in soak.ledger.faults if f.stream == "mqtt")
    survived = ", ".join(f"{kind} x{count}" for kind, count in sorted(faults.items())) or "-"
    explained = "; ".join(f"{count} {why}" for why, count in result.explained.items()) or "-"
    dups = f"{sum(result.dup_explained.values())} / {result.dup_unexplained}"
    lost = f"**{result.lost}**" if result.lost else "0"
    checkpoints = soak.ledger.checkpoints.get(spec_name, 0)
    return (
        f"| {spec_name} | {spec.channel} | {spec.sender} -> {spec.receiver} | {num(result.sent)} | "
        f"{num(result.received)} | {lost} | {dups} | {result.unconfirmed} | {explained} | {checkpoints} | "
        f"{survived} |"
    )


def write_report(soak: Soak) -> int:
    verdicts = Verdicts(soak)
    out = soak.o.out
    plotted = plot(soak, verdicts, out / "soak.png")
    write_samples(soak, out / "samples.csv")
    ledger = soak.ledger
    ok = not verdicts.problems
    lines = [
        "# bothways soak report",
        "",
        f"**Result: {'PASS' if ok else 'FAIL'}**"
        + ("" if ok else f" ({len(verdicts.problems)} problem(s), listed below)"),
        "",
        "| | |",
        "| --- | --- |",
        f"| date | {time.strftime('%Y-%m-%d %H:%M:%S %Z')} |",
        f"| machine | {machine()} |",
        f"| software | {versions()} |",
        f"| commit | {commit()} |",
        f"| seed | {soak.o.seed} (`--seed {soak.o.seed}` repeats the fault schedule; timings vary) |",
        f"| duration | {soak.o.minutes:g} min ({soak.ready_at:.0f} s to start everything); faults from "
        f"{soak.faults_from:.0f} s to {soak.duration - soak.cooldown:.0f} s, one every "
        f"{soak.fault_interval:.1f} s; leaks judged on the samples after {soak.warmup:.0f} s |",
        f"| rates | {soak.o.rate:g} messages/s per stream ({len(STREAMS)} streams), {soak.o.call_rate:g} "
        "quick calls/s and 5 slow calls/s (200 ms) per caller; each sender closes and reopens every "
        f"~{soak.o.cycle_every:g} s |",
        f"| command | `python -m soak {' '.join(soak.o.argv)}` |",
        "",
    ]
    if verdicts.problems:
        lines += ["## Problems", ""]
        lines += [f"- {problem}" for problem in verdicts.problems[:60]]
        if len(verdicts.problems) > 60:
            lines.append(f"- ... and {len(verdicts.problems) - 60} more")
        lines.append("")
    lines += [
        "## Channels",
        "",
        "Counts are messages. *unconfirmed*: sent by a sender that was killed before the channel's "
        "promise covered them (not a loss). *explained missing*: missing as the channel documents "
        "(see the rules below). *checkpoints*: confirmed close() calls.",
        "",
        "| stream | channel | sender -> receiver | sent | received | lost "
        "| duplicates explained / unexplained | unconfirmed | explained missing | checkpoints "
        "| faults survived |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | --- | ---: | --- |",
    ]
    results = verdicts.results
    for spec in STREAMS:
        lines.append(stream_row(spec.name, results[spec.name], soak))
    total = StreamResult("total")
    for result in results.values():
        total.sent += result.sent
        total.received += result.received
        total.lost += result.lost
        total.unconfirmed += result.unconfirmed
        total.dup_explained.update(result.dup_explained)
        total.dup_unexplained += result.dup_unexplained
    lines.append(
        f"| **all** | | | {num(total.sent)} | {num(total.received)} | {total.lost} | "
        f"{sum(total.dup_explained.values())} / {total.dup_unexplained} | {total.unconfirmed} | | | |"
    )
    reasons = Counter[str]()
    for result in results.values():
        reasons.update(result.dup_explained)
    if reasons:
        lines += [
            "",
            "Explained duplicates: " + "; ".join(f"{count} {why}" for why, count in reasons.items()) + ".",
        ]
    retries = ", ".join(f"{stream} {count}" for stream, count in sorted(ledger.connect_retries.items()))
    if retries:
        lines += ["", f"Connection attempts that failed and were retried by our senders: {retries}."]
    injected, seen, explained, _ = verdicts.garbage
    lines += [
        "",
        "### Malformed lines",
        "",
        f"{injected} malformed lines were written by raw writers of ours; {seen} were reported by the "
        f"receivers' `on_error` with the line's text, {explained} went missing with a receiver that was "
        "killed or a file that was truncated after them. Any bad line we did not write (a garbled, "
        "merged or cut message) fails the run.",
        "",
        "## Calls",
        "",
        "| calls | made | answered right | wrong | failed as documented | failed otherwise "
        "| host killed mid-call | caller killed |",
        "| --- | ---: | ---: | ---: | --- | ---: | ---: | ---: |",
    ]
    for name, c in verdicts.calls.items():
        documented = c["documented"]
        assert isinstance(documented, Counter)
        doc = ", ".join(f"{count} {kind}" for kind, count in documented.items()) or "0"
        lines.append(
            f"| {name} | {num(int(str(c['made'])))} | {num(int(str(c['ok'])))} | {c['wrong']} | {doc} | "
            f"{c['other']} | {c['host_kills']} | {c['caller_kills']} |"
        )
    lines += [
        "",
        "A call counts as failed as documented when it raised ChildExited or TransportClosed within 10 s "
        "after its host (or its caller) was killed: 'a crashed child fails every pending call with "
        "ChildExited' (node.py, python.js). The caller then starts a new host and goes on; calls "
        "in flight when a caller is killed are not counted.",
        "",
        "## Leaks",
        "",
        "Every process that ran from the end of the warm-up to the end (the others were restarted by "
        "faults). Values: first sample after the warm-up -> last sample; the verdict compares the "
        "median of the last third of the samples with the median of the second third "
        "(limits: RSS +10% or +8 MB, fds +3, threads +2, children +0.5, pending calls +2). The "
        "orchestrator's RSS is not judged: its books grow with every message by design (some 10 "
        "bytes a message); its descriptors, threads and children are (it spawns every agent).",
        "",
        "| process | pid | RSS MB | fds | threads | children | pending calls (library) | verdict |",
        "| --- | ---: | --- | --- | --- | --- | --- | --- |",
    ]
    by_process: dict[tuple[str, int], dict[str, probe.Verdict]] = {}
    for verdict in verdicts.leaks:
        by_process.setdefault((verdict.key, verdict.pid), {})[verdict.metric] = verdict
    for (key, pid), metrics in sorted(by_process.items()):

        def cell(metric: str, metrics: dict[str, probe.Verdict] = metrics) -> str:
            v = metrics.get(metric)
            if v is None:
                return "-"
            mark = "" if v.ok else " **grew**"
            return f"{v.first:.0f} -> {v.last:.0f} ({v.middle:.0f} / {v.final:.0f}){mark}"

        flat = all(v.ok for v in metrics.values())
        lines.append(
            f"| {key} | {pid} | {cell('rss_mb')} | {cell('fds')} | {cell('threads')} | {cell('children')} | "
            f"{cell('pending')} | {'flat' if flat else '**LEAK?**'} |"
        )
    short = len(soak.series) - len(verdicts.survivors())
    lines += [
        "",
        f"{short} other process lives (restarted senders, receivers, children and hosts, and mosquitto) "
        f"were sampled but are too short to judge; every process the soak started was gone at the end"
        + ("." if not soak.leftovers else f" EXCEPT {len(soak.leftovers)} (see Problems)."),
        "",
    ]
    if plotted:
        lines += ["![RSS and open descriptors over time; faults marked](soak.png)", ""]
    lines += fault_section(soak)
    if FINDINGS:
        lines += ["## Library findings", "", "Problems in bothways the soak ran into (soak/findings.py):", ""]
        for finding in FINDINGS:
            lines += [
                f"- **{finding.title}**. Where: {finding.where} Reproduce: {finding.reproduce} "
                f"In the soak: {finding.soak}"
            ]
        lines.append("")
    lines += rules_section()
    if ledger.notes:
        lines += ["## Notes", ""] + [f"- {note}" for note in ledger.notes[:40]] + [""]
    (out / "REPORT.md").write_text("\n".join(lines) + "\n")
    summary(verdicts, out)
    return 0 if ok else 1


def fault_section(soak: Soak) -> list[str]:
    faults = soak.ledger.faults
    kinds = Counter(f.kind for f in faults)
    lines = [
        "## Faults",
        "",
        f"{len(faults)} faults, in an order drawn from the seed (each kind once, then at random): "
        + ", ".join(f"{kind} x{count}" for kind, count in sorted(kinds.items()))
        + ".",
        "",
        "<details><summary>Every fault, in order</summary>",
        "",
        "| t (s) | stream | fault | detail |",
        "| ---: | --- | --- | --- |",
    ]
    lines += [f"| {f.t:.1f} | {f.stream} | {f.kind} | {f.detail} |" for f in faults]
    lines += ["", "</details>", ""]
    return lines


def rules_section() -> list[str]:
    lines = [
        "## How messages are counted",
        "",
        "Each message is `{i, n}`: `i` names one life of one sender, `n` counts from 1. A sender "
        "reports every 0.1 s how far its send() calls have returned, and each close() (a "
        "checkpoint); a receiver reports every message it takes before it asks for more (so a "
        "reader that saves its position on the next request never holds one back). *Sent* is the "
        "highest seq reported or received. A missing message is judged by its channel's promise:",
        "",
    ]
    for channel in ("stdio", "tcp", "ws", "fifo", "file", "mqtt"):
        spec = next(s for s in STREAMS if s.channel == channel)
        lines.append(f"- **{channel}**: {spec.promise.rules}")
    lines += [
        "",
        f"A message missing at or below a sender's confirmed seq, with none of these explanations, is "
        f"**lost**. A duplicate is explained only by its channel's promise (tcp: a break between the two "
        f"receipts; file: a reader killed within 1 s after the first; mqtt: a broker or subscriber "
        f"restart between them) or by our own sender sending a seq again after send() raised. Times "
        f"are compared with {SLACK:g} s of slack.",
        "",
    ]
    return lines


def summary(verdicts: Verdicts, out: Path) -> None:
    total_sent = sum(r.sent for r in verdicts.results.values())
    total_lost = sum(r.lost for r in verdicts.results.values())
    dups = sum(r.dup_unexplained for r in verdicts.results.values())
    explained = sum(sum(r.dup_explained.values()) for r in verdicts.results.values())
    unconfirmed = sum(r.unconfirmed for r in verdicts.results.values())
    made = sum(int(str(c["made"])) for c in verdicts.calls.values())
    print(
        f"soak: {'PASS' if not verdicts.problems else 'FAIL'}: {total_sent:,} messages sent, "
        f"{total_lost} lost, "
        f"{explained} explained / {dups} unexplained duplicates, {unconfirmed} unconfirmed; "
        f"{len(verdicts.soak.ledger.faults)} faults; {made:,} calls; "
        f"{sum(1 for v in verdicts.leaks if not v.ok)} leak verdicts failed; report in {out / 'REPORT.md'}",
        flush=True,
    )
    for problem in verdicts.problems[:30]:
        print(f"  - {problem}", file=sys.stderr)


def write_samples(soak: Soak, path: Path) -> None:
    """Every /proc sample, for a closer look than the plot gives."""
    with path.open("w") as out:
        out.write("t,process,pid," + ",".join(probe.METRICS) + ",pending\n")
        rows = []
        for series in soak.series.values():
            for index, t in enumerate(series.t):
                values = [series.values[m][index] for m in (*probe.METRICS, "pending")]
                rows.append((t, series.key, series.pid, values))
        for t, key, pid, values in sorted(rows, key=lambda row: row[0]):
            out.write(f"{t:.1f},{key},{pid}," + ",".join(f"{v:g}" for v in values) + "\n")


def plot(soak: Soak, verdicts: Verdicts, path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    survivors = {(s.key, s.pid) for s in verdicts.survivors()}
    fig, axes = plt.subplots(
        4, 1, figsize=(13, 13), sharex=True, gridspec_kw={"height_ratios": [3, 2, 2, 1.4]}
    )
    metrics = (("rss_mb", "RSS (MB)"), ("fds", "open descriptors"), ("threads", "threads"))
    colours = plt.get_cmap("tab10")
    styles = ("-", "--", ":")
    for ax, (metric, title) in zip(axes, metrics, strict=False):
        index = 0
        for (key, pid), series in sorted(soak.series.items()):
            if (key, pid) in survivors:
                style = styles[(index // 10) % 3]
                ax.plot(
                    series.t,
                    series.values[metric],
                    style,
                    label=key,
                    color=colours(index % 10),
                    linewidth=1.3,
                )
                index += 1
            else:
                ax.plot(series.t, series.values[metric], color="0.82", linewidth=0.6)
        ax.axvspan(0, soak.warmup, color="0.94")
        ax.set_ylabel(title)
        ax.grid(alpha=0.3)
    strip = axes[-1]
    kinds = sorted({f.kind for f in soak.ledger.faults})
    for row, kind in enumerate(kinds):
        times = [f.t for f in soak.ledger.faults if f.kind == kind]
        strip.scatter(times, [row] * len(times), marker="|", s=120, color="C3")
    strip.set_yticks(range(len(kinds)), kinds, fontsize=7)
    strip.set_ylim(-0.7, max(len(kinds), 1) - 0.3)
    strip.grid(alpha=0.3, axis="x")
    strip.set_xlabel("seconds since the soak started")
    strip.set_ylabel("faults")
    for ax in axes[:-1]:
        for fault in soak.ledger.faults:
            if fault.kind.startswith(("kill", "restart")):
                ax.axvline(fault.t, color="C3", alpha=0.12, linewidth=0.7)
    axes[0].set_title(
        f"bothways soak, seed {soak.o.seed}: processes that lived through the run in colour, restarted "
        "ones in grey; faint red lines: kills and restarts; shaded: warm-up"
    )
    fig.legend(*axes[0].get_legend_handles_labels(), loc="lower center", ncol=3, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.09, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
