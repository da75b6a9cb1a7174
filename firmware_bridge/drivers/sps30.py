"""Sensirion SPS30 particulate sensor over UART/SHDLC (115200 8N1), polled.

Sensor-to-host frame: `7E ADR CMD STATE LEN DATA CHK 7E`, CHK = ~(sum of the unstuffed bytes
between the flags, excluding CHK) & 0xFF; bytes 7E, 7D, 11, 13 travel as 7D (b ^ 0x20).
Because a real frame never contains a bare 7E, every flag ends whatever came before it: the
decoder splits on flags, so noise can cost at most the segment it sits in, never the next frame.
Destuffing is one left-to-right pass (chained replace() calls corrupt `7D 5D 31`).
"""

from __future__ import annotations

import random
import struct

from pydantic import Field as Opt

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
from firmware_bridge.options import DriverOptions

FLAG = 0x7E
ESCAPE = 0x7D
STUFFED = frozenset({0x7E, 0x7D, 0x11, 0x13})
ADDRESS = 0x00
MAX_DATA = 255
MAX_SEGMENT = 2 * (4 + MAX_DATA + 1)  # every byte stuffed
MAX_BUFFER = MAX_SEGMENT + 2

CMD_START = 0x00
CMD_STOP = 0x01
CMD_READ = 0x03
CMD_SLEEP = 0x10
CMD_WAKE = 0x11
FORMAT_FLOAT = 0x03

KEYS = ("pm1_0", "pm2_5", "pm4_0", "pm10", "nc0_5", "nc1_0", "nc2_5", "nc4_0", "nc10",
        "typical_size")  # fmt: skip
FLOAT_LEN = 4 * len(KEYS)
UINT16_LEN = 2 * len(KEYS)


def _pm(key: str, size: str) -> Field:
    return Field(key, "ug/m3", ObservationType.MEASUREMENT, f"PM{size} mass concentration",
                 minimum=0, maximum=1000)  # fmt: skip


def _nc(key: str, size: str) -> Field:
    return Field(key, "/cm3", ObservationType.MEASUREMENT,
                 f"Number concentration of particles 0.3 to {size} um", minimum=0, maximum=3000)  # fmt: skip


CATALOGUE = Catalogue(
    driver="sps30",
    make="Sensirion",
    model="SPS30",
    description="Laser-scattering particulate matter sensor with mass and number concentrations",
    transport="serial",
    datasheet="Sensirion SPS30 datasheet v1.0, section 5 (UART/SHDLC)",
    fields=(
        _pm("pm1_0", "1"), _pm("pm2_5", "2.5"), _pm("pm4_0", "4"), _pm("pm10", "10"),
        _nc("nc0_5", "0.5"), _nc("nc1_0", "1.0"), _nc("nc2_5", "2.5"), _nc("nc4_0", "4.0"),
        _nc("nc10", "10"),
        Field("typical_size", "um", ObservationType.MEASUREMENT, "Typical particle size",
              minimum=0, maximum=10),
    ),
)


def checksum(data: bytes | bytearray) -> int:
    return ~sum(data) & 0xFF


def stuff(data: bytes) -> bytes:
    out = bytearray()
    for b in data:
        if b in STUFFED:
            out += bytes([ESCAPE, b ^ 0x20])
        else:
            out.append(b)
    return bytes(out)


def destuff(data: bytes | bytearray) -> bytes | None:
    """Undo byte stuffing in one left-to-right pass; None for a bad or dangling escape."""
    out = bytearray()
    escaped = False
    for b in data:
        if escaped:
            b ^= 0x20
            if b not in STUFFED:
                return None
            out.append(b)
            escaped = False
        elif b == ESCAPE:
            escaped = True
        else:
            out.append(b)
    return None if escaped else bytes(out)


def encode_request(cmd: int, data: bytes = b"", address: int = ADDRESS) -> bytes:
    """A host-to-sensor (MOSI) frame: 7E ADR CMD LEN DATA CHK 7E, stuffed."""
    body = bytes([address, cmd, len(data)]) + data
    return bytes([FLAG]) + stuff(body + bytes([checksum(body)])) + bytes([FLAG])


def encode_response(cmd: int, data: bytes = b"", state: int = 0, address: int = ADDRESS) -> bytes:
    """A sensor-to-host (MISO) frame, as the SPS30 sends it."""
    body = bytes([address, cmd, state, len(data)]) + data
    return bytes([FLAG]) + stuff(body + bytes([checksum(body)])) + bytes([FLAG])


CMD_START_FLOAT = encode_request(CMD_START, bytes([0x01, FORMAT_FLOAT]))
CMD_READ_VALUES = encode_request(CMD_READ)
CMD_STOP_MEASUREMENT = encode_request(CMD_STOP)


def encode_values(values: dict[str, float]) -> bytes:
    """The 40-byte float payload of a read-measured-values reply."""
    return struct.pack(">10f", *(values.get(k, 0.0) for k in KEYS))


class Decoder:
    """Feed any split of the byte stream; get `Decoded`/`DecodeError` events."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self.counters = FrameCounters()

    def _count(self, name: str) -> None:
        self.counters.extra[name] = self.counters.extra.get(name, 0) + 1

    def feed(self, data: bytes) -> list[Event]:
        self.counters.bytes += len(data)
        buf = self._buf
        buf += data
        events: list[Event] = []
        while buf:
            if buf[0] != FLAG:  # bytes before any flag: a frame whose start we never saw
                start = buf.find(FLAG)
                self.counters.resyncs += 1
                del buf[: start if start >= 0 else len(buf)]
                continue
            end = buf.find(FLAG, 1)
            if end < 0:
                if len(buf) > MAX_SEGMENT + 1:  # too long to be a frame: drop it, hunt again
                    self.counters.resyncs += 1
                    del buf[:]
                break
            segment = bytes(buf[1:end])
            del buf[:end]  # keep the flag: it may open the next frame
            if segment:
                event = self._segment(segment)
                if event is not None:
                    events.append(event)
        return events

    def _segment(self, segment: bytes) -> Event | None:
        frame = destuff(segment)
        if frame is None:
            self.counters.rejected += 1
            return DecodeError("bad_escape", "invalid byte-stuffing escape")
        if len(frame) < 5 or frame[3] != len(frame) - 5:
            self.counters.rejected += 1
            return DecodeError("bad_length", "frame length does not match its LEN byte")
        if checksum(frame[:-1]) != frame[-1]:
            self.counters.checksum_errors += 1
            return DecodeError("checksum", "SHDLC checksum mismatch")
        cmd, state, data = frame[1], frame[2], frame[4:-1]
        if state:
            self.counters.rejected += 1
            return DecodeError("device_error",
                               f"device reported state 0x{state:02X} to command 0x{cmd:02X}")  # fmt: skip
        if cmd != CMD_READ:
            self._count("replies")
            return None
        if not data:
            self._count("no_new_data")
            return None
        if len(data) == FLOAT_LEN:
            floats = struct.unpack(">10f", data)
            values: dict[str, Value] = {k: round(v, 3) for k, v in zip(KEYS, floats, strict=True)}
        elif len(data) == UINT16_LEN:
            words = struct.unpack(">10H", data)
            values = {k: w for k, w in zip(KEYS, words, strict=True)}
            values["typical_size"] = words[-1] / 1000  # nm in the integer format
        else:
            self.counters.rejected += 1
            return DecodeError("bad_length", "measured-values reply is neither 40 nor 20 bytes")
        if any(v != v or v in (float("inf"), float("-inf")) for v in values.values()):
            self.counters.rejected += 1
            return DecodeError("bad_value", "measured values are not finite numbers")
        self.counters.frames_ok += 1
        return Decoded(values)


class Options(DriverOptions):
    interval_s: float = Opt(
        1.0, ge=0.5, le=3600, description="Seconds between reads (the SPS30 updates once a second)."
    )


RETRY_S = 0.1  # after an empty reply, read again this soon (doubling while replies stay empty)


class Poller:
    """Starts measuring (float format) on open, reads the values every `interval_s` (default 1),
    stops on close so the fan and laser rest while the gateway is down.

    Timed (`next_due`): the source wakes it only when a read is due, not on a fixed tick. The
    SPS30 makes a new sample once a second on its own clock and answers a read that comes
    before it with an empty reply; read exactly once a second, some reads would fall just before
    a sample and that second would be lost. So an empty reply (seen in the decoder's counters,
    `no_new_data`) brings the next read forward to RETRY_S later, doubling while the replies
    stay empty, and the reads that follow keep that later phase: they come just after the
    device's samples."""

    def __init__(self, options: Options, decoder: Decoder | None = None) -> None:
        self.interval = options.interval_s
        self.decoder = decoder  # whose counters tell an empty reply (none: plain interval)
        self._next = 0.0
        self._empty = 0  # empty replies seen so far
        self._ok = 0  # replies with values seen so far
        self._retry = RETRY_S

    def on_open(self, now: float) -> list[bytes]:
        self._next = now + self.interval
        self._retry = RETRY_S
        self._empty = self._empties()
        self._ok = self.decoder.counters.frames_ok if self.decoder is not None else 0
        return [CMD_START_FLOAT]

    def _empties(self) -> int:
        return self.decoder.counters.extra.get("no_new_data", 0) if self.decoder is not None else 0

    def due(self, now: float) -> list[bytes]:
        empty = self._empties()
        if empty != self._empty:  # the last read came before the device's new sample
            self._empty = empty
            self._next = min(self._next, now + min(self._retry, self.interval))
            self._retry *= 2
        elif self.decoder is not None and self.decoder.counters.frames_ok != self._ok:
            self._ok = self.decoder.counters.frames_ok  # values came: the phase is right
            self._retry = RETRY_S
        if now < self._next:
            return []
        self._next = max(self._next + self.interval, now)
        return [CMD_READ_VALUES]

    def next_due(self, now: float) -> float:
        """When `due` next has a read to send (an empty reply not yet seen: at once, to look)."""
        return now if self._empties() != self._empty else self._next

    def on_close(self) -> list[bytes]:
        return [CMD_STOP_MEASUREMENT]


def new_session(options: Options) -> tuple[Decoder, Poller]:
    """A decoder and the poller that watches its empty replies: what the serial source runs."""
    decoder = Decoder()
    return decoder, Poller(options, decoder)


class Device:
    """Simulated SPS30: new values once a second while measuring, on its own clock (not timed
    from the reads); an empty reply when none are new; state 0x43 (command not allowed) for a
    read while idle."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.measuring = False
        self._next_sample = 0.0
        self._inbuf = bytearray()
        self.sent: list[dict[str, Value]] = []
        self._pm25 = rng.uniform(3, 30)

    def _values(self) -> dict[str, float]:
        """Values with 3 decimals, below 3000: float32 keeps them exact to 3 decimals."""
        self._pm25 = min(500.0, max(0.0, self._pm25 + self.rng.gauss(0, 1)))
        pm25 = self._pm25
        raw = {
            "pm1_0": pm25 * 0.6, "pm2_5": pm25, "pm4_0": pm25 * 1.2, "pm10": pm25 * 1.3,
            "nc0_5": pm25 * 2.8, "nc1_0": pm25 * 3.9, "nc2_5": pm25 * 4.3, "nc4_0": pm25 * 4.4,
            "nc10": pm25 * 4.5, "typical_size": self.rng.uniform(0.3, 1.5),
        }  # fmt: skip
        return {k: round(v, 3) for k, v in raw.items()}

    def receive(self, data: bytes, now: float) -> bytes:
        self._inbuf += data
        out = b""
        while True:
            start = self._inbuf.find(FLAG)
            if start < 0:
                self._inbuf.clear()
                break
            end = self._inbuf.find(FLAG, start + 1)
            if end < 0:
                del self._inbuf[:start]
                break
            frame = destuff(self._inbuf[start + 1 : end])
            del self._inbuf[: end + 1]
            if frame is None or len(frame) < 4 or frame[2] != len(frame) - 4:
                continue
            if checksum(frame[:-1]) != frame[-1]:
                continue
            out += self._command(frame[1], frame[3:-1], now)
        return out

    def _command(self, cmd: int, data: bytes, now: float) -> bytes:
        if cmd == CMD_START:
            if self.measuring:
                return encode_response(cmd, state=0x43)
            self.measuring = True
            self._next_sample = now + 1.0
            return encode_response(cmd)
        if cmd == CMD_STOP:
            self.measuring = False
            return encode_response(cmd)
        if cmd == CMD_READ:
            if not self.measuring:
                return encode_response(cmd, state=0x43)
            if now < self._next_sample:
                return encode_response(cmd)
            # free-running: a new sample every second on the device's own clock, whenever read
            self._next_sample += 1.0 * (int(now - self._next_sample) + 1)
            values = self._values()
            self.sent.append(dict(values))
            return encode_response(cmd, encode_values(values))
        return encode_response(cmd, state=0x02)  # unknown command

    def tick(self, now: float) -> bytes:
        return b""


DRIVER = SerialDriver(
    name="sps30",
    catalogue=CATALOGUE,
    baud=115200,
    new_decoder=lambda options: Decoder(),
    new_device=Device,
    options=Options,
    new_poller=Poller,
    new_session=new_session,
    doc="docs/drivers/sps30.md",
)
