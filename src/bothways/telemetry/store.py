"""The readings store: one SQLite file (WAL), shared by the listener that fills it and the web app
that reads it, in the same process or not; or a PostgreSQL database (``PostgresStore``, psycopg 3)
that listeners on several machines fill together. ``open_store(db)`` picks by the name: a
``postgresql://`` URL, else a file path. Both have the same methods and answers.

- ``add(readings)`` stores a batch in one transaction and is idempotent on ``(sensor, seq)``: a
  reading already stored (a sensor's resend, a file read again) is skipped, the first one kept.
  It returns how many were new.
- ``query(...)`` pages through readings in the order they were stored: each page's ``next`` is
  the cursor (an id) for the page after it, ``None`` on the last page; filters by sensor and by
  ``t``. ``last`` is the id of the newest row seen, for a feed that polls for what is new.
- ``sensors()`` summarises each sensor: count, last value, min, max, mean, last seen.

One connection per Store, used under a lock (a Store may be shared by threads); open a Store per
process. Fields other than the four are kept as a JSON object in ``extra``.

In PostgreSQL a batch is one COPY straight into the table, in a savepoint; when a reading of it
is there already (a resend), the savepoint is undone and the batch goes the slower way: a COPY
into a temporary table and one ``INSERT ... SELECT ... ON CONFLICT DO NOTHING``. One transaction
either way. Ids follow the order of inserts within a batch; with
several writers at once, a batch committed later may hold smaller ids than one already read, so
a feed that polls ``after`` the last id should look back a little (docs/scaling.md).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from ..wire import decode, encode

__all__ = ["Page", "PostgresStore", "Store", "open_store"]

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


def _query_sql(
    mark: str, sensor: str | None, since: float | None, until: float | None, after: int | None, limit: int
) -> tuple[str, list[Any]]:
    """The SELECT of ``query`` with ``mark`` as the placeholder (``?`` or ``%s``), and its args."""
    if not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit must be from 1 to {MAX_LIMIT} (got {limit})")
    where, args = [], []
    for clause, arg in (("sensor = ", sensor), ("t >= ", since), ("t < ", until), ("id > ", after)):
        if arg is not None:
            where.append(clause + mark)
            args.append(arg)
    sql = "SELECT id, sensor, seq, t, celsius, extra FROM readings"
    if where:
        sql += " WHERE " + " AND ".join(where)
    return sql + f" ORDER BY id LIMIT {mark}", [*args, limit + 1]


def _page(rows: list[Any], limit: int, after: int | None) -> Page:
    more = len(rows) > limit
    rows = rows[:limit]
    last = int(rows[-1][0]) if rows else (after or 0)
    return Page([_reading(*row[1:]) for row in rows], last if more else None, last)


_SENSORS = """
    SELECT sensor, count(*), min(celsius), max(celsius), avg(celsius), max(t),
           (SELECT celsius FROM readings AS r WHERE r.sensor = s.sensor ORDER BY t DESC, id DESC LIMIT 1)
    FROM readings AS s GROUP BY sensor
"""


def _summaries(rows: list[Any]) -> list[dict[str, Any]]:
    return [
        {
            "sensor": s,
            "count": int(n),
            "last": last,
            "min": lo,
            "max": hi,
            "mean": float(mean),
            "last_seen": seen,
        }
        for s, n, lo, hi, mean, seen, last in sorted(rows, key=lambda row: row[0])
    ]


_Store = TypeVar("_Store", bound="_Readings")


class _Readings:
    """What Store and PostgresStore share: everything but connecting and storing, on one
    connection behind a lock; a subclass names its parameter mark and how it fetches."""

    _MARK = "?"
    _lock: threading.Lock
    _db: Any

    def _fetch(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        """The rows of one query, under the lock."""
        with self._lock:
            return list(self._db.execute(sql, args).fetchall())

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
        sql, args = _query_sql(self._MARK, sensor, since, until, after, limit)
        return _page(self._fetch(sql, args), limit, after)

    def sensors(self) -> list[dict[str, Any]]:
        """Per sensor (by name): count, last (celsius of the newest t), min, max, mean, last_seen."""
        return _summaries(self._fetch(_SENSORS))

    def count(self) -> int:
        rows = self._fetch("SELECT count(*) FROM readings")
        return int(rows[0][0]) if rows else 0

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self: _Store) -> _Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Store(_Readings):
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
            return int(self._db.total_changes - before)


_PG_SCHEMA = """
CREATE TABLE IF NOT EXISTS readings (
    id BIGSERIAL PRIMARY KEY,
    sensor TEXT NOT NULL,
    seq BIGINT NOT NULL,
    t DOUBLE PRECISION NOT NULL,
    celsius DOUBLE PRECISION NOT NULL,
    extra TEXT,
    UNIQUE (sensor, seq)
);
CREATE INDEX IF NOT EXISTS readings_by_time ON readings (t);
"""
_PG_INCOMING = (
    "CREATE TEMPORARY TABLE incoming (n BIGSERIAL, sensor TEXT, seq BIGINT, t DOUBLE PRECISION, "
    "celsius DOUBLE PRECISION, extra TEXT) ON COMMIT DELETE ROWS"
)
_PG_COPY = "COPY {table} (sensor, seq, t, celsius, extra) FROM STDIN"
_PG_MOVE = (
    "INSERT INTO readings (sensor, seq, t, celsius, extra) SELECT sensor, seq, t, celsius, extra "
    "FROM incoming ORDER BY n ON CONFLICT (sensor, seq) DO NOTHING"
)
_PG_SCHEMA_LOCK = 0x626F7468  # an advisory lock: writers starting together create the table once


class PostgresStore(_Readings):
    """The readings in a PostgreSQL database (``postgresql://...``), shared by any number of
    listeners on any number of machines; the same methods and answers as Store."""

    _MARK = "%s"

    def __init__(self, url: str) -> None:
        try:
            import psycopg
        except ImportError:
            raise RuntimeError(
                "a postgresql:// store needs psycopg: pip install 'bothways[postgres]'"
            ) from None
        self.path = url
        self._lock = threading.Lock()
        self._unique_violation = psycopg.errors.UniqueViolation
        self._db = psycopg.connect(url)
        with self._db.transaction():
            self._db.execute("SELECT pg_advisory_xact_lock(%s)", (_PG_SCHEMA_LOCK,))
            self._db.execute(_PG_SCHEMA)
        self._db.execute(_PG_INCOMING)
        self._db.commit()

    def add(self, readings: Iterable[dict[str, Any]]) -> int:
        """As Store.add: one transaction, idempotent on (sensor, seq); how many were new."""
        rows = [_row(r) for r in readings]
        if not rows:
            return 0
        with self._lock, self._db.transaction(), self._db.cursor() as cursor:
            try:  # the usual batch, all new: straight into the table
                with self._db.transaction(), cursor.copy(_PG_COPY.format(table="readings")) as copy:
                    for row in rows:
                        copy.write_row(row)
                return len(rows)
            except self._unique_violation:  # one was there: the slower way, which skips it
                pass
            with cursor.copy(_PG_COPY.format(table="incoming")) as copy:
                for row in rows:
                    copy.write_row(row)
            cursor.execute(_PG_MOVE)
            return int(cursor.rowcount)

    def _fetch(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        with self._lock:
            rows = list(self._db.execute(sql, args).fetchall())
            self._db.commit()  # psycopg opened a transaction: end it, as autocommit would
        return rows


def open_store(db: str | Path) -> Store | PostgresStore:
    """The store named by ``db``: a ``postgresql://`` (or ``postgres://``) URL, else a SQLite file."""
    if isinstance(db, str) and db.startswith(("postgresql://", "postgres://")):
        return PostgresStore(db)
    return Store(db)
