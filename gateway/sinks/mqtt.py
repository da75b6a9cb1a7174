"""City broker sink: Observations as SensorThings (`v1.1/Datastreams(<id>)/Observations`),
SenML or NGSI-LD messages, QoS 1.

The outbox cursor advances only after every message of a batch was PUBACKed. With the
SensorThings format, entity metadata (Location, Thing, Sensors, ObservedProperties,
Datastreams) is published retained at connect, in link order, when the config changed since the
last successful publication. The gateway's own state is a retained `online`, with a last will
of `offline`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from gateway.checks import Finding, mqtt_broker_findings
from gateway.configtypes import MqttBroker
from gateway.model import compact_json
from gateway.outbox import Row
from gateway.privacy.guard import EgressGuard
from gateway.sinks.base import (
    BlockedError,
    Destination,
    Loc,
    Offer,
    RetryableError,
    SinkContext,
    SinkSettings,
    SinkSpec,
    WriteResult,
    guarded_messages,
)
from gateway.standards.formats import DESCRIBED, Format, Message, carries
from gateway.standards.sensorthings import config_fingerprint, entity_messages, observation_topic

if TYPE_CHECKING:
    from gateway.mqttconn import AckingClient
    from gateway.plan import SitePlan

log = logging.getLogger("gateway.sinks.mqtt")


# CONNACK codes that refuse the gateway itself (MQTT 3.1.1: 4, 5; MQTT 5: 134, 135, 138, 140)
REFUSED = {4: "unauthorised", 5: "unauthorised", 134: "unauthorised", 135: "unauthorised",
           138: "forbidden", 140: "unauthorised"}  # fmt: skip


def refusal(error: BaseException) -> str | None:
    """A short code if the broker refused the gateway's credentials or rights, else None."""
    rc = getattr(error, "rc", None)
    value = getattr(rc, "value", rc)
    return REFUSED.get(value) if isinstance(value, int) else None


class Settings(SinkSettings, MqttBroker):
    type: Literal["mqtt"] = "mqtt"
    port: int = Field(8883, ge=1, le=65535)
    tls: bool = True
    format: Format = Field("sensorthings", description="sensorthings, senml or ngsi-ld (docs/sinks/mqtt.md).")
    topic_prefix: str | None = Field(
        None, description="Topics start with this; default v1.1 (sensorthings), senml, ngsi-ld.")

    @property
    def prefix(self) -> str:
        if self.topic_prefix is not None:
            return self.topic_prefix.rstrip("/")
        return "v1.1" if self.format == "sensorthings" else self.format

    def topic(self, gateway_id: str, m: Message) -> str:
        """SensorThings: the Datastream's Observations topic; SenML and NGSI-LD, one topic per
        sensor: `<prefix>/<gateway id>/<sensor id>`."""
        if self.format == "sensorthings" and m.datastream_id is not None:
            return observation_topic(self.prefix, m.datastream_id)
        return f"{self.prefix}/{gateway_id}/{m.sensor_id}"


class MqttSink:
    batch_size = 500

    def __init__(self, settings: Settings, plan: SitePlan, *, guard: EgressGuard,
                 data_dir: Path, name: str = "mqtt") -> None:  # fmt: skip
        self.name = name
        self.plan = plan
        self.cfg = settings
        self.prefix = settings.prefix
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
            if self.cfg.format == "sensorthings":
                await self._publish_entities(client)
        except (aiomqtt.MqttError, OSError) as e:
            await stack.aclose()
            if (code := refusal(e)) is not None:
                raise BlockedError(code, f"city broker refused the gateway: {e}") from e
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
            payload = compact_json(body).decode()
            verdict = self.guard.check_text(payload)  # metadata leaves too: same guard, fail closed
            if verdict.ok:
                payloads.append((topic, payload))
            else:
                log.error("egress guard blocked an entity; check names and descriptions in the config",
                          extra={"topic": topic, "reason": verdict.reason})  # fmt: skip
        for t, p in payloads:  # one at a time: each is PUBACKed before the next, so link order holds
            await client.publish(t, p, qos=1, retain=True)
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
        out, blocked = guarded_messages(rows, self.guard, self.cfg.format, self.plan)
        messages = [(self.cfg.topic(self.plan.gateway_id, m), m.payload) for m in out]
        try:
            await client.publish_all(messages, timeout=30)
        except (aiomqtt.MqttError, OSError, TimeoutError) as e:
            await self._drop_connection()
            raise RetryableError(f"publish to city broker failed: {e}") from e
        return WriteResult(len(rows) - blocked, blocked=blocked)

    async def close(self) -> None:
        if self._client is not None:
            with contextlib.suppress(Exception):
                await self._client.publish(self.state_topic, b"offline", qos=1, retain=True, timeout=2)
        await self._drop_connection()


def build(ctx: SinkContext, name: str, settings: Settings) -> MqttSink:
    return MqttSink(settings, ctx.plan, guard=ctx.guard, data_dir=ctx.data_dir, name=name)


def describe(name: str, settings: Settings, data_dir: Path) -> Destination:
    if settings.format == "sensorthings":
        what = (f"SensorThings API 1.1 topics {settings.prefix}/Datastreams(<id>)/Observations "
                "(QoS 1), entities retained")  # fmt: skip
    else:
        what = f"{DESCRIBED[settings.format].label} on {settings.prefix}/<gateway id>/<sensor id> (QoS 1)"
    return Destination(
        name, "mqtt", settings.host,
        f"MQTT broker port {settings.port}, {'TLS' if settings.tls else 'no TLS (unencrypted)'}, {what}",
    )  # fmt: skip


def broker_url(settings: Settings) -> str:
    return f"{'mqtts' if settings.tls else 'mqtt'}://{settings.host}:{settings.port}/"


def offers(name: str, settings: Settings, plan: SitePlan) -> list[Offer]:
    """Per sensor: its Observation topics (SensorThings, one per Datastream) or its one topic."""
    from urllib.parse import quote

    out: list[Offer] = []
    fmt = settings.format
    for sensor in carries(fmt, plan):
        sp = plan.sensors[sensor]
        if fmt == "sensorthings":
            topics = [observation_topic(settings.prefix, ds.id) for ds in sp.datastreams.values()]
            what = "one topic per Datastream: " + ", ".join(
                f"{p} on {observation_topic(settings.prefix, ds.id)}" for p, ds in sp.datastreams.items())
        else:
            topics = [f"{settings.prefix}/{plan.gateway_id}/{sensor}"]
            what = f"topic {topics[0]}"
        urls = tuple(broker_url(settings) + quote(t, safe="/") for t in topics)
        out.append(Offer(sensor, fmt, urls, f"{sensor}: {DESCRIBED[fmt].label} over MQTT ({name})",
                         f"MQTT broker {settings.host}:{settings.port}, QoS 1, {what}"))  # fmt: skip
    return out


def _findings(settings: Settings) -> list[Finding]:
    return mqtt_broker_findings("city broker", settings.host, settings.tls,
                                settings.password is not None, settings.allow_plaintext)  # fmt: skip


def check(settings: Settings) -> list[tuple[Loc, str]]:
    """A password over plain MQTT to another machine is refused unless allow_plaintext."""
    return [(("tls",), f.message) for f in _findings(settings) if f.severity == "error"]


def warn(settings: Settings) -> list[tuple[Loc, str]]:
    return [(("tls",), f.message) for f in _findings(settings) if f.severity == "warning"]


SPEC: SinkSpec = SinkSpec("mqtt", Settings, build, describe, check, doc="docs/sinks/mqtt.md", offers=offers,
                          warn=warn)  # fmt: skip
