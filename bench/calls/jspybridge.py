"""JSPyBridge (PyPI ``javascript``) calling add(a, b) in Node: sequential round trips, in a
process of its own (its Node bridge lives as long as the Python process).

    python jspybridge.py CALLS   prints {"p1": us, ..., "p50": us, ..., "p99": us} or {"missing": "..."}
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path


def main() -> int:
    calls = int(sys.argv[1])
    try:
        from javascript import require  # type: ignore[import-not-found]
    except ImportError as exc:
        print(json.dumps({"missing": "javascript (JSPyBridge)", "error": str(exc)}))
        return 0
    module = require(str(Path(__file__).resolve().parent / "add.cjs"))
    for i in range(calls):  # warm-up
        module.add(i, 1)
    latencies = []
    for i in range(calls):
        start = time.perf_counter_ns()
        result = module.add(i, 1)
        latencies.append(time.perf_counter_ns() - start)
        assert result == i + 1, result
    latencies.sort()
    n = len(latencies)
    print(json.dumps({f"p{q}": latencies[n * q // 100] / 1000 for q in (1, 10, 25, 50, 75, 90, 99)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
