"""Child-process benchmark (not a test): messages/s and MB/s across a real pipe, both directions,
beside the raw pipe, the tutorial's read(1) loop, python-shell's JSON mode and the codec-bound
rate (bare encode in the writer + bare decode in the reader), all measured in one run.

A second table: messages/s and MB/s against message size (50 B .. 1 MB), ours beside the
codec-bound rate, both directions.

    python bench/stdio.py [--rounds 3] [--quick] [--no-sweep] [--record bench/RESULTS.md]
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
from common import Row, machine, record  # noqa: E402

NODE = "node"
PY = sys.executable
COUNTS = {"small": 300_000, "large": 40}
SLOW_COUNT = 20_000  # the read(1) loop and python-shell are slow: fewer messages, same rate
QUICK_DIVISOR = 10  # --quick: a tenth of every count
# The size sweep: messages of N short readings each (50 B .. 1 MB), ~SWEEP_BYTES per run, with
# send_many/sendMany beside the codec-bound rate, both directions.
SWEEP = (1, 24, 400, 6_600, 26_500)
SWEEP_BYTES = 24_000_000


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


def rows(rounds: int, divisor: int = 1) -> list[dict[str, Any]]:
    out = []
    slow_count = SLOW_COUNT // divisor
    for kind in ("small", "large"):
        count = max(4, COUNTS[kind] // divisor)
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
                keep("py->node python-shell", node_reader("pyshell", kind, slow_count))
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
                keep("node->py read(1) loop", timed(lambda clock, k=kind: py_read1(clock, k, slow_count)))
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


def sweep(rounds: int, divisor: int = 1) -> list[dict[str, Any]]:
    """Messages/s and MB/s against message size: ours (send_many) and the codec-bound rate."""
    out = []
    for n in SWEEP:
        kind = f"readings:{n}"
        size = len(encode(make(kind, 1)[0]))
        count = max(8, min(200_000, SWEEP_BYTES // size)) // divisor
        count = max(count, 4)
        best: dict[str, float] = {}
        for _ in range(rounds):  # interleaved: the machine is shared and noisy
            ways = {
                "py->node ours, send_many": node_reader("ours_many", kind, count),
                "py->node codec-bound": {
                    "messages": count,
                    "seconds": py_encode_seconds(kind, count) + node_reader("codec", kind, count)["seconds"],
                },
                "node->py ours, sendMany": timed(
                    lambda clock, k=kind, c=count: py_ours(clock, k, c, "ours_many")
                ),
                "node->py codec-bound": {
                    "messages": count,
                    "seconds": node_reader("encode", kind, count)["seconds"] + py_decode_seconds(kind, count),
                },
            }
            for name, result in ways.items():
                best[name] = max(best.get(name, 0.0), result["messages"] / result["seconds"])
        for name, rate in best.items():
            direction, way = name.split(" ", 1)
            codec = best[f"{direction} codec-bound"]
            out.append(
                {"bytes": size, "direction": direction, "way": way, "rate": rate, "of_codec": rate / codec}
            )
    return out


def sweep_table(result: list[dict[str, Any]]) -> tuple[str, list[Row]]:
    lines = [
        "| message size (B) | direction | way | msg/s | MB/s | / codec-bound |",
        "| ---: | --- | --- | ---: | ---: | ---: |",
    ]
    data: list[Row] = []
    for r in result:
        mb_s = r["rate"] * r["bytes"] / 1e6
        lines.append(
            f"| {r['bytes']:,} | {r['direction']} | {r['way']} | {r['rate']:,.0f} | {mb_s:,.1f} | "
            f"{r['of_codec']:.2f} |"
        )
        data.append(
            {
                "message size (B)": r["bytes"],
                "direction": r["direction"],
                "way": r["way"],
                "msg/s": r["rate"],
                "MB/s": mb_s,
                "/ codec-bound": r["of_codec"],
            }
        )
    return "\n".join(lines), data


TARGETS = {"codec-bound": ">= 0.60", "python-shell": ">= 5", "read(1) loop": ">= 10"}


def table(result: list[dict[str, Any]]) -> tuple[str, list[Row]]:
    lines = [
        "| messages | direction | way | msg/s | MB/s | ours / this | target |",
        "| --- | --- | --- | ---: | ---: | ---: | --- |",
    ]
    data: list[Row] = []
    for r in result:
        direction, way = r["name"].split(" ", 1)
        target = next((t for k, t in TARGETS.items() if k in way), "")
        messages = f"{r['kind']} ({r['bytes']:,} B)"
        lines.append(
            f"| {messages} | {direction} | {way} | {r['rate']:,.0f} | {r['mb_s']:,.1f} | "
            f"{r['ours_ratio']:.2f} | {target} |"
        )
        data.append(
            {
                "messages": messages,
                "direction": direction,
                "way": way,
                "msg/s": r["rate"],
                "MB/s": r["mb_s"],
                "ours / this": r["ours_ratio"],
                "target": target or None,
                "bytes": r["bytes"],
            }
        )
    return "\n".join(lines), data


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help=f"1/{QUICK_DIVISOR} of every count: a smoke run")
    parser.add_argument("--no-sweep", action="store_true", help="leave out the message size sweep")
    parser.add_argument("--record", type=Path)
    args = parser.parse_args()
    divisor = QUICK_DIVISOR if args.quick else 1
    result, data = table(rows(args.rounds, divisor))
    print(result, flush=True)
    swept, sweep_data = sweep_table(sweep(args.rounds, divisor)) if not args.no_sweep else ("", [])
    print(f"\n{swept}")
    if args.record:
        when = datetime.date.today().isoformat()
        record(
            args.record,
            f"## Child processes ({when})\n\nMachine: {machine()}. `make bench` "
            f'(bench/stdio.py); best of {args.rounds} interleaved rounds. "ours / this" above 1 means '
            f"bothways is faster; codec-bound = bare encode in the writer + bare decode in the reader, "
            f"timed in-process, no pipe.{' (--quick: a tenth of the messages.)' if args.quick else ''}"
            f"\n\n{result}"
            + (
                f"\n\nAgainst message size: messages of 1 to 26,500 short readings, about "
                f"{SWEEP_BYTES // 1_000_000 // divisor} MB per run (at most 200,000 messages), "
                f"`send_many`/`sendMany` beside the codec-bound rate of the same messages, best of "
                f"{args.rounds} interleaved rounds.\n\n{swept}"
                if swept
                else ""
            ),
            section="stdio",
            tables=[data, sweep_data] if swept else [data],
            settings={"rounds": args.rounds, "quick": args.quick, "sweep": list(SWEEP)},
        )
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    sys.exit(main())
