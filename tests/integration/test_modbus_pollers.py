"""The Modbus pollers (SenseAir S8, Eastron SDM120 and SDM630) against a real Modbus RTU slave:
pymodbus's serial server, the maintained library of the other side, on a pseudo-terminal.

The gateway's real serial source opens one pty, pymodbus's `ModbusSerialServer` the other; a
relay thread carries the bytes between the two masters, as a USB-RS485 adapter and its cable
would. Each poller runs at the shortest `interval_s` its options allow (the docs' floor), and
every register block must be read in every cycle, in order, answered, with nothing counted as
timed out or late. The values decoded are the ones the slave holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import struct
import threading
import time
import tty
from pathlib import Path
from typing import Any

import pytest
from pymodbus.server import ModbusSerialServer  # test extras: the other side's library
from pymodbus.simulator import DataType, SimData, SimDevice

from firmware_bridge import modbus
from firmware_bridge.drivers import eastron_sdm as sdm
from firmware_bridge.drivers import senseair_s8 as s8
from gateway.config import parse_config
from gateway.model import Reading
from gateway.ops.metrics import Registry
from gateway.plan import build_plan
from gateway.sources.serial import SerialSource

pytestmark = pytest.mark.integration


class PtyCable:
    """Two pseudo-terminals joined back to back: what one side writes, the other reads."""

    def __init__(self, tmp: Path) -> None:
        self.ends: list[tuple[int, Path]] = []
        for name in ("gateway", "slave"):
            master, slave = os.openpty()
            tty.setraw(slave)
            link = tmp / f"tty-{name}"
            os.symlink(os.ttyname(slave), link)
            os.close(slave)
            self.ends.append((master, link))
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._relay, daemon=True)
        self.thread.start()

    @property
    def gateway_port(self) -> Path:
        return self.ends[0][1]

    @property
    def slave_port(self) -> Path:
        return self.ends[1][1]

    def _relay(self) -> None:
        """Non-blocking both ways, with what the far end has not taken yet kept in order: a
        blocking write to a pty whose other side is not open (yet) would stall the cable."""
        (a, _), (b, _) = self.ends
        for fd in (a, b):
            os.set_blocking(fd, False)
        peer = {a: b, b: a}
        pending = {a: bytearray(), b: bytearray()}  # bytes waiting to be written to that fd
        while not self._stop.is_set():
            writers = [fd for fd, buf in pending.items() if buf]
            ready, writable, _ = select.select([a, b], writers, [], 0.05)
            hung_up = False
            for fd in writable:
                try:
                    del pending[fd][: os.write(fd, pending[fd])]
                except BlockingIOError:
                    pass
                except OSError:  # nobody at that end: the bytes fall off the cable
                    pending[fd].clear()
                    hung_up = True
            for fd in ready:
                try:
                    data = os.read(fd, 4096)
                except BlockingIOError:
                    continue
                except OSError:  # that end is not open (yet): a hang-up, not data
                    hung_up = True
                    continue
                pending[peer[fd]] += data
            if hung_up:  # a hung-up master stays "readable": do not spin on it
                time.sleep(0.005)

    def close(self) -> None:
        self._stop.set()
        self.thread.join(2)
        for fd, _ in self.ends:
            os.close(fd)


def registers_of_floats(values: dict[int, float], size: int) -> list[int]:
    regs = [0] * size
    for address, value in values.items():
        hi, lo = struct.unpack(">HH", struct.pack(">f", value))
        regs[address], regs[address + 1] = hi, lo
    return regs


SDM_VALUES = {0x0000: 231.4, 0x0006: 12.25, 0x000C: 2800.5, 0x002A: 230.9, 0x0030: 36.75,
              0x0034: 8400.5, 0x0046: 50.01, 0x0048: 1234.5, 0x0156: 1235.75}  # fmt: skip
CASES = {
    # name: (driver, options, slave id, input registers, blocks in order, seconds to run)
    "senseair_s8": ("senseair_s8", {"interval_s": s8.MIN_INTERVAL_S}, s8.ANY_ADDRESS,
                    [0, 0, 0, 612], [(0x0000, 4)], 4.0),
    "sdm120": ("eastron_sdm", {"model": "sdm120", "interval_s": 0.9, "address": 7}, 7,
               registers_of_floats(SDM_VALUES, 0x0158), [(b.start, b.count) for b in sdm.PLANS["sdm120"]], 7.0),
    "sdm630": ("eastron_sdm", {"model": "sdm630", "interval_s": 0.9, "address": 7}, 7,
               registers_of_floats(SDM_VALUES, 0x0158), [(b.start, b.count) for b in sdm.PLANS["sdm630"]], 7.0),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_register_block_is_read_every_cycle_at_the_shortest_interval(tmp_path: Path, case: str) -> None:
    driver, options, slave_id, regs, blocks, seconds = CASES[case]
    cable = PtyCable(tmp_path)
    requests: list[tuple[int, int]] = []  # (start, count) of every request the slave received

    def trace(sending: bool, data: bytes) -> bytes:
        if not sending and (parsed := modbus.parse_request(bytes(data))) is not None:
            requests.append((parsed[2], parsed[3]))
        return data

    opts = ", ".join(f"{k}: {v}" for k, v in options.items())
    cfg = parse_config(f"""
gateway: {{id: modbus-gw, borough: camden, location: {{lat: 51.5, lon: -0.14}}, data_dir: '{tmp_path}'}}
sensors:
  - {{id: meter, driver: {driver}, serial: {{port: '{cable.gateway_port}'}}, options: {{{opts}}}}}
sinks: {{file: {{}}}}
""", "t.yaml", {})  # fmt: skip
    plan = build_plan(cfg).sensors["meter"]
    readings: list[Reading] = []
    metrics = Registry()

    async def emit(r: Reading) -> None:
        readings.append(r)

    async def main() -> None:
        device = SimDevice(slave_id, simdata=[SimData(0, values=regs, datatype=DataType.UINT16)])
        server = ModbusSerialServer(device, port=str(cable.slave_port), baudrate=9600, trace_packet=trace)
        serving = asyncio.create_task(server.serve_forever())
        await asyncio.sleep(0.5)  # the slave opens its port
        source = SerialSource(plan, emit, metrics)
        task = asyncio.create_task(source.run())
        await asyncio.sleep(seconds)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await server.shutdown()
        serving.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await serving

    try:
        asyncio.run(main())
    finally:
        cable.close()

    cycles = len(requests) // len(blocks)
    assert cycles >= 3, f"only {len(requests)} requests reached the slave"
    assert requests[: cycles * len(blocks)] == blocks * cycles, "every block, every cycle, in order"
    polls = metrics.counter("gateway_poll_requests_total", "")
    answered = polls.get(sensor="meter", outcome="answered")
    timeouts = polls.get(sensor="meter", outcome="timeout")
    late = metrics.counter("gateway_poll_late_cycles_total", "").get(sensor="meter")
    print(f"{case}: {cycles} cycles at interval_s {options['interval_s']}, {len(requests)} requests, "
          f"{answered:g} answered, {timeouts:g} timed out, {late:g} late cycles")  # fmt: skip
    assert answered >= len(requests) - 1 and timeouts == 0 and late == 0
    # one reading per answered block, with the slave's values
    assert len(readings) == answered
    values: dict[str, Any] = {}
    for r in readings:
        values.update(r.values)
    if driver == "senseair_s8":
        assert values == {"co2": 612}
    else:
        total = {"sdm120": SDM_VALUES[0x0000], "sdm630": SDM_VALUES[0x002A]}[case]
        assert values["voltage"] == total and values["energy_total"] == 1235.75 and values["frequency"] == 50.01
        full_cycles = sum(1 for r in readings if "energy_total" in r.values)
        assert full_cycles >= cycles - 1, "the last block (0x0156) read every cycle"
