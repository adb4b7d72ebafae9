"""Objects benchmark (not a test): handles, callbacks, streams and bytes across a child, both ways.

What spec/PROTOCOL.md section 10 carries, timed through the public APIs (``bothways.node.require``
from Python, ``python.import`` from Node) on the fixture modules in bench/objects/, beside, in
the same run: JSPyBridge (PyPI ``javascript``: Python using Node's objects), pythonia (npm, its
Node side: Node using Python's objects) and the raw pipe's bandwidth.

- a method call on a handle (``parser.parse("a,b")``, ``counter.add(1)``): p50 and p99;
- making an instance and letting it go (the garbage collector releases it), or releasing it
  explicitly (``release(proxy)``): µs per object;
- callbacks: the other side calls a function we passed it n times, one after the other;
- a generator on the other side pulled here: items/s;
- 100 MB of bytes one way (each direction, each side calling): MB/s against a raw pipe;
- 80 MB of float64 (numpy <-> Float64Array) against the same numbers as a JSON list, through
  the same call: how many times faster.

    python bench/objects.py [--rounds 3] [--quick] [--record bench/RESULTS.md]

Rounds are interleaved (every way once per round) and each number is the best of the rounds:
the machine is shared and noisy. The sequential latencies (method calls, objects, callbacks)
are timed with this process and its children pinned to one CPU, as in bench/calls.py; streams
and transfers use every CPU (both processes work at once). A comparison library that is not
installed is reported as missing.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import importlib.util
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bothways import node
from bothways.objects import release

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
OBJECTS_DIR = HERE / "objects"
FIXTURE = OBJECTS_DIR / "fixture.cjs"
sys.path.insert(0, str(HERE))
from common import Row, child_result, machine, record  # noqa: E402

PY = sys.executable
NODE = "node"
MB = 1_000_000

FULL = {
    "warmup": 2_000,  # unmeasured calls before the measured ones (V8 optimizes on the way)
    "calls": 3_000,  # sequential method calls measured
    "objects": 3_000,  # objects made (and let go of, or released)
    "callbacks": 3_000,  # sequential callbacks
    "slow": 500,  # the same, for the peers (0.1-0.5 ms each)
    "stream": 1_000_000,  # items of the generator
    "slow_stream": 2_000,  # the peers: one round trip per item
    "bytes": 100 * 1024 * 1024,
    "floats": 10_000_000,  # 80 MB of float64
}
QUICK = {
    "warmup": 200,
    "calls": 500,
    "objects": 300,
    "callbacks": 300,
    "slow": 100,
    "stream": 100_000,
    "slow_stream": 200,
    "bytes": 10 * 1024 * 1024,
    "floats": 1_000_000,
}

Result = dict[str, Any]


# -- Python uses Node's objects -----------------------------------------------------------------


def _latencies(one: Callable[[], Any], warmup: int, calls: int) -> dict[str, float]:
    for _ in range(warmup):
        one()
    clock = time.perf_counter_ns
    times = []
    for _ in range(calls):
        start = clock()
        one()
        times.append(clock() - start)
    times.sort()
    return {"p50": times[calls // 2] / 1000, "p99": times[int(calls * 0.99)] / 1000}


def _per_step(step: Callable[[], Any], n: int) -> float:
    """µs per step, of n steps one after the other (after n/4 unmeasured ones)."""
    for _ in range(n // 4):
        step()
    start = time.perf_counter_ns()
    for _ in range(n):
        step()
    return (time.perf_counter_ns() - start) / 1000 / n


def _expect(got: Any, wanted: Any, what: str) -> None:
    if got != wanted:
        raise AssertionError(f"{what}: got {got!r}, wanted {wanted!r}")


def py_latency(counts: dict[str, int]) -> Result:
    """node.require (the blocking API): a JS class's instance, made, used, let go of, released;
    a Python function Node calls back."""
    with node.require(FIXTURE, stderr="keep") as m:
        parser = m.Parser(",")
        method = _latencies(lambda: parser.parse("a,b"), counts["warmup"], counts["calls"])
        _expect(parser.parse("a,b"), ["a", "b"], "parse")

        def let_go() -> None:
            m.Parser(",")  # dropped at once (refcount): its finalizer queues the $/release

        def released() -> None:
            release(m.Parser(","))

        let_go_us = _per_step(let_go, counts["objects"])
        released_us = _per_step(released, counts["objects"])
        n = counts["callbacks"]
        m.callBack(lambda i: i, n // 4)  # warm-up
        start = time.perf_counter_ns()
        _expect(m.callBack(lambda i: i, n), n * (n - 1) // 2, "callBack")
        callback = (time.perf_counter_ns() - start) / 1000 / n
        release(parser)
        gc.collect()
        m.size([])  # (carries the last releases)
        _expect(m._caller.call("$/handles"), 0, "handles left in Node")
    return {"method": method, "let_go": let_go_us, "released": released_us, "callback": callback}


def py_stream(counts: dict[str, int]) -> Result:
    n = counts["stream"]
    with node.require(FIXTURE, stderr="keep") as m:
        start = time.perf_counter()
        total = count = 0
        for item in m.numbers(n):
            total += item
            count += 1
        rate = n / (time.perf_counter() - start)
    _expect((count, total), (n, n * (n - 1) // 2), "items, sum")
    return {"stream": rate}


def py_transfer(counts: dict[str, int]) -> Result:
    """Seconds per one-way transfer: ``*_in`` Node -> Python (we call bytes(), floats()...),
    ``*_out`` Python -> Node (we call size(data))."""
    import numpy

    out: Result = {}
    clock = time.perf_counter
    data = bytes(range(256)) * (counts["bytes"] // 256)
    floats = numpy.arange(counts["floats"], dtype=numpy.float64) * 0.25 + 0.1
    numbers = floats.tolist()
    with node.require(FIXTURE, stderr="keep") as m:
        m.prepare(counts["bytes"], counts["floats"])
        start = clock()
        got = m.bytes()
        out["bytes_in"] = clock() - start
        _expect(len(got), counts["bytes"], "bytes in")
        del got
        start = clock()
        _expect(m.size(data), counts["bytes"], "bytes out")
        out["bytes_out"] = clock() - start
        start = clock()
        array = m.floats()
        out["floats_in"] = clock() - start
        _expect((array.dtype, array.shape), (numpy.dtype("float64"), (counts["floats"],)), "floats in")
        del array
        start = clock()
        got = m.floatList()
        out["list_in"] = clock() - start
        _expect(len(got), counts["floats"], "list in")
        del got
        start = clock()
        _expect(m.size(floats), counts["floats"], "floats out")
        out["floats_out"] = clock() - start
        start = clock()
        _expect(m.size(numbers), counts["floats"], "list out")
        out["list_out"] = clock() - start
    return out


def py_jspybridge(group: str, counts: dict[str, int]) -> Result:
    """JSPyBridge, in a process of its own (its Node bridge lives as long as the process)."""
    if importlib.util.find_spec("javascript") is None:
        return {"missing": "javascript (PyPI, JSPyBridge)"}
    return child_result([PY, str(OBJECTS_DIR / "jspybridge.py"), group, json.dumps(counts)])


# -- Node uses Python's objects -----------------------------------------------------------------


def node_side(way: str, group: str, counts: dict[str, int]) -> Result:
    """One group of Node using Python's objects, run by bench/objects/node_side.mjs."""
    return child_result(
        [NODE, str(OBJECTS_DIR / "node_side.mjs"), way, group, PY, json.dumps(counts)], cwd=ROOT
    )


# -- the raw pipe ---------------------------------------------------------------------------------


def raw_pipe(counts: dict[str, int]) -> Result:
    """Seconds to move the bytes through a bare pipe: Node writes, we read (``bytes_in``); we
    write, Node reads (``bytes_out``)."""
    n = counts["bytes"]
    out: Result = {}
    proc = subprocess.Popen(
        [NODE, str(OBJECTS_DIR / "raw.mjs"), "write", str(n)], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    assert proc.stdin is not None and proc.stdout is not None
    buffer = bytearray(1 << 20)
    view = memoryview(buffer)
    fd = proc.stdout.fileno()
    start = time.perf_counter()
    proc.stdin.write(b"go\n")
    proc.stdin.flush()
    got = 0
    while got < n:
        chunk = os.readv(fd, [view])
        if chunk == 0:
            break
        got += chunk
    out["bytes_in"] = time.perf_counter() - start
    _expect(got, n, "raw bytes in")
    proc.stdin.close()
    proc.wait()
    data = memoryview(bytes(n))
    proc = subprocess.Popen(
        [NODE, str(OBJECTS_DIR / "raw.mjs"), "read", str(n)], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    assert proc.stdin is not None and proc.stdout is not None
    _expect(proc.stdout.readline(), b"ready\n", "raw reader")
    fd = proc.stdin.fileno()
    start = time.perf_counter()
    sent = 0
    while sent < n:
        sent += os.write(fd, data[sent : sent + (1 << 20)])
    _expect(proc.stdout.readline(), b"done\n", "raw reader")
    out["bytes_out"] = time.perf_counter() - start
    proc.stdin.close()
    proc.wait()
    return out


# -- the run ----------------------------------------------------------------------------------------

# (side, way, group, pinned to one CPU, how): side "py" is Python using Node's objects, "node"
# Node using Python's.
Way = tuple[str, str, str, bool, Callable[[dict[str, int]], Result]]
WAYS: list[Way] = [
    ("py", "ours", "latency", True, py_latency),
    ("py", "JSPyBridge", "latency", True, lambda c: py_jspybridge("latency", c)),
    ("node", "ours", "latency", True, lambda c: node_side("ours", "latency", c)),
    ("node", "pythonia", "latency", True, lambda c: node_side("pythonia", "latency", c)),
    ("py", "ours", "stream", False, py_stream),
    ("py", "JSPyBridge", "stream", False, lambda c: py_jspybridge("stream", c)),
    ("node", "ours", "stream", False, lambda c: node_side("ours", "stream", c)),
    ("node", "pythonia", "stream", False, lambda c: node_side("pythonia", "stream", c)),
    ("py", "raw pipe", "transfer", False, raw_pipe),
    ("py", "ours", "transfer", False, py_transfer),
    ("node", "ours", "transfer", False, lambda c: node_side("ours", "transfer", c)),
]
FASTEST = {"method": min, "let_go": min, "released": min, "callback": min, "stream": max}


def keep_best(kept: Result, new: Result) -> None:
    """Folds one round into the best so far: least time, most items/s."""
    for key, value in new.items():
        if value is None:
            kept.setdefault(key, None)
        elif key == "method":
            best = kept.setdefault(key, {"p50": float("inf"), "p99": float("inf")})
            best["p50"], best["p99"] = min(best["p50"], value["p50"]), min(best["p99"], value["p99"])
        else:
            old = kept.get(key)
            kept[key] = value if old is None else FASTEST.get(key, min)(old, value)


def run(
    rounds: int, counts: dict[str, int], one_cpu: int
) -> tuple[dict[tuple[str, str, str], Result], list[str]]:
    best: dict[tuple[str, str, str], Result] = {}
    missing: list[str] = []
    every_cpu = os.sched_getaffinity(0)
    for _ in range(rounds):  # interleaved: the machine is shared and noisy
        for side, way, group, pinned, how in WAYS:
            key = (side, way, group)
            if key in best and "missing" in best[key]:
                continue
            if pinned:
                os.sched_setaffinity(0, {one_cpu})  # the children inherit it
            try:
                result = how(counts)
            finally:
                os.sched_setaffinity(0, every_cpu)
            if "missing" in result:
                best[key] = result
                missing.append(f"{way} ({side}): {result['missing']} is not installed")
                continue
            keep_best(best.setdefault(key, {}), result)
    return best, missing


def table(
    best: dict[tuple[str, str, str], Result], counts: dict[str, int]
) -> tuple[str, list[str], list[Row]]:
    """The Markdown table, the targets missed and the rows as data. "ratio" is always "how many
    times better ours is"."""
    data: list[Row] = []
    lines = [
        "| measure | direction | ours | reference | reference's | ratio | target |",
        "| --- | --- | ---: | --- | ---: | ---: | --- |",
    ]
    missed: list[str] = []

    def row(
        measure: str,
        direction: str,
        ours: float,
        reference: str,
        theirs: float | None,
        ratio: float | None,
        target: float | None,
        spec: str = ",.1f",
    ) -> None:
        shown = "—" if ratio is None else f"{ratio:,.2f}"
        wanted = f">= {target:g}" if target is not None else ""
        if target is not None and ratio is not None and ratio < target:
            missed.append(f"{measure}, {direction}: {ratio:.2f}, target {wanted}")
        theirs_shown = "—" if theirs is None else format(theirs, spec)
        lines.append(
            f"| {measure} | {direction} | {ours:{spec}} | {reference} | {theirs_shown} | {shown} | {wanted} |"
        )
        data.append(
            {
                "measure": measure,
                "direction": direction,
                "ours": ours,
                "reference": reference,
                "reference's": theirs,
                "ratio": ratio,
                "target": wanted or None,
            }
        )

    peers = {"py": "JSPyBridge", "node": "pythonia"}
    directions = {"py": "Python -> Node", "node": "Node -> Python"}
    for side in ("py", "node"):
        ours = best.get((side, "ours", "latency"), {})
        peer = best.get((side, peers[side], "latency"), {})
        name = peers[side]
        if "missing" in peer:
            peer, name = {}, f"{name} (not installed)"
        for pct in ("p50", "p99"):
            theirs = peer.get("method", {}).get(pct)
            row(
                f"method call on a handle, {pct} (µs)",
                directions[side],
                ours["method"][pct],
                name,
                theirs,
                None if theirs is None else theirs / ours["method"][pct],
                3 if pct == "p50" and theirs is not None else None,
            )
        for key, measure in (
            ("let_go", "make an object, let it go (µs each)"),
            ("released", "make an object, release() it (µs each)"),
        ):
            theirs = peer.get("let_go")  # the peers' only way: JSPyBridge `del`, pythonia the GC
            row(
                measure,
                directions[side],
                ours[key],
                f"{name}, let go" if theirs is not None else name,
                theirs,
                None if theirs is None else theirs / ours[key],
                None,
            )
        theirs = peer.get("callback")
        row(
            "callback round trip (µs each)",
            "Node calls Python" if side == "py" else "Python calls Node",
            ours["callback"],
            name,
            theirs,
            None if theirs is None else theirs / ours["callback"],
            3 if theirs is not None else None,
        )
    for side, what in (("py", "a JS array by index"), ("node", "for await")):
        ours = best[(side, "ours", "stream")]
        peer = best.get((side, peers[side], "stream"), {})
        theirs = peer.get("stream")
        row(
            f"{counts['stream']:,}-item generator pulled (items/s)",
            "Node -> Python" if side == "py" else "Python -> Node",
            ours["stream"],
            f"{peers[side]} ({what}, {counts['slow_stream']:,} items)" if theirs else peers[side],
            theirs,
            None if theirs is None else ours["stream"] / theirs,
            None,
            ",.0f",
        )
    raw = best[("py", "raw pipe", "transfer")]
    size_mb = counts["bytes"] / MB
    size_mib = counts["bytes"] / (1 << 20)
    for side, caller in (("py", "Python calls"), ("node", "Node calls")):
        ours = best[(side, "ours", "transfer")]
        # Python's "out" is what it sends; Node's "in" is what it gets from Python
        for key, direction in (
            ("bytes_out" if side == "py" else "bytes_in", "Python -> Node"),
            ("bytes_in" if side == "py" else "bytes_out", "Node -> Python"),
        ):
            raw_key = "bytes_out" if direction == "Python -> Node" else "bytes_in"
            row(
                f"{size_mib:,.0f} MiB of bytes (MB/s; {caller})",
                direction,
                size_mb / ours[key],
                "raw pipe",
                size_mb / raw[raw_key],
                raw[raw_key] / ours[key],
                0.5,
                ",.0f",
            )
    float_mb = counts["floats"] * 8 / MB
    for side, caller in (("py", "Python calls"), ("node", "Node calls")):
        ours = best[(side, "ours", "transfer")]
        for suffix, direction in (
            ("out" if side == "py" else "in", "Python -> Node"),
            ("in" if side == "py" else "out", "Node -> Python"),
        ):
            array, numbers = ours[f"floats_{suffix}"], ours[f"list_{suffix}"]
            row(
                f"{float_mb:,.0f} MB of float64 (ms; {caller})",
                direction,
                array * 1000,
                "the same as a JSON list",
                numbers * 1000,
                numbers / array,
                10,
                ",.0f",
            )
    return "\n".join(lines), missed, data


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="fewer iterations and less data: a smoke run")
    parser.add_argument(
        "--cpu", type=int, default=min(os.sched_getaffinity(0)), help="the CPU for the latencies"
    )
    parser.add_argument("--record", type=Path, help="rewrite the objects section of this Markdown file")
    args = parser.parse_args()
    counts = QUICK if args.quick else FULL
    started = time.perf_counter()
    best, missing = run(args.rounds, counts, args.cpu)
    result, missed, data = table(best, counts)
    print(result)
    print(f"\n{args.rounds} rounds in {time.perf_counter() - started:.0f} s", flush=True)
    for line in missing:
        print(f"MISSING: {line}", file=sys.stderr)
    for line in missed:
        print(f"TARGET MISSED: {line}", file=sys.stderr)
    if not missed:
        print("TARGET MET: every target", file=sys.stderr)
    if args.record:
        when = datetime.date.today().isoformat()
        record(
            args.record,
            f"## Objects, callbacks, streams and bytes ({when})\n\nMachine: {machine()}. "
            f"`python bench/objects.py` (bench/objects/); best of {args.rounds} interleaved rounds"
            f"{' (--quick)' if args.quick else ''}. Python uses Node's objects through "
            f"`node.require` (blocking), Node uses Python's through `python.import`. Method calls: "
            f"{counts['calls']:,} sequential (after {counts['warmup']:,} unmeasured), objects: "
            f"{counts['objects']:,}, callbacks: {counts['callbacks']:,} (the peers: {counts['slow']:,} "
            f"of each), timed with every process pinned to one CPU; streams and transfers on both "
            f"CPUs, one call each way. The raw pipe is a bare Node child writing to (or reading "
            f'from) a pipe, measured in the same round. "ratio" is how many times better ours '
            f"is (peer µs / ours; ours / raw MB/s; JSON list ms / typed array ms).\n\n{result}",
            section="objects",
            tables=[data],
            settings={"rounds": args.rounds, "quick": args.quick, **counts},
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
