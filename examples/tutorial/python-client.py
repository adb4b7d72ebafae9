"""Python talking to the Node.js server (node-server.js) with requests: GET JSON, then POST JSON.

    node examples/tutorial/node-server.js &
    .venv/bin/python examples/tutorial/python-client.py [--url http://127.0.0.1:3000]

What usually goes wrong here: ``requests.post(url, json=value)`` encodes with ``json.dumps``,
which writes ``NaN`` and ``Infinity`` (JavaScript's ``JSON.parse`` rejects them: the whole
request fails) and integers beyond 2**53 (JavaScript silently rounds them); and calls without
a timeout or a status check hang on a stuck server or take an error page for an answer. Here
the body is ``bothways.encode(value)`` (NaN becomes null, as ``JSON.stringify`` does, and an
unsafe integer is an error here, not a changed number there), every call has a timeout, and an
HTTP error is reported with the server's JSON error body.
"""

from __future__ import annotations

import argparse
import sys

import requests

import bothways

TIMEOUT = 5  # seconds: to connect, and between bytes of the answer


def as_text(value: object) -> str:
    return bothways.encode(value).decode().rstrip("\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="GET and POST JSON to node-server.js.")
    parser.add_argument("--url", default="http://127.0.0.1:3000", help="the server (default: %(default)s)")
    parser.add_argument("--message", help="the JSON to POST (default: a greeting and a temperature)")
    args = parser.parse_args(argv)
    url = args.url.rstrip("/") + "/hello"
    message = {"greeting": "Hello from Python!", "temperature": 21.5}
    try:
        if args.message is not None:
            message = bothways.decode(args.message)
        body = bothways.encode(message)  # EncodeError, here, for what JavaScript would misread
    except (bothways.DecodeError, bothways.EncodeError) as exc:
        parser.error(f"--message: {exc}")
    try:
        answer = requests.get(url, timeout=TIMEOUT)
        answer.raise_for_status()
        print("GET  /hello ->", as_text(bothways.decode(answer.content)))

        print("POST /hello <-", as_text(message))
        answer = requests.post(url, data=body, headers={"Content-Type": "application/json"}, timeout=TIMEOUT)
        answer.raise_for_status()
        print("POST /hello ->", as_text(bothways.decode(answer.content)))
    except requests.HTTPError as exc:
        print(f"{exc}: {exc.response.text}", file=sys.stderr)
        return 1
    except requests.RequestException as exc:
        print(f"cannot talk to {url} (is node-server.js running?): {exc}", file=sys.stderr)
        return 1
    except bothways.DecodeError as exc:
        print(f"the server's answer is not JSON: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
