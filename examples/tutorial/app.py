"""The tutorial's Flask app: GET /hello, POST /hello, and GET /test (the page with the fetches).

    .venv/bin/python examples/tutorial/app.py            # then open http://127.0.0.1:5000/test

What the tutorial got wrong, and what this version does instead:
- ``request.get_json()`` answers a malformed body with an HTML "400 Bad Request" page that does
  not say what is wrong, and a body sent without ``Content-Type: application/json`` with a 415
  HTML page. Here the body is parsed with ``bothways.decode``, so a bad body gets a JSON error
  naming the line, column and an excerpt; every error, including 413 (body over
  ``MAX_CONTENT_LENGTH``) and an unexpected bug, is a JSON body, never an HTML traceback page.
- ``app.run()`` listens where you tell it; we bind 127.0.0.1 by default (this machine only), and
  ``--port 0`` picks a free port, printed with the URL to open.

``GET /bothways/<module>.js`` serves bothways' browser modules (``js/src``), so that a page can
``import { connect } from "/bothways/browser.js"`` and talk to a Python or Node WebSocket listener.
"""

from __future__ import annotations

import argparse
import threading
from collections import deque
from pathlib import Path
from typing import Any

from flask import Flask, Response, abort, jsonify, render_template, request, send_from_directory
from werkzeug.exceptions import HTTPException
from werkzeug.serving import make_server

import bothways

GREETING = "Hello from Flask!"
JS_SRC = Path(__file__).resolve().parents[2] / "js" / "src"  # bothways' JavaScript, browser modules included


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """Builds the app. ``config`` overrides the defaults, e.g. ``{"MAX_CONTENT_LENGTH": 1024}``."""
    app = Flask(__name__)
    app.config.update(MAX_CONTENT_LENGTH=1024 * 1024, KEEP_RECEIVED=100)  # 1 MiB of JSON per POST
    app.config.update(config or {})
    received: deque[Any] = deque(maxlen=app.config["KEEP_RECEIVED"])
    lock = threading.Lock()  # the server is threaded

    def error(status: int, code: str, message: str, **details: Any) -> tuple[Response, int]:
        return jsonify(error={"code": code, "message": message, **details}), status

    @app.get("/hello")
    def hello() -> Response:
        return jsonify(greeting=GREETING)

    @app.post("/hello")
    def receive_hello() -> tuple[Response, int] | tuple[str, int, dict[str, str]]:
        if not request.is_json:  # application/json, or application/<something>+json
            got = request.content_type or "none"
            return error(415, "UNSUPPORTED_MEDIA_TYPE", f"send Content-Type: application/json (got {got})")
        try:
            message = bothways.decode(request.get_data())  # 413 if over MAX_CONTENT_LENGTH
        except bothways.DecodeError as exc:
            return jsonify(error=exc.to_json()), 400  # {"code", "message", "line", "column", "excerpt"}
        print(message, flush=True)  # as the tutorial does
        with lock:
            received.append(message)
        return "OK", 200, {"Content-Type": "text/plain; charset=utf-8"}

    @app.get("/hello/received")
    def hello_received() -> Response:
        """The last POSTed messages, oldest first (for tests and the curious)."""
        with lock:
            return jsonify(list(received))

    @app.get("/test")
    def test_page() -> str:
        return render_template("index.html")

    @app.get("/bothways/<path:name>")
    def bothways_module(name: str) -> Response:
        """A module of js/src (``browser.js`` and what it imports); nothing outside that folder."""
        if not name.endswith(".js"):
            abort(404)
        return send_from_directory(JS_SRC, name, mimetype="text/javascript")  # safe_join: no ../

    @app.errorhandler(413)
    def too_large(exc: HTTPException) -> tuple[Response, int]:
        limit = app.config["MAX_CONTENT_LENGTH"]
        return error(413, "PAYLOAD_TOO_LARGE", f"the body is over the limit of {limit} bytes", limit=limit)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response | tuple[Response, int]:
        status = exc.code or 500
        if status < 400:
            return exc.get_response()  # a redirect (e.g. a missing trailing slash), not an error
        code = (exc.name or "error").upper().replace(" ", "_")  # "Not Found" -> NOT_FOUND
        return error(status, code, exc.description or exc.name)

    @app.errorhandler(Exception)
    def unexpected_error(exc: Exception) -> tuple[Response, int]:
        app.logger.exception("unexpected error")  # the traceback goes to the log, not to the client
        return error(500, "INTERNAL_ERROR", f"{type(exc).__name__} (see the server's log)")

    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="The tutorial's Flask app.")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=5000, help="port (default: 5000; 0 picks a free one)")
    args = parser.parse_args(argv)
    server = make_server(args.host, args.port, create_app(), threaded=True)
    url = f"http://{args.host}:{server.port}"
    print(f"Serving on {url}/ - open {url}/test", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass  # Ctrl-C: stop quietly
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
