"""`bothways types` end to end, through the CLI: the declarations of tests/fixtures/typed_module.py
are compiled by the repository's TypeScript (`tsc --noEmit --strict`), the stub of
tests/fixtures/typed_module.mjs is checked by mypy (strict). A usage file with the right types
compiles, one with wrong types fails with an error on each line marked `# wrong` / `// wrong`;
then the right one runs against the real module, so the types say what the calls really give.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ..conftest import FIXTURES, IN_CI, ROOT, UNIT, require_tool

JS = ROOT / "js"
TSC = JS / "node_modules" / "typescript" / "bin" / "tsc"  # what js/node_modules/.bin/tsc runs
TSC_OPTIONS = [
    "--strict",
    "--target",
    "es2022",
    "--module",
    "nodenext",
    "--moduleResolution",
    "nodenext",
    "--lib",
    "es2023,esnext.disposable,dom",
    "--types",
    "node",
    "--skipLibCheck",
    "false",
    "--pretty",
    "false",
]

TS_GOOD = """\
import { kwargs } from "bothways/objects";
import { python } from "bothways/python";
import type { Counter, Module } from "./typed_module.js";

const m = (await python.import("typed_module")) as Module;
try {
  const sum: number = await m.add(1, 2.5);
  const hello: string = await m.greet("ada");
  const counter: Counter = await new m.Counter(5);
  const added: number = await counter.add(2);
  const count: number = await counter.count;
  const double: number = await counter.double;
  await counter.reset(kwargs({ to: 7 }));
  const seen: number[] = [];
  for await (const i of await counter.up_to(10)) seen.push(i);
  const point: { x: number; y: number } = await m.Point(1, 2);
  const length = await m.apply((x) => String(x * 100), 3);
  const three: number = await length("abc");
  const sumOfBytes: number = await m.checksum(new Uint8Array([1, 2, 3]));
  const mean: number | null = await m.mean([]);
  const pair: [number, string] = await m.pair(1, "a");
  const color: "red" | "green" = await m.Color("green");
  const shaded = await m.shade("red", "dark");
  const made: Counter = await m.make_counter(3);
  const counts: Record<string, number> = await m.counts(["a", "b", "a"]);
  const later: number[] = await m.later(4);
  const listed: number[] = [];
  for await (const n of await m.numbers(3)) listed.push(n);
  console.log(JSON.stringify([sum, hello, added, count, double, seen, point, three, sumOfBytes, mean,
    pair, color, shaded, await made.count, counts, later, listed]));
} finally {
  await m.close();
}
"""

TS_BAD = """\
import { python } from "bothways/python";
import type { Module } from "./typed_module.js";

const m = (await python.import("typed_module")) as Module;
await m.add("one", 2); // wrong: a string for a number
await m.greet(); // wrong: a missing argument
const mean: number = await m.mean([1, 2]); // wrong: number | null
const counter = await new m.Counter(1);
await counter.add("x"); // wrong: a string for a number
const label: string = await counter.label; // wrong: unknown
await m.checksum([1, 2]); // wrong: an array for bytes
await m.pair(1, 2); // wrong: a number for a string
await m.shade("blue", "dark"); // wrong: not a Color
const n: number = m.add(1); // wrong: a promise
"""

PY_GOOD = """\
from typing import TYPE_CHECKING, cast

from bothways import node

if TYPE_CHECKING:
    from typed_stub import Module

with cast("Module", node.require("typed_module.mjs")) as m:
    total: float = m.add(1, 2.5) + m.add(1) + m.total(1, 2, 3, timeout=5)
    hello: str = m.greet("ada", {"shout": True})
    counter = m.Counter(5)
    added: float = counter.add(2)
    count: float = counter.count
    items: list[float] = list(counter.upTo(10))
    positive: bool = counter.positive
    checksum: float = m.checksum(bytes([1, 2, 3]))
    twice: float = m.twice(lambda x: x * 3, 2)
    made = m.makeCounter(1)
    mean: float | None = m.mean([])
    counts: dict[str, float] = m.counts(["a", "b", "a"])
    print([total, hello, added, count, items, positive, checksum, twice, made.add(), mean, counts])
"""

PY_BAD = """\
from typing import TYPE_CHECKING, cast

from bothways import node

if TYPE_CHECKING:
    from typed_stub import Module

with cast("Module", node.require("typed_module.mjs")) as m:
    m.add("one", 2)  # wrong: a string for a number
    m.add(a=1)  # wrong: positional only
    text: str = m.add(1)  # wrong: a float
    mean: float = m.mean([1.0])  # wrong: float | None
    counter = m.Counter(1)
    counter.add("x")  # wrong: a string for a number
    flag: str = counter.positive  # wrong: a bool
    m.checksum("abc")  # wrong: a str for bytes
    m.close(1)  # wrong: the handle's own close
"""


def _tool_missing(message: str) -> None:
    if IN_CI:
        pytest.fail(message + " - in CI a missing tool is a failure, not a skip")
    pytest.skip(message)


def _types(language: str, target: str) -> str:
    """``python -m bothways.cli types LANGUAGE TARGET`` in the fixtures folder: its stdout."""
    proc = subprocess.run(
        [sys.executable, "-m", "bothways.cli", "types", language, target],
        cwd=FIXTURES,
        capture_output=True,
        text=True,
        timeout=60 * UNIT,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _errors(output: str, file: str, pattern: str) -> list[int]:
    """The lines of ``file`` the checker reported an error on."""
    return sorted({int(line) for line in re.findall(pattern.format(re.escape(file)), output, re.M)})


def _marked(source: str) -> list[int]:
    return [i for i, line in enumerate(source.splitlines(), 1) if re.search(r"(//|#) wrong:", line)]


# -- TypeScript --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ts_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with typed_module.d.ts (from the CLI) and a node_modules/bothways that carries
    freshly generated declarations, as js/test/types.test.js makes it."""
    node = require_tool("node")
    if not TSC.is_file():
        _tool_missing("TypeScript is not installed in js/node_modules (make setup runs npm ci)")
    project = tmp_path_factory.mktemp("types-ts")
    installed = project / "node_modules" / "bothways"
    installed.mkdir(parents=True)
    (installed / "package.json").write_bytes((JS / "package.json").read_bytes())
    (installed / "src").symlink_to(JS / "src", target_is_directory=True)
    (project / "node_modules" / "@types").mkdir()
    (project / "node_modules" / "@types" / "node").symlink_to(JS / "node_modules" / "@types" / "node")
    subprocess.run(  # (type errors in js/src are types.test.js's business: the files are written)
        [node, str(TSC), "-p", str(JS / "tsconfig.types.json"), "--outDir", str(installed / "types")],
        cwd=JS,
        capture_output=True,
        timeout=120 * UNIT,
        check=False,
    )
    assert (installed / "types" / "python.d.ts").is_file()
    (project / "package.json").write_text(json.dumps({"private": True, "type": "module"}))
    (project / "typed_module.d.ts").write_text(_types("python", "typed_module"))
    (project / "good.ts").write_text(TS_GOOD)
    (project / "bad.ts").write_text(TS_BAD)
    return project


def _tsc(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [require_tool("node"), str(TSC), *TSC_OPTIONS, *args],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=120 * UNIT,
        check=False,
    )


def test_declarations_compile_with_the_right_types(ts_project: Path) -> None:
    done = _tsc(ts_project, "--noEmit", "good.ts", "typed_module.d.ts")
    assert (done.returncode, done.stdout + done.stderr) == (0, "")


def test_wrong_types_do_not_compile(ts_project: Path) -> None:
    done = _tsc(ts_project, "--noEmit", "bad.ts")
    assert done.returncode != 0, "tsc accepted bad.ts"
    assert _errors(done.stdout, "bad.ts", r"^{}\((\d+),\d+\): error TS") == _marked(TS_BAD), done.stdout
    assert done.stdout.count("error TS") == len(re.findall(r"^bad\.ts\(", done.stdout, re.M)), done.stdout


def test_declarations_say_what_the_calls_give(ts_project: Path) -> None:
    built = _tsc(ts_project, "--outDir", "out", "good.ts")
    assert built.returncode == 0, built.stdout
    (ts_project / "out" / "package.json").write_text(json.dumps({"type": "module"}))
    env = {**os.environ, "BOTHWAYS_PYTHON": sys.executable}
    ran = subprocess.run(
        [require_tool("node"), str(ts_project / "out" / "good.js")],
        cwd=FIXTURES,  # python.import finds typed_module.py in the working directory
        env=env,
        capture_output=True,
        text=True,
        timeout=60 * UNIT,
        check=False,
    )
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout) == [
        3.5,
        "hello ada",
        7,
        7,
        14,
        [7, 8, 9],
        {"x": 1, "y": 2},
        3,
        6,
        None,
        [1, "a"],
        "green",
        "dark red",
        3,
        {"a": 2, "b": 1},
        [4],
        [0, 1, 2],
    ]


# -- Python ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def py_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with typed_stub.pyi (from the CLI), the usage files and a strict mypy config."""
    require_tool("node")
    pytest.importorskip("mypy")
    project = tmp_path_factory.mktemp("types-py")
    (project / "typed_stub.pyi").write_text(_types("node", "typed_module.mjs"))
    (project / "mypy.ini").write_text("[mypy]\nstrict = True\n")
    (project / "good.py").write_text(PY_GOOD)
    (project / "bad.py").write_text(PY_BAD)
    return project


def _mypy(project: Path, *files: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", "mypy.ini", "--cache-dir", ".mypy_cache", *files],
        cwd=project,
        env={**os.environ, "MYPYPATH": str(project)},
        capture_output=True,
        text=True,
        timeout=300 * UNIT,
        check=False,
    )


def test_stub_passes_mypy_with_the_right_types(py_project: Path) -> None:
    done = _mypy(py_project, "typed_stub.pyi", "good.py")
    assert done.returncode == 0, done.stdout + done.stderr


def test_wrong_types_fail_mypy(py_project: Path) -> None:
    done = _mypy(py_project, "bad.py")
    assert done.returncode == 1, done.stdout + done.stderr
    assert _errors(done.stdout, "bad.py", r"^{}:(\d+): error:") == _marked(PY_BAD), done.stdout
    assert not re.search(r"^(?!bad\.py:)\S+: error:", done.stdout, re.M), done.stdout


def test_stub_says_what_the_calls_give(py_project: Path) -> None:
    ran = subprocess.run(
        [sys.executable, str(py_project / "good.py")],
        cwd=FIXTURES,  # node.require("typed_module.mjs") is relative to the working directory
        capture_output=True,
        text=True,
        timeout=60 * UNIT,
        check=False,
    )
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip() == (
        "[11.5, 'HELLO ADA', 7, 7, [7, 8, 9], True, 6, 18, 2, None, {'a': 2, 'b': 1}]"
    )


def test_stub_text(py_project: Path) -> None:
    stub = (py_project / "typed_stub.pyi").read_text()
    for line in [
        "# Left out (not Python attribute names, or names the handle keeps): close",
        "class Counter(RemoteObject):",
        "    count: float",
        "    label: Any",
        "    def add(self, n: float = ..., /) -> float:",
        "    def upTo(self, end: float, /) -> Iterator[float]: ...",
        "    positive: bool",
        "_Counter = Counter  # (the name Module's methods use: theirs hide the class)",
        "class Module(JsModule):",
        "    def Counter(self, start: float = ..., /, *, timeout: float | None = None) -> _Counter:",
        "    def add(self, a: float, b: float = ..., /, *, timeout: float | None = None) -> float:",
        '        """Adds two numbers."""',
        "    def checksum(self, bytes: bytes, /, *, timeout: float | None = None) -> float: ...",
        "    def counts(self, words: list[str], /, *, timeout: float | None = None) -> dict[str, float]: ...",
        "    def greet(self, name: str, options: dict[str, Any] = ..., /, *, timeout: float | None = None)"
        " -> str:",
        "    def makeCounter(self, start: float, /, *, timeout: float | None = None) -> _Counter: ...",
        "    def mean(self, values: list[float], /, *, timeout: float | None = None) -> float | None: ...",
        "    def scale(self, data: Any, /, *, timeout: float | None = None) -> Any: ...",
        "    def total(self, *values: float, timeout: float | None = None) -> float: ...",
        "    def twice(self, callback: Callable[..., Any], x: float, /, *, timeout: float | None = None)"
        " -> float: ...",
        "    def untyped(self, x: Any, arg1: Any = ..., /, *, timeout: float | None = None) -> Any: ...",
        "    def __enter__(self) -> Module: ...",
    ]:
        assert line in stub.splitlines(), line
    assert "_private" not in stub


def test_node_stub_of_a_missing_module(tmp_path: Path) -> None:
    require_tool("node")
    proc = subprocess.run(
        [sys.executable, "-m", "bothways.cli", "types", "node", str(tmp_path / "missing.mjs")],
        capture_output=True,
        text=True,
        timeout=60 * UNIT,
        check=False,
    )
    assert (proc.returncode, proc.stdout) == (1, "")
    assert "stub.mjs: cannot read" in proc.stderr
