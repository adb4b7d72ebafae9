"""Child-process benchmark (not a test): messages/s and MB/s across a real pipe, both directions,
beside the raw pipe, the tutorial's read(1) loop, python-shell's JSON mode and the codec-bound
rate (bare encode in the writer + bare decode in the reader), all measured in one run.

    python bench/stdio.py [--record bench/RESULTS.md]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from bothways import encode
from bothways.transports import spawn

HERE = Path(__file__).resolve().parent / "stdio"
sys.path.insert(0, str(HERE))
from messages import make  # noqa: E402

sys.path.insert(0, str(HERE.parent))
from codec import machine, record  # noqa: E402

NODE = "node"
PY = sys.executable
COUNTS = {"small": 300_000, "large": 40}
SLOW_COUNT = 20_000  # the read(1) loop and python-shell are slow: fewer messages, same rate


def node_reader(mode: str, kind: str, count: int) -> dict[str, float]:
    out = subprocess.run(
        [NODE, str(HERE / "reader.mjs"), mode, kind, str(count), PY],
        check=True,
        capture_output=True,
        cwd=HERE.parent.parent,
    )
    result: dict[str, float] = json.loads(out.stdout)
    return result


class Clock:
    """Starts at the first byte or message, so the writer's start-up is not timed."""

    start: float | None = None

    def tick(self) -> None:
        if self.start is None:
            self.start = time.perf_counter()


def timed(fn: Callable[[Clock], int]) -> dict[str, float]:  # fn's other arguments are defaulted
    clock = Clock()
    messages = fn(clock)
    assert clock.start is not None
    return {"seconds": time.perf_counter() - clock.start, "messages": messages}


def node_writer_argv(mode: str, kind: str, count: int) -> list[str]:
    return [NODE, str(HERE / "writer.mjs"), mode, kind, str(count)]


def py_ours(clock: Clock, kind: str, count: int, mode: str = "ours") -> int:
    n = 0
    with spawn(node_writer_argv(mode, kind, count)) as child:
        for _ in child:
            clock.tick()
            n += 1
    return n


def py_raw(clock: Clock, kind: str, count: int) -> int:
    proc = subprocess.Popen(node_writer_argv("raw", kind, count), stdout=subprocess.PIPE)
    assert proc.stdout is not None
    while proc.stdout.read1(65536):  # type: ignore[attr-defined]
        clock.tick()
    proc.wait()
    return count


def py_read1(clock: Clock, kind: str, count: int) -> int:
    """The tutorial's listener: one byte at a time until a newline, then parse the line."""
    proc = subprocess.Popen(node_writer_argv("raw", kind, count), stdout=subprocess.PIPE)
    assert proc.stdout is not None
    n = 0
    line = b""
    while True:
        byte = proc.stdout.read(1)
        if not byte:
            break
        clock.tick()
        if byte == b"\n":
            json.loads(line)
            n += 1
            line = b""
        else:
            line += byte
    proc.wait()
    return n


def py_encode_seconds(kind: str, count: int) -> float:
    values = make(kind, count)
    start = time.perf_counter()
    for v in values:
        orjson.dumps(v)
    return time.perf_counter() - start


def py_decode_seconds(kind: str, count: int) -> float:
    lines = [encode(v)[:-1] for v in make(kind, count)]
    start = time.perf_counter()
    for line in lines:
        orjson.loads(line)
    return time.perf_counter() - start


def rows(rounds: int) -> list[dict[str, Any]]:
    out = []
    for kind in ("small", "large"):
        count = COUNTS[kind]
        size = len(encode(make(kind, 1)[0]))
        best: dict[str, float] = {}

        def keep(name: str, result: dict[str, float], best: dict[str, float] = best) -> None:
            rate = result["messages"] / result["seconds"]
            best[name] = max(best.get(name, 0.0), rate)

        for _ in range(rounds):  # interleaved: the machine is shared and noisy
            # Python -> Node: Node spawns the Python writer and reads
            keep("py->node ours", node_reader("ours", kind, count))
            keep("py->node ours, send_many", node_reader("ours_many", kind, count))
            keep("py->node raw pipe", node_reader("raw", kind, count))
            enc = py_encode_seconds(kind, count)
            dec = node_reader("codec", kind, count)["seconds"]
            keep("py->node codec-bound", {"messages": count, "seconds": enc + dec})
            if kind == "small":
                keep("py->node python-shell", node_reader("pyshell", kind, SLOW_COUNT))
            # Node -> Python: Python spawns the Node writer and reads
            keep("node->py ours", timed(lambda clock, k=kind, c=count: py_ours(clock, k, c)))
            keep(
                "node->py ours, sendMany",
                timed(lambda clock, k=kind, c=count: py_ours(clock, k, c, "ours_many")),
            )
            keep("node->py raw pipe", timed(lambda clock, k=kind, c=count: py_raw(clock, k, c)))
            enc = node_reader("encode", kind, count)["seconds"]
            dec = py_decode_seconds(kind, count)
            keep("node->py codec-bound", {"messages": count, "seconds": enc + dec})
            if kind == "small":
                keep("node->py read(1) loop", timed(lambda clock, k=kind: py_read1(clock, k, SLOW_COUNT)))
        for name, rate in best.items():
            direction = name.split()[0]
            ours = max(rate for way, rate in best.items() if way.startswith(f"{direction} ours"))
            out.append(
                {
                    "kind": kind,
                    "bytes": size,
                    "name": name,
                    "rate": rate,
                    "mb_s": rate * size / 1e6,
                    "ours_ratio": ours / rate,
                }
            )
    return out


TARGETS = {"codec-bound": ">= 0.60", "python-shell": ">= 5", "read(1) loop": ">= 10"}


def table(result: list[dict[str, Any]]) -> str:
    lines = [
        "| messages | direction | way | msg/s | MB/s | ours / this | target |",
        "| --- | --- | --- | ---: | ---: | ---: | --- |",
    ]
    for r in result:
        direction, way = r["name"].split(" ", 1)
        target = next((t for k, t in TARGETS.items() if k in way), "")
        lines.append(
            f"| {r['kind']} ({r['bytes']:,} B) | {direction} | {way} | {r['rate']:,.0f} | {r['mb_s']:,.1f} | "
            f"{r['ours_ratio']:.2f} | {target} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--record", type=Path)
    args = parser.parse_args()
    result = table(rows(args.rounds))
    print(result)
    if args.record:
        when = datetime.date.today().isoformat()
        record(
            args.record,
            f"## Child processes ({when})\n\nMachine: {machine()}. `make bench` "
            f'(bench/stdio.py); best of {args.rounds} interleaved rounds. "ours / this" above 1 means '
            f"bothways is faster; codec-bound = bare encode in the writer + bare decode in the reader, "
            f"timed in-process, no pipe.\n\n{result}",
            section="stdio",
        )
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    sys.exit(main())
