"""Objects, callbacks, streams and bytes across a connection (spec/PROTOCOL.md section 10).

Mirrored name for name in js/src/objects.js. What JSON cannot hold crosses as a *marker* (an
object with a ``"$bothways"`` member) inside a *tree* (a call's params or result wrapped as
``{"$bothways": "tree", "value": ...}``): an object lent by reference, the receiver's own object
given back, bytes, a typed array.

- ``Handles``: one per connection. The objects this side lends (by id), what it learned of the
  other side's classes, and the borrowed ids waiting to be released.
- ``outgoing(value, handles)`` / ``to_tree``: a value about to be sent, with what cannot be JSON
  lent or packed; ``incoming(value, handles, borrow)`` / ``from_tree``: the reverse, ``borrow``
  making the proxy of each object the other side lends.
- ``lender_functions(handles)``: what serves ``$/get``, ``$/call``, ``$/next``... on the objects
  this side lends; an engine exposes them like any function.
- ``RemoteObject`` (blocking) and ``AsyncRemoteObject`` (asyncio): the proxies. They ask through
  a *link* (the engine: ``request(method, params)`` and ``release_soon()``) and never do I/O.

Rules: no I/O, no clock, no threads started here. numpy is used when it is installed (arrays
arrive as ``ndarray``), never required (they arrive as a ``memoryview`` cast to the shape).
"""

from __future__ import annotations

import base64
import binascii
import inspect
import itertools
import json
import math
import types
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from .errors import BothwaysError, EncodeError, HandleError, RemoteError
from .wire import _DATACLASS, _OTHER, _child_path, _dataclass_items, _kind, decode, encode

__all__ = [
    "CALL_MAX_LINE",
    "FIRST_CREDIT",
    "HANDLE_NOT_HELD",
    "MARK",
    "MAX_CREDIT",
    "OBJECT_METHODS",
    "RELEASE_METHOD",
    "AsyncRemoteObject",
    "Handles",
    "Ref",
    "RemoteObject",
    "from_tree",
    "incoming",
    "lender_functions",
    "outgoing",
    "ref",
    "release",
    "to_tree",
    "value",
]

MARK = "$bothways"
TREE = "tree"
HANDLE_NOT_HELD = -32001  # the JSON-RPC error code of a request naming a handle not held
RELEASE_METHOD = "$/release"  # notification: params are the ids the borrower lets go
OBJECT_METHODS = (
    *("$/get", "$/set", "$/call", "$/new", "$/item"),
    *("$/len", "$/repr", "$/value", "$/iter", "$/next", "$/handles"),
)
CALL_MAX_LINE = 256 << 20  # the line limit between a parent and the module it spawned (256 MiB):
# both ends are the user's own, and bytes and arrays travel in one line each (base64); a
# JavaScript string holds at most 2**29 - 24 characters
FIRST_CREDIT = 64  # items asked for in a stream's first pull
MAX_CREDIT = 4096  # ...doubling up to this while the consumer keeps up
KINDS = ("function", "class", "object", "iterator")
_MAX_DIMENSIONS = 64  # an array's shape: numpy's limit, and memoryview's

# dtype name -> (memoryview format, item size); little-endian on the wire
DTYPES: dict[str, tuple[str, int]] = {
    "bool": ("?", 1),
    "int8": ("b", 1),
    "uint8": ("B", 1),
    "int16": ("h", 2),
    "uint16": ("H", 2),
    "int32": ("i", 4),
    "uint32": ("I", 4),
    "int64": ("q", 8),
    "uint64": ("Q", 8),
    "float32": ("f", 4),
    "float64": ("d", 8),
}
_FORMATS = {fmt: name for name, (fmt, _) in DTYPES.items()} | {"l": "int64", "L": "uint64"}
_SCALARS = frozenset({str, int, float, bool, type(None)})


class Ref:
    """A value to lend by reference even though it is JSON: ``ref(settings)``."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


def ref(value: Any) -> Ref:
    """Marks ``value`` to be lent by reference (the other side gets a proxy, not a copy)."""
    return Ref(value)


def _not_held(handle_id: Any) -> HandleError:
    error = HandleError(f"handle {handle_id} is not held here (released, or never lent)")
    error.rpc_code = HANDLE_NOT_HELD  # type: ignore[attr-defined]
    return error


def _methods_of(owner: Any) -> list[str]:
    """The callable members of a class (or a module's own), without ``_``-prefixed names."""
    names = []
    for name in dir(owner):
        if name.startswith("_"):
            continue
        try:
            member = inspect.getattr_static(owner, name)
        except AttributeError:
            continue
        if isinstance(member, (staticmethod, classmethod)) or callable(member):
            names.append(name)
    return sorted(names)


def _kind_of(value: Any) -> str:
    if inspect.isclass(value):
        return "class"
    if inspect.isroutine(value) or isinstance(value, types.MethodType):
        return "function"
    if inspect.isgenerator(value) or inspect.isasyncgen(value):
        return "iterator"
    if hasattr(value, "__next__") and hasattr(value, "__iter__"):
        return "iterator"
    if hasattr(value, "__anext__") and hasattr(value, "__aiter__"):
        return "iterator"
    return "function" if callable(value) and not hasattr(type(value), "__dict__") else "object"


def _type_name(value: Any, kind: str) -> str:
    if kind in ("class", "function"):
        name = getattr(value, "__qualname__", None) or getattr(value, "__name__", None)
        return str(name or type(value).__name__)
    return type(value).__name__


class Handles:
    """The objects this side lends on one connection, and what it knows of the other side's.

    Safe to use from several threads (each step is one dict operation under the GIL).
    """

    def __init__(self) -> None:
        self._objects: dict[int, Any] = {}
        self._ids = itertools.count(1)
        self._class_ids: dict[Any, int] = {}  # our classes -> their number on this connection
        self._class_count = itertools.count(1)
        self.classes: dict[int, frozenset[str]] = {}  # the other side's classes -> method names
        self.released: deque[int] = deque()  # borrowed ids to send in the next $/release

    def __len__(self) -> int:
        return len(self._objects)

    def lend(self, value: Any, kind: str | None = None) -> dict[str, Any]:
        """Keeps ``value`` under a new id; returns its ``ref`` marker."""
        handle_id = next(self._ids)
        self._objects[handle_id] = value
        if isinstance(value, _Proxy):  # lent on: what it stands for, as its lender described it
            return {MARK: "ref", "id": handle_id, "kind": value._bw_kind, "type": value._bw_type}
        kind = kind or _kind_of(value)
        marker: dict[str, Any] = {MARK: "ref", "id": handle_id, "kind": kind, "type": _type_name(value, kind)}
        if kind == "object":
            owner = value if isinstance(value, types.ModuleType) else type(value)
            try:
                number = self._class_ids.get(owner)
            except TypeError:  # an unhashable class: no methods to announce
                return marker
            if number is None:  # the first of its class: its methods go with it
                number = self._class_ids[owner] = next(self._class_count)
                marker["class"] = number
                marker["methods"] = _methods_of(owner)
            else:
                marker["class"] = number
        return marker

    def take(self, handle_id: Any) -> Any:
        """The object lent under ``handle_id``; HandleError when it is not held (any more)."""
        try:
            return self._objects[handle_id]
        except (KeyError, TypeError):
            raise _not_held(handle_id) from None

    def drop(self, ids: Iterable[Any]) -> list[Any]:
        """Lets go of the objects lent under ``ids`` (unknown ids are ignored). Iterators are
        closed; returns the awaitables that close async generators, for the engine to run."""
        closing = []
        for handle_id in ids:
            try:
                dropped = self._objects.pop(handle_id, None)
            except TypeError:
                continue
            if dropped is None:
                continue
            if inspect.isasyncgen(dropped):
                closing.append(dropped.aclose())
            elif inspect.isgenerator(dropped):
                dropped.close()
        return closing

    def clear(self) -> list[Any]:
        """Lets go of everything (the connection ended); as ``drop``."""
        return self.drop(list(self._objects))

    def take_released(self) -> list[int]:
        """The borrowed ids queued for release since the last call (any thread may queue)."""
        ids = []
        released = self.released
        while released:
            try:
                ids.append(released.popleft())
            except IndexError:
                break
        return ids


# -- values -> trees --------------------------------------------------------------------------


class _Walk:
    __slots__ = ("handles", "special", "blobs")

    def __init__(self, handles: Handles, blobs: list[Any] | None) -> None:
        self.handles = handles
        self.special = False
        self.blobs = blobs  # binary frames to fill (a channel that carries them), else None


def _packed(walk: _Walk, data: Any, marker: dict[str, Any]) -> dict[str, Any]:
    """``marker`` with ``data`` in it: in a binary frame when the walk has them, else base64."""
    blobs = walk.blobs
    if blobs is None:
        marker["base64"] = _b64(data)
    else:
        marker["blob"] = len(blobs)
        blobs.append(data)
    return marker


def _b64(data: Any) -> str:
    return base64.b64encode(data).decode("ascii")


def _array_marker(array: Any, walk: _Walk) -> dict[str, Any] | None:
    """The ``array`` marker of a numpy array, or None for a dtype that has none (object, str...)."""
    dtype = array.dtype
    name = dtype.name
    if name not in DTYPES:
        return None
    if dtype.byteorder == ">":
        array = array.astype(dtype.newbyteorder("<"))
    if not array.flags.c_contiguous:
        array = array.copy(order="C")
    data = memoryview(array).cast("B") if array.size else b""  # (no copy)
    return _packed(walk, data, {MARK: "array", "dtype": name, "shape": list(array.shape)})


def _memoryview_marker(view: memoryview, walk: _Walk) -> dict[str, Any]:
    name = _FORMATS.get(view.format.lstrip("@=<"))
    data = view.cast("B") if view.c_contiguous and view.nbytes else view.tobytes()
    if name is None or view.format == "B" and view.ndim == 1:
        return _packed(walk, data, {MARK: "bytes"})
    return _packed(walk, data, {MARK: "array", "dtype": name, "shape": list(view.shape or ())})


def _tree(value: Any, walk: _Walk) -> Any:
    kind = type(value)
    if kind in _SCALARS:
        return value
    if kind is list or kind is tuple:
        return [_tree(item, walk) for item in value]
    if kind is dict:
        members = {key: _tree(item, walk) for key, item in value.items()}
        if MARK in value:
            walk.special = True
            return {MARK: "object", "value": members}
        return members
    marker = _marker(value, kind, walk)
    if marker is not None:
        walk.special = True
        return marker
    if isinstance(value, dict):
        return _tree(dict(value), walk)
    if isinstance(value, (list, tuple)):
        return [_tree(item, walk) for item in value]
    if hasattr(kind, "dtype") and hasattr(kind, "tolist"):  # a numpy scalar, or an array of objects
        return _tree(value.tolist(), walk)
    if isinstance(value, (str, int, float)):  # subclasses: IntEnum, numpy.float64...
        return value
    wire_kind = _kind(kind)
    if wire_kind == _DATACLASS:
        return {key: _tree(item, walk) for key, item in _dataclass_items(value)}
    if wire_kind != _OTHER:  # datetime, date, time, UUID, enum: the wire writes them
        return value
    walk.special = True
    return walk.handles.lend(value)


def _marker(value: Any, kind: type, walk: _Walk) -> dict[str, Any] | None:
    """The marker of a value that is lent on purpose, given back or packed; None for others."""
    if kind is Ref:
        return walk.handles.lend(value.value)
    if isinstance(value, _Proxy) and value._bw_link.handles is walk.handles:
        return {MARK: "yours", "id": value._bw_id}
    if kind is bytes or kind is bytearray:
        return _packed(walk, value, {MARK: "bytes"})
    if kind is memoryview:
        return _memoryview_marker(value, walk)
    if isinstance(value, _Proxy):  # another connection's: lent on, its uses forwarded
        return walk.handles.lend(value)
    # (numpy is recognised by its class's members: a remote object answers any name)
    if hasattr(kind, "dtype") and hasattr(kind, "tobytes") and value.shape != ():
        return _array_marker(value, walk)  # a numpy array (None: a dtype without a marker)
    return None


def to_tree(value: Any, handles: Handles, blobs: list[Any] | None = None) -> Any:
    """``value`` as JSON with markers: what JSON cannot hold is lent or packed (section 10.2);
    with ``blobs``, bytes and arrays are appended there (binary frames) instead of base64."""
    return _tree_of(value, _Walk(handles, blobs))


def _tree_of(value: Any, walk: _Walk) -> Any:
    try:
        return _tree(value, walk)
    except RecursionError:
        raise EncodeError("nesting too deep (or a cycle)") from None


def outgoing(value: Any, handles: Handles, blobs: list[Any] | None = None) -> Any:
    """``value`` itself when it is plain JSON, else its tree wrapped as ``{"$bothways": "tree"}``
    (section 10.1): also a plain object with a ``"$bothways"`` member of its own. With ``blobs``
    (a channel that carries binary frames), bytes and arrays are appended there."""
    walk = _Walk(handles, blobs)
    tree = _tree_of(value, walk)
    if not walk.special and not (type(value) is dict and MARK in value):
        return value
    return {MARK: TREE, "value": tree}


# -- trees -> values --------------------------------------------------------------------------


class _Bad(Exception):
    """A malformed marker: ``keys`` lead to it from the tree's top, gathered on the way out."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(reason)
        self.keys: list[str | int] = [key]
        self.reason = reason


def _shown(value: Any) -> str:
    """A value in an error message, as JSON the way JavaScript writes it (the same text in both
    languages): numbers as doubles (``0.00001``, ``1e+21``, an integer past 2**53 rounded).
    Iterative: a shown value may nest as deep as the decoder allows."""
    parts: list[str] = []
    stack: list[Any] = [value]
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind is tuple:  # punctuation, pushed below
            parts.append(item[0])
        elif kind is list or kind is dict:
            entries = list(item.items()) if kind is dict else list(enumerate(item))
            stack.append(("}" if kind is dict else "]",))
            for index in range(len(entries) - 1, -1, -1):
                key, member = entries[index]
                stack.append(member)
                if kind is dict:
                    stack.append((json.dumps(key, ensure_ascii=False) + ":",))
                if index:
                    stack.append((",",))
            stack.append(("{" if kind is dict else "[",))
        elif kind is float or kind is int and abs(item) > 2**53:
            parts.append(_js_number(item))
        else:
            parts.append(json.dumps(item, ensure_ascii=False))
    return "".join(parts)


def _js_number(value: float) -> str:
    """A number as JavaScript's String() writes the double nearest to it (null past the largest)."""
    try:
        number = float(value)
    except OverflowError:
        return "null"  # (JavaScript reads it as Infinity, which JSON writes as null)
    if not math.isfinite(number):
        return "null"
    if number == 0:
        return "0"
    sign = "-" if number < 0 else ""
    mantissa, _, exponent = repr(abs(number)).partition("e")
    whole, _, fraction = mantissa.partition(".")
    digits = (whole + fraction).lstrip("0")
    point = len(whole) + int(exponent or 0) - (len(whole + fraction) - len((whole + fraction).lstrip("0")))
    digits = digits.rstrip("0")
    n, k = point, len(digits)  # the value is 0.<digits> x 10**n
    if k <= n <= 21:
        text = digits + "0" * (n - k)
    elif 0 < n <= 21:
        text = digits[:n] + "." + digits[n:]
    elif -6 < n <= 0:
        text = "0." + "0" * -n + digits
    else:
        text = digits[0] + ("." + digits[1:] if k > 1 else "") + ("e+" if n > 0 else "e-") + str(abs(n - 1))
    return sign + text


def _integer(value: Any) -> int | None:
    """An integer member as an int: JSON has one number type, so ``1.0`` is 1 (as in
    JavaScript, where the two cannot be told apart); anything else None."""
    kind = type(value)
    if kind is int:
        return value  # type: ignore[no-any-return]
    if kind is float and value.is_integer():
        return int(value)
    return None


Borrow = Callable[[int, str, str, "frozenset[str] | None"], Any]


def _numpy() -> Any:
    try:
        import numpy
    except ImportError:
        return None
    return numpy


def _bytes_of(marker: dict[str, Any], blobs: list[bytes] | None) -> bytes:
    if "blob" in marker:
        index = _integer(marker["blob"])
        if index is None or index < 0:
            raise _Bad("blob", "expected a frame number")
        brought = len(blobs) if blobs is not None else 0
        if blobs is None or index >= brought:
            shown = _shown(index)
            raise _Bad("blob", f"no binary frame {shown} came with the message (it brought {brought})")
        return blobs[index]
    text = marker.get("base64")
    if type(text) is not str:
        raise _Bad("base64", "expected a base64 string")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise _Bad("base64", "invalid base64") from None


def _array_of(marker: dict[str, Any], blobs: list[bytes] | None) -> Any:
    name = marker.get("dtype")
    if type(name) is not str or name not in DTYPES:
        raise _Bad("dtype", f"unknown dtype {_shown(name)} (expected one of {', '.join(DTYPES)})")
    shape = marker.get("shape")
    if type(shape) is list:
        shape = [_integer(n) for n in shape]
    if type(shape) is not list or not all(n is not None and n >= 0 for n in shape):
        raise _Bad("shape", "expected a list of non-negative integers")
    if len(shape) > _MAX_DIMENSIONS:
        raise _Bad("shape", f"at most {_MAX_DIMENSIONS} dimensions, got {len(shape)}")
    data = _bytes_of(marker, blobs)
    fmt, size = DTYPES[name]
    expected = math.prod(shape) * size
    if len(data) != expected:
        where = "blob" if "blob" in marker else "base64"
        product = 1.0  # the byte count as JavaScript computes it (doubles) for the message
        for n in shape:
            product *= float(n)
        shown = f"shape {_shown(shape)} of {name} ({_js_number(product * size)} bytes)"
        raise _Bad(where, f"{len(data)} bytes do not fill {shown}")
    numpy = _numpy()
    if numpy is not None:
        return numpy.frombuffer(bytearray(data), dtype=numpy.dtype(name).newbyteorder("<")).reshape(shape)
    view: Any = memoryview(bytearray(data))
    return view.cast(fmt, shape) if len(shape) > 1 and expected else view.cast(fmt)  # (empty: flat)


class _Revival:
    """What a walk from a tree back to values needs (``from_tree``'s arguments)."""

    __slots__ = ("handles", "borrow", "blobs")

    def __init__(self, handles: Handles, borrow: Borrow, blobs: list[bytes] | None) -> None:
        self.handles = handles
        self.borrow = borrow
        self.blobs = blobs


class _Open:
    """A plain container being revived: ``out`` is filled from ``items``; ``keys`` lead from
    it to its parent (innermost first: its key, and ``"value"`` for an object marker)."""

    __slots__ = ("out", "items", "keys")

    def __init__(self, out: Any, items: Any, keys: list[str | int]) -> None:
        self.out = out
        self.items = items
        self.keys = keys


def _opened(tree: Any, revival: _Revival, keys: list[str | int]) -> Any:
    """A plain list or object: an ``_Open`` to fill; a marker: the value it stands for; any
    other value: itself."""
    kind = type(tree)
    if kind is list:
        return _Open([], enumerate(tree), keys)
    if kind is not dict:
        return tree
    if MARK not in tree:
        return _Open({}, iter(tree.items()), keys)
    marker = tree[MARK]
    if marker == "ref":
        return _borrowed(tree, revival)
    if marker == "yours":
        handle_id = _integer(tree.get("id"))
        if handle_id is None:
            raise _Bad("id", "expected an integer")
        return revival.handles.take(handle_id)
    if marker == "bytes":
        return _bytes_of(tree, revival.blobs)
    if marker == "array":
        return _array_of(tree, revival.blobs)
    if marker == "object":
        members = tree.get("value")
        if type(members) is not dict:
            raise _Bad("value", "expected an object")
        return _Open({}, iter(members.items()), ["value", *keys])
    raise _Bad(MARK, f"unknown marker kind {_shown(marker)}")


def _value(tree: Any, revival: _Revival) -> Any:
    """The walk, iterative (a tree nests as deep as the decoder allows, 1,024 levels, past
    Python's recursion limit): a stack of the containers being filled."""
    top = _opened(tree, revival, [])
    if type(top) is not _Open:
        return top
    stack = [top]
    while stack:
        frame = stack[-1]
        out = frame.out
        for key, item in frame.items:
            try:
                child = _opened(item, revival, [key])
            except _Bad as bad:
                bad.keys.append(key)
                for outer in reversed(stack):
                    bad.keys.extend(outer.keys)
                raise
            if type(child) is _Open:
                if type(out) is list:
                    out.append(child.out)
                else:
                    out[key] = child.out
                stack.append(child)
                break
            if type(out) is list:
                out.append(child)
            else:
                out[key] = child
        else:
            stack.pop()
    return top.out


def _borrowed(marker: dict[str, Any], revival: _Revival) -> Any:
    handle_id = _integer(marker.get("id"))
    if handle_id is None or handle_id < 1:
        raise _Bad("id", "expected a positive integer")
    kind = marker.get("kind")
    if kind not in KINDS:
        raise _Bad("kind", f"expected one of {', '.join(KINDS)}")
    type_name = marker.get("type")
    if type(type_name) is not str:
        raise _Bad("type", "expected a string")
    methods = None
    number = marker.get("class")
    if number is not None:
        number = _integer(number)
        if number is None:
            raise _Bad("class", "expected an integer")
        listed = marker.get("methods")
        if listed is not None:
            if type(listed) is not list or not all(type(m) is str for m in listed):
                raise _Bad("methods", "expected a list of names")
            revival.handles.classes[number] = frozenset(listed)
        methods = revival.handles.classes.get(number)
    return revival.borrow(handle_id, kind, type_name, methods)


def from_tree(tree: Any, handles: Handles, borrow: Borrow, blobs: list[bytes] | None = None) -> Any:
    """The value a tree stands for: markers become proxies (``borrow(id, kind, type, methods)``),
    our own objects, bytes, arrays (``blobs``: the binary frames that came with the message).
    Raises HandleError for a malformed marker (with its path)."""
    try:
        return _value(tree, _Revival(handles, borrow, blobs))
    except _Bad as bad:
        path = "$"
        for key in reversed(bad.keys):
            path = _child_path(path, key)
        raise HandleError(f"{path}: {bad.reason}") from None


def incoming(value: Any, handles: Handles, borrow: Borrow, blobs: list[bytes] | None = None) -> Any:
    """A received params or result: the value of its tree when it is one, else itself."""
    if type(value) is dict and value.get(MARK) == TREE:
        return from_tree(value.get("value"), handles, borrow, blobs)
    return value


# -- serving the objects we lend ----------------------------------------------------------------


def _next_async(handles: Handles, handle_id: int, iterator: Any, n: int) -> Any:
    async def pull() -> dict[str, Any]:
        items = []
        try:
            for _ in range(n):
                items.append(await iterator.__anext__())
        except StopAsyncIteration:
            handles.drop([handle_id])
            return {"items": items, "done": True}
        return {"items": items, "done": False}

    return pull()


def lender_functions(handles: Handles) -> dict[str, Callable[..., Any]]:
    """The functions serving section 10.4's requests on ``handles``' objects, by method name."""
    take = handles.take

    def get(handle_id: int, name: str) -> Any:
        return getattr(take(handle_id), name)

    def set_attribute(handle_id: int, name: str, new: Any) -> None:
        setattr(take(handle_id), name, new)

    def call(handle_id: int, name: str | None, args: list[Any], kwargs: dict[str, Any] | None = None) -> Any:
        target = take(handle_id)
        function = target if name is None else getattr(target, name)
        return function(*args, **kwargs) if kwargs else function(*args)

    def new(handle_id: int, args: list[Any], kwargs: dict[str, Any] | None = None) -> Any:
        return call(handle_id, None, args, kwargs)

    def item(handle_id: int, key: Any) -> Any:
        return take(handle_id)[key]

    def length(handle_id: int) -> int:
        return len(take(handle_id))

    def represent(handle_id: int) -> str:
        return repr(take(handle_id))

    def as_value(handle_id: int) -> Any:
        target = take(handle_id)
        try:
            return decode(encode(target))  # a copy that is JSON through and through
        except EncodeError as exc:
            named = f"handle {handle_id} ({type(target).__name__})"
            raise HandleError(f"{named} has no JSON value: {exc}") from None

    def iterate(handle_id: int) -> Ref:
        target = take(handle_id)
        if hasattr(target, "__aiter__"):
            return Ref(target.__aiter__())
        return Ref(iter(target))

    def pull(handle_id: int, n: int) -> Any:
        if type(n) is not int or n < 1:
            raise ValueError(f"$/next wants a positive number of items, not {n!r}")
        iterator = take(handle_id)
        if hasattr(iterator, "__anext__"):
            return _next_async(handles, handle_id, iterator, n)
        items = list(itertools.islice(iterator, n))
        done = len(items) < n
        if done:
            handles.drop([handle_id])
        return {"items": items, "done": done}

    return {
        "$/get": get,
        "$/set": set_attribute,
        "$/call": call,
        "$/new": new,
        "$/item": item,
        "$/len": length,
        "$/repr": represent,
        "$/value": as_value,
        "$/iter": iterate,
        "$/next": pull,
        "$/handles": lambda: len(handles),
    }


# -- proxies ----------------------------------------------------------------------------------


class Link(Protocol):
    """What a proxy asks through: the engine of one connection."""

    handles: Handles

    def request(self, method: str, params: list[Any]) -> Any:
        """Sends a request; the answer's value (blocking engines) or an awaitable of it."""

    def release_soon(self, now: bool) -> None:
        """Ids were queued in ``handles.released``: send them when it is safe; ``now``: an
        explicit release (else a collected proxy: it may wait for the next message)."""


class _Pull:
    __slots__ = ("items", "credit", "done")

    def __init__(self) -> None:
        self.items: deque[Any] = deque()
        self.credit = FIRST_CREDIT
        self.done = False

    def take(self, answer: Any) -> None:
        if not (isinstance(answer, dict) and isinstance(answer.get("items"), list)):
            raise HandleError(f"$/next answered {answer!r}, not {{items, done}}")
        self.items.extend(answer["items"])
        self.done = answer.get("done") is True
        self.credit = min(self.credit * 2, MAX_CREDIT)


class _Proxy:
    """What both proxy flavours share: identity, release, a local repr."""

    __slots__ = (
        *("_bw_link", "_bw_id", "_bw_kind", "_bw_type"),
        *("_bw_methods", "_bw_released", "_bw_pull", "__weakref__"),
    )

    _bw_link: Link
    _bw_id: int
    _bw_kind: str
    _bw_type: str
    _bw_methods: frozenset[str] | None
    _bw_released: bool
    _bw_pull: _Pull | None

    def __init__(
        self, link: Link, handle_id: int, kind: str, type_name: str, methods: frozenset[str] | None
    ) -> None:
        setter = object.__setattr__
        setter(self, "_bw_link", link)
        setter(self, "_bw_id", handle_id)
        setter(self, "_bw_kind", kind)
        setter(self, "_bw_type", type_name)
        setter(self, "_bw_methods", methods)
        setter(self, "_bw_released", False)
        setter(self, "_bw_pull", None)

    def _bw_local_text(self) -> str:
        state = " (released)" if self._bw_released else ""
        return f"<remote {self._bw_kind} {self._bw_type} #{self._bw_id}{state}>"

    def _bw_release(self, now: bool = True) -> None:
        if not self._bw_released:
            object.__setattr__(self, "_bw_released", True)
            link = self._bw_link
            link.handles.released.append(self._bw_id)
            link.release_soon(now)

    def _bw_ask(self, method: str, *params: Any) -> Any:
        if self._bw_released:
            raise HandleError(f"handle {self._bw_id} ({self._bw_type}) was released")
        return self._bw_link.request(method, [self._bw_id, *params])

    def _bw_done(self) -> None:
        """The lender dropped the iterator itself (it is exhausted): nothing to release."""
        object.__setattr__(self, "_bw_released", True)

    def __del__(self) -> None:
        try:
            self._bw_release(now=False)
        except Exception:  # noqa: BLE001, S110 - at shutdown the link may be half gone
            pass

    def __bool__(self) -> bool:
        return True


def _attribute_refused(name: str) -> AttributeError:
    return AttributeError(f"remote objects do not forward names starting with '_' ({name!r})")


class _Method:
    """``proxy.name`` for a name the class lists as a method: calling it is one round trip."""

    __slots__ = ("_owner", "_name")

    def __init__(self, owner: RemoteObject, name: str) -> None:
        self._owner = owner
        self._name = name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._owner._bw_ask("$/call", self._name, list(args), kwargs or None)

    def __repr__(self) -> str:
        return f"<remote method {self._name} of {self._owner._bw_local_text()}>"


class RemoteObject(_Proxy):
    """A proxy of an object the other side lends, blocking flavour: ``obj.head(5)``,
    ``obj.shape``, ``obj[2]``, ``len(obj)``, ``repr(obj)``, ``Cls(1, 2)``, ``for x in obj``,
    ``with obj:`` (released at the end). Each use is one round trip."""

    __slots__ = ()

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise _attribute_refused(name)
        methods = self._bw_methods
        if methods is not None and name in methods:
            return _Method(self, name)
        return self._bw_ask("$/get", name)

    def __setattr__(self, name: str, new: Any) -> None:
        if name.startswith("_"):
            raise _attribute_refused(name)
        self._bw_ask("$/set", name, new)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._bw_ask("$/call", None, list(args), kwargs or None)

    def __getitem__(self, key: Any) -> Any:
        return self._bw_ask("$/item", key)

    def __len__(self) -> int:
        if self._bw_kind == "iterator":  # (list() asks, as a hint: not worth a round trip)
            raise TypeError(f"a remote iterator has no length ({self._bw_local_text()})")
        try:
            return int(self._bw_ask("$/len"))
        except RemoteError as exc:  # no length there: what len() raises here
            if exc.remote_type == "TypeError":
                raise TypeError(exc.reason) from exc
            raise

    def __repr__(self) -> str:
        if self._bw_released:
            return self._bw_local_text()
        try:
            return str(self._bw_ask("$/repr"))
        except BothwaysError:
            return self._bw_local_text()

    def __iter__(self) -> Any:
        if self._bw_kind == "iterator":
            return self
        return self._bw_ask("$/iter")

    def __next__(self) -> Any:
        pull = self._bw_pull
        if pull is None:
            pull = _Pull()
            object.__setattr__(self, "_bw_pull", pull)
        if not pull.items:
            if pull.done or self._bw_released:
                raise StopIteration
            pull.take(self._bw_ask("$/next", pull.credit))
            if pull.done:
                self._bw_done()
            if not pull.items:
                raise StopIteration
        return pull.items.popleft()

    def __enter__(self) -> RemoteObject:
        return self

    def __exit__(self, *exc: object) -> None:
        self._bw_release()


class _Member:
    """``proxy.name`` in the asyncio flavour: ``await proxy.name`` reads it, ``await
    proxy.name(...)`` calls it; either is one round trip."""

    __slots__ = ("_owner", "_name")

    def __init__(self, owner: AsyncRemoteObject, name: str) -> None:
        self._owner = owner
        self._name = name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._owner._bw_ask("$/call", self._name, list(args), kwargs or None)

    def __await__(self) -> Any:
        return _awaited(self._owner._bw_ask("$/get", self._name)).__await__()


async def _awaited(awaitable: Any) -> Any:
    return await awaitable


class AsyncRemoteObject(_Proxy):
    """A proxy of an object the other side lends, asyncio flavour: ``await obj.head(5)``,
    ``await obj.shape``, ``await obj[2]``, ``await Cls(1, 2)``, ``async for x in obj``,
    ``async with obj:`` (released at the end)."""

    __slots__ = ()

    def __getattr__(self, name: str) -> _Member:
        if name.startswith("_"):
            raise _attribute_refused(name)
        return _Member(self, name)

    def __setattr__(self, name: str, new: Any) -> None:
        raise AttributeError(f"use 'await bothways.objects.set_attribute(proxy, {name!r}, value)'")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._bw_ask("$/call", None, list(args), kwargs or None)

    def __getitem__(self, key: Any) -> Any:
        return self._bw_ask("$/item", key)

    def __repr__(self) -> str:
        return self._bw_local_text()

    def __aiter__(self) -> Any:
        return _AsyncPull(self)

    async def __aenter__(self) -> AsyncRemoteObject:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._bw_release()


class _AsyncPull:
    """``async for`` over an asyncio proxy: the iterator handle (asked for first unless the proxy
    is one), pulled ``$/next`` by ``$/next``."""

    __slots__ = ("_source", "_iterator", "_pull")

    def __init__(self, source: AsyncRemoteObject) -> None:
        self._source = source
        self._iterator: AsyncRemoteObject | None = source if source._bw_kind == "iterator" else None
        self._pull = _Pull()

    def __aiter__(self) -> _AsyncPull:
        return self

    async def __anext__(self) -> Any:
        pull = self._pull
        if not pull.items:
            if pull.done:
                raise StopAsyncIteration
            if self._iterator is None:
                self._iterator = await self._source._bw_ask("$/iter")
            iterator = self._iterator
            assert iterator is not None
            if iterator._bw_released:
                raise StopAsyncIteration
            pull.take(await iterator._bw_ask("$/next", pull.credit))
            if pull.done:
                iterator._bw_done()
            if not pull.items:
                raise StopAsyncIteration
        return pull.items.popleft()

    async def aclose(self) -> None:
        """Stops early (``break`` in ``async for`` does not call it; releasing does the same)."""
        if self._iterator is not None:
            self._iterator._bw_release()


def release(proxy: Any) -> None:
    """Lets go of a remote object now (it is also let go when garbage collected)."""
    if not isinstance(proxy, _Proxy):
        raise TypeError(f"release() takes a remote object, not {type(proxy).__name__}")
    proxy._bw_release()


def value(proxy: Any) -> Any:
    """The remote object as a JSON value (a copy): blocking proxies return it, asyncio ones an
    awaitable. HandleError when it has no JSON form."""
    if not isinstance(proxy, _Proxy):
        raise TypeError(f"value() takes a remote object, not {type(proxy).__name__}")
    return proxy._bw_ask("$/value")


async def set_attribute(proxy: AsyncRemoteObject, name: str, new: Any) -> None:
    """``proxy.name = new`` for an asyncio proxy."""
    await proxy._bw_ask("$/set", name, new)
