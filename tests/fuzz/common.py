"""What the fuzz targets share: the time budget, the corpora, the flat forms compared.

Each target is a hypothesis test run in one of two ways:

- ``make test`` (no ``BOTHWAYS_FUZZ_SECONDS``): the corpus of the target is replayed, then
  ``BRIEF`` examples are drawn (a second or two per target);
- ``make fuzz SECONDS=N`` (``BOTHWAYS_FUZZ_SECONDS=N``): batches of examples are drawn, each
  batch with a fresh seed, until N seconds have passed. When atheris is installed,
  tests/fuzz/atheris_main.py also drives the same tests coverage-guided
  (``fuzz_one_input``).

A failure found becomes a file under tests/fuzz/corpus/<target>/ (replayed first from then on).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

from ..conftest import ROOT

CORPUS = ROOT / "tests" / "fuzz" / "corpus"
SECONDS = float(os.environ.get("BOTHWAYS_FUZZ_SECONDS", "0") or 0)
"""Seconds per target (``make fuzz SECONDS=N``); 0: the brief run of ``make test``."""
BRIEF = 40  # examples per target in make test
BATCH = 300  # examples per seed while fuzzing

_SUPPRESS = list(HealthCheck)


def brief(examples: int = BRIEF) -> settings:
    """The settings of one run: ``examples`` drawn, no deadline (a slow CI box is no failure)."""
    return settings(
        max_examples=examples if not SECONDS else BATCH,
        deadline=None,
        suppress_health_check=_SUPPRESS,
        derandomize=not SECONDS,  # make test: the same examples every run
        database=None if not SECONDS else settings.default.database,
        print_blob=True,
    )


def run(target: Callable[[], None]) -> int:
    """Runs a hypothesis test once (make test), or again and again for SECONDS; returns the runs."""
    if not SECONDS:
        target()
        return 1
    end = time.monotonic() + SECONDS
    runs = 0
    while time.monotonic() < end:
        target()
        runs += 1
    return runs


def corpus(name: str, differential: bool = False) -> list[Any]:
    """The inputs of one target, sorted by name, as pytest params.

    A file named ``open-*`` is a bug found and reported, not fixed yet, and is expected to fail
    (strict: once it is fixed the run says so, and the file loses its ``open-`` prefix). An
    ``open-differ-*`` file is a difference between the two languages: expected to fail in the
    differential target, to pass in the others. The differential target leaves the other
    ``open-*`` files to the single-language targets."""
    folder = CORPUS / name
    params = []
    for path in sorted(p for p in folder.iterdir() if p.is_file()) if folder.is_dir() else []:
        differ = path.name.startswith("open-differ-")
        if differential and path.name.startswith("open-") and not differ:
            continue
        failing = differ if differential else path.name.startswith("open-") and not differ
        marks = [pytest.mark.xfail(strict=True, reason="open bug")] if failing else []
        params.append(pytest.param(path, marks=marks, id=path.name))
    return params


def number(value: Any) -> Any:
    """A decoded value in a form both languages give alike: numbers as floats (zero unsigned),
    objects as sorted pairs (JavaScript puts integer-like keys first)."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return float(value) + 0.0  # (-0.0 + 0.0 is 0.0: Python reads "-0" as the int 0, JS as -0)
    if isinstance(value, list):
        return [number(v) for v in value]
    if isinstance(value, dict):
        if set(value) == {"$negzero"}:
            return 0.0
        return sorted((k, number(v)) for k, v in value.items())
    raise AssertionError(f"not a JSON value: {value!r}")
