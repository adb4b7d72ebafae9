"""Types where they help: declarations of a served module, for the other side's editor.

    bothways types python MODULE > module.d.ts     # what Node's python.import(MODULE) gives
    bothways types node PATH > module_types.pyi    # what Python's node.require(PATH) gives

Rules:
- ``python``: MODULE is imported here (the working directory first on ``sys.path``, as the host
  does; what it prints while importing goes to stderr), and what ``python -m bothways.host``
  serves (``host.exported_functions``) is described from its signatures, annotations and
  docstrings: each function an async function, each class something called with ``new`` that
  gives a remote object (methods return promises, attributes are promises), a dataclass the
  plain object it crosses as. An annotation this module cannot map, or none, is ``unknown``.
- ``node``: the work is done in Node by ``js/bin/stub.mjs`` (it imports the module and reads its
  JSDoc); we find ``node`` and the script as ``bothways.node`` finds its host: the wheel's copy,
  else the checkout's.
- Types follow the direction a value travels (spec/PROTOCOL.md 10): a Python function's result
  reaches JavaScript as a proxy whose calls return promises, a JavaScript callback passed to
  Python may answer with a value or a promise; a generator returned arrives as an async
  iterable, an iterable parameter is anything JavaScript can iterate.
"""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import datetime
import enum
import importlib
import inspect
import json
import os
import shutil
import subprocess
import sys
import textwrap
import types
import typing
import uuid
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Callable,
    Generator,
    Iterable,
    Iterator,
    Mapping,
    MutableMapping,
    MutableSequence,
    Sequence,
)
from pathlib import Path
from typing import Any

from .host import exported_functions

__all__ = ["TypeScript", "node_stub", "python_declarations", "run", "stub_script"]

# Names python.js gives the handle itself (its RESERVED): a function of the module by one of these
# names is reached with m.call(name, ...) only, so the declarations leave it out.
HANDLE_NAMES = frozenset({"call", "callWith", "close", "constructor", "functions", "module", "peer", "then"})
# Names the declarations use themselves: a Python class by one of these names is renamed Name_.
TS_TAKEN = frozenset(
    {"Array", "AsyncIterable", "Float64Array", "Iterable", "Kwargs", "Module", "NDArray", "Promise"}
    | {"PythonModule", "Record", "Uint8Array"}
)
_JS_RESERVED = frozenset(
    "arguments await break case catch class const continue debugger default delete do else enum "
    "eval export extends false finally for function if implements import in instanceof interface "
    "let new null package private protected public return static super switch this throw true try "
    "typeof var void while with yield".split()
)
# Compared with typing.get_origin(hint), which gives these for typing's aliases too (List[int]).
_SEQUENCES = (list, Sequence, MutableSequence)
_MAPPINGS = (dict, Mapping, MutableMapping)
_ITERATORS = (Iterable, Iterator, Generator, AsyncIterable, AsyncIterator, AsyncGenerator)
_STRINGS = (datetime.datetime, datetime.date, datetime.time, uuid.UUID)  # sent as ISO text / hex


def _is_ndarray(hint: Any) -> bool:
    """numpy.ndarray, plain or parametrized (numpy.typing.NDArray[...]): not importing numpy."""
    hint = typing.get_origin(hint) or hint
    return getattr(hint, "__module__", "") == "numpy" and getattr(hint, "__name__", "") == "ndarray"


def _doc(text: str | None, notes: Sequence[str] = (), indent: str = "") -> list[str]:
    """A JSDoc comment of ``text`` (a docstring) and ``notes``, or nothing."""
    lines = inspect.cleandoc(text).splitlines() if text else []
    lines += ([""] if text and notes else []) + [*notes]
    if not lines:
        return []
    body = [f"{indent} *{' ' + line if line else ''}".replace("*/", "*\\/") for line in lines]
    return [f"{indent}/**", *body, f"{indent} */"]


class TypeScript:
    """Writes TypeScript types of Python annotations. ``classes`` names the module's served
    classes: an instance of one reaches JavaScript as a remote object of that interface."""

    def __init__(self, classes: Mapping[type, str] = {}) -> None:  # noqa: B006 - read only
        self.classes = dict(classes)
        self.imports: set[str] = set()  # what the types used: "NDArray", "Kwargs"

    def type_of(self, hint: Any, *, outward: bool = True) -> str:
        """The TypeScript type of the annotation ``hint``; ``outward``: the value travels from
        Python to JavaScript (a result, an attribute, a callback's argument), else the other way
        (a parameter, a callback's result)."""
        if hint is inspect.Parameter.empty or hint is Any or hint is object:
            return "unknown"
        if hint is None or hint is type(None):
            return "null"
        if isinstance(hint, str):  # an annotation that could not be evaluated
            return "unknown"
        if hint is bool:
            return "boolean"
        if hint in (int, float):
            return "number"
        if hint is str or hint in _STRINGS:
            return "string"
        if hint in (bytes, bytearray, memoryview):
            return "Uint8Array"
        if _is_ndarray(hint):
            self.imports.add("NDArray")
            return "Float64Array | NDArray"
        if isinstance(hint, type) and hint in self.classes:
            return self.classes[hint]
        if isinstance(hint, type) and issubclass(hint, enum.Enum):
            values = [member.value for member in hint]
            if values and all(isinstance(v, (str, int, float)) and not isinstance(v, bool) for v in values):
                return " | ".join(dict.fromkeys(json.dumps(v) for v in values))
            return "unknown"
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            return self._record(hint, outward)
        origin, args = typing.get_origin(hint), typing.get_args(hint)
        base = origin or hint
        if origin is typing.Union or origin is types.UnionType:
            return self._union([self.type_of(arg, outward=outward) for arg in args])
        if origin is typing.Literal:
            return self._union([json.dumps(a) if not isinstance(a, enum.Enum) else "unknown" for a in args])
        if base in _SEQUENCES or (hint is tuple and not args):
            return f"{self._element(args[0] if args else Any, outward)}[]"
        if origin is tuple:
            if len(args) == 2 and args[1] is Ellipsis:
                return f"{self._element(args[0], outward)}[]"
            return "[" + ", ".join(self.type_of(a, outward=outward) for a in args if a != ()) + "]"
        if base in _MAPPINGS:
            return f"Record<string, {self.type_of(args[1] if len(args) == 2 else Any, outward=outward)}>"
        if base in _ITERATORS:
            item = self.type_of(args[0] if args else Any, outward=outward)
            return f"AsyncIterable<{item}>" if outward else f"Iterable<{item}>"
        if base is Callable:
            return self._function(args, outward)
        return "unknown"

    def _element(self, hint: Any, outward: bool) -> str:
        text = self.type_of(hint, outward=outward)
        return f"({text})" if "|" in text or "=>" in text else text

    def _union(self, members: list[str]) -> str:
        unique = list(dict.fromkeys(f"({m})" if "=>" in m else m for m in members))
        return "unknown" if "unknown" in unique else " | ".join(unique)

    def _record(self, cls: type, outward: bool) -> str:
        """A dataclass crosses as a plain object of its fields (spec/PROTOCOL.md 3)."""
        hints = _hints(cls)
        fields = [
            f"{f.name}: {self.type_of(hints.get(f.name, Any), outward=outward)}"
            for f in dataclasses.fields(cls)
        ]
        return "{ " + "; ".join(fields) + " }" if fields else "Record<string, never>"

    def _function(self, args: tuple[Any, ...], outward: bool) -> str:
        """A Python function lent to JavaScript (outward) returns a promise; a JavaScript callback
        lent to Python (inward) gets Python's values and may answer with a value or a promise."""
        if len(args) == 2 and isinstance(args[0], list):
            params = ", ".join(
                f"arg{i}: {self.type_of(a, outward=not outward)}" for i, a in enumerate(args[0])
            )
        else:
            params = "...args: any[]"  # Callable[..., R] or a bare Callable
        result = self.type_of(args[-1] if args else Any, outward=outward)
        return (
            f"({params}) => Promise<{result}>" if outward else f"({params}) => {result} | Promise<{result}>"
        )


def _hints(thing: Any) -> dict[str, Any]:
    """The annotations of a function or class, evaluated where possible (else the raw ones: a
    string left is mapped to ``unknown``)."""
    try:
        return typing.get_type_hints(thing)
    except Exception:  # a forward reference that does not resolve, a bad annotation...
        try:
            return dict(inspect.get_annotations(thing, eval_str=False))
        except Exception:
            return {}


def _own_doc(cls: type) -> str | None:
    """The class's own docstring (not one it inherits: Enum's would describe Enum)."""
    doc = cls.__dict__.get("__doc__")
    return doc if isinstance(doc, str) else None


def _identifier(name: str) -> str:
    return f"{name}_" if name in _JS_RESERVED else name


def _signature(function: Any) -> inspect.Signature | None:
    try:
        return inspect.signature(function)
    except (TypeError, ValueError):  # a builtin without a text signature
        return None


class _Writer:
    def __init__(self, module: Any, functions: Mapping[str, Any]) -> None:
        self.module = module
        self.functions = functions
        self.classes = {
            f: (f"{name}_" if name in TS_TAKEN else name)
            for name, f in functions.items()
            if inspect.isclass(f) and not dataclasses.is_dataclass(f) and not issubclass(f, enum.Enum)
        }
        self.ts = TypeScript(self.classes)

    def parameters(self, function: Any, *, drop_first: bool = False) -> tuple[str, list[str]] | None:
        """``(a: number, b?: number)`` and notes on the keyword-only parameters; None when the
        signature cannot be read."""
        signature = _signature(function)
        if signature is None:
            return None
        hints = _hints(function.__init__) if inspect.isclass(function) else _hints(function)
        parts, keywords = [], []
        params = list(signature.parameters.values())[1 if drop_first else 0 :]
        for p in params:
            hint = hints.get(p.name, p.annotation)
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
                optional = "?" if p.default is not p.empty else ""
                parts.append(f"{_identifier(p.name)}{optional}: {self.ts.type_of(hint, outward=False)}")
            elif p.kind is p.VAR_POSITIONAL:
                parts.append(f"...{_identifier(p.name)}: {self.ts._element(hint, False)}[]")
            elif p.kind is p.KEYWORD_ONLY:
                optional = " (optional)" if p.default is not p.empty else ""
                keywords.append(f"`{p.name}`: {self.ts.type_of(hint, outward=False)}{optional}")
            else:
                keywords.append(f"any keyword (`**{p.name}`)")
        return "(" + ", ".join(parts) + ")", keywords

    def result(self, function: Any) -> str:
        hints = _hints(function)
        if "return" in hints:
            return self.ts.type_of(hints["return"])
        if inspect.isgeneratorfunction(function) or inspect.isasyncgenfunction(function):
            return "AsyncIterable<unknown>"
        return "unknown"

    def function(self, name: str, function: Any) -> list[str]:
        read = self.parameters(function)
        params, keywords = read if read is not None else ("(...args: unknown[])", [])
        notes = [f"Keyword arguments: {', '.join(keywords)}; pass them by name with "] if keywords else []
        if notes:
            notes[0] += f'`m.callWith("{name}", {{ ... }})` (all arguments then go by name).'
        return [
            *_doc(inspect.getdoc(function), notes, "  "),
            f"  {name}{params}: Promise<{self.result(function)}>;",
        ]

    def constructor(self, name: str, cls: type) -> list[str]:
        read = self.parameters(cls)
        if issubclass(cls, enum.Enum):  # Color("red") gives the member, which crosses as its value
            read = (f"(value: {self.ts.type_of(cls)})", [])
        params, keywords = read if read is not None else ("(...args: unknown[])", [])
        made = self.classes.get(cls) or self.ts.type_of(cls)
        notes = [f"`await new m.{name}(...)` (or `await m.{name}(...)`)."]
        if keywords:
            notes.append(f'Keyword arguments: {", ".join(keywords)}; `m.callWith("{name}", {{ ... }})`.')
        return [
            *_doc(_own_doc(cls), notes, "  "),
            f"  {name}: {{",
            f"    new {params}: Promise<{made}>;",
            f"    {params}: Promise<{made}>;",
            "  };",
        ]

    def remote_class(self, cls: type, interface: str) -> list[str]:
        """The interface of a remote object of ``cls``: its methods and attributes."""
        members: list[str] = []
        attributes = _attributes(cls)
        for name in sorted(n for n in dir(cls) if not n.startswith("_")):
            static = inspect.getattr_static(cls, name, None)
            if isinstance(static, property):
                hint = _hints(static.fget).get("return", Any) if static.fget else Any
                members += [
                    *_doc(inspect.getdoc(static), (), "  "),
                    f"  readonly {name}: Promise<{self.ts.type_of(hint)}>;",
                ]
                attributes.pop(name, None)
                continue
            member = getattr(cls, name, None)
            if not callable(member):
                continue
            attributes.pop(name, None)
            bound = isinstance(static, (staticmethod, classmethod)) or not inspect.isfunction(static)
            read = self.parameters(member, drop_first=not bound)
            params, keywords = read if read is not None else ("(...args: unknown[])", [])
            notes = []
            if keywords:
                notes.append(
                    f"Keyword arguments: {', '.join(keywords)}; pass them last: `kwargs({{ ... }})`."
                )
                self.ts.imports.add("Kwargs")
                params = _with_kwargs(params)
            members += [
                *_doc(inspect.getdoc(member), notes, "  "),
                f"  {name}{params}: Promise<{self.result(member)}>;",
            ]
        for name, hint in sorted(attributes.items()):
            members.append(f"  readonly {name}: Promise<{self.ts.type_of(hint)}>;")
        doc = _doc(_own_doc(cls), [f"A remote `{cls.__name__}`: an object kept in the Python child."])
        return [*doc, f"export interface {interface} {{", *members, "}"]

    def write(self, name: str) -> str:
        served = sorted((n, f) for n, f in self.functions.items() if n not in HANDLE_NAMES)
        skipped = sorted(n for n in self.functions if n in HANDLE_NAMES)
        blocks = [self.remote_class(cls, interface) for cls, interface in self.classes.items()]
        module = "Module_" if "Module" in self.classes.values() else "Module"
        body = []
        for n, f in served:
            body += self.constructor(n, f) if inspect.isclass(f) else self.function(n, f)
        head = [
            f"// What `python.import({json.dumps(name)})` gives (bothways/python): made by",
            f"// `bothways types python {name}` from the module's signatures, annotations and docstrings.",
            f"//   const m = (await python.import({json.dumps(name)})) as {module};",
        ]
        if skipped:
            head.append(
                f"// Called with m.call(name, ...) only (names of the handle's): {', '.join(skipped)}."
            )
        imports = sorted(self.ts.imports)
        if imports:
            head.append(f'import type {{ {", ".join(imports)} }} from "bothways/objects";')
        head.append('import type { PythonModule } from "bothways/python";')
        doc = _doc(inspect.getdoc(self.module), [f"The Python module `{name}`, served in a child process."])
        parts = ["\n".join(head), *("\n".join(b) for b in blocks)]
        parts.append("\n".join([*doc, f"export interface {module} extends PythonModule {{", *body, "}"]))
        return "\n\n".join(parts) + "\n"


def _with_kwargs(params: str) -> str:
    """``(a: number)`` -> ``(a: number, kw?: Kwargs)``: a trailing ``kwargs({...})`` argument."""
    inner = params[1:-1]
    if "..." in inner.split(", ")[-1][:3]:  # a rest parameter: its items may end with the kwargs
        head, _, rest = inner.rpartition("...")
        name, _, item = rest.partition(": ")
        return f"({head}...{name}: ({item.removesuffix('[]')} | Kwargs)[])"
    return f"({inner}{', ' if inner else ''}kw?: Kwargs)"


def _attributes(cls: type) -> dict[str, Any]:
    """The public attributes an instance of ``cls`` has, with their annotations: the class's
    annotated names, and in ``__init__`` ``self.x: T = ...`` or ``self.x = param`` (the
    parameter's annotation)."""
    found: dict[str, Any] = {n: h for n, h in _hints(cls).items() if not n.startswith("_")}
    init = cls.__dict__.get("__init__")
    if not inspect.isfunction(init):
        return found
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(init)))
    except (OSError, TypeError, SyntaxError):
        return found
    params = _hints(init)
    globalns = getattr(sys.modules.get(cls.__module__), "__dict__", {})
    for node in ast.walk(tree):
        target: ast.expr | None = None
        hint: Any = None
        if isinstance(node, ast.AnnAssign):
            target = node.target
            with contextlib.suppress(Exception):
                hint = eval(ast.unparse(node.annotation), dict(globalns))  # the module's own text
        elif isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
            if isinstance(node.value, ast.Name):
                hint = params.get(node.value.id)
        if (
            isinstance(target, ast.Attribute)
            and isinstance(target.value, ast.Name)
            and target.value.id == "self"
            and not target.attr.startswith("_")
        ):
            found.setdefault(target.attr, Any if hint is None else hint)
    return found


def python_declarations(name: str) -> str:
    """The TypeScript declarations of what ``python.import(name)`` gives, for the module ``name``
    importable here.

    Raises:
        ImportError: the module cannot be imported (and what its import raises).
    """
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # as the host does
    with contextlib.redirect_stdout(sys.stderr):  # the declarations are our stdout
        module = importlib.import_module(name)
    return _Writer(module, exported_functions(module)).write(name)


_HERE = Path(__file__).resolve().parent
STUBS = (
    _HERE / "js" / "bin" / "stub.mjs",  # the wheel's copy (setup.py puts the Node side there)
    _HERE.parents[1] / "js" / "bin" / "stub.mjs",  # a checkout (an editable install)
)


def stub_script() -> Path | None:
    """js/bin/stub.mjs: the wheel's copy, else the checkout's; None when there is none."""
    return next((stub for stub in STUBS if stub.is_file()), None)


def node_stub(path: str | os.PathLike[str], *, node: str | None = None) -> subprocess.CompletedProcess[str]:
    """Runs ``node js/bin/stub.mjs PATH``: its stdout is the ``.pyi`` stub of what
    ``node.require(path)`` gives, its stderr what went wrong.

    Raises:
        FileNotFoundError: no node, or no stub.mjs in this installation.
    """
    program = node or os.environ.get("BOTHWAYS_NODE") or shutil.which("node")
    if program is None:
        raise FileNotFoundError("node (Node.js >= 20) is not on PATH; set BOTHWAYS_NODE")
    script = stub_script()
    if script is None:
        looked = ", ".join(str(s) for s in STUBS)
        raise FileNotFoundError(f"js/bin/stub.mjs is missing (looked in: {looked}); reinstall bothways")
    return subprocess.run(
        [program, str(script), os.fspath(path)], capture_output=True, text=True, encoding="utf-8", check=False
    )


def run(language: str, target: str) -> int:
    """``bothways types python MODULE`` / ``bothways types node PATH``: prints the declarations
    (TypeScript) or the stub (``.pyi``); returns the exit code (1 when the module cannot be
    loaded, 2 when node or stub.mjs is missing), saying why on stderr."""
    if language == "python":
        try:
            text = python_declarations(target)
        except Exception as exc:  # the module's own import error, whatever it is
            print(f"bothways types: cannot import {target}: {type(exc).__name__}: {exc}", file=sys.stderr)
            return 1
        sys.stdout.write(text)
        return 0
    try:
        done = node_stub(target)
    except FileNotFoundError as exc:
        print(f"bothways types: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write(done.stdout)
    sys.stderr.write(done.stderr)
    return done.returncode
