"""Calls benchmark (not a test): JSON-RPC round trips across a child pipe, both directions.

For one trivial function, add(a, b): the sequential round-trip latency (p50, p99) and the rate
of pipelined calls (many in flight at once), beside, in the same run: a raw pipe ping-pong of
the same bytes (no JSON-RPC), JSPyBridge (PyPI ``javascript``: Python calls Node), pythonia
(npm, its Node side: Node calls Python) and python-shell's JSON mode (Node calls Python).

    python bench/calls.py [--rounds 5] [--record bench/RESULTS.md] [--require-all]

Rounds are interleaved (every way once per round) and each number is the best of the rounds:
the machine is shared and noisy. Each way runs once per round with this process and its
children pinned to one CPU, for the sequential latencies (on a virtual machine a wake-up across
idle vCPUs costs tens of microseconds and swamps every difference between the ways; on one CPU
a round trip is two context switches plus the work, the same for all), and a way that has a
pipelined rate runs again on every CPU for it (both processes must run at once; the latencies
of that second run are not kept). A comparison library that
is not installed is reported as missing; ``--require-all`` makes that an error (exit 1).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import importlib.util
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bothways import node
from bothways.peer import Peer
from bothways.transports import async_spawn

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CALLS_DIR = HERE / "calls"
HOST = ROOT / "js" / "bin" / "host.mjs"
sys.path.insert(0, str(HERE))
from common import Row, child_result, machine, record  # noqa: E402

PY = sys.executable
NODE = "node"
CALLS = 3_000  # sequential round trips measured per round...
WARMUP = 2_000  # ...after as many unmeasured (V8 optimizes the Node side's code on the way)
SLOW_CALLS = 500  # JSPyBridge: about 0.15-0.4 ms a call (warm-up: as many)
PIPELINED = 20_000  # calls in flight at once
REQUEST = '{"jsonrpc":"2.0","method":"add","params":[1,2],"id":1}'  # what ours sends, in size
ANSWER = '{"jsonrpc":"2.0","result":3,"id":1}'

Result = dict[str, Any]  # {"p1": us, ..., "p99": us, "rate": calls/s or None} or {"missing": ...}
PERCENTILES = (1, 10, 25, 50, 75, 90, 99)  # recorded (the helpers give the same), for the charts


def summary(latencies_ns: list[int], rate: float | None = None) -> Result:
    latencies_ns.sort()
    n = len(latencies_ns)
    result: Result = {f"p{q}": latencies_ns[n * q // 100] / 1000 for q in PERCENTILES}
    result["rate"] = rate
    return result


async def sequential(one: Callable[[int], Awaitable[Any]], calls: int = CALLS) -> list[int]:
    for i in range(WARMUP):
        await one(i)
    latencies = []
    clock = time.perf_counter_ns
    for i in range(calls):
        start = clock()
        await one(i)
        latencies.append(clock() - start)
    return latencies


def check(result: Any, i: int) -> None:
    if result != i + 1:
        raise AssertionError(f"add({i}, 1) gave {result!r}")


# -- Python calls Node ------------------------------------------------------------------------------


async def py_ours() -> Result:
    """Our Peer over an asyncio child: js/bin/host.mjs serving bench/calls/add.mjs."""
    child = await async_spawn([NODE, str(HOST), str(CALLS_DIR / "add.mjs")], stderr="keep")
    async with Peer(child) as peer:
        call = peer.call

        async def one(i: int) -> None:
            check(await call("add", i, 1), i)

        latencies = await sequential(one)
        start = time.perf_counter()
        results = await asyncio.gather(*(call("add", i, 1) for i in range(PIPELINED)))
        rate = PIPELINED / (time.perf_counter() - start)
        for i, result in enumerate(results):
            check(result, i)
    return summary(latencies, rate)


def py_ours_blocking() -> Result:
    """bothways.node.require: the blocking API (each call made in the calling thread, peer.Caller)."""
    with node.require(CALLS_DIR / "add.mjs", stderr="keep") as module:
        add = module.add
        for i in range(WARMUP):
            add(i, 1)
        latencies = []
        clock = time.perf_counter_ns
        for i in range(CALLS):
            start = clock()
            result = add(i, 1)
            latencies.append(clock() - start)
            check(result, i)
    return summary(latencies)


async def py_raw() -> Result:
    """The same bytes over the same kind of pipe, asyncio on our side: no JSON-RPC at all."""
    proc = await asyncio.create_subprocess_exec(
        NODE, str(CALLS_DIR / "echo.mjs"), ANSWER, stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    assert proc.stdin is not None and proc.stdout is not None
    stdin, stdout = proc.stdin, proc.stdout
    request = (REQUEST + "\n").encode()

    async def one(i: int) -> None:
        stdin.write(request)
        await stdin.drain()
        await stdout.readline()

    latencies = await sequential(one)
    start = time.perf_counter()
    stdin.write(request * PIPELINED)
    await stdin.drain()
    await stdout.readexactly(len(ANSWER.encode()) * PIPELINED + PIPELINED)
    rate = PIPELINED / (time.perf_counter() - start)
    stdin.close()
    await proc.wait()
    return summary(latencies, rate)


def py_raw_blocking() -> Result:
    """The same ping-pong with blocking os.write/os.read on our side: the floor."""
    proc = subprocess.Popen(
        [NODE, str(CALLS_DIR / "echo.mjs"), ANSWER], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    assert proc.stdin is not None and proc.stdout is not None
    out, into = proc.stdin.fileno(), proc.stdout.fileno()
    request = (REQUEST + "\n").encode()
    latencies = []
    clock = time.perf_counter_ns
    for i in range(WARMUP + CALLS):
        start = clock()
        os.write(out, request)
        while not os.read(into, 65536).endswith(b"\n"):
            pass
        if i >= WARMUP:
            latencies.append(clock() - start)
    proc.stdin.close()
    proc.wait()
    return summary(latencies)


def py_jspybridge() -> Result:
    """JSPyBridge, in a process of its own (its Node bridge lives as long as the process)."""
    if importlib.util.find_spec("javascript") is None:
        return {"missing": "javascript (PyPI, JSPyBridge)"}
    result = child_result([PY, str(CALLS_DIR / "jspybridge.py"), str(SLOW_CALLS)])
    result.setdefault("rate", None)
    return result


# -- Node calls Python ------------------------------------------------------------------------------


def node_side(way: str, pipelined: int = PIPELINED, calls: int = CALLS) -> Result:
    """One way of Node calling Python, run by bench/calls/node_side.mjs in a process of its own."""
    return child_result(
        [NODE, str(CALLS_DIR / "node_side.mjs"), way, PY, str(WARMUP), str(calls), str(pipelined)], cwd=ROOT
    )


# -- the run ----------------------------------------------------------------------------------------

WAYS: list[tuple[str, str, Callable[[], Result]]] = [  # direction, way, how
    ("py->node", "ours: Peer over the child's stdio pipe", lambda: asyncio.run(py_ours())),
    ("py->node", "ours: node.require (blocking API)", py_ours_blocking),
    ("py->node", "raw ping-pong, asyncio", lambda: asyncio.run(py_raw())),
    ("py->node", "raw ping-pong, blocking I/O", py_raw_blocking),
    ("py->node", "JSPyBridge", py_jspybridge),
    ("node->py", "ours: python.import, def (host without event loop)", lambda: node_side("ours")),
    ("node->py", "ours: python.import, async def (event loop)", lambda: node_side("ours-async")),
    ("node->py", "ours: python.import, def, 4 threads", lambda: node_side("ours-threads")),
    ("node->py", "ours: Peer to asyncio Peer over the stdio pipe", lambda: node_side("pipe")),
    ("node->py", "raw ping-pong, asyncio", lambda: node_side("raw")),
    ("node->py", "raw ping-pong, blocking I/O", lambda: node_side("raw-blocking")),
    ("node->py", "pythonia", lambda: node_side("pythonia", pipelined=2_000)),
    ("node->py", "python-shell", lambda: node_side("pyshell")),
]
OURS = {
    "py->node": "ours: Peer over the child's stdio pipe",
    "node->py": "ours: python.import, def (host without event loop)",
}
# (direction, way) -> (the least "this p50 / ours p50" the targets allow, the target as text).
# The raw ping-pong that counts is the one doing the same kind of I/O as ours on the Python side:
# asyncio where our Python side is the asyncio Peer, blocking reads where it is the plain host.
TARGETS = {
    ("py->node", "raw ping-pong, asyncio"): (1 / 1.5, ">= 0.67 (p50 within 1.5x)"),
    ("py->node", "JSPyBridge"): (3.0, ">= 3"),
    ("node->py", "raw ping-pong, blocking I/O"): (1 / 1.5, ">= 0.67 (p50 within 1.5x)"),
    ("node->py", "pythonia"): (1.0, "> 1"),
    ("node->py", "python-shell"): (1.0, "> 1"),
}
RATE_TARGET = 100_000


def run(rounds: int, one_cpu: int) -> tuple[dict[tuple[str, str], Result], list[str]]:
    best: dict[tuple[str, str], Result] = {}
    missing: list[str] = []
    every_cpu = os.sched_getaffinity(0)
    for _ in range(rounds):  # interleaved: the machine is shared and noisy
        for direction, way, how in WAYS:
            key = (direction, way)
            if key in best and "missing" in best[key]:
                continue
            os.sched_setaffinity(0, {one_cpu})  # the children inherit it
            try:
                pinned = how()
            finally:
                os.sched_setaffinity(0, every_cpu)
            if "missing" in pinned:
                best[key] = pinned
                missing.append(f"{way} ({direction}): {pinned['missing']} is not installed")
                continue
            kept = best.setdefault(key, {"rate": None})
            for name, value in pinned.items():  # each percentile: the best of the rounds
                if name.startswith("p") and name[1:].isdigit():
                    kept[name] = min(kept.get(name, float("inf")), value)
            if pinned.get("rate") is not None:
                kept["rate"] = max(kept["rate"] or 0.0, how()["rate"])  # the rate: every CPU
    return best, missing


def table(best: dict[tuple[str, str], Result]) -> tuple[str, list[str], list[Row]]:
    """The Markdown table, the targets missed, and the rows as data (with every percentile)."""
    lines = [
        "| direction | way | p50 (µs) | p90 (µs) | p99 (µs) | pipelined (calls/s) | this p50 / ours p50 "
        "| target |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    missed = []
    data: list[Row] = []
    for (direction, way), r in best.items():
        if "missing" in r:
            lines.append(f"| {direction} | {way} | not installed: {r['missing']} | | | | | |")
            data.append({"direction": direction, "way": way, "p50 (µs)": f"not installed: {r['missing']}"})
            continue
        ours = best[(direction, OURS[direction])]
        ratio = r["p50"] / ours["p50"]
        rate = f"{r['rate']:,.0f}" if r.get("rate") else "—"
        target = ""
        if (direction, way) in TARGETS:
            minimum, target = TARGETS[(direction, way)]
            if ratio < minimum:
                missed.append(f"{direction} p50 against {way}: {ratio:.2f}, target {target}")
        elif way == OURS[direction]:
            target = f"pipelined >= {RATE_TARGET:,}"
            if (r.get("rate") or 0) < RATE_TARGET:
                missed.append(
                    f"{direction} pipelined: {r.get('rate') or 0:,.0f} calls/s, target {RATE_TARGET:,}"
                )
        p90 = f"{r['p90']:,.0f}" if "p90" in r else "—"
        lines.append(
            f"| {direction} | {way} | {r['p50']:,.1f} | {p90} | {r['p99']:,.0f} | {rate} | {ratio:.2f} "
            f"| {target} |"
        )
        data.append(
            {
                "direction": direction,
                "way": way,
                "p50 (µs)": r["p50"],
                "p90 (µs)": r.get("p90"),
                "p99 (µs)": r["p99"],
                "pipelined (calls/s)": r.get("rate"),
                "this p50 / ours p50": ratio,
                "target": target or None,
                "percentiles (µs)": {k: v for k, v in r.items() if k.startswith("p") and k[1:].isdigit()},
            }
        )
    return "\n".join(lines), missed, data


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--cpu", type=int, default=min(os.sched_getaffinity(0)), help="the CPU for the latencies"
    )
    parser.add_argument("--record", type=Path, help="rewrite the calls section of this Markdown file")
    parser.add_argument(
        "--require-all", action="store_true", help="fail when a comparison library is missing"
    )
    args = parser.parse_args()
    started = time.perf_counter()
    best, missing = run(args.rounds, args.cpu)
    result, missed, data = table(best)
    print(result)
    print(f"\n{args.rounds} rounds in {time.perf_counter() - started:.0f} s")
    for line in missing:
        print(f"MISSING: {line}", file=sys.stderr)
    for line in missed:
        print(f"TARGET MISSED: {line}", file=sys.stderr)
    if args.record:
        when = datetime.date.today().isoformat()
        record(
            args.record,
            f"## Calls ({when})\n\nMachine: {machine()}. `python bench/calls.py` (bench/calls/); best of "
            f"{args.rounds} interleaved rounds of {CALLS:,} sequential calls of add(a, b) (after {WARMUP:,} "
            f"unmeasured ones), timed with every process pinned to one CPU, "
            f"and {PIPELINED:,} pipelined ones on both CPUs (pythonia: 2,000; JSPyBridge: {SLOW_CALLS} "
            f"sequential, it has no pipelining). The raw ping-pongs send the same bytes with no JSON-RPC; "
            f"the target compares ours with the one whose Python side does the same kind of I/O "
            f'(asyncio for the Peer, blocking reads for the plain host). "this p50 / ours p50" above 1 '
            f"means bothways is faster. Each percentile is the best of the rounds.\n\n{result}",
            section="calls",
            tables=[data],
            settings={"rounds": args.rounds, "calls": CALLS, "warmup": WARMUP, "pipelined": PIPELINED},
        )
    if missing and args.require_all:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
