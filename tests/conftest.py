"""Shared test helpers: the timeout unit, the repository paths, tool discovery, and Debian's
Chromium for the browser tests."""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Playwright

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "spec" / "vectors"
FIXTURES = ROOT / "tests" / "fixtures"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


@contextlib.contextmanager
def orjson_hidden() -> Iterator[None]:
    """While inside, ``import orjson`` raises ImportError, as on a plain python3."""
    saved = sys.modules.get("orjson")
    sys.modules["orjson"] = None  # type: ignore[assignment] # None: "import orjson" raises
    try:
        yield
    finally:
        if saved is None:
            del sys.modules["orjson"]
        else:
            sys.modules["orjson"] = saved


# make mutation's second Python run (scripts/mutation): bothways.wire itself is imported on the
# json backend, so that its standard-library code is what mutmut mutates and the tests run (else
# the tests reach that code only through tests/vectors.py's twin module, which mutmut does not
# see); the orjson backend is then the twin, the unmutated reference the tests compare with.
if os.environ.get("BOTHWAYS_HIDE_ORJSON") == "1":
    with orjson_hidden():
        import bothways.wire  # noqa: F401

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


# Headless Chromium in a container: no sandbox as root (it cannot start otherwise), no GPU, no
# /dev/shm (small in containers), and none of the background traffic a fresh profile makes.
CHROMIUM_ARGS = [
    *(["--no-sandbox"] if os.geteuid() == 0 else []),
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def launch_chromium(playwright: Playwright, timeout_s: float = 30) -> Browser:
    """Debian's Chromium, headless, through Playwright, which is given its path and so never
    downloads a browser of its own (skipped when it is missing, a failure in CI)."""
    chromium = require_tool("chromium")
    return playwright.chromium.launch(
        executable_path=chromium, args=CHROMIUM_ARGS, headless=True, timeout=timeout_s * UNIT * 1000
    )


# The vectors nest 1024 arrays deep; the recursive test helpers need room for that.
sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
