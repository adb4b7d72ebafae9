"""JSON-RPC 2.0, sans-I/O: dicts in, dicts and events out. Mirrored name for name in js/src/rpc.js.

Strategy
--------
``RpcEndpoint`` is one side of a connection, caller and callee at once (both sides may call each
other at the same time). It keeps the bookkeeping only: ids of our calls in flight, the batches
it owes an answer to. It never calls a function, waits, or touches a socket: the ``Peer`` adapter
does that, and a test can drive the endpoint with plain dicts (spec/vectors/rpc.json).

- ``request(method, params) -> id`` / ``notify(...)`` / ``cancel(id)`` queue messages to send;
  ``forget(id)`` drops a call whose request was never sent (the peer is told nothing).
- ``receive(message) -> list[event]`` takes one decoded message (a dict, or a list: a batch) and
  says what happened: ``Request``, ``Notification``, ``Cancelled`` (the peer gave up on a request
  it sent us), ``Response`` / ``ErrorResponse`` (an answer to our call). Invalid input never
  raises: the endpoint queues the error response that the specification requires.
- ``respond(id, result)`` / ``respond_error(id, code, message, data)`` answer a ``Request``;
  answers to a batch are sent together, as one array, once all are known. Answers go by id, so
  a request whose id is the id of one of the peer's requests still unanswered (in this batch or
  an earlier message) is refused at once with Invalid Request, and never becomes an event.
- ``messages_to_send() -> list`` drains what to write, in order.
- ``fail_all(error)`` ends every call in flight when the connection is gone.

Rules
-----
No I/O, no clock, no threads (tests/unit/test_purity.py checks the imports).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Union

from .errors import BothwaysError, RemoteError

__all__ = [
    "CANCEL_METHOD",
    "HELLO_METHOD",
    "PROTOCOL",
    "INTERNAL_ERROR",
    "INVALID_PARAMS",
    "INVALID_REQUEST",
    "METHOD_NOT_FOUND",
    "PARSE_ERROR",
    "REQUEST_CANCELLED",
    "SERVER_ERROR",
    "Cancelled",
    "ErrorResponse",
    "Notification",
    "Request",
    "Response",
    "RpcEndpoint",
    "RpcEvent",
    "hello",
    "hello_refusal",
    "remote_error",
    "speaks_binary",
]

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
SERVER_ERROR = -32000  # the callee raised: bothways' range is -32000..-32099
REQUEST_CANCELLED = -32800  # the caller cancelled (as the Language Server Protocol numbers it)
CANCEL_METHOD = "$/cancelRequest"  # notification {"id": ...}: the caller gave up on that call
HELLO_METHOD = "$/hello"  # the first call to a served module: the handshake (spec/PROTOCOL.md 8)
PROTOCOL = 1  # the calls protocol's version: a peer that speaks another one is refused at once


def hello(version: str, language: str) -> dict[str, Any]:
    """What one side says of itself in the handshake: the params of the parent's ``$/hello``
    call, and (with the module's functions added) the served module's answer. ``binary``: this
    side reads binary frames (spec/PROTOCOL.md 2); once both said it, bytes and arrays use them."""
    return {"protocol": PROTOCOL, "version": version, "language": language, "binary": True}


def speaks_binary(theirs: Any) -> bool:
    """Whether the other side's hello says it reads binary frames."""
    return isinstance(theirs, dict) and theirs.get("binary") is True


def _described(side: Any) -> str:
    if not isinstance(side, dict):
        return f"a peer without the handshake (it said {json.dumps(side)})"

    def get(key: str) -> str:
        value = side.get(key)
        return "?" if value is None else value if isinstance(value, str) else json.dumps(value)

    return f"bothways {get('version')} for {get('language')} (protocol {get('protocol')})"


def hello_refusal(ours: dict[str, Any], theirs: Any) -> str | None:
    """Why a peer whose hello is ``theirs`` cannot be talked to (a message naming both versions),
    or None when it speaks our protocol."""
    protocol = theirs.get("protocol") if isinstance(theirs, dict) else None
    if protocol == ours["protocol"] and not isinstance(protocol, bool):  # true == 1 in Python only
        return None
    return f"protocol mismatch: {_described(ours)} cannot talk to {_described(theirs)}"


Id = Union[int, str]  # noqa: UP007 - a runtime alias, Python 3.10 too


@dataclass(slots=True)
class Request:
    """The peer calls ``method``; answer with ``respond`` or ``respond_error``."""

    id: Id
    method: str
    params: Any = None


@dataclass(slots=True)
class Notification:
    """The peer tells us something; no answer is expected."""

    method: str
    params: Any = None


@dataclass(slots=True)
class Cancelled:
    """The peer no longer wants the answer to its request ``id`` (stop the work if you can)."""

    id: Id


@dataclass(slots=True)
class Response:
    """Our call ``id`` succeeded."""

    id: Id
    result: Any


@dataclass(slots=True)
class ErrorResponse:
    """Our call ``id`` failed (``id`` is None when the peer could not tell which call).

    ``error`` is a RemoteError for an answer from the peer; from ``fail_all`` it is the cause
    given there (ChildExited with the exit code and stderr tail, TransportClosed...).
    """

    id: Id | None
    error: BothwaysError


# (The event classes are plain slotted records, not frozen: a frozen dataclass costs three
# times as much to make, and one is made per message on the hot path.)
RpcEvent = Union[Request, Notification, Cancelled, Response, ErrorResponse]  # noqa: UP007


@dataclass
class _Batch:
    ids: list[Id]
    answers: dict[Id, dict[str, Any]] = field(default_factory=dict)
    errors: list[dict[str, Any]] = field(default_factory=list)


def _error_object(code: int, message: str, data: Any = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        error["data"] = data
    return error


def remote_error(error: Any) -> RemoteError:
    """A RemoteError from a JSON-RPC error object (bothways puts type and traceback in data)."""
    if not isinstance(error, dict):
        return RemoteError(f"malformed error object: {json.dumps(error)}", rpc_code=INTERNAL_ERROR)
    data = error.get("data")
    remote_type = remote_traceback = ""
    if isinstance(data, dict):
        remote_type = _text(data.get("type"))
        remote_traceback = _text(data.get("traceback"))
    code = error.get("code")
    return RemoteError(
        _text(error.get("message")),
        rpc_code=code if isinstance(code, int) and not isinstance(code, bool) else INTERNAL_ERROR,
        remote_type=remote_type,
        remote_traceback=remote_traceback,
        data=data,
    )


def _text(value: Any) -> str:
    """A string field of an error object as text: absent or null is empty, others as JSON."""
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value)


def _json_type(value: Any) -> str:
    """The JSON name of a decoded value's type (the same words in both languages)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _valid_id(value: Any) -> bool:
    return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))


class RpcEndpoint:
    """One side of a JSON-RPC 2.0 connection: caller and callee at once. See the module docs."""

    def __init__(self) -> None:
        self._next_id = 1
        self._pending: dict[Id, str] = {}  # our calls in flight: id -> method
        self._batches: dict[Id, _Batch] = {}  # request id -> the batch it came in
        self._owed: set[Id] = set()  # ids of the peer's requests not answered yet
        self._outbox: list[Any] = []

    @property
    def pending(self) -> list[Id]:
        """The ids of our calls still waiting for an answer."""
        return list(self._pending)

    # -- calling ------------------------------------------------------------------------------

    def request(self, method: str, params: Any = None) -> Id:
        """Queues a call; returns its id, which the ``Response``/``ErrorResponse`` will carry."""
        call_id = self._next_id
        self._next_id += 1
        self._pending[call_id] = method
        self._outbox.append(self._call(method, params, call_id))
        return call_id

    def notify(self, method: str, params: Any = None) -> None:
        """Queues a notification (no answer)."""
        self._outbox.append(self._call(method, params, None))

    def cancel(self, call_id: Id) -> bool:
        """Gives up on our call ``call_id``: forgets it and tells the peer. False if not pending."""
        if self._pending.pop(call_id, None) is None:
            return False
        self.notify(CANCEL_METHOD, {"id": call_id})
        return True

    def forget(self, call_id: Id) -> bool:
        """Drops our call ``call_id`` without telling the peer: for a request that never left (its
        arguments could not be encoded). Its request leaves the send queue if it is still there.
        False if the call was not pending.
        """
        if self._pending.pop(call_id, None) is None:
            return False
        self._outbox = [
            m for m in self._outbox if not (isinstance(m, dict) and "method" in m and m.get("id") == call_id)
        ]
        return True

    def fail_all(self, error: BothwaysError) -> list[ErrorResponse]:
        """Ends every call in flight (the peer is gone); one ErrorResponse each, with ``error``."""
        failed = [ErrorResponse(call_id, error) for call_id in self._pending]
        self._pending.clear()
        return failed

    @staticmethod
    def _call(method: str, params: Any, call_id: Id | None) -> dict[str, Any]:
        message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            message["params"] = params
        if call_id is not None:
            message["id"] = call_id
        return message

    # -- answering ----------------------------------------------------------------------------

    def respond(self, request_id: Id, result: Any) -> None:
        """Answers the peer's request ``request_id`` with ``result``."""
        answer = {"jsonrpc": "2.0", "result": result, "id": request_id}
        if self._batches:
            self._answer(request_id, answer)
        else:  # no batch waits for answers: straight to the queue
            self._owed.discard(request_id)
            self._outbox.append(answer)

    def respond_error(self, request_id: Id | None, code: int, message: str, data: Any = None) -> None:
        """Answers the peer's request with an error (``request_id`` None: unknown request)."""
        self._answer(
            request_id, {"jsonrpc": "2.0", "error": _error_object(code, message, data), "id": request_id}
        )

    def parse_error(self, message: str = "Parse error") -> None:
        """Queues the -32700 answer for input that was not JSON (the adapter's decoder saw it)."""
        self.respond_error(None, PARSE_ERROR, message)

    def _answer(self, request_id: Id | None, answer: dict[str, Any]) -> None:
        if request_id is None:
            self._outbox.append(answer)
            return
        self._owed.discard(request_id)
        batch = self._batches.pop(request_id, None)
        if batch is None:
            self._outbox.append(answer)
            return
        batch.answers[request_id] = answer
        if len(batch.answers) == len(batch.ids):
            self._outbox.append([*batch.errors, *(batch.answers[i] for i in batch.ids)])

    # -- receiving ----------------------------------------------------------------------------

    def receive(self, message: Any) -> list[RpcEvent]:
        """Takes one decoded message (or batch) from the peer; returns what it means.

        After handling the events (and answering each ``Request``), call ``messages_to_send``.
        """
        if type(message) is dict and message.get("jsonrpc") == "2.0":
            # The common cases first, told by what they are (exact types: never a bool id): a
            # request with an id and params, an answer to one of our calls. Whatever else the
            # message is (an error, a notification, invalid) is for the full checks below.
            message_id = message.get("id")
            if type(message_id) is int or type(message_id) is str:
                method = message.get("method")
                if type(method) is str:
                    params = message.get("params")
                    if (type(params) is list or type(params) is dict) and message_id not in self._owed:
                        self._owed.add(message_id)
                        return [Request(message_id, method, params)]
                elif "method" not in message and "result" in message and "error" not in message:
                    if self._pending.pop(message_id, None) is None:
                        return []  # an answer to nothing we asked (or cancelled): dropped
                    return [Response(message_id, message["result"])]
        elif isinstance(message, list):
            return self._receive_batch(message)
        events: list[RpcEvent] = []
        error = self._take(message, events)
        if error is None and events and type(events[0]) is Request:
            error = self._reused(events, [])
        if error is not None:
            self._outbox.append(error)
        return events

    def _receive_batch(self, batch: list[Any]) -> list[RpcEvent]:
        if not batch:
            self._outbox.append(self._invalid("empty batch"))
            return []
        events: list[RpcEvent] = []
        state = _Batch(ids=[])
        for item in batch:
            before = len(events)
            error = self._take(item, events)  # (at most one event per item)
            if error is None and len(events) > before and type(events[-1]) is Request:
                error = self._reused(events, state.ids)
                if error is None:
                    state.ids.append(events[-1].id)
            if error is not None:
                state.errors.append(error)
        if state.ids:
            for request_id in state.ids:
                self._batches[request_id] = state
        elif state.errors:
            self._outbox.append(state.errors)
        return events

    def _reused(self, events: list[RpcEvent], batch_ids: list[Id]) -> dict[str, Any] | None:
        """The request just taken (``events[-1]``) is owed an answer from now on, or refused when
        its id is one still owed (two answers could not be told apart): the event is dropped
        and the Invalid Request answer returned."""
        request_id = events[-1].id  # type: ignore[union-attr]
        if request_id in batch_ids:
            reason = "duplicate id in batch"
        elif request_id in self._owed:
            shown = json.dumps(request_id, ensure_ascii=False)
            reason = f"duplicate id {shown}: a request with this id is still unanswered"
        else:
            self._owed.add(request_id)  # type: ignore[arg-type]
            return None
        del events[-1]
        return self._invalid(reason, request_id)

    @staticmethod
    def _invalid(reason: str, request_id: Id | None = None) -> dict[str, Any]:
        error = _error_object(INVALID_REQUEST, "Invalid Request", {"reason": reason})
        return {"jsonrpc": "2.0", "error": error, "id": request_id}

    def _take(self, message: Any, events: list[RpcEvent]) -> dict[str, Any] | None:
        """Appends the event for one message; returns the error answer it requires, if any."""
        if not isinstance(message, dict):
            return self._invalid(f"expected an object, got {_json_type(message)}")
        has_id = "id" in message
        message_id = message.get("id")  # None when absent: error answers then carry a null id
        if has_id and message_id is not None and not _valid_id(message_id):
            return self._invalid("id must be a string, an integer or null")
        if message.get("jsonrpc") != "2.0":
            return self._invalid('"jsonrpc" must be exactly "2.0"', message_id)
        if "method" in message:
            method = message["method"]
            params = message.get("params")
            if not isinstance(method, str):
                return self._invalid("method must be a string", message_id)
            if "params" in message and not isinstance(params, (list, dict)):
                return self._invalid("params must be an array or an object", message_id)
            if not has_id:
                if method == CANCEL_METHOD and isinstance(params, dict) and _valid_id(params.get("id")):
                    events.append(Cancelled(params["id"]))
                else:
                    events.append(Notification(method, params))
                return None
            if message_id is None:
                return self._invalid("a request's id must not be null")
            events.append(Request(message_id, method, params))
            return None
        if "result" in message or "error" in message:
            if message_id is None or self._pending.pop(message_id, None) is None:
                if "error" in message and message_id is None:
                    events.append(ErrorResponse(None, remote_error(message["error"])))
                return None  # an answer to nothing we asked (or cancelled): dropped
            if "error" in message:
                events.append(ErrorResponse(message_id, remote_error(message["error"])))
            else:
                events.append(Response(message_id, message["result"]))
            return None
        return self._invalid("neither a request nor a response", message_id)

    def messages_to_send(self) -> list[Any]:
        """Drains the messages (dicts, or lists for batch answers) to write, in order."""
        out, self._outbox = self._outbox, []
        return out
