"""One version for both packages, and one protocol number for both cores."""

from __future__ import annotations

import json
import re
import subprocess
import sys

from bothways import __version__
from bothways.rpc import PROTOCOL

from ..conftest import ROOT


def test_the_npm_package_has_the_python_packages_version() -> None:
    manifest = json.loads((ROOT / "js" / "package.json").read_text(encoding="utf-8"))
    assert manifest["version"] == __version__


def test_the_cli_says_the_version() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "bothways.cli", "--version"], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == f"bothways {__version__}"


def test_the_changelog_has_an_entry_for_the_version() -> None:
    changelog = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    assert re.search(rf"^## {re.escape(__version__)} ", changelog, re.MULTILINE), (
        "no '## VERSION (date)' heading"
    )


def test_both_cores_speak_the_same_protocol_version() -> None:
    rpc_js = (ROOT / "js" / "src" / "rpc.js").read_text(encoding="utf-8")
    found = re.findall(r"^export const PROTOCOL = (\d+);", rpc_js, re.MULTILINE)
    assert found == [str(PROTOCOL)]
