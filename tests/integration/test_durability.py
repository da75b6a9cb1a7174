"""Durability against real parts: a real `street-gateway run` subprocess, a real Mosquitto for
the devices (and a second one as the city broker), a real VictoriaMetrics as the city store.

Devices publish `generic_json` messages with a millisecond device timestamp (QoS 1), so an
observation's store timestamp is the device's: a redelivered message or a re-sent outbox row
lands on the same series and timestamp, and the store overwrites it (idempotent).

`SG_OUTAGE_S` sets how long the store is stopped in the outage test (default 60 s, as the issue
asks; set it lower for a quick local run).
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import (
    Mosquitto,
    VictoriaMetrics,
    _spawn_mosquitto,
    free_port,
    require_binary,
    write_mosquitto_conf,
)

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
OUTAGE_S = float(os.environ.get("SG_OUTAGE_S", "60"))
SENSORS = ("aq-1", "aq-2", "aq-3")


# ---------------------------------------------------------------------------------- helpers
# (bench/bench_e2e.py imports these too)


def gateway_config(
    tmp: Path,
    *,
    broker_port: int,
    vm_url: str | None = None,
    city_port: int | None = None,
    file_sink: bool = False,
    sensors: tuple[str, ...] = SENSORS,
    outbox: str = "",
    gateway_id: str = "dur-test",
) -> Path:
    """One generic_json sensor per topic `sensors/<id>/json`, value at `v`, device time `ts` (ms)."""
    lines = [
        f"gateway: {{id: {gateway_id}, borough: camden, location: {{lat: 51.539, lon: -0.1426}}, "
        f"data_dir: '{tmp / 'data'}'}}",
        f"inputs: {{mqtt: {{host: 127.0.0.1, port: {broker_port}}}}}",
        "sensors:",
    ]
    for s in sensors:
        lines.append(
            f"  - {{id: {s}, driver: generic_json, mqtt: {{topic: sensors/{s}/json}}, options: "
            "{time_path: ts, time_format: ms, fields: [{path: v, property: pm2_5, unit: ug/m3}]}}"
        )
    lines.append("sinks:")
    if vm_url:
        lines.append(f"  influxdb: {{url: '{vm_url}', org: london, bucket: street, token: not-used}}")
    if city_port:
        lines.append(f"  mqtt: {{host: 127.0.0.1, port: {city_port}, tls: false}}")
    if file_sink:
        lines.append("  file: {path: observations.jsonl}")
    if outbox:
        lines.append(f"outbox: {outbox}")
    lines.append("ops: {http: null, log_level: warning}")
    path = tmp / "gateway.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


class Gateway:
    """`street-gateway run -c CONFIG` as a real process."""

    def __init__(self, config: Path, log: Path) -> None:
        self.config, self.log = config, log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        # the container's kernel reports "unsynchronised": trust the host-kept system clock, so
        # device timestamps pass the 5-minute plausibility check (gateway/ops/clock.py)
        env = {**os.environ, "PYTHONPATH": str(ROOT), "STREET_GATEWAY_CLOCK": "system"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "run", "-c", str(self.config)],
            cwd=ROOT, env=env, stdout=self.log.open("ab"), stderr=subprocess.STDOUT,
        )  # fmt: skip

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.terminate()
        try:
            return self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


@dataclass
class Publisher:
    """Publishes `n` messages per sensor at `rate` messages/s in total, QoS 1, in a thread.

    Message i of sensor s carries value i and device time start_ms + i * step_ms, so the
    expected series of every Datastream is known exactly. The device times all lie in the past
    (ending when publishing starts), as a real device's do however fast this one publishes: the
    gateway keeps a device time only up to 1 s ahead of its own clock."""

    port: int
    n: int
    rate: float
    sensors: tuple[str, ...] = SENSORS
    start_ms: int = -1  # default: n * step_ms before now
    step_ms: int = 10
    published: int = 0
    publish_times: dict[tuple[str, int], float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.start_ms < 0:
            self.start_ms = int(time.time() * 1000) - self.n * self.step_ms

    def expected(self, sensor: str) -> list[tuple[int, float]]:
        return [(self.start_ms + i * self.step_ms, float(i)) for i in range(self.n)]

    def run(self) -> None:
        import paho.mqtt.client as mqtt

        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"devices-{self.port}", clean_session=True)
        c.max_inflight_messages_set(1000)
        c.max_queued_messages_set(0)
        c.connect("127.0.0.1", self.port)
        c.loop_start()
        t0 = time.monotonic()
        infos = []
        k = 0
        for i in range(self.n):
            for s in self.sensors:
                due = t0 + k / self.rate
                k += 1
                lag = due - time.monotonic()
                if lag > 0:
                    time.sleep(lag)
                body = json.dumps({"ts": self.start_ms + i * self.step_ms, "v": i, "device": "x"})
                self.publish_times[(s, i)] = time.time()
                infos.append(c.publish(f"sensors/{s}/json", body, qos=1))
                self.published += 1
        for info in infos:
            info.wait_for_publish(30)
        c.loop_stop()
        c.disconnect()

    def start(self) -> threading.Thread:
        t = threading.Thread(target=self.run, daemon=True)
        t.start()
        return t


def precreate_session(port: int, gateway_id: str = "dur-test", sensors: tuple[str, ...] = SENSORS) -> None:
    """Create the gateway's persistent session (QoS 1 subscription) before devices publish, so
    nothing published before the gateway's first subscription is lost: what an installed
    gateway has after its first start."""
    import paho.mqtt.client as mqtt

    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"street-gateway-{gateway_id}-in",
                    clean_session=False)  # fmt: skip
    c.connect("127.0.0.1", port)
    c.loop_start()
    c.subscribe([(f"sensors/{s}/json", 1) for s in sensors])  # the gateway's exact topics
    time.sleep(0.3)
    c.loop_stop()
    c.disconnect()


def series_by_sensor(vm: VictoriaMetrics, points: int, timeout: float) -> dict[str, list[tuple[int, float]]]:
    series = vm.export_until('{__name__="pm2_5_value"}', points, timeout=timeout)
    out: dict[str, list[tuple[int, float]]] = {}
    for s in series:
        sensor = s["metric"]["sensor"]  # type: ignore[index]
        out.setdefault(sensor, []).extend(zip(s["timestamps"], s["values"], strict=True))  # type: ignore[arg-type]
    return {k: sorted(v) for k, v in out.items()}


def wait_until(cond, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.2)


def outbox_state(data_dir: Path) -> dict[str, int]:
    """Sink cursors and head, read from the outbox by a second connection (WAL allows it)."""
    db = sqlite3.connect(f"file:{data_dir / 'outbox.sqlite'}?mode=ro", uri=True, timeout=5)
    try:
        state = dict(db.execute("SELECT sink, seq FROM cursor").fetchall())
        row = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'obs'").fetchone()
        state["head"] = int(row[0]) if row else 0
        return state
    finally:
        db.close()


def delivered_everything(data_dir: Path, sinks: tuple[str, ...]) -> bool:
    try:
        st = outbox_state(data_dir)
    except sqlite3.Error:
        return False
    return st["head"] > 0 and all(st.get(s, -1) >= st["head"] for s in sinks)


def assert_exact(vm: VictoriaMetrics, pub: Publisher, timeout: float = 30) -> None:
    total = pub.n * len(pub.sensors)
    got = series_by_sensor(vm, total, timeout)
    for s in pub.sensors:
        want = pub.expected(s)
        have = got.get(s, [])
        missing = sorted(set(want) - set(have))
        extra = sorted(set(have) - set(want))
        assert not missing and not extra, (
            f"{s}: {len(have)} points stored, {len(want)} published; "
            f"missing {len(missing)} (first {missing[:3]}), extra {len(extra)} (first {extra[:3]})"
        )
        assert have == want, f"{s}: series differs from what was published"


@pytest.fixture
def city_broker(tmp_path: Path) -> Iterator[Mosquitto]:
    """A second Mosquitto: the city broker the MQTT sink publishes to."""
    binary = require_binary("mosquitto", "mosquitto")
    port = free_port()
    d = tmp_path / "city"
    d.mkdir()
    conf = write_mosquitto_conf(d, port)
    log = d / "mosquitto.log"
    broker = Mosquitto(port, _spawn_mosquitto(binary, conf, port, log), conf, binary, log)
    try:
        yield broker
    finally:
        broker.stop()


# ---------------------------------------------------------------------------------- tests


@pytest.mark.slow
def test_store_outage_loses_nothing_and_keeps_order_per_datastream(
    tmp_path: Path, mosquitto: Mosquitto, victoria: VictoriaMetrics
) -> None:
    """The store stopped for SG_OUTAGE_S (default 60 s) mid-stream, then restarted: every
    observation arrives, value for value; the file sink shows the per-Datastream order."""
    rate = 30.0  # messages/s over all sensors
    n = int((OUTAGE_S + 8) * rate / len(SENSORS))
    precreate_session(mosquitto.port)
    cfg = gateway_config(tmp_path, broker_port=mosquitto.port, vm_url=victoria.url, file_sink=True)
    gw = Gateway(cfg, tmp_path / "gateway.log")
    gw.start()
    pub = Publisher(mosquitto.port, n, rate)
    try:
        wait_until(lambda: (tmp_path / "data" / "outbox.sqlite").exists(), 30, "gateway start")
        thread = pub.start()
        time.sleep(3)
        victoria.stop()
        time.sleep(OUTAGE_S)
        victoria.start()
        thread.join(OUTAGE_S + 60)
        assert pub.published == n * len(SENSORS)
        # the sink runner backs off up to 60 s while the store is down: allow for one full period
        wait_until(lambda: delivered_everything(tmp_path / "data", ("influxdb", "file")), 120,
                   "the backlog to reach the store")  # fmt: skip
        assert_exact(victoria, pub)
    finally:
        assert gw.stop() == 0, (tmp_path / "gateway.log").read_text()[-2000:]
    # order: the file sink writes rows in outbox order; per Datastream, time strictly increases
    per_ds: dict[int, list[str]] = {}
    for line in (tmp_path / "data" / "observations.jsonl").read_text().splitlines():
        o = json.loads(line)
        per_ds.setdefault(o["Datastream"]["@iot.id"], []).append(o["phenomenonTime"])
    assert len(per_ds) == len(SENSORS)
    for times in per_ds.values():
        assert len(times) == n and times == sorted(set(times))


@pytest.mark.slow
def test_sigkill_mid_stream_three_times_loses_nothing_and_duplicates_overwrite(
    tmp_path: Path, mosquitto: Mosquitto, victoria: VictoriaMetrics
) -> None:
    rate = 300.0
    n = 1500  # 4500 messages over ~15 s
    precreate_session(mosquitto.port)
    cfg = gateway_config(tmp_path, broker_port=mosquitto.port, vm_url=victoria.url)
    gw = Gateway(cfg, tmp_path / "gateway.log")
    gw.start()
    wait_until(lambda: (tmp_path / "data" / "outbox.sqlite").exists(), 30, "gateway start")
    pub = Publisher(mosquitto.port, n, rate)
    thread = pub.start()
    kills = 0
    try:
        for at in (0.25, 0.5, 0.75):
            wait_until(lambda at=at: pub.published >= at * n * len(SENSORS), 60, "publisher progress")
            gw.kill()
            kills += 1
            time.sleep(0.3)
            gw.start()
        thread.join(60)
        assert pub.published == n * len(SENSORS)
        wait_until(lambda: delivered_everything(tmp_path / "data", ("influxdb",)), 90, "delivery")
        assert_exact(victoria, pub)
        st = outbox_state(tmp_path / "data")
        # every message was committed at least once; redelivered ones were committed again
        assert st["head"] >= n * len(SENSORS)
    finally:
        assert gw.stop() == 0, (tmp_path / "gateway.log").read_text()[-2000:]
    assert kills == 3
    print(f"outbox rows committed {st['head']} for {n * len(SENSORS)} published (duplicates: "
          f"{st['head'] - n * len(SENSORS)})")  # fmt: skip


@dataclass
class Subscriber:
    """The Datastore's consumer: persistent session, QoS 1, counts unique observations."""

    port: int
    client_id: str = "datastore-consumer"
    seen: dict[tuple[int, str], object] = field(default_factory=dict)
    messages: int = 0

    def start(self) -> None:
        import paho.mqtt.client as mqtt

        self.client = c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id,
                                      clean_session=False)  # fmt: skip
        c.reconnect_delay_set(0.2, 1)

        def on_connect(client, userdata, flags, reason, props):  # type: ignore[no-untyped-def]
            # `Datastreams(+)` is not a valid MQTT filter ("+" must fill a whole level)
            client.subscribe("v1.1/+/Observations", qos=1)

        def on_message(client, userdata, msg):  # type: ignore[no-untyped-def]
            o = json.loads(msg.payload)
            self.messages += 1
            self.seen[(o["Datastream"]["@iot.id"], o["phenomenonTime"])] = o["result"]

        c.on_connect, c.on_message = on_connect, on_message
        c.connect("127.0.0.1", self.port)
        c.loop_start()
        wait_until(lambda: c.is_connected(), 10, "consumer connection")
        time.sleep(0.3)

    def stop(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.mark.slow
def test_mqtt_sink_loses_nothing_when_the_city_broker_restarts(
    tmp_path: Path, mosquitto: Mosquitto, city_broker: Mosquitto
) -> None:
    rate, n = 300.0, 1000  # 3000 observations over ~10 s
    precreate_session(mosquitto.port)
    consumer = Subscriber(city_broker.port)
    consumer.start()
    cfg = gateway_config(tmp_path, broker_port=mosquitto.port, city_port=city_broker.port)
    gw = Gateway(cfg, tmp_path / "gateway.log")
    gw.start()
    pub = Publisher(mosquitto.port, n, rate)
    try:
        thread = pub.start()
        wait_until(lambda: len(consumer.seen) >= 600, 60, "observations at the city broker")
        city_broker.stop()
        time.sleep(3)
        city_broker.start()
        thread.join(60)
        total = n * len(SENSORS)
        assert pub.published == total
        wait_until(lambda: len(consumer.seen) >= total, 90,
                   f"all {total} observations at the consumer (have {len(consumer.seen)})")  # fmt: skip
        # values: every (Datastream, time) carries the published value
        assert sorted(set(consumer.seen.values())) == [float(i) for i in range(n)] or sorted(
            set(consumer.seen.values())) == list(range(n))  # fmt: skip
        assert len(consumer.seen) == total
    finally:
        consumer.stop()
        assert gw.stop() == 0, (tmp_path / "gateway.log").read_text()[-2000:]
    print(f"city broker: {consumer.messages} messages for {total} unique observations "
          f"({consumer.messages - total} duplicates, at-least-once)")  # fmt: skip


def metric_values(port: int, name: str) -> dict[str, float]:
    import urllib.request

    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith(name):
            key, _, value = line.rpartition(" ")
            out[key] = float(value)
    return out


@pytest.mark.slow
def test_outbox_bound_drops_oldest_counts_them_and_delivers_the_newest(
    tmp_path: Path, mosquitto: Mosquitto, victoria: VictoriaMetrics
) -> None:
    """Store down, outbox bounded to 32 KiB: the oldest rows go, counted in the drops table and
    `gateway_outbox_dropped_total{reason="max_bytes"}`; when the store is back, the newest
    observations arrive and stored + dropped = published."""
    victoria.stop()
    ops_port = free_port()
    precreate_session(mosquitto.port)
    cfg = gateway_config(tmp_path, broker_port=mosquitto.port, vm_url=victoria.url,
                         outbox="{max_bytes: 32KiB}")  # fmt: skip
    cfg.write_text(cfg.read_text().replace("ops: {http: null", f"ops: {{http: '127.0.0.1:{ops_port}'"))
    gw = Gateway(cfg, tmp_path / "gateway.log")
    gw.start()
    pub = Publisher(mosquitto.port, 400, 1000.0)
    total = pub.n * len(SENSORS)
    try:
        pub.run()

        def dropped() -> float:
            try:
                return sum(metric_values(ops_port, "gateway_outbox_dropped_total").values())
            except OSError:
                return 0.0

        wait_until(lambda: dropped() > 0, 30, "the bound to drop rows")
        wait_until(lambda: outbox_state(tmp_path / "data")["head"] >= total, 30, "every message committed")
        time.sleep(6)  # one more housekeeping pass, after the last commit
        metrics = metric_values(ops_port, "gateway_outbox_dropped_total")
        assert list(metrics) == ['gateway_outbox_dropped_total{reason="max_bytes",sink="influxdb"}']
        db = sqlite3.connect(f"file:{tmp_path / 'data' / 'outbox.sqlite'}?mode=ro", uri=True)
        drops = db.execute("SELECT reason, SUM(n) FROM sink_drops GROUP BY reason").fetchall()
        kept = db.execute("SELECT COUNT(*), SUM(LENGTH(body)) FROM obs").fetchone()
        db.close()
        assert drops[0][0] == "max_bytes" and drops[0][1] == metrics[next(iter(metrics))]
        n_dropped = int(drops[0][1])
        assert kept[0] + n_dropped == total and kept[0] > 0
        victoria.start()
        wait_until(lambda: delivered_everything(tmp_path / "data", ("influxdb",)), 120, "delivery")
        got = series_by_sensor(victoria, kept[0], 30)
        stored = sum(len(v) for v in got.values())
        assert stored + n_dropped == total
        for s in SENSORS:  # what survived is the newest of each Datastream, with no gap
            have = got.get(s, [])
            assert have == pub.expected(s)[len(pub.expected(s)) - len(have):]
    finally:
        assert gw.stop() == 0, (tmp_path / "gateway.log").read_text()[-2000:]
    print(f"bound: {n_dropped} of {total} dropped (oldest first), {stored} delivered")


def test_influx_sink_cached_encoding_matches_the_reference_encoder() -> None:
    """The per-Datastream prefix cache and the one-pass guard scan change speed, not bytes."""
    from gateway.model import Observation
    from gateway.outbox import Row
    from gateway.privacy.guard import EgressGuard
    from gateway.sinks.influxdb import InfluxSink
    from gateway.sinks.influxdb import Settings as InfluxConfig
    from gateway.standards import lineprotocol

    tags = {"gateway": "dur test", "borough": "camden"}
    results = [0.0, 12.5, 7, True, False, "ok", 'we"ird, =x', None, -1e-9, 1e300]
    obs = [
        Observation(1000 + i % 4, f"s {i % 3}", ["pm2_5", "ev status", "co,2"][i % 3], 1.7e9 + i / 7,
                    1.7e9 + i, results[i % len(results)], parameters={"samples": i} if i % 5 == 0 else {})
        for i in range(60)
    ] + [Observation(1, "anpr", "plate", 1.7e9, 1.7e9, "AB12 CDE")]  # fmt: skip
    guard = EgressGuard()
    sink = InfluxSink(InfluxConfig(url="http://127.0.0.1:9", org="o", bucket="b"), site_tags=tags, guard=guard)
    rows = [Row(i + 1, o.datastream_id, o.phenomenon_time, o.to_record()) for i, o in enumerate(obs)]
    lines, blocked = sink.encode(rows)
    want = [(r.seq, lineprotocol.encode(o, tags)) for r, o in zip(rows, obs, strict=True)]
    assert lines == want[:-1] and blocked == 1
    assert guard.blocked == {"vehicle_registration": 1}
    assert sink.encode(rows[:-1]) == (want[:-1], 0)  # second time: from the prefix cache
