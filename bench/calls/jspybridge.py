"""JSPyBridge (PyPI ``javascript``) calling add(a, b) in Node: sequential round trips, in a
process of its own (its Node bridge lives as long as the Python process).

    python jspybridge.py CALLS   prints {"p50": us, "p99": us} or {"missing": "..."}
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
    p50, p99 = latencies[len(latencies) // 2], latencies[int(len(latencies) * 0.99)]
    print(json.dumps({"p50": p50 / 1000, "p99": p99 / 1000}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
