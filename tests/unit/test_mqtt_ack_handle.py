"""A reading waiting for its commit keeps what its acknowledgement needs (QoS and packet id), not
the MQTT message with its payload (issue 19, peak RSS flat out: up to INGEST_QUEUE readings and a
group wait at once). The PUBACK that leaves is unchanged: test_mqtt_internals.py checks its bytes
against paho's own; here, that the ack given with a reading acknowledges that message's id."""

from __future__ import annotations

import asyncio
import gc
import weakref
from pathlib import Path

import aiomqtt

from gateway.config import parse_config
from gateway.model import Reading
from gateway.ops.metrics import Registry
from gateway.plan import build_plan
from gateway.sources.base import Ack
from gateway.sources.mqtt import Delivery, MqttSource

CONFIG = """\
gateway: {{id: acks, borough: camden, location: {{lat: 51.539, lon: -0.1426}}, data_dir: '{d}'}}
inputs: {{mqtt: {{host: 127.0.0.1, port: 1883}}}}
sensors:
  - {{id: s1, driver: generic_json, mqtt: {{topic: t/s1}}, options: {{fields: [{{path: pm2_5, property: pm2_5, unit: ug/m3}}]}}}}
sinks:
  file: {{path: out.jsonl}}
"""


class Client:
    def __init__(self) -> None:
        self.acked: list[object] = []

    def ack(self, message: object) -> None:
        self.acked.append(message)


def test_the_ack_kept_with_a_reading_holds_the_id_not_the_message(tmp_path: Path) -> None:
    cfg = parse_config(CONFIG.format(d=tmp_path), "gw.yaml", {})
    plan = build_plan(cfg)
    waiting: list[tuple[Reading, Ack]] = []

    async def submit(reading: Reading, ack: Ack) -> None:
        waiting.append((reading, ack))

    source = MqttSource(cfg.inputs.mqtt, list(plan.sensors.values()), submit, Registry())  # type: ignore[arg-type]
    client = Client()
    message = aiomqtt.Message("t/s1", b'{"pm2_5": 12.5}', 1, False, 4711, None)
    gone = weakref.ref(message)
    asyncio.run(source._handle(client, message))
    del message
    gc.collect()
    assert len(waiting) == 1 and waiting[0][0].values
    assert gone() is None  # the message (and its payload) is freed while the reading waits
    waiting[0][1]()  # committed: acknowledged
    assert client.acked == [Delivery(1, 4711)]
    assert (client.acked[0].qos, client.acked[0].mid) == (1, 4711)  # what AckingClient.ack reads
