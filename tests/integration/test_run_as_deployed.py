"""`check` and `run` under the Python settings of the shipped systemd unit (issue 19: peak RSS).

deploy/raspberrypi/street-gateway.service runs the service with PYTHONOPTIMIZE=2 (no docstrings,
no assert statements) and PYTHONNODEBUGRANGES=1; its ExecStartPre runs `check` the same way.
The variables are read from the unit file itself. The bytecode prefix is an empty folder of the
test's (nothing compiled beforehand, nothing written: the unit's PYTHONDONTWRITEBYTECODE=1), so
every module is compiled under these settings as the gateway imports it.

Real parts: Mosquitto (devices and, as the city broker, the MQTT sink), VictoriaMetrics (the
InfluxDB sink), the file sink; every sink configured. QoS 1 readings in; each is stored exactly
as sent, in all three.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import Mosquitto, VictoriaMetrics, whole_lines
from tests.integration.test_durability import (
    SENSORS,
    Publisher,
    gateway_config,
    precreate_session,
    series_by_sensor,
)

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "deploy" / "raspberrypi" / "street-gateway.service"


def unit_env(tmp: Path) -> dict[str, str]:
    found = dict(re.findall(r"^Environment=(PYTHON\w+)=(\S*)$", UNIT.read_text(), re.M))
    assert found["PYTHONOPTIMIZE"] == "2" and found["PYTHONNODEBUGRANGES"] == "1", found
    assert found["PYTHONDONTWRITEBYTECODE"] == "1", found
    (tmp / "pycache").mkdir()
    return {**os.environ, **found, "PYTHONPYCACHEPREFIX": str(tmp / "pycache"), "PYTHONPATH": str(ROOT),
            "STREET_GATEWAY_CLOCK": "system"}  # fmt: skip


def city_feed(port: int, got: list[tuple[str, bytes]], ready: threading.Event, stop: threading.Event) -> None:
    import paho.mqtt.client as mqtt

    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="city-reader", clean_session=True)
    c.on_message = lambda _c, _u, m: got.append((m.topic, m.payload))
    c.on_subscribe = lambda *_a: ready.set()
    c.connect("127.0.0.1", port)
    c.subscribe("#", qos=1)
    c.loop_start()
    stop.wait(120)
    c.loop_stop()
    c.disconnect()


def test_check_and_run_with_the_units_python_settings_store_every_reading_in_every_sink(
    tmp_path: Path, mosquitto: Mosquitto, victoria: VictoriaMetrics
) -> None:
    env = unit_env(tmp_path)
    cfg = gateway_config(tmp_path, broker_port=mosquitto.port, vm_url=victoria.url, city_port=mosquitto.port,
                         file_sink=True, gateway_id="oo-test")  # fmt: skip
    check = subprocess.run([sys.executable, "-m", "gateway.cli", "check", "-c", str(cfg)], cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=120)  # fmt: skip
    assert check.returncode == 0 and ": OK" in check.stdout, check.stderr

    got: list[tuple[str, bytes]] = []
    ready, stop = threading.Event(), threading.Event()
    reader = threading.Thread(target=city_feed, args=(mosquitto.port, got, ready, stop), daemon=True)
    reader.start()
    assert ready.wait(10)
    precreate_session(mosquitto.port, "oo-test")
    log = tmp_path / "gw.log"
    proc = subprocess.Popen([sys.executable, "-m", "gateway.cli", "run", "-c", str(cfg)], cwd=ROOT, env=env,
                            stdout=log.open("ab"), stderr=subprocess.STDOUT)  # fmt: skip
    try:
        pub = Publisher(mosquitto.port, n=50, rate=200)
        pub.start().join(60)
        assert pub.published == 50 * len(SENSORS)
        stored = series_by_sensor(victoria, pub.published, timeout=60)
        assert stored == {s: pub.expected(s) for s in SENSORS}, log.read_text()[-3000:]
        observations = tmp_path / "data" / "observations.jsonl"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            lines = whole_lines(observations)
            feed = [t for t, _ in got if t.endswith("/Observations")]
            if len(lines) >= pub.published and len(feed) >= pub.published:
                break
            time.sleep(0.2)
        expected = sorted(float(i) for _ in SENSORS for i in range(50))
        in_file = [json.loads(ln) for ln in lines]  # SensorThings Observations, one per line
        assert sorted(o["result"] for o in in_file) == expected, log.read_text()[-3000:]
        assert len({o["Datastream"]["@iot.id"] for o in in_file}) == len(SENSORS)
        feed = [(t, json.loads(body)) for t, body in got if t.endswith("/Observations")]
        assert sorted(o["result"] for _, o in feed) == expected
        assert len({t for t, _ in feed}) == len(SENSORS)
    finally:
        proc.terminate()
        rc = proc.wait(30)
        stop.set()
    assert rc == 0, log.read_text()[-3000:]
    assert "Traceback" not in log.read_text()
