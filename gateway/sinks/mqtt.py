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
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from gateway.configtypes import MqttBroker, is_loopback_host
from gateway.outbox import Row
from gateway.privacy.guard import EgressGuard
from gateway.sinks.base import (
    Destination,
    Loc,
    RetryableError,
    SinkContext,
    SinkSettings,
    SinkSpec,
    WriteResult,
    guarded_observations,
)
from gateway.standards.sensorthings import config_fingerprint, entity_messages, observation_topic

if TYPE_CHECKING:
    from gateway.mqttconn import AckingClient
    from gateway.plan import SitePlan

log = logging.getLogger("gateway.sinks.mqtt")


class Settings(SinkSettings, MqttBroker):
    type: Literal["mqtt"] = "mqtt"
    port: int = Field(8883, ge=1, le=65535)
    tls: bool = True
    topic_prefix: str = Field("v1.1", description="SensorThings topics start with this.")


class MqttSink:
    batch_size = 500

    def __init__(self, settings: Settings, plan: SitePlan, *, guard: EgressGuard,
                 data_dir: Path, name: str = "mqtt") -> None:  # fmt: skip
        self.name = name
        self.plan = plan
        self.cfg = settings
        self.prefix = self.cfg.topic_prefix.rstrip("/")
        self.guard = guard
        self.state_topic = f"street-gateway/{plan.gateway_id}/state"
        self._client: AckingClient | None = None
        self._stack: contextlib.AsyncExitStack | None = None
        # one fingerprint per instance: two feeds each publish their own retained entities
        suffix = "" if name == "mqtt" else f"-{name}"
        self._fingerprint_file = data_dir / f"mqtt-entities{suffix}.sha256"

    async def start(self) -> None:
        """Nothing to do up front: `write` connects on demand so a down broker never blocks."""

    async def _connect(self) -> AckingClient:
        import aiomqtt

        from gateway.mqttconn import make_client

        if self._client is not None:
            return self._client
        will = aiomqtt.Will(self.state_topic, b"offline", qos=1, retain=True)
        suffix = "" if self.name == "mqtt" else f"-{self.name}"
        client = make_client(self.cfg, f"street-gateway-{self.plan.gateway_id}-out{suffix}",
                             will=will, max_inflight=100)  # fmt: skip
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
        messages = entity_messages(self.plan, prefix=self.prefix)
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
        import aiomqtt

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


def build(ctx: SinkContext, name: str, settings: Settings) -> MqttSink:
    return MqttSink(settings, ctx.plan, guard=ctx.guard, data_dir=ctx.data_dir, name=name)


def describe(name: str, settings: Settings, data_dir: Path) -> Destination:
    return Destination(
        name, "mqtt", settings.host,
        f"MQTT broker port {settings.port}, {'TLS' if settings.tls else 'no TLS (unencrypted)'}, "
        f"SensorThings API 1.1 topics {settings.topic_prefix}/Datastreams(<id>)/Observations "
        "(QoS 1), entities retained",
    )  # fmt: skip


def check(settings: Settings) -> list[tuple[Loc, str]]:
    if settings.password is not None and not settings.tls and not is_loopback_host(settings.host):
        return [(("tls",), "a password would cross the network in clear: set `tls: true`")]
    return []


SPEC: SinkSpec = SinkSpec("mqtt", Settings, build, describe, check, doc="docs/sinks/mqtt.md")
