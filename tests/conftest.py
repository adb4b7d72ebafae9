"""Shared test helpers: the timeout unit, the repository paths, and tool discovery."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "spec" / "vectors"
FIXTURES = ROOT / "tests" / "fixtures"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

# Every timeout in the tests is a multiple of UNIT seconds; slow machines raise the factor.
UNIT = float(os.environ.get("BOTHWAYS_TEST_TIMEOUT_FACTOR", "1"))


def require_tool(name: str) -> str:
    """The path of a program the test needs: skipped when absent, but a failure in CI."""
    path = shutil.which(name)
    if path is None:
        message = f"{name!r} is not installed (make setup installs it)"
        if IN_CI:
            pytest.fail(message + " - in CI a missing tool is a failure, not a skip")
        pytest.skip(message)
    return path


# The vectors nest 1024 arrays deep; the recursive test helpers need room for that.
sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
