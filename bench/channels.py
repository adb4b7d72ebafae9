"""Channel benchmark (not a test): small readings per second over tcp, ws, fifo and file, Python ->
Node and Node -> Python, beside the same bytes moved raw (for ws: a bare `websockets` <-> `ws`
pair, JSON per frame) and the codec-bound rate (bare encode in the writer + bare decode in the
reader, in-process), all measured in one run, interleaved, best of N rounds.

The "ours" rows send with `send_many`, 1,000 messages at a time: over ws that is one frame of
1,000 NDJSON lines (the "ours, asyncio" rows from Python send one message per frame).

The file reader also runs with `?state=` ("..., state=" rows), next to the same reader without
it in the same round: the Node reader takes one message per `for await` step, the Python one a
batch per `receive_many` ("ours") or one message per `await receive()` ("ours, asyncio"). Target:
at least 0.5 of the stateless reader's rate.

    python bench/channels.py [--rounds 3] [--count 200000] [--schemes ws,tcp] [--record bench/RESULTS.md]

A quick look at one channel: `python bench/channels.py --rounds 1 --count 50000 --schemes ws`.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from common import Row, machine, record  # noqa: E402

PY = [sys.executable, str(HERE / "channels" / "peer.py")]
NODE = ["node", str(HERE / "channels" / "peer.mjs")]
SCHEMES = ("tcp", "ws", "fifo", "file")
TARGETS = {"tcp": 0.60, "fifo": 0.60, "ws": 0.60}  # of the codec-bound rate, with send_many
WS_TIMES_RAW = 5.0  # ws with send_many: also this many times the bare pair's rate
STATE = ", state="  # the file reader with ?state=: its rows' way ends with this
STATE_TARGET = 0.5  # of the same reader's rate without state=


def peer(language: str) -> list[str]:
    return PY if language == "py" else NODE


def url_for(scheme: str, folder: Path, n: int) -> str:
    return {
        "tcp": "tcp://127.0.0.1:0",
        "ws": "ws://127.0.0.1:0/bench",
        "fifo": f"fifo:{folder / f'pipe{n}'}",
        "file": f"file:{folder / f'log{n}.ndjson'}?poll=0.01",
    }[scheme]


def pair(sender: list[str], receiver: list[str], modes: tuple[str, str], url: str, count: int) -> float:
    """Starts the receiver, then the sender; the receiver's messages/s."""
    recv = subprocess.Popen([*receiver, modes[1], url, str(count)], stdout=subprocess.PIPE)
    try:
        assert recv.stdout is not None
        listening = json.loads(recv.stdout.readline())["listening"]
        subprocess.run([*sender, modes[0], listening, str(count)], check=True, timeout=300)
        result = json.loads(recv.stdout.readline())
        recv.wait(60)
    finally:
        if recv.poll() is None:
            recv.kill()
            recv.wait()
    assert result["messages"] >= count, result
    return float(result["messages"] / result["seconds"])


def seconds(command: list[str]) -> float:
    out = subprocess.run(command, check=True, capture_output=True, timeout=300)
    return float(json.loads(out.stdout)["seconds"])


def rows(rounds: int, count: int, schemes: tuple[str, ...] = SCHEMES) -> list[dict[str, Any]]:
    best: dict[tuple[str, str, str], float] = {}
    n = 0
    with tempfile.TemporaryDirectory(prefix="bothways-bench-") as tmp:
        folder = Path(tmp)

        def keep(key: tuple[str, str, str], rate: float) -> None:
            best[key] = max(best.get(key, 0.0), rate)

        for _ in range(rounds):  # interleaved: the machine is shared and noisy
            for writer, reader in (("py", "node"), ("node", "py")):
                direction = f"{writer}->{reader}"
                enc = seconds([*peer(writer), "encode", str(count)])
                dec = seconds([*peer(reader), "decode", str(count)])
                keep(("codec", direction, "codec-bound"), count / (enc + dec))
                for scheme in schemes:
                    for way, modes in (("ours", ("send", "recv")), ("raw", ("rawsend", "rawrecv"))):
                        n += 1
                        url = url_for(scheme, folder, n)
                        keep((scheme, direction, way), pair(peer(writer), peer(reader), modes, url, count))
                    if "py" in direction and scheme in ("tcp", "ws"):
                        n += 1
                        modes = ("asend", "recv") if writer == "py" else ("send", "arecv")
                        url = url_for(scheme, folder, n)
                        rate = pair(peer(writer), peer(reader), modes, url, count)
                        keep((scheme, direction, "ours, asyncio"), rate)
                    if scheme == "file":  # the reader with ?state=, beside the same one without
                        runs = [("ours" + STATE, ("send", "recv"), True)]
                        if reader == "py":  # one message per request, as the Node reader takes them
                            runs.append(("ours, asyncio", ("send", "arecv"), False))
                            runs.append(("ours, asyncio" + STATE, ("send", "arecv"), True))
                        for way, modes, state in runs:
                            n += 1
                            url = url_for(scheme, folder, n)
                            url += f"&state={folder / f'state{n}'}" if state else ""
                            keep(
                                (scheme, direction, way), pair(peer(writer), peer(reader), modes, url, count)
                            )
    out = []
    for (scheme, direction, way), rate in best.items():
        if scheme == "codec":
            continue
        codec = best[("codec", direction, "codec-bound")]
        raw = best[(scheme, direction, "raw")]
        target = ""
        if way == "ours" and scheme == "ws":
            met = rate / codec >= TARGETS[scheme] and rate / raw >= WS_TIMES_RAW
            target = f">= {TARGETS[scheme]:.2f} of codec-bound and >= {WS_TIMES_RAW:.0f}x the bare pair"
            target += " (met)" if met else " (MISSED)"
        elif way == "ours" and scheme in TARGETS:
            met = rate / codec >= TARGETS[scheme]
            target = f">= {TARGETS[scheme]:.2f} of codec-bound" + (" (met)" if met else " (MISSED)")
        elif way.startswith("ours") and scheme == "ws":
            target = ">= 1.00 of the bare pair" + (" (met)" if rate >= raw else " (MISSED)")
        elif way.endswith(STATE):
            without = best[(scheme, direction, way[: -len(STATE)])]
            target = f"{rate / without:.2f} of the reader without state= (target >= {STATE_TARGET:.2f}"
            target += ", met)" if rate / without >= STATE_TARGET else ", MISSED)"
        out.append(
            {
                "scheme": scheme,
                "direction": direction,
                "way": way,
                "rate": rate,
                "of_codec": rate / codec,
                "of_raw": rate / raw,
                "target": target,
            }
        )
    for direction in ("py->node", "node->py"):
        rate = best[("codec", direction, "codec-bound")]
        out.append(
            {
                "scheme": "(none)",
                "direction": direction,
                "way": "codec-bound",
                "rate": rate,
                "of_codec": 1.0,
                "of_raw": None,
                "target": "",
            }
        )
    return out


def table(result: list[dict[str, Any]]) -> tuple[str, list[Row]]:
    """The Markdown table and its rows as data (keyed by the column headers)."""
    data: list[Row] = []
    lines = [
        "| scheme | direction | way | msg/s | / codec-bound | / raw (ws: bare pair) | target |",
        "| --- | --- | --- | ---: | ---: | ---: | --- |",
    ]
    for r in result:
        raw = "" if r["of_raw"] is None else f"{r['of_raw']:.2f}"
        lines.append(
            f"| {r['scheme']} | {r['direction']} | {r['way']} | {r['rate']:,.0f} | {r['of_codec']:.2f} | "
            f"{raw} | {r['target']} |"
        )
        data.append(
            {
                "scheme": r["scheme"],
                "direction": r["direction"],
                "way": r["way"],
                "msg/s": r["rate"],
                "/ codec-bound": r["of_codec"],
                "/ raw (ws: bare pair)": r["of_raw"],
                "target": r["target"] or None,
            }
        )
    return "\n".join(lines), data


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--count", type=int, default=200_000)
    parser.add_argument(
        "--schemes", default=",".join(SCHEMES), help=f"comma-separated, of {','.join(SCHEMES)} (default: all)"
    )
    parser.add_argument("--record", type=Path)
    args = parser.parse_args()
    schemes = tuple(name.strip() for name in args.schemes.split(",") if name.strip())
    unknown = sorted(set(schemes) - set(SCHEMES))
    if unknown or not schemes:
        what = ", ".join(unknown) or "(none given)"
        parser.error(f"--schemes: unknown {what}; known: {', '.join(SCHEMES)}")
    result, data = table(rows(args.rounds, args.count, schemes))
    print(result)
    if args.record:
        when = datetime.date.today().isoformat()
        record(
            args.record,
            f"## Channels ({when})\n\nMachine: {machine()}. `make bench` (bench/channels.py); "
            f"{args.count:,} small readings (56 B) per run, best of {args.rounds} interleaved rounds, "
            "timed at the receiver from its first message. ours: `connect(url).send_many` (1,000 at "
            "a time; over ws one frame of 1,000 lines) into `listen(url)`; ours, asyncio: one "
            "`await send()` per message (Python) or `sendMany` (Node); for file, the Python "
            'reader\'s asyncio rows take one message per `await receive()`, and the ", state=" '
            "rows read with `?state=` (its position saved at most every 200 ms). raw: the "
            "same bytes without the library (ws: a bare `websockets` <-> `ws` pair doing JSON per "
            "frame, compression off as in ours). The asyncio rows take one message per `await` on "
            f"the Python side; the targets are for `send_many`.\n\n{result}",
            section="channels",
            tables=[data],
            settings={"rounds": args.rounds, "count": args.count, "schemes": list(schemes)},
        )
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    sys.exit(main())
