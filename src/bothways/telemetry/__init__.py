"""The telemetry app (the flagship): readings from sensors in either language, collected by a
listener into SQLite, served by a Flask app with a live dashboard.

- ``readings``: what a reading is, and ``to_reading`` (mirrored by js/src/telemetry.js).
- ``store``: the SQLite store, idempotent on (sensor, seq).
- ``sensor``: the Python sensor (``bothways sensor``): ``Sensor``; its buffer ``Outbox``, which
  keeps readings while the channel is down, and ``Sender``, which delivers them.
- ``listen``: the listener (``bothways listen``): ``Ingest`` reads any number of sources at
  once into a Store, batched; ``readings_of`` validates a batch of messages.
- ``web``: the Flask app and ``serve`` (``bothways serve``); imported on its own, as it needs
  the web extra (Flask, waitress).
"""

from .listen import Ingest, readings_of
from .readings import FIELDS, MAX_SEQ, InvalidReading, to_reading
from .sensor import Outbox, Sender, Sensor
from .store import Page, Store

__all__ = [
    "FIELDS",
    "MAX_SEQ",
    "Ingest",
    "InvalidReading",
    "Outbox",
    "Page",
    "Sender",
    "Sensor",
    "Store",
    "readings_of",
    "to_reading",
]
