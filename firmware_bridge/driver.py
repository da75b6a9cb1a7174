"""What a driver module exports, so that the gateway knows almost nothing about any one driver.

A serial driver module provides a `DRIVER = SerialDriver(...)`; an MQTT profile module provides
`DRIVER = MqttDriver(...)`. The registry in `firmware_bridge.drivers` lists them explicitly.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from firmware_bridge.base import Catalogue, MessageDecoder, StreamDecoder, Value

Options = Mapping[str, Any]


class Poller(Protocol):
    """Decides what the host sends to a polled or duty-cycled device. Pure: `now` is passed in
    (monotonic seconds) and the serial source writes whatever bytes come back."""

    def on_open(self, now: float) -> list[bytes]: ...

    def due(self, now: float) -> list[bytes]: ...

    def on_close(self) -> list[bytes]: ...


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
    name: str
    catalogue: Catalogue
    baud: int
    new_decoder: Callable[[], StreamDecoder]
    new_device: Callable[[random.Random], SimulatedDevice]
    new_poller: Callable[[Options], Poller] | None = None
    option_keys: frozenset[str] = frozenset()  # accepted keys in the sensor's `options:`
    doc: str = ""


@dataclass(frozen=True, slots=True)
class MqttDriver:
    name: str
    catalogue_for: Callable[[Options], Catalogue]
    new_decoder: Callable[[Options], MessageDecoder]
    default_topic: str  # e.g. "footfall/+/probes"; the sensor's `mqtt.topic` overrides it
    simulate: Callable[[random.Random, float, str], list[tuple[str, bytes]]]
    # simulate(rng, now_epoch, base_topic) -> messages a device would publish at `now`
    validate_options: Callable[[Options], list[str]] | None = None  # problems, as sentences
    doc: str = ""
