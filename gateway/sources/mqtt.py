"""Async MQTT source: subscribes to the devices' topics on the local broker, nothing else.

Two sessions, chosen per sensor from its driver's catalogue:
- **durable** (non-personal devices): QoS 1, a persistent session. A message is acknowledged
  only after the readings decoded from it are committed to the outbox, so `kill -9` between
  receipt and commit loses nothing: the broker redelivers.
- **personal** (devices whose messages carry personal data at source: probe sniffers, OCPP
  relays, chargers with RFID): QoS 0 on a clean session, so the broker never queues them for an
  absent gateway and never writes them to its database. `inputs.mqtt.personal_port` points it
  at the separate, non-persisting broker that deploy/ installs; unset, it shares the broker.
  Retained messages there are stale replays of personal data: dropped and counted.

Bad payloads are counted per sensor and reason, logged once per minute without their content, and
acknowledged (redelivery would not make them better). Reconnection is one supervisor loop per
session.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

from pydantic import Field

from firmware_bridge.base import Decoded, DecodeError, Ignored, MessageDecoder
from firmware_bridge.driver import MessageDriver
from gateway.checks import filters_overlap
from gateway.configtypes import MqttBroker, Size, Strict
from gateway.model import Reading
from gateway.ops.logs import Throttle
from gateway.ops.metrics import Metric
from gateway.sources.base import Loc, Runnable, SourceContext, SourceSpec, Submit, duplicates
from gateway.sources.stamp import Stamper

if TYPE_CHECKING:
    import aiomqtt

    from gateway.ops.metrics import Registry
    from gateway.plan import SensorPlan

log = logging.getLogger("gateway.sources.mqtt")

ROUTE_CACHE = 4096
_UNROUTED: Any = object()
Route = tuple[str, "SensorPlan", MessageDecoder]


class Delivery(NamedTuple):
    """What acknowledging a message needs of it: its QoS and packet id. A reading waiting for
    its commit (up to INGEST_QUEUE + a group of them flat out) keeps this, not the whole
    message with its payload and topic (issue 19, peak RSS)."""

    qos: int
    mid: int


class MqttTopic(Strict):
    """A sensor's `mqtt:` section."""

    topic: str | None = Field(
        None, description="Topic filter the device publishes to (+ and # allowed); "
        "the driver's default if unset."
    )  # fmt: skip


class InputsMqtt(MqttBroker):
    """`inputs.mqtt`: the local broker the devices publish to."""

    max_payload_bytes: Size = Field(65536, gt=0, description="Larger messages are refused.")
    personal_port: int | None = Field(
        None,
        ge=1,
        le=65535,
        description="Port of the broker for personal-at-source devices (deploy/: 1884, no "
        "persistence, QoS 0, no retain) on the same host and login; unset: the same broker, "
        "still QoS 0 on a clean session.",
    )


def topic_of(plan: SensorPlan) -> str:
    if not isinstance(plan.section, MqttTopic) or not isinstance(plan.driver, MessageDriver):
        raise AssertionError("isinstance(plan.section, MqttTopic) and isinstance(plan.driver, MessageDriver)")
    topic = plan.section.topic or plan.driver.topic(plan.options)
    if topic is None:  # the plan refuses a sensor with neither
        raise AssertionError("topic is not None")
    return topic


def split_routes(routes: list[Route], shared_broker: bool) -> tuple[list[Route], list[Route]]:
    """(durable, personal), personal from the driver's catalogue (`personal_at_source`). On a
    shared broker a non-personal filter that overlaps a personal one (`footfall/#` next to
    `footfall/s1/probes`) goes to the personal session too: on the durable session it would
    queue the personal messages for an absent gateway."""
    personal = [r for r in routes if r[1].catalogue.personal_at_source]
    durable = [r for r in routes if r not in personal]
    if shared_broker:
        spill = [r for r in durable if any(filters_overlap(r[0], p[0]) for p in personal)]
        durable = [r for r in durable if r not in spill]
        personal = [r for r in routes if r in personal or r in spill]  # config order
    return durable, personal


class MqttSource:
    name = "mqtt"

    def __init__(
        self,
        cfg: InputsMqtt,
        plans: list[SensorPlan],
        submit: Submit,
        metrics: Registry,
        clock: Callable[[], float] = time.time,
        gateway_id: str = "street-gateway",
    ) -> None:
        self.cfg = cfg
        self.plans = plans
        self.submit = submit
        self.clock = clock
        self.gateway_id = gateway_id
        self.routes: list[Route] = []
        for sp in plans:
            if not isinstance(sp.driver, MessageDriver):
                raise AssertionError("isinstance(sp.driver, MessageDriver)")
            self.routes.append((topic_of(sp), sp, sp.driver.new_decoder(sp.options)))
        personal_port = cfg.personal_port
        self.shared_broker = personal_port in (None, cfg.port)
        self.durable_routes, self.personal_routes = split_routes(self.routes, self.shared_broker)
        self.personal_cfg = cfg if self.shared_broker else cfg.model_copy(update={"port": personal_port})
        self.throttle = Throttle()
        self._up: set[str] = set()
        self.stamper = Stamper()
        self._routed: dict[tuple[bool, str], tuple[SensorPlan, MessageDecoder] | None] = {}
        self._sensor_key = {sp.id: Metric.key(sensor=sp.id) for sp in plans}  # metrics labels
        self.m_messages = metrics.counter("gateway_mqtt_messages_total", "Messages received, by sensor")
        self.m_errors = metrics.counter("gateway_mqtt_bad_messages_total", "Bad messages, by sensor and reason")
        self.m_ignored = metrics.counter("gateway_mqtt_ignored_total", "Valid messages a profile does not use (housekeeping, duplicates), by sensor and reason")
        self.m_connects = metrics.counter("gateway_mqtt_connects_total", "Connections to the local broker")
        self.m_connected = metrics.gauge("gateway_mqtt_connected", "1 while connected to the local broker")
        self.m_last_seen = metrics.gauge("gateway_sensor_last_seen_timestamp_seconds", "Time of the last good reading")
        self.m_pauses = metrics.counter(
            "gateway_mqtt_read_pauses_total",
            "Times the source stopped reading the broker's socket because 256 received messages "
            "were waiting (back-pressure: the backlog stays in the broker), by session",
        )
        self.clients: dict[str, Any] = {}  # session -> its connected client (for tests, status)
        self.m_connected.set(0)

    @property
    def state_topic(self) -> str:
        return f"street-gateway/{self.gateway_id}/state"

    @property
    def connected(self) -> bool:
        """Every session this source needs is connected and subscribed."""
        return {"durable", *(["personal"] if self.personal_routes else [])} <= self._up

    async def run(self) -> None:
        """One supervisor per session; the durable one also carries the gateway's state topic."""
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._supervise(personal=False))
            if self.personal_routes:
                tg.create_task(self._supervise(personal=True))

    async def _supervise(self, personal: bool) -> None:
        """Connect, subscribe, consume; on any broker failure back off and retry."""
        import aiomqtt

        from gateway.mqttconn import make_client

        delay = 0.5
        name = "personal" if personal else "durable"
        cfg = self.personal_cfg if personal else self.cfg
        base_id = self.cfg.client_id or f"street-gateway-{self.gateway_id}-in"
        client_id = f"{base_id}-personal" if personal else base_id
        routes = self.personal_routes if personal else self.durable_routes
        will = None if personal else aiomqtt.Will(self.state_topic, b"offline", qos=1, retain=True)
        while True:
            client = make_client(cfg.model_copy(update={"client_id": client_id}), client_id,
                                 will=will, manual_ack=not personal, clean_session=personal,
                                 on_pause=lambda: self.m_pauses.inc(session=name))  # fmt: skip
            self.clients[name] = client
            try:
                async with client:
                    self.m_connects.inc()
                    log.info("connected to local broker", extra={"host": cfg.host, "port": cfg.port, "session": name})  # fmt: skip
                    if personal:
                        for topic in sorted({t for t, _, _ in routes}):
                            await client.subscribe(topic, qos=0)
                    else:
                        await client.publish(self.state_topic, b"online", qos=1, retain=True)
                        # A persistent session keeps its subscriptions across restarts: drop
                        # any a previous version made to personal topics, or they would
                        # queue personal messages for us whenever we are away.
                        stale = sorted({t for t, _, _ in self.personal_routes} - {t for t, _, _ in routes})
                        if stale:
                            await client.unsubscribe(stale)
                        for topic in sorted({t for t, _, _ in routes}):
                            await client.subscribe(topic, qos=1)
                    self._up.add(name)
                    self.m_connected.set(1 if self.connected else 0)
                    delay = 0.5
                    async for message in client.messages:
                        await self._handle(client, message, personal)
                        for more in client.queued():
                            await self._handle(client, more, personal)
            except aiomqtt.MqttError as e:
                n = self.throttle.should_log(("broker", name), time.monotonic())
                if n is not None:
                    log.warning("local broker unavailable, reconnecting", extra={"reason": str(e), "session": name, "retry_s": round(delay, 1)})  # fmt: skip
            finally:
                self._up.discard(name)
                self.m_connected.set(0)
            await asyncio.sleep(delay * random.uniform(0.8, 1.2))
            delay = min(delay * 2, 30.0)

    def route(self, topic: str, personal: bool = False) -> tuple[SensorPlan, MessageDecoder] | None:
        """The first configured sensor of that session whose filter matches. Devices reuse a few
        topics, so the answer is cached (bounded: a device spraying topics cannot grow it)."""
        key = (personal, topic)
        if key in self._routed:
            return self._routed[key]
        from paho.mqtt.client import topic_matches_sub

        routes = self.personal_routes if personal else self.durable_routes
        found = next(((sp, d) for pattern, sp, d in routes if topic_matches_sub(pattern, topic)), None)
        if len(self._routed) >= ROUTE_CACHE:
            self._routed.clear()
        self._routed[key] = found
        return found

    async def _handle(self, client: Any, message: aiomqtt.Message, personal: bool = False) -> None:
        topic = str(message.topic)
        payload = message.payload if isinstance(message.payload, bytes) else str(message.payload or "").encode()

        delivery = Delivery(message.qos, message.mid)  # the ack keeps this, not the message

        def ack() -> None:
            client.ack(delivery)

        found = self._routed.get((personal, topic), _UNROUTED)  # `route`, when it is cached
        if found is _UNROUTED:
            found = self.route(topic, personal)
        if found is None:
            self._bad("unknown", "unknown_topic", "message on a topic no sensor is configured for")
            ack()
            return
        sp, decoder = found
        sensor_key = self._sensor_key[sp.id]
        self.m_messages.inc_key(sensor_key)
        if personal and message.retain:
            self._bad(sp.id, "retained", "retained message on a personal-at-source topic ignored (a stale replay)")
            return
        if len(payload) > self.cfg.max_payload_bytes:
            self._bad(sp.id, "too_large", f"payload of {len(payload)} bytes exceeds max_payload_bytes")
            ack()
            return
        try:
            events = decoder.decode(topic, payload)
        except Exception as e:  # a decoder bug must not stop ingestion; counted and visible
            events = [DecodeError("decoder_failed", f"decoder raised {type(e).__name__}")]
        now = self.clock()
        if len(events) == 1 and type(ev := events[0]) is Decoded:  # the usual message: one reading
            self.m_last_seen.set_key(sensor_key, now)
            t = self.stamper.stamp(sp.id, now, ev.device_time)
            await self.submit(Reading(sp.id, t, ev.values, ev.flags), ack)  # acked once committed
            return
        readings: list[Reading] = []
        for ev in events:
            if isinstance(ev, DecodeError):
                self._bad(sp.id, ev.reason, ev.detail)
            elif isinstance(ev, Ignored):  # fine, not a fault: counted, never logged
                self.m_ignored.inc(sensor=sp.id, reason=ev.reason)
            elif isinstance(ev, Decoded):
                t = self.stamper.stamp(sp.id, now, ev.device_time)
                readings.append(Reading(sp.id, t, ev.values, ev.flags))
        if not readings:
            ack()
            return
        self.m_last_seen.set_key(sensor_key, now)
        for r in readings[:-1]:
            await self.submit(r, None)
        await self.submit(readings[-1], ack)  # acked once every reading from it is committed

    def _bad(self, sensor: str, reason: str, detail: str) -> None:
        self.m_errors.inc(sensor=sensor, reason=reason)
        n = self.throttle.should_log((sensor, reason), time.monotonic())
        if n is not None:
            log.warning("bad device message", extra={"sensor": sensor, "reason": reason, "detail": detail, "suppressed_since_last": n})  # fmt: skip


def build(ctx: SourceContext, plans: list[SensorPlan]) -> list[Runnable]:
    if not isinstance(ctx.inputs, InputsMqtt):
        raise AssertionError("isinstance(ctx.inputs, InputsMqtt)")
    return [MqttSource(ctx.inputs, plans, ctx.submit, ctx.metrics, ctx.clock, gateway_id=ctx.gateway_id)]


def describe(section: MqttTopic) -> str:
    return f"MQTT topic {section.topic}" if section.topic else "MQTT (the driver's default topic)"


def conflicts(plans: list[SensorPlan]) -> list[tuple[str, Loc, str]]:
    """Two sensors on one topic filter: the second would never get a message."""
    return duplicates(plans, topic_of, ("mqtt", "topic"), "this topic filter")


SPEC: SourceSpec = SourceSpec("mqtt", MqttTopic, build, describe, inputs=InputsMqtt, inputs_required=True,
                              conflicts=conflicts, doc="docs/sources/mqtt.md")  # fmt: skip
