"""Raw pipe ping-pong (no JSON-RPC) with asyncio on the Python side, as bothways.host reads and
writes: for each line read, the same answer line back."""

import asyncio
import os
import sys

ANSWER = sys.argv[1].encode() + b"\n"


async def main() -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=65536)
    pipe = os.fdopen(0, "rb", buffering=0, closefd=False)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), pipe)
    while data := await reader.read(65536):
        if lines := data.count(b"\n"):
            os.write(1, ANSWER * lines)


asyncio.run(main())
