"""The Python side of bench/channels.py (peer.mjs is the Node side, with the same modes).

    peer.py recv URL N      listen, print {"listening": url}, take N messages, print the timing
    peer.py send URL N      connect and send N readings (send_many, 1,000 at a time)
    peer.py rawrecv URL N   the same bytes below the library: count newlines (ws: a bare
                            `websockets` server, orjson.loads per frame)
    peer.py rawsend URL N   write the encoded readings raw (ws: a bare client, orjson.dumps)
    peer.py arecv / asend URL N   recv and send with the asyncio flavour (one message at a time)
    peer.py encode N / decode N   the codec alone, in-process (for the codec-bound rate)

Timings start at the first message received, so connection set-up is not counted.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

import orjson

import bothways
from bothways.urls import Address, parse

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "stdio"))
from messages import make  # noqa: E402

BATCH = 1000


def say(value: Any) -> None:
    sys.stdout.buffer.write(orjson.dumps(value) + b"\n")
    sys.stdout.flush()


def done(start: float | None, count: int) -> None:
    assert start is not None
    say({"seconds": time.perf_counter() - start, "messages": count})


def recv(url: str, count: int) -> None:
    with bothways.listen(url) as listener:
        say({"listening": listener.url})
        n, start = 0, None
        while n < count:
            batch = listener.receive_many()
            start = start or time.perf_counter()
            n += len(batch)
        done(start, n)


def send(url: str, count: int) -> None:
    values = make("small", count)
    with bothways.connect(url) as channel:
        for i in range(0, count, BATCH):
            channel.send_many(values[i : i + BATCH])


def encoded(count: int) -> bytes:
    return b"".join(bothways.encode(v) for v in make("small", count))


def rawrecv(url: str, count: int) -> None:
    address = parse(url)
    n, start = 0, None
    if address.scheme == "ws":
        asyncio.run(ws_rawrecv(address, count))
        return
    if address.scheme == "tcp":
        with socket.create_server((address.host or "127.0.0.1", 0)) as server:
            say({"listening": address.with_port(server.getsockname()[1]).url})
            conn, _ = server.accept()
            read = conn.recv
            while n < count:
                data = read(65536)
                start = start or time.perf_counter()
                n += data.count(b"\n")
        done(start, n)
        return
    path = address.path
    if address.scheme == "fifo":
        os.mkfifo(path, 0o600)
    else:
        Path(path).touch()
    say({"listening": url})
    with open(path, "rb", buffering=0) as f:
        while n < count:
            data = f.read(65536)
            if not data:
                time.sleep(0.001)
                continue
            start = start or time.perf_counter()
            n += data.count(b"\n")
    done(start, n)


async def ws_rawrecv(address: Address, count: int) -> None:
    """A bare `websockets` server: orjson.loads per text frame (no compression, as ours: the
    same bytes on the wire)."""
    from websockets.asyncio.server import ServerConnection, serve

    finished = asyncio.Event()
    n, start = 0, None

    async def handler(ws: ServerConnection) -> None:
        nonlocal n, start
        try:
            async for text in ws:
                start = start or time.perf_counter()
                orjson.loads(text)
                n += 1
                if n == count:
                    break
        finally:
            finished.set()  # also when the sender went early: the count then tells

    async with serve(handler, address.host, 0, max_size=None, compression=None) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        say({"listening": address.with_port(port).url})
        await finished.wait()
    done(start, n)


async def ws_rawsend(address: Address, count: int) -> None:
    """A bare `websockets` client: orjson.dumps per text frame."""
    from websockets.asyncio.client import connect

    where = f"ws://{address.host}:{address.port}{address.path}"
    async with connect(where, max_size=None, compression=None) as ws:
        for value in make("small", count):
            await ws.send(orjson.dumps(value).decode())


async def arecv(url: str, count: int) -> None:
    async with await bothways.async_listen(url) as listener:
        say({"listening": listener.url})
        n, start = 0, None
        while n < count:
            await listener.receive()
            start = start or time.perf_counter()
            n += 1
        done(start, n)


async def asend(url: str, count: int) -> None:
    async with await bothways.async_connect(url) as channel:
        for value in make("small", count):
            await channel.send(value)


def rawsend(url: str, count: int) -> None:
    address = parse(url)
    if address.scheme == "ws":
        asyncio.run(ws_rawsend(address, count))
        return
    data = encoded(count)
    step = 64 * 1024
    if address.scheme == "tcp":
        with socket.create_connection((address.host, address.port)) as sock:
            for i in range(0, len(data), step):
                sock.sendall(data[i : i + step])
        return
    with open(address.path, "ab", buffering=0) as f:
        for i in range(0, len(data), step):
            f.write(data[i : i + step])


def codec(mode: str, count: int) -> None:
    values = make("small", count)
    if mode == "encode":
        start = time.perf_counter()
        for v in values:
            orjson.dumps(v)
    else:
        lines = [orjson.dumps(v) for v in values]
        start = time.perf_counter()
        for line in lines:
            orjson.loads(line)
    done(start, count)


def main() -> None:
    mode, *rest = sys.argv[1:]
    if mode in ("encode", "decode"):
        codec(mode, int(rest[0]))
        return
    url, count = rest[0], int(rest[1])
    if mode in ("arecv", "asend"):
        asyncio.run({"arecv": arecv, "asend": asend}[mode](url, count))
        return
    {"recv": recv, "send": send, "rawrecv": rawrecv, "rawsend": rawsend}[mode](url, count)


if __name__ == "__main__":
    main()
