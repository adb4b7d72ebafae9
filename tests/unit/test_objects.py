"""Objects, callbacks, streams and bytes (spec/PROTOCOL.md 10): the sans-I/O core driven by
spec/vectors/objects.json (js/test/objects.test.js too), then two Python sides talking through
it, blocking (Connection over a socketpair) and asyncio (Peer over memory_pair)."""

from __future__ import annotations

import gc
import socket
import threading
from collections.abc import Iterator
from typing import Any

import numpy
import pytest

from bothways import HandleError, RemoteError, TransportClosed
from bothways import objects as objects_module
from bothways.objects import (
    Handles,
    RemoteObject,
    from_tree,
    incoming,
    lender_functions,
    outgoing,
    ref,
    release,
    to_tree,
    value,
)
from bothways.peer import Connection, Peer
from bothways.transports.stdio import StdioChannel
from bothways.wire import decode

from ..vectors import load
from .test_peer import run  # two asyncio Peers over memory_pair()

CASES = load("objects.json")


def nobody(*marker: Any) -> Any:
    raise AssertionError(f"no ref expected here: {marker}")


def neutral(value: Any) -> Any:
    """A revived value in the vectors' tagged form."""
    if isinstance(value, bytes):
        return {"$bytes": value.hex()}
    if isinstance(value, numpy.ndarray):
        return {
            "$array": {"dtype": value.dtype.name, "shape": list(value.shape), "items": value.ravel().tolist()}
        }
    if isinstance(value, memoryview):
        dtype = objects_module._FORMATS[value.format]
        items = value.tolist()
        for _ in range(value.ndim - 1):
            items = [x for row in items for x in row]
        return {"$array": {"dtype": dtype, "shape": list(value.shape or ()), "items": items}}
    if isinstance(value, list):
        return [neutral(item) for item in value]
    if isinstance(value, dict):
        return {key: neutral(item) for key, item in value.items()}
    return value


def from_neutral(value: Any) -> Any:
    if isinstance(value, list):
        return [from_neutral(item) for item in value]
    if isinstance(value, dict):
        if "$bytes" in value:
            return bytes.fromhex(value["$bytes"])
        if "$array" in value:
            spec = value["$array"]
            return numpy.array(spec["items"], dtype=spec["dtype"]).reshape(spec["shape"])
        return {key: from_neutral(item) for key, item in value.items()}
    return value


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
@pytest.mark.parametrize("with_numpy", [True, False], ids=["numpy", "memoryview"])
def test_vectors(case: dict[str, Any], with_numpy: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    if not with_numpy:
        monkeypatch.setattr(objects_module, "_numpy", lambda: None)
    handles = Handles()
    blobs = [bytes.fromhex(blob) for blob in case["blobs"]] if "blobs" in case else None
    if "error" in case:
        with pytest.raises(HandleError) as info:
            from_tree(case["tree"], handles, nobody, blobs)
        assert str(info.value) == case["error"]
        return
    revived = from_tree(case["tree"], handles, nobody, blobs)
    assert neutral(revived) == case["value"]
    if with_numpy:
        assert not any(isinstance(v, memoryview) for v in _leaves(revived))
    if case["both"]:
        assert to_tree(from_neutral(case["value"]), handles) == case["tree"]
        frames: list[Any] = []
        framed = to_tree(from_neutral(case["value"]), handles, frames)  # the same in binary frames
        assert from_tree(framed, handles, nobody, [bytes(f) for f in frames]).__class__ is revived.__class__
        assert neutral(from_tree(framed, handles, nobody, [bytes(f) for f in frames])) == case["value"]
        wrapped = outgoing(from_neutral(case["value"]), handles)
        assert incoming(wrapped, handles, nobody).__class__ is revived.__class__


def _leaves(value: Any) -> Iterator[Any]:
    if isinstance(value, list):
        for item in value:
            yield from _leaves(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _leaves(item)
    else:
        yield value


def test_plain_values_are_not_wrapped_and_a_dict_with_the_mark_is() -> None:
    handles = Handles()
    plain = [1, {"a": [2.5, None]}, (3, 4)]
    assert outgoing(plain, handles) is plain
    marked = {"$bothways": "tree", "value": 1}
    sent = outgoing(marked, handles)
    assert sent == {"$bothways": "tree", "value": {"$bothways": "object", "value": marked}}
    assert incoming(sent, handles, nobody) == marked
    unwrapped = {"$bothways": "bytes", "base64": "AA=="}  # not a tree: a conforming peer wraps it
    assert incoming(unwrapped, handles, nobody) is unwrapped


class Counter:
    def __init__(self, start: int = 0) -> None:
        self.n = start

    def add(self, k: int = 1) -> int:
        self.n += k
        return self.n

    def __len__(self) -> int:
        return self.n

    def _hidden(self) -> None:
        pass


def test_handles_lend_new_ids_and_announce_a_class_once() -> None:
    handles = Handles()
    first, second = handles.lend(Counter()), handles.lend(Counter(2))
    assert first == {
        "$bothways": "ref",
        "id": 1,
        "kind": "object",
        "type": "Counter",
        "class": 1,
        "methods": ["add"],
    }
    assert second == {"$bothways": "ref", "id": 2, "kind": "object", "type": "Counter", "class": 1}
    assert handles.lend(len)["kind"] == "function"
    assert handles.lend(Counter)["kind"] == "class"
    assert handles.lend(iter([1]))["kind"] == "iterator"
    assert len(handles) == 5
    with pytest.raises(HandleError, match=r"handle 9 is not held here \(released, or never lent\)") as info:
        handles.take(9)
    assert info.value.rpc_code == objects_module.HANDLE_NOT_HELD  # type: ignore[attr-defined]
    handles.drop([1, 2, 77])
    assert len(handles) == 3
    handles.clear()
    assert len(handles) == 0


def test_dropping_a_generator_closes_it() -> None:
    closed: list[bool] = []

    def numbers() -> Iterator[int]:
        try:
            yield from range(10)
        finally:
            closed.append(True)

    handles = Handles()
    generator = numbers()
    next(generator)
    handles.lend(generator)
    handles.drop([1])
    assert closed == [True]


def test_lender_functions_serve_every_request_of_the_table() -> None:
    handles = Handles()
    serve = lender_functions(handles)
    assert sorted(serve) == sorted(objects_module.OBJECT_METHODS)  # (js/test/objects.test.js too)
    assert serve["$/handles"]() == 0
    counter_id = handles.lend(Counter(5))["id"]
    class_id = handles.lend(Counter)["id"]
    assert serve["$/get"](counter_id, "n") == 5
    serve["$/set"](counter_id, "n", 7)
    assert serve["$/call"](counter_id, "add", [3], None) == 10
    assert serve["$/call"](counter_id, "add", [], {"k": 2}) == 12
    assert serve["$/len"](counter_id) == 12
    assert serve["$/repr"](counter_id).startswith("<tests.unit.test_objects.Counter object")
    made = serve["$/new"](class_id, [1], None)
    assert isinstance(made, Counter) and made.n == 1
    assert serve["$/item"](handles.lend({"a": 1})["id"], "a") == 1
    assert serve["$/value"](handles.lend({"a": [1]})["id"]) == {"a": [1]}
    with pytest.raises(HandleError, match=r"handle \d+ \(Counter\) has no JSON value"):
        serve["$/value"](counter_id)
    iterator = serve["$/iter"](handles.lend([1, 2, 3])["id"])
    iterator_id = handles.lend(iterator.value)["id"]
    assert serve["$/next"](iterator_id, 2) == {"items": [1, 2], "done": False}
    assert serve["$/next"](iterator_id, 2) == {"items": [3], "done": True}
    with pytest.raises(HandleError):
        handles.take(iterator_id)  # an exhausted iterator is let go by the lender
    with pytest.raises(ValueError, match="positive number"):
        serve["$/next"](counter_id, 0)


# -- two blocking sides ----------------------------------------------------------------------


class Pair:
    """Two Connections over a socketpair; ``b`` serves ``functions`` in a thread of its own."""

    def __init__(self, functions: dict[str, Any], binary: bool = False) -> None:
        self._ours, self._theirs = socket.socketpair()
        fd_a, fd_b = self._ours.fileno(), self._theirs.fileno()
        self.a = Connection(StdioChannel(stdin_fd=fd_a, stdout_fd=fd_a, binary=binary))
        self.b = Connection(StdioChannel(stdin_fd=fd_b, stdout_fd=fd_b, binary=binary), functions)
        self.a.binary = self.b.binary = binary
        self._server = threading.Thread(target=self.b.serve, daemon=True)
        self._server.start()

    def __enter__(self) -> Pair:
        return self

    def __exit__(self, *exc: object) -> None:
        self.a.close()
        self._ours.shutdown(socket.SHUT_RDWR)  # (the channel leaves the socket to its owner)
        self._server.join(5)
        assert not self._server.is_alive()
        self.b.close()
        self._ours.close()
        self._theirs.close()


def numbers(n: int, closed: list[int]) -> Iterator[int]:
    try:
        yield from range(n)
    finally:
        closed.append(n)


def test_blocking_objects_methods_attributes_items_and_len() -> None:
    with Pair({"Counter": Counter, "table": lambda: ref({"a": 1})}) as pair:
        counter = pair.a.call("Counter", 5)
        assert isinstance(counter, RemoteObject)
        assert counter.add(2) == 7 and counter.add(k=3) == 10
        assert counter.n == 10 and len(counter) == 10
        counter.n = 1
        assert counter.add() == 2
        assert repr(counter).startswith("<tests.unit.test_objects.Counter object")
        with pytest.raises(AttributeError, match="starting with '_'"):
            counter._hidden()
        with pytest.raises(RemoteError, match="has no attribute 'missing'") as info:
            counter.missing  # noqa: B018 - the read is the test
        assert info.value.remote_type == "AttributeError"
        table = pair.a.call("table")
        assert table["a"] == 1 and value(table) == {"a": 1}
        with pytest.raises(RemoteError, match="KeyError"):
            table["b"]
        release(counter)
        with pytest.raises(HandleError, match="was released"):
            counter.add()
        assert "released" in repr(counter)


def test_blocking_streams_are_pulled_in_batches_and_a_break_closes_the_generator() -> None:
    closed: list[int] = []
    pulls: list[int] = []
    with Pair({"numbers": lambda n: numbers(n, closed), "noop": lambda: None}) as pair:
        real = pair.b.exposed.functions["$/next"]

        def counted(handle_id: int, n: int) -> Any:
            pulls.append(n)
            return real(handle_id, n)

        pair.b.exposed.functions["$/next"] = counted
        assert sum(pair.a.call("numbers", 100_000)) == sum(range(100_000))
        assert pulls[:4] == [64, 128, 256, 512] and max(pulls) == 4096  # credit, not everything
        assert closed == [100_000]
        for item in (stream := pair.a.call("numbers", 10_000)):
            if item == 3:
                break
        del stream, item
        gc.collect()
        pair.a.call("noop")  # any message carries the release
        assert closed == [100_000, 10_000]
        assert len(pair.b.handles) == 0


def test_blocking_callbacks_from_four_threads_after_the_call_returned_arrive_in_order() -> None:
    workers: list[threading.Thread] = []

    def later(callback: Any, n: int) -> str:
        def work(thread: int) -> None:
            for i in range(n):
                callback(thread, i)

        workers.extend(threading.Thread(target=work, args=(thread,), daemon=True) for thread in range(4))
        for worker in workers:
            worker.start()
        return "started"

    got: list[tuple[int, int]] = []
    done = threading.Event()

    def callback(thread: int, i: int) -> None:
        got.append((thread, i))
        if len(got) == 4 * 2500:
            done.set()

    with Pair({"later": later}) as pair:
        assert pair.a.call("later", callback, 2500) == "started"
        assert done.wait(30)
        for worker in workers:  # (their last answers are on the way)
            worker.join(10)
        for thread in range(4):
            assert [i for t, i in got if t == thread] == list(range(2500))


def test_blocking_calls_nest_both_ways() -> None:
    def bounce(callback: Any, depth: int) -> int:
        return depth if depth == 0 else callback(depth - 1)

    with Pair({"bounce": bounce}) as pair:
        bouncer = pair.a.call("bounce", lambda d: d, 0)
        assert bouncer == 0

        def ours(depth: int) -> int:
            return 0 if depth == 0 else pair.a.call("bounce", ours, depth) + 1

        assert ours(50) == 50  # Python -> Python -> ... fifty deep, each side waiting on the other


def test_blocking_bytes_and_arrays_cross_both_ways_equal() -> None:
    with Pair({"echo": lambda x: x, "kinds": lambda x: [type(v).__name__ for v in x]}) as pair:
        data = bytes(range(256)) * 1000
        matrix = numpy.arange(12.0).reshape(3, 4)
        back = pair.a.call("echo", [data, matrix, numpy.int32(7), bytearray(b"ab")])
        assert back[0] == data and back[2] == 7 and back[3] == b"ab"
        assert back[1].dtype == numpy.float64 and (back[1] == matrix).all()
        assert pair.a.call("kinds", [data, matrix]) == ["bytes", "ndarray"]


@pytest.mark.parametrize("binary", [False, True], ids=["base64", "binary frames"])
def test_bytes_and_arrays_take_binary_frames_where_both_sides_read_them(binary: bool) -> None:
    with Pair({"echo": lambda x: x}, binary=binary) as pair:
        sent: list[int] = []
        send_bytes = pair.a._send_bytes
        assert send_bytes is not None

        def counted(data: bytes) -> Any:
            sent.append(len(data))
            return send_bytes(data)

        pair.a._send_bytes = counted  # what the connection writes with
        data = bytes(range(256)) * 20_000  # 5 MB
        floats = numpy.linspace(0, 1, 500_000)  # 4 MB (in base64: 12 MB, under the line limit)
        back = pair.a.call("echo", {"data": data, "floats": floats, "small": b"\n#blob 3\n"})
        assert back["data"] == data and numpy.array_equal(back["floats"], floats)
        assert back["small"] == b"\n#blob 3\n"
        payload = len(data) + floats.nbytes
        assert payload < sum(sent) < payload * 1.01 if binary else sum(sent) > payload * 1.3  # base64: 4/3


def test_a_million_handles_keep_the_lenders_table_bounded() -> None:
    with Pair({"many": lambda n: [Counter(i) for i in range(n)]}) as pair:
        most = 0
        for _ in range(1000):
            batch = pair.a.call("many", 1000)
            assert batch[999]._bw_id > 0
            del batch  # every proxy goes: their ids leave with the next call
            most = max(most, len(pair.b.handles))
        pair.a.call("many", 0)
        assert most <= 2000
        assert len(pair.b.handles) == 0


def test_the_end_of_the_connection_lets_go_of_every_handle() -> None:
    closed: list[int] = []
    pair = Pair({"numbers": lambda n: numbers(n, closed), "Counter": Counter})
    with pair:
        stream = pair.a.call("numbers", 1000)
        assert next(stream) == 0  # the generator runs, suspended in its loop
        pair.a.call("Counter")
        assert len(pair.b.handles) == 2
    assert len(pair.b.handles) == 0 and closed == [1000]  # its finally ran
    with pytest.raises(TransportClosed, match="the connection was closed"):
        for _ in range(100):  # past the batch in hand
            next(stream)


# -- two asyncio sides -------------------------------------------------------------------------


def test_asyncio_objects_streams_callbacks_and_arrays() -> None:
    async def body(a: Peer, b: Peer) -> None:
        closed: list[int] = []
        b.expose(Counter, name="Counter")
        b.expose(lambda n: numbers(n, closed), name="numbers")

        async def twice(callback: Any, x: int) -> Any:
            return await callback(await callback(x))

        b.expose(twice)
        b.expose(lambda x: x, name="echo")

        counter = await a.call("Counter", 5)
        assert await counter.add(2) == 7
        assert await counter.n == 7
        total = 0
        async for item in await a.call("numbers", 10_000):
            total += item
        assert total == sum(range(10_000)) and closed == [10_000]
        stream = await a.call("numbers", 10_000)
        async for item in stream:
            if item == 5:
                break
        release(stream)
        await a.call("echo", 1)  # carries nothing: the release left at the loop's next turn
        assert closed == [10_000, 10_000]
        assert await a.call("twice", lambda x: x * 3, 2) == 18
        matrix = numpy.arange(6, dtype=numpy.int16).reshape(2, 3)
        back = await a.call("echo", {"m": matrix, "b": b"\x00\x01"})
        assert (back["m"] == matrix).all() and back["m"].dtype == numpy.int16 and back["b"] == b"\x00\x01"
        async with counter:
            pass
        with pytest.raises(HandleError, match="was released"):
            await counter.add(1)

    run(body)


def test_a_tree_as_deep_as_the_decoder_allows_is_revived() -> None:
    """Near the decoder's limit of 1,024 levels: revived, and an error's path is whole (the walk is
    iterative; tests/fuzz/corpus/objects/tree-nested-1021-deep.jsonl runs it at the default
    recursion limit)."""
    inner = '{"$bothways":"object","value":{"a":{"$bothways":"bytes","base64":"AA=="}}}'
    text = "[" * 1021 + inner + "]" * 1021
    value = from_tree(decode(text), Handles(), lambda *a: a)
    for _ in range(1021):
        (value,) = value
    assert value == {"a": b"\0"}
    bad = "[" * 1021 + '{"$bothways":"object","value":{"a":{"$bothways":7}}}' + "]" * 1021
    with pytest.raises(HandleError, match=r"^\$(\[0\]){1021}\.value\.a\.\$bothways: unknown marker kind 7$"):
        from_tree(decode(bad), Handles(), lambda *a: a)
