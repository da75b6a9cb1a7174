"""Nova Fitness SDS011 particulate sensor (UART 9600 8N1).

Frames are 10 bytes: `AA C0 PM25L PM25H PM10L PM10H ID1 ID2 CHK AB` for data (values
little-endian in 0.1 ug/m3) and `AA C5 ...` for command replies; CHK = sum(bytes 2..7) & 0xFF.
The device ID bytes identify the unit, not a person, but are not published: no field carries them.

Warm-up: the laser needs about 30 s after waking before readings are valid. The decoder cannot
see time, so it uses the device's own echoes: after the reply to "set work", the next
WARMUP_FRAMES data frames are flagged "warm_up" when the sensor is in active mode (it then sends
one frame a second with the working period the Poller sets to continuous). In query mode the
Poller, which has the clock, simply sends no query until `warmup_s` after waking.
"""

from __future__ import annotations

import math
import random
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

HEAD = 0xAA
TAIL = 0xAB
DATA = 0xC0
REPLY = 0xC5
COMMAND = 0xB4
FRAME_LEN = 10
COMMAND_LEN = 19
ALL_SENSORS = 0xFFFF
MAX_BUFFER = 256
WARMUP_FRAMES = 30  # active mode sends one frame a second
DEFAULT_WARMUP_S = 30.0

CMD_REPORT_MODE = 0x02
CMD_QUERY_DATA = 0x04
CMD_SLEEP_WORK = 0x06
CMD_FIRMWARE = 0x07
CMD_WORKING_PERIOD = 0x08

CATALOGUE = Catalogue(
    driver="sds011",
    make="Nova Fitness",
    model="SDS011",
    description="Laser-scattering particulate matter sensor",
    transport="serial",
    datasheet="Nova Fitness SDS011 laser dust sensor control protocol v1.3",
    fields=(
        Field("pm2_5", "ug/m3", ObservationType.MEASUREMENT, "PM2.5 mass concentration",
              minimum=0, maximum=999.9),
        Field("pm10", "ug/m3", ObservationType.MEASUREMENT, "PM10 mass concentration",
              minimum=0, maximum=999.9),
    ),
)


def checksum(data: bytes | bytearray) -> int:
    return sum(data) & 0xFF


def encode_command(cmd: int, data: bytes = b"", device_id: int = ALL_SENSORS) -> bytes:
    """A 19-byte host command: AA B4 CMD d1..d12 IDH IDL CHK AB (data zero-padded)."""
    if len(data) > 12:
        raise ValueError("at most 12 data bytes")
    body = bytes([cmd]) + data.ljust(12, b"\x00") + device_id.to_bytes(2, "big")
    return bytes([HEAD, COMMAND]) + body + bytes([checksum(body), TAIL])


def cmd_report_mode(query: bool) -> bytes:
    return encode_command(CMD_REPORT_MODE, bytes([1, 1 if query else 0]))


def cmd_sleep_work(work: bool) -> bytes:
    return encode_command(CMD_SLEEP_WORK, bytes([1, 1 if work else 0]))


def cmd_working_period(minutes: int) -> bytes:
    """0 = continuous (one frame a second); n = 30 s of work every n minutes (kept in flash)."""
    if not 0 <= minutes <= 30:
        raise ValueError("working period is 0..30 minutes")
    return encode_command(CMD_WORKING_PERIOD, bytes([1, minutes]))


CMD_QUERY = encode_command(CMD_QUERY_DATA)
CMD_ACTIVE = cmd_report_mode(False)
CMD_QUERY_MODE = cmd_report_mode(True)
CMD_SLEEP = cmd_sleep_work(False)
CMD_WORK = cmd_sleep_work(True)
CMD_CONTINUOUS = cmd_working_period(0)


def _frame(kind: int, payload: bytes) -> bytes:
    return bytes([HEAD, kind]) + payload + bytes([checksum(payload), TAIL])


def encode_frame(pm2_5_tenths: int, pm10_tenths: int, device_id: int = 0xA160) -> bytes:
    """Build a data frame, as the sensor would send it."""
    payload = (pm2_5_tenths.to_bytes(2, "little") + pm10_tenths.to_bytes(2, "little")
               + device_id.to_bytes(2, "big"))  # fmt: skip
    return _frame(DATA, payload)


def encode_reply(cmd: int, d2: int = 0, d3: int = 0, d4: int = 0, device_id: int = 0xA160) -> bytes:
    return _frame(REPLY, bytes([cmd, d2, d3, d4]) + device_id.to_bytes(2, "big"))


class Decoder:
    """Feed any split of the byte stream; get `Decoded`/`DecodeError` events."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self.counters = FrameCounters()
        self._query_mode = False
        self._warm_left = 0

    def _reject(self, reason: str, detail: str) -> DecodeError:
        del self._buf[:1]
        if reason == "checksum":
            self.counters.checksum_errors += 1
        else:
            self.counters.rejected += 1
        return DecodeError(reason, detail)

    def feed(self, data: bytes) -> list[Event]:
        self.counters.bytes += len(data)
        buf = self._buf
        buf += data
        events: list[Event] = []
        while True:
            start = buf.find(HEAD)
            if start != 0:
                if start < 0:
                    start = len(buf)
                if start:
                    self.counters.resyncs += 1
                    del buf[:start]
            if len(buf) < 2:
                break
            if buf[1] not in (DATA, REPLY):
                self.counters.resyncs += 1
                del buf[:1]
                continue
            if len(buf) < FRAME_LEN:
                break
            if buf[9] != TAIL:
                events.append(self._reject("bad_tail", "frame does not end with 0xAB"))
                continue
            if checksum(buf[2:8]) != buf[8]:
                events.append(self._reject("checksum", "frame checksum mismatch"))
                continue
            frame = bytes(buf[:FRAME_LEN])
            del buf[:FRAME_LEN]
            if frame[1] == REPLY:
                self._reply(frame)
                continue
            self.counters.frames_ok += 1
            flags: tuple[str, ...] = ()
            if self._warm_left > 0:
                self._warm_left -= 1
                flags = ("warm_up",)
            pm25 = int.from_bytes(frame[2:4], "little") / 10
            pm10 = int.from_bytes(frame[4:6], "little") / 10
            events.append(Decoded({"pm2_5": pm25, "pm10": pm10}, flags=flags))
        if len(buf) > MAX_BUFFER:  # unreachable: frames are fixed length; kept as a hard bound
            del buf[:-MAX_BUFFER]
        return events

    def _reply(self, frame: bytes) -> None:
        """Count a command reply and follow the mode and wake echoes for the warm-up flag."""
        self.counters.extra["replies"] = self.counters.extra.get("replies", 0) + 1
        cmd, is_set, value = frame[2], frame[3], frame[4]
        if cmd == CMD_REPORT_MODE and is_set == 1:
            self._query_mode = value == 1
            if self._query_mode:  # queried frames come after the Poller's own warm-up wait
                self._warm_left = 0
        elif cmd == CMD_SLEEP_WORK and is_set == 1:
            self._warm_left = WARMUP_FRAMES if value == 1 and not self._query_mode else 0


class Options(DriverOptions):
    mode: Literal["active", "query"] = Opt(
        "active", description="active: the sensor reports every second; query: the gateway asks."
    )
    interval_s: float = Opt(
        5.0, ge=0.2, le=3600,
        description="Query mode: seconds between queries (the SDS011 updates once a second).",
    )  # fmt: skip
    warmup_s: float = Opt(
        DEFAULT_WARMUP_S, ge=0, le=600, description="Query mode: no query this long after waking."
    )
    duty_cycle: DutyCycle | None = Opt(None, description="Sleep between bursts to extend life.")


class Poller:
    """`mode: active` (default) listens; `mode: query` asks every `interval_s` (default 5).
    `duty_cycle: {work_s, sleep_s}` sleeps the laser and fan between bursts so they last years;
    in query mode no query is sent during the first `warmup_s` (default 30) after waking."""

    def __init__(self, options: Options) -> None:
        self.query = options.mode == "query"
        self.interval = options.interval_s
        self.warmup = options.warmup_s
        self.work_s = options.duty_cycle.work_s if options.duty_cycle else 0.0
        self.sleep_s = options.duty_cycle.sleep_s if options.duty_cycle else 0.0
        self._next_read = 0.0
        self._phase_end = 0.0
        self._asleep = False

    @property
    def duty_cycled(self) -> bool:
        return self.work_s > 0 and self.sleep_s > 0

    def _wake(self, now: float) -> None:
        self._asleep = False
        self._phase_end = now + self.work_s
        self._next_read = now + self.warmup

    def on_open(self, now: float) -> list[bytes]:
        self._wake(now)
        mode = CMD_QUERY_MODE if self.query else CMD_ACTIVE
        # wake first: asleep, the sensor ignores every other command
        return [CMD_WORK, mode, CMD_CONTINUOUS]

    def due(self, now: float) -> list[bytes]:
        out: list[bytes] = []
        if self.duty_cycled and now >= self._phase_end:
            if self._asleep:
                self._wake(now)
                out.append(CMD_WORK)
            else:
                self._asleep = True
                self._phase_end = now + self.sleep_s
                out.append(CMD_SLEEP)
        if self.query and not self._asleep and now >= self._next_read:
            self._next_read = max(self._next_read + self.interval, now)
            out.append(CMD_QUERY)
        return out

    def next_due(self, now: float) -> float:
        """When `due` next has a command (`TimedPoller`): active and awake, never (inf)."""
        due = self._phase_end if self.duty_cycled else math.inf
        if self.query and not self._asleep:
            due = min(due, self._next_read)
        return due

    def on_close(self) -> list[bytes]:
        return [CMD_SLEEP]  # a stopped gateway should not burn the laser


class Device:
    """Simulated SDS011: active mode by default; honours report mode, query, sleep/work,
    working period and firmware-version commands. Asleep, it answers only "set work"."""

    def __init__(self, rng: random.Random, device_id: int = 0xA160) -> None:
        self.rng = rng
        self.device_id = device_id
        self.query_mode = False
        self.asleep = False
        self.period_min = 0
        self._next = 0.0
        self._inbuf = bytearray()
        self.sent: list[dict[str, Value]] = []
        self._pm25 = rng.uniform(30, 200)  # tenths

    def _frame(self) -> bytes:
        self._pm25 = min(9999.0, max(0.0, self._pm25 + self.rng.gauss(0, 15)))
        pm25 = round(self._pm25)
        pm10 = min(9999, pm25 + self.rng.randint(0, 150))
        self.sent.append({"pm2_5": pm25 / 10, "pm10": pm10 / 10})
        return encode_frame(pm25, pm10, self.device_id)

    def _reply(self, cmd: int, d2: int = 0, d3: int = 0, d4: int = 0) -> bytes:
        return encode_reply(cmd, d2, d3, d4, self.device_id)

    def receive(self, data: bytes, now: float) -> bytes:
        self._inbuf += data
        out = b""
        while True:
            i = self._inbuf.find(bytes([HEAD, COMMAND]))
            if i < 0:
                del self._inbuf[:-1]
                break
            del self._inbuf[:i]
            if len(self._inbuf) < COMMAND_LEN:
                break
            cmd = bytes(self._inbuf[:COMMAND_LEN])
            if cmd[18] != TAIL or checksum(cmd[2:17]) != cmd[17]:
                del self._inbuf[:1]
                continue
            del self._inbuf[:COMMAND_LEN]
            if int.from_bytes(cmd[15:17], "big") not in (ALL_SENSORS, self.device_id):
                continue
            out += self._command(cmd[2], cmd[3], cmd[4], now)
        return out

    def _command(self, code: int, is_set: int, value: int, now: float) -> bytes:
        if self.asleep and code != CMD_SLEEP_WORK:
            return b""
        if code == CMD_REPORT_MODE:
            if is_set:
                self.query_mode = value == 1
            return self._reply(code, is_set, int(self.query_mode))
        if code == CMD_QUERY_DATA:
            return self._frame()
        if code == CMD_SLEEP_WORK:
            if is_set:
                if self.asleep and value == 1:
                    self._next = now + 1.0
                self.asleep = value == 0
            return self._reply(code, is_set, int(not self.asleep))
        if code == CMD_WORKING_PERIOD:
            if is_set:
                self.period_min = value
            return self._reply(code, is_set, self.period_min)
        if code == CMD_FIRMWARE:
            return self._reply(code, 15, 7, 10)
        return b""

    def tick(self, now: float) -> bytes:
        if self.query_mode or self.asleep:
            return b""
        if self._next == 0.0:
            self._next = now
        period = 1.0 if self.period_min == 0 else 60.0 * self.period_min
        out = b""
        while now >= self._next:
            out += self._frame()
            self._next += period
        return out


DRIVER = SerialDriver(
    name="sds011",
    catalogue=CATALOGUE,
    baud=9600,
    new_decoder=lambda options: Decoder(),
    new_device=Device,
    options=Options,
    new_poller=Poller,
    doc="docs/drivers/sds011.md",
)
