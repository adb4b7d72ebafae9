"""One tcp client for bench/telemetry.py: connects, says "ready", waits for a line on stdin, then
sends COUNT readings with ``send_many`` in batches of 1,000 and closes.

    python bench/telemetry/send.py tcp://127.0.0.1:PORT COUNT
"""

import sys

import bothways

BATCH = 1_000


def main() -> None:
    url, count = sys.argv[1], int(sys.argv[2])
    with bothways.connect(url) as channel:
        print("ready", flush=True)
        sys.stdin.readline()
        for start in range(0, count, BATCH):
            channel.send_many(
                {"sensor": "bench", "seq": n, "t": 1.7e9 + n, "celsius": 20.0 + n % 7}
                for n in range(start, min(count, start + BATCH))
            )


if __name__ == "__main__":
    main()
