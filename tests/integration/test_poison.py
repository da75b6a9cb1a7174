"""A poison message against a real Mosquitto: it neither stalls ingestion nor costs any other
reading, and it is not redelivered after a reconnect.

The broker lets 100 unacknowledged QoS 1 messages be in flight (`max_inflight_messages 100` in
the test broker's config, as deployed): a poison that was never acknowledged would stop the
stream after 100 of them. 150 poison messages of three kinds (a lone surrogate, a NUL, a newline
in a category word; legal JSON all) are interleaved with 300 good ones.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiomqtt
import pytest

from gateway.config import parse_config
from gateway.pipeline import Pipeline
from tests.conftest import Mosquitto

pytestmark = pytest.mark.integration

POISON = (
    b'{"v": 1, "w": "bad\\ud800"}',  # lone surrogate: legal JSON, not encodable as UTF-8
    b'{"v": 2, "w": "nul\\u0000here"}',
    b'{"v": 3, "w": "two\\nlines"}',  # would split a line-protocol line
)


def config(tmp: Path, port: int) -> str:
    words = ", ".join(f"ok-{i}" for i in range(10))  # a category leaves only as a declared word
    return f"""
gateway: {{id: poison-gw, borough: camden, location: {{lat: 51.539, lon: -0.1426}}, data_dir: '{tmp / "data"}'}}
inputs: {{mqtt: {{host: 127.0.0.1, port: {port}}}}}
sensors:
  - {{id: gj-1, driver: generic_json, mqtt: {{topic: 'dev/+/json'}}, options: {{fields: [
      {{path: v, property: pm2_5, unit: ug/m3}}, {{path: w, property: state, type: category, allowed: [{words}]}}]}}}}
  - {{id: senml-1, driver: senml, mqtt: {{topic: 'senml/+'}}, options: {{fields: [
      {{suffix: ':temp', property: temperature, unit: Cel}}, {{suffix: ':label', property: label, type: category, allowed: [x]}}]}}}}
sinks: {{file: {{path: observations.jsonl}}}}
ops: {{http: null}}
"""


async def wait_for(cond, timeout: float = 60.0, what: str = "condition") -> None:  # type: ignore[no-untyped-def]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not cond():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def test_poison_messages_neither_stall_ingestion_nor_cost_a_good_reading(tmp_path: Path, mosquitto: Mosquitto) -> None:
    good_n, poison_n = 300, 150

    async def scenario() -> tuple[list[dict[str, object]], float, float]:
        cfg = parse_config(config(tmp_path, mosquitto.port), "t.yaml", {})
        p = Pipeline(cfg)
        await p.start()
        await wait_for(lambda: p.mqtt_source is not None and p.mqtt_source.connected, what="subscription")
        messages: list[tuple[str, bytes]] = []
        for i in range(good_n):
            messages.append((f"dev/d{i % 3}/json", json.dumps({"v": 1000 + i, "w": f"ok-{i % 10}"}).encode()))
            if i % 2 == 0:  # one poison after every second good message, four kinds in turn
                k = (i // 2) % (len(POISON) + 1)
                if k == len(POISON):  # the SenML profile gets its share too
                    messages.append(("senml/w1", b'[{"bn":"urn:dev:w1:","n":"label","vs":"x\\ud800"}]'))
                else:
                    messages.append((f"dev/d{i % 3}/json", POISON[k]))
        poison_sent = len(messages) - good_n
        async with aiomqtt.Client("127.0.0.1", mosquitto.port, identifier="poison-publisher") as pub:
            for topic, payload in messages:
                await pub.publish(topic, payload, qos=1)
        bad = p.metrics.counter("gateway_mqtt_bad_messages_total", "")
        await wait_for(lambda: p.stats.readings >= good_n and bad.total() >= poison_sent, what="every message handled")
        await wait_for(lambda: p.queue.empty() and p.stats.delivered.get("file", 0) >= 2 * good_n, what="delivery")
        bad_strings = sum(v for k, v in bad.values.items() if ("reason", "bad_string") in k)
        await p.stop()
        # reconnect: nothing was left unacknowledged, so nothing is redelivered
        p2 = Pipeline(cfg)
        await p2.start()
        await wait_for(lambda: p2.mqtt_source is not None and p2.mqtt_source.connected, what="resubscription")
        await asyncio.sleep(2.0)
        again = p2.metrics.counter("gateway_mqtt_messages_total", "").total()
        await p2.stop()
        lines = [json.loads(x) for x in (tmp_path / "data" / "observations.jsonl").read_text().splitlines()]
        assert poison_sent == poison_n
        return lines, bad_strings - poison_sent, again

    lines, unaccounted, redelivered = asyncio.run(scenario())
    assert unaccounted == 0, "every poison message counted as a bad_string"
    assert redelivered == 0, "poison messages were acknowledged: nothing redelivered"
    results = [o["result"] for o in lines]
    numbers = sorted(r for r in results if isinstance(r, int | float) and not isinstance(r, bool))
    words = sorted(r for r in results if isinstance(r, str))
    assert numbers == [1000 + i for i in range(good_n)], "every good reading, exactly once"
    assert words == sorted(f"ok-{i % 10}" for i in range(good_n))
