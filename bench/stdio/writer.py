"""Benchmark writer: sends COUNT messages of KIND to stdout, the way MODE does it.

    python writer.py MODE KIND COUNT
MODE: ours (bothways stdio().send per message), ours_many (send_many of 1000),
raw (the same bytes, pre-encoded, no JSON work),
pyshell (print(json.dumps(m)) per message, as python-shell's JSON mode expects).

The messages are made before the first one is sent, and the writer leaves with os._exit once the
last one is out: neither making them nor freeing them at interpreter exit (50-200 ms for the
300,000 small or the 40 large ones) is timed, only the stream. The reader's clock runs until it
sees the end of the stream, which comes with our exit.
"""

import json
import os
import sys

from bothways import encode
from bothways.transports import stdio

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from messages import make  # noqa: E402

mode, kind, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
values = make(kind, count)
if mode == "ours":
    channel = stdio()
    for value in values:
        channel.send(value)
elif mode == "ours_many":  # the batch API: one system call per 1000 messages
    channel = stdio()
    for start in range(0, len(values), 1000):
        channel.send_many(values[start : start + 1000])
elif mode == "raw":
    data = b"".join(encode(v) for v in values)
    out = sys.stdout.buffer
    for i in range(0, len(data), 65536):
        out.write(data[i : i + 65536])
    out.flush()
elif mode == "pyshell":
    for value in values:
        print(json.dumps(value), flush=True)
else:
    raise SystemExit(f"unknown mode {mode}")
sys.stdout.flush()
os._exit(0)  # everything is written (stdio() writes through; raw and pyshell flushed above)
