"""A real SensorThings API 1.1 server for tests: django-ogc-sensorthings (PyPI) on SQLite.

No SensorThings server more complete than this one installs from the registries reachable here:
FROST-Server ships through Maven Central and Docker Hub, istSOS4 only as a repository with a
Docker stack, `django-sensorthings` needs Python >= 3.12, `sensoratlas` is a 2023 0.1 that needs
PostGIS, and npm's `sensorthings` implements 1.0 on Node 6. Where this server departs from
OGC 18-088 is listed in docs/sinks/sensorthings.md; the tests that meet a departure say so.

`StaServer.spawn()` migrates a fresh SQLite database, starts Django's threaded server on a free
port in a child process and waits until the service root answers; it fails the test loudly
(never skips) when the package is missing or the server does not come up.
"""

from __future__ import annotations

import base64
import contextlib
import importlib.util
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[3]
SETTINGS = "tests.integration.sta_server.settings"


_TEMPLATE: dict[str, bytes] = {}


def migrated(db: Path) -> None:
    """A fresh, migrated SQLite database at `db` (migrations run once per test session)."""
    if "db" not in _TEMPLATE:
        tmpl = db.with_name("template.sqlite3")
        env = {**os.environ, "STA_DB": str(tmpl), "STA_PORT": "1", "STA_AUTH": "none",
               "DJANGO_SETTINGS_MODULE": SETTINGS, "PYTHONPATH": str(ROOT)}  # fmt: skip
        done = subprocess.run([sys.executable, "-m", "django", "migrate", "--noinput"],
                              env=env, cwd=ROOT, capture_output=True, timeout=120)  # fmt: skip
        if done.returncode != 0:
            pytest.fail("SensorThings test server: migrate failed:\n" + done.stderr.decode()[-3000:])
        con = sqlite3.connect(tmpl)
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        con.execute("PRAGMA journal_mode=DELETE")
        con.close()
        _TEMPLATE["db"] = tmpl.read_bytes()
        tmpl.unlink()
    db.write_bytes(_TEMPLATE["db"])


@dataclass
class StaServer:
    port: int
    db: Path
    log: Path
    auth: str = "none"  # `basic:<user>:<password>` or `bearer:<token>`
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The service root as a client configures it (18-088: `…/v1.1`)."""
        return f"http://127.0.0.1:{self.port}/sensorthings/v1.1"

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(STA_DB=str(self.db), STA_PORT=str(self.port), STA_AUTH=self.auth,
                   DJANGO_SETTINGS_MODULE=SETTINGS, PYTHONPATH=str(ROOT))  # fmt: skip
        return env

    def _headers(self) -> dict[str, str]:
        kind, _, secret = self.auth.partition(":")
        if kind == "basic":
            return {"Authorization": "Basic " + base64.b64encode(secret.encode()).decode()}
        if kind == "bearer":
            return {"Authorization": f"Bearer {secret}"}
        return {}

    def start(self, timeout: float = 60.0) -> None:
        """Start (or restart, on the same port and database) and wait for the service root."""
        if importlib.util.find_spec("sensorthings") is None:
            pytest.fail("django-ogc-sensorthings is not installed: pip install -e '.[test]'")
        if not self.db.exists():
            migrated(self.db)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "django", "runserver", "--noreload", "--skip-checks",
             f"127.0.0.1:{self.port}"],
            env=self._env(), cwd=ROOT, stdout=self.log.open("ab"), stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            with contextlib.suppress(OSError):
                if self.get("/")[0] == 200:
                    return
            time.sleep(0.1)
        self.stop()
        pytest.fail(f"SensorThings test server did not answer on port {self.port}:\n"
                    + self.log.read_text(errors="replace")[-3000:])  # fmt: skip

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def get(self, path: str) -> tuple[int, Any]:
        """GET a path under the service root (or an absolute URL), as JSON."""
        url = path if path.startswith("http") else self.url + path
        req = urllib.request.Request(url, headers={"Accept": "application/json", **self._headers()})
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode(errors="replace")

    def all(self, path: str) -> list[dict[str, Any]]:
        """Every entity of a collection, following `@iot.nextLink`."""
        out: list[dict[str, Any]] = []
        url: str | None = path
        while url is not None:
            status, doc = self.get(url)
            assert status == 200, (url, status, doc)
            out += doc["value"]
            url = doc.get("@iot.nextLink")
        return out
