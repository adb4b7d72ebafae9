"""Reading spec/vectors: tagged values, the flat event form, a type-strict comparison, and the
codec module for each backend of bothways.wire."""

from __future__ import annotations

import base64
import contextlib
import functools
import importlib.util
import json
import math
import sys
from types import ModuleType
from typing import Any

import pytest

import bothways.wire

from .conftest import SPEC, orjson_hidden

BACKENDS = ["orjson", "json"]


def codec(backend: str) -> ModuleType:
    """bothways.wire with ``backend``: the module itself when it is the active one, else a twin
    loaded from the same file under another name: "json" with orjson hidden, as on a plain
    python3, or "orjson" where bothways.wire was imported without it (BOTHWAYS_HIDE_ORJSON)."""
    if backend == bothways.wire.BACKEND:
        return bothways.wire
    if backend == "orjson" and importlib.util.find_spec("orjson") is None:
        pytest.skip("orjson is not installed")
    return _twin(backend)


def codecs() -> list[ModuleType]:
    """Every backend this interpreter can run, the active one (bothways.wire) first."""
    others = [b for b in BACKENDS if b != bothways.wire.BACKEND]
    if importlib.util.find_spec("orjson") is None:
        others.remove("orjson")
    return [bothways.wire] + [codec(backend) for backend in others]


@functools.cache
def _twin(backend: str) -> ModuleType:
    """Imports src/bothways/wire.py a second time, as ``bothways._wire_<backend>`` (orjson hidden
    while it runs for "json"). Its event classes are its own; bothways.errors is shared."""
    name = f"bothways._wire_{backend}"
    spec = importlib.util.spec_from_file_location(name, bothways.wire.__file__)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    with orjson_hidden() if backend == "json" else contextlib.nullcontext():
        spec.loader.exec_module(module)
    assert module.BACKEND == backend
    return module


def load(name: str) -> list[dict[str, Any]]:
    with open(SPEC / name, encoding="utf-8") as f:
        cases: list[dict[str, Any]] = json.load(f)["cases"]
    return cases


def untag(value: Any) -> Any:
    """Replaces the vector tags ($float, $bigint, $nested) with the values they stand for."""
    if isinstance(value, dict):
        if set(value) == {"$float"}:
            return float(value["$float"])
        if set(value) == {"$bigint"}:
            return int(value["$bigint"])
        if set(value) == {"$nested"}:
            nested: list[Any] = []
            for _ in range(value["$nested"] - 1):
                nested = [nested]
            return nested
        return {k: untag(v) for k, v in value.items()}
    if isinstance(value, list):
        return [untag(v) for v in value]
    return value


def same(a: Any, b: Any) -> bool:
    """Equality that also compares types: 1 != 1.0 != True, -0.0 != 0.0, NaN == NaN.

    Iterative (a stack of pairs): the vectors nest 1,024 deep, past the C recursion limit that
    Python 3.12 applies to a recursive walk through ``all()``."""
    stack = [(a, b)]
    while stack:
        x, y = stack.pop()
        if type(x) is not type(y):
            return False
        if isinstance(x, float):
            if math.isnan(x) or math.isnan(y):
                if not (math.isnan(x) and math.isnan(y)):
                    return False
            elif not (x == y and math.copysign(1, x) == math.copysign(1, y)):
                return False
        elif isinstance(x, dict):
            if list(x) != list(y):
                return False
            stack.extend((x[k], y[k]) for k in x)
        elif isinstance(x, list):
            if len(x) != len(y):
                return False
            stack.extend(zip(x, y, strict=True))
        elif x != y:
            return False
    return True


def input_bytes(case: dict[str, Any]) -> bytes:
    if "base64" in case:
        return base64.b64decode(case["base64"])
    text = case["input"] if "input" in case else case["text"]
    return str(text).encode("utf-8", "surrogatepass")


def flat(events: list[Any], detail: bool = False) -> list[dict[str, Any]]:
    """The flat event form of spec/PROTOCOL.md section 2 (events of either backend's module);
    with ``detail``, errors carry their reason (and column, when malformed) too."""
    out: list[dict[str, Any]] = []
    for event in events:
        kind = type(event).__name__  # (by name: each backend's codec module has its own classes)
        if kind == "Messages":
            out.extend({"message": v, "line": event.line + i} for i, v in enumerate(event.values))
        elif kind == "Malformed":
            error = event.error
            out.append({"error": error.code, "line": error.line})
            if detail:
                out[-1].update(column=error.column, reason=error.reason)
        elif kind == "Truncated":
            error = event.error
            out.append({"error": error.code, "line": error.line, "delivered": error.delivered})
            if detail:
                out[-1]["reason"] = error.reason
        elif kind == "Binary":
            out.append({"binary": event.data.hex(), "line": event.line})
        else:  # pragma: no cover - a new event type must be added here
            raise AssertionError(f"unknown event {event!r}")
    return out


def same_events(got: list[dict[str, Any]], expected: list[dict[str, Any]]) -> bool:
    if len(got) != len(expected):
        return False
    for g, e in zip(got, expected, strict=False):
        if set(g) != set(e):
            return False
        if "message" in e and not same(g["message"], untag(e["message"])):
            return False
        if any(g[k] != e[k] for k in e if k != "message"):
            return False
    return True
