"""Child processes: spawn the other language and stream NDJSON over its stdin and stdout.

Parent side: ``spawn(argv)`` (blocking) and ``async_spawn(argv)`` (asyncio) start any program that
speaks NDJSON and return a channel: iterate its stdout's messages, ``send`` to its stdin. Child
side: ``stdio()`` reads our stdin and writes our stdout, unbuffered.

Rules, each answering a bug that python-shell and friends keep getting:
- stdout is line-framed by the wire Decoder in 64 KiB reads: never ``read(1)``, any line length.
- stderr is drained all the time (a full stderr pipe would stall the child), kept as a bounded
  tail and forwarded line by line with the child's name as prefix; it never mixes with data.
- A Python child gets ``PYTHONUNBUFFERED=1`` and UTF-8 I/O, so output arrives as it is written.
- A clean exit ends iteration; a non-zero exit or a signal raises ``ChildExited`` with the code
  or signal and the stderr tail (a Python traceback reads as one in the parent).
- The child runs in its own process group and, on Linux, gets SIGKILL when its parent dies;
  ``close()`` ends stdin, then SIGTERM to the group after a grace period, then SIGKILL. Every
  child is reaped: no zombies.
- Backpressure: ``send`` blocks (or awaits) while the child's stdin pipe is full; we read stdout
  only when asked, so a slow consumer holds the producer back instead of growing memory.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from ..errors import ChildExited, TransportClosed
from ..wire import MAX_LINE, encode, encode_many
from .base import AsyncChannel, Channel, ErrorHandler, Inbox, StreamChannel, log

__all__ = ["AsyncChild", "Child", "StdioChannel", "Supervisor", "async_spawn", "spawn", "stdio", "supervise"]

CHUNK = 64 * 1024
GRACE = 2.0  # seconds between closing stdin, SIGTERM and SIGKILL
TAIL_LINES = 50
PARENT_ENV = "BOTHWAYS_PARENT_PID"

StderrMode = str | Callable[[str], None] | None  # "forward" (default), "keep", or a callback
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Asks Linux to SIGKILL this process when its parent dies (no-op elsewhere)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # pragma: no cover - no prctl: stdin EOF still ends stdio()
        pass


def _child_setup() -> None:  # runs in the child between fork and exec
    os.setpgid(0, 0)
    _die_with_parent()


def _child_env(argv: Sequence[str], env: Mapping[str, str] | None) -> dict[str, str]:
    merged = dict(os.environ if env is None else env)
    merged[PARENT_ENV] = str(os.getpid())
    if "python" in Path(argv[0]).name:
        merged.setdefault("PYTHONUNBUFFERED", "1")
        merged.setdefault("PYTHONIOENCODING", "utf-8")
        merged.setdefault("PYTHONUTF8", "1")
    return merged


def _default_name(argv: Sequence[str]) -> str:
    parts = [Path(argv[0]).name] + [Path(a).name for a in argv[1:2] if not a.startswith("-")]
    return " ".join(parts)


class _Stderr:
    """The child's stderr: a bounded tail, plus forwarding or a callback per line."""

    def __init__(self, name: str, mode: StderrMode, tail_lines: int) -> None:
        self.name = name
        self.mode = mode
        self.tail: deque[str] = deque(maxlen=tail_lines)

    def line(self, raw: bytes) -> None:
        text = raw.decode("utf-8", "replace").rstrip("\r\n")
        self.tail.append(text)
        if callable(self.mode):
            try:
                self.mode(text)
            except Exception:  # a failing callback must not stop the draining (the child would block)
                log.exception("stderr callback of %s failed", self.name)
        elif self.mode == "forward":
            sys.stderr.write(f"[{self.name}] {text}\n")
            sys.stderr.flush()

    def text(self) -> str:
        return "\n".join(self.tail)


def _exit_error(name: str, returncode: int, stderr: _Stderr) -> ChildExited | None:
    if returncode == 0:
        return None
    if returncode < 0:
        try:
            sig: str | None = signal.Signals(-returncode).name
        except ValueError:
            sig = f"signal {-returncode}"
        return ChildExited(
            f"{name} was killed by {sig}", returncode=returncode, signal=sig, stderr_tail=stderr.text()
        )
    return ChildExited(
        f"{name} exited with code {returncode}", returncode=returncode, stderr_tail=stderr.text()
    )


class Child(StreamChannel):
    """A running child process speaking NDJSON; made by ``spawn``.

    Iterate it (or call ``receive``) for the messages on its stdout; ``send`` writes to its stdin.
    ``close`` ends it for good; the ``with`` statement calls it.
    """

    def __init__(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        name: str | None = None,
        stderr: StderrMode = "forward",
        max_line: int = MAX_LINE,
        on_error: ErrorHandler | None = None,
        grace: float = GRACE,
        tail_lines: int = TAIL_LINES,
    ) -> None:
        argv = [os.fspath(a) for a in argv]
        self.name = name or _default_name(argv)
        self.grace = grace
        self._inbox = Inbox(max_line=max_line, on_error=on_error)
        self._stderr = _Stderr(self.name, stderr, tail_lines)
        self._proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=_child_env(argv, env),
            cwd=cwd,
            preexec_fn=_child_setup,  # noqa: PLW1509 - setpgid + parent-death signal, nothing else
        )
        self.pid = self._proc.pid
        self._eof = False
        self._closed = False
        self._lock = threading.Lock()
        self._stderr_thread = threading.Thread(
            target=self._drain_stderr, name=f"{self.name} stderr", daemon=True
        )
        self._stderr_thread.start()

    def _drain_stderr(self) -> None:
        assert self._proc.stderr is not None
        for raw in iter(self._proc.stderr.readline, b""):
            self._stderr.line(raw)

    @property
    def returncode(self) -> int | None:
        """The exit code (negative: killed by that signal), or None while it runs."""
        return self._proc.poll()

    @property
    def stderr_tail(self) -> str:
        """The last lines the child wrote to stderr."""
        return self._stderr.text()

    def send(self, value: Any) -> None:
        """Writes one message to the child's stdin; blocks while the pipe is full."""
        self.send_bytes(encode(value))

    def send_many(self, values: Iterable[Any]) -> None:
        """Writes several messages in one system call."""
        self.send_bytes(encode_many(values))

    def send_bytes(self, data: bytes) -> None:
        """Writes encoded NDJSON lines as they are."""
        stdin = self._proc.stdin
        if stdin is None or stdin.closed:
            raise TransportClosed(f"{self.name}: stdin is closed")
        try:
            stdin.write(data)
            stdin.flush()
        except (BrokenPipeError, ValueError) as exc:
            try:
                returncode: int | None = self._proc.wait(self.grace)
            except subprocess.TimeoutExpired:  # it closed stdin but runs on
                returncode = None
            self._wait_stderr(self.grace)
            error = _exit_error(self.name, returncode, self._stderr) if returncode is not None else None
            raise (error or TransportClosed(f"{self.name} closed its stdin")) from exc

    def close_stdin(self) -> None:
        """Signals end of input; a well-behaved child finishes its work and exits."""
        stdin = self._proc.stdin
        if stdin is not None and not stdin.closed:
            try:
                stdin.close()
            except BrokenPipeError:
                pass

    def _fill(self) -> None:
        """Reads stdout until a message waits.

        Raises:
            TransportClosed: the child closed stdout and exited with code 0.
            ChildExited: it exited non-zero or by a signal (with the stderr tail).
        """
        inbox = self._inbox
        stdout: IO[bytes] | None = self._proc.stdout
        if stdout is None or stdout.closed:
            raise TransportClosed(f"{self.name}: closed")
        while not len(inbox):
            if self._eof:
                self._finish()
            data = stdout.read1(CHUNK)  # type: ignore[attr-defined]
            if data:
                inbox.feed(data)
            else:
                self._eof = True
                inbox.feed_eof()

    def _wait_stderr(self, timeout: float) -> None:
        self._stderr_thread.join(timeout)

    def _finish(self) -> None:
        returncode = self._proc.wait()
        self._wait_stderr(self.grace)
        error = _exit_error(self.name, returncode, self._stderr)
        if error:
            raise error
        raise TransportClosed(f"{self.name} exited")

    def wait(self, timeout: float | None = None) -> int:
        """Waits for the child to exit; returns its exit code (raises TimeoutExpired)."""
        return self._proc.wait(timeout)

    def close(self) -> None:
        """Ends the child: close stdin, wait ``grace`` s, SIGTERM the group, then SIGKILL; reap."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self.close_stdin()
        try:
            self._proc.wait(self.grace)
        except subprocess.TimeoutExpired:
            for sig in (signal.SIGTERM, signal.SIGKILL):
                _kill_group(self._proc.pid, sig)
                try:
                    self._proc.wait(self.grace)
                    break
                except subprocess.TimeoutExpired:
                    continue
        _kill_group(self._proc.pid, signal.SIGKILL)  # leftovers in the child's group
        self._wait_stderr(self.grace)
        for stream in (self._proc.stdout, self._proc.stderr):
            if stream is not None:
                stream.close()

    def __del__(self) -> None:  # a forgotten handle must not leave a process behind
        proc = getattr(self, "_proc", None)
        if proc is not None and proc.poll() is None:
            _kill_group(proc.pid, signal.SIGKILL)
            proc.wait()


def _kill_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)  # the child leads its own group (setpgid in _child_setup)
    except (ProcessLookupError, PermissionError):
        pass


def spawn(argv: Sequence[str | os.PathLike[str]], **options: Any) -> Child:
    """Starts ``argv`` (a list: no shell) and returns its channel.

    Args:
        argv: the program and its arguments, e.g. ``["node", "worker.js"]``.
        env, cwd: as for subprocess; ``env`` defaults to ours.
        name: the prefix for its forwarded stderr (default: the program and script names).
        stderr: ``"forward"`` (default: to our stderr, prefixed), ``"keep"`` (tail only), or a
            callable taking each line.
        max_line: the longest stdout line accepted, in bytes (default 16 MiB).
        on_error: what to do with a malformed stdout line (default: log it and go on).
        grace: seconds ``close`` waits between its steps.

    Returns:
        The Child; use it in a ``with`` block so it is always closed.
    """
    return Child([os.fspath(a) for a in argv], **options)


RestartHandler = Callable[[ChildExited, int, float], None]


class Supervisor(Channel):
    """A child that is started again when it crashes, with exponential back-off and a cap.

    Messages flow across restarts as from one child. A clean exit (code 0) ends iteration; a
    crash starts a new child after ``backoff * 2**n`` seconds (at most ``max_backoff``), and
    ``on_restart(error, attempt, delay)`` is told. After ``max_restarts`` restarts the next crash
    is raised as ChildExited. Whatever was sent to a child that crashed is not sent again.
    """

    def __init__(
        self,
        argv: Sequence[str],
        *,
        max_restarts: int = 5,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        on_restart: RestartHandler | None = None,
        **options: Any,
    ) -> None:
        self._argv = list(argv)
        self._options = options
        self.max_restarts = max_restarts
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.on_restart = on_restart
        self.restarts = 0
        self.child = Child(self._argv, **options)

    def send(self, value: Any) -> None:
        """Sends to the child running now."""
        self.child.send(value)

    def receive(self) -> Any:
        """The next message from the current child, restarting it after a crash."""
        return self._with_restarts(self.child.receive)

    def receive_many(self) -> list[Any]:
        return self._with_restarts(self.child.receive_many)  # type: ignore[no-any-return]

    def _with_restarts(self, receive: Callable[[], Any]) -> Any:
        while True:
            try:
                return receive()
            except ChildExited as exc:
                if self.restarts >= self.max_restarts:
                    raise
                delay = min(self.backoff * 2**self.restarts, self.max_backoff)
                self.restarts += 1
                if self.on_restart is not None:
                    self.on_restart(exc, self.restarts, delay)
                self.child.close()
                time.sleep(delay)
                self.child = Child(self._argv, **self._options)
                receive = getattr(self.child, receive.__name__)

    def close(self) -> None:
        self.child.close()


def supervise(argv: Sequence[str | os.PathLike[str]], **options: Any) -> Supervisor:
    """``spawn`` with restarts: the same options, plus ``max_restarts``, ``backoff`` (seconds,
    doubled each time), ``max_backoff`` and ``on_restart(error, attempt, delay)``."""
    return Supervisor([os.fspath(a) for a in argv], **options)


class AsyncChild(AsyncChannel):
    """The asyncio flavour of Child; made by ``await async_spawn(argv)``."""

    def __init__(
        self, proc: asyncio.subprocess.Process, name: str, stderr: _Stderr, inbox: Inbox, grace: float
    ):
        self._proc = proc
        self.name = name
        self.pid = proc.pid
        self.grace = grace
        self._stderr = stderr
        self._inbox = inbox
        self._eof = False
        self._closed = False
        self._stderr_task = asyncio.ensure_future(self._drain_stderr())

    async def _drain_stderr(self) -> None:
        assert self._proc.stderr is not None
        while raw := await self._proc.stderr.readline():
            self._stderr.line(raw)

    @property
    def returncode(self) -> int | None:
        return self._proc.returncode

    @property
    def stderr_tail(self) -> str:
        return self._stderr.text()

    async def send(self, value: Any) -> None:
        await self.send_bytes(encode(value))

    async def send_bytes(self, data: bytes) -> None:
        stdin = self._proc.stdin
        if stdin is None or stdin.is_closing():
            raise TransportClosed(f"{self.name}: stdin is closed")
        try:
            stdin.write(data)
            await stdin.drain()
        except (BrokenPipeError, ConnectionResetError) as exc:
            returncode = await self._proc.wait()
            await asyncio.wait({self._stderr_task}, timeout=self.grace)
            error = _exit_error(self.name, returncode, self._stderr)
            raise (error or TransportClosed(f"{self.name} closed its stdin")) from exc

    def close_stdin(self) -> None:
        stdin = self._proc.stdin
        if stdin is not None and not stdin.is_closing():
            stdin.close()

    async def receive(self) -> Any:
        inbox = self._inbox
        stdout = self._proc.stdout
        assert stdout is not None
        while not len(inbox):
            if self._eof:
                returncode = await self._proc.wait()
                await asyncio.wait({self._stderr_task}, timeout=self.grace)
                error = _exit_error(self.name, returncode, self._stderr)
                if error:
                    raise error
                raise TransportClosed(f"{self.name} exited")
            data = await stdout.read(CHUNK)
            if data:
                inbox.feed(data)
            else:
                self._eof = True
                inbox.feed_eof()
        return inbox.pop()

    async def wait(self) -> int:
        return await self._proc.wait()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.close_stdin()
        for sig in (None, signal.SIGTERM, signal.SIGKILL):
            if sig is not None:
                _kill_group(self._proc.pid, sig)
            try:
                await asyncio.wait_for(self._proc.wait(), self.grace)
                break
            except asyncio.TimeoutError:
                continue
        _kill_group(self._proc.pid, signal.SIGKILL)
        await asyncio.wait({self._stderr_task}, timeout=self.grace)
        self._stderr_task.cancel()


async def async_spawn(
    argv: Sequence[str | os.PathLike[str]],
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    name: str | None = None,
    stderr: StderrMode = "forward",
    max_line: int = MAX_LINE,
    on_error: ErrorHandler | None = None,
    grace: float = GRACE,
    tail_lines: int = TAIL_LINES,
) -> AsyncChild:
    """The asyncio ``spawn``: the same arguments, an ``AsyncChild`` to ``async with``."""
    args = [os.fspath(a) for a in argv]
    proc = await asyncio.create_subprocess_exec(
        *args,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_child_env(args, env),
        cwd=cwd,
        preexec_fn=_child_setup,
        limit=CHUNK,
    )
    label = name or _default_name(args)
    return AsyncChild(
        proc, label, _Stderr(label, stderr, tail_lines), Inbox(max_line=max_line, on_error=on_error), grace
    )


class StdioChannel(StreamChannel):
    """The child's side: messages from our stdin, messages to our stdout, nothing buffered.

    Writes go straight to file descriptor 1 (no Python buffer to flush), so the parent gets each
    message as it is sent. Reading stops at EOF on stdin: when the parent goes, so do we.
    """

    def __init__(
        self,
        *,
        stdin_fd: int = 0,
        stdout_fd: int = 1,
        max_line: int = MAX_LINE,
        on_error: ErrorHandler | None = None,
    ) -> None:
        self._in = stdin_fd
        self._out = stdout_fd
        self._inbox = Inbox(max_line=max_line, on_error=on_error)
        self._eof = False
        if os.environ.get(PARENT_ENV) == str(os.getppid()):
            _die_with_parent()  # spawned by bothways: go when the parent goes, even mid-write

    def send(self, value: Any) -> None:
        """Writes one message now (one system call: the parent sees it at once)."""
        self.send_bytes(encode(value))

    def send_many(self, values: Iterable[Any]) -> None:
        """Writes several messages in one system call (much faster than one ``send`` each)."""
        self.send_bytes(encode_many(values))

    def send_bytes(self, data: bytes) -> None:
        """Writes encoded NDJSON lines as they are, completely (looping over partial writes)."""
        try:
            sys.stdout.flush()  # anything print()ed before stays before our message
            view = memoryview(data)
            while view:
                view = view[os.write(self._out, view) :]
        except BrokenPipeError as exc:
            raise TransportClosed("stdout closed: the parent is gone") from exc

    def _fill(self) -> None:
        inbox = self._inbox
        while not len(inbox):
            if self._eof:
                raise TransportClosed("stdin closed")
            data = os.read(self._in, CHUNK)
            if data:
                inbox.feed(data)
            else:
                self._eof = True
                inbox.feed_eof()

    def close(self) -> None:
        self._eof = True


def stdio(**options: Any) -> StdioChannel:
    """The channel to whoever spawned us: ``for msg in stdio(): ...``, ``stdio().send(v)``."""
    return StdioChannel(**options)
