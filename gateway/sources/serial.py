"""Async serial source: moves bytes between a tty and a sans-I/O driver, nothing else.

pyserial opens the port (non-blocking); the event loop watches its file descriptor. A port that
disappears (USB unplugged, pty closed) raises `SerialException`; the source closes it and
reopens with backoff while the gateway keeps serving its other sensors. Stable paths
(`/dev/serial/by-id/…`) are re-resolved at every open, so a replugged adapter is found again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import serial
from pydantic import Field, field_validator

from firmware_bridge.base import Decoded, DecodeError, PollCounters
from firmware_bridge.driver import PacedPoller, Poller, SerialDriver, TimedPoller
from gateway.configtypes import Strict
from gateway.model import Reading
from gateway.ops.logs import Throttle
from gateway.sources.base import Loc, Runnable, SourceContext, SourceSpec, duplicates
from gateway.sources.stamp import Stamper
from gateway.wakeup import Wakeup

if TYPE_CHECKING:
    from gateway.ops.metrics import Registry
    from gateway.plan import SensorPlan

log = logging.getLogger("gateway.sources.serial")

BACKOFF_MIN = 0.2
BACKOFF_MAX = 30.0
TICK = 0.25  # how often untimed pollers are asked for due commands (timed ones say when themselves)
INBOX_CHUNKS = 64  # reads waiting to be decoded before the port is left unread for a while
IDLE_TICK = 5.0  # listen-only drivers, and timed pollers with nothing due: wake only for data


BAUD_RATES = (1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200, 230400)


class SerialPort(Strict):
    """A sensor's `serial:` section."""

    port: str = Field(description="Prefer a stable path: /dev/serial/by-id/… or /dev/street-gateway/…")
    baud: int | None = Field(None, description="Defaults to the driver's documented baud rate.")

    @field_validator("baud")
    @classmethod
    def _baud(cls, v: int | None) -> int | None:
        if v is not None and v not in BAUD_RATES:
            raise ValueError(f"must be one of {', '.join(map(str, BAUD_RATES))}")
        return v


class SerialSource:
    def __init__(
        self,
        plan: SensorPlan,
        emit: Callable[[Reading], Awaitable[None]],
        metrics: Registry,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not isinstance(plan.driver, SerialDriver) or not isinstance(plan.section, SerialPort):
            raise AssertionError("isinstance(plan.driver, SerialDriver) and isinstance(plan.section, SerialPort)")
        self.plan = plan
        self.name = f"serial-{plan.id}"
        self.driver: SerialDriver = plan.driver
        self.port = plan.section.port
        self.baud = plan.section.baud or plan.driver.baud
        self.emit = emit
        self.clock = clock
        self.decoder, _ = self.driver.session(plan.options)  # replaced at every open
        self.throttle = Throttle()
        self.connected = False
        self.stamper = Stamper()
        sid = plan.id
        self.labels = {"sensor": sid}
        self.m_bytes = metrics.counter("gateway_serial_bytes_total", "Bytes read from the port")
        self.m_frames = metrics.counter("gateway_serial_frames_ok_total", "Frames decoded")
        self.m_errors = metrics.counter(
            "gateway_serial_frame_errors_total", "Frames rejected, by reason"
        )
        self.m_resyncs = metrics.counter("gateway_serial_resyncs_total", "Header hunts")
        self.m_reconnects = metrics.counter("gateway_serial_reconnects_total", "Port reopened")
        self.m_connected = metrics.gauge("gateway_serial_connected", "1 while the port is open")
        self.m_connected.set(0, sensor=self.plan.id)
        self.m_last_seen = metrics.gauge(
            "gateway_sensor_last_seen_timestamp_seconds", "Time of the last good reading"
        )
        self.m_polls = metrics.counter(
            "gateway_poll_requests_total", "Requests to a polled device, by outcome (answered, timeout)"
        )
        self.m_late = metrics.counter(
            "gateway_poll_late_cycles_total", "Poll cycles that started late: the previous one was still running"
        )
        self._polled = PollCounters()  # what has been exported of the current session's counters

    async def run(self) -> None:
        """Supervisor: open, pump, and on any port failure back off and reopen. Never returns."""
        delay = BACKOFF_MIN
        first = True
        while True:
            try:
                ser = serial.Serial(self.port, self.baud, timeout=0, write_timeout=1, exclusive=True)
            except (serial.SerialException, OSError, ValueError) as e:
                if self.throttle.should_log(("open", type(e).__name__), time.monotonic()) is not None:
                    log.warning("serial port unavailable, retrying", extra={"sensor": self.plan.id, "port": self.port, "reason": _why(e)})  # fmt: skip
                await asyncio.sleep(delay * random.uniform(0.8, 1.2))
                delay = min(delay * 2, BACKOFF_MAX)
                continue
            if not first:
                self.m_reconnects.inc(sensor=self.plan.id)
            first = False
            log.info("serial port open", extra={"sensor": self.plan.id, "port": self.port, "baud": self.baud})  # fmt: skip
            self.connected = True
            self.m_connected.set(1, sensor=self.plan.id)
            try:
                await self._pump(ser)
                delay = BACKOFF_MIN
            except (serial.SerialException, OSError) as e:
                log.warning("serial port lost, will reopen", extra={"sensor": self.plan.id, "reason": _why(e)})  # fmt: skip
                delay = BACKOFF_MIN
            finally:
                self.connected = False
                self.m_connected.set(0, sensor=self.plan.id)
                with contextlib.suppress(Exception):
                    ser.close()
            await asyncio.sleep(delay)

    async def _pump(self, ser: serial.Serial) -> None:
        loop = asyncio.get_running_loop()
        fd = ser.fileno()
        readable = Wakeup()  # not asyncio.timeout + Event: see gateway/wakeup.py
        inbox: list[bytes] = []  # what the reader read, for this task to decode
        failed: list[BaseException] = []
        paused: list[bool] = []  # the reader stopped: the inbox is full

        def reader() -> None:
            """Read as soon as the port is readable (not on the task's turn: by then the loop
            has polled again and would call a reader that only set a flag a second time, for
            nothing, and a tty set to return at once reads nothing as 0, like a device gone)."""
            try:
                data = os.read(fd, 4096)  # pyserial opened it non-blocking
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:  # EIO: a pty closed, an adapter pulled
                failed.append(e)
            else:
                if data:
                    inbox.append(data)
                    if len(inbox) >= INBOX_CHUNKS:  # the task is held up (committer full):
                        loop.remove_reader(fd)  # leave the rest in the tty, as before
                        paused.append(True)
                    readable.set()
                    return
                # readable, and nothing: the device is gone (what pyserial's read says too)
                failed.append(serial.SerialException("device reports readiness to read but returned no data"))
            loop.remove_reader(fd)
            readable.set()

        loop.add_reader(fd, reader)
        # a fresh session per open: no half-frame or request in flight survives a replug
        poller: Poller | None
        self.decoder, poller = self.driver.session(self.plan.options)
        timed = poller if isinstance(poller, TimedPoller) else None
        paced = poller if isinstance(poller, PacedPoller) else None
        self._polled = PollCounters()
        try:
            if poller is not None:
                self._send(ser, poller.on_open(time.monotonic()))
            looked = False  # the last turn asked the poller without waiting
            while True:
                wait = IDLE_TICK if poller is None else TICK
                if timed is not None:  # wake exactly when its next request or timeout is due
                    now = time.monotonic()
                    wait = min(IDLE_TICK, max(0.0, timed.next_due(now) - now))
                if wait <= 0 and not looked:
                    # due now (an answer settles a paced poll, an empty reply asks for a
                    # retry): ask at once, without a timer and a turn of the event loop; once
                    # only, so a poller that stays due cannot keep the loop from others
                    looked = True
                    ready = readable.is_set()
                else:
                    looked = False
                    ready = await readable.wait(wait)  # a listen-only driver needs no tick
                if ready:
                    readable.clear()
                    if failed:
                        raise failed[0]
                    data = b"".join(inbox)
                    inbox.clear()
                    if paused:
                        paused.clear()
                        loop.add_reader(fd, reader)
                    if data:
                        await self._handle(data)
                if poller is not None:
                    self._send(ser, poller.due(time.monotonic()))
                if paced is not None:
                    self._count_polls(paced.counters)
        finally:
            loop.remove_reader(fd)
            if poller is not None:  # e.g. SDS011 sleep, SPS30 stop: spare the laser and fan
                with contextlib.suppress(serial.SerialException, OSError):
                    self._send(ser, poller.on_close())

    def _count_polls(self, c: PollCounters) -> None:
        """Export what the poller counted since the last look (answered, timed out, late)."""
        seen, sid = self._polled, self.plan.id
        if c.answered != seen.answered:
            self.m_polls.inc(c.answered - seen.answered, sensor=sid, outcome="answered")
        if c.timeouts != seen.timeouts:
            self.m_polls.inc(c.timeouts - seen.timeouts, sensor=sid, outcome="timeout")
            n = self.throttle.should_log((sid, "poll_timeout"), time.monotonic())
            if n is not None:
                log.warning("polled device did not answer in time", extra={"sensor": sid, "suppressed_since_last": n})  # fmt: skip
        if c.late_cycles != seen.late_cycles:
            self.m_late.inc(c.late_cycles - seen.late_cycles, sensor=sid)
        self._polled = PollCounters(c.requests, c.answered, c.timeouts, c.late_cycles)

    def _send(self, ser: serial.Serial, commands: list[bytes]) -> None:
        for cmd in commands:
            try:  # a command fits the tty's output buffer: one write, without pyserial's select
                n = os.write(ser.fileno(), cmd)
            except BlockingIOError:
                n = 0
            if n < len(cmd):  # the buffer is full: pyserial waits for room, up to write_timeout
                ser.write(cmd[n:])

    async def _handle(self, data: bytes) -> None:
        c = self.decoder.counters
        before = (c.frames_ok, c.checksum_errors, c.resyncs)
        events = self.decoder.feed(data)
        self.m_bytes.inc(len(data), sensor=self.plan.id)
        self.m_resyncs.inc(c.resyncs - before[2], sensor=self.plan.id)
        now = self.clock()
        for ev in events:
            if isinstance(ev, Decoded):
                self.m_frames.inc(sensor=self.plan.id)
                self.m_last_seen.set(now, sensor=self.plan.id)
                t = self.stamper.stamp(self.plan.id, now, ev.device_time)
                await self.emit(Reading(self.plan.id, t, ev.values, ev.flags))
            elif isinstance(ev, DecodeError):
                self.m_errors.inc(reason=ev.reason, sensor=self.plan.id)
                n = self.throttle.should_log((self.plan.id, ev.reason), time.monotonic())
                if n is not None:
                    log.warning("bad serial frame", extra={"sensor": self.plan.id, "reason": ev.reason, "detail": ev.detail, "suppressed_since_last": n})  # fmt: skip


def _why(e: BaseException) -> str:
    """A short reason without pyserial's long messages (which may repeat paths)."""
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    return type(e).__name__


def build(ctx: SourceContext, plans: list[SensorPlan]) -> list[Runnable]:
    return [SerialSource(sp, lambda r: ctx.submit(r, None), ctx.metrics, ctx.clock) for sp in plans]


def describe(section: SerialPort) -> str:
    baud = f" at {section.baud} baud" if section.baud else ""
    return f"serial port {section.port}{baud}"


def check(plan: SensorPlan) -> list[tuple[Loc, str]]:
    if not isinstance(plan.section, SerialPort):
        raise AssertionError("isinstance(plan.section, SerialPort)")
    if not os.path.exists(plan.section.port):
        return [(("serial", "port"),
                 "no such device (is the adapter plugged in? see `ls /dev/serial/by-id/`)")]  # fmt: skip
    return []


def conflicts(plans: list[SensorPlan]) -> list[tuple[str, Loc, str]]:
    def port(sp: SensorPlan) -> str:
        if not isinstance(sp.section, SerialPort):
            raise AssertionError("isinstance(sp.section, SerialPort)")
        return os.path.normpath(sp.section.port)

    return duplicates(plans, port, ("serial", "port"), "this port")


SPEC: SourceSpec = SourceSpec("serial", SerialPort, build, describe, check=check, conflicts=conflicts,
                              doc="docs/sources/serial.md")  # fmt: skip
