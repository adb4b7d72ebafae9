"""JSPyBridge (PyPI ``javascript``) using fixture.cjs's objects from Python, in a process of its
own (its Node bridge lives as long as the Python process). Driven by bench/objects.py:

    python jspybridge.py GROUP COUNTS_JSON

GROUP "latency": ``parser.parse("a,b")`` on a handle, sequential (p50, p99 in µs); µs per
object made and let go of (``del``: JSPyBridge frees in batches of 40, it has no other release);
µs per callback (JavaScript awaits a Python function n times). GROUP "stream": items/s of a JS
array iterated by index, one round trip per item: JSPyBridge cannot iterate a generator.
Prints one JSON line, or {"missing": "..."}.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

FIXTURE = Path(__file__).resolve().parent / "fixture.cjs"


def latency(m: Any, counts: dict[str, int]) -> dict[str, Any]:
    n = counts["slow"]
    parser = m.Parser(",")
    for _ in range(n):  # warm-up
        parser.parse("a,b")
    clock = time.perf_counter_ns
    latencies = []
    for _ in range(n):
        start = clock()
        parser.parse("a,b")
        latencies.append(clock() - start)
    latencies.sort()
    method = {"p50": latencies[n // 2] / 1000, "p99": latencies[int(n * 0.99)] / 1000}
    start = clock()
    for _ in range(n):
        m.Parser(",")  # made, and let go of at once (refcount): its __del__ queues the free
    let_go = (clock() - start) / 1000 / n
    m.callBack(lambda i: i, n // 4)  # warm-up
    start = clock()
    total = m.callBack(lambda i: i, n)
    callback = (clock() - start) / 1000 / n
    assert total == n * (n - 1) // 2, total
    return {"method": method, "let_go": let_go, "released": None, "callback": callback}


def stream(m: Any, counts: dict[str, int]) -> dict[str, Any]:
    n = counts["slow_stream"]
    items = m.range(n)
    start = time.perf_counter()
    total = sum(item for item in items)
    assert total == n * (n - 1) // 2, total
    return {"stream": n / (time.perf_counter() - start)}


def main() -> int:
    group, counts = sys.argv[1], json.loads(sys.argv[2])
    try:
        from javascript import require  # type: ignore[import-not-found]
    except ImportError as exc:
        print(json.dumps({"missing": "javascript (PyPI, JSPyBridge)", "error": str(exc)}))
        return 0
    m = require(str(FIXTURE))
    print(json.dumps({"latency": latency, "stream": stream}[group](m, counts)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
