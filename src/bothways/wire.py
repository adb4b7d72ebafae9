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

Rules
-----
This module does no I/O, reads no clock and imports nothing from the standard library that could
(tests/unit/test_purity.py checks the imports).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, fields, is_dataclass
from decimal import Decimal
from typing import Any, Union

import orjson

from .errors import DecodeError, EncodeError, FrameTooLarge, TruncatedLine

__all__ = [
    "MAX_LINE",
    "MAX_SAFE_INTEGER",
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

# numpy goes through _default (tolist), not OPT_SERIALIZE_NUMPY: orjson's native numpy path
# would send int64 values beyond 2**53 without the strict-integer check.
_OPTIONS = orjson.OPT_APPEND_NEWLINE
_SAFE_INT_OPTIONS = _OPTIONS | orjson.OPT_STRICT_INTEGER
_loads = orjson.loads
_dumps = orjson.dumps
_JSONEncodeError = orjson.JSONEncodeError
_JSONDecodeError = orjson.JSONDecodeError
_IDENT = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]*\Z")
_SURROGATE = re.compile("[\ud800-\udfff]")


# --------------------------------------------------------------------------------------------
# Encoding


def encode(value: Any, *, strict: bool = False, big_ints: bool = False) -> bytes:
    """Encodes one message as one NDJSON line (UTF-8, no raw newline inside, ``\\n`` at the end).

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
    if strict or big_ints:
        return _encode_with_options(value, strict, big_ints)
    try:
        return _dumps(value, _default, _SAFE_INT_OPTIONS)  # the hot path: one orjson call
    except _JSONEncodeError as exc:
        return _encode_failed(value, exc, strict=False, big_ints=False)


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


def _encode_with_options(value: Any, strict: bool, big_ints: bool) -> bytes:
    if strict:
        _raise_problem(value, strict=True, big_ints=big_ints)
    try:
        return _dumps(value, _default, _OPTIONS if big_ints else _SAFE_INT_OPTIONS)
    except _JSONEncodeError as exc:
        return _encode_failed(value, exc, strict=strict, big_ints=big_ints)


def _encode_failed(value: Any, exc: Exception, *, strict: bool, big_ints: bool) -> bytes:
    """orjson refused ``value``: raise the precise EncodeError, or encode it the slow way.

    When our own rules find nothing wrong, orjson refused only for its limits: 255 levels of
    nesting, integers beyond 64 bits, or a big integer that JavaScript reads back unchanged.
    All are rare, so they take a slower path that still lets orjson write every scalar.
    """
    _raise_problem(value, strict=strict, big_ints=big_ints)
    try:
        return _encode_iteratively(value, _OPTIONS & ~orjson.OPT_APPEND_NEWLINE) + b"\n"
    except _JSONEncodeError as inner:  # pragma: no cover - a type orjson and our walk judge apart
        raise EncodeError(str(inner)) from exc


def _default(value: Any) -> Any:
    """orjson's hook for types it does not know: numpy arrays and scalars become lists/numbers."""
    tolist = getattr(value, "tolist", None)
    if callable(tolist) and hasattr(value, "dtype"):
        return tolist()
    raise TypeError


_END = object()


def _encode_iteratively(value: Any, option: int) -> bytes:
    """Writes containers and integers ourselves, without recursion; every other value with orjson."""
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
            elif type(pending) is int:
                parts.append(str(pending).encode())
            else:
                parts.append(orjson.dumps(pending, default=_default, option=option))
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
                raise orjson.JSONEncodeError("Dict key must be str")
            parts.append(orjson.dumps(key) + b":")
        else:
            pending = item


_LEAVE = object()  # marks, on the walk's stack, the end of a container's children


def _raise_problem(value: Any, *, strict: bool, big_ints: bool) -> None:
    """Raises EncodeError for the first thing in ``value`` (document order) that cannot be sent.

    An iterative depth-first walk (no recursion limit to hit): each stack entry is a container's
    member (parent path, key, child, depth, whether the key is an object key to check), and
    ``_LEAVE`` entries close a container, so ``open_ids`` holds exactly the current ancestors.
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
        if depth >= MAX_DEPTH:
            raise EncodeError(
                f"nesting deeper than {MAX_DEPTH} arrays/objects (the decoders' limit)", path=path
            )
        open_ids.add(id(item))
        stack.append((path, _LEAVE, item, depth, False))
        is_dict = isinstance(item, dict)
        for child_key, child in reversed(children):
            stack.append((path, child_key, child, depth + 1, is_dict))


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
            orjson.dumps(value, default=_default)
        except orjson.JSONEncodeError:
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
    """The (key, child) pairs of a container we know how to walk, else None."""
    if isinstance(value, dict):
        return list(value.items())
    if isinstance(value, (list, tuple)):
        return list(enumerate(value))
    if is_dataclass(value) and not isinstance(value, type):
        return [(f.name, getattr(value, f.name)) for f in fields(value)]
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
    """A DecodeError for ``raw`` (bytes or str) that orjson rejected with ``exc``."""
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
    lines = text.split("\n")
    lineno = min(max(getattr(exc, "lineno", 1), 1), len(lines))
    col = getattr(exc, "colno", 0)
    line_text = lines[lineno - 1].rstrip("\r")
    msg = getattr(exc, "msg", None) or str(exc)
    return DecodeError(msg, line=first_line + lineno - 1, column=col, excerpt=_excerpt(line_text, col - 1))


def _excerpt(text: str, at: int) -> str:
    """At most EXCERPT characters of ``text`` around index ``at``, with ``…`` where cut."""
    start = max(0, min(at - EXCERPT // 2, len(text) - EXCERPT))
    piece = text[start : start + EXCERPT]
    return ("…" if start > 0 else "") + piece + ("…" if start + EXCERPT < len(text) else "")


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


# (The event classes are plain slotted records, not frozen: a frozen dataclass costs three
# times as much to make, and one is made per message on the hot path.)
Event = Union[Messages, Malformed, Truncated]  # noqa: UP007 - a runtime alias, Python 3.10 too


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
    """

    __slots__ = ("_buf", "_line", "_max_line", "_skipping", "_started", "_ended")

    def __init__(self, *, max_line: int = MAX_LINE) -> None:
        if max_line < 1:
            raise ValueError("max_line must be at least 1")
        self._max_line = max_line
        self._buf = bytearray()  # the unfinished line; grows in place, never re-copied whole
        self._line = 0  # lines completed so far
        self._skipping = False  # inside a too-long line, dropping bytes up to the next newline
        self._started = False  # past the place where a BOM may stand
        self._ended = False

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
        if not self._buf and self._started and not self._skipping:
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
        events: list[Event] = []
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
                    self._hold(bytes(self._buf[: EXCERPT * 4]), events, too_long=True)
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

    def _hold(self, buf: bytes, events: list[Event], too_long: bool = False) -> None:
        """Keeps an unfinished line, unless it is already over the limit (then drops it)."""
        if too_long or len(buf) > self._max_line:
            excerpt = _excerpt(buf[: EXCERPT * 4].decode("utf-8", "replace"), 0)
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
                excerpt = _excerpt(raw[: EXCERPT * 4].decode("utf-8", "replace"), 0)
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
