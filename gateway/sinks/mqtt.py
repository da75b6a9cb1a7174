"""City broker sink: SensorThings Observations on `v1.1/Datastreams(<id>)/Observations`, QoS 1.

The outbox cursor advances only after every message of a batch was PUBACKed. Entity metadata
(Thing, Location, Sensors, ObservedProperties, Datastreams) is published retained at connect
when the config changed since the last successful publication. The gateway's own state is a
retained `online`, with a last will of `offline`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Sequence

import aiomqtt

from gateway.config import Config
from gateway.mqttconn import AckingClient, make_client
from gateway.outbox import Row
from gateway.plan import SitePlan
from gateway.privacy.guard import EgressGuard
from gateway.sinks.base import RetryableError, WriteResult, guarded_observations
from gateway.standards.sensorthings import config_fingerprint, entity_messages, observation_topic

log = logging.getLogger("gateway.sinks.mqtt")


class MqttSink:
    name = "mqtt"
    batch_size = 500

    def __init__(self, cfg: Config, plan: SitePlan, *, guard: EgressGuard) -> None:
        assert cfg.sinks.mqtt is not None
        self.full = cfg
        self.plan = plan
        self.cfg = cfg.sinks.mqtt
        self.prefix = self.cfg.topic_prefix.rstrip("/")
        self.guard = guard
        self.state_topic = f"street-gateway/{cfg.gateway.id}/state"
        self._client: AckingClient | None = None
        self._stack: contextlib.AsyncExitStack | None = None
        self._fingerprint_file = cfg.gateway.data_dir / "mqtt-entities.sha256"

    async def start(self) -> None:
        """Nothing to do up front: `write` connects on demand so a down broker never blocks."""

    async def _connect(self) -> AckingClient:
        if self._client is not None:
            return self._client
        will = aiomqtt.Will(self.state_topic, b"offline", qos=1, retain=True)
        client = make_client(self.cfg, f"street-gateway-{self.full.gateway.id}-out", will=will, max_inflight=100)
        stack = contextlib.AsyncExitStack()
        try:
            await stack.enter_async_context(client)
            await client.publish(self.state_topic, b"online", qos=1, retain=True)
            await self._publish_entities(client)
        except (aiomqtt.MqttError, OSError) as e:
            await stack.aclose()
            raise RetryableError(f"city broker unavailable: {e}") from e
        self._client, self._stack = client, stack
        log.info("connected to city broker", extra={"host": self.cfg.host, "port": self.cfg.port})
        return client

    async def _publish_entities(self, client: AckingClient) -> None:
        messages = entity_messages(self.full, self.plan, prefix=self.prefix)
        digest = config_fingerprint(messages)
        previous = self._fingerprint_file.read_text().strip() if self._fingerprint_file.exists() else ""
        if digest == previous:
            return
        payloads: list[tuple[str, str]] = []
        for topic, body in messages:
            payload = json.dumps(body, separators=(",", ":"), ensure_ascii=False)
            verdict = self.guard.check_text(payload)  # metadata leaves too: same guard, fail closed
            if verdict.ok:
                payloads.append((topic, payload))
            else:
                log.error("egress guard blocked an entity; check names and descriptions in the config",
                          extra={"topic": topic, "reason": verdict.reason})  # fmt: skip
        await asyncio.gather(*(client.publish(t, p, qos=1, retain=True) for t, p in payloads))
        self._fingerprint_file.parent.mkdir(parents=True, exist_ok=True)
        self._fingerprint_file.write_text(digest + "\n")
        log.info("published SensorThings entities", extra={"messages": len(messages)})

    async def _drop_connection(self) -> None:
        stack, self._client, self._stack = self._stack, None, None
        if stack is not None:
            with contextlib.suppress(Exception):
                await stack.aclose()

    async def write(self, rows: Sequence[Row]) -> WriteResult:
        client = await self._connect()
        payloads, blocked = guarded_observations(rows, self.guard)
        messages = [(observation_topic(self.prefix, obs.datastream_id), p) for obs, p in payloads]
        try:
            await asyncio.gather(*(client.publish(t, p, qos=1, timeout=30) for t, p in messages))
        except (aiomqtt.MqttError, OSError, TimeoutError) as e:
            await self._drop_connection()
            raise RetryableError(f"publish to city broker failed: {e}") from e
        return WriteResult(len(messages), blocked=blocked)

    async def close(self) -> None:
        if self._client is not None:
            with contextlib.suppress(Exception):
                await self._client.publish(self.state_topic, b"offline", qos=1, retain=True, timeout=2)
        await self._drop_connection()
