"""The built packages, installed as users install them, each alone in an empty place.

The sdist and the wheel (built from the sdist, as ``python -m build`` does) and the npm tarball
(``npm pack``) are built once; then, in temporary directories outside the repository:
- a virtualenv holding only the wheel and its dependencies calls a Node module through
  ``node.require`` (blocking and asyncio), runs ``bothways demo`` in an empty folder, and serves
  the telemetry dashboard (uPlot included) with waitress;
- a folder holding only the tarball calls ``python.import("statistics")`` with interpreters that
  cannot import bothways, with orjson importable and with it blocked;
- both file lists hold what they must and nothing else.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import tarfile
import textwrap
import venv
import zipfile
from pathlib import Path

import pytest
import requests

from bothways import __version__

from ..conftest import ROOT, UNIT, require_tool
from ..tutorial import Program, marked_env, wait_none_marked

pytestmark = pytest.mark.timeout(900)

# Every variable that could lead a child back to the checkout is dropped.
CLEAN_ENV = {
    k: v
    for k, v in os.environ.items()
    if k not in ("PYTHONPATH", "VIRTUAL_ENV", "BOTHWAYS_JS_HOST", "BOTHWAYS_PYTHON", "BOTHWAYS_NODE")
}


def run(argv: list[str], *, cwd: Path, env: dict[str, str] | None = None, timeout: float = 300) -> str:
    """Runs a command to its end; returns its stdout, failing with its output if it fails."""
    proc = subprocess.run(
        argv,
        cwd=cwd,
        env=env or CLEAN_ENV,
        capture_output=True,
        text=True,
        timeout=timeout * UNIT,
        check=False,
    )
    assert proc.returncode == 0, (
        f"{argv} exited {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    )
    return proc.stdout


def make_venv(where: Path, *packages: str) -> Path:
    """A fresh virtualenv (from the interpreter running the tests) with ``packages``; its python."""
    venv.create(where, with_pip=True, clear=True)
    python = where / "bin" / "python"
    if packages:
        run(
            [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *packages],
            cwd=where,
        )
    return python


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The sdist, the wheel built from it, and the npm tarball."""
    require_tool("node")
    npm = require_tool("npm")
    out = tmp_path_factory.mktemp("dist")
    run([sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)], cwd=out, env=dict(os.environ))
    run([npm, "pack", "--pack-destination", str(out)], cwd=ROOT / "js", env=dict(os.environ))
    found = {
        "sdist": list(out.glob("bothways-*.tar.gz")),
        "wheel": list(out.glob("bothways-*.whl")),
        "npm": list(out.glob("bothways-*.tgz")),
    }
    assert all(len(paths) == 1 for paths in found.values()), found
    return {kind: paths[0] for kind, paths in found.items()}


# -- what is inside -----------------------------------------------------------------------------


def test_the_artefacts_carry_one_version(built: dict[str, Path]) -> None:
    assert built["wheel"].name.startswith(f"bothways-{__version__}-")
    assert built["sdist"].name == f"bothways-{__version__}.tar.gz"
    assert built["npm"].name == f"bothways-{__version__}.tgz"


def test_the_wheel_holds_the_python_package_its_node_side_and_the_tutorial(built: dict[str, Path]) -> None:
    names = zipfile.ZipFile(built["wheel"]).namelist()
    package = sorted(n for n in names if not n.startswith("bothways-"))  # (not the .dist-info)
    python = {str(p.relative_to(ROOT / "src")) for p in (ROOT / "src" / "bothways").rglob("*.py")}
    python.add("bothways/py.typed")
    js = {"bothways/js/" + str(p.relative_to(ROOT / "js")) for p in (ROOT / "js" / "src").rglob("*.js")} | {
        "bothways/js/bin/host.mjs",
        "bothways/js/bin/sensor.mjs",
        "bothways/js/bin/stub.mjs",
        "bothways/js/package.json",
    }
    tutorial = {
        "bothways/examples/tutorial/" + str(p.relative_to(ROOT / "examples" / "tutorial"))
        for p in (ROOT / "examples" / "tutorial").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    web = {
        str(p.relative_to(ROOT / "src"))
        for folder in ("static", "templates")
        for p in (ROOT / "src" / "bothways" / "telemetry" / folder).rglob("*")
        if p.is_file()
    }
    uplot = {f"bothways/js/vendor/uplot/{name}" for name in ("uPlot.iife.min.js", "uPlot.min.css", "LICENSE")}
    assert web and set(package) == python | js | tutorial | web | uplot
    manifest = json.loads(zipfile.ZipFile(built["wheel"]).read("bothways/js/package.json"))
    assert manifest["type"] == "module" and manifest["version"] == __version__
    meta = zipfile.ZipFile(built["wheel"]).read(f"bothways-{__version__}.dist-info/METADATA").decode()
    for field in ("Requires-Python: >=3.10", "License-Expression: MIT", "Keywords:", "Project-URL: Issues"):
        assert field in meta, field
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)


def test_the_sdist_holds_what_the_wheel_is_built_from(built: dict[str, Path]) -> None:
    names = {n.split("/", 1)[1] for n in tarfile.open(built["sdist"]).getnames() if "/" in n}
    for needed in (
        "setup.py",
        "pyproject.toml",
        "LICENSE",
        "CHANGELOG.md",
        "js/bin/host.mjs",
        "js/bin/sensor.mjs",
        "js/bin/stub.mjs",
        "js/src/peer.js",
        "examples/tutorial/app.py",
        "src/bothways/host.py",
        "src/bothways/telemetry/static/dashboard.js",
        "src/bothways/telemetry/templates/dashboard.html",
        "js/vendor/uplot/uPlot.iife.min.js",  # (copied from node_modules by setup.py's sdist)
        "js/vendor/uplot/uPlot.min.css",
        "js/vendor/uplot/LICENSE",
    ):
        assert needed in names, needed
    unwanted = [n for n in names if n.startswith(("tests/", "bench/", "js/node_modules", "js/test/"))]
    assert not unwanted and not any("__pycache__" in n for n in names), unwanted


def test_the_npm_tarball_holds_the_js_package_and_its_python_side(built: dict[str, Path]) -> None:
    names = {n.removeprefix("package/") for n in tarfile.open(built["npm"]).getnames()}
    js = {str(p.relative_to(ROOT / "js")) for p in (ROOT / "js" / "src").rglob("*.js")}
    for needed in js | {
        "bin/host.mjs",
        "bin/sensor.mjs",
        "bin/listen.mjs",
        "types/telemetry.d.ts",
        "package.json",
        "LICENSE",
        "README.md",
        "python/bothways/host.py",
        "python/bothways/wire.py",
        "python/bothways/transports/stdio.py",
        "types/index.d.ts",
    }:
        assert needed in names, needed
    allowed = ("src/", "bin/", "python/bothways/", "types/")
    extra = [
        n for n in names if not n.startswith(allowed) and n not in ("package.json", "LICENSE", "README.md")
    ]
    assert extra == []
    assert not any("__pycache__" in n or n.endswith(".pyc") or "node_modules" in n for n in names)
    manifest = json.loads(tarfile.open(built["npm"]).extractfile("package/package.json").read())  # type: ignore[union-attr]
    assert manifest["version"] == __version__
    for field in ("description", "keywords", "repository", "bugs", "license", "engines", "types"):
        assert manifest.get(field), field


# -- the wheel, alone -----------------------------------------------------------------------------

JS_MODULE = """\
export function add(a, b) { return a + b; }
export function boom(why) { throw new RangeError(why); }
"""

PY_USES_NODE = """\
import asyncio, json, sys
import bothways
from bothways import RemoteError, node

assert "site-packages" in bothways.__file__, bothways.__file__  # the installed wheel, not a checkout
with node.require("./add.mjs", stderr="keep") as m:
    blocking = m.add(2, 3)
    try:
        m.boom("too far")
    except RemoteError as exc:
        error = [exc.remote_type, str(exc)]

async def main():
    async with await node.async_require("./add.mjs", stderr="keep") as m:
        return await m.add(40, 2)

print(json.dumps({"blocking": blocking, "async": asyncio.run(main()), "error": error,
                  "host": str(node._host_script())}))
"""


@pytest.fixture(scope="module")
def wheel_python(built: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A virtualenv holding only the wheel (with the web extra, for the demo) and its dependencies."""
    return make_venv(tmp_path_factory.mktemp("wheel-venv"), f"bothways[web] @ {built['wheel'].as_uri()}")


def test_the_wheel_alone_calls_node(wheel_python: Path, tmp_path: Path) -> None:
    (tmp_path / "add.mjs").write_text(JS_MODULE)
    (tmp_path / "use.py").write_text(PY_USES_NODE)
    result = json.loads(run([str(wheel_python), "use.py"], cwd=tmp_path))
    assert result["blocking"] == 5 and result["async"] == 42
    assert result["error"][0] == "RangeError" and "too far" in result["error"][1]
    assert "site-packages/bothways/js/bin/host.mjs" in result["host"]


def test_the_demo_runs_from_the_wheel_in_an_empty_folder(wheel_python: Path, tmp_path: Path) -> None:
    """The telemetry demo from the installed wheel alone: the web server, the listener and the
    sensors of both languages run, readings from both are stored, and nothing is left running."""
    env, mark = marked_env()
    env = {
        k: v for k, v in env.items() if k in CLEAN_ENV or k == "BOTHWAYS_TEST_MARK" or k == "PYTHONUNBUFFERED"
    }
    bothways = wheel_python.parent / "bothways"
    argv = [str(bothways), "demo", "--port", "0", "--interval", "0.2", "--duration", "6", "--data", "data"]
    demo = Program(argv, env=env, cwd=tmp_path)
    try:
        assert demo.wait(60) == 0, demo.stdout[-20:] + demo.stderr[-20:]
    finally:
        demo.stop()
    text = "\n".join(demo.stdout)
    assert "bothways demo: open http://127.0.0.1:" in text, text
    with sqlite3.connect(tmp_path / "data" / "readings.db") as db:
        counts = dict(db.execute("SELECT sensor, count(*) FROM readings GROUP BY sensor").fetchall())
    assert set(counts) == {"py-stdio", "py-ws", "js-tcp", "js-file"}, counts
    assert all(n >= 2 for n in counts.values()), counts
    assert wait_none_marked(mark) == []
    assert [p.name for p in tmp_path.iterdir()] == ["data"]  # its readings, and nothing else


WEB_SERVES = """\
from pathlib import Path

import bothways
from bothways.telemetry.web import serve

assert "site-packages" in bothways.__file__, bothways.__file__  # the installed wheel, not a checkout
serve(Path("readings.db"), port=0)
"""


def test_the_wheel_alone_serves_the_dashboard_with_waitress(wheel_python: Path, tmp_path: Path) -> None:
    (tmp_path / "serve.py").write_text(WEB_SERVES)
    server = Program(
        [str(wheel_python), "serve.py"], env={**CLEAN_ENV, "PYTHONUNBUFFERED": "1"}, cwd=tmp_path
    )
    try:
        url = server.wait_for(r"^(http://127\.0\.0\.1:\d+/)$", timeout=60).group(1)

        def get(path: str, kind: str) -> bytes:
            answer = requests.get(url + path, timeout=10 * UNIT)
            assert answer.status_code == 200, (path, answer.status_code, answer.text[:300])
            assert answer.headers["Content-Type"].startswith(kind), (path, answer.headers["Content-Type"])
            return answer.content

        page = get("", "text/html").decode()
        for needed in (
            "/vendor/uplot/uPlot.iife.min.js",
            "/vendor/uplot/uPlot.min.css",
            "/static/dashboard.js",
        ):
            assert needed in page, needed
        uplot = get("vendor/uplot/uPlot.iife.min.js", "text/javascript")
        assert uplot == (ROOT / "js" / "node_modules" / "uplot" / "dist" / "uPlot.iife.min.js").read_bytes()
        assert get("vendor/uplot/uPlot.min.css", "text/css").startswith(b".uplot")
        assert b"/bothways/browser.js" in get("static/dashboard.js", "text/javascript")
        assert b"export async function connect" in get("bothways/browser.js", "text/javascript")
        assert b"Talking to Flask from the browser" in get("test", "text/html")  # the tutorial's page
        assert json.loads(get("api/sensors", "application/json")) == {"sensors": []}
        posted = requests.post(
            url + "api/readings", json={"sensor": "s", "seq": 1, "celsius": 2.5}, timeout=10 * UNIT
        )
        assert posted.json() == {"stored": 1, "received": 1, "invalid": []}
        sensors = json.loads(get("api/sensors", "application/json"))["sensors"]
        assert [(s["sensor"], s["count"]) for s in sensors] == [("s", 1)]
        assert json.loads(get("api/config", "application/json"))["feed"].startswith("ws://127.0.0.1:")
        server.process.send_signal(signal.SIGTERM)
        assert server.wait(30) == 0, server.stderr[-20:]
    finally:
        server.stop()
    assert server.stdout == [url], server.stdout
    assert {p.name for p in tmp_path.iterdir()} <= {
        "serve.py",
        "readings.db",
        "readings.db-wal",
        "readings.db-shm",
    }


# -- the npm tarball, alone -------------------------------------------------------------------------

JS_USES_PYTHON = """\
import { RemoteError } from "bothways";
import { python } from "bothways/python";

const interpreter = process.argv[2];
const statistics = await python.import("statistics", { python: interpreter, stderr: "keep" });
const mean = await statistics.mean([1, 2, 3, 4]);
let error;
try {
  await statistics.mean([]);
} catch (e) {
  error = e instanceof RemoteError ? [e.remoteType, e.message] : ["not a RemoteError", String(e)];
}
await statistics.close();
const probe = await python.import("probe", { python: interpreter, stderr: "keep", cwd: process.cwd() });
const where = await probe.where();
await probe.close();
console.log(JSON.stringify({ mean, error, where }));
"""

PROBE = """\
import bothways.wire


def where():
    return {"bothways": bothways.wire.__file__, "backend": bothways.wire.BACKEND}
"""


@pytest.fixture(scope="module")
def npm_folder(built: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding only the tarball, installed with npm (and its dependency, ws)."""
    npm = require_tool("npm")
    folder = tmp_path_factory.mktemp("npm-user")
    (folder / "package.json").write_text(json.dumps({"name": "user", "private": True, "type": "module"}))
    run([npm, "install", "--no-audit", "--no-fund", "--loglevel=error", str(built["npm"])], cwd=folder)
    (folder / "use.mjs").write_text(JS_USES_PYTHON)
    (folder / "probe.py").write_text(PROBE)
    return folder


@pytest.fixture(scope="module")
def bare_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An interpreter that has orjson but cannot import bothways."""
    python = make_venv(tmp_path_factory.mktemp("bare-venv"), "orjson")
    probe = subprocess.run(
        [str(python), "-c", "import bothways"], cwd="/", env=CLEAN_ENV, capture_output=True
    )
    assert probe.returncode != 0 and b"No module named 'bothways'" in probe.stderr
    return python


@pytest.mark.parametrize("orjson", ["importable", "blocked"])
def test_the_npm_package_alone_calls_python(
    npm_folder: Path, bare_python: Path, orjson: str, tmp_path: Path
) -> None:
    env = dict(CLEAN_ENV)
    if orjson == "blocked":  # an orjson that cannot be imported, first on the child's path
        (tmp_path / "orjson.py").write_text("raise ImportError('orjson is blocked by the test')\n")
        env["PYTHONPATH"] = str(tmp_path)
    node = require_tool("node")
    result = json.loads(run([node, "use.mjs", str(bare_python)], cwd=npm_folder, env=env))
    assert result["mean"] == 2.5
    assert result["error"][0] == "StatisticsError" and "at least one data point" in result["error"][1]
    shipped = npm_folder / "node_modules" / "bothways" / "python" / "bothways" / "wire.py"
    assert result["where"]["bothways"] == str(shipped)
    assert result["where"]["backend"] == ("orjson" if orjson == "importable" else "json")


def test_a_host_of_another_protocol_is_refused_naming_both_versions(
    npm_folder: Path, bare_python: Path
) -> None:
    """The tarball's Python side altered to speak protocol 2: the handshake refuses it at once."""
    shipped = npm_folder / "node_modules" / "bothways" / "python" / "bothways" / "rpc.py"
    original = shipped.read_text()
    altered = original.replace("\nPROTOCOL = 1 ", "\nPROTOCOL = 2 ")
    assert altered != original
    shipped.write_text(altered)
    script = textwrap.dedent("""\
        import { python } from "bothways/python";
        try {
          await python.import("statistics", { python: process.argv[2], stderr: "keep" });
          console.log("no error");
        } catch (e) {
          console.log(`${e.constructor.name}: ${e.message}`);
        }
        """)
    (npm_folder / "mismatch.mjs").write_text(script)
    try:
        out = run([require_tool("node"), "mismatch.mjs", str(bare_python)], cwd=npm_folder).strip()
    finally:
        shipped.write_text(original)
    assert out.startswith("ConnectError: statistics: protocol mismatch:"), out
    assert f"bothways {__version__} for javascript (protocol 1)" in out, out
    assert f"bothways {__version__} for python (protocol 2)" in out, out
