"""Ops surface against a real gateway: /metrics and /status.json agree with what the gateway did
(simulated PMS5003 on a pty, file sink), unplug/replug shows up, SIGHUP reloads without losing
an observation, SIGTERM exits 0, and systemd's notify protocol (READY, WATCHDOG) is spoken."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from firmware_bridge.drivers import SERIAL_DRIVERS
from firmware_bridge.drivers.pms5003 import PUBLISHED
from gateway.config import parse_config
from gateway.model import stable_id
from gateway.ops.clock import GatewayClock
from gateway.pipeline import Pipeline
from gateway.service import serve
from gateway.simulate.serial_pty import PtyDevice
from tests.conftest import free_port

pytestmark = pytest.mark.integration

GATEWAY = "camden-lc-0423"
FRAME_PERIOD = 0.1


# ---------------------------------------------------------------- helpers (also used by the
# browser test)


def gateway_config(data: Path, port: int, sensors: dict[str, Path]) -> str:
    lines = "\n".join(
        f"  - {{id: {sid}, driver: pms5003, serial: {{port: '{link}'}}}}"
        for sid, link in sensors.items()
    )
    return f"""
gateway: {{id: {GATEWAY}, borough: camden, location: {{lat: 51.539, lon: -0.1426}}, data_dir: '{data}'}}
sensors:
{lines}
sinks:
  file: {{path: observations.jsonl}}
ops: {{http: '127.0.0.1:{port}'}}
"""


_SAMPLE = re.compile(
    r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{((?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*",?)*)\})? '
    r"(NaN|[+-]Inf|[-+]?[0-9.eE+-]+)( -?[0-9]+)?$"
)
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_prometheus(text: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """A strict parser for the Prometheus text format 0.0.4: every line must be a HELP, a TYPE
    or a sample of a metric whose TYPE came first; no duplicates; newline at the end."""
    assert text.endswith("\n"), "exposition must end with a newline"
    types: dict[str, str] = {}
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for line in text.splitlines():
        if not line:
            continue
        if line.startswith("# HELP "):
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            assert kind in ("counter", "gauge", "untyped", "summary", "histogram"), line
            assert name not in types, f"TYPE twice for {name}"
            if name.endswith("_total"):
                assert kind == "counter", f"{name}: a _total metric must be a counter"
            types[name] = kind
            out[name] = {}
            continue
        assert not line.startswith("#"), f"stray comment: {line!r}"
        m = _SAMPLE.match(line)
        assert m, f"not a valid sample line: {line!r}"
        name = m.group(1)
        assert name in types, f"sample before TYPE: {line!r}"
        labels = tuple(sorted(_LABEL.findall(m.group(3) or "")))
        assert labels not in out[name], f"duplicate sample: {line!r}"
        out[name][labels] = float(m.group(4))
    for name, kind in types.items():
        if kind == "counter":
            assert all(v >= 0 for v in out[name].values()), f"negative counter {name}"
    return out


def http_get(port: int, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def metrics(port: int) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    return parse_prometheus(http_get(port, "/metrics")[1].decode())


def value(
    m: dict[str, dict[tuple[tuple[str, str], ...], float]], name: str, **labels: str
) -> float:
    return m.get(name, {}).get(tuple(sorted(labels.items())), 0.0)


def status(port: int) -> dict[str, Any]:
    return json.loads(http_get(port, "/status.json")[1])  # type: ignore[no-any-return]


def pause(sim: PtyDevice) -> None:
    """Stop the simulated sensor emitting (a port reopen wakes it again after its spin-up)."""
    sim.device._next = float("inf")  # type: ignore[attr-defined]


def resume(sim: PtyDevice) -> None:
    sim.device._next = 0.0  # type: ignore[attr-defined]


def file_series(data: Path, sensor: str, prop: str = "pm2_5") -> list[float]:
    """Results of one Datastream in the file sink, in phenomenonTime order."""
    ds = stable_id("datastream", GATEWAY, sensor, prop)
    rows = []
    for line in (data / "observations.jsonl").read_text().splitlines():
        o = json.loads(line)
        if o["Datastream"]["@iot.id"] == ds:
            rows.append((o["phenomenonTime"], o["result"]))
    return [r for _, r in sorted(rows)]


async def wait_for(
    cond: Callable[[], bool], timeout: float = 30.0, what: str = "condition"
) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not cond():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def scrape_until(port: int, cond: Callable[[dict[str, dict[tuple[tuple[str, str], ...], float]]], bool],
                       timeout: float = 30.0, what: str = "condition") -> None:  # fmt: skip
    """Poll /metrics from a thread (the gateway's loop must keep running) until `cond` holds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not cond(await asyncio.to_thread(metrics, port)):
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def wait_sync(cond: Callable[[], bool], timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if cond():
                return
        except (OSError, ValueError, KeyError):
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def trusting_clock() -> GatewayClock:
    """The in-process gateway trusts this machine's clock (test VMs often report unsynced)."""
    return GatewayClock(probe=lambda: True)


# ---------------------------------------------------------------- in-process


def test_metrics_and_status_match_what_the_gateway_did(tmp_path: Path) -> None:
    port = free_port()
    data = tmp_path / "data"
    north = tmp_path / "usb-pm-north"
    absent = tmp_path / "usb-pm-south-not-plugged"
    cfg = parse_config(
        gateway_config(data, port, {"pm-north": north, "pm-south": absent}), "t.yaml", {}
    )

    async def scenario() -> None:
        sim = PtyDevice(SERIAL_DRIVERS["pms5003"], north, seed=11)
        sim.device.period = FRAME_PERIOD  # type: ignore[attr-defined]
        sim.plug()
        sim.start()
        stop = asyncio.Event()
        holder: dict[str, Pipeline] = {}
        task = asyncio.create_task(
            serve(cfg, until=stop, on_started=lambda p: holder.update(p=p), clock=trusting_clock())
        )
        await wait_for(lambda: "p" in holder, what="gateway started")
        p = holder["p"]
        frames_ok = p.metrics.counter("gateway_serial_frames_ok_total", "")

        async def settle() -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
            """Pause the sensor, let the gateway read, commit and deliver everything, scrape."""
            pause(sim)
            await wait_for(
                lambda: frames_ok.get(sensor="pm-north") == len(sim.delivered),
                what="every frame read",
            )
            await wait_for(
                lambda: (  # readings count before their commit: wait for the observations
                    p.stats.committed == len(sim.delivered) * len(PUBLISHED)
                    and p.stats.delivered.get("file", 0) == p.stats.committed
                ),
                what="delivery",
            )
            await p.refresh_outbox_metrics()
            return await asyncio.to_thread(metrics, port)

        await wait_for(lambda: len(sim.delivered) >= 5, what="frames")
        m = await settle()
        sent = len(sim.delivered)
        assert value(m, "gateway_serial_frames_ok_total", sensor="pm-north") == sent
        assert value(m, "gateway_readings_total", sensor="pm-north") == sent
        assert value(m, "gateway_serial_connected", sensor="pm-north") == 1
        assert value(m, "gateway_serial_connected", sensor="pm-south") == 0
        lines = (data / "observations.jsonl").read_text().splitlines()
        assert (
            value(m, "gateway_sink_delivered_total", sink="file")
            == len(lines)
            == sent * len(PUBLISHED)
        )
        assert value(m, "gateway_observations_committed_total") == len(lines)
        assert value(m, "gateway_sink_lag_observations", sink="file") == 0
        assert value(m, "gateway_outbox_oldest_pending_age_seconds") == 0
        assert value(m, "gateway_clock_synchronised") == 1
        assert value(m, "gateway_sensor_last_seen_timestamp_seconds", sensor="pm-north") > 1.7e9
        assert file_series(data, "pm-north") == [float(f["pm2_5"]) for f in sim.delivered]

        st = await asyncio.to_thread(status, port)
        rows = {s["id"]: s for s in st["sensors"]}
        last = sim.delivered[-1]
        assert rows["pm-north"]["fault"] is None
        assert rows["pm-north"]["values"] == {k: last[k] for k in PUBLISHED}
        assert "not open" in rows["pm-south"]["fault"]
        assert (
            st["sinks"]["file"]["delivered"] == len(lines) and st["sinks"]["file"]["state"] == "ok"
        )
        assert st["clock"]["synchronised"] is True

        # unplug: the gauge drops and the status page names the fault
        await sim.stop()
        await scrape_until(
            port,
            lambda m: value(m, "gateway_serial_connected", sensor="pm-north") == 0,
            what="disconnect seen",
        )
        st = await asyncio.to_thread(status, port)
        assert "not open" in {s["id"]: s for s in st["sensors"]}["pm-north"]["fault"]
        # replug: a reconnect is counted and frames flow again
        sim.start()
        await scrape_until(
            port,
            lambda m: value(m, "gateway_serial_reconnects_total", sensor="pm-north") == 1,
            what="reconnect",
        )
        await wait_for(lambda: len(sim.delivered) >= sent + 3, what="frames after replug")
        m = await settle()
        assert value(m, "gateway_serial_connected", sensor="pm-north") == 1
        assert value(m, "gateway_serial_frames_ok_total", sensor="pm-north") == len(sim.delivered)
        lines = (data / "observations.jsonl").read_text().splitlines()
        assert (
            value(m, "gateway_sink_delivered_total", sink="file")
            == len(lines)
            == len(sim.delivered) * len(PUBLISHED)
        )
        assert file_series(data, "pm-north") == [float(f["pm2_5"]) for f in sim.delivered]

        stop.set()
        assert await asyncio.wait_for(task, 30) == 0
        await sim.stop()

    asyncio.run(scenario())


def test_healthz_readyz_and_unknown_paths(tmp_path: Path) -> None:
    port = free_port()
    cfg = parse_config(
        gateway_config(tmp_path / "d", port, {"pm-x": tmp_path / "absent"}), "t.yaml", {}
    )

    async def scenario() -> None:
        stop = asyncio.Event()
        started = asyncio.Event()
        task = asyncio.create_task(
            serve(cfg, until=stop, on_started=lambda p: started.set(), clock=trusting_clock())
        )
        await asyncio.wait_for(started.wait(), 30)
        assert await asyncio.to_thread(http_get, port, "/healthz") == (200, b"ok\n")
        assert (await asyncio.to_thread(http_get, port, "/readyz"))[0] == 200
        assert (await asyncio.to_thread(http_get, port, "/nope"))[0] == 404
        code, body = await asyncio.to_thread(http_get, port, "/")
        assert code == 200 and b'data-sensor="pm-x"' in body
        stop.set()
        assert await asyncio.wait_for(task, 30) == 0

    asyncio.run(scenario())


# ---------------------------------------------------------------- subprocess: signals, notify


class SimThread:
    """Simulated sensors on their own event loop, beside a gateway running as a subprocess."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.sims: list[PtyDevice] = []

    def add(self, link: Path, seed: int) -> PtyDevice:
        sim = PtyDevice(SERIAL_DRIVERS["pms5003"], link, seed=seed)
        sim.device.period = FRAME_PERIOD  # type: ignore[attr-defined]
        self.call(sim.plug)
        asyncio.run_coroutine_threadsafe(self._start(sim), self.loop).result(5)
        self.sims.append(sim)
        return sim

    async def _start(self, sim: PtyDevice) -> None:
        sim.start()

    def call(self, fn: Callable[[], Any]) -> Any:
        async def run() -> Any:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(5)

    def close(self) -> None:
        for sim in self.sims:
            asyncio.run_coroutine_threadsafe(sim.stop(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


class NotifySocket:
    """What systemd does for Type=notify: a datagram socket, named in NOTIFY_SOCKET."""

    def __init__(self) -> None:
        self.name = f"street-gateway-test-{os.getpid()}-{id(self)}"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + self.name)
        self.sock.settimeout(0.2)
        self.messages: list[str] = []
        self._stop = False
        self.thread = threading.Thread(target=self._recv, daemon=True)
        self.thread.start()

    @property
    def env(self) -> str:
        return "@" + self.name

    def _recv(self) -> None:
        while not self._stop:
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except TimeoutError:
                continue
            except OSError:
                return

    def count(self, line: str) -> int:
        return sum(line in m.split("\n") for m in self.messages)

    def close(self) -> None:
        self._stop = True
        self.thread.join(2)
        self.sock.close()


@pytest.fixture
def sims() -> Iterator[SimThread]:
    t = SimThread()
    try:
        yield t
    finally:
        t.close()


def test_sighup_reload_sigterm_and_sd_notify(tmp_path: Path, sims: SimThread) -> None:
    port = free_port()
    data = tmp_path / "data"
    links = {"pm-north": tmp_path / "usb-pm-north", "pm-south": tmp_path / "usb-pm-south"}
    north = sims.add(links["pm-north"], seed=1)
    south = sims.add(links["pm-south"], seed=2)
    conf = tmp_path / "gateway.yaml"
    conf.write_text(gateway_config(data, port, {"pm-north": links["pm-north"]}))
    notify = NotifySocket()
    # this machine's kernel may say "unsynchronised" while the host keeps time: trust it, or
    # provisional rows would wait for a sync (clock.max_hold) before reaching the file sink
    env = {**os.environ, "NOTIFY_SOCKET": notify.env, "WATCHDOG_USEC": "200000", "STREET_GATEWAY_CLOCK": "system"}
    env.pop("WATCHDOG_PID", None)
    log = (tmp_path / "gateway.log").open("wb")
    exe = Path(sys.executable).with_name("street-gateway")
    proc = subprocess.Popen(
        [str(exe), "run", "-c", str(conf)], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        wait_sync(lambda: notify.count("READY=1") >= 1, what="READY=1")
        wait_sync(lambda: http_get(port, "/readyz")[0] == 200, what="/readyz")
        wait_sync(lambda: notify.count("WATCHDOG=1") >= 2, what="WATCHDOG=1")
        wait_sync(lambda: len(north.delivered) >= 5, what="frames before reload")

        # everything the sensor sent so far is read and committed; then reload with a new sensor
        sims.call(lambda: pause(north))
        wait_sync(lambda: value(metrics(port), "gateway_serial_frames_ok_total", sensor="pm-north") == len(north.delivered),
                  what="frames read before reload")  # fmt: skip
        before = len(north.delivered)
        wait_sync(lambda: value(metrics(port), "gateway_readings_total", sensor="pm-north") == before,
                  what="readings committed before reload")  # fmt: skip
        conf.write_text(gateway_config(data, port, links))
        proc.send_signal(signal.SIGHUP)
        wait_sync(
            lambda: "pm-south" in {s["id"] for s in status(port)["sensors"]},
            what="new sensor in /status.json",
        )
        wait_sync(lambda: notify.count("READY=1") >= 2, what="READY=1 after reload")
        assert notify.count("RELOADING=1") == 1

        # both sensors deliver after the reload (the reopened north one wakes by itself)
        wait_sync(
            lambda: len(north.delivered) >= before + 3 and len(south.delivered) >= 3,
            what="frames after reload",
        )
        sims.call(lambda: (pause(north), pause(south)))

        def all_read() -> bool:
            m = metrics(port)  # counters restarted with the reloaded pipeline
            return (value(m, "gateway_serial_frames_ok_total", sensor="pm-north") == len(north.delivered) - before
                    and value(m, "gateway_serial_frames_ok_total", sensor="pm-south") == len(south.delivered))  # fmt: skip

        wait_sync(all_read, what="frames read after reload")

        def south_shows_last_frame() -> bool:  # frames are counted on read, values on commit
            st = status(port)
            values = {s["id"]: s for s in st["sensors"]}["pm-south"]["values"]
            return bool(values.get("pm2_5") == south.delivered[-1]["pm2_5"])

        wait_sync(south_shows_last_frame, what="status page shows pm-south's last value")

        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(30)
        print(f"SIGTERM to exit: {time.monotonic() - started:.2f} s")
        assert rc == 0
        assert notify.count("STOPPING=1") == 1
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
        notify.close()

    # every observation committed before and after the reload reached the file sink
    assert file_series(data, "pm-north") == [float(f["pm2_5"]) for f in north.delivered]
    assert file_series(data, "pm-south") == [float(f["pm2_5"]) for f in south.delivered]
    lines = (data / "observations.jsonl").read_text().splitlines()
    assert len(lines) == (len(north.delivered) + len(south.delivered)) * len(PUBLISHED)
    logtext = (tmp_path / "gateway.log").read_text()
    assert "config reloaded" in logtext


def raw_get(port: int, path: str, headers: dict[str, str]) -> int:
    """One HTTP/1.1 request with exactly these headers (urllib always adds its own Host)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        s.sendall(f"GET {path} HTTP/1.1\r\n{head}\r\n".encode())
        reply = b""
        while chunk := s.recv(65536):
            reply += chunk
    return int(reply.split(b" ", 2)[1])


def test_ops_refuses_a_foreign_host_and_requires_the_bearer_token(tmp_path: Path) -> None:
    """At run: DNS rebinding (a foreign Host) gets 421; with ops.token_file every path but
    /healthz needs `Authorization: Bearer`, compared in constant time."""
    port = free_port()
    (tmp_path / "ops-token").write_text("t0ken-for-ops\n")
    text = gateway_config(tmp_path / "d", port, {"pm-x": tmp_path / "absent"}).replace(
        f"ops: {{http: '127.0.0.1:{port}'}}",
        f"ops: {{http: '127.0.0.1:{port}', token_file: '{tmp_path / 'ops-token'}', allowed_hosts: [sg-camden-0142.local]}}",
    )
    cfg = parse_config(text, "t.yaml", {})
    ok = {"Authorization": "Bearer t0ken-for-ops"}

    def requests() -> dict[str, int]:
        here = f"127.0.0.1:{port}"
        return {
            "foreign host": raw_get(port, "/metrics", {"Host": f"attacker.example:{port}", **ok}),
            "no host": raw_get(port, "/metrics", ok),
            "no token": raw_get(port, "/metrics", {"Host": here}),
            "wrong token": raw_get(port, "/status.json", {"Host": here, "Authorization": "Bearer nope"}),
            "basic auth": raw_get(port, "/", {"Host": here, "Authorization": "Basic dDBrZW4="}),
            "healthz": raw_get(port, "/healthz", {"Host": here}),
            "metrics": raw_get(port, "/metrics", {"Host": here, **ok}),
            "localhost": raw_get(port, "/status.json", {"Host": "localhost", **ok}),
            "ipv6 loopback": raw_get(port, "/", {"Host": f"[::1]:{port}", **ok}),
            "allowed name": raw_get(port, "/", {"Host": "SG-Camden-0142.local:9108", **ok}),
        }

    async def scenario() -> dict[str, int]:
        stop = asyncio.Event()
        started = asyncio.Event()
        task = asyncio.create_task(
            serve(cfg, until=stop, on_started=lambda p: started.set(), clock=trusting_clock())
        )
        await asyncio.wait_for(started.wait(), 30)
        got = await asyncio.to_thread(requests)
        stop.set()
        assert await asyncio.wait_for(task, 30) == 0
        return got

    assert asyncio.run(scenario()) == {
        "foreign host": 421, "no host": 421, "no token": 401, "wrong token": 401, "basic auth": 401,
        "healthz": 200, "metrics": 200, "localhost": 200, "ipv6 loopback": 200, "allowed name": 200,
    }  # fmt: skip
