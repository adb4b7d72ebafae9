"""The wheel carries bothways' Node side: copied from js/ and examples/ at build time.

Everything else is in pyproject.toml. ``build_py`` adds, as package data:
- ``bothways/js/``: the npm package's ``src/``, ``bin/host.mjs``, ``bin/sensor.mjs`` and
  ``bin/stub.mjs`` (Node built-ins only, so no node_modules), with a ``package.json`` that makes
  Node read them as ES modules and gives the version; ``bothways.node.require`` runs
  ``bothways/js/bin/host.mjs`` from there, ``bothways demo`` the Node.js sensor
  ``bothways/js/bin/sensor.mjs``, ``bothways types node`` ``bothways/js/bin/stub.mjs``;
- ``bothways/js/vendor/uplot/``: uPlot's browser build and stylesheet (``uPlot.iife.min.js``,
  ``uPlot.min.css``) and its licence, which the dashboard (bothways.telemetry.web) serves. They
  come from the npm dependency (``js/node_modules/uplot/dist``, after ``npm ci``); a build
  without them fails, saying so;
- ``bothways/examples/tutorial/``: the tutorial's programs, for ``bothways demo`` (their
  ``../../js/src`` imports resolve to ``bothways/js/src`` there, as in the repository).

The sdist carries js/ and examples/ (MANIFEST.in), and uPlot's files in ``js/vendor/uplot/``
(added by ``sdist`` below: node_modules stays out), so a wheel built from it has the same files.
No copy is kept in git: an editable install finds js/, examples/ and node_modules/uplot in the
checkout instead.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.sdist import sdist

ROOT = Path(__file__).resolve().parent
SKIP = shutil.ignore_patterns("node_modules", "__pycache__", "*.pyc", "*.tgz")
# js/bin/: the RPC host, the telemetry sensor, the .pyi stub writer (`bothways types node`)
NODE_PROGRAMS = ("host.mjs", "sensor.mjs", "stub.mjs")
# uPlot, for the dashboard: its browser build, stylesheet and licence.
UPLOT_NAMES = ("uPlot.iife.min.js", "uPlot.min.css", "LICENSE")


def uplot_files() -> list[Path] | None:
    """uPlot's files: an sdist's copy (js/vendor/uplot), else the npm package's (npm ci)."""
    vendor = ROOT / "js" / "vendor" / "uplot"
    npm = ROOT / "js" / "node_modules" / "uplot"
    for files in (
        [vendor / name for name in UPLOT_NAMES],
        [npm / "dist" / UPLOT_NAMES[0], npm / "dist" / UPLOT_NAMES[1], npm / "LICENSE"],
    ):
        if all(f.is_file() for f in files):
            return files
    return None


def copy_uplot(into: Path, *, required: bool = True) -> None:
    """Copies uPlot's files into ``into``; without them, fails (or, not ``required``, skips)."""
    files = uplot_files()
    if files is None:
        if required:
            raise SystemExit(
                "error: uPlot (the dashboard's chart) is missing: run `npm ci` in js/ first "
                "(looked in js/vendor/uplot and js/node_modules/uplot)"
            )
        return
    into.mkdir(parents=True, exist_ok=True)
    for f in files:
        shutil.copy2(f, into / f.name)


class BuildWithNodeSide(build_py):
    def run(self) -> None:
        super().run()
        package = Path(self.build_lib) / "bothways"
        js = package / "js"
        shutil.rmtree(js, ignore_errors=True)
        shutil.copytree(ROOT / "js" / "src", js / "src", ignore=SKIP)
        (js / "bin").mkdir(parents=True)
        for program in NODE_PROGRAMS:
            shutil.copy2(ROOT / "js" / "bin" / program, js / "bin" / program)
        manifest = {
            "name": "bothways-node-side",
            "private": True,
            "description": "The Node.js side carried by the bothways wheel (its host and core).",
            "version": self.distribution.get_version(),
            "type": "module",
        }
        (js / "package.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        # An editable install serves uPlot from the checkout's node_modules (`make setup` runs
        # pip before npm ci): only a real build needs the copy.
        copy_uplot(js / "vendor" / "uplot", required=not getattr(self, "editable_mode", False))
        tutorial = package / "examples" / "tutorial"
        shutil.rmtree(tutorial, ignore_errors=True)
        shutil.copytree(ROOT / "examples" / "tutorial", tutorial, ignore=SKIP)


class SdistWithUplot(sdist):
    """Adds uPlot's files to the sdist as ``js/vendor/uplot/``, for the wheel built from it."""

    def make_release_tree(self, base_dir: str, files: list[str]) -> None:
        super().make_release_tree(base_dir, files)
        copy_uplot(Path(base_dir) / "js" / "vendor" / "uplot")


setup(cmdclass={"build_py": BuildWithNodeSide, "sdist": SdistWithUplot})
