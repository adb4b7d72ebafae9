"""Load benchmark (not a test): many clients at once into each tcp listener flavour.

For 1,000 and 10,000 concurrent clients (each connects, then writes its messages in one write
and closes; a plain Node ``net`` generator, the same for every listener), per listener flavour:
connections accepted per second (all clients connected / the time that took, as the generator
sees it) and messages per second (all messages received by the listener's consumer / the time
from the generator's start). Beside, in the same run: a bare asyncio server and a bare Node
``net`` server that only count the newlines they read (backlog 4096 as ours).

    python bench/load.py [--rounds 3] [--quick] [--record bench/RESULTS.md]

Best of the rounds (interleaved). The soft limit on open files is raised to the hard one.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import resource
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import bothways

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from common import Row, machine, record  # noqa: E402

GENERATOR = HERE / "load" / "generator.mjs"
NODE_LISTENER = HERE / "load" / "listener.mjs"
SIZES = ((1_000, 50), (10_000, 10))  # (clients, messages each)
QUICK_SIZES = ((200, 50), (1_000, 10))  # --quick: a smoke run
LIMIT = 120.0  # seconds a run may take


def generate(port: int, clients: int, messages: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        ["node", str(GENERATOR), str(port), str(clients), str(messages)], stdout=subprocess.PIPE, text=True
    )


def finished(generator: subprocess.Popen[str]) -> dict[str, float]:
    out, _ = generator.communicate(timeout=LIMIT)
    if generator.returncode != 0:
        raise RuntimeError(f"the generator failed ({generator.returncode})")
    result: dict[str, float] = json.loads(out)
    return result


def run_blocking(clients: int, messages: int) -> tuple[float, float]:
    total = clients * messages
    with bothways.listen("tcp://127.0.0.1:0") as listener:
        done = threading.Event()

        def consume() -> None:
            count = 0
            for _ in listener:
                count += 1
                if count == total:
                    done.set()
                    return

        threading.Thread(target=consume, daemon=True).start()
        start = time.perf_counter()
        generator = generate(int(listener.url.rsplit(":", 1)[1]), clients, messages)
        if not done.wait(LIMIT):
            raise RuntimeError("the blocking listener did not get every message in time")
        took = time.perf_counter() - start
        times = finished(generator)
    return clients / (times["connect"] / 1000), total / took


def run_async(clients: int, messages: int, bare: bool) -> tuple[float, float]:
    total = clients * messages

    async def main() -> tuple[float, float]:
        done = asyncio.Event()
        count = 0
        if bare:

            async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
                nonlocal count
                while data := await reader.read(65536):
                    count += data.count(b"\n")
                    if count >= total:
                        done.set()
                writer.close()

            server = await asyncio.start_server(serve, "127.0.0.1", 0, backlog=4096)
            port = server.sockets[0].getsockname()[1]
        else:
            listener = await bothways.async_listen("tcp://127.0.0.1:0")
            port = int(listener.url.rsplit(":", 1)[1])

            async def consume() -> None:
                nonlocal count
                while count < total:
                    count += len(await listener.receive_many())
                done.set()

            consumer = asyncio.ensure_future(consume())
        start = time.perf_counter()
        generator = generate(port, clients, messages)
        await asyncio.wait_for(done.wait(), LIMIT)
        took = time.perf_counter() - start
        times = await asyncio.to_thread(finished, generator)
        if bare:
            server.close()
            await server.wait_closed()
        else:
            consumer.cancel()
            await listener.close()
        return clients / (times["connect"] / 1000), total / took

    return asyncio.run(main())


def run_node(clients: int, messages: int, kind: str) -> tuple[float, float]:
    total = clients * messages
    listener = subprocess.Popen(
        ["node", str(NODE_LISTENER), kind, str(total)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert listener.stdout is not None
        port = int(listener.stdout.readline())
        start = time.perf_counter()
        generator = generate(port, clients, messages)
        if listener.stdout.readline().strip() != "done":
            raise RuntimeError(f"the {kind} Node listener ended early")
        took = time.perf_counter() - start
        times = finished(generator)
    finally:
        listener.kill()
        listener.wait()
    return clients / (times["connect"] / 1000), total / took


WAYS: dict[str, Callable[[int, int], tuple[float, float]]] = {
    "bothways blocking `listen`": run_blocking,
    "bothways asyncio `async_listen`": lambda c, m: run_async(c, m, bare=False),
    "bare asyncio `start_server`": lambda c, m: run_async(c, m, bare=True),
    "bothways Node `listen`": lambda c, m: run_node(c, m, "bothways"),
    "bare Node `net.createServer`": lambda c, m: run_node(c, m, "bare"),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="fewer clients: a smoke run")
    parser.add_argument("--record", type=Path)
    args = parser.parse_args()
    sizes = QUICK_SIZES if args.quick else SIZES
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    best: dict[tuple[str, int], tuple[float, float]] = {}
    for _ in range(args.rounds):
        for clients, messages in sizes:
            for name, way in WAYS.items():
                try:
                    accepts, rate = way(clients, messages)
                except (RuntimeError, TimeoutError, subprocess.TimeoutExpired) as exc:
                    print(f"{name} with {clients} clients: {exc}", file=sys.stderr)
                    accepts, rate = 0.0, 0.0
                old = best.get((name, clients), (0.0, 0.0))
                best[(name, clients)] = (max(old[0], accepts), max(old[1], rate))
    rows = [
        "| clients x messages | listener | accepts/s | messages/s | vs bare (same runtime) |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    data: list[Row] = []
    for clients, messages in sizes:
        for name in WAYS:
            accepts, rate = best[(name, clients)]
            bare = "bare asyncio `start_server`" if "Node" not in name else "bare Node `net.createServer`"
            ratio = rate / best[(bare, clients)][1] if best[(bare, clients)][1] else 0.0
            shown = "failed" if rate == 0 else f"{rate:,.0f}"
            rows.append(f"| {clients:,} x {messages} | {name} | {accepts:,.0f} | {shown} | {ratio:.2f}x |")
            data.append(
                {
                    "clients x messages": f"{clients:,} x {messages}",
                    "listener": name,
                    "accepts/s": accepts,
                    "messages/s": rate or None,
                    "vs bare (same runtime)": ratio,
                    "clients": clients,
                    "messages": messages,
                }
            )
    table = "\n".join(rows)
    print(table)
    if args.record:
        when = datetime.date.today().isoformat()
        record(
            args.record,
            f"## Many clients ({when})\n\nMachine: {machine()}. `bench/load.py`: every client connects "
            f"at once, writes its messages in one write and closes (a plain Node `net` generator, the "
            f"same for all); best of {args.rounds} interleaved rounds{' (--quick)' if args.quick else ''}. "
            f"Messages/s counts from the "
            f"generator's start to the consumer's last message; the ratio is to the bare server of "
            f"the same runtime, measured in the same run. Nothing may be lost: a run that does not "
            f"get every message within {LIMIT:.0f} s is reported as failed.\n\n{table}",
            section="load",
            tables=[data],
            settings={"rounds": args.rounds, "quick": args.quick, "sizes": [list(size) for size in sizes]},
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
