"""A large MQTT backlog is read with flat memory, and nothing of it is lost (issue 19).

Mosquitto 2.0.11 sends a resumed persistent session far more unacknowledged messages than its
in-flight limit (bench/bench_broker_inflight.py), so acknowledging after commit does not bound
what the gateway holds; the MQTT source stops reading the socket while 256 received messages
wait (gateway/mqttconn.py). Here a real `street-gateway run` process and a real Mosquitto: the
gateway's peak resident memory after a start with 200 queued messages and after a start with
60,000 queued messages; the second is about the first, the source reports that it paused, and
every message arrives in the file store exactly once.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from pathlib import Path

import psutil
import pytest

from tests.conftest import Mosquitto, free_port, whole_lines
from tests.integration.test_durability import Gateway

pytestmark = pytest.mark.integration

SENSORS = ("bk-1", "bk-2", "bk-3", "bk-4")
BACKLOG = 60_000
FLAT_MIB = 12  # allowed growth of the peak (without the bound it grew 29 MiB here)


def config(tmp: Path, broker: int, http: int) -> Path:
    lines = [
        f"gateway: {{id: backlog-gw, borough: camden, location: {{lat: 51.539, lon: -0.1426}}, data_dir: '{tmp / 'data'}'}}",
        f"inputs: {{mqtt: {{host: 127.0.0.1, port: {broker}}}}}",
        "sensors:",
        *(f"  - {{id: {s}, driver: generic_json, mqtt: {{topic: backlog/{s}/json}}, options: "
          "{fields: [{path: v, property: pm2_5, unit: ug/m3}]}}" for s in SENSORS),
        "sinks: {file: {path: observations.jsonl}}",
        f"ops: {{http: '127.0.0.1:{http}', log_level: warning}}",
    ]  # fmt: skip
    path = tmp / "gateway.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def publish(port: int, first: int, n: int) -> None:
    """`n` QoS 1 messages round-robin over the sensors, values first..first+n-1, all acknowledged
    by the broker before returning."""
    import paho.mqtt.client as mqtt

    done = threading.Semaphore(0)
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="backlog-pub", clean_session=True)
    c.max_inflight_messages_set(500)
    c.max_queued_messages_set(0)
    c.on_publish = lambda *a: done.release()
    c.connect("127.0.0.1", port)
    c.loop_start()
    try:
        for i in range(first, first + n):
            c.publish(f"backlog/{SENSORS[i % len(SENSORS)]}/json", json.dumps({"v": i}), qos=1)
        for _ in range(n):
            assert done.acquire(timeout=60), "the broker stopped acknowledging"
    finally:
        c.loop_stop()
        c.disconnect()


def delivered(tmp: Path) -> list[float]:
    return [json.loads(line)["result"] for line in whole_lines(tmp / "data" / "observations.jsonl")]


def metric(http: int, name: str) -> float:
    body = urllib.request.urlopen(f"http://127.0.0.1:{http}/metrics", timeout=5).read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in body.splitlines() if line.startswith(name))


def run_until(gw: Gateway, tmp: Path, total: int, http: int) -> tuple[int, float]:
    """Start the gateway, wait until `total` observations are in the file store; (its peak RSS
    in bytes, the source's read pauses)."""
    gw.start()
    assert gw.proc is not None
    proc = psutil.Process(gw.proc.pid)
    last, still = -1, time.monotonic()
    while (n := len(delivered(tmp))) < total:
        assert gw.proc.poll() is None, (tmp / "gateway.log").read_text()[-2000:]
        if n != last:
            last, still = n, time.monotonic()
        assert time.monotonic() - still < 60, f"stalled at {n} of {total}"
        time.sleep(0.2)
    pauses = metric(http, "gateway_mqtt_read_pauses_total")
    with open(f"/proc/{proc.pid}/status") as f:
        hwm = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))
    assert gw.stop() == 0, (tmp / "gateway.log").read_text()[-2000:]
    return hwm, pauses


def test_a_large_backlog_is_read_with_flat_memory_and_nothing_lost(tmp_path: Path, mosquitto: Mosquitto) -> None:
    http = free_port()
    gw = Gateway(config(tmp_path, mosquitto.port, http), tmp_path / "gateway.log")
    # the first start makes the persistent session (as an installed gateway's first start does);
    # from then on the broker queues for it while it is down
    gw.start()
    deadline = time.monotonic() + 30
    while True:
        try:
            if metric(http, "gateway_mqtt_connected") == 1:
                break
        except OSError:
            pass
        assert time.monotonic() < deadline, (tmp_path / "gateway.log").read_text()[-2000:]
        time.sleep(0.2)
    assert gw.stop() == 0

    publish(mosquitto.port, 0, 200)
    small_hwm, _ = run_until(gw, tmp_path, 200, http)

    publish(mosquitto.port, 200, BACKLOG)
    big_hwm, pauses = run_until(gw, tmp_path, 200 + BACKLOG, http)

    grew = (big_hwm - small_hwm) / 2**20
    print(f"peak RSS: {small_hwm / 2**20:.1f} MiB after 200 queued, {big_hwm / 2**20:.1f} MiB after "
          f"{BACKLOG} queued (+{grew:.1f}); {pauses:.0f} read pauses")  # fmt: skip
    got = delivered(tmp_path)
    assert sorted(got) == [float(i) for i in range(200 + BACKLOG)]  # all of them, once each
    assert grew < FLAT_MIB
    assert pauses > 0  # the source did stop reading: the broker held the rest
