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
    INTERNAL_ERROR,
    PROTOCOL,
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
    [(None, "null"), (True, "boolean"), (3, "number"), (1.5, "number"), ("x", "string"), ([1], "array")],
)
def test_a_message_that_is_not_an_object_is_answered_with_its_json_type(message: Any, named: str) -> None:
    endpoint = RpcEndpoint()
    assert endpoint.receive([message, {"jsonrpc": "2.0", "method": "n"}]) == [Notification("n")]
    [answers] = endpoint.messages_to_send()
    reason = f"expected an object, got {named}"
    data = {"reason": reason}
    assert answers == [
        {"jsonrpc": "2.0", "error": {"code": -32600, "message": "Invalid Request", "data": data}, "id": None}
    ]


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
    "jsonrpc": ["2.0", "1.0", 2, ABSENT],
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
    assert len(messages) == 6720
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
