"""Real services for integration tests: VictoriaMetrics and Mosquitto on free ports.

A missing service binary fails the test loudly with the apt command to install it
(SG_ALLOW_MISSING=1 makes it a skip, for a partial local run only). Nothing is mocked.
Ports come from a slice per pytest-xdist worker, so parallel workers never collide.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import pytest

from tests.integration.sta_server import StaServer

DATA = Path(__file__).parent / "data"


def _port_range() -> range:
    """Ports this test process may hand out: below Linux's ephemeral range (32768+), so no
    client connection takes one between our check and the service's bind, and one slice per
    pytest-xdist worker, so two workers never pick the same port."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    index = int(worker[2:]) if worker[2:].isdigit() else 0
    start = 10_000 + (index % 11) * 2_000
    return range(start, start + 2_000)


_ports_given: set[int] = set()


def whole_lines(path: Path) -> list[str]:
    """The complete lines, so far, of a JSON Lines file a running gateway writes. A reader can
    see a batch's write part-done, so what follows the last newline is not a line yet (it may
    even end inside a UTF-8 character)."""
    if not path.exists():
        return []
    return [line.decode() for line in path.read_bytes().split(b"\n")[:-1]]


def free_port() -> int:
    """A loopback port nothing listens on, not handed out before in this process."""
    candidates = [p for p in _port_range() if p not in _ports_given]
    random.shuffle(candidates)
    for port in candidates:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _ports_given.add(port)
        return port
    raise RuntimeError(f"no free port left in {_port_range()}")


def missing(msg: str) -> NoReturn:
    """A tool or service the tests need is missing: fail loudly (scripts/test installs all of
    them). SG_ALLOW_MISSING=1 turns this into a skip for a partial local run."""
    if os.environ.get("SG_ALLOW_MISSING") == "1":
        pytest.skip(msg)
    pytest.fail(msg)


def require_binary(name: str, package: str, extra_dirs: tuple[str, ...] = ("/usr/sbin",)) -> str:
    path = shutil.which(name)
    if path is None:
        for d in extra_dirs:
            candidate = os.path.join(d, name)
            if os.access(candidate, os.X_OK):
                path = candidate
                break
    if path is None:
        missing(f"{name} not found: install it with `apt-get install -y {package}` (scripts/test does)")
    return path


def wait_port(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listening on port {port} after {timeout} s")


@dataclass
class VictoriaMetrics:
    port: int
    proc: subprocess.Popen[bytes]
    data: Path
    binary: str

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def flush(self) -> None:
        urllib.request.urlopen(urllib.request.Request(f"{self.url}/internal/force_flush"), timeout=10).read()

    def export(self, match: str = '{__name__!=""}') -> list[dict[str, object]]:
        """Every series matching, as VictoriaMetrics' JSON-lines export (any time range)."""
        self.flush()
        q = urllib.parse.urlencode({"match[]": match, "start": "0", "end": str(int(time.time()) + 86400 * 365)})
        body = urllib.request.urlopen(f"{self.url}/api/v1/export?{q}", timeout=10).read()
        return [json.loads(line) for line in body.splitlines() if line.strip()]

    def export_until(self, match: str, points: int, timeout: float = 15.0) -> list[dict[str, object]]:
        """Export, polling until at least `points` points are visible: ingestion is asynchronous
        in VictoriaMetrics even after a forced flush."""
        deadline = time.monotonic() + timeout
        while True:
            series = self.export(match)
            n = sum(len(s["values"]) for s in series)  # type: ignore[arg-type]
            if n >= points or time.monotonic() > deadline:
                return series
            time.sleep(0.2)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def start(self) -> None:
        """(Re)start on the same port and data, e.g. after an outage test."""
        self.proc = _spawn_vm(self.binary, self.port, self.data)


def _spawn_vm(binary: str, port: int, data: Path) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [binary, f"-httpListenAddr=127.0.0.1:{port}", f"-storageDataPath={data}",
         "-retentionPeriod=100y", "-search.latencyOffset=0s", "-loggerLevel=ERROR",
         # InfluxDB semantics: the same series and timestamp is one point (a replayed write
         # overwrites). VictoriaMetrics keeps duplicates unless told to deduplicate.
         "-dedup.minScrapeInterval=1ms"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    wait_port(port)
    return proc


@pytest.fixture
def victoria(tmp_path: Path) -> Iterator[VictoriaMetrics]:
    binary = require_binary("victoria-metrics", "victoria-metrics")
    port = free_port()
    data = tmp_path / "vm-data"
    vm = VictoriaMetrics(port, _spawn_vm(binary, port, data), data, binary)
    try:
        yield vm
    finally:
        vm.stop()


@dataclass
class Mosquitto:
    port: int
    proc: subprocess.Popen[bytes]
    conf: Path
    binary: str
    log: Path

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def start(self) -> None:
        self.proc = _spawn_mosquitto(self.binary, self.conf, self.port, self.log)


def _spawn_mosquitto(binary: str, conf: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([binary, "-c", str(conf)], stdout=log.open("ab"), stderr=subprocess.STDOUT)
    wait_port(port)
    return proc


def write_mosquitto_conf(tmp: Path, port: int, extra: str = "") -> Path:
    """Persistence on, and max_queued_messages raised: Mosquitto's default of 1000 per client
    silently drops a persistent session's backlog while the gateway is restarting."""
    conf = tmp / "mosquitto.conf"
    (tmp / "mosq-data").mkdir(exist_ok=True)
    conf.write_text(
        f"listener {port} 127.0.0.1\n"
        "allow_anonymous true\n"
        "persistence true\n"
        f"persistence_location {tmp / 'mosq-data'}/\n"
        "autosave_interval 1\n"
        "max_queued_messages 1000000\n"
        "max_inflight_messages 100\n"
        "log_type error\nlog_type warning\n"
        # as root Mosquitto drops to user `mosquitto`, which cannot write persistence in a
        # root-owned temp dir: stay root so sessions really survive a broker restart
        + ("user root\n" if os.geteuid() == 0 else "")
        + extra
    )
    return conf


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    binary = require_binary("mosquitto", "mosquitto")
    port = free_port()
    d = tmp_path / "mosq"
    d.mkdir()
    conf = write_mosquitto_conf(d, port)
    log = d / "mosquitto.log"
    broker = Mosquitto(port, _spawn_mosquitto(binary, conf, port, log), conf, binary, log)
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def sta_server(tmp_path: Path) -> Iterator[StaServer]:
    """A real SensorThings API 1.1 server (django-ogc-sensorthings) on a free port with its own
    SQLite database; `stop()`/`start()` restart it on the same port and data."""
    d = tmp_path / "sta"
    d.mkdir()
    server = StaServer(free_port(), d / "sta.sqlite3", d / "sta.log")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked `slow` first: with pytest-xdist a long test collected last would run alone
    at the end while the other workers sit idle."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
