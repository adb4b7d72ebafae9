"""Start-up benchmark (not a test): from nothing to a first answer and back to no child.

- node -> Python: ``python.import("statistics")``, ``mean([1, 2, 3])``, ``close()``, beside
  python-shell's ``runString`` making the same call (a new interpreter that prints the answer).
- Python -> Node: ``node.require("add.mjs")``, ``add(1, 2)``, ``close()``, beside a bare
  ``node -e`` importing the module and printing the answer (``subprocess.run``).

    python bench/startup.py [--rounds 15] [--record bench/RESULTS.md]

The ways are interleaved round by round and each is reported by its median (ms) and the ratio to
its reference, measured in the same run: the machine is shared and noisy. Both sides use this
interpreter (``sys.executable``) and ``node`` on PATH.
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bothways import node

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from common import machine, record  # noqa: E402

MODULE = HERE / "startup" / "add.mjs"
BARE = f"import({json.dumps(MODULE.as_uri())}).then((m) => console.log(m.add(1, 2)))"


def python_to_node(rounds: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {"bothways": [], "bare": []}
    for round_ in range(rounds + 1):  # round 0 warms the disk cache
        start = time.perf_counter()
        with node.require(MODULE) as m:
            assert m.add(1, 2) == 3
        took = time.perf_counter() - start
        if round_:
            times["bothways"].append(took * 1000)
        start = time.perf_counter()
        out = subprocess.run(["node", "-e", BARE], capture_output=True, text=True, check=True)
        took = time.perf_counter() - start
        assert out.stdout.strip() == "3"
        if round_:
            times["bare"].append(took * 1000)
    return times


def node_to_python(rounds: int) -> dict[str, object]:
    out = subprocess.run(
        ["node", str(HERE / "startup" / "node_side.mjs"), sys.executable, str(rounds)],
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, object] = json.loads(out.stdout)
    return result


def table(py_node: dict[str, list[float]], node_py: dict[str, object]) -> str:
    med = statistics.median
    rows = [
        "| direction | way | median ms | min ms | vs reference |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    times = node_py["times"]
    assert isinstance(times, dict)
    ref = med(times["pyshell"]) if "pyshell" in times else None
    for name, label in (
        ("bothways", 'bothways `python.import("statistics")`'),
        ("pyshell", "python-shell `runString`"),
    ):
        if name in times:
            ratio = f"{med(times[name]) / ref:.2f}x" if ref else "-"
            rows.append(
                f"| node -> py | {label} | {med(times[name]):.1f} | {min(times[name]):.1f} | {ratio} |"
            )
    for name in node_py.get("missing", []):  # type: ignore[union-attr]
        rows.append(f"| node -> py | {name} | missing | | |")
    ref = med(py_node["bare"])
    for name, label in (
        ("bothways", 'bothways `node.require("add.mjs")`'),
        ("bare", "bare `node -e` (subprocess.run)"),
    ):
        rows.append(
            f"| py -> node | {label} | {med(py_node[name]):.1f} | {min(py_node[name]):.1f} | "
            f"{med(py_node[name]) / ref:.2f}x |"
        )
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--record", type=Path, help="rewrite the start-up section of this Markdown file")
    args = parser.parse_args()
    node_py = node_to_python(args.rounds)
    py_node = python_to_node(args.rounds)
    result = table(py_node, node_py)
    print(result)
    if args.record:
        when = datetime.date.today().isoformat()
        record(
            args.record,
            f"## Start-up ({when})\n\nMachine: {machine()}. `bench/startup.py`: from nothing to the first "
            f"answer and back to no child, median of {args.rounds} interleaved rounds; the reference "
            f"of each direction is measured in the same run. Targets: node -> py at most 1.3x "
            f"python-shell, py -> node at most 1.2x a bare `node -e`.\n\n{result}",
            section="startup",
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
