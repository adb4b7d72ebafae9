"""Child processes: spawn the other language and stream NDJSON over its stdin and stdout.

Parent side: ``spawn(argv)`` (blocking) and ``async_spawn(argv)`` (asyncio) start any program that
speaks NDJSON and return a channel: iterate its stdout's messages, ``send`` to its stdin. Child
side: ``stdio()`` reads our stdin and writes our stdout, unbuffered.

With ``channel_fd=True`` the messages travel on a dedicated socket instead (one end of a
socketpair, passed to the child as an extra file descriptor whose number is in the child's
``BOTHWAYS_CHANNEL_FD``): the child's own stdout is then free, and is forwarded line by line
like its stderr, so a ``print()``, ``os.write(1, ...)`` or ``console.log`` in the child shows up
on the terminal and cannot corrupt the protocol. ``stdio()`` in the child finds the socket by
itself. The child's stdin is /dev/null then.

Rules, each answering a bug that python-shell and friends keep getting:
- stdout is line-framed by the wire Decoder in 64 KiB reads: never ``read(1)``, any line length.
- stderr is drained all the time (a full stderr pipe would stall the child), kept as a bounded
  tail and forwarded line by line with the child's name as prefix; it never mixes with data.
- A Python child gets ``PYTHONUNBUFFERED=1`` and UTF-8 I/O, so output arrives as it is written.
- A clean exit ends iteration; a non-zero exit or a signal raises ``ChildExited`` with the code
  or signal and the stderr tail (a Python traceback reads as one in the parent).
- The child runs in its own process group and, on Linux, gets SIGKILL when its parent dies:
  through util-linux ``setpriv --pdeathsig KILL`` when it is installed (nothing runs between
  fork and exec), else a ``preexec_fn`` that only calls prctl; a bothways child also asks for
  it itself in ``stdio()``. Linux sends that signal when the *thread* that started the child
  ends, so ``spawn`` starts children from the main thread or one thread that lives as long as
  the process (``_Forker``); ``async_spawn`` from the event loop's thread, whose children end
  with it. ``close()`` ends stdin, then SIGTERM to the group after a grace period, then
  SIGKILL. Every child is reaped: no zombies.
- Backpressure: ``send`` blocks (or awaits) while the child's stdin pipe is full; we read stdout
  only when asked, so a slow consumer holds the producer back instead of growing memory.
"""

from __future__ import annotations

import asyncio
import ctypes
import errno
import os
import queue
import select
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import IO, Any, TypeVar

from ..errors import BothwaysError, ChildExited, TransportClosed
from ..urls import Address
from ..wire import MAX_LINE, encode, encode_many
from .base import (
    AsyncChannel,
    AsyncListener,
    Channel,
    EndHandler,
    ErrorHandler,
    Inbox,
    Intake,
    IntakeProtocol,
    Listener,
    MessagesHandler,
    StreamChannel,
    log,
    socket_wait,
)

__all__ = [
    "CHANNEL_ENV",
    "AsyncChild",
    "AsyncSocketChannel",
    "AsyncStdioChannel",
    "AsyncStdioEnd",
    "Child",
    "StdioChannel",
    "StdioEnd",
    "Supervisor",
    "async_connect",
    "async_listen",
    "async_spawn",
    "connect",
    "listen",
    "parent_channel_fd",
    "spawn",
    "stdio",
    "supervise",
]

CHUNK = 64 * 1024
GRACE = 2.0  # seconds between closing stdin, SIGTERM and SIGKILL
TAIL_LINES = 50
PARENT_ENV = "BOTHWAYS_PARENT_PID"
CHANNEL_ENV = "BOTHWAYS_CHANNEL_FD"  # the child's end of the channel socket (channel_fd=True)

StderrMode = str | Callable[[str], None] | None  # "forward" (default), "keep", or a callback
_PR_SET_PDEATHSIG = 1
_T = TypeVar("_T")


def _prctl() -> Callable[..., int] | None:
    """libc's prctl, looked up once in the parent (never between fork and exec)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):  # pragma: no cover - no prctl
        return None


_PRCTL = _prctl()


def _die_with_parent() -> None:
    """Asks Linux to SIGKILL this process when its parent dies (no-op elsewhere)."""
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


_setpriv: str | None | bool = False  # False: not looked up yet


def _death_wrapper() -> str | None:
    """util-linux ``setpriv`` when it can give the child a parent-death signal (checked once)."""
    global _setpriv
    if _setpriv is False:
        _setpriv = None
        path = shutil.which("setpriv") if sys.platform.startswith("linux") else None
        if path is not None:
            try:
                help_text = subprocess.run(
                    [path, "--help"], capture_output=True, text=True, timeout=5, check=False
                ).stdout
            except (OSError, subprocess.SubprocessError):  # pragma: no cover
                help_text = ""
            if "--pdeathsig" in help_text:
                _setpriv = path
    return _setpriv if isinstance(_setpriv, str) else None


class _Forker:
    """Starts children from one thread that lives as long as the process. Linux sends the
    parent-death signal when the *thread* that started the child ends, not the process: a child
    started from a pool worker or a request handler would be killed with that thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._jobs: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]]] = queue.SimpleQueue()
        self._pid = 0  # the process whose thread serves (a forked child needs its own)

    def run(self, start: Callable[[], _T]) -> _T:
        """``start()``, in the main thread or else in the forker's thread; what it raises is
        raised here."""
        if threading.current_thread() is threading.main_thread():
            return start()
        done: Future[_T] = Future()
        with self._lock:
            if self._pid != os.getpid():
                self._jobs = queue.SimpleQueue()
                serve = threading.Thread(target=self._serve, args=(self._jobs,), name="bothways-forker")
                serve.daemon = True  # (it ends with the process, and the children with it)
                serve.start()
                self._pid = os.getpid()
            self._jobs.put((start, done))
        return done.result()

    @staticmethod
    def _serve(jobs: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]]]) -> None:
        while True:
            start, done = jobs.get()
            try:
                done.set_result(start())
            except BaseException as exc:  # noqa: BLE001 - the caller's to raise
                done.set_exception(exc)


_FORKER = _Forker()


def _check_program(program: str, env: Mapping[str, str], cwd: str | os.PathLike[str] | None) -> None:
    """Raises what Popen would for a program that cannot be started, although ``setpriv`` stands
    in front of it (so that a typo still reads ``FileNotFoundError: ... 'pyhton3'``)."""
    base = Path.cwd() if cwd is None else Path(cwd)
    if cwd is not None and not base.is_dir():
        raise FileNotFoundError(2, "No such file or directory", os.fspath(cwd))
    if "/" in program:
        full = base / program
        if not full.exists():
            raise FileNotFoundError(2, "No such file or directory", program)
        if not (full.is_file() and os.access(full, os.X_OK)):
            raise PermissionError(13, "Permission denied", program)
    elif shutil.which(program, path=os.pathsep.join(os.get_exec_path(env))) is None:
        raise FileNotFoundError(2, "No such file or directory", program)


_REASONS = {  # the words for the usual errors, as js/src/transports/stdio.js has them
    errno.ENOENT: "no such file or directory",
    errno.EACCES: "permission denied",
    errno.EAGAIN: "resource temporarily unavailable",
    errno.EMFILE: "too many open files",
    errno.ENFILE: "too many open files in system",
}


def _start_error(name: str, program: str, exc: OSError, cwd: str | os.PathLike[str] | None) -> ChildExited:
    """The ChildExited for a child that could not be started, worded as the JavaScript spawn
    words it: ``node x.js: could not start node: no such file or directory (ENOENT)``."""
    reason = _REASONS.get(exc.errno or 0) or (exc.strerror or str(exc)).lower()
    name_of = errno.errorcode.get(exc.errno) if exc.errno is not None else None
    code = f" ({name_of})" if name_of else ""
    where = f" in {os.fspath(cwd)}" if cwd is not None and exc.filename == os.fspath(cwd) else ""
    return ChildExited(f"{name}: could not start {program}{where}: {reason}{code}", returncode=None)


def _spawn_options(
    argv: list[str], env: Mapping[str, str], cwd: str | os.PathLike[str] | None
) -> tuple[list[str], dict[str, Any]]:
    """The argv to run and the Popen options that give the child its own process group and a
    parent-death signal without running Python code between fork and exec when possible."""
    options: dict[str, Any] = {}
    if sys.version_info >= (3, 11):
        options["process_group"] = 0
    else:  # pragma: no cover - Python 3.10: a new session is a new process group too
        options["start_new_session"] = True
    wrapper = _death_wrapper()
    if wrapper is not None:
        _check_program(argv[0], env, cwd)
        return [wrapper, "--pdeathsig", "KILL", "--", *argv], options
    if _PRCTL is not None:  # pragma: no cover - no setpriv: prctl, the only code after fork
        options["preexec_fn"] = _die_with_parent
    return argv, options


def _child_env(
    argv: Sequence[str], env: Mapping[str, str] | None, channel: int | None = None
) -> dict[str, str]:
    merged = dict(os.environ if env is None else env)
    merged[PARENT_ENV] = str(os.getpid())
    merged.pop(CHANNEL_ENV, None)  # never pass on a channel that is not the child's
    if channel is not None:
        merged[CHANNEL_ENV] = str(channel)
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

    Iterate it (or call ``receive``) for the messages on its stdout (or on the channel socket,
    with ``channel_fd=True``); ``send`` writes to its stdin (or the socket). ``close`` ends it for
    good; the ``with`` statement calls it.
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
        channel_fd: bool = False,
        binary: bool = False,
    ) -> None:
        argv = [os.fspath(a) for a in argv]
        self.name = name or _default_name(argv)
        self.grace = grace
        self._inbox = Inbox(max_line=max_line, on_error=on_error, binary=binary)
        self._stderr = _Stderr(self.name, stderr, tail_lines)
        self._sock: socket.socket | None = None
        theirs: socket.socket | None = None
        self._wait: Callable[[], object] | None = None
        if channel_fd:
            self._sock, theirs = socket.socketpair()
            self._wait = socket_wait(self._sock.fileno())
        try:
            environment = _child_env(argv, env, theirs.fileno() if theirs else None)
            program, options = _spawn_options(argv, environment, cwd)
            self._proc = _FORKER.run(
                lambda: subprocess.Popen(
                    program,
                    stdin=subprocess.DEVNULL if theirs else subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    env=environment,
                    cwd=cwd,
                    pass_fds=(theirs.fileno(),) if theirs else (),
                    **options,
                )
            )
        except OSError as exc:
            if self._sock is not None:
                self._sock.close()
            raise _start_error(self.name, argv[0], exc, cwd) from exc
        except BaseException:
            if self._sock is not None:
                self._sock.close()
            raise
        finally:
            if theirs is not None:
                theirs.close()  # the child has its copy
        self.pid = self._proc.pid
        self._eof = False
        self._closed = False
        self._stdin_closed = False
        self._lock = threading.Lock()
        self._drains = [self._drain(self._proc.stderr, self._stderr.line, "stderr")]
        if self._sock is not None:  # the child's stdout is free: shown like its stderr
            self._stdout = _Stderr(self.name, stderr, 0)
            self._drains.append(self._drain(self._proc.stdout, self._stdout.line, "stdout"))

    def _drain(self, stream: IO[bytes] | None, line: Callable[[bytes], None], what: str) -> threading.Thread:
        def run() -> None:
            assert stream is not None
            for raw in iter(stream.readline, b""):
                line(raw)

        thread = threading.Thread(target=run, name=f"{self.name} {what}", daemon=True)
        thread.start()
        return thread

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
        closed = self._sock.fileno() == -1 if self._sock is not None else stdin is None or stdin.closed
        if self._stdin_closed or closed:
            raise TransportClosed(f"{self.name}: stdin is closed")
        try:
            if self._sock is not None:
                self._sock.sendall(data)
            else:
                assert stdin is not None
                stdin.write(data)
                stdin.flush()
        except (BrokenPipeError, ConnectionResetError, ValueError) as exc:
            try:
                returncode: int | None = self._proc.wait(self.grace)
            except subprocess.TimeoutExpired:  # it closed stdin but runs on
                returncode = None
            self._wait_output(self.grace)
            error = _exit_error(self.name, returncode, self._stderr) if returncode is not None else None
            raise (error or TransportClosed(f"{self.name} closed its stdin")) from exc

    def close_stdin(self) -> None:
        """Signals end of input; a well-behaved child finishes its work and exits."""
        if self._sock is not None:
            if not self._stdin_closed:
                self._stdin_closed = True
                try:
                    self._sock.shutdown(socket.SHUT_WR)  # reading the answers goes on
                except OSError:  # the child is gone already
                    pass
            return
        stdin = self._proc.stdin
        if stdin is not None and not stdin.closed:
            try:
                stdin.close()
            except BrokenPipeError:
                pass

    def readable(self, timeout: float | None = None) -> bool:
        """Whether ``receive`` can go on within ``timeout`` seconds (None: as long as it takes):
        a message waits, or bytes came, or the stream ended. For a caller with a deadline (a
        line that came in part still makes ``receive`` wait for its rest)."""
        if len(self._inbox) or self._eof:
            return True
        if self._sock is not None:
            fd = self._sock.fileno()
        else:
            stdout = self._proc.stdout
            fd = -1 if stdout is None or stdout.closed else stdout.fileno()
        if fd == -1:
            return True  # closed: receive says so at once
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        return bool(poller.poll(None if timeout is None else max(0.0, timeout) * 1000))

    def _read(self) -> bytes:
        if self._sock is not None:
            try:
                if self._wait is not None:
                    self._wait()
                return self._sock.recv(CHUNK)
            except ConnectionResetError:  # it died with our messages unread: the end all the same
                return b""
        stdout: IO[bytes] | None = self._proc.stdout
        assert stdout is not None
        return stdout.read1(CHUNK)  # type: ignore[attr-defined,no-any-return]

    def _fill(self) -> None:
        """Reads stdout (or the channel socket) until a message waits.

        Raises:
            TransportClosed: the child closed stdout and exited with code 0.
            ChildExited: it exited non-zero or by a signal (with the stderr tail).
        """
        inbox = self._inbox
        if self._sock is not None:
            if self._sock.fileno() == -1:
                raise TransportClosed(f"{self.name}: closed")
        elif self._proc.stdout is None or self._proc.stdout.closed:
            raise TransportClosed(f"{self.name}: closed")
        while not len(inbox):
            if self._eof:
                self._finish()
            data = self._read()
            if data:
                inbox.feed(data)
            else:
                self._eof = True
                inbox.feed_eof()

    def _wait_output(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for thread in self._drains:
            thread.join(max(0.0, deadline - time.monotonic()))

    def _finish(self) -> None:
        returncode = self._proc.wait()
        self._wait_output(self.grace)
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
        self._wait_output(self.grace)
        for stream in (self._proc.stdout, self._proc.stderr):
            if stream is not None:
                stream.close()
        if self._sock is not None:
            self._sock.close()

    def __del__(self) -> None:  # a forgotten handle must not leave a process behind
        proc = getattr(self, "_proc", None)
        if proc is not None and proc.poll() is None:
            _kill_group(proc.pid, signal.SIGKILL)
            proc.wait()
        sock = getattr(self, "_sock", None)
        if sock is not None:
            sock.close()


def _kill_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)  # the child leads its own group (process_group=0 in _spawn_options)
    except (ProcessLookupError, PermissionError):
        pass


def spawn(argv: Sequence[str | os.PathLike[str]], **options: Any) -> Child:
    """Starts ``argv`` (a list: no shell) and returns its channel.

    Args:
        argv: the program and its arguments, e.g. ``["node", "worker.js"]``.
        env, cwd: as for subprocess; ``env`` defaults to ours.
        name: the prefix for its forwarded stderr (default: the program and script names).
        stderr: ``"forward"`` (default: to our stderr, prefixed), ``"keep"`` (tail only), or a
            callable taking each line. With ``channel_fd``, the child's stdout lines too.
        channel_fd: messages travel on a socket passed as an extra file descriptor (its number
            in the child's ``BOTHWAYS_CHANNEL_FD``; ``stdio()`` there finds it) instead of
            stdin/stdout, so the child's own output cannot corrupt them.
        max_line: the longest stdout line accepted, in bytes (default 16 MiB).
        binary: take binary frames (spec/PROTOCOL.md 2), as the calls to a module do.
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
        self,
        proc: asyncio.subprocess.Process,
        name: str,
        stderr: _Stderr,
        intake: Intake,
        grace: float,
        reading: IntakeProtocol,
        socket: bool,
    ):
        self._proc = proc
        self.name = name
        self.pid = proc.pid
        self.grace = grace
        self._stderr = stderr
        self._intake = intake  # fed by `reading`: the child's stdout, or the channel socket
        self._reading = reading
        self._closed = False
        self._stdin_closed = False
        self._socket = socket
        self._writer: asyncio.StreamWriter | IntakeProtocol
        if socket:
            self._writer = reading
        else:
            assert proc.stdin is not None
            self._writer = proc.stdin
        self._drains = [asyncio.ensure_future(self._drain(proc.stderr, stderr.line))]
        if socket:  # the child's stdout is free: shown like its stderr
            lines = _Stderr(name, stderr.mode, 0)
            self._drains.append(asyncio.ensure_future(self._drain(proc.stdout, lines.line)))

    @staticmethod
    async def _drain(stream: asyncio.StreamReader | None, line: Callable[[bytes], None]) -> None:
        assert stream is not None
        while True:
            try:
                raw = await stream.readline()
            except ValueError:  # a "line" over the stream's limit: take what is there
                raw = await stream.read(CHUNK)
            if not raw:
                return
            line(raw)

    @property
    def returncode(self) -> int | None:
        return self._proc.returncode

    @property
    def stderr_tail(self) -> str:
        return self._stderr.text()

    async def send(self, value: Any) -> None:
        await self.send_bytes(encode(value))

    async def send_many(self, values: Iterable[Any]) -> None:
        """Writes several messages at once."""
        await self.send_bytes(encode_many(values))

    async def send_bytes(self, data: bytes) -> None:
        writer = self._writer
        if self._stdin_closed or writer.is_closing():
            raise TransportClosed(f"{self.name}: stdin is closed")
        try:
            writer.write(data)
            await writer.drain()
        except (BrokenPipeError, ConnectionResetError) as exc:
            returncode = await self._proc.wait()
            await self._wait_output()
            error = _exit_error(self.name, returncode, self._stderr)
            raise (error or TransportClosed(f"{self.name} closed its stdin")) from exc

    def close_stdin(self) -> None:
        if self._stdin_closed:
            return
        self._stdin_closed = True
        writer = self._writer
        if writer.is_closing():
            return
        if self._socket:
            try:
                writer.write_eof()  # half-close: its answers still come
            except OSError:  # the child is gone already
                pass
        else:
            writer.close()

    async def _fill(self) -> None:
        if not await self._intake.ready():
            raise await self._why_ended()

    async def _why_ended(self) -> BothwaysError:
        """Why the messages ended: ChildExited (code or signal, stderr tail), or TransportClosed."""
        returncode = await self._proc.wait()
        await self._wait_output()
        return _exit_error(self.name, returncode, self._stderr) or TransportClosed(f"{self.name} exited")

    async def receive(self) -> Any:
        await self._fill()
        return self._intake.take()

    async def receive_many(self) -> list[Any]:
        """Every message already read (at least one); raises as ``receive`` does at the end."""
        await self._fill()
        return self._intake.take_all()

    async def deliver_to(self, on_messages: MessagesHandler, on_end: EndHandler) -> bool:
        """Push mode (see AsyncChannel.deliver_to); ``on_end`` gets what ``receive`` would raise."""
        intake = self._intake

        def ended() -> None:
            error = intake.take_error()
            if error is not None:
                on_end(error)
                return
            asyncio.ensure_future(self._why_ended()).add_done_callback(
                lambda task: None if task.cancelled() else on_end(task.exception() or task.result())
            )

        intake.deliver_to(on_messages, ended)
        return True

    async def __aiter__(self) -> AsyncIterator[Any]:
        while True:
            try:
                batch = await self.receive_many()
            except TransportClosed:
                return
            for value in batch:
                yield value

    async def _wait_output(self) -> None:
        await asyncio.wait(self._drains, timeout=self.grace)

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
        await self._wait_output()
        for task in self._drains:
            task.cancel()
        self._intake.close()
        self._reading.close()


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
    channel_fd: bool = False,
    binary: bool = False,
) -> AsyncChild:
    """The asyncio ``spawn``: the same arguments, an ``AsyncChild`` to ``async with``."""
    args = [os.fspath(a) for a in argv]
    # The messages come on a socket (channel_fd) or on a pipe of our own for the child's stdout,
    # read by our protocol: asyncio's subprocess pipes would add a turn of the loop to each read.
    ours: socket.socket | None = None
    theirs: socket.socket | None = None
    out_read: int | None = None
    out_write: int | None = None
    if channel_fd:
        ours, theirs = socket.socketpair()
    else:
        out_read, out_write = os.pipe()
    intake = Intake(Inbox(max_line=max_line, on_error=on_error, binary=binary))
    loop = asyncio.get_running_loop()
    try:
        environment = _child_env(args, env, theirs.fileno() if theirs else None)
        try:
            program, options = _spawn_options(args, environment, cwd)
            proc = await asyncio.create_subprocess_exec(
                *program,
                stdin=subprocess.DEVNULL if theirs else subprocess.PIPE,
                stdout=subprocess.PIPE if theirs else out_write,
                stderr=subprocess.PIPE,
                env=environment,
                cwd=cwd,
                pass_fds=(theirs.fileno(),) if theirs else (),
                limit=CHUNK,
                **options,
            )
        except OSError as exc:
            raise _start_error(name or _default_name(args), args[0], exc, cwd) from exc
        if ours is not None:
            _, reading = await loop.create_unix_connection(lambda: IntakeProtocol(intake), sock=ours)
        else:
            assert out_read is not None and out_write is not None
            os.close(out_write)  # the child has its copy
            out_write = None
            pipe, out_read = os.fdopen(out_read, "rb", buffering=0), None  # the transport closes it
            _, reading = await loop.connect_read_pipe(lambda: IntakeProtocol(intake), pipe)
    except BaseException:
        for fd in (out_read, out_write):
            if fd is not None:
                os.close(fd)
        if ours is not None:
            ours.close()
        raise
    finally:
        if theirs is not None:
            theirs.close()  # the child has its copy
    label = name or _default_name(args)
    stderr_tail = _Stderr(label, stderr, tail_lines)
    return AsyncChild(proc, label, stderr_tail, intake, grace, reading, socket=ours is not None)


_UNSET: Any = object()
_announced: Any = _UNSET


def parent_channel_fd() -> int | None:
    """The file descriptor of the channel our parent made for us (``spawn(..., channel_fd=True)``
    in either language), or None: we talk on stdin and stdout.

    The number comes from ``BOTHWAYS_CHANNEL_FD``, which is taken out of our environment on the
    first call (the answer is kept), so that programs we start do not inherit it. A number that
    is not an open socket is ignored, with a warning: stdin and stdout are used.
    """
    global _announced
    if _announced is _UNSET:
        _announced = None
        value = os.environ.pop(CHANNEL_ENV, None)
        if value is not None:
            try:
                fd = int(value)
                if not stat.S_ISSOCK(os.fstat(fd).st_mode):
                    raise OSError(f"file descriptor {fd} is not a socket")
                _announced = fd
            except (ValueError, OSError) as exc:
                log.warning("%s=%s is not a channel (%s): using stdin and stdout", CHANNEL_ENV, value, exc)
    return _announced  # type: ignore[no-any-return]


class StdioChannel(StreamChannel):
    """The child's side: messages from our stdin, messages to our stdout, nothing buffered.

    Writes go straight to file descriptor 1 (no Python buffer to flush), so the parent gets each
    message as it is sent. Reading stops at EOF on stdin: when the parent goes, so do we. When
    the parent gave us a channel socket (``parent_channel_fd()``), both directions use it
    instead, and stdin and stdout stay the program's own.
    """

    def __init__(
        self,
        *,
        stdin_fd: int | None = None,
        stdout_fd: int | None = None,
        max_line: int = MAX_LINE,
        on_error: ErrorHandler | None = None,
        binary: bool = False,
    ) -> None:
        if stdin_fd is None and stdout_fd is None:
            channel = parent_channel_fd()
            if channel is not None:
                stdin_fd = stdout_fd = channel
        self._in = 0 if stdin_fd is None else stdin_fd
        self._out = 1 if stdout_fd is None else stdout_fd
        self._inbox = Inbox(max_line=max_line, on_error=on_error, binary=binary)
        self._wait = socket_wait(self._in) if self._in == self._out else None
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
            if self._out == 1:
                sys.stdout.flush()  # anything print()ed before stays before our message
            written = os.write(self._out, data)
            if written < len(data):  # a full pipe took part of it: the rest, piece by piece
                view = memoryview(data)[written:]
                while view:
                    view = view[os.write(self._out, view) :]
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise TransportClosed("stdout closed: the parent is gone") from exc

    def _fill(self) -> None:
        inbox = self._inbox
        if len(inbox):
            return
        while not self._eof:
            try:
                if self._wait is not None:
                    self._wait()
                data = os.read(self._in, CHUNK)
            except ConnectionResetError:  # the parent went with our messages unread
                data = b""
            if data:
                if inbox.feed(data):
                    return
            else:
                self._eof = True
                if inbox.feed_eof():
                    return
        raise TransportClosed("stdin closed")

    def close(self) -> None:
        self._eof = True


class _AsyncStreamEnd(AsyncChannel):
    """What the asyncio child-side channels share: their stream feeds an Intake."""

    _intake: Intake
    _ended = "closed"  # what TransportClosed says once the stream has ended

    async def _open(self) -> None:
        """Connects the stream to ``_intake`` (once)."""
        raise NotImplementedError

    async def _fill(self) -> None:
        await self._open()
        if not await self._intake.ready():
            raise TransportClosed(self._ended)

    async def receive(self) -> Any:
        await self._fill()
        return self._intake.take()

    async def receive_many(self) -> list[Any]:
        """Every message already read (at least one)."""
        await self._fill()
        return self._intake.take_all()

    async def deliver_to(self, on_messages: MessagesHandler, on_end: EndHandler) -> bool:
        """Push mode (see AsyncChannel.deliver_to)."""
        await self._open()
        intake = self._intake
        intake.deliver_to(on_messages, lambda: on_end(intake.take_error() or TransportClosed(self._ended)))
        return True


class AsyncStdioChannel(_AsyncStreamEnd):
    """The child's side of the stdio transport, for asyncio: read fd ``stdin_fd``, write ``stdout_fd``."""

    _ended = "stdin closed"

    def __init__(
        self,
        stdin_fd: int = 0,
        stdout_fd: int = 1,
        *,
        max_line: int = MAX_LINE,
        on_error: ErrorHandler | None = None,
        binary: bool = False,
    ) -> None:
        self._in = stdin_fd
        self._out = stdout_fd
        self._intake = Intake(Inbox(max_line=max_line, on_error=on_error, binary=binary))
        self._opened = False

    async def _open(self) -> None:
        if not self._opened:
            self._opened = True
            pipe = os.fdopen(self._in, "rb", buffering=0, closefd=False)
            loop = asyncio.get_running_loop()
            await loop.connect_read_pipe(lambda: IntakeProtocol(self._intake), pipe)

    async def send(self, value: Any) -> None:
        await self.send_bytes(encode(value))

    async def send_bytes(self, data: bytes) -> None:
        """Writes encoded NDJSON lines as they are."""
        view = memoryview(data)
        try:
            while view:  # fd 1 is blocking: each write completes or fails
                view = view[os.write(self._out, view) :]
        except BrokenPipeError as exc:
            raise TransportClosed("stdout closed: the parent is gone") from exc

    async def close(self) -> None:
        self._intake.close()


class AsyncSocketChannel(_AsyncStreamEnd):
    """The child's side of a channel socket (``BOTHWAYS_CHANNEL_FD``), for asyncio."""

    _ended = "the channel closed"

    def __init__(
        self, fd: int, *, max_line: int = MAX_LINE, on_error: ErrorHandler | None = None, binary: bool = False
    ) -> None:
        self._fd = fd
        self._intake = Intake(Inbox(max_line=max_line, on_error=on_error, binary=binary))
        self._protocol: IntakeProtocol | None = None
        self._opening: asyncio.Future[Any] | None = None

    async def _open(self) -> None:
        if self._opening is None:  # once, even when the first send and receive come together
            self._protocol = IntakeProtocol(self._intake)
            protocol = self._protocol
            self._opening = asyncio.ensure_future(
                asyncio.get_running_loop().create_unix_connection(
                    lambda: protocol, sock=socket.socket(fileno=self._fd)
                )
            )
        await asyncio.shield(self._opening)

    async def send(self, value: Any) -> None:
        await self.send_bytes(encode(value))

    async def send_many(self, values: Iterable[Any]) -> None:
        await self.send_bytes(encode_many(values))

    async def send_bytes(self, data: bytes) -> None:
        """Writes encoded NDJSON lines as they are; waits while the socket is full."""
        await self._open()
        assert self._protocol is not None
        try:
            self._protocol.write(data)
            await self._protocol.drain()
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise TransportClosed("the channel closed: the parent is gone") from exc

    async def close(self) -> None:
        self._intake.close()
        if self._protocol is not None:
            self._protocol.close()


class StdioEnd(StdioChannel, Listener):
    """``stdio:`` as a URL: the channel to whoever spawned us; both ends are the same thing."""

    url = "stdio:"


class AsyncStdioEnd(AsyncListener):
    """The asyncio ``stdio:``: the channel socket when the parent gave one, else stdin/stdout."""

    url = "stdio:"

    def __init__(self, *, max_line: int = MAX_LINE, on_error: ErrorHandler | None = None) -> None:
        fd = parent_channel_fd()
        self._channel: AsyncSocketChannel | AsyncStdioChannel = (
            AsyncStdioChannel(0, 1, max_line=max_line, on_error=on_error)
            if fd is None
            else AsyncSocketChannel(fd, max_line=max_line, on_error=on_error)
        )

    async def send(self, value: Any) -> None:
        await self._channel.send(value)

    async def receive(self) -> Any:
        return await self._channel.receive()

    async def receive_many(self) -> list[Any]:
        """Every message already read (at least one)."""
        return await self._channel.receive_many()

    async def deliver_to(self, on_messages: MessagesHandler, on_end: EndHandler) -> bool:
        return await self._channel.deliver_to(on_messages, on_end)

    async def close(self) -> None:
        await self._channel.close()


def connect(address: Address, *, max_line: int = MAX_LINE, on_error: ErrorHandler | None = None) -> StdioEnd:
    """``connect("stdio:")``: our own stdin and stdout (or the parent's channel socket)."""
    return StdioEnd(max_line=max_line, on_error=on_error)


listen = connect  # both ends of stdio: are the same channel


async def async_connect(
    address: Address, *, max_line: int = MAX_LINE, on_error: ErrorHandler | None = None
) -> AsyncStdioEnd:
    """The asyncio ``connect("stdio:")``."""
    return AsyncStdioEnd(max_line=max_line, on_error=on_error)


async_listen = async_connect


def stdio(**options: Any) -> StdioChannel:
    """The channel to whoever spawned us: ``for msg in stdio(): ...``, ``stdio().send(v)``."""
    return StdioChannel(**options)
