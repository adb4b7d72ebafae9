"""Running the tutorial's programs (examples/tutorial) from the tests.

Every program is started in its own process group and ended by the test that started it, by its
Popen handle: ``Program.stop()`` signals the group (the program and whatever it spawned), then
kills it. Every wait has a timeout in multiples of ``UNIT``.
"""

from __future__ import annotations

import importlib.util
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from types import ModuleType
from typing import IO

from .conftest import ROOT, UNIT

TUTORIAL = ROOT / "examples" / "tutorial"
MARK = "BOTHWAYS_TEST_MARK"  # an environment variable every descendant inherits


def load_app_module() -> ModuleType:
    """examples/tutorial/app.py as a module (the examples are not a package)."""
    name = "bothways_tutorial_app"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, TUTORIAL / "app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # Flask finds the templates folder through sys.modules
    spec.loader.exec_module(module)
    return module


def marked_env(**extra: str) -> tuple[dict[str, str], str]:
    """A copy of os.environ with a unique mark, to find any process left behind afterwards."""
    mark = uuid.uuid4().hex
    return {**os.environ, "PYTHONUNBUFFERED": "1", MARK: mark, **extra}, mark


def processes_marked(mark: str) -> list[int]:
    """The pids of live processes whose environment carries ``mark`` (Linux /proc)."""
    needle = f"{MARK}={mark}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if needle in environ.split(b"\0"):
            found.append(int(entry.name))
    return found


def wait_none_marked(mark: str, timeout: float = 5.0) -> list[int]:
    """Waits until no process carries ``mark``; returns those still there after ``timeout``."""
    deadline = time.monotonic() + timeout * UNIT
    while (left := processes_marked(mark)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


class Program:
    """A started program; threads collect its stdout and stderr lines as they come."""

    def __init__(self, argv: list[str], *, env: dict[str, str] | None = None, cwd: Path = ROOT) -> None:
        self.argv = argv
        self.process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env if env is not None else {**os.environ, "PYTHONUNBUFFERED": "1"},
            cwd=cwd,
            start_new_session=True,  # its own process group, so stop() reaches what it spawned
        )
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self._changed = threading.Condition()
        assert self.process.stdout is not None and self.process.stderr is not None
        self._readers = [
            threading.Thread(target=self._read, args=(self.process.stdout, self.stdout), daemon=True),
            threading.Thread(target=self._read, args=(self.process.stderr, self.stderr), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _read(self, stream: IO[bytes], lines: list[str]) -> None:
        for raw in iter(stream.readline, b""):
            with self._changed:
                lines.append(raw.decode("utf-8", "replace").rstrip("\r\n"))
                self._changed.notify_all()
        stream.close()

    def wait_for(self, pattern: str, timeout: float = 10.0) -> re.Match[str]:
        """The first stdout line so far, or to come, matching ``pattern``; fails after ``timeout`` x UNIT."""
        deadline = time.monotonic() + timeout * UNIT
        seen = 0
        with self._changed:
            while True:
                for line in self.stdout[seen:]:
                    if match := re.search(pattern, line):
                        return match
                seen = len(self.stdout)
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"{self.argv[1:]}: no line matching {pattern!r} in {timeout * UNIT:.0f} s; "
                        f"exit code {self.process.poll()}\n"
                        f"stdout: {self.stdout[-20:]}\nstderr: {self.stderr[-20:]}"
                    )
                self._changed.wait(min(left, 0.5))

    def wait(self, timeout: float = 10.0) -> int:
        """Waits for the program to end by itself; returns its exit code (readers drained)."""
        code = self.process.wait(timeout * UNIT)
        for reader in self._readers:
            reader.join(timeout * UNIT)
        return code

    def group(self) -> list[int]:
        """The pids of live processes in the program's process group (what it spawned, too)."""
        members = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[2]) == self.process.pid and fields[0] != "Z":  # pgrp; not a zombie
                members.append(int(stat.parent.name))
        return members

    def stop(self) -> None:
        """Ends the program and its group: SIGCONT (in case it was frozen), SIGTERM, then SIGKILL."""
        group = self.process.pid
        if self.process.poll() is None:
            for sig in (signal.SIGCONT, signal.SIGTERM):
                _signal_group(group, sig)
            try:
                self.process.wait(5 * UNIT)
            except subprocess.TimeoutExpired:
                _signal_group(group, signal.SIGKILL)
                self.process.wait(5 * UNIT)
        _signal_group(group, signal.SIGKILL)  # anything it spawned and left behind
        for reader in self._readers:
            reader.join(5 * UNIT)


def _signal_group(group: int, sig: signal.Signals) -> None:
    try:
        os.killpg(group, sig)
    except (ProcessLookupError, PermissionError):
        pass
