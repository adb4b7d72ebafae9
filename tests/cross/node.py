"""Running real node processes from the cross-language tests."""

from __future__ import annotations

import subprocess

from ..conftest import FIXTURES, ROOT, UNIT, require_tool


def run_node(script: str, *args: str, data: bytes = b"", timeout: float = 60) -> bytes:
    """Runs a fixture script with node, feeding ``data``; returns stdout, failing on exit != 0."""
    node = require_tool("node")
    proc = subprocess.run(
        [node, str(FIXTURES / script), *args],
        input=data,
        capture_output=True,
        timeout=timeout * UNIT,
        cwd=ROOT,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    return proc.stdout
