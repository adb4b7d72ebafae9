"""The wheel carries bothways' Node side: copied from js/ and examples/ at build time.

Everything else is in pyproject.toml. ``build_py`` adds, as package data:
- ``bothways/js/``: the npm package's ``src/`` and ``bin/host.mjs`` (Node built-ins only, so no
  node_modules), with a ``package.json`` that makes Node read them as ES modules and gives the
  version; ``bothways.node.require`` runs ``bothways/js/bin/host.mjs`` from there;
- ``bothways/examples/tutorial/``: the tutorial's programs, for ``bothways demo`` (their
  ``../../js/src`` imports resolve to ``bothways/js/src`` there, as in the repository).

The sdist carries js/ and examples/ (MANIFEST.in), so a wheel built from it has the same files.
No copy is kept in git: an editable install finds js/ and examples/ in the checkout instead.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
SKIP = shutil.ignore_patterns("node_modules", "__pycache__", "*.pyc", "*.tgz")


class BuildWithNodeSide(build_py):
    def run(self) -> None:
        super().run()
        package = Path(self.build_lib) / "bothways"
        js = package / "js"
        shutil.rmtree(js, ignore_errors=True)
        shutil.copytree(ROOT / "js" / "src", js / "src", ignore=SKIP)
        (js / "bin").mkdir(parents=True)
        shutil.copy2(ROOT / "js" / "bin" / "host.mjs", js / "bin" / "host.mjs")
        manifest = {
            "name": "bothways-node-side",
            "private": True,
            "description": "The Node.js side carried by the bothways wheel (its host and core).",
            "version": self.distribution.get_version(),
            "type": "module",
        }
        (js / "package.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        tutorial = package / "examples" / "tutorial"
        shutil.rmtree(tutorial, ignore_errors=True)
        shutil.copytree(ROOT / "examples" / "tutorial", tutorial, ignore=SKIP)


setup(cmdclass={"build_py": BuildWithNodeSide})
