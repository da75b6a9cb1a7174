"""`street-gateway simulate`: every MQTT profile publishes what its driver decodes (real formats
from each driver's own simulator, through a real Mosquitto), serial devices appear behind
symlinks, and the symlinks are gone on every way out."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from firmware_bridge.base import Decoded, DecodeError
from firmware_bridge.drivers import MESSAGE_DRIVERS
from tests.conftest import Mosquitto
from tests.unit.test_registry import valid_options

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def simulate(*args: str, cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "gateway.cli", "simulate", *args], cwd=cwd, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip


def test_every_mqtt_profile_publishes_what_its_driver_decodes(mosquitto: Mosquitto, tmp_path: Path) -> None:
    received: list[tuple[str, bytes]] = []
    subscribed = threading.Event()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    client.on_connect = lambda c, *_: c.subscribe("#", qos=1)
    client.on_subscribe = lambda *_: subscribed.set()
    client.on_message = lambda _c, _u, m: received.append((m.topic, m.payload))
    client.connect("127.0.0.1", mosquitto.port)
    client.loop_start()
    try:
        assert subscribed.wait(10)
        topics: dict[str, str] = {}
        for name, d in MESSAGE_DRIVERS.items():  # as a sensor with the example options subscribes,
            levels = (d.topic(valid_options(d)) or "").split("/")  # its device level named after it
            if "+" in levels[:-1]:
                levels[levels.index("+")] = name
            topics[name] = "/".join(levels)
        specs = [f"--mqtt={name}:{topic}" for name, topic in topics.items()]
        proc = simulate(*specs, "--broker", f"127.0.0.1:{mosquitto.port}", "--period", "0.3", "--duration", "4",
                        cwd=tmp_path)  # fmt: skip
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
    finally:
        client.loop_stop()
        client.disconnect()
    for name, driver in MESSAGE_DRIVERS.items():
        assert f"{name}: publishes to 127.0.0.1:{mosquitto.port}" in out
        mine = [(t, p) for t, p in received if mqtt.topic_matches_sub(topics[name], t)]
        assert mine, f"{name}: nothing published on {topics[name]}"
        decoder = driver.new_decoder(valid_options(driver))
        events = [e for t, p in mine for e in decoder.decode(t, p)]
        assert not [e for e in events if isinstance(e, DecodeError)], f"{name}: its driver refused its simulator"
        if not any(isinstance(e, Decoded) for e in events):
            # a charger caught mid-session in a 4 s run: its decoder waits for the session's
            # start, which its simulator sends within its two-hour cycle
            cycle = driver.new_decoder(valid_options(driver))
            later = [e for n in range(0, 7200, 60)
                     for t, p in driver.simulate(random.Random(n), time.time() + n, topics[name])
                     for e in cycle.decode(t, p)]  # fmt: skip
            assert any(isinstance(e, Decoded) for e in later), f"{name}: no reading decoded"


@pytest.mark.parametrize("how", ["duration", "SIGTERM", "SIGINT", "SIGHUP"])
def test_serial_links_are_removed_on_every_way_out(how: str, tmp_path: Path) -> None:
    link = tmp_path / "pm-north"
    args = ["--serial", f"pms5003:{link}", "--serial", f"sds011:{tmp_path / 'pm-south'}"]
    proc = simulate(*args, "--duration", "2" if how == "duration" else "0", cwd=tmp_path)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == f"pms5003: {link}"
    assert os.readlink(link).startswith("/dev/pts/")
    if how != "duration":
        proc.send_signal(getattr(signal, how))
    proc.wait(30)
    assert proc.returncode == 0, proc.stderr.read() if proc.stderr else ""
    assert sorted(p.name for p in tmp_path.iterdir()) == [], "links left behind"


def test_simulate_does_not_replace_a_file_that_is_not_its_link(tmp_path: Path) -> None:
    precious = tmp_path / "notes"
    precious.write_text("keep me")
    proc = simulate("--serial", f"pms5003:{precious}", cwd=tmp_path)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 2 and "is not a symlink" in err
    assert precious.read_text() == "keep me"
