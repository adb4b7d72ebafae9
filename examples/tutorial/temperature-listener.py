"""The tutorial's Python listener: spawns the Node.js sensor and collects its readings.

    .venv/bin/python examples/tutorial/temperature-listener.py [--interval S] [--count N] [--seed S] [--json]

What the tutorial got wrong: it read the child's stdout one byte at a time (``read(1)``), a
system call per character, gluing characters into a reading by hand. Here stdout is read in
chunks of up to 64 KiB as they arrive (``read1``: whatever is there, without waiting for more),
and bothways' Decoder cuts them into lines and parses each as JSON; a bad line is reported with
its line number, and nothing is merged or lost whatever the chunking.

The sensor's flags are passed on; ``--json`` prints only the final list, as one JSON line, when
the sensor ends. Node is $BOTHWAYS_NODE, or node. The exit code is the sensor's.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
from pathlib import Path

from bothways import Decoder, Event, Messages, encode

SENSOR = Path(__file__).resolve().parent / "sensor.js"  # found from any working directory


def show(readings: list[float]) -> str:
    last = readings[-10:]  # the list as it grows; only its end once it is long
    more = "…, " if len(readings) > len(last) else ""
    return f"readings ({len(readings)}): [{more}{', '.join(map(str, last))}]"


def collect(events: list[Event], readings: list[float], quiet: bool) -> None:
    """Adds the readings in ``events`` to ``readings``; reports bad lines on stderr."""
    for event in events:
        if not isinstance(event, Messages):  # Malformed or Truncated
            print(f"sensor.js sent a bad line: {event.error}", file=sys.stderr)
            continue
        for i, value in enumerate(event.values):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                print(f"sensor.js line {event.line + i}: not a temperature: {value!r}", file=sys.stderr)
                continue
            readings.append(value)
            if not quiet:
                print(show(readings), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Spawns sensor.js and collects its readings.")
    parser.add_argument("--interval", help="passed to the sensor: seconds between readings")
    parser.add_argument("--count", help="passed to the sensor: stop after N readings")
    parser.add_argument("--seed", help="passed to the sensor: seed for a repeatable series")
    parser.add_argument("--json", action="store_true", help="print only the final list, as JSON")
    args = parser.parse_args(argv)
    flags: list[str] = []
    for name in ("interval", "count", "seed"):
        if getattr(args, name) is not None:
            flags += [f"--{name}", getattr(args, name)]

    node = os.environ.get("BOTHWAYS_NODE", "node")
    try:
        sensor = subprocess.Popen([node, str(SENSOR), *flags], stdout=subprocess.PIPE)  # argv, no shell
    except OSError as exc:
        print(f"cannot run {node}: {exc} (set BOTHWAYS_NODE)", file=sys.stderr)
        return 127
    assert sensor.stdout is not None
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # a kill stops us like Ctrl-C
    readings: list[float] = []
    decoder = Decoder()
    with sensor:  # on the way out: close the pipe, wait for the sensor
        try:
            while chunk := sensor.stdout.read1(64 * 1024):  # what is there, up to 64 KiB; b"" at the end
                collect(decoder.feed(chunk), readings, args.json)
            collect(decoder.feed_eof(), readings, args.json)
        except KeyboardInterrupt:
            sensor.terminate()  # stop the sensor too, and report what we have
    if args.json:
        sys.stdout.buffer.write(encode(readings))
    code = sensor.returncode
    return code if code >= 0 else 128 - code  # killed by signal N: 128 + N, as shells report it


if __name__ == "__main__":
    sys.exit(main())
