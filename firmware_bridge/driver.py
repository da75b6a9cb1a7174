"""What a driver module exports, so that the gateway knows almost nothing about any one driver.

A serial driver module provides `DRIVER = SerialDriver(...)`; a message profile (MQTT today, OCPP
frames through the tap) provides `DRIVER = MessageDriver(...)`. Each has an `Options` model (the
only place its options are checked, at `check`), a catalogue (which fields, units, roles) and
factories that take the validated options. The registry in `firmware_bridge.drivers` lists them
explicitly.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from firmware_bridge.base import Catalogue, MessageDecoder, PollCounters, StreamDecoder, Value
from firmware_bridge.options import DriverOptions, NoOptions


class Poller(Protocol):
    """Decides what the host sends to a polled or duty-cycled device. Pure: `now` is passed in
    (monotonic seconds) and the serial source writes whatever bytes come back."""

    def on_open(self, now: float) -> list[bytes]: ...

    def due(self, now: float) -> list[bytes]: ...

    def on_close(self) -> list[bytes]: ...


@runtime_checkable
class TimedPoller(Poller, Protocol):
    """A poller that says when it next has something to send: the serial source wakes it at
    `next_due(now)` (monotonic seconds; `math.inf`: nothing until data comes) or when data
    comes, rather than on a fixed tick. `due(t)` returns nothing for any `t < next_due(now)`."""

    def next_due(self, now: float) -> float: ...


@runtime_checkable
class PacedPoller(TimedPoller, Protocol):
    """A request/response poller that tracks each request: the serial source wakes it at
    `next_due(now)` (not on a fixed tick, which would stretch its timing) and exports its
    `counters` (requests answered, timed out, cycles started late) per sensor."""

    counters: PollCounters


class SimulatedDevice(Protocol):
    """A device model that speaks the real protocol, for simulators and tests.

    `receive` takes bytes from the host and returns the device's reply; `tick` returns what the
    device sends by itself up to `now` (e.g. active-mode frames once a second). `sent` records the
    documented values of every measurement frame emitted, so tests can compare value for value.
    """

    sent: list[dict[str, Value]]

    def receive(self, data: bytes, now: float) -> bytes: ...

    def tick(self, now: float) -> bytes: ...


@dataclass(frozen=True, slots=True)
class SerialDriver:
    """A device on a UART. `new_decoder`/`new_poller` get the validated `Options` instance."""

    name: str
    catalogue: Catalogue  # fixed: a serial device's fields do not depend on options
    baud: int
    new_decoder: Callable[[Any], StreamDecoder]
    new_device: Callable[[random.Random], SimulatedDevice]
    options: type[DriverOptions] = NoOptions
    new_poller: Callable[[Any], Poller] | None = None
    # decoder and poller that share state (the request in flight); else built separately
    new_session: Callable[[Any], tuple[StreamDecoder, Poller]] | None = None
    aliases: tuple[str, ...] = ()  # other model names the same driver serves (pms7003)
    doc: str = ""
    transports: tuple[str, ...] = ("serial",)

    def catalogue_for(self, options: DriverOptions) -> Catalogue:
        return self.catalogue

    def session(self, options: DriverOptions) -> tuple[StreamDecoder, Poller | None]:
        """What the serial source runs for one open port: a decoder and, for polled or
        duty-cycled devices, the poller that drives them."""
        if self.new_session is not None:
            return self.new_session(options)
        poller = self.new_poller(options) if self.new_poller is not None else None
        return self.new_decoder(options), poller

    def describe(self, options: DriverOptions) -> dict[str, Any]:
        return describe(self, options)


@dataclass(frozen=True, slots=True)
class MessageDriver:
    """A device whose data arrives as messages: MQTT topics, or OCPP-J frames through the tap
    (topic `<chargeBoxId>/<direction>`). `catalogue_for` may depend on options (generic_json)."""

    name: str
    catalogue_for: Callable[[Any], Catalogue]
    new_decoder: Callable[[Any], MessageDecoder]
    simulate: Callable[[random.Random, float, str], list[tuple[str, bytes]]]
    # simulate(rng, now_epoch, base_topic) -> messages a device would publish at `now`
    options: type[DriverOptions] = NoOptions
    default_topic: str | None = None  # e.g. "footfall/+/probes"; `mqtt.topic` overrides it
    doc: str = ""
    transports: tuple[str, ...] = ("mqtt",)
    example_options: dict[str, Any] = field(default_factory=dict)  # for demos, docs and tests
    # where a device's topic holds its own identity (a charger's hostname, a LoRaWAN DevEUI),
    # the subscription follows from the options; None: `default_topic`
    topic_for: Callable[[Any], str | None] | None = None

    def topic(self, options: DriverOptions) -> str | None:
        """The topic filter a sensor with these options subscribes to when `mqtt.topic` is unset."""
        if self.topic_for is not None:
            return self.topic_for(options)
        return self.default_topic

    def describe(self, options: DriverOptions) -> dict[str, Any]:
        return describe(self, options)


Driver = SerialDriver | MessageDriver


def describe(driver: Driver, options: DriverOptions) -> dict[str, Any]:
    """What the privacy report and the catalogue say about a configured driver: the device, its
    options as set (defaults included) and every field with its role."""
    cat = driver.catalogue_for(options)
    return {
        "driver": driver.name,
        "make": cat.make,
        "model": cat.model,
        "description": cat.description,
        "transports": list(driver.transports),
        "doc": driver.doc,
        "options": options.model_dump(mode="json"),
        "fields": [
            {"key": f.key, "unit": f.unit, "role": f.role.value, "personal": f.personal,
             "aggregation": f.aggregation.value, "source": f.source, "estimator": f.estimator}
            for f in cat.fields
        ],
    }  # fmt: skip

