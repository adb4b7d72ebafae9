"""Codec benchmark (not a test): our encoder/decoder beside bare orjson and, via bench/codec.js,
ours beside bare JSON.stringify/JSON.parse. Ratios come from one run, side by side.

The rows marked "stdlib backend" time bothways.wire as a plain python3 without orjson gets it
(the module loaded a second time with orjson hidden) beside bare json.dumps/json.loads.

    python bench/codec.py                       print the table
    python bench/codec.py --seconds 0.3 --rounds 1    a quick run
    python bench/codec.py --record bench/RESULTS.md   also rewrite the codec section there
"""

from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import orjson

from bothways import Decoder, encode

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Row, machine, record  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CHUNK = 64 * 1024
loads, dumps = orjson.loads, orjson.dumps
STDLIB = ", stdlib backend"
TARGETS = {  # name -> minimum ratio ours/reference, from the foundation issue
    "encode small": 0.8,
    "decode small (64 KiB chunks)": 0.6,
    "encode small" + STDLIB: 0.8,  # the no-dependency issue: at least 0.8x bare json
    "decode small (64 KiB chunks)" + STDLIB: 0.8,
}


def stdlib_wire() -> ModuleType:
    """bothways.wire as a plain python3 gets it: the module loaded again with orjson hidden (the
    twin the test suites use, tests/vectors.py)."""
    sys.path.insert(0, str(ROOT))
    from tests.vectors import codec

    module = codec("json")
    assert module.BACKEND == "json"
    return module


def reading(i: int) -> dict[str, Any]:
    return {
        "sensor": f"s{i % 8}",
        "seq": i,
        "t": 1732470000.0 + i * 0.25,
        "celsius": round(-5 + (i * 7.3) % 20, 2),
    }


def large(i: int) -> dict[str, Any]:
    return {"batch": i, "readings": [reading(i * 1000 + j) for j in range(1000)]}  # ~75-100 KB


def _wrapper(value: Any) -> bytes:
    """The floor for any Python-level encoder: one function call around orjson.dumps."""
    return dumps(value)


def rate(fn: Callable[[], int], seconds: float) -> float:
    """Messages per second of ``fn`` (which returns how many it handled), run for ~``seconds``."""
    count = 0
    start = time.perf_counter()
    while True:
        count += fn()
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return count / elapsed


def python_rows(seconds: float, rounds: int) -> list[dict[str, Any]]:
    small = [reading(i) for i in range(20_000)]
    big = [large(i) for i in range(20)]
    std = stdlib_wire()
    rows = []
    for label, values in (("small", small), ("large", big)):
        stream = b"".join(encode(v) for v in values)
        lines = stream.split(b"\n")[:-1]
        chunks = [stream[i : i + CHUNK] for i in range(0, len(stream), CHUNK)]

        def ours_encode(values: list[Any] = values) -> int:
            for v in values:
                encode(v)
            return len(values)

        def bare_encode(values: list[Any] = values) -> int:
            for v in values:
                dumps(v)
            return len(values)

        def ours_decode(chunks: list[bytes] = chunks) -> int:
            decoder = Decoder()
            n = 0
            for chunk in chunks:
                for event in decoder.feed(chunk):
                    n += len(event.values)  # type: ignore[union-attr]
            return n

        def bare_decode(lines: list[bytes] = lines) -> int:
            return len([loads(line) for line in lines])

        def wrapped_encode(values: list[Any] = values) -> int:
            for v in values:
                _wrapper(v)
            return len(values)

        def std_encode(values: list[Any] = values) -> int:
            for v in values:
                std.encode(v)
            return len(values)

        def json_encode(values: list[Any] = values) -> int:
            for v in values:
                json.dumps(v)
            return len(values)

        def std_decode(chunks: list[bytes] = chunks) -> int:
            decoder = std.Decoder()
            n = 0
            for chunk in chunks:
                for event in decoder.feed(chunk):
                    n += len(event.values)
            return n

        def json_decode(lines: list[bytes] = lines) -> int:
            return len([json.loads(line) for line in lines])

        assert ours_decode() == len(values) == std_decode()
        assert all(std.encode(v) == encode(v) for v in values[:100])
        pairs = [
            (f"encode {label}", ours_encode, bare_encode, "orjson.dumps"),
            (f"encode {label}", ours_encode, wrapped_encode, "a bare Python function around orjson.dumps"),
            (f"decode {label} (64 KiB chunks)", ours_decode, bare_decode, "orjson.loads, pre-split lines"),
            (f"encode {label}{STDLIB}", std_encode, json_encode, "json.dumps"),
            (
                f"decode {label} (64 KiB chunks){STDLIB}",
                std_decode,
                json_decode,
                "json.loads, pre-split lines",
            ),
        ]
        for name, ours, ref, ref_name in pairs:
            best_ours = best_ref = 0.0
            for _ in range(rounds):  # interleaved, best of each: the machine is shared and noisy
                best_ours = max(best_ours, rate(ours, seconds))
                best_ref = max(best_ref, rate(ref, seconds))
            size = len(stream) // len(values)
            rows.append(
                {
                    "name": name,
                    "bytes": size,
                    "ours": best_ours,
                    "reference": best_ref,
                    "reference_name": ref_name,
                    "ratio": best_ours / best_ref,
                }
            )
    return rows


def js_rows(seconds: float) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "js.json"
        subprocess.run(
            ["node", str(ROOT / "bench" / "codec.js"), "--json", str(out), "--seconds", f"{seconds:g}"],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        rows: list[dict[str, Any]] = json.loads(out.read_text())["rows"]
        return rows


def table(py: list[dict[str, Any]], js: list[dict[str, Any]]) -> tuple[str, list[Row]]:
    """The Markdown table and its rows as data (keyed by the column headers)."""
    data: list[Row] = []
    lines = [
        "| language | benchmark | ours (msg/s) | reference (msg/s) | reference | ours / reference | target |",
        "| --- | --- | ---: | ---: | --- | ---: | ---: |",
    ]
    js_targets = {"encode small": 0.8, "decode stream small": 0.7}
    js_references = {"encode": "JSON.stringify", "decode": "JSON.parse, pre-split lines"}
    for lang, rows, targets in (("Python", py, TARGETS), ("JavaScript", js, js_targets)):
        for r in rows:
            r.setdefault("reference_name", js_references[r["name"].split()[0]])
            floor = "function" in r["reference_name"]
            target = None if floor else targets.get(r["name"])
            lines.append(
                f"| {lang} | {r['name']} | {r['ours']:,.0f} | {r['reference']:,.0f} | "
                f"{r.get('reference_name', '')} | {r['ratio']:.2f} | {f'>= {target:.2f}' if target else ''} |"
            )
            data.append(
                {
                    "language": lang,
                    "benchmark": r["name"],
                    "ours (msg/s)": r["ours"],
                    "reference (msg/s)": r["reference"],
                    "reference": r.get("reference_name", ""),
                    "ours / reference": r["ratio"],
                    "target": target,
                    "bytes": r.get("bytes"),
                }
            )
    return "\n".join(lines), data


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="per measurement")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--record", type=Path, help="rewrite the codec section of this Markdown file")
    args = parser.parse_args()
    py = python_rows(args.seconds, args.rounds)
    js = js_rows(args.seconds)
    result, data = table(py, js)
    print(result)
    if args.record:
        when = datetime.date.today().isoformat()
        record(
            args.record,
            f"## Codec ({when})\n\nMachine: {machine()}. `make bench` "
            f"(bench/codec.py + bench/codec.js); Python: best of {args.rounds} interleaved rounds of "
            f"{args.seconds:g} s each; JavaScript: best of 3 rounds of {args.seconds:g} s (ours and the "
            f"reference alternating in tenths of it).\n\n{result}",
            tables=[data],
            settings={"seconds": args.seconds, "rounds": args.rounds},
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
