"""The ``bothways`` command: ``main(argv=None) -> int``; an error's class sets the exit code."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from io import BufferedReader
from typing import cast

from . import __version__
from .wire import Decoder, Malformed, Messages, Truncated, encode

EXIT_BAD_INPUT = 65  # EX_DATAERR


def _check(args: argparse.Namespace) -> int:
    """Reads NDJSON from stdin; re-emits the good messages compactly, reports the bad lines."""
    decoder = Decoder(max_line=args.max_line)
    bad = 0
    out = sys.stdout.buffer
    stream = cast(BufferedReader, sys.stdin.buffer)
    while True:
        chunk = stream.read1(65536)
        events = decoder.feed(chunk) if chunk else decoder.feed_eof()
        for event in events:
            if isinstance(event, Messages):
                if not args.quiet:
                    out.write(b"".join(encode(v, big_ints=True) for v in event.values))
            elif isinstance(event, (Malformed, Truncated)):
                if not (isinstance(event, Truncated) and event.error.delivered):
                    bad += 1
                print(f"bothways: {event.error.code}: {event.error}", file=sys.stderr)
        if not chunk:
            break
    out.flush()
    return EXIT_BAD_INPUT if bad else 0


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line; returns the exit code."""
    parser = argparse.ArgumentParser(prog="bothways", description=__doc__)
    parser.add_argument("--version", action="version", version=f"bothways {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("check", help="validate an NDJSON stream from stdin")
    check.add_argument("--max-line", type=int, default=16 * 1024 * 1024, help="longest line, bytes")
    check.add_argument("-q", "--quiet", action="store_true", help="only report bad lines")
    check.set_defaults(run=_check)
    args = parser.parse_args(argv)
    result: int = args.run(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
