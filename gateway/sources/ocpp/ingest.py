"""From the tap's frames to readings: on_frame -> bounded queue -> the sensor's OCPP decoder ->
`Reading` -> `submit(reading, ack)`.

The tap calls `on_frame` synchronously and must never wait for the pipeline, so frames queue
here (bounded: when full, the newest frame is dropped and counted) and one task decodes them in
order. Each sensor has one decoder, its configured driver's, kept across reconnects so session
state survives them; frames of an OCPP version other than the one that driver reads are relayed
by the tap but not decoded here (counted, logged once a minute). A frame is already on its way
to the operator when it is seen, so there is nothing to acknowledge: `ack` is None.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from firmware_bridge.base import Decoded, DecodeError, MessageDecoder
from firmware_bridge.driver import MessageDriver
from firmware_bridge.options import DriverOptions
from gateway.model import Reading
from gateway.ops.logs import Throttle
from gateway.ops.metrics import Registry
from gateway.sources.base import Submit
from gateway.sources.ocpp.tap import Direction
from gateway.sources.stamp import Stamper

log = logging.getLogger("gateway.sources.ocpp")

MAX_QUEUE = 1000


@dataclass(frozen=True, slots=True)
class IngestSensor:
    sensor_id: str
    driver: MessageDriver  # ocpp16j or ocpp201j
    options: DriverOptions  # the driver's validated Options
    subprotocol: str  # the OCPP version that driver reads, e.g. "ocpp1.6"


def topic(charge_box_id: str, direction: Direction) -> str:
    """The topic a frame would have on the MQTT relay; the decoders key sessions on its box."""
    return f"ocpp/{charge_box_id}/{direction.value}"


class FrameIngest:
    name = "ocpp-ingest"

    def __init__(
        self,
        sensors: Mapping[str, IngestSensor],  # chargeBoxId -> sensor
        submit: Submit,
        metrics: Registry,
        clock: Callable[[], float] = time.time,
        max_queue: int = MAX_QUEUE,
    ) -> None:
        self.sensors = dict(sensors)
        self.submit = submit
        self.clock = clock
        self.max_queue = max_queue
        self._queue: collections.deque[tuple[str, Direction, str, str]] = collections.deque()
        self._wake = asyncio.Event()
        self._decoders: dict[str, MessageDecoder] = {
            cbid: s.driver.new_decoder(s.options) for cbid, s in self.sensors.items()
        }
        self.stamper = Stamper()
        self.throttle = Throttle()
        self.m_dropped = metrics.counter(
            "gateway_ocpp_ingest_dropped_total", "Frames not decoded: queue full, by sensor"
        )
        self.m_skipped = metrics.counter(
            "gateway_ocpp_ingest_skipped_total",
            "Frames not decoded: another OCPP version than the sensor's driver reads",
        )
        self.m_errors = metrics.counter(
            "gateway_ocpp_decode_errors_total", "Frames the decoder rejected, by sensor and reason"
        )
        self.m_last_seen = metrics.gauge(
            "gateway_sensor_last_seen_timestamp_seconds", "Time of the last good reading"
        )

    def on_frame(self, charge_box_id: str, direction: Direction, text: str, subprotocol: str) -> None:  # fmt: skip
        """The tap's callback. Never blocks, never raises on a full queue."""
        if len(self._queue) >= self.max_queue:
            sensor = self.sensors.get(charge_box_id)
            self.m_dropped.inc(sensor=sensor.sensor_id if sensor else "(unknown)")
            return
        self._queue.append((charge_box_id, direction, text, subprotocol))
        self._wake.set()

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                await self.handle(*self._queue.popleft())

    async def handle(self, charge_box_id: str, direction: Direction, text: str, subprotocol: str) -> None:  # fmt: skip
        sensor = self.sensors.get(charge_box_id)
        if sensor is None:
            return
        sid = sensor.sensor_id
        if subprotocol != sensor.subprotocol:
            self.m_skipped.inc(sensor=sid)
            if self.throttle.should_log((sid, "version"), time.monotonic()) is not None:
                log.warning("charger speaks another OCPP version than its driver reads: relayed, not decoded", extra={"sensor": sid, "ocpp": subprotocol, "driver": sensor.driver.name})  # fmt: skip
            return
        decoder = self._decoders[charge_box_id]
        try:
            events = decoder.decode(topic(charge_box_id, direction), text.encode())
        except Exception as e:  # decoders never raise; if one does, count it and go on
            events = [DecodeError("decoder_failed", f"decoder raised {type(e).__name__}")]
        now = self.clock()
        readings: list[Reading] = []
        for ev in events:
            if isinstance(ev, DecodeError):
                self.m_errors.inc(sensor=sid, reason=ev.reason)
                n = self.throttle.should_log((sid, ev.reason), time.monotonic())
                if n is not None:
                    log.warning("bad OCPP frame", extra={"sensor": sid, "reason": ev.reason, "detail": ev.detail, "suppressed_since_last": n})  # fmt: skip
            elif isinstance(ev, Decoded):
                t = self.stamper.stamp(sid, now, ev.device_time)
                readings.append(Reading(sid, t, ev.values, ev.flags))
        if readings:
            self.m_last_seen.set(now, sensor=sid)
        for reading in readings:
            await self.submit(reading, None)
