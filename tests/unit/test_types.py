"""`bothways types python MODULE`: Python annotations as the TypeScript types Node sees.

The whole declarations of tests/fixtures/typed_module.py are checked piece by piece (exact
lines); tests/cross/test_types_cross.py compiles them with tsc and runs them against the module.
"""

from __future__ import annotations

import datetime
import enum
import sys
import typing
from collections.abc import AsyncIterator, Callable, Generator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Optional, Union

import pytest

from bothways.cli import main
from bothways.types import TypeScript, python_declarations

from ..conftest import FIXTURES


class Shape(enum.Enum):
    SQUARE = "square"
    ROUND = 2


class Mixed(enum.Enum):
    A = (1, 2)


@dataclass
class Pixel:
    x: int
    tag: Optional[str]  # noqa: UP045 - the old spelling on purpose


class Remote:
    pass


@pytest.mark.parametrize(
    ("hint", "outward", "expected"),
    [
        (int, True, "number"),
        (float, False, "number"),
        (str, True, "string"),
        (bool, True, "boolean"),
        (None, True, "null"),
        (type(None), True, "null"),
        (bytes, False, "Uint8Array"),
        (datetime.datetime, True, "string"),
        (list[int], True, "number[]"),
        (typing.List[str], True, "string[]"),  # noqa: UP006 - the old spelling on purpose
        (Sequence[float], False, "number[]"),
        (list, True, "unknown[]"),
        (list[Union[int, str]], True, "(number | string)[]"),  # noqa: UP007
        (dict[str, float], True, "Record<string, number>"),
        (Mapping[str, list[int]], True, "Record<string, number[]>"),
        (dict, True, "Record<string, unknown>"),
        (tuple[int, str], True, "[number, string]"),
        (tuple[int, ...], True, "number[]"),
        (tuple, True, "unknown[]"),
        (Optional[int], True, "number | null"),  # noqa: UP045
        (Union[int, str, None], True, "number | string | null"),  # noqa: UP007
        (int | None, False, "number | null"),
        (int | Any, True, "unknown"),
        (Literal["a", 1], True, '"a" | 1'),
        (Shape, True, '"square" | 2'),
        (Mixed, True, "unknown"),
        (Pixel, True, "{ x: number; tag: string | null }"),
        (Callable[[int], str], True, "(arg0: number) => Promise<string>"),
        (Callable[[int], str], False, "(arg0: number) => string | Promise<string>"),
        (Callable[..., int], True, "(...args: any[]) => Promise<number>"),
        (Callable, False, "(...args: any[]) => unknown | Promise<unknown>"),
        (
            Callable[[Callable[[int], int]], None],
            True,
            "(arg0: (arg0: number) => number | Promise<number>) => Promise<null>",
        ),
        (Iterator[int], True, "AsyncIterable<number>"),
        (Generator[str, None, None], True, "AsyncIterable<string>"),
        (AsyncIterator[int], True, "AsyncIterable<number>"),
        (Iterable[int], False, "Iterable<number>"),
        (Remote, True, "Remote"),
        (set[int], True, "unknown"),
        (Any, True, "unknown"),
        (object, True, "unknown"),
        ("NotResolved", True, "unknown"),
        (complex, True, "unknown"),
    ],
)
def test_type_mapping(hint: Any, outward: bool, expected: str) -> None:
    assert TypeScript({Remote: "Remote"}).type_of(hint, outward=outward) == expected


def test_ndarray_needs_the_ndarray_type() -> None:
    numpy = pytest.importorskip("numpy")
    ts = TypeScript()
    assert ts.type_of(numpy.ndarray) == "Float64Array | NDArray"
    assert ts.imports == {"NDArray"}


@pytest.fixture
def declarations(monkeypatch: pytest.MonkeyPatch) -> str:
    pytest.importorskip("numpy")  # the fixture annotates with numpy.ndarray
    monkeypatch.syspath_prepend(str(FIXTURES))
    monkeypatch.delitem(sys.modules, "typed_module", raising=False)
    return python_declarations("typed_module")


def _block(text: str, head: str) -> list[str]:
    """The lines of the block that starts with the line ``head``, up to its closing ``}``."""
    lines = text.splitlines()
    start = lines.index(head)
    return lines[start : lines.index("}", start) + 1]


def test_header_says_how_to_use_it(declarations: str) -> None:
    assert declarations.startswith('// What `python.import("typed_module")` gives (bothways/python)')
    head = declarations.split("\n\n")[0].splitlines()
    assert '//   const m = (await python.import("typed_module")) as Module;' in head
    assert "// Called with m.call(name, ...) only (names of the handle's): close." in head
    assert 'import type { Kwargs, NDArray } from "bothways/objects";' in head
    assert 'import type { PythonModule } from "bothways/python";' in head


def test_functions(declarations: str) -> None:
    module = _block(declarations, "export interface Module extends PythonModule {")
    for line in [
        "  add(a: number, b?: number): Promise<number>;",
        "  anything(x: unknown, ...rest: number[]): Promise<unknown>;",
        "  apply(f: (arg0: number) => string | Promise<string>, x: number): "
        "Promise<(arg0: string) => Promise<number>>;",
        "  checksum(data: Uint8Array): Promise<number>;",
        "  counts(words: string[]): Promise<Record<string, number>>;",
        "  greet(name: string): Promise<string>;",
        "  later(x: number): Promise<number[]>;",
        "  make_counter(start: number): Promise<Counter>;",
        "  maybe(x?: number | null): Promise<number | string>;",
        "  mean(values: number[]): Promise<number | null>;",
        '  mode(): Promise<"a" | "b">;',
        "  numbers(n: number): Promise<AsyncIterable<number>>;",
        "  pair(x: number, y: string): Promise<[number, string]>;",
        "  scale(a: Float64Array | NDArray, k: number): Promise<Float64Array | NDArray>;",
        '  shade(color: "red" | "green", mode: "light" | "dark"): Promise<unknown>;',
        "  where(point: { x: number; y: number }): Promise<number[]>;",
    ]:
        assert line in module
    assert not any(line.lstrip().startswith("close(") for line in module)  # the handle's own


def test_docstrings_and_keyword_only_parameters(declarations: str) -> None:
    module = _block(declarations, "export interface Module extends PythonModule {")
    add = module.index("  add(a: number, b?: number): Promise<number>;")
    assert module[add - 5 : add] == [
        "  /**",
        "   * Adds two numbers.",
        "   *",
        "   * Returns their sum.",
        "   */",
    ]
    greet = module.index("  greet(name: string): Promise<string>;")
    assert module[greet - 2] == (
        "   * Keyword arguments: `shout`: boolean (optional); pass them by name with "
        '`m.callWith("greet", { ... })` (all arguments then go by name).'
    )
    assert "   * Keyword arguments: any keyword (`**options`); pass them by name with " in "\n".join(module)


def test_classes(declarations: str) -> None:
    module = _block(declarations, "export interface Module extends PythonModule {")
    assert module[module.index("  Counter: {") : module.index("  Counter: {") + 4] == [
        "  Counter: {",
        "    new (start?: number): Promise<Counter>;",
        "    (start?: number): Promise<Counter>;",
        "  };",
    ]
    assert "    new (x: number, y: number): Promise<{ x: number; y: number }>;" in module  # a dataclass
    assert '    new (value: "red" | "green"): Promise<"red" | "green">;' in module  # an enum
    counter = _block(declarations, "export interface Counter {")
    assert counter == [
        "export interface Counter {",
        "  /**",
        "   * Adds n (times the step).",
        "   */",
        "  add(n?: number): Promise<number>;",
        "  /**",
        "   * Twice the count.",
        "   */",
        "  readonly double: Promise<number>;",
        "  /**",
        "   * Keyword arguments: `to`: number (optional); pass them last: `kwargs({ ... })`.",
        "   */",
        "  reset(kw?: Kwargs): Promise<null>;",
        "  up_to(end: number): Promise<AsyncIterable<number>>;",
        "  zero(): Promise<number>;",
        "  readonly count: Promise<number>;",
        "  readonly label: Promise<unknown>;",
        "  readonly step: Promise<number>;",
        "}",
    ]
    assert "export interface Point" not in declarations  # a dataclass crosses as a plain object
    assert "export interface Color" not in declarations  # an enum member crosses as its value


def test_cli_prints_them(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], declarations: str
) -> None:
    monkeypatch.chdir(FIXTURES)  # the working directory comes first, as for the host
    monkeypatch.setattr(sys, "path", list(sys.path))  # (which it puts there: undone after)
    monkeypatch.delitem(sys.modules, "typed_module", raising=False)
    assert main(["types", "python", "typed_module"]) == 0
    assert capsys.readouterr().out == declarations


def test_cli_says_when_the_module_is_missing(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["types", "python", "no_such_module_here"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert "bothways types: cannot import no_such_module_here: ModuleNotFoundError" in err
