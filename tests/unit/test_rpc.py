"""The sans-I/O JSON-RPC endpoint, driven by spec/vectors/rpc.json (js/test/rpc.test.js too).

Steps: ``receive`` + ``events`` (flat form below); ``request: [method, params]`` + ``id``;
``notify``; ``cancel`` or ``forget`` + ``returns``; ``respond: [id, result]``; ``respond_error:
[id, code, message, data?]``; ``parse_error``; ``send``: what messages_to_send() drains;
``pending``.
"""

from __future__ import annotations

from typing import Any

import pytest

from bothways.errors import ChildExited, RemoteError
from bothways.rpc import (
    CANCEL_METHOD,
    HELLO_METHOD,
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
    PROTOCOL,
    REQUEST_CANCELLED,
    SERVER_ERROR,
    Cancelled,
    ErrorResponse,
    Notification,
    Request,
    Response,
    RpcEndpoint,
    RpcEvent,
    hello,
    hello_refusal,
    remote_error,
    speaks_binary,
)

from ..vectors import load

CASES = load("rpc.json")


def flat(event: RpcEvent) -> dict[str, Any]:
    if isinstance(event, Request):
        return {"request": {"id": event.id, "method": event.method, "params": event.params}}
    if isinstance(event, Notification):
        return {"notification": {"method": event.method, "params": event.params}}
    if isinstance(event, Cancelled):
        return {"cancelled": event.id}
    if isinstance(event, Response):
        return {"response": {"id": event.id, "result": event.result}}
    assert isinstance(event, ErrorResponse) and isinstance(event.error, RemoteError)
    error = event.error
    return {
        "error_response": {
            "id": event.id,
            "rpc_code": error.rpc_code,
            "message": error.reason,
            "remote_type": error.remote_type,
            "remote_traceback": error.remote_traceback,
        }
    }


def test_enough_cases() -> None:
    assert len(CASES) >= 25
    assert sum(c["name"].startswith("spec:") for c in CASES) >= 10


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_rpc_vector(case: dict[str, Any]) -> None:
    endpoint = RpcEndpoint()
    for step in case["steps"]:
        if "receive" in step:
            assert [flat(e) for e in endpoint.receive(step["receive"])] == step["events"]
        elif "request" in step:
            assert endpoint.request(*step["request"]) == step["id"]
        elif "notify" in step:
            endpoint.notify(*step["notify"])
        elif "cancel" in step:
            assert endpoint.cancel(step["cancel"]) is step["returns"]
        elif "forget" in step:
            assert endpoint.forget(step["forget"]) is step["returns"]
        elif "respond" in step:
            endpoint.respond(*step["respond"])
        elif "respond_error" in step:
            endpoint.respond_error(*step["respond_error"])
        elif "parse_error" in step:
            endpoint.parse_error()
        elif "send" in step:
            assert endpoint.messages_to_send() == step["send"]
        elif "pending" in step:
            assert endpoint.pending == step["pending"]
        else:  # pragma: no cover - a new step kind must be taught here
            raise AssertionError(f"unknown step {step}")


def test_fail_all_gives_the_cause_to_every_pending_call() -> None:
    endpoint = RpcEndpoint()
    ids = [endpoint.request("work", [i]) for i in range(3)]
    cause = ChildExited("node worker.js exited with code 1", returncode=1, stderr_tail="Error: boom")
    failed = endpoint.fail_all(cause)
    assert [f.id for f in failed] == ids and all(f.error is cause for f in failed)
    assert endpoint.pending == [] and endpoint.fail_all(cause) == []


def test_remote_error_reads_well_in_a_traceback() -> None:
    endpoint = RpcEndpoint()
    endpoint.request("divide", [1, 0])
    [event] = endpoint.receive(
        {
            "jsonrpc": "2.0",
            "id": 1,
            "error": {
                "code": -32000,
                "message": "division by zero",
                "data": {"type": "ZeroDivisionError", "traceback": "tb"},
            },
        }
    )
    assert isinstance(event, ErrorResponse)
    assert str(event.error) == "ZeroDivisionError: division by zero\n--- remote traceback ---\ntb"


def test_a_malformed_error_object_still_gives_a_remote_error() -> None:
    error = remote_error("oops")
    assert (error.rpc_code, str(error)) == (INTERNAL_ERROR, 'malformed error object: "oops"')
    partial = remote_error({"code": 1.5, "data": [1]})
    assert [partial.rpc_code, partial.reason, partial.remote_type, partial.data] == [
        INTERNAL_ERROR,
        "",
        "",
        [1],
    ]
    # a boolean is no code; a null message, type or traceback is empty; others are shown as JSON
    odd = remote_error({"code": True, "message": None, "data": {"type": [1], "traceback": None}})
    assert [odd.rpc_code, odd.reason, odd.remote_type, odd.remote_traceback] == [
        INTERNAL_ERROR,
        "",
        "[1]",
        "",
    ]
    assert odd.data == {"type": [1], "traceback": None}
    assert remote_error({"code": 7, "message": {"a": 1}}).reason == '{"a": 1}'
    assert remote_error({"code": -32001, "message": "m"}).rpc_code == -32001


@pytest.mark.parametrize(
    ("message", "named"),
    [
        (None, "null"),
        (True, "boolean"),
        (3, "number"),
        (1.5, "number"),
        (2**70, "number"),
        ("x", "string"),
        ([1], "array"),
    ],
)
def test_a_message_that_is_not_an_object_is_answered_with_its_json_type(message: Any, named: str) -> None:
    endpoint = RpcEndpoint()
    assert endpoint.receive([message, {"jsonrpc": "2.0", "method": "n"}]) == [Notification("n")]
    [answers] = endpoint.messages_to_send()
    reason = f"expected an object, got {named}"
    data = {"reason": reason}
    answer = {
        "jsonrpc": "2.0",
        "error": {"code": -32600, "message": "Invalid Request", "data": data},
        "id": None,
    }
    assert answers == [answer]
    if not isinstance(message, list):  # alone, not in a batch (a list alone is a batch)
        assert endpoint.receive(message) == []
        assert endpoint.messages_to_send() == [answer]


def test_an_absent_params_or_data_is_no_member_at_all() -> None:
    endpoint = RpcEndpoint()
    endpoint.notify("tick")
    endpoint.notify("tick", None)
    endpoint.request("ping", None)
    endpoint.respond_error(None, -32000, "boom", None)
    tick, tick2, ping, answer = endpoint.messages_to_send()
    assert [list(m) for m in (tick, tick2, ping)] == [
        ["jsonrpc", "method"],
        ["jsonrpc", "method"],
        ["jsonrpc", "method", "id"],
    ]
    assert list(answer["error"]) == ["code", "message"]


def test_a_malformed_error_object_that_json_cannot_show_is_shown_as_text() -> None:
    assert remote_error(2**70).reason == "malformed error object: 1180591620717411303424"


def test_the_handshake_refuses_another_protocol_naming_both_sides() -> None:
    ours = hello("0.1.0", "python")
    assert ours == {"protocol": PROTOCOL, "version": "0.1.0", "language": "python", "binary": True}
    assert hello_refusal(ours, hello("9.9.9", "javascript")) is None
    assert speaks_binary(ours) and not speaks_binary({**ours, "binary": 1}) and not speaks_binary([ours])
    theirs = {"protocol": PROTOCOL + 1, "version": "2.0.0", "language": None}
    assert hello_refusal(ours, theirs) == (
        f"protocol mismatch: bothways 0.1.0 for python (protocol {PROTOCOL}) cannot talk to "
        f"bothways 2.0.0 for ? (protocol {PROTOCOL + 1})"
    )
    assert hello_refusal(ours, {"version": 3}) == (
        f"protocol mismatch: bothways 0.1.0 for python (protocol {PROTOCOL}) cannot talk to "
        "bothways 3 for ? (protocol ?)"
    )
    assert hello_refusal(ours, ["x"]).endswith('cannot talk to a peer without the handshake (it said ["x"])')  # type: ignore[union-attr]


ABSENT = object()
FIELDS: dict[str, list[Any]] = {  # every value a field takes below, ABSENT: the key is missing
    "jsonrpc": ["2.0", "1.0", "", 2, ABSENT],
    "id": [1, 7, "a", None, True, 1.5, [1], ABSENT],  # 1: pending; 7, "a": not
    "method": ["add", "$/cancelRequest", None, 3, ABSENT],
    "params": [[1, 2], {"id": 1}, {}, None, 5, "x", ABSENT],
    "result": [3, None, ABSENT],
    "error": [{"code": -32000, "message": "boom"}, ABSENT],
}


def every_message() -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = [{}]
    for key, values in FIELDS.items():
        messages = [{**m, key: v} if v is not ABSENT else m for m in messages for v in values]
    return messages


def test_the_quick_path_of_receive_agrees_with_the_full_checks_on_every_message_shape() -> None:
    # receive() tells the usual request and answer apart in a few steps before its full checks;
    # a batch of one message always takes the full checks. Both must say the same of every
    # combination of fields, valid or not: the same events, the same error answers.
    messages = every_message()
    assert len(messages) == 8400
    for message in messages:
        quick, full = RpcEndpoint(), RpcEndpoint()
        for endpoint in (quick, full):
            assert endpoint.request("add", [1, 2]) == 1
            endpoint.messages_to_send()
        quick_events = [flat(e) for e in quick.receive(message)]
        full_events = [flat(e) for e in full.receive([message])]
        assert quick_events == full_events, message
        answers = full.messages_to_send()  # a batch's error answers come as one array
        assert quick.messages_to_send() == (answers[0] if answers else []), message
        assert quick.pending == full.pending, message


def test_a_protocol_given_as_a_boolean_is_refused_and_shown_as_json() -> None:
    # true == 1 in Python, not in JavaScript: both refuse it, and name it as JSON does.
    ours = hello("0.1.0", "python")
    assert PROTOCOL == 1
    assert hello_refusal(ours, {"protocol": True, "version": ["1.0.0"], "language": "javascript"}) == (
        f"protocol mismatch: bothways 0.1.0 for python (protocol {PROTOCOL}) cannot talk to "
        'bothways ["1.0.0"] for javascript (protocol true)'
    )


def test_the_error_codes_and_method_names_are_the_specifications() -> None:
    codes = [PARSE_ERROR, INVALID_REQUEST, METHOD_NOT_FOUND, INVALID_PARAMS, INTERNAL_ERROR, SERVER_ERROR]
    assert [*codes, REQUEST_CANCELLED] == [-32700, -32600, -32601, -32602, -32603, -32000, -32800]
    assert [CANCEL_METHOD, HELLO_METHOD] == ["$/cancelRequest", "$/hello"]


def test_an_error_answer_frees_the_id_of_the_request_it_answers() -> None:
    endpoint = RpcEndpoint()
    for answer in (lambda: endpoint.respond_error(1, -32000, "boom"), lambda: endpoint.respond(1, 3)):
        assert endpoint.receive({"jsonrpc": "2.0", "id": 1, "method": "add", "params": [1, 2]}) == [
            Request(1, "add", [1, 2])
        ]
        answer()
        assert len(endpoint.messages_to_send()) == 1
    # and the same inside a batch (answers go through the batch's bookkeeping)
    for _ in range(2):
        assert endpoint.receive([{"jsonrpc": "2.0", "id": 1, "method": "m", "params": []}]) == [
            Request(1, "m", [])
        ]
        endpoint.respond_error(1, -32000, "boom")
        [[answer_]] = endpoint.messages_to_send()
        assert answer_["id"] == 1 and answer_["error"]["code"] == -32000


def test_a_duplicate_id_is_named_as_written() -> None:
    endpoint = RpcEndpoint()
    request = {"jsonrpc": "2.0", "id": "café ✓", "method": "m", "params": []}
    assert endpoint.receive(request) == [Request("café ✓", "m", [])]
    assert endpoint.receive(request) == []
    [answer] = endpoint.messages_to_send()
    assert answer["id"] == "café ✓"
    assert answer["error"]["data"] == {
        "reason": 'duplicate id "café ✓": a request with this id is still unanswered'
    }


@pytest.mark.parametrize("message_id", [7, "a"])
@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"jsonrpc": "1.0", "method": "m", "params": []}, '"jsonrpc" must be exactly "2.0"'),
        ({"jsonrpc": "2.0", "method": 3, "params": []}, "method must be a string"),
        ({"jsonrpc": "2.0", "method": "m", "params": 5}, "params must be an array or an object"),
        ({"jsonrpc": "2.0"}, "neither a request nor a response"),
    ],
)
def test_an_invalid_request_is_answered_with_its_id(
    fields: dict[str, Any], reason: str, message_id: Any
) -> None:
    for message in ({**fields, "id": message_id}, fields):  # without an id: answered with null
        endpoint = RpcEndpoint()
        assert endpoint.receive(message) == []
        error = {"code": -32600, "message": "Invalid Request", "data": {"reason": reason}}
        expected_id = message_id if "id" in message else None
        assert endpoint.messages_to_send() == [{"jsonrpc": "2.0", "error": error, "id": expected_id}]


@pytest.mark.parametrize("key", ["jsonrpc", "id", "method", "params", "result", "error"])
def test_member_names_are_case_sensitive(key: str) -> None:
    # A member spelled in capitals is an unknown member: the message means what it means
    # without that member (the quick path of receive() reads members by name too).
    base: dict[str, Any] = (
        {"jsonrpc": "2.0", "id": 1, "method": "add", "params": [1, 2]}
        if key in ("jsonrpc", "id", "method", "params")
        else {"jsonrpc": "2.0", "id": 1, key: 3 if key == "result" else {"code": -32000, "message": "boom"}}
    )
    capitals = {(k.upper() if k == key else k): v for k, v in base.items()}
    without = {k: v for k, v in base.items() if k != key}
    seen = []
    for message in (capitals, without):
        endpoint = RpcEndpoint()
        assert endpoint.request("add", [1, 2]) == 1
        endpoint.messages_to_send()
        seen.append(
            ([flat(e) for e in endpoint.receive(message)], endpoint.messages_to_send(), endpoint.pending)
        )
    assert seen[0] == seen[1]


def test_forget_takes_back_only_the_forgotten_calls_request() -> None:
    endpoint = RpcEndpoint()
    endpoint.receive({"jsonrpc": "2.0", "id": 1, "method": "ask", "params": []})
    endpoint.respond(1, "answer to the peer's call 1")  # queued, same id as our call below
    assert endpoint.request("m", [1]) == 1
    endpoint.notify("n", {"id": 1})
    assert endpoint.request("k") == 2
    assert endpoint.forget(1) is True
    assert endpoint.messages_to_send() == [
        {"jsonrpc": "2.0", "result": "answer to the peer's call 1", "id": 1},
        {"jsonrpc": "2.0", "method": "n", "params": {"id": 1}},
        {"jsonrpc": "2.0", "method": "k", "id": 2},
    ]
    assert endpoint.pending == [2]


def test_a_notification_whose_params_has_an_id_is_not_a_cancel() -> None:
    endpoint = RpcEndpoint()
    assert endpoint.receive({"jsonrpc": "2.0", "method": "progress", "params": {"id": 3}}) == [
        Notification("progress", {"id": 3})
    ]
    assert endpoint.receive({"jsonrpc": "2.0", "method": CANCEL_METHOD, "params": {"id": 3}}) == [
        Cancelled(3)
    ]


def test_answers_to_nothing_we_asked_are_dropped_alone_or_in_a_batch() -> None:
    endpoint = RpcEndpoint()
    assert endpoint.request("m") == 1
    endpoint.messages_to_send()
    strays: list[dict[str, Any]] = [
        {"jsonrpc": "2.0", "id": 99, "result": 3},
        {"jsonrpc": "2.0", "id": 99, "error": {"code": -32000, "message": "boom"}},
        {"jsonrpc": "2.0", "id": None, "result": 3},
    ]
    for stray in strays:
        assert endpoint.receive(stray) == []
    # in a batch, after a request: the request stays, and is answered alone
    request = {"jsonrpc": "2.0", "id": 5, "method": "add", "params": [1, 2]}
    assert endpoint.receive([request, *strays]) == [Request(5, "add", [1, 2])]
    assert endpoint.messages_to_send() == []
    endpoint.respond(5, 3)
    assert endpoint.messages_to_send() == [[{"jsonrpc": "2.0", "result": 3, "id": 5}]]
    assert endpoint.pending == [1]
