"""A PostgreSQL server of the test's own: Debian's binaries, a cluster made by ``initdb`` in a
temporary folder of its own (trust logins), listening on a free 127.0.0.1 port; ``stop()`` ends it with
``pg_ctl stop``. As root the server runs as the ``postgres`` user (PostgreSQL refuses root). A
missing PostgreSQL skips the test, but fails it in CI."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from .broker import free_port
from .conftest import IN_CI


def _bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}")) or [shutil.which(name) or ""]
    if not found[-1]:
        message = f"PostgreSQL's {name} is not installed (make setup installs Debian's postgresql)"
        if IN_CI:
            pytest.fail(message + " - in CI a missing tool is a failure, not a skip")
        pytest.skip(message)
    return found[-1]


class Postgres:
    """A running PostgreSQL: ``url`` reaches its ``postgres`` database."""

    def __init__(self, folder: Path | None = None) -> None:
        # A folder of its own in the temporary directory (``folder`` is not used: pytest's are
        # private to root, and another pytest session makes them private again while we run).
        del folder
        self.folder = folder = Path(tempfile.mkdtemp(prefix="bothways-pg-"))
        self.data = folder / "data"
        self.port = free_port()
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
            os.chown(folder, user.pw_uid, user.pw_gid)
            self.as_user = ["runuser", "-u", "postgres", "--"]
        self._run(_bin("initdb"), "-D", str(self.data), "--auth=trust", "-U", "postgres", "-E", "UTF8")
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self.start()

    def _run(self, *argv: str) -> None:
        subprocess.run([*self.as_user, *argv], check=True, capture_output=True, cwd=self.folder)

    def start(self) -> None:
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(
            _bin("pg_ctl"), "-D", str(self.data), "-o", options, "-l", str(self.folder / "log"), "-w", "start"
        )

    def stop(self) -> None:
        try:
            self._run(_bin("pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> Postgres:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
