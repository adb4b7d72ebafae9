"""The module a Node caller serves through ``python.import``: quick and slow calls, and the pid of
the Python host, which the soak kills mid-call."""

from __future__ import annotations

import os
import time


def echo(k: int) -> int:
    return k


def sleep(ms: int, k: int) -> int:
    time.sleep(ms / 1000)
    return k


def pid() -> int:
    return os.getpid()
