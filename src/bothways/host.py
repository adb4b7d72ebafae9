"""Serve a Python module's functions to the process that spawned us: ``python -m bothways.host MOD``.

The parent (Node's ``python.import("statistics")``, or any Peer) calls the module's functions by
name with JSON values; ``$/functions`` lists them. Rules:
- The protocol keeps the original stdout; file descriptor 1 is then pointed at stderr, so a
  ``print()`` in the module goes to the terminal (the parent forwards stderr) instead of
  corrupting the messages.
- Exceptions travel back with their type and traceback (a RemoteError on the other side).
- The host ends when its stdin closes (the parent closed the handle or died).
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import os
import sys
from typing import Any

from .errors import TransportClosed
from .peer import Peer
from .transports.base import AsyncChannel, Inbox
from .transports.stdio import CHUNK, PARENT_ENV, _die_with_parent
from .wire import encode

__all__ = ["AsyncStdioChannel", "exported_functions", "main", "serve"]


class AsyncStdioChannel(AsyncChannel):
    """The child's side of the stdio transport, for asyncio: read fd ``stdin_fd``, write ``stdout_fd``."""

    def __init__(self, stdin_fd: int = 0, stdout_fd: int = 1) -> None:
        self._in = stdin_fd
        self._out = stdout_fd
        self._inbox = Inbox()
        self._reader: asyncio.StreamReader | None = None
        self._eof = False

    async def _stream(self) -> asyncio.StreamReader:
        if self._reader is None:
            loop = asyncio.get_running_loop()
            reader = asyncio.StreamReader(limit=CHUNK)
            pipe = os.fdopen(self._in, "rb", buffering=0, closefd=False)
            await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), pipe)
            self._reader = reader
        return self._reader

    async def send(self, value: Any) -> None:
        data = memoryview(encode(value))
        try:
            while data:  # fd 1 is blocking: each write completes or fails
                data = data[os.write(self._out, data) :]
        except BrokenPipeError as exc:
            raise TransportClosed("stdout closed: the parent is gone") from exc

    async def receive(self) -> Any:
        reader = await self._stream()
        while not len(self._inbox):
            if self._eof:
                raise TransportClosed("stdin closed")
            data = await reader.read(CHUNK)
            if data:
                self._inbox.feed(data)
            else:
                self._eof = True
                self._inbox.feed_eof()
        return self._inbox.pop()

    async def close(self) -> None:
        self._eof = True


def exported_functions(module: Any) -> dict[str, Any]:
    """The module's public callables (its ``__all__`` when it has one)."""
    names = getattr(module, "__all__", None) or [n for n in dir(module) if not n.startswith("_")]
    return {
        n: getattr(module, n)
        for n in names
        if callable(getattr(module, n, None)) and not inspect.isclass(getattr(module, n))
    }


async def serve(module_name: str, channel: AsyncChannel) -> None:
    """Exposes ``module_name``'s functions on ``channel`` until the other side closes it."""
    module = importlib.import_module(module_name)
    functions = exported_functions(module)
    peer = Peer(channel)
    for name, function in functions.items():
        peer.expose(function, name=name)
    peer.expose(lambda: sorted(functions), name="$/functions")
    await peer.run()  # ends when stdin closes


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m bothways.host MODULE", file=sys.stderr)
        return 2
    if os.environ.get(PARENT_ENV) == str(os.getppid()):
        _die_with_parent()
    protocol_fd = os.dup(1)
    os.dup2(2, 1)  # print() in user code now goes to stderr, never into the protocol
    sys.path.insert(0, os.getcwd())
    asyncio.run(serve(args[0], AsyncStdioChannel(0, protocol_fd)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
