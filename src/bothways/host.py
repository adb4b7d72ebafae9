"""Serve a Python module's functions to the process that spawned us.

    python -m bothways.host [--threads N] MODULE


The parent (Node's ``python.import("statistics")``, or any Peer) calls the module's functions by
name with JSON values; ``$/functions`` lists them. Rules:
- The calls travel on the channel socket the parent made (``BOTHWAYS_CHANNEL_FD``, what
  ``spawn(..., channel_fd=True)`` and ``python.import`` do) when there is one: stdout and stderr
  stay the module's own, so ``print()``, ``sys.stdout.write`` and even ``os.write(1, ...)`` go to
  the parent, which shows them, and cannot corrupt the protocol.
- Without one, the protocol keeps the original stdout; file descriptor 1 is then pointed at
  stderr, so a ``print()`` in the module goes to the terminal (the parent forwards stderr)
  instead of corrupting the messages.
- Synchronous functions run one at a time by default: the fastest way, and what a module
  written without threads in mind expects (a slow one holds up the calls behind it). When the
  module has no ``async def`` function either, the host needs no event loop at all: it serves
  with a plain blocking read (``peer.Connection``), a few microseconds less per call; else
  they run on the event loop. With ``--threads N`` they run in a pool of N threads (as
  ``asyncio.to_thread`` would), so a slow one does not hold up the others, at about three times
  the cost per call, and the module must then be thread-safe. ``async def`` functions always
  run on the event loop. ``sys.stdout`` and ``sys.stderr`` write whole lines (``LineWriter``),
  so the ``print()`` lines of calls running at once do not mix.
- The parent's first call is ``$/hello`` (the handshake): the answer gives our protocol and
  package versions and the list of functions; a parent that speaks another protocol is refused
  with a ProtocolMismatch naming both versions.
- Exceptions travel back with their type and traceback (a RemoteError on the other side).
- The host ends when the channel closes (the parent closed the handle or died).
"""

from __future__ import annotations

import asyncio
import atexit
import functools
import gc
import importlib
import inspect
import io
import os
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TextIO

from ._version import __version__
from .objects import CALL_MAX_LINE
from .peer import Connection, Peer
from .rpc import HELLO_METHOD, hello, hello_refusal, speaks_binary
from .transports.base import AsyncChannel
from .transports.stdio import (
    PARENT_ENV,
    AsyncSocketChannel,
    AsyncStdioChannel,
    StdioChannel,
    _die_with_parent,
    parent_channel_fd,
)

__all__ = ["AsyncSocketChannel", "AsyncStdioChannel", "LineWriter", "exported_functions", "main", "serve"]

THREADS = 0  # default --threads: sync functions run on the event loop


def exported_functions(module: Any) -> dict[str, Any]:
    """The module's public callables (its ``__all__`` when it has one), classes included: calling
    a class makes an instance, which the caller gets as a remote object (spec/PROTOCOL.md 10)."""
    names = getattr(module, "__all__", None) or [n for n in dir(module) if not n.startswith("_")]
    return {n: getattr(module, n) for n in names if callable(getattr(module, n, None))}


def _is_async(function: Callable[..., Any]) -> bool:
    return inspect.iscoroutinefunction(function) or inspect.iscoroutinefunction(
        getattr(function, "__call__", None)  # noqa: B004 - an object with an async __call__
    )


class LineWriter(io.TextIOBase):
    """A text stream that writes whole lines only: what each thread writes is held until its
    newline (or its ``flush``), then written at once. The module's functions run in threads at
    the same time, and ``print(x)`` is two writes (``x``, then ``"\\n"``): without this, two calls
    printing at once could make one line of two halves."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__()
        self._stream = stream
        self._pending: dict[int, str] = {}
        self._lock = threading.Lock()

    def write(self, text: str) -> int:
        me = threading.get_ident()
        with self._lock:
            held = self._pending.pop(me, "") + text
            cut = held.rfind("\n") + 1
            if cut < len(held):
                self._pending[me] = held[cut:]
            if cut:
                self._stream.write(held[:cut])
                self._stream.flush()
        return len(text)

    def flush(self) -> None:
        """Writes what this thread holds (a line without its newline yet)."""
        with self._lock:
            held = self._pending.pop(threading.get_ident(), "")
            if held:
                self._stream.write(held)
            self._stream.flush()

    def flush_all(self) -> None:
        """Writes what every thread holds (at exit)."""
        with self._lock:
            for held in self._pending.values():
                self._stream.write(held)
            self._pending.clear()
            self._stream.flush()

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return self._stream.isatty()

    def fileno(self) -> int:
        return self._stream.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return self._stream.encoding

    @property
    def errors(self) -> str | None:  # type: ignore[override]
        return self._stream.errors

    def __getattr__(self, name: str) -> Any:  # buffer, line_buffering, reconfigure...
        return getattr(self._stream, name)


def _whole_lines() -> list[LineWriter]:
    """Points sys.stdout and sys.stderr at LineWriters; returns them."""
    writers = []
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if stream is not None and not isinstance(stream, LineWriter):
            writer = LineWriter(stream)
            setattr(sys, name, writer)
            writers.append(writer)
    return writers


class _Threads:
    """The thread pool of the synchronous functions, and how many of them run now."""

    def __init__(self) -> None:
        self.pool: ThreadPoolExecutor | None = None
        self.size = THREADS
        self.running = 0
        self._lock = threading.Lock()

    def run(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            self.running += 1
        try:
            return function(*args, **kwargs)
        finally:
            with self._lock:
                self.running -= 1


_threads = _Threads()


def in_thread(function: Callable[..., Any]) -> Callable[..., Any]:
    """``function`` as an async function that runs it in the host's thread pool; its signature
    stays visible (``inspect.signature`` follows ``__wrapped__``)."""

    @functools.wraps(function)
    async def call(*args: Any, **kwargs: Any) -> Any:
        if _threads.pool is None:
            _threads.pool = ThreadPoolExecutor(_threads.size, thread_name_prefix="bothways.host")
        job = functools.partial(_threads.run, function, *args, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(_threads.pool, job)

    return call


class ProtocolMismatch(Exception):
    """The parent's ``$/hello`` names another protocol (its RemoteError carries the message)."""


def _served(
    functions: dict[str, Callable[..., Any]], engine: Callable[[], Peer | Connection]
) -> dict[str, Callable[..., Any]]:
    """``functions``, ``$/functions`` that lists them, and ``$/hello`` (the handshake: our
    versions and the list, or ProtocolMismatch naming both sides' versions; a parent that reads
    binary frames gets bytes and arrays in them from then on: ``engine()`` is ours)."""
    names = sorted(functions)
    ours = hello(__version__, "python")

    def greet(**theirs: Any) -> dict[str, Any]:
        refusal = hello_refusal(ours, theirs)
        if refusal is not None:
            raise ProtocolMismatch(refusal)
        engine().binary = speaks_binary(theirs)  # (the answer itself holds no bytes)
        return {**ours, "functions": names}

    return {**functions, "$/functions": lambda: names, HELLO_METHOD: greet}


async def serve(module_name: str, channel: AsyncChannel, threads: int = THREADS) -> None:
    """Exposes ``module_name``'s functions on ``channel`` until the other side closes it.

    Synchronous functions run on the loop, or in a pool of ``threads`` threads when it is above 0
    (see the module's rules); async ones on the loop.
    """
    await _serve(exported_functions(importlib.import_module(module_name)), channel, threads)


async def _serve(functions: dict[str, Callable[..., Any]], channel: AsyncChannel, threads: int) -> None:
    peer = Peer(channel)
    _threads.size = threads
    for name, function in _served(functions, lambda: peer).items():
        pooled = threads > 0 and name in functions and not _is_async(function)  # (not the listing)
        peer.expose(in_thread(function) if pooled else function, name=name)
    await peer.run()  # ends when the channel closes


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    threads = THREADS
    if len(args) == 3 and args[0] == "--threads" and args[1].isdigit():
        threads, args = int(args[1]), args[2:]
    if len(args) != 1:
        print("usage: python -m bothways.host [--threads N] MODULE", file=sys.stderr)
        return 2
    if os.environ.get(PARENT_ENV) == str(os.getppid()):
        _die_with_parent()
    fd = parent_channel_fd()  # the channel socket: stdout stays the module's own
    if fd is None:
        fd_in, fd_out = 0, os.dup(1)
        os.dup2(2, 1)  # print() in user code now goes to stderr, never into the protocol
    else:
        fd_in = fd_out = fd
    sys.path.insert(0, os.getcwd())
    writers = _whole_lines()
    for writer in writers:
        atexit.register(writer.flush_all)
    functions = exported_functions(importlib.import_module(args[0]))
    # Everything imported so far lives as long as we do: out of the collector's passes, so that
    # a full collection does not walk it all in the middle of a call (numpy, pandas and friends
    # bring hundreds of thousands of objects: milliseconds per pass).
    gc.freeze()
    if threads == 0 and not any(_is_async(f) for f in functions.values()):
        plain = StdioChannel(stdin_fd=fd_in, stdout_fd=fd_out, max_line=CALL_MAX_LINE, binary=True)
        connection = Connection(plain, {})
        connection.exposed.functions.update(_served(functions, lambda: connection))
        connection.serve()  # no event loop
    else:
        channel = (
            AsyncSocketChannel(fd, max_line=CALL_MAX_LINE, binary=True)
            if fd is not None
            else AsyncStdioChannel(fd_in, fd_out, max_line=CALL_MAX_LINE, binary=True)
        )
        asyncio.run(_serve(functions, channel, threads))
    if _threads.running:  # a sync function runs on, and nobody waits for its answer: go now
        for writer in writers:
            writer.flush_all()
        os._exit(0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
