"""The telemetry app (the flagship): readings from sensors in either language, collected by a
listener into SQLite, served by a Flask app with a live dashboard.

- ``readings``: what a reading is, and ``to_reading`` (mirrored by js/src/telemetry.js).
- ``store``: the SQLite store, idempotent on (sensor, seq).
"""

from .readings import FIELDS, MAX_SEQ, InvalidReading, to_reading
from .store import Page, Store

__all__ = ["FIELDS", "MAX_SEQ", "InvalidReading", "Page", "Store", "to_reading"]
