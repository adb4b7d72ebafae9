"""The tutorial's system (examples/tutorial): sensors -> listeners across the two languages,
Python's requests <-> the Node.js server, the Flask app's answers to bad input, `bothways demo`.
"""

from __future__ import annotations

import json
import math
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask
from hypothesis import given, settings
from hypothesis import strategies as st

import bothways
from bothways.cli import main as cli_main

from ..conftest import UNIT, require_tool
from ..tutorial import TUTORIAL, Program, load_app_module, marked_env, wait_none_marked

PY = sys.executable


class Ran:
    """What a program that ran to its end left: exit code, output, processes of its group still alive."""

    def __init__(self, program: Program, left_behind: list[int]) -> None:
        self.returncode = program.process.returncode
        self.stdout = program.stdout
        self.stderr = program.stderr
        self.left_behind = left_behind


def run(argv: list[str], *, env: dict[str, str] | None = None, cwd: Path, timeout: float = 30) -> Ran:
    """Runs a program to its end, within ``timeout`` x UNIT seconds (else ends it and fails)."""
    program = Program(argv, env=env, cwd=cwd)
    try:
        program.wait(timeout)
        return Ran(program, program.group())
    except subprocess.TimeoutExpired:
        pytest.fail(f"{argv} did not end within {timeout * UNIT} s; stdout: {program.stdout[-5:]}")
    finally:
        program.stop()


def is_reading(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and -5 <= value <= 15


# --------------------------------------------------------------------------------------------
# Sensors -> listeners


def pair(name: str) -> tuple[list[str], list[str]]:
    """(sensor argv, listener argv) for sensor.py -> temperature-listener.js or the reverse."""
    node = require_tool("node")
    if name == "py->js":
        return [PY, str(TUTORIAL / "sensor.py")], [node, str(TUTORIAL / "temperature-listener.js")]
    return [node, str(TUTORIAL / "sensor.js")], [PY, str(TUTORIAL / "temperature-listener.py")]


@pytest.mark.parametrize("name", ["py->js", "js->py"])
@pytest.mark.parametrize(("interval", "count", "seed"), [("0.01", 25, 7), ("0", 1000, 11)])
def test_sensor_to_listener(name: str, interval: str, count: int, seed: int, tmp_path: Path) -> None:
    sensor, listener = pair(name)
    flags = ["--interval", interval, "--count", str(count), "--seed", str(seed)]
    # What the sensor writes, with this seed (a run of its own, read with float(), not bothways).
    alone = run([*sensor, *flags], cwd=tmp_path)
    assert alone.returncode == 0, alone.stderr
    written = [float(line) for line in alone.stdout]
    assert len(written) == count

    # The listener spawns the same sensor with the same flags, from another working directory.
    env = marked_env(BOTHWAYS_PYTHON=PY, BOTHWAYS_NODE=require_tool("node"))[0]
    heard = run([*listener, *flags, "--json"], env=env, cwd=tmp_path)
    assert heard.returncode == 0, heard.stderr
    assert heard.stderr == []  # no bad line reported
    readings = json.loads(heard.stdout[-1])
    assert len(readings) == count >= 20  # none lost, none merged
    assert all(is_reading(r) for r in readings), readings
    assert readings == written
    assert heard.left_behind == []  # the listener waited for its sensor


@pytest.mark.parametrize("name", ["py->js", "js->py"])
def test_listener_shows_the_list_as_it_grows(name: str, tmp_path: Path) -> None:
    _, listener = pair(name)
    env = {"BOTHWAYS_PYTHON": PY, "BOTHWAYS_NODE": require_tool("node")}
    flags = ["--interval", "0", "--count", "12", "--seed", "3"]
    heard = run([*listener, *flags], env=marked_env(**env)[0], cwd=tmp_path)
    assert heard.returncode == 0, heard.stderr
    assert [line.split(":")[0] for line in heard.stdout] == [f"readings ({n})" for n in range(1, 13)]
    assert heard.stdout[-1].startswith("readings (12): […, ")  # only the last 10 once it is long


FAKE_SENSOR = r"""
import sys, time
# A sensor that splits readings across writes, sends junk, and ends without a final newline.
for chunk in [b"1.5\n1", b"2.25\n-3.", b"75\nnot json\n4\n", b'"hot"\n', b"7"]:
    sys.stdout.buffer.write(chunk)
    sys.stdout.buffer.flush()
    time.sleep(0.05)
"""


@pytest.mark.parametrize("name", ["py->js", "js->py"])
def test_listener_frames_split_readings_and_reports_bad_lines(name: str, tmp_path: Path) -> None:
    _, listener = pair(name)
    (tmp_path / "fake_sensor.py").write_text(FAKE_SENSOR)
    fake = tmp_path / "fake-interpreter"  # stands in for python3 or node: runs the fake sensor
    fake.write_text(f'#!/bin/sh\nexec "{PY}" "{tmp_path / "fake_sensor.py"}"\n')
    fake.chmod(0o755)
    env = {"BOTHWAYS_PYTHON": str(fake), "BOTHWAYS_NODE": str(fake)}
    heard = run([*listener, "--json"], env=marked_env(**env)[0], cwd=tmp_path)
    assert heard.returncode == 0, heard.stderr
    assert json.loads(heard.stdout[-1]) == [1.5, 12.25, -3.75, 4, 7]
    errors = "\n".join(heard.stderr)
    assert "line 4" in errors  # not json
    assert "line 6" in errors and "hot" in errors  # not a number
    assert "line 7" in errors  # the stream ended inside a line (7 was still delivered)
    assert len(heard.stderr) == 3, errors
    assert heard.left_behind == []


@pytest.mark.parametrize("name", ["py->js", "js->py"])
def test_listener_passes_on_the_sensors_exit_code(name: str, tmp_path: Path) -> None:
    _, listener = pair(name)
    fake = tmp_path / "fake-interpreter"
    fake.write_text("#!/bin/sh\necho 1.5\nexit 3\n")
    fake.chmod(0o755)
    env = marked_env(BOTHWAYS_PYTHON=str(fake), BOTHWAYS_NODE=str(fake))[0]
    heard = run([*listener, "--json"], env=env, cwd=tmp_path)
    assert heard.returncode == 3
    assert json.loads(heard.stdout[-1]) == [1.5]


# --------------------------------------------------------------------------------------------
# Python (requests) <-> the Node.js server


@pytest.fixture
def node_server(tmp_path: Path) -> Iterator[tuple[Program, str]]:
    server = Program([require_tool("node"), str(TUTORIAL / "node-server.js"), "--port", "0"], cwd=tmp_path)
    try:
        url = server.wait_for(r"Listening on (http://127\.0\.0\.1:\d+)/hello").group(1)
        yield server, url
    finally:
        server.stop()


def test_python_client_gets_and_posts_json(node_server: tuple[Program, str], tmp_path: Path) -> None:
    server, url = node_server
    message = {"greeting": "Grüße aus Python 🐍", "temperature": -4.25, "readings": [1, 2.5, None, True]}
    client_argv = [PY, str(TUTORIAL / "python-client.py"), "--url", url, "--message", json.dumps(message)]
    client = run(client_argv, cwd=tmp_path)
    assert client.returncode == 0, client.stderr
    said = {}
    for line in client.stdout:  # "GET  /hello -> {...}", "POST /hello <- {...}", "POST /hello -> {...}"
        match = re.fullmatch(r"(GET|POST) +/hello (->|<-) (.*)", line)
        assert match, client.stdout
        said[match.group(1, 2)] = json.loads(match.group(3))
    assert said == {
        ("GET", "->"): {"greeting": "Hello from Node.js!"},  # Node -> Python
        ("POST", "<-"): message,  # Python -> Node
        ("POST", "->"): {"received": message},  # and back
    }
    # The Node server kept what Python sent, and printed it.
    assert requests.get(url + "/hello/received", timeout=5 * UNIT).json() == [message]
    server.wait_for(r"POST /hello: ")


def post_json(url: str, body: bytes) -> requests.Response:
    return requests.post(
        url + "/hello", data=body, headers={"Content-Type": "application/json"}, timeout=5 * UNIT
    )


VALUES = [
    {"greeting": "Hello from Python!"},
    [],
    {},
    'é ∑ 🐍 \u2028 \n\t"quoted"',
    2**53 - 1,
    -(2**53 - 1),
    1e308,
    5e-324,
    -0.5,
    {"deep": [[[[{"x": [None, False, True]}]]]]},
]


@pytest.mark.parametrize("value", VALUES, ids=range(len(VALUES)))
def test_node_server_echoes_values_exactly(node_server: tuple[Program, str], value: Any) -> None:
    _, url = node_server
    answer = post_json(url, bothways.encode(value))
    assert answer.status_code == 200, answer.text
    assert bothways.decode(answer.content) == {"received": value}


def test_node_server_gets_null_for_nan(node_server: tuple[Program, str]) -> None:
    # json.dumps (requests' json=) would send NaN, which JSON.parse rejects; bothways sends null.
    _, url = node_server
    body = bothways.encode({"t": math.nan, "u": math.inf})
    answer = post_json(url, body)
    assert answer.json() == {"received": {"t": None, "u": None}}


BAD_BODIES = [
    b'{"greeting": "hi",}',
    b'{\n  "greeting": "hi"\n  "x": 1\n}',
    b'{"t": NaN}',
    b"",
    b'{"a": "\xff"}',
    b'"\\ud800"',
    b"{oops",
    b"[1e400]",
    b'{"a" 1}',
    b"[" * 1025 + b"]" * 1025,
]


def test_node_server_and_flask_give_the_same_400s(node_server: tuple[Program, str]) -> None:
    """The same bad body gets the same 400 body from both tutorial servers, to the byte."""
    _, url = node_server
    client = make_app().test_client()
    json_type = {"Content-Type": "application/json"}
    for body in BAD_BODIES:
        from_node = requests.post(url + "/hello", data=body, headers=json_type, timeout=5 * UNIT)
        from_flask = client.post("/hello", data=body, headers=json_type)
        assert (from_node.status_code, from_flask.status_code) == (400, 400), body
        assert from_node.json() == from_flask.get_json(), body
        assert from_node.json()["error"]["code"] == "DECODE_ERROR"


def test_node_server_rejects_bad_input(node_server: tuple[Program, str]) -> None:
    _, url = node_server
    post = url + "/hello"
    json_type = {"Content-Type": "application/json"}

    answer = requests.post(post, data=b'{"a": 1,\n "b": [1 2]}', headers=json_type, timeout=5 * UNIT)
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert (error["code"], error["line"], error["column"]) == ("DECODE_ERROR", 2, 10)
    assert "[1 2]" in error["excerpt"]

    answer = requests.post(post, data=b'{"t": NaN}', headers=json_type, timeout=5 * UNIT)
    assert answer.status_code == 400 and answer.json()["error"]["code"] == "DECODE_ERROR"

    answer = requests.post(post, data=b'{"a": 1}', headers={"Content-Type": "text/plain"}, timeout=5 * UNIT)
    assert answer.status_code == 415 and answer.json()["error"]["code"] == "UNSUPPORTED_MEDIA_TYPE"

    answer = requests.post(post, data=b"[" + b"0," * 600_000 + b"0]", headers=json_type, timeout=10 * UNIT)
    assert answer.status_code == 413 and answer.json()["error"]["code"] == "PAYLOAD_TOO_LARGE"

    answer = requests.get(url + "/nowhere", timeout=5 * UNIT)
    assert answer.status_code == 404 and answer.json()["error"]["code"] == "NOT_FOUND"

    # Still serving, and nothing bad was kept.
    assert requests.get(url + "/hello", timeout=5 * UNIT).json() == {"greeting": "Hello from Node.js!"}
    assert requests.get(url + "/hello/received", timeout=5 * UNIT).json() == []


def test_python_client_reports_a_missing_server(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}"
        client = run([PY, str(TUTORIAL / "python-client.py"), "--url", url], cwd=tmp_path)
    assert client.returncode == 1
    assert "is node-server.js running?" in "\n".join(client.stderr)


# --------------------------------------------------------------------------------------------
# The Flask app: the tutorial's routes, and bad input (Flask's test client)


def make_app(**config: Any) -> Flask:
    app: Flask = load_app_module().create_app({"TESTING": True, **config})
    return app


def test_flask_routes_of_the_tutorial(capsys: pytest.CaptureFixture[str]) -> None:
    client = make_app().test_client()
    answer = client.get("/hello")
    assert answer.status_code == 200 and answer.mimetype == "application/json"
    assert answer.get_json() == {"greeting": "Hello from Flask!"}

    answer = client.post("/hello", json={"greeting": "Hello from the browser!"})
    assert (answer.status_code, answer.text) == (200, "OK")
    assert "{'greeting': 'Hello from the browser!'}" in capsys.readouterr().out  # printed, as in the tutorial
    answer = client.post("/hello", data=b"[1, 2.5]", content_type="application/json; charset=utf-8")
    assert answer.status_code == 200
    assert client.get("/hello/received").get_json() == [{"greeting": "Hello from the browser!"}, [1, 2.5]]

    page = client.get("/test")
    assert page.status_code == 200 and 'id="get-json"' in page.text


@pytest.mark.parametrize(
    ("body", "line", "column"),
    [
        (b'{"greeting": "hi",}', 1, 18),
        (b'{\n  "greeting": "hi"\n  "x": 1\n}', 3, 3),
        (b'{"t": NaN}', 1, 7),
        (b"", 1, 1),
        (b'{"a": "\xff"}', 1, 8),
        (b'"\\ud800"', 1, 2),
    ],
    ids=["trailing-comma", "missing-comma-line-3", "nan", "empty", "bad-utf8", "lone-surrogate"],
)
def test_flask_malformed_json_is_400_with_where(body: bytes, line: int, column: int) -> None:
    client = make_app().test_client()
    answer = client.post("/hello", data=body, content_type="application/json")
    assert answer.status_code == 400
    assert answer.mimetype == "application/json"
    error = answer.get_json()["error"]
    assert error["code"] == "DECODE_ERROR"
    assert error["line"] == line
    assert error["column"] == column
    assert error["message"].startswith(f"line {line}, col {column}: ")
    assert "excerpt" in error
    assert client.get("/hello/received").get_json() == []


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded"])
def test_flask_wrong_content_type_is_415(content_type: str | None) -> None:
    client = make_app().test_client()
    headers = {} if content_type is None else {"Content-Type": content_type}
    answer = client.post("/hello", data=b'{"greeting": "hi"}', headers=headers)
    assert answer.status_code == 415
    error = answer.get_json()["error"]
    assert error["code"] == "UNSUPPORTED_MEDIA_TYPE" and "application/json" in error["message"]


def test_flask_body_over_the_limit_is_413() -> None:
    client = make_app(MAX_CONTENT_LENGTH=1000).test_client()
    answer = client.post("/hello", data=b"[" + b"1," * 600 + b"1]", content_type="application/json")
    assert answer.status_code == 413
    error = answer.get_json()["error"]
    assert error["code"] == "PAYLOAD_TOO_LARGE" and error["limit"] == 1000
    assert client.post("/hello", data=b"[1]", content_type="application/json").status_code == 200


def test_flask_default_limit_is_one_mib() -> None:
    client = make_app().test_client()
    answer = client.post("/hello", data=b'"' + b"x" * (1024 * 1024) + b'"', content_type="application/json")
    assert answer.status_code == 413


def test_flask_other_errors_are_json_too() -> None:
    app = make_app()

    @app.get("/boom")
    def boom() -> str:
        raise RuntimeError("a bug")

    client = app.test_client()
    for method, path, status in [("get", "/nowhere", 404), ("put", "/hello", 405), ("get", "/boom", 500)]:
        answer = getattr(client, method)(path)
        assert answer.status_code == status
        assert answer.mimetype == "application/json", answer.text
        assert "Traceback" not in answer.text and "<html" not in answer.text.lower()
        assert set(answer.get_json()["error"]) >= {"code", "message"}


@settings(max_examples=150, deadline=None)
@given(body=st.binary(max_size=64) | st.text(max_size=32).map(str.encode))
def test_flask_never_500_on_any_body(body: bytes) -> None:
    client = make_app().test_client()
    answer = client.post("/hello", data=body, content_type="application/json")
    assert answer.status_code in (200, 400), answer.text
    assert answer.mimetype in ("application/json", "text/plain")


# --------------------------------------------------------------------------------------------
# bothways demo


def demo_argv(*args: str) -> list[str]:
    return [PY, "-m", "bothways.cli", "demo", "tutorial", "--port", "0", "--interval", "0.2", *args]


def check_demo_output(lines: list[str]) -> None:
    text = "\n".join(lines)
    assert any(line.startswith("bothways demo: open http://127.0.0.1:") for line in lines), text
    for pair_name in ("py->js", "js->py"):
        shown = [line for line in lines if line.startswith(f"[{pair_name}] readings (")]
        assert len(shown) >= 3, text
        last = shown[-1].split(": ", 1)[1].replace("…, ", "")  # "[…, 1.5, -2.25]" -> "[1.5, -2.25]"
        assert all(is_reading(v) for v in json.loads(last)), shown[-1]


def test_demo_runs_everything_and_stops_at_duration(tmp_path: Path) -> None:
    require_tool("node")
    env, mark = marked_env()
    demo = run(demo_argv("--duration", "3"), env=env, cwd=tmp_path, timeout=30)
    assert demo.returncode == 0, demo.stderr
    check_demo_output(demo.stdout)
    assert demo.stdout[-1] == "bothways demo: stopped flask (stopped), py->js (stopped), js->py (stopped)"
    assert wait_none_marked(mark) == []  # no child or grandchild left


def test_demo_stops_everything_on_ctrl_c(tmp_path: Path) -> None:
    require_tool("node")
    env, mark = marked_env()
    demo = Program(demo_argv(), env=env, cwd=tmp_path)
    try:
        url = demo.wait_for(r"bothways demo: open (http://127\.0\.0\.1:\d+)/test").group(1)
        assert requests.get(url + "/hello", timeout=5 * UNIT).json() == {"greeting": "Hello from Flask!"}
        assert requests.get(url + "/test", timeout=5 * UNIT).status_code == 200
        demo.wait_for(r"^\[py->js\] readings \(2\)")
        demo.wait_for(r"^\[js->py\] readings \(2\)")
        demo.process.send_signal(signal.SIGINT)  # Ctrl-C
        assert demo.wait(15) == 0
    finally:
        demo.stop()
    assert demo.stdout[-1] == "bothways demo: stopped flask (stopped), py->js (stopped), js->py (stopped)"
    assert wait_none_marked(mark) == []


def test_demo_without_the_examples_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["demo", "--examples", str(tmp_path)]) == 2
    assert "the wheel carries them" in capsys.readouterr().err


@pytest.mark.parametrize(
    "program",
    sorted(p.name for p in TUTORIAL.iterdir() if p.suffix in (".py", ".js") and p.name != "flags.js"),
)
def test_every_program_answers_help_with_a_description_and_its_options(program: str) -> None:
    interpreter = require_tool("node") if program.endswith(".js") else PY
    out = subprocess.run(
        [interpreter, str(TUTORIAL / program), "--help"], capture_output=True, text=True, timeout=30 * UNIT
    )
    assert out.returncode == 0, out.stderr
    usage, description, *rest = out.stdout.split("\n\n")  # (argparse wraps a long usage)
    assert usage.startswith(f"usage: {'node ' if program.endswith('.js') else ''}{program} ")
    assert description.strip() and not description.startswith((" ", "options:")), out.stdout
    assert any(line.strip().startswith("--") for line in "\n".join(rest).splitlines()), out.stdout
    wrong = subprocess.run(
        [interpreter, str(TUTORIAL / program), "--no-such-flag"],
        capture_output=True,
        text=True,
        timeout=30 * UNIT,
    )
    assert wrong.returncode == 2 and "usage: " in wrong.stderr and "Traceback" not in wrong.stderr
    assert "ERR_PARSE_ARGS" not in wrong.stderr


@pytest.mark.parametrize("command", ["check", "demo"])
def test_every_cli_command_answers_help_with_a_description(command: str) -> None:
    out = subprocess.run(
        [PY, "-m", "bothways.cli", command, "--help"], capture_output=True, text=True, check=True
    )
    usage, *rest = out.stdout.split("\n\n")
    assert usage.startswith(f"usage: bothways {command}")
    assert rest[0].strip() and not rest[0].startswith("options:"), out.stdout
