"""The soak's own processes: agents (agents/agent.py, agents/agent.mjs) spawned with bothways'
``spawn``, each read by a thread of ours, and stopped or killed by its pid only."""

from __future__ import annotations

import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from bothways.errors import BothwaysError, ChildExited
from bothways.transports import spawn
from bothways.transports.stdio import Child

AGENTS = Path(__file__).resolve().parent / "agents"
MARK = "SOAK_RUN"  # in the environment of every process the soak starts, and inherited below


def command(lang: str, role: str, args: list[str]) -> list[str]:
    if lang == "python":
        return [sys.executable, str(AGENTS / "agent.py"), role, *args]
    return [shutil.which("node") or "node", str(AGENTS / "agent.mjs"), role, *args]


EventHandler = Callable[["Agent", dict[str, Any]], None]
ExitHandler = Callable[["Agent", str], None]


class Agent:
    """One life of one agent process. ``fate`` is what we did to it ("killed", "stopping"), so
    that an exit we did not cause is told apart."""

    def __init__(
        self,
        key: str,
        name: str,
        lang: str,
        role: str,
        args: list[str],
        *,
        env: dict[str, str],
        log: TextIO,
        log_lock: threading.Lock,
        on_event: EventHandler,
        on_exit: ExitHandler,
    ) -> None:
        self.key, self.name, self.lang, self.role = key, name, lang, role
        self.fate: str | None = None
        self.ready = threading.Event()
        self.exited = threading.Event()
        self.exit_text = ""
        self.started = time.monotonic()
        self._log, self._log_lock = log, log_lock
        self._on_event, self._on_exit = on_event, on_exit
        argv = command(lang, role, args)
        # (from any thread: spawn() ties the child to the process, not to the starting thread)
        self.child: Child = spawn(argv, env=env, stderr=self._stderr, name=name, on_error=self._bad_event)
        self.pid: int = self.child.pid
        self.children: dict[str, int] = {}  # pids it told us of (stdio child, call host)
        self._reader = threading.Thread(target=self._read, name=f"read {name}", daemon=True)
        self._reader.start()

    def _stderr(self, line: str) -> None:
        with self._log_lock:
            self._log.write(f"{time.strftime('%H:%M:%S')} [{self.name}] {line}\n")

    def _bad_event(self, error: BaseException) -> None:
        self._stderr(f"(soak) bad event line from the agent: {error}")

    def _read(self) -> None:
        try:
            while True:
                for event in self.child.receive_many():
                    if event.get("ev") == "ready":
                        self.ready.set()
                    self._on_event(self, event)
        except ChildExited as error:
            self.exit_text = f"{error} (stderr: {error.stderr_tail[-600:]!r})"
        except BothwaysError:
            self.exit_text = "exited"
        self.exited.set()
        self._on_exit(self, self.exit_text)

    def send(self, command: dict[str, Any]) -> bool:
        try:
            self.child.send(command)
            return True
        except BothwaysError:
            return False

    def kill(self) -> None:
        """SIGKILL, by pid (never by name)."""
        self.fate = "killed"
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def stop(self, timeout: float) -> bool:
        """Asks it to stop and waits; False (and a SIGKILL) when it did not within ``timeout``."""
        self.fate = self.fate or "stopping"
        self.send({"cmd": "stop"})
        if self.exited.wait(timeout):
            return True
        self.kill()
        self.exited.wait(5)
        return False

    def reap(self) -> None:
        self.child.close()


def alive(pid: int) -> bool:
    """Running (a zombie counts as gone: only its parent's wait is missing)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def marked(run_id: str) -> list[int]:
    """The processes still running with our mark in their environment (ours included)."""
    found = []
    needle = f"{MARK}={run_id}".encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as environ:
                if needle in environ.read().split(b"\0") and alive(int(entry)):
                    found.append(int(entry))
        except OSError:
            continue
    return found
