"""The telemetry app's web side: a JSON API over the readings store, a live feed and a dashboard.

``create_app(db)`` builds the Flask app (an app factory: each call a fresh app and its own Store);
``serve(db)`` runs it with waitress (or Flask's development server) together with the live feed.

Routes
------
- ``GET /api/readings``: readings in the order stored. Filters ``sensor``, ``since`` and ``until``
  (epoch seconds: ``since <= t < until``), ``limit`` (1 to 10,000, default 1,000), ``cursor``
  (the ``next`` of the previous page). JSON ``{"readings": [...], "next": cursor or null}``, or
  CSV (``sensor,seq,t,celsius``) with ``?format=csv`` or ``Accept: text/csv``; both carry a
  ``Link: <...>; rel="next"`` header when there is a next page. An unknown, repeated or bad
  parameter is a 400 naming it (``"parameter": "limit"``).
- ``POST /api/readings``: one reading (an object, or a bare number: the tutorial's sensors), a
  JSON array of them (``Content-Type: application/json``), or NDJSON (``application/x-ndjson``,
  or several lines sent as JSON). Each is checked by ``to_reading(source="http")``; the good ones
  are stored in one batch. 200 ``{"stored": new, "received": n, "invalid": [{"index", "reason"}]}``;
  when none of them is a reading, 400 ``INVALID_READING`` with the same list. A body that is not
  JSON is a 400 with the ``DecodeError``'s fields and nothing is stored; a body over
  ``MAX_CONTENT_LENGTH`` (8 MiB) a 413; another content type a 415.
- ``GET /api/sensors``: ``{"sensors": Store.sensors()}``.
- ``GET /api/config``: ``{"feed": the live feed's ws:// URL or null, "version": ...}``.
- ``GET /``: the dashboard (templates/dashboard.html, static/dashboard.js): a uPlot chart per
  sensor, the per-sensor table, the connection state and a time range; it loads the range from
  ``/api/readings`` and then follows the live feed.
- ``GET /vendor/uplot/<file>``: uPlot's ``uPlot.iife.min.js`` and ``uPlot.min.css``, from the copy
  the wheel carries (``bothways/js/vendor/uplot``, put there by setup.py) or, in a checkout, from
  ``js/node_modules/uplot/dist``.
- ``GET /bothways/<module>.js``: bothways' browser modules (js/src), as the tutorial's app serves
  them: the dashboard does ``import { connect } from "/bothways/browser.js"``.
- The tutorial's ``GET/POST /hello`` and ``GET /test`` (its page, from examples/tutorial).

Every error is a JSON body ``{"error": {"code", "message", ...}}``, never an HTML page.

The live feed
-------------
``Feed`` listens on ``ws://127.0.0.1:0/feed`` (a bothways ws listener) and, every 0.1 s, sends
the rows stored since its last look (``Store.query(after=last)``) to every connected page with
``send_many``. It reads the SQLite file, not the app, so readings stored by another process (a
listener) reach the pages as well as those POSTed here.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import re
import signal
import socket
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import urlencode, urlsplit

try:
    from flask import Blueprint, Flask, Response, abort, render_template, request, send_from_directory
    from werkzeug.exceptions import HTTPException
    from werkzeug.wrappers import Response as BaseResponse
except ImportError as exc:  # the web extra is not installed
    raise ImportError("bothways' web app needs Flask and waitress: pip install 'bothways[web]'") from exc

from .._version import __version__
from ..channels import listen
from ..errors import DecodeError, EncodeError, TransportClosed
from ..transports.base import Listener
from ..urls import parse
from ..wire import Decoder, Malformed, Messages, decode, encode
from .readings import FIELDS, InvalidReading, to_reading
from .store import MAX_LIMIT, PostgresStore, Store, open_store

__all__ = ["Feed", "create_app", "serve"]

log = logging.getLogger("bothways.telemetry.web")

MAX_BODY = 8 * 1024 * 1024  # bytes in one POST (about 100,000 readings as NDJSON)
DEFAULT_LIMIT = 1000
MAX_CURSOR = 2**63 - 1  # SQLite's largest id
FEED_URL = "ws://127.0.0.1:0/feed"
POLL = 0.1  # seconds between the feed's looks at the store
GREETING = "Hello from Flask!"  # the tutorial's

_HERE = Path(__file__).resolve().parent
_PACKAGE = _HERE.parent  # bothways/
_CHECKOUT = _PACKAGE.parents[1]  # the repository, when running from a checkout (src/bothways)
UPLOT_FILES = {"uPlot.iife.min.js": "text/javascript", "uPlot.min.css": "text/css"}
_PARAMETERS = ("sensor", "since", "until", "limit", "cursor", "format")
_NDJSON = frozenset(
    ("application/x-ndjson", "application/ndjson", "application/jsonl", "application/x-jsonlines")
)
_NUMBER = re.compile(r"-?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_WHOLE = re.compile(r"[0-9]+")
_LOOPBACK = frozenset(("127.0.0.1", "localhost", "::1"))
_WILDCARD = frozenset(("", "0.0.0.0", "::"))


def _first_dir(*candidates: Path, holding: str) -> Path | None:
    return next((p for p in candidates if (p / holding).is_file()), None)


def js_src() -> Path | None:
    """bothways' JavaScript modules: the wheel's copy, else the checkout's js/src."""
    return _first_dir(_PACKAGE / "js" / "src", _CHECKOUT / "js" / "src", holding="browser.js")


def uplot_dir() -> Path | None:
    """uPlot's files: the wheel's copy (setup.py), else the checkout's node_modules (npm ci)."""
    return _first_dir(
        _PACKAGE / "js" / "vendor" / "uplot",
        _CHECKOUT / "js" / "node_modules" / "uplot" / "dist",
        holding="uPlot.iife.min.js",
    )


def tutorial_dir() -> Path | None:
    """The tutorial's programs: the wheel carries them, a checkout has them in examples/."""
    return _first_dir(
        _PACKAGE / "examples" / "tutorial",
        _CHECKOUT / "examples" / "tutorial",
        holding="templates/index.html",
    )


# --------------------------------------------------------------------------------------------
# Errors


class _BadRequest(Exception):
    """Answered as 4xx JSON: ``{"error": {"code", "message", ...fields}}``."""

    def __init__(self, status: int, code: str, message: str, **fields: Any) -> None:
        super().__init__(message)
        self.status = status
        self.body = {"code": code, "message": message, **fields}


def _bad_parameter(name: str, message: str) -> _BadRequest:
    return _BadRequest(400, "BAD_PARAMETER", f"{name}: {message}", parameter=name)


def _json(value: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A JSON response encoded by bothways (orjson when present: fast for 10,000 readings)."""
    return Response(encode(value), status, headers, mimetype="application/json")


def _error(status: int, code: str, message: str, **fields: Any) -> Response:
    return _json({"error": {"code": code, "message": message, **fields}}, status)


# --------------------------------------------------------------------------------------------
# GET /api/readings: parameters


def _number(name: str, text: str) -> float:
    value = float(text) if _NUMBER.fullmatch(text) else math.nan
    if not math.isfinite(value):
        raise _bad_parameter(name, f"must be a number of seconds since the epoch (got {text!r})")
    return value


def _whole(name: str, text: str, low: int, high: int, what: str) -> int:
    if not _WHOLE.fullmatch(text) or not low <= int(text) <= high:
        raise _bad_parameter(name, f"must be {what} (got {text!r})")
    return int(text)


@dataclass
class _Query:
    sensor: str | None = None
    since: float | None = None
    until: float | None = None
    limit: int = DEFAULT_LIMIT
    cursor: int | None = None
    csv: bool = False


def _parse_query() -> _Query:
    args = request.args
    for name in args:
        if name not in _PARAMETERS:
            raise _bad_parameter(name, f"unknown parameter (known: {', '.join(_PARAMETERS)})")
        if len(args.getlist(name)) > 1:
            raise _bad_parameter(name, "given more than once")
    query = _Query()
    if "sensor" in args:
        query.sensor = args["sensor"]
        if not query.sensor:
            raise _bad_parameter("sensor", "must be a sensor's name (got an empty string)")
    if "since" in args:
        query.since = _number("since", args["since"])
    if "until" in args:
        query.until = _number("until", args["until"])
    if "limit" in args:
        query.limit = _whole("limit", args["limit"], 1, MAX_LIMIT, f"a whole number from 1 to {MAX_LIMIT}")
    if "cursor" in args:
        query.cursor = _whole("cursor", args["cursor"], 0, MAX_CURSOR, "the 'next' of the previous page")
    chosen = args.get("format")
    if chosen is None:
        offered = ["application/json", "text/csv"]
        query.csv = request.accept_mimetypes.best_match(offered, "application/json") == "text/csv"
    elif chosen in ("json", "csv"):
        query.csv = chosen == "csv"
    else:
        raise _bad_parameter("format", f"must be json or csv (got {chosen!r})")
    return query


def _csv(readings: list[dict[str, Any]]) -> str:
    """The readings as CSV (RFC 4180: CRLF, quotes where needed); floats in their shortest form
    that reads back the same (repr); the fields beyond the four are left out."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(FIELDS)
    writer.writerows((r["sensor"], r["seq"], repr(r["t"]), repr(r["celsius"])) for r in readings)
    return out.getvalue()


# --------------------------------------------------------------------------------------------
# POST /api/readings: the body


def _several_lines(body: bytes) -> bool:
    return len([line for line in body.split(b"\n") if line.strip(b" \t\r")]) > 1


def _decode_lines(body: bytes) -> list[Any]:
    """NDJSON: one message per line, blank lines skipped, the last line's newline optional (a
    body is whole: its end ends its last line).

    Raises:
        DecodeError: the first bad line.
    """
    decoder = Decoder()
    events = decoder.feed(body)
    if not body.endswith(b"\n"):
        events += decoder.feed(b"\n")
    values: list[Any] = []
    for event in events:
        if type(event) is Messages:
            values.extend(event.values)
        elif isinstance(event, Malformed):
            raise event.error
    return values


def _decode_body(body: bytes, ndjson: bool) -> list[Any]:
    """The messages of a POST body: one JSON text (an array is a batch), or NDJSON lines.

    Raises:
        DecodeError: the body is not JSON (for NDJSON: its first bad line).
    """
    if ndjson:
        return _decode_lines(body)
    try:
        value = decode(body)
    except DecodeError as whole:
        if not _several_lines(body):
            raise
        try:  # NDJSON sent as application/json
            return _decode_lines(body)
        except DecodeError as line:
            # A bad first line means it was not NDJSON (a pretty-printed text, say): the whole
            # text's error says more; past the first line, it was NDJSON with a bad line.
            raise line if (line.line or 0) > 1 else whole from None
    return value if isinstance(value, list) else [value]


def _extras_problem(reading: dict[str, Any]) -> str | None:
    """Why the store could not keep a reading's extra fields (an integer JavaScript would
    change, say), or None."""
    if len(reading) == len(FIELDS):
        return None
    try:
        encode({k: v for k, v in reading.items() if k not in FIELDS})
    except EncodeError as exc:
        return str(exc)
    return None


# --------------------------------------------------------------------------------------------
# The app


@dataclass
class _State:
    """What an app holds: its store, the seqs given to bare numbers, the tutorial's inbox."""

    store: Store | PostgresStore
    seqs: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    received: deque[Any] = field(default_factory=lambda: deque(maxlen=100))


def _tutorial_blueprint(state: _State) -> Blueprint:
    """The tutorial's routes (examples/tutorial/app.py): GET/POST /hello, GET /test."""
    tutorial = tutorial_dir()
    templates = str(tutorial / "templates") if tutorial is not None else None
    blueprint = Blueprint("tutorial", __name__, template_folder=templates)

    @blueprint.get("/hello")
    def hello() -> Response:
        return _json({"greeting": GREETING})

    @blueprint.post("/hello")
    def receive_hello() -> Response:
        if not request.is_json:
            got = request.content_type or "none"
            return _error(415, "UNSUPPORTED_MEDIA_TYPE", f"send Content-Type: application/json (got {got})")
        try:
            message = decode(request.get_data(cache=False))
        except DecodeError as exc:
            return _json({"error": exc.to_json()}, 400)
        print(message, flush=True)  # as the tutorial does
        with state.lock:
            state.received.append(message)
        return Response("OK", 200, mimetype="text/plain")

    @blueprint.get("/hello/received")
    def hello_received() -> Response:
        with state.lock:
            return _json(list(state.received))

    @blueprint.get("/test")
    def test_page() -> str:
        if templates is None:
            abort(404, "the tutorial's page is not installed")
        return render_template("index.html")

    return blueprint


def create_app(db: Path | str, *, feed_url: str | None = None, config: dict[str, Any] | None = None) -> Flask:
    """The telemetry web app over the SQLite store at ``db`` (created if missing).

    Args:
        db: the store's file, shared with the listeners that fill it.
        feed_url: the live feed's ``ws://`` URL, given to the dashboard (``GET /api/config``);
            None: no live feed (the page loads what is stored and says so). A feed on a
            wildcard address (``0.0.0.0``) is shown with the host the page was loaded from.
        config: Flask settings, e.g. ``{"MAX_CONTENT_LENGTH": 1024}`` (default 8 MiB per body).

    The app's Store is ``app.extensions["bothways"].store``; close it when done with the app
    (``serve`` does).
    """
    app = Flask(__name__)
    app.config.update(MAX_CONTENT_LENGTH=MAX_BODY, FEED_URL=feed_url)
    app.config.update(config or {})
    state = _State(open_store(db))
    app.extensions["bothways"] = state
    store = state.store
    app.register_blueprint(_tutorial_blueprint(state))

    @app.get("/")
    def dashboard() -> str:
        return render_template("dashboard.html", version=__version__, uplot=uplot_dir() is not None)

    @app.get("/api/config")
    def api_config() -> Response:
        return _json({"feed": _shown_feed(app.config["FEED_URL"]), "version": __version__})

    @app.get("/api/sensors")
    def api_sensors() -> Response:
        return _json({"sensors": store.sensors()})

    @app.get("/api/readings")
    def api_readings() -> Response:
        query = _parse_query()
        page = store.query(
            sensor=query.sensor, since=query.since, until=query.until, after=query.cursor, limit=query.limit
        )
        headers = {}
        if page.next is not None:
            args = {k: v for k, v in request.args.items() if k != "cursor"}
            headers["Link"] = f'<{request.path}?{urlencode({**args, "cursor": page.next})}>; rel="next"'
        if query.csv:
            return Response(_csv(page.readings), 200, headers, mimetype="text/csv")
        return _json({"readings": page.readings, "next": page.next}, 200, headers)

    @app.post("/api/readings")
    def api_add_readings() -> Response:
        mimetype = request.mimetype
        ndjson = mimetype in _NDJSON
        if not (ndjson or request.is_json):
            got = request.content_type or "none"
            return _error(
                415,
                "UNSUPPORTED_MEDIA_TYPE",
                f"send Content-Type: application/json or application/x-ndjson (got {got})",
            )
        try:
            values = _decode_body(request.get_data(cache=False), ndjson)  # 413 if over the limit
        except DecodeError as exc:
            return _json({"error": exc.to_json()}, 400)
        now = time.time()
        good: list[dict[str, Any]] = []
        invalid: list[dict[str, Any]] = []
        with state.lock:  # the seqs of bare numbers
            for index, value in enumerate(values):
                try:
                    reading = to_reading(value, source="http", now=now, seqs=state.seqs)
                except InvalidReading as exc:
                    invalid.append({"index": index, "reason": exc.reason})
                    continue
                problem = _extras_problem(reading)
                if problem is None:
                    good.append(reading)
                else:
                    invalid.append({"index": index, "reason": problem})
        if invalid and not good:
            reason = invalid[0]["reason"]
            message = (
                reason if len(values) == 1 else f"none of the {len(values)} is a reading ({reason}, ...)"
            )
            return _error(400, "INVALID_READING", message, received=len(values), invalid=invalid)
        stored = store.add(good)
        return _json({"stored": stored, "received": len(values), "invalid": invalid})

    @app.get("/vendor/uplot/<name>")
    def uplot(name: str) -> Response:
        where = uplot_dir()
        if name not in UPLOT_FILES or where is None:
            abort(404, "uPlot is not installed here (in a checkout: cd js && npm ci)")
        return send_from_directory(where, name, mimetype=UPLOT_FILES[name])

    @app.get("/bothways/<path:name>")
    def bothways_module(name: str) -> Response:
        """A module of js/src (``browser.js`` and what it imports); nothing outside that folder."""
        where = js_src()
        if not name.endswith(".js") or where is None:
            abort(404)
        return send_from_directory(where, name, mimetype="text/javascript")  # safe_join: no ../

    @app.errorhandler(_BadRequest)
    def bad_request(exc: _BadRequest) -> Response:
        return _json({"error": exc.body}, exc.status)

    @app.errorhandler(sqlite3.Error)
    def store_failed(exc: sqlite3.Error) -> Response:
        log.warning("the store failed: %s", exc)  # locked for longer than its timeout, disk full...
        return _error(503, "STORE_UNAVAILABLE", f"the readings store failed ({exc}); try again")

    @app.errorhandler(413)
    def too_large(exc: HTTPException) -> Response:
        limit = app.config["MAX_CONTENT_LENGTH"]
        return _error(413, "PAYLOAD_TOO_LARGE", f"the body is over the limit of {limit} bytes", limit=limit)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> BaseResponse:
        status = exc.code or 500
        if status < 400:
            return exc.get_response()  # a redirect, not an error
        code = (exc.name or "error").upper().replace(" ", "_")  # "Not Found" -> NOT_FOUND
        return _error(status, code, exc.description or exc.name)

    @app.errorhandler(Exception)
    def unexpected_error(exc: Exception) -> Response:
        app.logger.exception("unexpected error")  # the traceback goes to the log, not to the client
        return _error(500, "INTERNAL_ERROR", f"{type(exc).__name__} (see the server's log)")

    return app


def _shown_feed(url: str | None) -> str | None:
    """The feed's URL as the page must dial it: a wildcard host becomes the page's own host."""
    if url is None:
        return None
    address = parse(url)
    if address.host not in _WILDCARD:
        return url
    page_host = urlsplit(f"//{request.host}").hostname or "127.0.0.1"
    return replace(address, host=page_host).url


# --------------------------------------------------------------------------------------------
# The live feed


class Feed:
    """Sends every reading stored from now on to the pages connected to its ws listener.

    A thread looks at the store every ``interval`` s for rows stored after the last one it sent
    (any process may have stored them) and broadcasts them with ``send_many``, in the order
    stored. A page that connects gets what is stored from then on; it loads what came before
    from ``/api/readings``. ``close()`` stops the thread and the listener (pages see 1001).

    Args:
        db: the store's file.
        url: where to listen (port 0: a free one; ``.url`` shows it).
        interval: seconds between looks at the store.
        origins: the page origins allowed (default: pages on localhost, 127.0.0.1, [::1]).
    """

    def __init__(
        self,
        db: Path | str,
        url: str = FEED_URL,
        *,
        interval: float = POLL,
        origins: Sequence[str] | None = None,
    ) -> None:
        self._store = open_store(db)
        try:
            self._listener: Listener = listen(url, origins=origins)
        except BaseException:
            self._store.close()
            raise
        self.url = self._listener.url
        self.sent = 0  # readings broadcast so far
        self._interval = interval
        self._last = self._newest()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"bothways feed {self.url}", daemon=True)
        self._thread.start()

    def _newest(self) -> int:
        """The id of the newest stored row. Rows are never deleted, so ids run from 1 to
        ``count()``; any beyond (after a manual delete) are skipped page by page."""
        last = self._store.count()
        while True:
            page = self._store.query(after=last, limit=MAX_LIMIT)
            last = page.last
            if page.next is None:
                return last

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self._send_new()
            except TransportClosed:
                return  # closed
            except Exception:  # the store busy or failing: try again at the next look
                log.exception("the live feed could not read the store")

    def _send_new(self) -> None:
        while not self._stop.is_set():
            page = self._store.query(after=self._last, limit=MAX_LIMIT)
            if not page.readings:
                return
            self._listener.send_many(page.readings)
            self._last = page.last
            self.sent += len(page.readings)
            if page.next is None:
                return

    def close(self) -> None:
        """Stops the feed: its pages see the connection close (1001); idempotent."""
        if self._stop.is_set():
            return
        self._stop.set()
        self._listener.close()
        self._thread.join(10)
        self._store.close()

    def __enter__(self) -> Feed:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --------------------------------------------------------------------------------------------
# serve


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _feed_setup(host: str, port: int) -> tuple[str, Sequence[str] | None]:
    """Where the feed listens, and the page origins it takes, for an app served on host:port."""
    if host in _LOOPBACK:
        return FEED_URL, None  # pages on localhost / 127.0.0.1 / [::1], any port
    names = ["127.0.0.1", "localhost", "[::1]"]
    names += [socket.gethostname(), socket.getfqdn()] if host in _WILDCARD else [_url_host(host)]
    return f"ws://{_url_host(host or '0.0.0.0')}:0/feed", [f"http://{name}:{port}" for name in names]


class _Interrupted(KeyboardInterrupt):
    """SIGTERM, raised as a KeyboardInterrupt: the servers stop on it as on Ctrl-C."""


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise _Interrupted


def serve(db: Path | str, *, host: str = "127.0.0.1", port: int = 5000, debug: bool = False) -> None:
    """Serves the app on ``host:port`` (port 0: a free one) with its live feed, until SIGINT or
    SIGTERM; then stops the feed and returns. Prints the dashboard's URL, one line, at start.

    Args:
        db: the readings store (SQLite file), created if missing.
        host: the address to listen on (127.0.0.1: this machine only).
        port: the HTTP port.
        debug: Flask's development server (tracebacks in the log) instead of waitress.

    Call it from the main thread (signals are delivered there).
    """
    app = create_app(db)
    state: _State = app.extensions["bothways"]
    run: Any
    stop: Any
    try:
        if debug:
            from werkzeug.serving import make_server

            app.debug = True
            dev = make_server(host, port, app, threaded=True)
            real_port, run, stop = dev.port, dev.serve_forever, dev.server_close
        else:
            import waitress  # type: ignore[import-untyped]  # (no stubs)

            server: Any = waitress.create_server(app, host=host, port=port, threads=8, ident="bothways")
            listening = getattr(server, "effective_port", None) or server.effective_listen[0][1]
            real_port, run, stop = int(listening), server.run, server.close
    except BaseException:
        state.store.close()
        raise
    previous: dict[signal.Signals, Any] = {}
    try:
        feed_url, origins = _feed_setup(host, real_port)
        with Feed(db, feed_url, origins=origins) as feed:
            app.config["FEED_URL"] = feed.url
            if threading.current_thread() is threading.main_thread():
                for signum in (signal.SIGINT, signal.SIGTERM):
                    previous[signum] = signal.signal(signum, _interrupt)
            shown = "127.0.0.1" if host in _WILDCARD else _url_host(host)
            print(f"http://{shown}:{real_port}/", flush=True)
            run()  # until SIGINT/SIGTERM: waitress returns, werkzeug raises KeyboardInterrupt
    except KeyboardInterrupt:
        pass  # asked to stop: the feed is closed (pages see 1001), then the server
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        stop()
        state.store.close()
