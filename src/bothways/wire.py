"""The wire core: JSON values <-> NDJSON bytes. Sans-I/O; mirrored name for name in js/src/wire.js.

Strategy
--------
- ``encode(value)`` is one ``orjson.dumps`` call with the options that make the type mapping of
  spec/PROTOCOL.md hold (NaN -> null, 53-bit integers, numpy, dataclasses, datetimes). Only when
  it fails, or in strict mode, do we walk the value in Python, to name the offending path.
- ``Decoder.feed(chunk)`` keeps the unterminated tail, splits the rest on ``\\n`` and parses every
  line in one list comprehension. Messages come back as one ``Messages`` event per run of
  consecutive good lines (a batch, not an object per message: the hot path stays near bare
  ``orjson.loads``). Only when a line fails or is blank do we redo that chunk line by line.
- The decoder never raises on bad input: it returns ``Malformed`` / ``Truncated`` events holding
  the error, and the adapter chooses to raise or to log and go on.

Backends
--------
``BACKEND`` says which one was chosen, once, at import: ``"orjson"`` when it imports, else
``"json"``, the standard library's, for a plain ``python3`` with nothing installed. Both give the
same bytes for every value and the same values, verdicts and errors for every input;
only the speed differs. The stdlib backend keeps its hot path one C call as well:

- encode: ``json``'s C encoder, built once (compact, UTF-8, NaN refused), then a few substring
  tests on the output, each of which can only be set off by something orjson would write
  differently or refuse: a run of 16 digits after ``[ , :`` (an integer beyond 2**53), a key that
  ``json`` made from an int/float/bool/None, ``e-0`` (Python's ``1e-05``, orjson's ``0.00001``),
  a text long enough to nest 1,025 deep. Any hit, and any exception, takes the slow path shared
  with orjson (the Python walk that names the path), which settles it.
- decode: ``json``'s C scanner, again behind substring tests on the input (a number that could
  leave orjson's int/float range, a surrogate escape, a long text: a second look with orjson's
  number rules); whatever it rejects, and texts nested deeper than Python's recursion limit,
  go to ``_read_strict``: ``_scan`` settles the verdict, a loop over tokens reads the value.

Errors
------
Whichever parser rejected a text, the DecodeError's column and reason come from ``_scan``, a
scan of the text in document order mirrored word for word by js/src/wire.js: both backends and
both languages report the same problem at the same line and column with the same reason.

Tests run every case on both: tests/vectors.py loads a twin of this module with orjson hidden.

Rules
-----
This module does no I/O, reads no clock and imports nothing from the standard library that could
(tests/unit/test_purity.py checks the imports): datetime, UUID and Enum values are recognised by
their class names, not by importing datetime, uuid or enum.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields
from decimal import Decimal
from typing import Any, Union

from .errors import DecodeError, EncodeError, FrameTooLarge, TruncatedLine

try:
    import orjson

    BACKEND = "orjson"
except ImportError:  # a plain python3 (the tests load this in a twin module: tests/vectors.py)
    BACKEND = "json"

__all__ = [
    "BACKEND",
    "MAX_LINE",
    "MAX_SAFE_INTEGER",
    "Binary",
    "Decoder",
    "Event",
    "Malformed",
    "Messages",
    "Truncated",
    "decode",
    "encode",
    "encode_many",
]

MAX_LINE = 16 * 1024 * 1024
"""Default limit on one line, in bytes, not counting the newline."""

MAX_SAFE_INTEGER = 2**53 - 1
"""The largest integer a JavaScript number holds exactly. A larger one is sent only when it is
what JavaScript itself would write for that double (10**20: yes; 2**53 + 1: no, EncodeError)."""

MAX_DEPTH = 1024  # nested arrays/objects: orjson's decoding limit, and so both languages' limit
BOM = b"\xef\xbb\xbf"
EXCERPT = 40  # characters of context shown in an error

_IDENT = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]*\Z")
_SURROGATE = re.compile("[\ud800-\udfff]")

_ENCODE_DOC = """Encodes one message as one NDJSON line (UTF-8, no raw newline inside, ``\\n`` at the end).

    Args:
        value: dict (str keys), list, tuple, str, int, float, bool, None, datetime/date/time,
            dataclass, enum, UUID or numpy value.
        strict: raise on NaN and infinities instead of sending ``null`` (as ``JSON.stringify``).
        big_ints: send integers beyond ±(2**53-1) as they are (a JavaScript peer loses precision).

    Returns:
        The bytes to write. Strip the final ``\\n`` for message channels (WebSocket, MQTT, HTTP).

    Raises:
        EncodeError: the value cannot cross; its ``path`` names where, e.g. ``$.readings[3].t``.
    """


# --------------------------------------------------------------------------------------------
# Encoding: the hot path of each backend


if BACKEND == "orjson":
    # numpy goes through _default (tolist), not OPT_SERIALIZE_NUMPY: orjson's native numpy path
    # would send int64 values beyond 2**53 without the strict-integer check.
    _OPTIONS = orjson.OPT_APPEND_NEWLINE
    _SAFE_INT_OPTIONS = _OPTIONS | orjson.OPT_STRICT_INTEGER
    _dumps = orjson.dumps
    _JSONEncodeError = orjson.JSONEncodeError

    def encode(value: Any, *, strict: bool = False, big_ints: bool = False) -> bytes:
        if strict or big_ints:
            return _encode_with_options(value, strict, big_ints)
        try:
            return _dumps(value, _default, _SAFE_INT_OPTIONS)  # the hot path: one orjson call
        except _JSONEncodeError as exc:
            return _encode_failed(value, exc, strict=False, big_ints=False)

    def _encode_with_options(value: Any, strict: bool, big_ints: bool) -> bytes:
        if strict:
            _raise_problem(value, strict=True, big_ints=big_ints)
        try:
            return _dumps(value, _default, _OPTIONS if big_ints else _SAFE_INT_OPTIONS)
        except _JSONEncodeError as exc:
            return _encode_failed(value, exc, strict=strict, big_ints=big_ints)

    def _dumps_plain(value: Any) -> bytes:
        """One value as JSON, no newline, none of our checks (a scalar, in the slow paths)."""
        return _dumps(value, _default)

else:

    def encode(value: Any, *, strict: bool = False, big_ints: bool = False) -> bytes:
        if strict or big_ints:
            if strict:
                _raise_problem(value, strict=True, big_ints=big_ints)
            return _json_encode_slow(value, strict, big_ints)
        try:
            text = _join(_c_encode(value, 0))  # the hot path: one call of json's C encoder
            line = text.encode()  # (a lone surrogate fails here)
        except Exception:  # noqa: BLE001 - NaN, a cycle, an unknown type: the slow path judges
            _markers.clear()
            return _json_encode_slow(value, False, False)
        # (the tests run on str: `in` costs a quarter of what it costs on bytes)
        scan = line.translate(_ENCODED_SCAN).decode("latin-1")
        raw = line.decode("latin-1") if len(line) != len(text) else text  # one byte per character
        if (
            ",0000000000000000" in scan  # 16 digits after [ , or : : an integer beyond 2**53
            or ":0000000000000000" in scan
            or ',"0' in scan  # a key that json made from an int or a float
            or "e-0" in raw  # 1e-05: orjson writes 0.00001, 1e-6
            or '"true":' in raw  # a key that json made from True, False or None
            or '"false":' in raw
            or '"null":' in raw
            or scan.startswith("0000000000000000")
            or (len(text) > _MAY_NEST_TOO_DEEP and _too_deep(text))
        ):
            return _json_encode_slow(value, False, False)
        return line + b"\n"

    def _dumps_plain(value: Any) -> bytes:
        """One value as JSON, no newline, none of our checks (a scalar, in the slow paths)."""
        return _json_text(value).encode()


encode.__doc__ = _ENCODE_DOC


def encode_many(values: Iterable[Any], *, strict: bool = False, big_ints: bool = False) -> bytes:
    """Encodes several messages into one chunk of NDJSON lines, for one write.

    Faster than joining ``encode`` results: orjson's output buffers are large, so each line is
    copied into one growing buffer and freed at once instead of being kept until a join.
    """
    out = bytearray()
    if strict or big_ints:
        for value in values:
            out += encode(value, strict=strict, big_ints=big_ints)
    else:
        for value in values:
            out += encode(value)
    return bytes(out)


# --------------------------------------------------------------------------------------------
# Encoding: the slow path, shared by both backends


def _encode_failed(value: Any, exc: Exception, *, strict: bool, big_ints: bool) -> bytes:
    """The encoder refused ``value``: raise the precise EncodeError, or encode it the slow way.

    When our own rules find nothing wrong, the encoder refused only for its limits (orjson: 255
    levels of nesting, integers beyond 64 bits or a big integer that JavaScript reads back
    unchanged, a float or tuple subclass; json: NaN, Python's recursion limit). All are rare,
    so they take a slower path that still lets the encoder write every scalar.
    """
    _raise_problem(value, strict=strict, big_ints=big_ints)
    try:
        return _encode_iteratively(value) + b"\n"
    except (TypeError, ValueError) as inner:  # pragma: no cover - a type the encoder and our walk judge apart
        raise EncodeError(str(inner)) from exc


def _default(value: Any) -> Any:
    """The encoders' hook for types they do not know: numpy arrays and scalars become lists/numbers."""
    tolist = getattr(value, "tolist", None)
    if callable(tolist) and hasattr(value, "dtype"):
        return tolist()
    raise TypeError(f"Type is not JSON serializable: {type(value).__name__}")


# What orjson writes by itself, recognised by class (exact classes, as orjson does) and cached.
_OTHER, _DATETIME, _DATE, _TIME, _UUID, _ENUM, _DATACLASS = range(7)
_KINDS: dict[type, int] = {}
_NAMED_KINDS: dict[tuple[Any, Any], int] = {
    ("datetime", "datetime"): _DATETIME,
    ("datetime", "date"): _DATE,
    ("datetime", "time"): _TIME,
    ("uuid", "UUID"): _UUID,
}


def _kind(cls: type) -> int:
    kind = _KINDS.get(cls)
    if kind is None:
        kind = _KINDS[cls] = _classify(cls)
    return kind


def _classify(cls: type) -> int:
    """Which of orjson's own types ``cls`` is: by name (see Rules above), exact classes only,
    except Enum (any subclass) and dataclasses (``__dataclass_fields__`` in the class itself)."""
    kind = _NAMED_KINDS.get((getattr(cls, "__module__", None), getattr(cls, "__qualname__", None)))
    if kind is not None:
        return kind
    if any(getattr(c, "__module__", None) == "enum" and c.__qualname__ == "Enum" for c in cls.__mro__):
        return _ENUM
    if "__dataclass_fields__" in vars(cls):
        return _DATACLASS
    return _OTHER


def _dataclass_items(value: Any) -> list[tuple[str, Any]]:
    """The members orjson writes for a dataclass: its ``__dict__`` (or, for a slots class, its
    fields), without the names that start with ``_``."""
    attrs = getattr(value, "__dict__", None)
    if attrs is None or "__slots__" in vars(type(value)):
        return [(f.name, getattr(value, f.name)) for f in fields(value) if not f.name.startswith("_")]
    return [(key, item) for key, item in attrs.items() if not key.startswith("_")]


def _unwrap(value: Any) -> Any:
    """What an Enum, a dataclass or a numpy value is written as; ``_END`` for anything else."""
    kind = _kind(type(value))
    if kind == _ENUM and not isinstance(value, (str, int)):  # str and int enums are str and int
        return value.value
    if kind == _DATACLASS:
        return dict(_dataclass_items(value))
    tolist = getattr(value, "tolist", None)
    if callable(tolist) and hasattr(value, "dtype"):
        return tolist()
    return _END


_END = object()


def _encode_iteratively(value: Any) -> bytes:
    """Writes containers and integers ourselves, without recursion; every other value with the backend."""
    parts: list[bytes] = []
    stack: list[list[Any]] = []  # [iterator over items, closing bracket, is_dict, first item]
    pending: Any = value
    while True:
        if pending is not _END:
            if isinstance(pending, dict):
                parts.append(b"{")
                stack.append([iter(pending.items()), b"}", True, True])
            elif isinstance(pending, (list, tuple)):
                parts.append(b"[")
                stack.append([iter(pending), b"]", False, True])
            elif isinstance(pending, int) and not isinstance(pending, bool):  # IntEnum too
                parts.append(int.__repr__(pending).encode())
            elif isinstance(pending, float):  # float subclasses too (numpy.float64 is one)
                parts.append(_dumps_plain(float(pending)))
            else:
                inner = _unwrap(pending)
                if inner is not _END:
                    pending = inner
                    continue
                parts.append(_dumps_plain(pending))
        if not stack:
            return b"".join(parts)
        frame = stack[-1]
        item: Any = next(frame[0], _END)
        if item is _END:
            parts.append(frame[1])
            stack.pop()
            pending = _END
            continue
        if not frame[3]:
            parts.append(b",")
        frame[3] = False
        if frame[2]:
            key, pending = item
            if not isinstance(key, str):
                raise TypeError("Dict key must be str")
            parts.append(_dumps_plain(key) + b":")
        else:
            pending = item


_LEAVE = object()  # marks, on the walk's stack, the end of a container's children


def _raise_problem(value: Any, *, strict: bool, big_ints: bool) -> None:
    """Raises EncodeError for the first thing in ``value`` (document order) that cannot be sent.

    An iterative depth-first walk (no recursion limit to hit): each stack entry is a container's
    member (parent path, key, child, depth, whether the key is an object key to check), and
    ``_LEAVE`` entries close a container, so ``open_ids`` holds exactly the current ancestors.
    An Enum or a numpy scalar is a wrapper: its one child (key ``None``) keeps its path and depth.
    """
    stack: list[tuple[str, object, Any, int, bool]] = [("$", None, value, 0, False)]
    open_ids: set[int] = set()
    while stack:
        parent, key, item, depth, is_member = stack.pop()
        if key is _LEAVE:
            open_ids.discard(id(item))
            continue
        if is_member:  # an object member: its key first, then its value
            if not isinstance(key, str):
                raise EncodeError(f"object key {key!r} is a {type(key).__name__}, not a str", path=parent)
            if _has_surrogate(key):
                raise EncodeError("object key contains a lone surrogate", path=_child_path(parent, key))
        path = parent if key is None else _child_path(parent, key)
        reason = _leaf_problem(item, strict=strict, big_ints=big_ints)
        if reason:
            raise EncodeError(reason, path=path)
        children = _children(item)
        if children is None:
            continue
        if id(item) in open_ids:
            raise EncodeError("circular reference", path=path)
        wrapper = len(children) == 1 and children[0][0] is None
        if depth >= MAX_DEPTH and not wrapper:
            raise EncodeError(
                f"nesting deeper than {MAX_DEPTH} arrays/objects (the decoders' limit)", path=path
            )
        open_ids.add(id(item))
        stack.append((path, _LEAVE, item, depth, False))
        is_dict = isinstance(item, dict)
        child_depth = depth if wrapper else depth + 1
        for child_key, child in reversed(children):
            stack.append((path, child_key, child, child_depth, is_dict))


def _leaf_problem(value: Any, *, strict: bool, big_ints: bool) -> str | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        if not big_ints and abs(value) > MAX_SAFE_INTEGER and not _reads_back(value):
            return (
                f"integer {value} is beyond ±(2**53-1) and would change in JavaScript "
                "(send it as a string, or pass big_ints=True)"
            )
        return None
    if isinstance(value, float):
        if strict and not math.isfinite(value):
            return f"{value} is not a JSON number (strict mode; the default sends null)"
        return None
    if isinstance(value, str):
        return "string contains a lone surrogate" if _has_surrogate(value) else None
    if _children(value) is None:
        try:
            _dumps_plain(value)
        except (TypeError, ValueError):
            return f"{type(value).__name__} is not JSON serializable"
    return None


def _reads_back(n: int) -> bool:
    """Whether JavaScript reads ``n`` as a double and writes the same digits back.

    True for 10**20 or 32533379248343410 (the shortest form of a double: what JavaScript itself
    sends for such a number), False for 2**53 + 1 (it would arrive as 9007199254740992).
    """
    try:
        shortest = repr(float(n))
    except OverflowError:
        return False
    return int(Decimal(shortest)) == n


def _child_path(path: str, key: object) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    if isinstance(key, str) and _IDENT.match(key):
        return f"{path}.{key}"
    # JSON-quoted as JSON.stringify does it, lone surrogates as \\uXXXX
    quoted = _SURROGATE.sub(_escape_char, json.dumps(str(key), ensure_ascii=False))
    return f"{path}[{quoted}]"


def _escape_char(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


def _has_surrogate(text: str) -> bool:
    return _SURROGATE.search(text) is not None


def _children(value: Any) -> list[tuple[object, Any]] | None:
    """The (key, child) pairs of a container we know how to walk, else None.

    Dataclasses give the members orjson writes; an Enum and a numpy scalar give one pair
    ``(None, what it is written as)``."""
    if isinstance(value, dict):
        return list(value.items())
    if isinstance(value, (list, tuple)):
        return list(enumerate(value))
    if isinstance(value, (str, int, float)):
        return None
    kind = _kind(type(value))
    if kind == _ENUM:
        return [(None, value.value)]
    if kind == _DATACLASS:
        return list(_dataclass_items(value))
    tolist = getattr(value, "tolist", None)  # numpy arrays and scalars, without importing numpy
    if callable(tolist) and hasattr(value, "dtype"):
        items = tolist()
        return list(enumerate(items)) if isinstance(items, list) else [(None, items)]
    return None


# --------------------------------------------------------------------------------------------
# Decoding one text


def decode(data: bytes | bytearray | memoryview | str) -> Any:
    """Decodes one complete JSON text (RFC 8259, strict; a leading UTF-8 BOM is skipped).

    Raises:
        DecodeError: with the line, column and an excerpt of where the text goes wrong.
    """
    if isinstance(data, str):
        if data.startswith("\ufeff"):
            data = data[1:]
    elif data[:3] == BOM:
        data = data[3:]
    try:
        return _loads(data)
    except _JSONDecodeError as exc:
        raise _decode_error(data, exc) from None


def _decode_error(raw: Any, exc: ValueError, first_line: int = 1) -> DecodeError:
    """A DecodeError for ``raw`` (bytes or str) that the parser rejected with ``exc``.

    Where and why come from ``_scan`` (the parser's own message is not used), so that both
    backends and the JavaScript decoder give the same line, column and reason."""
    if isinstance(raw, str):
        text = raw
    else:
        raw = bytes(raw)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as bad:
            before = raw[: bad.start].decode("utf-8")
            lineno = before.count("\n") + 1
            col = len(before) - (before.rfind("\n") + 1) + 1
            line_text = raw.decode("utf-8", "replace").split("\n")[lineno - 1]
            reason = f"invalid UTF-8 (byte 0x{raw[bad.start]:02x})"
            return DecodeError(
                reason, line=first_line + lineno - 1, column=col, excerpt=_excerpt(line_text, col - 1)
            )
    found = _scan(text)
    if found is None:  # (never seen: the parser and the scan disagree)
        return _error_at(text, -1, getattr(exc, "msg", None) or str(exc), first_line)
    return _error_at(text, found.at, found.reason, first_line)


def _error_at(text: str, at: int, reason: str, first_line: int) -> DecodeError:
    """A DecodeError at index ``at`` of ``text`` (-1: unknown): 1-based line and column (in
    characters), and an excerpt of that line."""
    line_start = line_index = column = 0
    if at >= 0:
        at = min(at, len(text))
        line_index = text.count("\n", 0, at)
        line_start = text.rfind("\n", 0, at) + 1
        column = at - line_start + 1
    line_end = text.find("\n", line_start)
    line_text = text[line_start : len(text) if line_end < 0 else line_end].rstrip("\r")
    return DecodeError(
        reason, line=first_line + line_index, column=column, excerpt=_excerpt(line_text, column - 1)
    )


def _excerpt(text: str, at: int) -> str:
    """At most EXCERPT characters of ``text`` around index ``at``, with ``…`` where cut."""
    start = max(0, min(at - EXCERPT // 2, len(text) - EXCERPT))
    piece = text[start : start + EXCERPT]
    return ("…" if start > 0 else "") + piece + ("…" if start + EXCERPT < len(text) else "")


_HEAD = EXCERPT * 4  # the first bytes of a line, enough for EXCERPT characters of UTF-8


def _head_excerpt(head: bytes, more: bool = False) -> str:
    """The excerpt of an over-long line, from its first bytes: at most EXCERPT characters, with
    ``…`` when the line goes on (beyond ``head`` when ``more``)."""
    text = head[:_HEAD].decode("utf-8", "replace")
    return text[:EXCERPT] + ("…" if more or len(head) > _HEAD or len(text) > EXCERPT else "")


# --------------------------------------------------------------------------------------------
# The scan: where a text goes wrong, in document order, by orjson's rules. Error path only.
# (Mirrors scan() in js/src/wire.js name for name and word for word: the two languages report
# the same problem at the same line and column with the same reason.)


class _ScanFailure(Exception):
    def __init__(self, at: int, reason: str) -> None:
        super().__init__(reason)
        self.at = at
        self.reason = reason


def _scan(text: str) -> _ScanFailure | None:
    """The first problem of ``text`` as one JSON text (a grammar error, a lone surrogate, a
    number that overflows, nesting deeper than MAX_DEPTH), or None."""
    try:
        _scan_text(text)
    except _ScanFailure as failure:
        return failure
    return None


def _scan_text(text: str) -> None:
    n = len(text)
    stack: list[str] = []  # the closing character each open container waits for
    i = _skip_space(text, 0)
    while True:  # one value
        if i >= n:
            raise _ScanFailure(i, "unexpected end of data")
        c = text[i]
        if c in "[{":
            if len(stack) >= MAX_DEPTH:
                raise _ScanFailure(i, f"nesting deeper than {MAX_DEPTH} arrays/objects")
            close = "]" if c == "[" else "}"
            i = _skip_space(text, i + 1)
            if i < n and text[i] == close:
                i += 1
            else:
                stack.append(close)
                if close == "}":
                    i = _scan_key(text, i)
                continue
        elif c == '"':
            i = _scan_string(text, i)
        elif c == "-" or "0" <= c <= "9":
            i = _scan_number(text, i)
        else:
            i = _scan_literal(text, i)
        # After a value: close containers, or find the comma before the next value.
        while True:
            i = _skip_space(text, i)
            if not stack:
                if i < n:
                    raise _ScanFailure(i, "unexpected content after the value")
                return
            close = stack[-1]
            d = text[i] if i < n else ""
            if d == ",":
                comma = i
                i = _skip_space(text, i + 1)
                if i < n and text[i] == close:
                    raise _ScanFailure(comma, f"trailing comma before '{close}'")
                if close == "}":
                    i = _scan_key(text, i)
                break
            if d == close:
                stack.pop()
                i += 1
                continue
            raise _ScanFailure(i, "unexpected end of data" if i >= n else f"expected ',' or '{close}'")


def _skip_space(text: str, i: int) -> int:
    return _end_of(_WHITESPACE_RUN, text, i)


def _end_of(pattern: re.Pattern[str], text: str, i: int) -> int:
    """Where a run of ``pattern`` (which matches the empty string too) starting at ``i`` ends."""
    match = pattern.match(text, i)
    return match.end() if match else i


def _scan_key(text: str, i: int) -> int:
    """A member's key, colon and the space after: returns where its value starts."""
    n = len(text)
    if i >= n or text[i] != '"':
        raise _ScanFailure(i, "unexpected end of data" if i >= n else "expected a string key")
    i = _skip_space(text, _scan_string(text, i))
    if i >= n or text[i] != ":":
        raise _ScanFailure(i, "unexpected end of data" if i >= n else "expected ':' after the key")
    return _skip_space(text, i + 1)


_RUN_OF_DIGITS = re.compile(r"[0-9]*")
_SCAN_PLAIN = re.compile('[^"\\\\\x00-\x1f\ud800-\udfff]*')
_SCAN_HEX4 = re.compile("[0-9A-Fa-f]{4}")


def _scan_string(text: str, i: int) -> int:
    """From the opening quote at ``i`` to the index after the closing one."""
    n = len(text)
    j = i + 1
    while True:
        j = _end_of(_SCAN_PLAIN, text, j)
        if j >= n:
            raise _ScanFailure(j, "unterminated string")
        c = text[j]
        if c == '"':
            return j + 1
        if c == "\\":
            e = text[j + 1 : j + 2]
            if e and e in '"\\/bfnrt':
                j += 2
                continue
            if e != "u" or not _SCAN_HEX4.fullmatch(text, j + 2, j + 6):
                raise _ScanFailure(j, "invalid escape in string")
            unit = int(text[j + 2 : j + 6], 16)
            if 0xD800 <= unit <= 0xDBFF:
                pair = (
                    int(text[j + 8 : j + 12], 16)
                    if (text.startswith("\\u", j + 6) and _SCAN_HEX4.fullmatch(text, j + 8, j + 12))
                    else 0
                )
                if not 0xDC00 <= pair <= 0xDFFF:
                    raise _ScanFailure(j, f"lone surrogate {text[j : j + 6]} in string")
                j += 12
            elif 0xDC00 <= unit <= 0xDFFF:
                raise _ScanFailure(j, f"lone surrogate {text[j : j + 6]} in string")
            else:
                j += 6
            continue
        if c < " ":
            raise _ScanFailure(j, f"unescaped control character U+{ord(c):04X} in string")
        raise _ScanFailure(j, "lone surrogate in string")  # (only in a str given to decode())


def _scan_number(text: str, i: int) -> int:
    """From the first character ("-" or a digit) to the index after the number."""
    n = len(text)
    start = i

    def digits(i: int) -> int:
        end = _end_of(_RUN_OF_DIGITS, text, i)
        if end == i:
            raise _ScanFailure(i, "unexpected end of data" if i >= n else "invalid number")
        return end

    if text.startswith("-", i):
        i += 1
    i = i + 1 if text.startswith("0", i) else digits(i)
    if text.startswith(".", i):
        i = digits(i + 1)
    if text[i : i + 1] in ("e", "E"):
        i += 1
        if text[i : i + 1] in ("+", "-"):
            i += 1
        i = digits(i)
    if math.isinf(float(text[start:i])):
        raise _ScanFailure(start, "number too large (it overflows to infinity)")
    return i


_SCAN_WORDS = ("true", "false", "null")


def _scan_literal(text: str, i: int) -> int:
    """The index after ``true``, ``false`` or ``null`` at ``i``."""
    for word in _SCAN_WORDS:
        if text.startswith(word, i):
            return i + len(word)
    rest = text[i : i + 5]
    if len(rest) < 5 and any(word.startswith(rest) for word in _SCAN_WORDS):
        raise _ScanFailure(len(text), "unexpected end of data")
    code = ord(text[i])
    shown = f"'{text[i]}'" if 0x20 < code < 0x7F else f"U+{code:04X}"
    raise _ScanFailure(i, f"unexpected character {shown}")


# --------------------------------------------------------------------------------------------
# Decoding a stream


@dataclass(slots=True)
class Messages:
    """Values decoded from consecutive lines: ``values[i]`` came from line ``line + i``."""

    values: list[Any]
    line: int


@dataclass(slots=True)
class Malformed:
    """A line that is not a message (``DecodeError``) or is too long (``FrameTooLarge``).

    The stream goes on with the next line; ``error.line`` says which line this was.
    """

    error: DecodeError


@dataclass(slots=True)
class Truncated:
    """The stream ended in the middle of a line (``error.delivered``: it still parsed)."""

    error: TruncatedLine


@dataclass(slots=True)
class Binary:
    """A binary frame (spec/PROTOCOL.md 2): its bytes, and the line number of its header."""

    data: bytes
    line: int


# (The event classes are plain slotted records, not frozen: a frozen dataclass costs three
# times as much to make, and one is made per message on the hot path.)
Event = Union[Messages, Malformed, Truncated, Binary]  # noqa: UP007 - a runtime alias, Python 3.10 too

FRAME_HEADER = b"#blob "  # a line starting so is a binary frame's header
_FRAME_COUNT = re.compile(rb"#blob (0|[1-9][0-9]{0,18})\r?\Z")


def frame_header(size: int) -> bytes:
    """The header line of a binary frame of ``size`` bytes (the bytes follow it)."""
    return b"#blob %d\n" % size


class Decoder:
    """Incremental NDJSON decoder: bytes in, events out. Never raises on bad input.

    Feed it chunks as they arrive, in any sizes, then call ``feed_eof()`` once at the end::

        decoder = Decoder()
        for chunk in chunks:
            for event in decoder.feed(chunk):
                ...
        events = decoder.feed_eof()

    Args:
        max_line: the longest line accepted, in bytes before the newline (default 16 MiB).
            A longer line gives a ``Malformed(FrameTooLarge)`` as soon as it passes the limit;
            its bytes are dropped, not buffered, up to the next newline.
        binary: take binary frames (``#blob N`` and N raw bytes: spec/PROTOCOL.md 2) as
            ``Binary`` events; without it such a line is an ordinary malformed line. The calls
            between a parent and the module it spawned use them.
    """

    __slots__ = (
        *("_buf", "_line", "_max_line", "_skipping", "_started", "_ended"),
        *("_binary", "_frame", "_frame_left", "_frame_size", "_frame_line", "_frame_skip"),
    )

    def __init__(self, *, max_line: int = MAX_LINE, binary: bool = False) -> None:
        if max_line < 1:
            raise ValueError("max_line must be at least 1")
        self._max_line = max_line
        self._binary = binary
        self._buf = bytearray()  # the unfinished line; grows in place, never re-copied whole
        self._line = 0  # lines completed so far
        self._skipping = False  # inside a too-long line, dropping bytes up to the next newline
        self._started = False  # past the place where a BOM may stand
        self._ended = False
        self._frame: bytearray | None = None  # inside a binary frame: its bytes so far
        self._frame_left = 0  # ...and how many are still to come
        self._frame_size = 0
        self._frame_line = 0
        self._frame_skip = False  # a frame over the limit: its bytes are dropped

    @property
    def line(self) -> int:
        """How many lines have been completed (the next line's number is ``line + 1``)."""
        return self._line

    @property
    def buffered(self) -> int:
        """Bytes of an unfinished line held for the next ``feed``."""
        return len(self._buf)

    def feed(self, data: bytes | bytearray | memoryview) -> list[Event]:
        """Takes the next chunk of the stream; returns the events it completes (often [])."""
        if self._ended:
            raise RuntimeError("feed() after feed_eof()")
        buf = data if type(data) is bytes else bytes(data)
        events: list[Event] = []
        if self._frame is not None:  # inside a binary frame: its bytes first
            buf = self._frame_bytes(buf, events)
            if not buf:
                return events
        elif not self._buf and self._started and not self._skipping:
            # The common case, one whole line: parsed here without splitting. Anything else
            # (and a line that does not parse) takes the general path below.
            nl = buf.find(b"\n")
            if nl == len(buf) - 1 and 0 < nl <= self._max_line:
                try:
                    value = _loads(buf)
                except _JSONDecodeError:
                    pass
                else:
                    self._line += 1
                    return [Messages([value], self._line)]
        if self._skipping:
            nl = buf.find(b"\n")
            if nl < 0:
                return events
            self._skipping = False
            self._line += 1
            buf = buf[nl + 1 :]
        if self._buf:
            self._buf += buf
            if b"\n" not in buf and self._started:  # a long line still coming: no copy
                if len(self._buf) > self._max_line:
                    self._hold(bytes(self._buf[:_HEAD]), events, too_long=True)
                return events
            buf = bytes(self._buf)
            self._buf.clear()
        if not self._started:
            if len(buf) < 3 and BOM.startswith(buf):
                self._buf[:] = buf
                return events
            self._started = True
            if buf[:3] == BOM:
                buf = buf[3:]
        if self._binary and FRAME_HEADER in buf:  # (at a line's start, or inside a string)
            self._with_frames(buf, events)
            return events
        nl = buf.rfind(b"\n")
        if nl < 0:
            self._hold(buf, events)
            return events
        tail = buf[nl + 1 :]
        lines = buf[:nl].split(b"\n")
        first = self._line + 1
        self._line += len(lines)
        if nl <= self._max_line:  # no line can be over the limit
            try:
                events.append(Messages([_loads(line) for line in lines], first))
            except _JSONDecodeError:
                self._slow(lines, first, events)
        else:
            self._slow(lines, first, events)
        if tail:
            self._hold(tail, events)
        return events

    def feed_eof(self) -> list[Event]:
        """Ends the stream; reports an unterminated final line (delivering it if it parses)."""
        if self._ended:
            return []
        self._ended = True
        if self._frame is not None:
            got = self._frame_size - self._frame_left
            reason = f"stream ended inside a binary frame ({got} of {self._frame_size} bytes)"
            line = self._frame_line
            return [Truncated(TruncatedLine(reason, line=line, excerpt="", delivered=False))]
        buf = bytes(self._buf)
        self._buf.clear()
        if self._skipping or not buf.strip(b" \t\r"):
            return []
        line = self._line + 1
        excerpt = _excerpt(buf.decode("utf-8", "replace"), len(buf))
        try:
            value = _loads(buf)
        except _JSONDecodeError as exc:
            reason = f"stream ended in the middle of a line ({_decode_error(buf, exc).reason})"
            return [Truncated(TruncatedLine(reason, line=line, excerpt=excerpt, delivered=False))]
        reason = "stream ended without a final newline (the line parsed and was delivered)"
        return [
            Messages([value], line),
            Truncated(TruncatedLine(reason, line=line, excerpt=excerpt, delivered=True)),
        ]

    def _with_frames(self, buf: bytes, events: list[Event]) -> None:
        """A chunk (the held bytes first) that may hold binary frames: line by line."""
        pos, end = 0, len(buf)
        lines: list[bytes] = []
        while pos < end:
            nl = buf.find(b"\n", pos)
            if nl < 0:
                break
            if not buf.startswith(FRAME_HEADER, pos):
                lines.append(buf[pos:nl])
                pos = nl + 1
                continue
            if lines:
                first = self._line + 1
                self._line += len(lines)
                self._slow(lines, first, events)
                lines = []
            self._line += 1
            pos = self._frame_start(buf[pos:nl], buf, nl + 1, events)
        if lines:
            first = self._line + 1
            self._line += len(lines)
            self._slow(lines, first, events)
        if pos < end and self._frame is None:
            self._hold(buf[pos:], events)

    def _frame_start(self, header: bytes, buf: bytes, start: int, events: list[Event]) -> int:
        """A header line (``self._line``), the frame's bytes from ``buf[start:]``; returns where
        the stream goes on in ``buf`` (its end when the frame goes on in the next chunks)."""
        if len(header) > self._max_line:
            # An over-long line is that, header or not, as it is when held across chunks
            # (``_hold``): the verdict must not depend on where the chunks end.
            excerpt = _head_excerpt(header)
            events.append(Malformed(FrameTooLarge(line=self._line, limit=self._max_line, excerpt=excerpt)))
            return start
        match = _FRAME_COUNT.match(header)
        if match is None:
            excerpt = _head_excerpt(header)
            error = DecodeError("invalid binary frame header", line=self._line, column=1, excerpt=excerpt)
            events.append(Malformed(error))
            return start
        size = int(match.group(1))
        self._frame_skip = size > self._max_line
        if self._frame_skip:
            reason = f"binary frame of {size} bytes is over the limit of {self._max_line} bytes (skipped)"
            events.append(Malformed(FrameTooLarge(line=self._line, limit=self._max_line, reason=reason)))
        self._frame, self._frame_left, self._frame_size = bytearray(), size, size
        self._frame_line = self._line
        self._frame_bytes(buf[start : start + size], events)
        return start + size if self._frame is None else len(buf)

    def _frame_bytes(self, buf: bytes, events: list[Event]) -> bytes:
        """Takes the bytes of the frame under way from ``buf``; returns what follows it."""
        frame = self._frame
        assert frame is not None
        left = self._frame_left
        if not self._frame_skip:
            frame += buf[:left]
        taken = min(left, len(buf))
        self._frame_left = left - taken
        if self._frame_left == 0:
            if not self._frame_skip:
                events.append(Binary(bytes(frame), self._frame_line))
            self._frame = None
        return buf[taken:]

    def _hold(self, buf: bytes, events: list[Event], too_long: bool = False) -> None:
        """Keeps an unfinished line, unless it is already over the limit (then drops it)."""
        if too_long or len(buf) > self._max_line:
            excerpt = _head_excerpt(buf, more=True)  # (the line is not over: no newline yet)
            events.append(
                Malformed(FrameTooLarge(line=self._line + 1, limit=self._max_line, excerpt=excerpt))
            )
            self._skipping = True
            self._buf.clear()
        else:
            self._buf[:] = buf

    def _slow(self, lines: list[bytes], first: int, events: list[Event]) -> None:
        """Line by line: blank lines skipped, bad and over-long lines reported, runs batched."""
        run: list[Any] = []
        run_start = first
        for index, raw in enumerate(lines):
            lineno = first + index
            error: DecodeError | None = None
            if len(raw) > self._max_line:
                excerpt = _head_excerpt(raw)
                error = FrameTooLarge(line=lineno, limit=self._max_line, excerpt=excerpt)
            elif not raw.strip(b" \t\r"):
                pass  # blank line: ends the run, yields nothing
            else:
                try:
                    if not run:
                        run_start = lineno
                    run.append(_loads(raw))
                    continue
                except _JSONDecodeError as exc:
                    error = _decode_error(raw, exc, lineno)
            if run:
                events.append(Messages(run, run_start))
                run = []
            if error is not None:
                events.append(Malformed(error))
        if run:
            events.append(Messages(run, run_start))


# --------------------------------------------------------------------------------------------
# The standard library backend: json's C encoder and scanner, made to agree with orjson.
# (Defined with either backend, so that mypy and the twin-module tests see one text.)

_MAY_NEST_TOO_DEEP = 2 * MAX_DEPTH  # a text nesting 1,025 deep is at least 2,050 characters
_make_c_encoder: Any = getattr(json.encoder, "c_make_encoder", None)  # (not in typeshed)
_markers: dict[int, Any] = {}  # json's record of the containers being written (cycle check)
_nan_markers: dict[int, Any] = {}
_join = "".join


def _json_default(value: Any) -> Any:
    """json's hook for the types it does not know: what orjson writes for them, in orjson's order."""
    kind = _kind(type(value))
    if kind == _DATETIME:
        return _iso_datetime(value)
    if kind == _DATE:
        return f"{value.year:04d}-{value.month:02d}-{value.day:02d}"
    if kind == _TIME:
        if value.tzinfo is not None:
            raise TypeError("datetime.time must not have tzinfo set")
        return f"{value.hour:02d}:{value.minute:02d}:{value.second:02d}" + _fraction(value.microsecond)
    if kind == _UUID:
        return str(value)
    if kind == _ENUM:
        return value.value
    if kind == _DATACLASS:
        return dict(_dataclass_items(value))
    return _default(value)


def _iso_datetime(value: Any) -> str:
    """RFC 3339 as orjson writes it: microseconds only when set, the offset in whole minutes
    (seconds rounded, as orjson rounds them: +05:30:45 -> +05:31, +05:59:30 -> +05:60)."""
    text = (
        f"{value.year:04d}-{value.month:02d}-{value.day:02d}T"
        f"{value.hour:02d}:{value.minute:02d}:{value.second:02d}{_fraction(value.microsecond)}"
    )
    tzinfo = value.tzinfo
    if tzinfo is None:
        return text
    if (
        type(tzinfo).__name__ != "ZoneInfo"
        and not hasattr(tzinfo, "convert")
        and hasattr(tzinfo, "normalize")
    ):
        value = tzinfo.normalize(value)  # pytz, as orjson asks it
    offset = value.utcoffset()
    seconds = offset.seconds if offset is not None else 0
    if seconds == 0:
        return text + "+00:00"
    sign = "+"
    if offset.days == -1:
        sign, seconds = "-", 86400 - seconds
    minutes = seconds // 60
    return f"{text}{sign}{minutes // 60:02d}:{minutes % 60 + (seconds % 60 >= 30):02d}"


def _fraction(microsecond: int) -> str:
    return f".{microsecond:06d}" if microsecond else ""


def _new_c_encoder(markers: dict[int, Any], allow_nan: bool) -> Callable[[Any, int], Any]:
    """json's C encoder, compact and UTF-8, built once (json.dumps builds one per call)."""
    if _make_c_encoder is not None:
        try:
            encoder: Callable[[Any, int], Any] = _make_c_encoder(
                markers,
                _json_default,
                json.encoder.encode_basestring,
                None,
                ":",
                ",",
                False,
                False,
                allow_nan,
            )
            return encoder
        except TypeError:  # pragma: no cover - its signature changed: json's own way, below
            pass
    python_encoder = json.JSONEncoder(  # pragma: no cover - an interpreter without _json
        ensure_ascii=False, allow_nan=allow_nan, separators=(",", ":"), default=_json_default
    )
    return lambda value, _indent: python_encoder.iterencode(value, True)  # pragma: no cover


_c_encode = _new_c_encoder(_markers, False)
_c_encode_nan = _new_c_encoder(_nan_markers, True)

# For the substring tests on encoded output: digits and '-' -> '0', '[' -> ':', '{' -> ','.
_ENCODED_SCAN = bytes.maketrans(b"0123456789-[{", b"00000000000:,")
# Where Python's text differs from orjson's, outside strings: NaN/Infinity (orjson: null) and
# exponents -5 to -9 (1e-05 -> 0.00001, 1.5e-07 -> 1.5e-7).
_DIFFERENT = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|(-?)(\d)(?:\.(\d+))?e-0(\d)|NaN|-?Infinity', re.S)


def _orjson_token(match: re.Match[str]) -> str:
    token = match.group()
    if token[0] == '"':
        return token
    if match.group(2) is None:
        return "null"
    sign, lead, fraction, exponent = match.group(1, 2, 3, 4)
    if exponent == "5":
        return f"{sign}0.0000{lead}{fraction or ''}"
    return f"{sign}{lead}{'.' + fraction if fraction else ''}e-{exponent}"


def _json_text(value: Any) -> str:
    """``value`` as orjson writes it (no newline), none of our checks; raises as json does."""
    try:
        text = _join(_c_encode(value, 0))
    except ValueError:  # NaN or an infinity (orjson writes null), or a cycle
        _markers.clear()
        try:
            text = _join(_c_encode_nan(value, 0))
        finally:
            _nan_markers.clear()
        return _DIFFERENT.sub(_orjson_token, text)
    except BaseException:
        _markers.clear()
        raise
    return _DIFFERENT.sub(_orjson_token, text) if "e-0" in text else text


def _json_encode_slow(value: Any, strict: bool, big_ints: bool) -> bytes:
    """What the stdlib hot path does not vouch for: encoded again, and walked when in doubt."""
    try:
        text = _json_text(value)
        line = text.encode()
    except Exception as exc:  # noqa: BLE001 - any refusal: the shared slow path names it
        return _encode_failed(value, exc, strict=strict, big_ints=big_ints)
    scan = line.translate(_ENCODED_SCAN).decode("latin-1")
    if (
        (
            not big_ints
            and (
                ",0000000000000000" in scan
                or ":0000000000000000" in scan
                or scan.startswith("0000000000000000")
            )
        )
        or ',"0' in scan
        or '"true":' in text
        or '"false":' in text
        or '"null":' in text
        or '"NaN":' in text
        or 'Infinity":' in text
        or (len(text) > _MAY_NEST_TOO_DEEP and _too_deep(text))
    ):
        _raise_problem(value, strict=strict, big_ints=big_ints)  # raises, or it was a false alarm
    return line + b"\n"


_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_CURLY_AS_SQUARE = str.maketrans("{}", "[]")


def _too_deep(text: str) -> bool:
    """Whether a valid JSON text nests more than MAX_DEPTH arrays/objects."""
    if text.count("[") + text.count("{") <= MAX_DEPTH:
        return False
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text)).translate(_CURLY_AS_SQUARE)
    removed = 0  # each pass takes the innermost pairs away: one level of nesting
    while brackets and removed < 32:
        brackets = brackets.replace("[]", "")
        removed += 1
    depth = deepest = 0
    for bracket in brackets:  # (only for texts nesting over 32 deep)
        depth += 1 if bracket == "[" else -1
        deepest = max(deepest, depth)
    return removed + deepest > MAX_DEPTH


# Decoding ------------------------------------------------------------------------------------

_INVALID_STR = "str is not valid UTF-8: surrogates not allowed"
# For the substring tests on input: digits and signs -> '0', 'E' -> 'e', '{' -> '[' (so that
# 19 zeros is an integer that may leave orjson's range, "e000" an exponent that may overflow).
_NUMBER_SCAN = bytes.maketrans(b"0123456789+-E{", b"000000000000e[")
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
# one escape, whole: a surrogate pair, a lone surrogate (group 1), or any other
_ESCAPE = re.compile(
    r"\\(?:u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2}|(u[dD][89a-fA-F][0-9a-fA-F]{2})|.)", re.S
)
_WHITESPACE = " \t\n\r"
_WHITESPACE_RUN = re.compile(r"[ \t\n\r]*")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _orjson_float(text: str) -> float:
    number = float(text)
    if math.isinf(number):
        raise ValueError("number is infinity when parsed as double")
    return number


def _orjson_int(text: str) -> int | float:
    """orjson's integers: exact from -2**63 to 2**64-1, floats beyond."""
    if len(text) < 19:
        return int(text)
    if len(text) <= 21:
        number = int(text)
        if -(2**63) <= number < 2**64:
            return number
    return _orjson_float(text)


def _scanner(**hooks: Any) -> Callable[[str, int], tuple[Any, int]]:
    """json's scanner (its C one when there is one): one value at an index, ``(value, end)``."""
    scan: Callable[[str, int], tuple[Any, int]] = vars(
        json.JSONDecoder(parse_constant=_reject_constant, **hooks)
    )["scan_once"]
    return scan


_json_scan = _scanner()
_json_scan_careful = _scanner(parse_int=_orjson_int, parse_float=_orjson_float)


def _json_loads(data: bytes | bytearray | memoryview | str) -> Any:
    """One JSON text, as orjson.loads reads it: its value, or JSONDecodeError."""
    if type(data) is not bytes:
        if isinstance(data, str):
            if not data.isascii() and _SURROGATE.search(data):
                raise json.JSONDecodeError(_INVALID_STR, "", 0)
            return _json_loads_careful(data)
        data = bytes(data)
    try:
        text = data.decode()
    except UnicodeDecodeError:
        raise json.JSONDecodeError(_INVALID_STR, "", 0) from None
    scan = data.translate(_NUMBER_SCAN).decode("latin-1")  # (`in` is 4x faster on str)
    if "0000000000000000000" in scan or "e000" in scan or ("\\" in scan and "\\u" in scan):
        return _json_loads_careful(text)  # a number that may leave orjson's range, an escape
    try:
        value, end = _json_scan(text, 0)
    except Exception:  # noqa: BLE001 - a syntax error, NaN, Python's recursion limit...
        return _json_loads_careful(text)
    if end != len(text) and text[end:].strip(_WHITESPACE):
        return _json_loads_careful(text)
    if len(text) > _MAY_NEST_TOO_DEEP and scan.count("[") > MAX_DEPTH and _too_deep(text):
        return _read_strict(text)  # raises
    return value


def _json_loads_careful(text: str) -> Any:
    """The C scanner with orjson's number rules and every check; ``_read_strict`` for the rest."""
    try:
        value, end = _json_scan_careful(text, _end_of(_WHITESPACE_RUN, text, 0))
        if end != len(text) and text[end:].strip(_WHITESPACE):
            raise ValueError("unexpected content after document")
    except Exception:  # noqa: BLE001 - RecursionError too: _read_strict has no recursion
        return _read_strict(text)
    if (_SURROGATE_ESCAPE.search(text) and _lone_surrogate_escape(text)) or (
        len(text) > _MAY_NEST_TOO_DEEP and _too_deep(text)
    ):
        return _read_strict(text)  # raises
    return value


def _lone_surrogate_escape(text: str) -> bool:
    """Whether a valid JSON text escapes a lone surrogate (json's scanner lets them through).

    Read from the text, not the value: a duplicate key may have dropped the string that had it.
    Escapes are taken whole, left to right, so ``\\\\ud800`` (a backslash, then text) is no escape."""
    return any(match.group(1) for match in _ESCAPE.finditer(text))


# _read_strict: the texts json's scanner does not read as orjson does --------------------------

_TOKEN = re.compile(
    r'[ \t\n\r]*(?:("[^"\\]*(?:\\.[^"\\]*)*")|(-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?)'
    r"|(true|false|null)|([\[\]{},:]))",
    re.S,
)
_WORDS = {"true": True, "false": False, "null": None}
_scanstring: Callable[[str, int], tuple[str, int]] = json.decoder.scanstring  # type: ignore[attr-defined]


def _read_strict(text: str) -> Any:
    """Reads ``text`` as orjson does, or raises JSONDecodeError with ``_scan``'s reason and index.

    For what json's C scanner cannot settle alone: a text it rejects, and texts nested deeper
    than Python's recursion limit (read here without recursion)."""
    found = _scan(text)
    if found is not None:
        raise json.JSONDecodeError(found.reason, text, min(found.at, len(text)))
    stack: list[Any] = []  # open containers
    keys: list[str | None] = []  # the pending key of each open container (None: none yet)
    for match in _TOKEN.finditer(text):
        string, number, point, exponent, word, mark = match.groups()
        if mark is not None:
            if mark in "[{":
                stack.append([] if mark == "[" else {})
                keys.append(None)
                continue
            if mark in ",:":
                continue
            value = stack.pop()  # ] or }
            keys.pop()
        elif string is not None:
            value = _scanstring(string, 1)[0]
            if stack and keys[-1] is None and type(stack[-1]) is dict:
                keys[-1] = value
                continue
        elif number is not None:
            value = _orjson_float(number) if point or exponent else _orjson_int(number)
        else:
            value = _WORDS[word]
        if not stack:
            return value
        container = stack[-1]
        if type(container) is dict:
            container[keys[-1]] = value
            keys[-1] = None
        else:
            container.append(value)
    raise AssertionError("unreachable: _scan found the text complete")  # pragma: no cover


# --------------------------------------------------------------------------------------------
# The decoding hot path of each backend

if BACKEND == "orjson":
    _loads: Callable[[Any], Any] = orjson.loads
    _JSONDecodeError: type[ValueError] = orjson.JSONDecodeError
else:
    _loads = _json_loads
    _JSONDecodeError = json.JSONDecodeError
