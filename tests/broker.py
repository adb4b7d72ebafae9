"""A Mosquitto broker of the test's own, on free 127.0.0.1 ports in a temporary folder.

``Broker(tmp_path)`` starts ``mosquitto`` (Debian's) with an MQTT listener and a WebSocket
listener, persistence in the folder (so a restart keeps sessions), and, given ``users``, a
password file and anonymous logins refused. ``stop()`` ends the process it started (by its
pid); ``start()`` again reuses the ports. A missing mosquitto skips the test, but fails it in CI.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from .conftest import IN_CI, UNIT


def mosquitto_path(name: str = "mosquitto") -> str:
    path = shutil.which(name) or (f"/usr/sbin/{name}" if Path(f"/usr/sbin/{name}").exists() else None)
    path = path or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists() else None)
    if path is None:
        message = f"{name!r} is not installed (make setup installs Debian's mosquitto)"
        if IN_CI:
            pytest.fail(message + " - in CI a missing tool is a failure, not a skip")
        pytest.skip(message)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Broker:
    """A running mosquitto: ``port`` (MQTT), ``ws_port`` (MQTT over WebSocket)."""

    def __init__(self, folder: Path, users: dict[str, str] | None = None) -> None:
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.program = mosquitto_path()
        self.port = free_port()
        self.ws_port = free_port()
        lines = [
            "per_listener_settings false",
            f"listener {self.port} 127.0.0.1",
            "protocol mqtt",
            f"listener {self.ws_port} 127.0.0.1",
            "protocol websockets",
            "persistence true",
            f"persistence_location {folder}/",
            f"log_dest file {folder}/mosquitto.log",
            "max_queued_messages 100000",
            "set_tcp_nodelay true",  # (else Nagle and delayed ACKs put 40 ms into every round trip)
        ]
        if os.geteuid() == 0:
            lines.append("user root")  # (else it becomes "mosquitto", who cannot read this folder)
        if users:
            passwords = folder / "passwords"
            passwords.write_text("")
            for user, password in users.items():
                subprocess.run(
                    [mosquitto_path("mosquitto_passwd"), "-b", str(passwords), user, password], check=True
                )
            lines += ["allow_anonymous false", f"password_file {passwords}"]
        else:
            lines.append("allow_anonymous true")
        self.config = folder / "mosquitto.conf"
        self.config.write_text("\n".join(lines) + "\n")
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    def url(self, topic: str, scheme: str = "mqtt") -> str:
        port = self.ws_port if scheme.startswith("mqtt+ws") else self.port
        return f"{scheme}://127.0.0.1:{port}/{topic}"

    def start(self) -> None:
        self.process = subprocess.Popen([self.program, "-c", str(self.config)], stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10 * UNIT
        for port in (self.port, self.ws_port):
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if self.process.poll() is not None or time.monotonic() > deadline:
                        log = (
                            (self.folder / "mosquitto.log").read_text()
                            if (self.folder / "mosquitto.log").exists()
                            else ""
                        )
                        raise RuntimeError(f"mosquitto did not start: {log[-2000:]}") from None
                    time.sleep(0.02)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10 * UNIT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def __enter__(self) -> Broker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
