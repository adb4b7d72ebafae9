"""A mosquitto of the soak's own: a free 127.0.0.1 port, a temporary folder, persistence on (a
restart by SIGTERM saves the sessions and their queued messages), stopped by its pid."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path


def find_mosquitto() -> str | None:
    for candidate in (shutil.which("mosquitto"), "/usr/sbin/mosquitto", "/usr/bin/mosquitto"):
        if candidate and Path(candidate).exists():
            return candidate
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


class Mosquitto:
    def __init__(self, program: str, folder: Path, env: dict[str, str]) -> None:
        self.program, self.folder, self.env = program, folder, env
        folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        settings = [
            f"listener {self.port} 127.0.0.1",
            "allow_anonymous true",
            "persistence true",
            f"persistence_location {folder}/",
            f"log_dest file {folder}/mosquitto.log",
            "max_queued_messages 1000000",
            "max_inflight_messages 0",
            "set_tcp_nodelay true",
        ]
        if os.geteuid() == 0:
            settings.append("user root")  # (else it drops to "mosquitto", who cannot write here)
        self.config = folder / "mosquitto.conf"
        self.config.write_text("\n".join(settings) + "\n")
        self.process: subprocess.Popen[bytes] | None = None
        self.restarts = 0

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [self.program, "-c", str(self.config)],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"mosquitto did not start; its log ends: {self.log_tail()}") from None
                time.sleep(0.02)

    def stop(self) -> None:
        """SIGTERM (mosquitto saves its persistence file on the way out), then SIGKILL."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def restart(self, down: float) -> None:
        self.stop()
        time.sleep(down)
        self.start()
        self.restarts += 1

    def log_tail(self) -> str:
        log = self.folder / "mosquitto.log"
        return log.read_text(errors="replace")[-1500:] if log.exists() else "(no log)"
