"""Plantower PMS5003 / PMS7003 particulate sensor (UART 9600 8N1).

Frame: `42 4D`, big-endian length (28 for data, 4 for command replies), data words, then a
big-endian checksum = sum of all preceding bytes & 0xFFFF. The decoder hunts for the header,
accepts only the two known lengths (never trusts the length field blindly) and, after any
rejected frame, resumes the hunt one byte after the rejected header so that a real frame hidden
inside garbage is still found.
"""

from __future__ import annotations

import math
import random
import struct
from typing import Literal

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
from firmware_bridge.options import DriverOptions, DutyCycle

HEADER = b"\x42\x4d"
DATA_LEN = 28
REPLY_LEN = 4
MAX_BUFFER = 256

# fmt: off
WORDS = (
    "pm1_0_cf1", "pm2_5_cf1", "pm10_cf1", "pm1_0", "pm2_5", "pm10",
    "nc0_3", "nc0_5", "nc1_0", "nc2_5", "nc5_0", "nc10", "reserved",
)
# fmt: on
PUBLISHED = ("pm1_0", "pm2_5", "pm10", "nc0_3", "nc0_5", "nc1_0", "nc2_5", "nc5_0", "nc10")

CMD_PASSIVE = bytes.fromhex("424DE100000170")
CMD_ACTIVE = bytes.fromhex("424DE100010171")
CMD_READ = bytes.fromhex("424DE200000171")
CMD_SLEEP = bytes.fromhex("424DE400000173")
CMD_WAKE = bytes.fromhex("424DE400010174")


def _pm(key: str, size: str) -> Field:
    return Field(key, "ug/m3", ObservationType.MEASUREMENT,
                 f"PM{size} mass concentration (atmospheric environment)", minimum=0, maximum=1000)  # fmt: skip


def _nc(key: str, size: str) -> Field:
    return Field(key, "{particles}/dL", ObservationType.MEASUREMENT,
                 f"Particles larger than {size} um per 0.1 L of air", minimum=0, maximum=65535)  # fmt: skip


CATALOGUE = Catalogue(
    driver="pms5003",
    make="Plantower",
    model="PMS5003/PMS7003",
    description="Laser-scattering particulate matter sensor",
    transport="serial",
    datasheet="Plantower PMS5003 series data manual v2.3",
    fields=(
        _pm("pm1_0", "1"), _pm("pm2_5", "2.5"), _pm("pm10", "10"),
        _nc("nc0_3", "0.3"), _nc("nc0_5", "0.5"), _nc("nc1_0", "1.0"),
        _nc("nc2_5", "2.5"), _nc("nc5_0", "5.0"), _nc("nc10", "10"),
    ),
)


def checksum(data: bytes) -> int:
    return sum(data) & 0xFFFF


def encode_command(cmd: int, data: int) -> bytes:
    body = HEADER + bytes([cmd]) + data.to_bytes(2, "big")
    return body + checksum(body).to_bytes(2, "big")


def encode_frame(words: dict[str, int]) -> bytes:
    """Build a data frame, as the sensor would send it."""
    body = HEADER + DATA_LEN.to_bytes(2, "big")
    body += struct.pack(">13H", *(words.get(w, 0) & 0xFFFF for w in WORDS))
    return body + checksum(body).to_bytes(2, "big")


class Decoder:
    """Feed any split of the byte stream; get `Decoded`/`DecodeError` events."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self.counters = FrameCounters()

    def feed(self, data: bytes) -> list[Event]:
        self.counters.bytes += len(data)
        self._buf += data
        events: list[Event] = []
        buf = self._buf
        while True:
            start = buf.find(HEADER)
            if start < 0:
                # keep a trailing 0x42 that may start the next header
                keep = 1 if buf.endswith(b"\x42") else 0
                if len(buf) > keep:
                    self.counters.resyncs += 1
                del buf[: len(buf) - keep]
                break
            if start > 0:
                self.counters.resyncs += 1
                del buf[:start]
            if len(buf) < 4:
                break
            length = int.from_bytes(buf[2:4], "big")
            if length not in (DATA_LEN, REPLY_LEN):
                self.counters.rejected += 1
                events.append(DecodeError("bad_length", f"frame length field {length} is not 28 or 4"))
                del buf[:1]
                continue
            total = 4 + length
            if len(buf) < total:
                break
            frame = bytes(buf[:total])
            expected = int.from_bytes(frame[-2:], "big")
            if checksum(frame[:-2]) != expected:
                self.counters.checksum_errors += 1
                events.append(DecodeError("checksum", "frame checksum mismatch"))
                del buf[:1]
                continue
            del buf[:total]
            if length == REPLY_LEN:
                self.counters.extra["replies"] = self.counters.extra.get("replies", 0) + 1
                continue
            self.counters.frames_ok += 1
            events.append(_decode_data(frame))
        if len(buf) > MAX_BUFFER:  # unreachable with the length check, kept as a hard bound
            del buf[:-MAX_BUFFER]
        return events


def _decode_data(frame: bytes) -> Decoded:
    words = struct.unpack(">13H", frame[4:30])
    named = dict(zip(WORDS, words, strict=True))
    values: dict[str, Value] = {k: named[k] for k in PUBLISHED}
    return Decoded(values)


class Options(DriverOptions):
    mode: Literal["active", "passive"] = Opt(
        "active", description="active: the sensor sends every ~1 s; passive: the gateway asks."
    )
    interval_s: float = Opt(1.0, ge=0.2, le=3600, description="Passive mode: seconds between reads.")
    duty_cycle: DutyCycle | None = Opt(None, description="Sleep between bursts to extend life.")


class Poller:
    """`mode: active` (default) listens; `mode: passive` asks for a frame every `interval_s`.
    `duty_cycle: {work_s, sleep_s}` sleeps the fan and laser between bursts to extend their life."""

    def __init__(self, options: Options) -> None:
        self.passive = options.mode == "passive"
        self.interval = options.interval_s
        self.work_s = options.duty_cycle.work_s if options.duty_cycle else 0.0
        self.sleep_s = options.duty_cycle.sleep_s if options.duty_cycle else 0.0
        self._next_read = 0.0
        self._phase_end = 0.0
        self._asleep = False

    def on_open(self, now: float) -> list[bytes]:
        self._next_read = now + self.interval
        self._phase_end = now + self.work_s
        return [CMD_WAKE, CMD_PASSIVE if self.passive else CMD_ACTIVE]

    def due(self, now: float) -> list[bytes]:
        out: list[bytes] = []
        if self.work_s > 0 and self.sleep_s > 0 and now >= self._phase_end:
            self._asleep = not self._asleep
            self._phase_end = now + (self.sleep_s if self._asleep else self.work_s)
            out.append(CMD_SLEEP if self._asleep else CMD_WAKE)
        if self.passive and not self._asleep and now >= self._next_read:
            self._next_read = now + self.interval
            out.append(CMD_READ)
        return out

    def next_due(self, now: float) -> float:
        """When `due` next has a command (`TimedPoller`): active and awake, never (inf)."""
        due = self._phase_end if self.work_s > 0 and self.sleep_s > 0 else math.inf
        if self.passive and not self._asleep:
            due = min(due, self._next_read)
        return due

    def on_close(self) -> list[bytes]:
        return []


class Device:
    """Simulated PMS5003: active mode by default, honours passive/read/sleep/wake commands."""

    def __init__(self, rng: random.Random, period_s: float = 1.0) -> None:
        self.rng = rng
        self.period = period_s
        self.active = True
        self.asleep = False
        self._next = 0.0
        self._inbuf = bytearray()
        self.sent: list[dict[str, Value]] = []
        self._pm25 = rng.uniform(4, 20)

    def _frame(self) -> bytes:
        self._pm25 = max(0.0, self._pm25 + self.rng.gauss(0, 1.5))
        pm25 = round(self._pm25)
        words = {
            "pm1_0": max(0, pm25 - self.rng.randint(0, 3)), "pm2_5": pm25,
            "pm10": pm25 + self.rng.randint(0, 8), "nc0_3": 100 * pm25 + self.rng.randint(0, 99),
            "nc0_5": 30 * pm25, "nc1_0": 5 * pm25, "nc2_5": pm25, "nc5_0": pm25 // 4, "nc10": pm25 // 8,
        }  # fmt: skip
        for k in ("pm1_0_cf1", "pm2_5_cf1", "pm10_cf1"):
            words[k] = words[k.removesuffix("_cf1")]
        self.sent.append({k: words[k] for k in PUBLISHED})
        return encode_frame(words)

    def receive(self, data: bytes, now: float) -> bytes:
        self._inbuf += data
        out = b""
        while len(self._inbuf) >= 7:
            i = self._inbuf.find(HEADER)
            if i < 0:
                self._inbuf.clear()
                break
            del self._inbuf[:i]
            if len(self._inbuf) < 7:
                break
            cmd = bytes(self._inbuf[:7])
            del self._inbuf[:7]
            if checksum(cmd[:5]) != int.from_bytes(cmd[5:7], "big"):
                continue
            code, arg = cmd[2], cmd[4]
            if code == 0xE1:
                self.active = arg == 1
                out += encode_reply(0xE1, arg)
            elif code == 0xE2 and not self.asleep:
                out += self._frame()
            elif code == 0xE4:
                self.asleep = arg == 0
                if self.asleep:
                    out += encode_reply(0xE4, 0)
                self._next = now + 2.0  # fan spin-up before the first frame after waking
        return out

    def tick(self, now: float) -> bytes:
        if not self.active or self.asleep:
            return b""
        if self._next == 0.0:
            self._next = now
        out = b""
        while now >= self._next:
            out += self._frame()
            self._next += self.period
        return out


def encode_reply(cmd: int, arg: int) -> bytes:
    body = HEADER + b"\x00\x04" + bytes([cmd, arg])
    return body + checksum(body).to_bytes(2, "big")


DRIVER = SerialDriver(
    name="pms5003",
    catalogue=CATALOGUE,
    baud=9600,
    new_decoder=lambda options: Decoder(),
    new_device=Device,
    options=Options,
    new_poller=Poller,
    aliases=("pms7003",),
    doc="docs/drivers/pms5003.md",
)
