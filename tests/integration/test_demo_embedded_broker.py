"""`street-gateway demo` on a machine without Mosquitto: the in-process amqtt broker serves the
simulated MQTT devices, and their observations reach the file store."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

import gateway.simulate.mqtt_devices as mqtt_devices
from gateway.simulate.demo import DEMO_MQTT, run_demo

pytestmark = pytest.mark.integration


def test_demo_without_mosquitto_uses_the_embedded_broker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    monkeypatch.setattr(mqtt_devices, "find_mosquitto", lambda: None)
    try:
        rc = run_demo(duration=6, data_dir=tmp_path, sensors=1, quiet=True)
    finally:
        logging.getLogger().handlers.clear()
    out = capsys.readouterr().out
    assert rc == 0
    assert "amqtt (embedded) broker" in out and "summary:" in out
    assert "status page: http://127.0.0.1:" in out
    config = (tmp_path / "demo.yaml").read_text()
    lines = [json.loads(x) for x in (tmp_path / "observations.jsonl").read_text().splitlines()]
    assert lines
    # readings from MQTT devices were committed: the per-sensor metrics are not in the file, so
    # check that some MQTT profile sensor's property is among the published datastreams
    from gateway.config import load_config
    from gateway.plan import build_plan

    plan = build_plan(load_config(tmp_path / "demo.yaml"))
    mqtt_ids = {sid for sid, _, _, _ in DEMO_MQTT if sid in config}
    published = {plan.datastreams[o["Datastream"]["@iot.id"]].sensor_id for o in lines}
    assert published & mqtt_ids, "no observation from an MQTT device reached the file store"
    from firmware_bridge.drivers import MESSAGE_DRIVERS

    every = {n for n, d in MESSAGE_DRIVERS.items() if "mqtt" in d.transports}
    assert {d for _, d, _, _ in DEMO_MQTT} == every  # every MQTT profile takes part


def test_every_demo_mqtt_device_publishes_on_topics_its_sensor_subscribes_to() -> None:
    import random
    import time

    import paho.mqtt.client as mqtt

    from firmware_bridge.drivers import MESSAGE_DRIVERS
    from gateway.simulate.demo import demo_options, demo_topic

    subs = {sid: demo_topic(d, topic, demo_options(d, opts)) for sid, d, topic, opts in DEMO_MQTT}
    assert len(set(subs.values())) == len(subs)
    for sid, driver, _, _ in DEMO_MQTT:
        topic = subs[sid]
        sent = {t for n in range(0, 7200, 300)
                for t, _ in MESSAGE_DRIVERS[driver].simulate(random.Random(n), time.time() + n, topic)}  # fmt: skip
        assert sent, sid
        for t in sent:
            assert mqtt.topic_matches_sub(topic, t), f"{sid}: publishes on {t}, subscribed to {topic}"
            others = [s for s, f in subs.items() if s != sid and mqtt.topic_matches_sub(f, t)]
            assert not others, f"{sid}'s messages on {t} would also reach {others}"
