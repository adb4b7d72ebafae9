"""The tutorial's Python sensor: a temperature in °C (uniform in -5..15) every 0-5 seconds.

    .venv/bin/python examples/tutorial/sensor.py [--interval SECONDS] [--count N] [--seed S]

What the tutorial got wrong: it printed with ``end=''``, so the readings ran together
("3.8-1.512.25…") and no reader could tell where one ended and the next began. Here each reading
is one line (a bare JSON number and a newline: an NDJSON stream), flushed as soon as it is
written, so a listener sees it at once and in one piece.
"""

from __future__ import annotations

import argparse
import random
import signal
import time


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Prints one temperature reading per line.")
    parser.add_argument("--interval", type=float, help="seconds between readings (default: random 0-5)")
    parser.add_argument("--count", type=int, help="stop after N readings (default: never)")
    parser.add_argument("--seed", type=int, help="seed the generator, for a repeatable series")
    args = parser.parse_args(argv)

    # Ctrl-C, or a listener that went away (a broken pipe): stop quietly, without a traceback.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    if hasattr(signal, "SIGPIPE"):
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)

    rng = random.Random(args.seed)
    sent = 0
    while args.count is None or sent < args.count:
        temperature = round(rng.uniform(-5, 15), 2)
        print(temperature, flush=True)  # one reading, one line
        sent += 1
        if args.count is None or sent < args.count:
            time.sleep(args.interval if args.interval is not None else rng.uniform(0, 5))


if __name__ == "__main__":
    main()
