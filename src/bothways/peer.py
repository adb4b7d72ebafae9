"""Peer: JSON-RPC calls both ways over any AsyncChannel, on top of the sans-I/O RpcEndpoint.

    async with Peer(channel) as peer:
        peer.expose(math.hypot)                 # the other side may call "hypot"
        await peer.call("mean", [1, 2, 3])      # we call the other side's "mean"

Rules:
- Incoming messages are taken as soon as they are decoded: straight from the channel's protocol
  callback when it offers that (``deliver_to``: the stream channels of child processes), else by
  one reader task. A sync function is called right there and answered at once; an async
  function (or one that returns an awaitable) runs in a task of its own, so many calls are in
  flight both ways and a handler may call back into its caller.
- Arguments are checked against the function's signature first: a call that does not fit
  (missing or extra arguments, unknown keywords) is answered INVALID_PARAMS without running it.
- A handler that raises answers with the exception's type, message and traceback: the caller
  gets a RemoteError that reads like a local traceback. A result that cannot be encoded is
  answered INTERNAL_ERROR (in a batch too), never left without an answer.
- Cancelling a call (task cancel, or ``timeout=``) tells the other side, which cancels the handler.
- When the channel ends (the child exits, the socket closes), every pending call fails at once
  with that cause: never a hang.
- ``call`` sends at once and returns a future, as JavaScript's ``call`` returns a promise:
  ``await peer.call(...)``, or ``asyncio.gather`` thousands of them without a task each.
- Messages are encoded when they are made (an argument that cannot cross raises in ``call``)
  and written at once when the channel takes them without waiting (the usual case: no extra
  turn of the event loop). Calls made together (many in flight) and the answers to a chunk of
  requests gather and leave in one write, at the next turn of the loop; while the channel
  makes a write wait (a full pipe), one writer task finishes it and takes what was queued.
"""

from __future__ import annotations

import asyncio
import inspect
import sys
import threading
import time
import traceback
import types
from collections.abc import Awaitable, Callable, Coroutine, Generator, Mapping
from types import TracebackType
from typing import Any

from .errors import BothwaysError, CallTimeout, EncodeError, HandleError, TransportClosed, TransportError
from .objects import (
    MARK,
    RELEASE_METHOD,
    AsyncRemoteObject,
    Handles,
    RemoteObject,
    incoming,
    lender_functions,
    outgoing,
)
from .rpc import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    METHOD_NOT_FOUND,
    REQUEST_CANCELLED,
    SERVER_ERROR,
    Cancelled,
    ErrorResponse,
    Notification,
    Request,
    Response,
    RpcEndpoint,
)
from .transports.base import AsyncChannel, Channel, log
from .wire import BACKEND, Binary, encode, frame_header

__all__ = ["Caller", "Connection", "Exposed", "Peer", "answer_calls", "encoded", "finish"]

_BACKLOG = 1024  # answers held while requests keep arriving, at most: then they are written
_RELEASE_BATCH = 256  # ids of collected proxies written without waiting for another message
_RELEASE_WAIT = 0.01  # seconds the ids of collected proxies wait for a message to go with
_PATIENCE = 0.002  # seconds a waiting caller leaves the reading to a thread running what it read
_PLAIN = frozenset({type(None), bool, int, float, str, list, dict})  # never awaitable: no check
_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


class _Signature:
    """What a function accepts: a quick check for plain positional calls, ``bind`` for the rest."""

    __slots__ = ("signature", "least", "most")

    def __init__(self, signature: inspect.Signature | None) -> None:
        self.signature = signature
        self.least = 0
        self.most = -1  # -1: the quick check does not apply, ``bind`` decides
        if signature is None:
            return
        params = list(signature.parameters.values())
        if any(p.kind is p.KEYWORD_ONLY and p.default is p.empty for p in params):
            return  # a required keyword-only argument: positional calls never fit
        positional = [p for p in params if p.kind in _POSITIONAL]
        self.least = sum(p.default is p.empty for p in positional)
        variadic = any(p.kind is p.VAR_POSITIONAL for p in params)
        self.most = 1 << 30 if variadic else len(positional)

    def refuses(self, args: list[Any], kwargs: dict[str, Any]) -> str | None:
        """Why ``args``/``kwargs`` do not fit (the text of Python's TypeError), or None."""
        if not kwargs and self.least <= len(args) <= self.most:
            return None
        if self.signature is None:
            return None  # no signature to check (some builtins): let the call decide
        try:
            self.signature.bind(*args, **kwargs)
        except TypeError as exc:
            return str(exc)
        return None


def _signature_of(function: Callable[..., Any]) -> _Signature:
    try:
        return _Signature(inspect.signature(function))
    except (TypeError, ValueError):
        return _Signature(None)


class Exposed:
    """The functions one side lets the other call, by name, with their signatures (a call that
    does not fit is refused before it runs). What Peer and ``answer_calls`` both serve from."""

    __slots__ = ("functions", "_signatures")

    def __init__(self, functions: Mapping[str, Callable[..., Any]] | None = None) -> None:
        self.functions: dict[str, Callable[..., Any]] = dict(functions or {})
        self._signatures: dict[str, tuple[Callable[..., Any], _Signature]] = {}

    def _learn(self, name: str, function: Callable[..., Any]) -> _Signature:
        """Reads ``function``'s signature and keeps it for the calls to come (``answer`` looks
        there first; a function exposed again under ``name`` is read again)."""
        signature = _signature_of(function)
        self._signatures[name] = (function, signature)
        return signature

    def answer(self, endpoint: RpcEndpoint, request: Request) -> Any:
        """Runs the function ``request`` names and answers it on ``endpoint`` (its result, or the
        error: unknown method, arguments that do not fit, the exception it raised). A function
        that gives an awaitable is not answered yet: the awaitable is returned, for ``finish``.
        Returns None otherwise."""
        function = self.functions.get(request.method)
        if function is None:
            endpoint.respond_error(request.id, METHOD_NOT_FOUND, f"Method not found: {request.method}")
            return None
        params = request.params
        args: list[Any] = params if type(params) is list else []
        kwargs: dict[str, Any] = params if type(params) is dict else {}
        cached = self._signatures.get(request.method)  # (the function, its signature)
        signature = cached[1] if cached is not None and cached[0] is function else None
        if signature is None:
            signature = self._learn(request.method, function)
        if kwargs or not signature.least <= len(args) <= signature.most:  # else: it fits
            refused = signature.refuses(args, kwargs)
            if refused is not None:
                endpoint.respond_error(request.id, INVALID_PARAMS, f"Invalid params: {refused}")
                return None
        try:
            result = function(*args, **kwargs) if kwargs else function(*args)
        except Exception as exc:  # noqa: BLE001 - every error goes back to the caller
            _respond_exception(endpoint, request.id, exc)
            return None
        if type(result) not in _PLAIN and inspect.isawaitable(result):
            return result
        endpoint.respond(request.id, result)
        return None


async def finish(endpoint: RpcEndpoint, request_id: Any, awaitable: Any) -> None:
    """Awaits what a function gave (``Exposed.answer``) and answers ``request_id`` with its result,
    its exception, or REQUEST_CANCELLED when the await is cancelled."""
    try:
        result = await awaitable
    except asyncio.CancelledError:
        endpoint.respond_error(request_id, REQUEST_CANCELLED, "Request cancelled")
    except Exception as exc:  # noqa: BLE001 - every error goes back to the caller
        _respond_exception(endpoint, request_id, exc)
    else:
        endpoint.respond(request_id, result)


def encoded(
    messages: list[Any], handles: Handles | None = None, binary: bool = False
) -> tuple[list[tuple[Any, bytes]], EncodeError | None]:
    """Each of ``messages`` (an endpoint's ``messages_to_send()``) with its NDJSON line. Params and
    results that are not plain JSON go as trees (spec/PROTOCOL.md 10: objects lent to the other
    side through ``handles``, bytes and arrays packed: in binary frames written before the line
    when ``binary``, else base64). A result that cannot be encoded is replaced by its
    INTERNAL_ERROR answer; a request or notification that cannot be encoded is left out, and the
    first such error is returned with the others."""
    pairs = []
    failure: EncodeError | None = None
    for message in messages:
        try:
            pairs.append(_encoded_one(message, handles, binary))
        except EncodeError as exc:
            repaired = _repaired(message)
            if repaired is None:
                failure = failure or exc
                continue
            pairs.append((repaired, encode(repaired)))
    return pairs, failure


if BACKEND == "orjson":
    import orjson

    _PLAIN_OPTIONS = orjson.OPT_APPEND_NEWLINE | orjson.OPT_STRICT_INTEGER

    def _numpy_scalar(value: Any) -> Any:
        """orjson's hook: numpy scalars are numbers; anything else it does not know is refused,
        and the message takes the slow path (lent, packed, or judged by ``encode``)."""
        kind = type(value)  # (the class, never the value: a remote object would be asked)
        if hasattr(kind, "dtype") and hasattr(kind, "item") and value.shape == ():
            return value.item()
        raise TypeError

    def _plain_line(message: Any, _dumps: Any = orjson.dumps, _options: int = _PLAIN_OPTIONS) -> bytes | None:
        try:
            line: bytes = _dumps(message, _numpy_scalar, _options)
            return line
        except orjson.JSONEncodeError:
            return None

else:

    def _plain_line(message: Any, _dumps: Any = None, _options: int = 0) -> bytes | None:
        return None  # the stdlib backend: every message is walked (the slow path)


def _carried(message: Any) -> Any:
    """The params of a request or notification, or the result of an answer (None otherwise)."""
    return message.get("params") if "method" in message else message.get("result")


def _marked(message: Any) -> bool:
    """Whether a message's params or result could be mistaken for a tree (or is a batch)."""
    if type(message) is not dict:
        return True
    carried = _carried(message)
    return type(carried) is dict and MARK in carried


def _encoded_one(message: Any, handles: Handles | None, binary: bool) -> tuple[Any, bytes]:
    if not _marked(message):
        line = _plain_line(message)
        if line is not None:
            return message, line
    if handles is None:
        return message, encode(message)
    blobs: list[Any] | None = [] if binary else None
    if type(message) is dict:
        message = _exported(message, handles, blobs)
    else:  # a batch of answers
        message = [_exported(answer, handles, blobs) for answer in message]
    line = encode(message)
    if not blobs:
        return message, line
    parts: list[Any] = []
    for blob in blobs:  # the frames before the message they belong to (spec/PROTOCOL.md 2)
        parts += (frame_header(len(blob) if type(blob) is not memoryview else blob.nbytes), blob)
    parts.append(line)
    return message, b"".join(parts)


def _exported(message: Any, handles: Handles, blobs: list[Any] | None) -> Any:
    """``message`` with its params or result as a tree when they are not plain JSON."""
    if type(message) is not dict:
        return message
    key = "params" if "method" in message else "result"
    if key not in message:
        return message
    carried = outgoing(message[key], handles, blobs)
    return message if carried is message[key] else {**message, key: carried}


def _write(
    channel: Channel, send_bytes: Callable[[bytes], Any] | None, pairs: list[tuple[Any, bytes]]
) -> None:
    """Writes ``encoded`` pairs on a blocking channel: their lines in one ``send_bytes`` on a
    stream channel (``send_bytes`` is its method), else the messages in one ``send_many``."""
    if send_bytes is None:
        channel.send_many(message for message, _ in pairs)
    else:
        send_bytes(pairs[0][1] if len(pairs) == 1 else b"".join(line for _, line in pairs))


def answer_calls(channel: Channel, functions: Mapping[str, Callable[..., Any]] | Exposed) -> None:
    """Answers calls to ``functions`` on a blocking stream channel until the other side closes it.

    What ``python -m bothways.host`` runs when no function is ``async def`` and there is no
    thread pool: no event loop, a plain blocking read in this thread, so a round trip costs
    little more than the function. It is ``Connection(channel, functions).serve()``: the served
    functions may call back (through the proxies of what the other side passed them), from
    this thread or any other.
    """
    Connection(channel, functions).serve()


class _Locked:
    """The endpoint's answering half, taken under the connection's lock: what ``Exposed.answer``
    and ``finish`` use while the function itself runs without it."""

    __slots__ = ("_endpoint", "_lock")

    def __init__(self, endpoint: RpcEndpoint, lock: threading.Lock) -> None:
        self._endpoint = endpoint
        self._lock = lock

    def respond(self, request_id: Any, result: Any) -> None:
        with self._lock:
            self._endpoint.respond(request_id, result)

    def respond_error(self, request_id: Any, code: int, message: str, data: Any = None) -> None:
        with self._lock:
            self._endpoint.respond_error(request_id, code, message, data)


class Connection:
    """Calls both ways over a blocking stream channel, from any thread, with no event loop.

    ``call`` sends the request and waits for its answer in the calling thread. Threads may call
    at once, with their calls in flight together: one of the waiting threads reads for all and
    hands each answer to its caller, then another takes over. Requests from the other side
    (the ``functions`` served here, and the objects lent to it: spec/PROTOCOL.md 10) run in the
    thread that read them, with the reading handed on first, so a function may call the other
    side back, which may call us again, to any depth. ``serve()`` reads until the channel ends
    (a process that serves); a connection that lends objects and has nobody reading starts a
    daemon thread that reads for it, so the other side can call a callback at any time.

    A Peer's rules, as a caller: ``timeout`` per call (the other side is told to stop), a
    RemoteError for a remote exception, and when the channel ends every waiting call fails with
    the cause (ChildExited with the exit code and stderr tail, TransportClosed). A timeout needs
    a channel with ``readable(timeout)`` (``Child`` has it); on others a call waits as long as
    it takes.
    """

    def __init__(
        self, channel: Channel, functions: Mapping[str, Callable[..., Any]] | Exposed | None = None
    ) -> None:
        self.channel = channel
        self.endpoint = RpcEndpoint()
        self.exposed = functions if isinstance(functions, Exposed) else Exposed(functions)
        self.handles = Handles()
        self.exposed.functions.update(lender_functions(self.handles))
        self._lock = threading.Lock()  # the endpoint, the answers, who reads
        self._answered = threading.Condition(self._lock)
        self._answering = _Locked(self.endpoint, self._lock)
        self._sending = threading.Lock()  # one write at a time
        self._answers: dict[Any, Response | ErrorResponse] = {}
        self._reading = False
        self._waiting = 0  # threads waiting for the reader
        self._ended: BothwaysError | None = None
        self._reader: threading.Thread | None = None  # reads while nobody waits (objects lent)
        self._serving = False  # serve() reads for everyone
        # threads running the requests they read (they read again after): ident -> how many
        self._running: dict[int, int] = {}
        self._release_planned = False  # a timer will send the ids of collected proxies
        self._blobs: list[bytes] = []  # binary frames received, for the message after them
        # bytes and arrays travel in binary frames: both sides said so in the handshake (and the
        # channel is a stream); else base64
        self.binary = False
        self._loops = threading.local()  # a private event loop per thread, for async functions
        self._readable: Callable[[float | None], bool] | None = getattr(channel, "readable", None)
        self._send_bytes: Callable[[bytes], Any] | None = getattr(channel, "send_bytes", None)

    def call(self, method: str, *args: Any, timeout: float | None = None, **kwargs: Any) -> Any:
        """Calls ``method`` with positional or keyword arguments (not both); returns the result.

        Raises:
            RemoteError: the remote function raised (type, message, traceback inside).
            CallTimeout: no answer within ``timeout`` seconds (the other side is told to stop).
            EncodeError: an argument cannot be sent (nothing was sent).
            TransportClosed, ChildExited: the connection ended before the answer.
        """
        if args and kwargs:
            raise TypeError("JSON-RPC takes positional or keyword arguments, not both")
        return self.request(method, list(args) if args else (kwargs or None), timeout)

    def request(self, method: str, params: Any, timeout: float | None = None) -> Any:
        """``call`` with the params as they go on the wire (a list, a dict or None)."""
        with self._lock:
            if self._ended is not None:
                raise self._ended
            self._queue_releases()
            call_id = self.endpoint.request(method, params)
            pairs, failure = encoded(self.endpoint.messages_to_send(), self.handles, self.binary)
            if failure is not None:  # our request cannot be encoded: it never leaves
                self.endpoint.forget(call_id)
        try:
            self._send(pairs)
        except BaseException:
            with self._lock:
                self.endpoint.forget(call_id)
            raise
        if failure is not None:
            raise failure
        if self.handles and self._reader is None and not self._serving:
            self._read_in_background()  # the other side may call what we lent at any time
        answer = self._wait_for(call_id, method, timeout)
        if isinstance(answer, ErrorResponse):
            raise answer.error
        return answer.result  # (revived by the reader: proxies, bytes, arrays)

    def serve(self) -> None:
        """Reads and answers until the other side closes the channel (a process that serves)."""
        background = self._reader is not None  # (our own reader thread: others call meanwhile)
        self._serving = True
        try:
            if background or not self._serve_plainly():
                self._wait_for(None, "", None)
        except BothwaysError:
            pass  # the channel ended: what serving waits for

    def _serve_plainly(self) -> bool:
        """Serves while only plain requests come (the usual module host), with no lock: no
        proxy exists here yet, so no other thread can call through this connection. At the
        first message that is anything else (a tree, which may bring proxies; an answer; a
        frame; a batch), hands what it read to the general path and returns False; returns
        True at the channel's end."""
        send_bytes = self._send_bytes
        if send_bytes is None or self._answers or self.endpoint.pending:
            return False
        endpoint, answer = self.endpoint, self._answer
        receive, receive_many = endpoint.receive, self.channel.receive_many
        while True:
            try:
                messages = receive_many()
            except (BothwaysError, OSError):
                return False  # the general path reads the end again and says so
            requests: list[Request] = []  # (run once the chunk is read, as _take's are)
            for index, message in enumerate(messages):
                if type(message) is not dict or "method" not in message or _marked(message):
                    with self._lock:
                        requests += self._take(messages[index:])
                    if requests:
                        self._run(requests)
                    return False
                for event in receive(message):
                    if type(event) is Request:
                        requests.append(event)
                    elif type(event) is Notification and event.method == RELEASE_METHOD:
                        self._drop(event.params)
            for request in requests:
                answer(endpoint, request)
            answers = endpoint.messages_to_send()
            if not answers:
                continue
            line = _one_plain_line(answers)
            try:
                if line is not None:
                    send_bytes(line)
                else:
                    pairs, _ = encoded(answers, self.handles, self.binary)
                    if pairs:
                        _write(self.channel, send_bytes, pairs)
            except BothwaysError:
                return False  # the general path reads the end

    def close(self) -> None:
        """Closes the channel; calls still waiting fail with TransportClosed."""
        with self._lock:
            self._ended = self._ended or TransportClosed("the connection was closed")
            self._answered.notify_all()
        self.channel.close()
        self._let_go()

    def release_soon(self, now: bool) -> None:
        """Proxies were let go (``handles.released``): their ids go with our next message; an
        explicit release (``now``) or a long queue of collected ones is written at once, when
        nobody is writing. Safe from a finalizer in any thread."""
        if self._ended is not None or sys.is_finalizing():
            return  # the handles went with the connection (or with the interpreter)
        if not now and len(self.handles.released) < _RELEASE_BATCH:
            if not self._release_planned:  # no message may come soon: a timer takes them
                self._release_planned = True
                timer = threading.Timer(_RELEASE_WAIT, self._send_releases)
                timer.daemon = True
                timer.start()
            return
        if self._ended is not None or not self._sending.acquire(blocking=False):
            return
        try:
            ids = self.handles.take_released()
            if ids:
                _write(self.channel, self._send_bytes, encoded([_release_message(ids)])[0])
        except BothwaysError:
            pass  # the channel is gone: so are the handles
        finally:
            self._sending.release()

    def _send_releases(self) -> None:
        self._release_planned = False
        if self.handles.released:
            self.release_soon(True)

    def _borrow(
        self, handle_id: int, kind: str, type_name: str, methods: frozenset[str] | None
    ) -> RemoteObject:
        return RemoteObject(self, handle_id, kind, type_name, methods)

    def _queue_releases(self) -> None:
        """(With the lock held.) The ids let go since our last message go out with the next one."""
        if self.handles.released:
            ids = self.handles.take_released()
            if ids:
                self.endpoint.notify(RELEASE_METHOD, ids)

    def _let_go(self) -> None:
        for closing in self.handles.clear():
            closing.close()  # an async generator's aclose(), never awaited: nobody is there

    def _read_in_background(self) -> None:
        with self._lock:
            if self._reader is not None or self._serving:
                return
            self._reader = threading.Thread(target=self.serve, name="bothways.connection", daemon=True)
        self._reader.start()

    def _send(self, pairs: list[tuple[Any, bytes]]) -> None:
        if pairs:
            with self._sending:
                _write(self.channel, self._send_bytes, pairs)

    def _send_unlocked(self, pairs: list[tuple[Any, bytes]]) -> None:
        """Sends with the lock (held by the caller) released meanwhile. A channel that is gone
        already is not an error here: the reader sees its end."""
        if not pairs:
            return
        self._lock.release()
        try:
            self._send(pairs)
        except BothwaysError:
            pass
        finally:
            self._lock.acquire()

    def _wait_for(self, call_id: Any, method: str, timeout: float | None) -> Response | ErrorResponse:
        """Waits for the answer to ``call_id`` (None: for the end), reading for every caller
        while nobody else does."""
        deadline = None if timeout is None else time.monotonic() + timeout
        patient = False  # we gave a thread running what it read the time to read on
        with self._lock:
            while True:
                answer = self._answers.pop(call_id, None)
                if answer is not None:
                    return answer
                if self._ended is not None:
                    raise self._ended
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    if self.endpoint.cancel(call_id):  # tell the other side to stop
                        self._send_unlocked(encoded(self.endpoint.messages_to_send())[0])
                    raise CallTimeout(f"{method}: no answer within {timeout} s")
                if self._reading or (not patient and self._running and self._others_running()):
                    # Someone reads (and wakes us when answers come), or will read again once it
                    # has run the requests it read (usually a callback, quickly): taking the
                    # reading over would only pass it to and fro between threads. We look again
                    # every _PATIENCE: should the requests take longer, we read.
                    patient = not self._reading
                    self._waiting += 1
                    try:
                        self._answered.wait(_PATIENCE if left is None or left > _PATIENCE else left)
                    finally:
                        self._waiting -= 1
                    continue
                patient = False
                requests = self._read(left)
                if requests:
                    me = threading.get_ident()
                    running = self._running
                    running[me] = running.get(me, 0) + 1  # we read again after: see above
                    self._lock.release()
                    try:
                        self._run(requests)
                    finally:
                        self._lock.acquire()
                        if running[me] == 1:
                            del running[me]
                        else:
                            running[me] -= 1

    def _others_running(self) -> bool:
        """Whether a thread other than this one runs requests it read (and will read again)."""
        running = self._running
        return bool(running) and (len(running) > 1 or threading.get_ident() not in running)

    def _read(self, left: float | None) -> list[Request]:
        """One read for every caller (called with the lock held; released while reading).
        Answers go to their callers; returns the requests to run."""
        self._reading = True
        self._lock.release()
        messages: list[Any] = []
        ended: BothwaysError | None = None
        try:
            if left is None or self._readable is None or self._readable(left):
                messages = self.channel.receive_many()
        except BothwaysError as exc:  # TransportClosed, ChildExited with its stderr tail...
            ended = exc
        except OSError as exc:  # the channel was closed under our read
            ended = TransportClosed(f"the channel failed: {exc}")
        finally:
            self._lock.acquire()
            self._reading = False
        if ended is not None:
            self._ended = self._ended or ended
            self.endpoint.fail_all(ended)
            if self._waiting:
                self._answered.notify_all()  # the end
            self._lock.release()
            try:
                self._let_go()
            finally:
                self._lock.acquire()
            return []
        return self._take(messages)

    def _take(self, messages: list[Any]) -> list[Request]:
        """(With the lock held.) What ``_read`` read: answers to their callers (revived), frames
        kept for the next message; returns the requests to run."""
        requests: list[Request] = []
        endpoint = self.endpoint
        blobs = self._blobs
        answered = len(self._answers)
        for message in messages:
            if type(message) is Binary:  # a frame for the next message
                blobs.append(message.data)
                continue
            for event in endpoint.receive(message):
                if type(event) is Request:  # (the usual case first)
                    params = event.params
                    if type(params) is dict and MARK in params:
                        try:
                            event.params = incoming(params, self.handles, self._borrow, blobs)
                        except HandleError as exc:
                            endpoint.respond_error(event.id, INVALID_PARAMS, f"Invalid params: {exc}")
                            continue
                    requests.append(event)
                elif isinstance(event, Response):
                    if type(event.result) is dict:
                        try:
                            event.result = incoming(event.result, self.handles, self._borrow, blobs)
                        except HandleError as exc:
                            self._answers[event.id] = ErrorResponse(event.id, exc)
                            continue
                    self._answers[event.id] = event
                elif isinstance(event, ErrorResponse):
                    if event.id is not None:
                        self._answers[event.id] = event
                elif isinstance(event, Notification) and event.method == RELEASE_METHOD:
                    self._drop(event.params)
            if blobs:
                blobs.clear()
        if self._waiting and len(self._answers) != answered:  # (notify is Python code: not for nobody)
            self._answered.notify_all()  # their answers
        if endpoint._outbox:  # error answers the endpoint queued
            self._send_unlocked(encoded(endpoint.messages_to_send())[0])
        return requests

    def _drop(self, ids: Any) -> None:
        if type(ids) is list:
            for closing in self.handles.drop(ids):
                closing.close()

    def _answer(self, endpoint: RpcEndpoint, request: Request) -> None:
        """Runs one request in this thread; the answer waits in ``endpoint``. A coroutine
        function runs to its end on this thread's own event loop."""
        pending = self.exposed.answer(endpoint, request)
        if pending is not None:
            loop = getattr(self._loops, "loop", None)
            if loop is None:
                loop = self._loops.loop = asyncio.new_event_loop()
            loop.run_until_complete(finish(endpoint, request.id, pending))

    def _run(self, requests: list[Request]) -> None:
        """Runs requests in this thread (the lock is not held) and sends their answers."""
        for request in requests:  # (their params revived by the reader)
            self._answer(self._answering, request)  # type: ignore[arg-type]
        with self._lock:
            if self.handles.released:
                self._queue_releases()
            messages = self.endpoint.messages_to_send()
        try:
            line = _one_plain_line(messages) if self._send_bytes is not None else None
            if line is not None:  # the usual case: one answer
                with self._sending:
                    self._send_bytes(line)  # type: ignore[misc]
                return
            pairs, _ = encoded(messages, self.handles, self.binary)
            if pairs:
                self._send(pairs)
        except BothwaysError:
            pass  # the reader sees the end


Caller = Connection  # the name of its first version, which only called


def _one_plain_line(messages: list[Any]) -> bytes | None:
    """The line of ``messages`` when they are one message with nothing to walk (the usual single
    answer), else None."""
    return _plain_line(messages[0]) if len(messages) == 1 and not _marked(messages[0]) else None


def _release_message(ids: list[int]) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "method": RELEASE_METHOD, "params": ids}


class _Answer(asyncio.Future[Any]):
    """The future of one call's answer: cancelling it (or the task awaiting it) gives up the call
    and tells the other side to stop."""

    __slots__ = ("_peer", "_call_id")  # set by Peer.call (no __init__ here: one call less each)
    _peer: Peer
    _call_id: Any

    def cancel(self, msg: Any = None) -> bool:
        if not super().cancel(msg):
            return False
        self._peer._give_up(self._call_id)
        return True


@types.coroutine
def _rest_of(steps: Generator[Any, None, Any], waiting_on: Any) -> Generator[Any, Any, Any]:
    """Runs the rest of an awaitable that was started by hand (``steps`` is its ``__await__()``)
    and now waits on ``waiting_on``: what ``await`` would have done from there on."""
    while True:
        try:
            sent = yield waiting_on
        except GeneratorExit:  # we are being closed: so is it
            steps.close()
            raise
        except BaseException as exc:  # cancelled while waiting: the awaitable decides
            try:
                waiting_on = steps.throw(exc)
            except StopIteration as done:
                return done.value
        else:
            try:
                waiting_on = steps.send(sent)
            except StopIteration as done:
                return done.value


class Peer:
    """Calls both ways over ``channel``. Use ``async with``; ``close()`` closes the channel."""

    def __init__(self, channel: AsyncChannel) -> None:
        self.channel = channel
        self.endpoint = RpcEndpoint()
        self.exposed = Exposed()
        self.handles = Handles()  # the objects we lend, the other side's classes (spec 10)
        self.exposed.functions.update(lender_functions(self.handles))
        self.functions = self.exposed.functions  # name -> function: what ``expose`` fills
        self.notification_handler: Callable[[str, Any], Any] | None = None
        self._waiting: dict[Any, asyncio.Future[Any]] = {}
        self._timers: dict[Any, asyncio.TimerHandle] = {}
        self._serving: dict[Any, asyncio.Task[None]] = {}
        self._reader: asyncio.Future[None] | None = None  # a reader task, or the end of deliveries
        self._closed: BothwaysError | None = None
        # a stream channel takes encoded lines, many in one write; any other one value per send
        self._send_bytes: Callable[[bytes], Awaitable[Any]] | None = getattr(channel, "send_bytes", None)
        self._out: list[Any] = []  # encoded lines (or values) waiting to be written
        self._writing = False  # a write is under way: what is posted meanwhile goes after it
        self._writer: asyncio.Task[None] | None = None  # finishes a write that had to wait
        self._flush_handle: asyncio.Handle | None = None  # a write planned for the next turn
        self._loop: asyncio.AbstractEventLoop | None = None
        # a channel whose other end can vanish unseen (a broker between) bounds every call
        self.call_timeout: float | None = getattr(channel, "call_timeout", None)
        self._blobs: list[bytes] = []  # binary frames received, for the message after them
        # bytes and arrays travel in binary frames: both sides said so in the handshake (and the
        # channel is a stream); else base64
        self.binary = False
        self._release_planned = False

    def expose(self, function: Callable[..., Any] | None = None, *, name: str | None = None) -> Any:
        """Lets the other side call ``function`` (sync or async) by ``name`` (default: its name).

        Usable as ``peer.expose(f)``, ``@peer.expose`` or ``@peer.expose(name="x")``.
        """
        if function is None:
            return lambda f: self.expose(f, name=name)
        self.functions[name or function.__name__] = function
        return function

    async def start(self) -> Peer:
        """Starts reading the channel (``async with`` does it)."""
        if self._reader is None:
            self._loop = loop = asyncio.get_running_loop()
            self._reader = loop.create_future()  # (also: start() is under way)
            if not await self.channel.deliver_to(self._received, self._ended):
                self._reader = asyncio.ensure_future(self._read())
        return self

    async def run(self) -> None:
        """Serves until the other side closes the channel (for a process that only serves)."""
        await self.start()
        assert self._reader is not None
        await self._reader

    async def __aenter__(self) -> Peer:
        return await self.start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    def call(
        self, method: str, *args: Any, timeout: float | None = None, **kwargs: Any
    ) -> asyncio.Future[Any]:
        """Calls ``method`` on the other side with positional or keyword arguments (not both).

        The request is sent at once; the returned future gives the answer: ``await
        peer.call(...)``, or ``asyncio.gather(*calls)`` with thousands in flight (no task each).
        Cancelling the future, or the task awaiting it, tells the other side to stop.

        Raises (at once):
            EncodeError: an argument cannot be sent (nothing was sent).
            TransportClosed, ChildExited: the connection is gone already.

        The future raises:
            RemoteError: the remote function raised (type, message, traceback inside).
            CallTimeout: no answer within ``timeout`` seconds (the other side is told to stop);
                ``timeout`` defaults to ``call_timeout``: None (no limit), except on channels
                through a broker, where the server may vanish unseen (MQTT: 30 s).
            TransportClosed, ChildExited: the connection ended before the answer.
        """
        if self._closed is not None:
            raise self._closed
        if args and kwargs:
            raise TypeError("JSON-RPC takes positional or keyword arguments, not both")
        return self.request(method, list(args) if args else (kwargs or None), timeout)

    def request(self, method: str, params: Any, timeout: float | None = None) -> asyncio.Future[Any]:
        """``call`` with the params as they go on the wire (a list, a dict or None)."""
        if self._closed is not None:
            raise self._closed
        endpoint = self.endpoint
        call_id = endpoint.request(method, params)
        failure = self._post()
        if failure is not None:  # our request cannot be encoded: it never left
            endpoint.forget(call_id)
            raise failure
        loop = self._loop or asyncio.get_running_loop()
        future = _Answer(loop=loop)
        future._peer = self
        future._call_id = call_id
        waiting = self._waiting
        waiting[call_id] = future
        if timeout is None:
            timeout = self.call_timeout
        if timeout is not None:
            self._timers[call_id] = loop.call_later(timeout, self._time_out, call_id, method, timeout)
        if len(waiting) == 1:
            self._flush()  # the only call in flight: written now, no extra turn of the loop
        else:
            self._flush_soon()  # calls made together leave together
        return future

    def release_soon(self, now: bool) -> None:
        """Proxies were let go (``handles.released``): their ids leave at the next turn of the
        loop, with whatever else is written then. Safe from a finalizer in any thread."""
        loop = self._loop
        if self._release_planned or loop is None or loop.is_closed() or self._closed is not None:
            return
        self._release_planned = True
        try:
            loop.call_soon_threadsafe(self._send_releases)
        except RuntimeError:
            pass  # the loop is closing

    def _send_releases(self) -> None:
        self._release_planned = False
        if self._closed is None and self.handles.released:
            self._post()
            self._flush_soon()

    def _borrow(
        self, handle_id: int, kind: str, type_name: str, methods: frozenset[str] | None
    ) -> AsyncRemoteObject:
        return AsyncRemoteObject(self, handle_id, kind, type_name, methods)

    async def notify(self, method: str, *args: Any, **kwargs: Any) -> None:
        """Sends a notification: no answer, no error back. Waits while the channel is full."""
        if self._closed is not None:
            raise self._closed
        self.endpoint.notify(method, list(args) if args else (kwargs or None))
        failure = self._post()
        if failure is not None:
            raise failure
        self._flush()
        writer = self._writer
        if writer is not None and not writer.done():
            await asyncio.shield(writer)
        if self._closed is not None:
            raise self._closed

    async def close(self) -> None:
        """Closes the channel; pending calls fail with TransportClosed."""
        if self._reader is not None:
            self._reader.cancel()
        self._fail(TransportClosed("the peer was closed"))
        for task in list(self._serving.values()):
            task.cancel()
        if self._writer is not None and not self._writer.done():
            self._writer.cancel()
        await self.channel.close()

    def _give_up(self, call_id: Any) -> None:
        """Our call ``call_id`` is no longer wanted (cancelled, timed out): tell the other side."""
        self._waiting.pop(call_id, None)
        timer = self._timers.pop(call_id, None)
        if timer is not None:
            timer.cancel()
        if self.endpoint.cancel(call_id):
            self._post()
            self._flush_soon()

    def _time_out(self, call_id: Any, method: str, timeout: float) -> None:
        self._timers.pop(call_id, None)
        future = self._waiting.get(call_id)
        if future is not None and not future.done():
            future.set_exception(CallTimeout(f"{method}: no answer within {timeout} s"))
        self._give_up(call_id)

    # -- sending ----------------------------------------------------------------------------------

    def _post(self) -> EncodeError | None:
        """Encodes what the endpoint queued, to be written by the next ``_flush``.

        A result that cannot be encoded becomes its INTERNAL_ERROR answer. Returns the
        EncodeError of a request or notification that cannot be encoded (it is dropped).
        """
        if self.handles.released:  # proxies let go: their ids go with this message
            ids = self.handles.take_released()
            if ids:
                self.endpoint.notify(RELEASE_METHOD, ids)
        messages = self.endpoint.messages_to_send()
        if not messages or self._closed is not None:
            return None  # nothing to send, or nobody to send it to
        stream = self._send_bytes is not None
        pairs, failure = encoded(messages, self.handles, self.binary and stream)  # (frames: streams)
        self._out.extend(line if stream else message for message, line in pairs)
        return failure

    def _flush_soon(self) -> None:
        """Plans a write at the next turn of the loop: what is posted until then goes with it."""
        if self._flush_handle is None and self._out:
            loop = self._loop or asyncio.get_running_loop()
            self._flush_handle = loop.call_soon(self._flush)

    def _flush(self) -> None:
        """Writes what was posted, in order: right here while the channel takes it without
        waiting; when a write has to wait, a writer task finishes it and writes the rest."""
        self._flush_handle = None
        if self._writing or self._closed is not None:
            return  # the write under way takes what was posted; or nobody to write to
        self._writing = True
        handed_over = False
        try:
            while self._out:
                steps = self._next_write().__await__()
                try:
                    waiting_on = steps.send(None)
                except StopIteration:
                    continue  # written (or buffered by the channel): the usual case
                self._writer = asyncio.ensure_future(self._finish_writing(steps, waiting_on))
                handed_over = True  # the writer task resets _writing
                return
        except BothwaysError as exc:  # the connection is gone: every pending call learns why
            self._write_failed(exc)
        finally:
            if not handed_over:
                self._writing = False

    def _next_write(self) -> Awaitable[Any]:
        """The next write of what was posted (not started yet)."""
        out = self._out
        if self._send_bytes is not None:
            self._out = []
            return self._send_bytes(out[0] if len(out) == 1 else b"".join(out))
        return self.channel.send(out.pop(0))  # one value per send, in order

    async def _finish_writing(self, steps: Generator[Any, None, Any], waiting_on: Any) -> None:
        try:
            await _rest_of(steps, waiting_on)
            while self._out:
                await self._next_write()
        except BothwaysError as exc:
            self._write_failed(exc)
        finally:
            self._writing = False

    def _write_failed(self, cause: BothwaysError) -> None:
        self._out = []
        self._fail(cause)

    # -- reading ----------------------------------------------------------------------------------

    async def _read(self) -> None:
        # a stream channel hands out every message already read at once (receive_many)
        many = getattr(self.channel, "receive_many", None)
        receive = many or self.channel.receive
        take = self.endpoint.receive
        dispatch = self._dispatch
        try:
            while True:
                if not self._out:  # nothing to answer (a caller's reader, mostly)
                    received = await receive()
                else:
                    # The answers to what was received leave when the reader would wait: once
                    # for a chunk of requests, and with no extra turn of the loop for one.
                    steps = receive().__await__()
                    try:
                        waiting_on = steps.send(None)
                    except StopIteration as done:
                        received = done.value  # there already
                        if len(self._out) >= _BACKLOG:
                            self._flush()
                    else:
                        self._flush()
                        received = await _rest_of(steps, waiting_on)
                if many is None:
                    dispatch(take(received))
                else:
                    for message in received:
                        if type(message) is Binary:
                            self._blobs.append(message.data)
                            continue
                        dispatch(take(message))
                        if self._blobs:
                            self._blobs = []
                self._post()  # answers of sync functions, and the error answers the endpoint queued
        except BothwaysError as exc:  # TransportClosed, ChildExited with its stderr tail...
            self._fail(exc)  # in the channel's words, as the JavaScript Peer does
        except Exception as exc:  # a bug of ours: pending calls fail with it rather than hang
            self._fail(TransportError(f"the peer's reader failed: {exc!r}"))
            raise

    def _received(self, messages: list[Any]) -> None:
        """A batch of messages, straight from the channel (push mode): answered at once."""
        take = self.endpoint.receive
        dispatch = self._dispatch
        for message in messages:
            if type(message) is Binary:
                self._blobs.append(message.data)
                continue
            dispatch(take(message))
            if self._blobs:
                self._blobs = []
        self._post()
        self._flush()

    def _ended(self, cause: BaseException) -> None:
        """The channel's messages ended (push mode): every pending call fails with the cause."""
        if not isinstance(cause, BothwaysError):  # an error policy raised something else
            cause = TransportError(f"the channel ended: {cause!r}")
        self._fail(cause)
        if self._reader is not None and not self._reader.done():
            self._reader.set_result(None)

    def _fail(self, cause: BothwaysError) -> None:
        if self._closed is None:
            self._closed = cause
        for event in self.endpoint.fail_all(cause):
            self._settle(event.id, event.error)
        self._closing(self.handles.clear())

    def _closing(self, awaitables: list[Any]) -> None:
        """Runs the ``aclose()`` of async generators let go (their ``finally`` blocks)."""
        for closing in awaitables:
            if self._loop is not None and not self._loop.is_closed():
                self._loop.create_task(closing)
            else:
                closing.close()

    def _settle(self, call_id: Any, error: BaseException | None, result: Any = None) -> None:
        future = self._waiting.pop(call_id, None)
        if future is None:
            return  # given up already, or an error about no call in particular (id None)
        if self._timers:
            timer = self._timers.pop(call_id, None)
            if timer is not None:
                timer.cancel()
        if future.done():
            return
        if error is None and type(result) is dict:
            try:
                result = incoming(result, self.handles, self._borrow, self._blobs)
            except HandleError as exc:
                error = exc
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)

    def _dispatch(self, events: list[Any]) -> None:
        for event in events:
            kind = type(event)
            if kind is Response:
                self._settle(event.id, None, event.result)
            elif kind is Request:
                self._serve(event)
            elif kind is ErrorResponse:
                self._settle(event.id, event.error)
            elif kind is Cancelled:
                task = self._serving.get(event.id)
                if task is not None:
                    task.cancel()
            elif kind is Notification and event.method == RELEASE_METHOD:
                if type(event.params) is list:
                    self._closing(self.handles.drop(event.params))
            elif kind is Notification and self.notification_handler is not None:
                try:
                    self.notification_handler(event.method, event.params)
                except Exception:  # a failing handler must not stop the reader
                    log.exception("notification handler failed on %r", event.method)

    # -- serving ----------------------------------------------------------------------------------

    def _serve(self, request: Request) -> None:
        """Answers ``request`` now (a sync function), or starts the task that will."""
        params = request.params
        if type(params) is dict and MARK in params:
            try:
                request.params = incoming(params, self.handles, self._borrow, self._blobs)
            except HandleError as exc:
                self.endpoint.respond_error(request.id, INVALID_PARAMS, f"Invalid params: {exc}")
                return
        pending = self.exposed.answer(self.endpoint, request)
        if pending is not None:
            task = _start(self._finish(request.id, pending), self._loop or asyncio.get_running_loop())
            if not task.done():  # (an eager task may be done already: nothing to cancel)
                self._serving[request.id] = task

    async def _finish(self, request_id: Any, awaitable: Any) -> None:
        try:
            await finish(self.endpoint, request_id, awaitable)
        finally:
            self._serving.pop(request_id, None)
        self._post()
        if self._serving:
            self._flush_soon()  # others are running: answers finished in the same turn leave together
        else:
            self._flush()  # the last one: written now, no extra turn of the loop


if sys.version_info >= (3, 12):

    def _start(coroutine: Coroutine[Any, Any, None], loop: asyncio.AbstractEventLoop) -> asyncio.Task[None]:
        """A task that runs at once up to its first wait (and is done at once if it never waits).

        The loop is passed explicitly: without it, 3.12's and 3.13's C Task raises AttributeError
        ('NoneType' object has no attribute 'is_running') and leaves the coroutine unstarted."""
        return asyncio.Task(coroutine, loop=loop, eager_start=True)

else:

    def _start(coroutine: Coroutine[Any, Any, None], loop: asyncio.AbstractEventLoop) -> asyncio.Task[None]:
        """A task for ``coroutine`` (scheduled: eager start needs Python 3.12)."""
        return loop.create_task(coroutine)


def _respond_exception(endpoint: RpcEndpoint, request_id: Any, exc: Exception) -> None:
    data = {"type": type(exc).__name__, "traceback": "".join(traceback.format_exception(exc))}
    code = getattr(exc, "rpc_code", SERVER_ERROR) if isinstance(exc, HandleError) else SERVER_ERROR
    endpoint.respond_error(request_id, code, str(exc), data)


def _repaired(message: Any) -> Any:
    """The answer(s) to send instead of ``message`` when a result in it cannot be encoded; None
    when the failure is not in a result (our own request or notification)."""
    if isinstance(message, list):
        answers = [_repaired_answer(answer) for answer in message]
        return answers if any(a is not b for a, b in zip(answers, message, strict=True)) else None
    answer = _repaired_answer(message)
    return None if answer is message else answer


def _repaired_answer(answer: Any) -> Any:
    """``answer``, or the INTERNAL_ERROR answer when its result cannot be encoded."""
    if not (isinstance(answer, dict) and "result" in answer):
        return answer
    try:
        encode(answer)
    except EncodeError as exc:  # the handler returned something that cannot cross: say so
        error = {
            "code": INTERNAL_ERROR,
            "message": f"result: {exc}",
            "data": {"type": "EncodeError", "traceback": ""},
        }
        return {"jsonrpc": "2.0", "error": error, "id": answer["id"]}
    return answer
