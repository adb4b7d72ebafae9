"""Running README blocks: each in a fresh temporary directory, as a reader would, with a timeout.

Processes are started with tests/tutorial.py's ``Program`` (its own process group, stdout and
stderr collected) and ended by that handle; each carries a mark in its environment, so that a
process a block leaves behind is found (and fails the block). HTML blocks are loaded in headless
Chromium. Everything listens on 127.0.0.1 only.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from ..conftest import IN_CI, ROOT, UNIT, launch_chromium, require_tool
from ..tutorial import MARK, Program, marked_env, wait_none_marked
from .markdown import WILDCARD, Block, expected_output, explain, match

FOREGROUND = 30.0  # seconds (x UNIT) a block may run
READY = 15.0  # seconds (x UNIT) for a background block to listen on its port
ENDING = 10.0  # seconds (x UNIT) for a background block to end by itself (a server: to print)
PAGE = 20.0  # seconds (x UNIT) for a page's console to show what its block expects
LINGER = 5.0  # seconds (x UNIT) for a block's processes to be gone once it ended

VENV = Path(sys.prefix)  # the virtual environment the tests run in (the repository's .venv)
VENV_BIN = Path(sys.executable).parent
JS_PACKAGE = ROOT / "js"
JS_SRC = JS_PACKAGE / "src"
SCRIPT = {"python": "block.py", "js": "block.mjs", "sh": "block.sh"}
TOOLS = ("node", "curl")  # a block naming one of these needs it
CLEARED = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "NODE_PATH", "NODE_OPTIONS")


# ------------------------------------------------------------------------------------------
# The reader's setting


def environment(block: Block) -> tuple[dict[str, str], str]:
    """A reader's environment, marked: none of the test run's BOTHWAYS_* or PYTHONPATH; the
    virtual environment off PATH for Python and JavaScript (``python3`` is whatever the machine
    has), first on PATH for shell blocks (``bothways`` is the command a pip install gives)."""
    env, mark = marked_env()
    for key in list(env):
        if (key.startswith("BOTHWAYS_") and key != MARK) or key in CLEARED:
            del env[key]
    venv_bin = os.path.realpath(VENV_BIN)
    path = [p for p in env.get("PATH", "").split(os.pathsep) if p and os.path.realpath(p) != venv_bin]
    if block.language == "sh":
        path.insert(0, str(VENV_BIN))
    env["PATH"] = os.pathsep.join(path)
    return env, mark


def prepare(directory: Path, files: dict[str, str]) -> Path:
    """A project folder with bothways installed both ways: ``node_modules/bothways`` (the npm
    package: a link to js/, resolved through its exports map) and ``.venv`` (a virtual
    environment with bothways: a link to the one the tests run in), and the section's files."""
    (directory / "node_modules").mkdir(parents=True, exist_ok=True)
    link = directory / "node_modules" / "bothways"
    if not link.exists():
        link.symlink_to(JS_PACKAGE, target_is_directory=True)
    if not (directory / ".venv").exists():
        (directory / ".venv").symlink_to(VENV, target_is_directory=True)
    for name, content in files.items():
        (directory / name).write_text(content)
    return directory


def _needed_tools(block: Block) -> None:
    for tool in TOOLS:
        if re.search(rf"(?<![\w./-]){tool}\b", block.code):
            require_tool(tool)


def _command(block: Block, directory: Path) -> tuple[list[str], Path]:
    script = directory / SCRIPT[block.language]
    script.write_text(block.code)
    cwd = ROOT if block.cwd_repo else directory
    if block.language == "python":
        return [sys.executable, str(script)], cwd
    if block.language == "js":
        return [require_tool("node"), str(script)], cwd
    return ["bash", "-euo", "pipefail", str(script)], cwd


def _show(program: Program) -> str:
    stdout = "\n".join(program.stdout[-40:])
    stderr = "\n".join(program.stderr[-40:])
    return f"--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}"


def _left_behind(mark: str, what: str) -> None:
    """Fails when a process of the block is still there (after killing it, by its pid)."""
    left = wait_none_marked(mark, LINGER)
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert not left, f"{what} left processes behind: {left}"


def _check_output(block: Block, printed: list[str], program: Program | None = None) -> None:
    expected = expected_output(block)
    if not match(expected, printed):
        shown = f"\n{_show(program)}" if program is not None else ""
        raise AssertionError(
            f"README line {block.line}: the block prints something else\n{explain(expected, printed)}{shown}"
        )


# ------------------------------------------------------------------------------------------
# One block


def run_block(block: Block, directory: Path, files: dict[str, str]) -> None:
    """Runs a foreground block to its end; fails on a non-zero exit, a timeout, other output, or
    a process left behind."""
    _needed_tools(block)
    prepare(directory, files)
    if block.language == "json":
        json.loads(block.code)
        return
    if block.language == "html":
        run_page(block)
        return
    argv, cwd = _command(block, directory)
    env, mark = environment(block)
    program = Program(argv, env=env, cwd=cwd)
    try:
        code = program.wait(FOREGROUND)
    except subprocess.TimeoutExpired:
        program.stop()
        raise AssertionError(
            f"README line {block.line}: still running after {FOREGROUND * UNIT:.0f} s, stopped\n"
            + _show(program)
        ) from None
    finally:
        program.stop()  # whatever its process group still holds
    _left_behind(mark, f"README line {block.line}")
    assert code == 0, f"README line {block.line}: exit code {code}\n{_show(program)}"
    _check_output(block, program.stdout, program)


def check_file(block: Block, blocks: list[Block], directory: Path) -> None:
    """A `files` block: some block of its section names it, and it parses."""
    assert block.file_name
    name = block.file_name
    module = re.escape(Path(name).stem)
    uses = re.compile(re.escape(name) + (rf"|\b(import|from) {module}\b" if name.endswith(".py") else ""))
    users = [
        b
        for b in blocks
        if b.section_number == block.section_number and b is not block and uses.search(b.code)
    ]
    assert users, f"README line {block.line}: no block of its section uses {name!r}"
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(block.code)
    if block.language == "python":
        compile(block.code, block.file_name, "exec")
    elif block.language == "js":
        checked = subprocess.run(
            [require_tool("node"), "--check", str(path)], capture_output=True, text=True, timeout=10 * UNIT
        )
        assert checked.returncode == 0, f"README line {block.line}: {checked.stderr}"
    elif block.language == "json":
        json.loads(block.code)


# ------------------------------------------------------------------------------------------
# Background blocks: started first, serving the blocks after them, then stopped


def port_free(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers do
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def listening(port: int) -> set[str]:
    """The IPv4 addresses listening on ``port`` (Linux /proc/net/tcp; state 0A is LISTEN)."""
    found = set()
    for row in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = row.split()
        address, _, hex_port = fields[1].partition(":")
        if fields[3] == "0A" and int(hex_port, 16) == port:
            found.add(socket.inet_ntoa(bytes.fromhex(address)[::-1]))
    return found


@dataclass
class Background:
    block: Block
    program: Program
    mark: str


class Backgrounds:
    """The background blocks running now, by their README line."""

    def __init__(self) -> None:
        self.running: dict[int, Background] = {}
        self.refused: dict[int, Callable[[], None]] = {}  # a start that failed or was skipped: again

    def ensure(self, block: Block, directory: Callable[[], Path], files: dict[str, str]) -> None:
        """Starts ``block`` unless it runs; waits until it listens on its port."""
        if block.line in self.running:
            return
        if block.line in self.refused:
            self.refused[block.line]()
        try:
            self._start(block, directory(), files)
        except pytest.skip.Exception as skipped:
            reason = str(skipped.msg)
            self.refused[block.line] = lambda: pytest.skip(reason)
            raise
        except BaseException as error:
            reason = f"its background block (README line {block.line}) did not start: {error}"
            self.refused[block.line] = lambda: pytest.fail(reason)
            raise

    def _start(self, block: Block, directory: Path, files: dict[str, str]) -> None:
        assert block.port is not None
        _needed_tools(block)
        if not port_free(block.port):
            message = f"port {block.port}, which the README uses, is taken on this machine"
            if IN_CI:
                pytest.fail(message + " - in CI that is a failure, not a skip")
            pytest.skip(message)
        prepare(directory, files)
        argv, cwd = _command(block, directory)
        env, mark = environment(block)
        program = Program(argv, env=env, cwd=cwd)
        deadline = time.monotonic() + READY * UNIT
        while not (addresses := listening(block.port)):
            if program.process.poll() is not None or time.monotonic() > deadline:
                program.stop()
                raise AssertionError(
                    f"README line {block.line}: not listening on 127.0.0.1:{block.port} after "
                    f"{READY * UNIT:.0f} s (exit code {program.process.poll()})\n{_show(program)}"
                )
            time.sleep(0.05)
        self.running[block.line] = Background(block, program, mark)
        assert addresses == {"127.0.0.1"}, (
            f"README line {block.line}: listens on {addresses}, not 127.0.0.1 only"
        )

    def finish(self, block: Block, check: bool = True) -> None:
        """Ends ``block``. A server (its promised output ends with a line of only ``…``) is
        stopped once its output matches; any other background block must end by itself, with
        exit code 0. Then its output is compared."""
        background = self.running.pop(block.line, None)
        if background is None:
            return
        program = background.program
        where = f"README line {block.line} (background)"
        expected = expected_output(block)
        try:
            if check and expected[-1:] == [WILDCARD]:
                deadline = time.monotonic() + ENDING * UNIT
                while not match(expected, program.stdout) and time.monotonic() < deadline:
                    time.sleep(0.05)
            elif check:
                try:
                    code = program.wait(ENDING)
                except subprocess.TimeoutExpired:
                    raise AssertionError(
                        f"{where}: did not end by itself within {ENDING * UNIT:.0f} s (a server's "
                        f"output ends with a line of only {WILDCARD})\n{_show(program)}"
                    ) from None
                assert code == 0, f"{where}: exit code {code}\n{_show(program)}"
        finally:
            program.stop()
        if check:
            _left_behind(background.mark, where)
            _check_output(block, program.stdout, program)

    def stop_all(self) -> None:
        for line in list(self.running):
            self.finish(self.running[line].block, check=False)


# ------------------------------------------------------------------------------------------
# HTML blocks: a page in headless Chromium


class _Site(ThreadingHTTPServer):
    page = b""


class _Handler(BaseHTTPRequestHandler):
    """``/`` is the block; ``/bothways/NAME.js`` a module of js/src, as the tutorial's Flask app
    serves them."""

    server: _Site

    def do_GET(self) -> None:  # noqa: N802 (the http.server name)
        if self.path == "/":
            self._send(200, "text/html; charset=utf-8", self.server.page)
            return
        name = self.path.removeprefix("/bothways/")
        module = (JS_SRC / name).resolve()
        if name != self.path and name.endswith(".js") and module.is_relative_to(JS_SRC) and module.is_file():
            self._send(200, "text/javascript; charset=utf-8", module.read_bytes())
        else:
            self._send(404, "text/plain", b"not found")

    def _send(self, status: int, kind: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def run_page(block: Block) -> None:
    """Loads the block as a page of http://127.0.0.1:PORT/ in headless Chromium; its output is
    its ``console.log`` lines, compared once they match (or at the timeout); an uncaught error in
    the page fails it."""
    require_tool("chromium")  # before the site starts: a skip leaves nothing behind
    from playwright.sync_api import sync_playwright

    site = _Site(("127.0.0.1", 0), _Handler)
    site.page = block.code.encode()
    serving = threading.Thread(target=site.serve_forever, daemon=True)
    serving.start()
    printed: list[str] = []
    other: list[str] = []
    errors: list[str] = []
    try:
        with sync_playwright() as playwright:
            browser = launch_chromium(playwright, PAGE)
            try:
                page = browser.new_page()
                page.set_default_timeout(PAGE * UNIT * 1000)
                page.on("console", lambda m: (printed if m.type == "log" else other).append(m.text))
                page.on("pageerror", lambda error: errors.append(str(error)))
                page.goto(f"http://127.0.0.1:{site.server_address[1]}/")
                deadline = time.monotonic() + PAGE * UNIT
                expected = expected_output(block)
                while not errors and time.monotonic() < deadline:
                    if match(expected, printed):
                        page.wait_for_timeout(200)  # and nothing more comes
                        break
                    page.wait_for_timeout(50)
            finally:
                browser.close()
    finally:
        site.shutdown()
        site.server_close()
        serving.join(10 * UNIT)
    assert not errors, f"README line {block.line}: the page threw: {errors}\nconsole: {printed + other}"
    expected = expected_output(block)
    assert match(expected, printed), (
        f"README line {block.line}: the page logs something else\n{explain(expected, printed)}\n"
        f"other console messages: {other}"
    )
