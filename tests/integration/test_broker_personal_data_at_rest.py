"""Raw personal streams never touch disk through the local brokers, with the config as shipped.

install.sh lays down both broker configs (the main one, persistent, for non-personal devices;
the RAM-only one for personal-at-source devices) into a temporary root. Both real Mosquitto
processes run from those files, only ports and paths moved into the test's directory. The real
gateway subscribes once and stops; then, with the gateway away, a probe sniffer and an OCPP relay
publish planted MACs and idTags (and try QoS 1, retain and a retained will, as misconfigured
firmware would), while an air-quality node (nothing personal) publishes QoS 1 readings; the
brokers save and restart. Every byte the brokers wrote is searched for each identifier in raw,
case and separator variants and unsalted digests: zero hits. The same restart loses none of the
air-quality node's QoS 1 readings.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from gateway.config import parse_config
from gateway.pipeline import Pipeline
from tests.conftest import free_port, require_binary, wait_port
from tests.integration.test_deploy import run_install
from tests.integration.test_mqtt_ingest import wait_for
from tests.integration.test_no_personal_data_leaves import variants

pytestmark = pytest.mark.integration

MACS = [f"3c:22:fb:{i:02x}:{(i * 7) % 256:02x}:{(i * 13) % 256:02x}" for i in range(20)]
ID_TAG = "04A1B2C3D4E5F6"
AQ = 50  # readings the air-quality node publishes while the gateway is away


class Broker:
    """A real Mosquitto on a free port from one of the shipped config files."""

    def __init__(self, binary: str, directory: Path, conf_text: str) -> None:
        self.binary, self.dir = binary, directory
        self.port = free_port()
        self.conf = directory / "mosquitto.conf"
        self.log = directory / "mosquitto.log"
        directory.mkdir(parents=True, exist_ok=True)
        self.conf.write_text(conf_text.replace("@PORT@", str(self.port)))
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        # cwd is the broker's own directory, so a file written relative to it is found too.
        self.proc = subprocess.Popen([self.binary, "-c", str(self.conf)], cwd=self.dir,
                                     stdout=self.log.open("ab"), stderr=subprocess.STDOUT)  # fmt: skip
        wait_port(self.port)

    def stop(self) -> None:
        """SIGTERM: Mosquitto saves its database (if it keeps one) on the way out."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


def shipped_confs(root: Path, tmp: Path) -> tuple[str, str]:
    """The installed main and personal configs, pointed at the test's ports and directories.
    The main one gets what Debian's /etc/mosquitto/mosquitto.conf adds (persistence, its
    location, a log file); `log_type all` so the search also covers the broker's debug log."""
    as_root = "user root\n" if os.geteuid() == 0 else ""  # else it drops to user mosquitto
    main = (root / "etc/mosquitto/conf.d/street-gateway.conf").read_text()
    main = main.replace("/etc/mosquitto/", f"{root}/etc/mosquitto/")
    main = re.sub(r"^listener .*$", "", main, flags=re.M)
    main = (f"persistence true\npersistence_location {tmp / 'main'}/\n"
            f"log_dest file {tmp / 'main' / 'broker-file.log'}\nlog_type all\n{as_root}"
            + main + "\nlistener @PORT@ 127.0.0.1\n")  # fmt: skip
    personal = (root / "etc/mosquitto/street-gateway-personal.conf").read_text()
    personal = personal.replace("/etc/mosquitto/", f"{root}/etc/mosquitto/")
    personal = re.sub(r"^listener 1884 127\.0\.0\.1$", "listener @PORT@ 127.0.0.1", personal, flags=re.M)
    assert "listener @PORT@ 127.0.0.1\nmax_qos 0" in personal
    return main, personal + "log_type all\n" + as_root


class Device:
    """A device's MQTT client (paho, MQTT 3.1.1 as ESP32 firmware speaks it)."""

    def __init__(self, port: int, user: str, password: str, will_retain: bool = False) -> None:
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"{user}-fw",
                                  protocol=mqtt.MQTTv311)  # fmt: skip
        self.client.username_pw_set(user, password)
        if will_retain:
            self.client.will_set(f"{user}/status", b"offline", qos=0, retain=True)
        self.connected = threading.Event()
        self.dropped = threading.Event()
        self.refused = threading.Event()

        def on_connect(c: Any, u: Any, flags: Any, reason: Any, props: Any) -> None:
            (self.refused if reason.is_failure else self.connected).set()

        self.client.on_connect = on_connect
        self.client.on_disconnect = lambda *a: self.dropped.set()
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def wait_up(self) -> bool:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if self.connected.is_set():
                return True
            if self.refused.is_set() or self.dropped.is_set():
                return False
            time.sleep(0.02)
        return False

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def every_file(*dirs: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for d in dirs for p in sorted(d.rglob("*")) if p.is_file()}


def test_personal_streams_never_reach_the_brokers_disk_and_durable_devices_lose_nothing(tmp_path: Path) -> None:
    binary = require_binary("mosquitto", "mosquitto")
    root = tmp_path / "root"
    run_install("--destdir", root, "--device", "aq-1:sensors/aq-1",
                "--personal-device", "sniffer-1:footfall/sniffer-1",
                "--personal-device", "ocpp-1:ocpp/ocpp-1")  # fmt: skip
    secrets = (root / "etc/street-gateway/secrets.env").read_text()
    m = re.search(r"^LOCAL_MQTT_PASSWORD=(.*)$", secrets, re.M)
    assert m
    gateway_pw = m.group(1)
    pw = {n: (root / f"etc/street-gateway/devices/{n}.password").read_text().strip()
          for n in ("aq-1", "sniffer-1", "ocpp-1")}  # fmt: skip

    main_conf, personal_conf = shipped_confs(root, tmp_path)
    main = Broker(binary, tmp_path / "main", main_conf)
    personal = Broker(binary, tmp_path / "personal", personal_conf)
    written_by_us = {main.conf, personal.conf}
    main.start()
    personal.start()
    data = tmp_path / "gateway"
    cfg = parse_config(f"""
gateway: {{id: camden-lc-0423, borough: camden, location: {{lat: 51.539, lon: -0.1426}}, data_dir: '{data}'}}
sensors:
  - {{id: aq-1, driver: generic_json, mqtt: {{topic: 'sensors/aq-1/json'}}, options: {{fields: [{{path: pm25, property: pm2_5, unit: ug/m3}}]}}}}
  - {{id: sniff-1, driver: wifi_probe_sniffer, mqtt: {{topic: 'footfall/sniffer-1/probes'}}}}
  - {{id: ocpp-1, driver: ocpp16j, mqtt: {{topic: 'ocpp/ocpp-1/in'}}}}
inputs: {{mqtt: {{host: 127.0.0.1, port: {main.port}, personal_port: {personal.port}, username: gateway, password: '{gateway_pw}'}}}}
privacy: {{window: 1m, min_count: 3}}
sinks: {{file: {{path: observations.jsonl}}}}
ops: {{http: null}}
""", "t.yaml", {})

    async def run_gateway_until(cond: Any = None) -> Pipeline:
        p = Pipeline(cfg)
        await p.start()
        await wait_for(lambda: getattr(p, "mqtt_source", None) is not None and p.mqtt_source.connected,
                       what="both sessions subscribed")  # fmt: skip
        if cond is not None:
            await wait_for(lambda: cond(p), timeout=30, what="the backlog")
        await p.stop()
        return p

    try:
        # 1. The gateway has run once (its persistent session exists) and is now stopped.
        asyncio.run(run_gateway_until())

        # 2. While it is away: the air-quality node (main broker, QoS 1) and the personal devices.
        aq = Device(main.port, "aq-1", pw["aq-1"])
        assert aq.wait_up()
        for i in range(AQ):
            aq.client.publish("sensors/aq-1/json", json.dumps({"pm25": 100 + i}), qos=1).wait_for_publish(5)
        aq.close()

        sniffer = Device(personal.port, "sniffer-1", pw["sniffer-1"])
        assert sniffer.wait_up()
        for mac in MACS:
            info = sniffer.client.publish("footfall/sniffer-1/probes",
                                          json.dumps({"mac": mac, "rssi": -50, "seq": 1, "ch": 6}), qos=0)  # fmt: skip
            info.wait_for_publish(5)
        relay = Device(personal.port, "ocpp-1", pw["ocpp-1"])
        assert relay.wait_up()
        start = [2, "19223202", "StartTransaction",
                 {"connectorId": 1, "idTag": ID_TAG, "meterStart": 120400, "timestamp": "2026-03-14T10:12:30Z"}]  # fmt: skip
        relay.client.publish("ocpp/ocpp-1/in", json.dumps(start), qos=0).wait_for_publish(5)
        # Firmware that insists on QoS 1 or retain is thrown off, the message refused.
        relay.client.publish("ocpp/ocpp-1/in", json.dumps([*start[:3], {**start[3], "idTag": MACS[0]}]), qos=1)
        assert relay.dropped.wait(5), "QoS 1 on the personal-data broker must be refused"
        sniffer.client.publish("footfall/sniffer-1/probes", json.dumps({"mac": MACS[1], "rssi": -50}), qos=0, retain=True)
        assert sniffer.dropped.wait(5), "retain on the personal-data broker must be refused"
        relay.close()
        sniffer.close()
        will = Device(personal.port, "sniffer-1", pw["sniffer-1"], will_retain=True)
        assert not will.wait_up(), "a retained last will is refused at CONNECT"
        will.close()
        # A personal device has no login on the main broker at all.
        stray = Device(main.port, "sniffer-1", pw["sniffer-1"])
        assert not stray.wait_up()
        stray.close()

        # 3. Both brokers save (SIGTERM) and restart.
        main.stop()
        personal.stop()
        db = main.dir / "mosquitto.db"
        assert db.exists(), "the main broker keeps its database (durable devices rely on it)"
        assert b'"pm25": 149' in db.read_bytes(), "the scan can see what a broker queued on disk"
        at_rest = every_file(main.dir, personal.dir)
        main.start()
        personal.start()

        # 4. The gateway comes back: every QoS 1 count published while it was away arrives.
        p = asyncio.run(run_gateway_until(lambda p: p.stats.readings >= AQ and p.queue.empty()))
    finally:
        main.stop()
        personal.stop()

    ds = p.plan.sensors["aq-1"].datastreams["pm2_5"].id
    got = sorted(int(json.loads(line)["result"]) for line in (data / "observations.jsonl").read_text().splitlines()
                 if json.loads(line)["Datastream"]["@iot.id"] == ds)  # fmt: skip
    assert got == [100 + i for i in range(AQ)], "a QoS 1 device lost readings across the broker restart"

    # The personal-data broker wrote nothing but what we redirected its stderr into.
    assert {p.name for p in personal.dir.iterdir()} == {"mosquitto.conf", "mosquitto.log"}
    assert [p.relative_to(tmp_path) for p in tmp_path.rglob("*.db")] == [Path("main/mosquitto.db")]
    files = {**at_rest, **every_file(main.dir, personal.dir)}
    files = {k: v for k, v in files.items() if k not in written_by_us}
    assert any(k.name == "mosquitto.db" for k in files) and any("log" in k.name for k in files)
    needles = set().union(*(variants(mac) for mac in MACS), variants(ID_TAG))
    hits = sorted({(str(path.relative_to(tmp_path)), n) for path, body in files.items() for n in needles
                   if n.encode() in body})  # fmt: skip
    assert hits == [], f"planted identifiers at rest: {hits[:10]}"
