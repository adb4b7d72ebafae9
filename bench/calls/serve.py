"""Our Peer serving a plain ``def add`` over its stdio pipe, called inline by the reader (no
thread, no task): the Python side of "Node -> Python, Peer to Peer" in bench/calls.py."""

import asyncio

from bothways.host import AsyncStdioChannel
from bothways.peer import Peer


def add(a: int, b: int) -> int:
    return a + b


async def main() -> None:
    peer = Peer(AsyncStdioChannel(0, 1))
    peer.expose(add)
    await peer.run()


if __name__ == "__main__":
    asyncio.run(main())
