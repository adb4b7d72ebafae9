"""JSONTestSuite: every y_ accepted, every n_ rejected, i_ never crashes, same verdict in both
languages, and in Python the same verdict (and error) from both backends of bothways.wire."""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import ModuleType

import pytest

import bothways.wire
from bothways import DecodeError

from ..conftest import IN_CI, ROOT
from ..vectors import codec
from .node import run_node

SUITE = Path(os.environ.get("BOTHWAYS_JSONTESTSUITE", ROOT.parent / "shared" / "vectors" / "jsontestsuite"))
PARSING = SUITE / "test_parsing"


def python_verdict(path: Path, wire: ModuleType = bothways.wire) -> str:
    try:
        wire.decode(path.read_bytes())
    except DecodeError:
        return "reject"
    except Exception as exc:  # noqa: BLE001 - any other exception is the crash we look for
        return f"crash: {type(exc).__name__}: {exc}"
    return "accept"


@pytest.fixture(scope="module")
def files() -> list[Path]:
    if not PARSING.is_dir():
        if IN_CI:
            pytest.fail(f"JSONTestSuite not found at {PARSING} (set BOTHWAYS_JSONTESTSUITE)")
        pytest.skip(f"JSONTestSuite not found at {PARSING} (set BOTHWAYS_JSONTESTSUITE)")
    return sorted(p for p in PARSING.iterdir() if p.suffix == ".json")


@pytest.fixture(scope="module")
def verdicts(files: list[Path]) -> dict[str, tuple[str, str]]:
    js = json.loads(run_node("js_verdicts.mjs", str(PARSING), timeout=120))
    return {p.name: (python_verdict(p), js[p.name]) for p in files}


def test_counts(verdicts: dict[str, tuple[str, str]]) -> None:
    kinds = [name[0] for name in verdicts]
    assert (kinds.count("y"), kinds.count("n"), kinds.count("i")) == (95, 188, 35)


def test_y_accepted_n_rejected_by_both(verdicts: dict[str, tuple[str, str]]) -> None:
    wrong = {
        name: pair
        for name, pair in verdicts.items()
        if (name.startswith("y_") and pair != ("accept", "accept"))
        or (name.startswith("n_") and pair != ("reject", "reject"))
    }
    assert not wrong


def test_i_no_crash_and_same_verdict(
    verdicts: dict[str, tuple[str, str]], capsys: pytest.CaptureFixture[str]
) -> None:
    rows = {name: pair for name, pair in verdicts.items() if name.startswith("i_")}
    with capsys.disabled():
        print("\nJSONTestSuite i_ verdicts (python / javascript):")
        for name, (py, js) in rows.items():
            print(f"  {py:7} {js:7} {name}")
    assert not [n for n, pair in rows.items() if any(v.startswith("crash") for v in pair)]
    assert not [n for n, (py, js) in verdicts.items() if py != js]


def test_stdlib_backend_gives_orjsons_verdict_on_every_file(files: list[Path]) -> None:
    """318 files: y_ accepted, n_ rejected, i_ as orjson decides, by the standard library backend."""
    with_orjson, with_json = codec("orjson"), codec("json")
    pairs = {p.name: (python_verdict(p, with_orjson), python_verdict(p, with_json)) for p in files}
    assert len(pairs) == 318
    wrong = {
        name: pair
        for name, pair in pairs.items()
        if pair[0] != pair[1]
        or (name.startswith("y_") and pair[1] != "accept")
        or (name.startswith("n_") and pair[1] != "reject")
    }
    assert not wrong


def test_stdlib_backend_reports_each_error_as_orjson_does(files: list[Path]) -> None:
    """The same DecodeError, to the message, column and excerpt, and the same value otherwise."""

    def result(wire: ModuleType, data: bytes) -> str:
        try:
            return repr(wire.decode(data))
        except DecodeError as exc:
            return str(exc)

    with_orjson, with_json = codec("orjson"), codec("json")
    different = [
        p.name for p in files if result(with_orjson, p.read_bytes()) != result(with_json, p.read_bytes())
    ]
    assert not different
