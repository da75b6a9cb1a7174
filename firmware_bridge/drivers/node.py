"""Our own microcontroller node (RP2040/ESP32 running micropython/main.py), UART 115200 8N1.

The node pushes COBS-framed, CRC-checked version-2 messages whose header carries the body
length, so a truncated frame is rejected even when its CRC matches by chance (`rejected`,
reason "length"); version-1 messages from nodes flashed earlier are still accepted, with only
the CRC against truncation (see `firmware_bridge.framing`, the same file the node runs). The
decoder splits the stream on 00, so a damaged frame costs only itself. Only keys declared in
the catalogue are published; others are counted and dropped, so a firmware change cannot leak
an undeclared field. Gaps in the message sequence number are counted as `extra["seq_gaps"]`.
"""

from __future__ import annotations

import random

from firmware_bridge import framing
from firmware_bridge.base import (
    Catalogue,
    Decoded,
    DecodeError,
    Event,
    Field,
    FrameCounters,
    ObservationType,
    Value,
)
from firmware_bridge.driver import SerialDriver

MAX_BUFFER = framing.MAX_ENCODED + 2
DEFAULT_PERIOD_S = 10.0

CATALOGUE = Catalogue(
    driver="node",
    make="street-gateway",
    model="MicroPython node (RP2040/ESP32)",
    description="Our own sensor node: analogue NO2 cell, temperature, humidity",
    transport="serial",
    datasheet="firmware_bridge/framing.py (message version 2; 1 accepted)",
    fields=(
        Field("no2", "ug/m3", ObservationType.MEASUREMENT,
              "NO2 mass concentration from a calibrated analogue cell", minimum=0, maximum=2000),
        Field("temperature", "Cel", ObservationType.MEASUREMENT, "Air (or board) temperature",
              minimum=-40, maximum=85),
        Field("humidity", "%", ObservationType.MEASUREMENT, "Relative humidity",
              minimum=0, maximum=100),
    ),
)
KEYS = frozenset(f.key for f in CATALOGUE.fields)


class Decoder:
    """Feed any split of the byte stream; get `Decoded`/`DecodeError` events."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._skipping = False  # inside an over-long segment: drop until the next 00
        self._last_seq: int | None = None
        self.counters = FrameCounters()

    def _count(self, name: str, n: int = 1) -> None:
        self.counters.extra[name] = self.counters.extra.get(name, 0) + n

    def feed(self, data: bytes) -> list[Event]:
        self.counters.bytes += len(data)
        buf = self._buf
        buf += data
        events: list[Event] = []
        while True:
            end = buf.find(0)
            if end < 0:
                if len(buf) > framing.MAX_ENCODED:
                    self.counters.resyncs += 1
                    self._skipping = True
                    del buf[:]
                break
            segment = bytes(buf[:end])
            del buf[: end + 1]
            if self._skipping:
                self._skipping = False
                continue
            if segment:
                event = self._segment(segment)
                if event is not None:
                    events.append(event)
        return events

    def _segment(self, segment: bytes) -> Event | None:
        try:
            msg_type, seq, body = framing.decode_message(framing.decode_frame(segment))
            if msg_type != framing.MSG_READINGS:
                raise framing.FrameError("unknown_type", "message type is not READINGS")
            readings = framing.parse_readings(body)
        except framing.FrameError as err:
            if err.reason == "checksum":
                self.counters.checksum_errors += 1
            else:
                self.counters.rejected += 1
            return DecodeError(err.reason, err.detail)
        if self._last_seq is not None and seq != (self._last_seq + 1) & 0xFF:
            self._count("seq_gaps")
        self._last_seq = seq
        self.counters.frames_ok += 1
        values: dict[str, Value] = {k: v for k, v in readings.items() if k in KEYS}
        if len(values) < len(readings):
            self._count("undeclared_keys", len(readings) - len(values))
        return Decoded(values) if values else None


class Device:
    """Simulated node: sends a READINGS frame every DEFAULT_PERIOD_S, as main.py does."""

    def __init__(self, rng: random.Random, period_s: float = DEFAULT_PERIOD_S) -> None:
        self.rng = rng
        self.period = period_s
        self.seq = 0
        self._next = 0.0
        self._no2 = rng.uniform(15, 60)
        self.sent: list[dict[str, Value]] = []

    def _frame(self) -> bytes:
        self._no2 = min(400.0, max(0.0, self._no2 + self.rng.gauss(0, 3)))
        readings: dict[str, float] = {
            "no2": round(self._no2, 1),
            "temperature": round(self.rng.uniform(-5, 30), 2),
            "humidity": round(self.rng.uniform(30, 95), 1),
        }
        self.sent.append(dict(readings))
        frame = framing.encode_readings(self.seq, readings)
        self.seq = (self.seq + 1) & 0xFF
        return frame

    def receive(self, data: bytes, now: float) -> bytes:
        return b""  # the node only talks

    def tick(self, now: float) -> bytes:
        if self._next == 0.0:
            self._next = now
        out = b""
        while now >= self._next:
            out += self._frame()
            self._next += self.period
        return out


DRIVER = SerialDriver(
    name="node",
    catalogue=CATALOGUE,
    baud=115200,
    new_decoder=lambda options: Decoder(),
    new_device=Device,
    doc="docs/drivers/node.md",
)
