"""The readings store: one SQLite file (WAL), shared by the listener that fills it and the web app
that reads it, in the same process or not.

- ``add(readings)`` stores a batch in one transaction and is idempotent on ``(sensor, seq)``: a
  reading already stored (a sensor's resend, a file read again) is skipped, the first one kept.
  It returns how many were new.
- ``query(...)`` pages through readings in the order they were stored: each page's ``next`` is
  the cursor (an id) for the page after it, ``None`` on the last page; filters by sensor and by
  ``t``. ``last`` is the id of the newest row seen, for a feed that polls for what is new.
- ``sensors()`` summarises each sensor: count, last value, min, max, mean, last seen.

One connection per Store, used under a lock (a Store may be shared by threads); open a Store per
process. Fields other than the four are kept as a JSON object in ``extra``.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..wire import decode, encode

__all__ = ["Page", "Store"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS readings (
    id INTEGER PRIMARY KEY,
    sensor TEXT NOT NULL,
    seq INTEGER NOT NULL,
    t REAL NOT NULL,
    celsius REAL NOT NULL,
    extra TEXT,
    UNIQUE (sensor, seq)
);
CREATE INDEX IF NOT EXISTS readings_by_time ON readings (t);
"""
_INSERT = "INSERT OR IGNORE INTO readings (sensor, seq, t, celsius, extra) VALUES (?, ?, ?, ?, ?)"
_FOUR = frozenset(("sensor", "seq", "t", "celsius"))
MAX_LIMIT = 10_000  # readings in one page at most


@dataclass
class Page:
    """One page of ``Store.query``: the readings, the cursor of the next page, the newest id."""

    readings: list[dict[str, Any]] = field(default_factory=list)
    next: int | None = None
    last: int = 0


def _row(reading: dict[str, Any]) -> tuple[Any, ...]:
    extra = None
    if len(reading) > 4:
        extra = encode({k: v for k, v in reading.items() if k not in _FOUR})[:-1].decode()
    return (reading["sensor"], reading["seq"], reading["t"], reading["celsius"], extra)


def _reading(sensor: str, seq: int, t: float, celsius: float, extra: str | None) -> dict[str, Any]:
    reading: dict[str, Any] = {"sensor": sensor, "seq": seq, "t": t, "celsius": celsius}
    if extra is not None:
        reading.update(decode(extra))
    return reading


class Store:
    """The readings in the SQLite file at ``path`` (created, with its folder, if missing)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)

    def add(self, readings: Iterable[dict[str, Any]]) -> int:
        """Stores readings (validated ones: see readings.to_reading) in one transaction; returns
        how many were new (one already stored under the same sensor and seq is skipped)."""
        rows = [_row(r) for r in readings]
        if not rows:
            return 0
        with self._lock:
            before = self._db.total_changes
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(_INSERT, rows)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
            return self._db.total_changes - before

    def query(
        self,
        *,
        sensor: str | None = None,
        since: float | None = None,
        until: float | None = None,
        after: int | None = None,
        limit: int = 1000,
    ) -> Page:
        """Readings in the order stored: of ``sensor`` (all when None), with ``since <= t <
        until``, stored after the cursor ``after``; ``limit`` of them at most (1 to MAX_LIMIT)."""
        if not 1 <= limit <= MAX_LIMIT:
            raise ValueError(f"limit must be from 1 to {MAX_LIMIT} (got {limit})")
        where, args = [], []
        for clause, arg in (("sensor = ?", sensor), ("t >= ?", since), ("t < ?", until), ("id > ?", after)):
            if arg is not None:
                where.append(clause)
                args.append(arg)
        sql = "SELECT id, sensor, seq, t, celsius, extra FROM readings"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id LIMIT ?"
        with self._lock:
            rows = self._db.execute(sql, (*args, limit + 1)).fetchall()
        more = len(rows) > limit
        rows = rows[:limit]
        last = rows[-1][0] if rows else (after or 0)
        return Page([_reading(*row[1:]) for row in rows], last if more else None, last)

    def sensors(self) -> list[dict[str, Any]]:
        """Per sensor (by name): count, last (celsius of the newest t), min, max, mean, last_seen."""
        sql = """
            SELECT sensor, count(*), min(celsius), max(celsius), avg(celsius), max(t),
                   (SELECT celsius FROM readings AS r WHERE r.sensor = s.sensor ORDER BY t DESC, id DESC
                    LIMIT 1)
            FROM readings AS s GROUP BY sensor ORDER BY sensor
        """
        with self._lock:
            rows = self._db.execute(sql).fetchall()
        return [
            {"sensor": s, "count": n, "last": last, "min": lo, "max": hi, "mean": mean, "last_seen": seen}
            for s, n, lo, hi, mean, seen, last in rows
        ]

    def count(self) -> int:
        with self._lock:
            (n,) = self._db.execute("SELECT count(*) FROM readings").fetchone()
        return int(n)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
