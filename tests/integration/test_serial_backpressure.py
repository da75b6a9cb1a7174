"""The serial source reads its port as soon as it is readable (in the event loop's reader, not on
the source task's turn), so it must stop reading while its task is held up: a full committer
queue makes `emit` wait, and the bytes must then wait in the tty, not pile up in the gateway's
memory. Once the task moves again, every frame the device sent arrives, in order.

A real pty: the test writes PMS5003 frames (the driver's own encoder) to the master without
blocking; a master whose writes start to fail with EAGAIN is a tty that nobody reads. A source
that kept reading into memory would take all of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tty
from pathlib import Path

import pytest

from firmware_bridge.drivers import pms5003
from gateway.config import parse_config
from gateway.model import Reading
from gateway.ops.metrics import Registry
from gateway.plan import build_plan
from gateway.sources.serial import SerialSource

pytestmark = pytest.mark.integration

FRAMES = 6000  # 192 KB: more than a pty holds unread (its buffer) plus the source's inbox
BURST = 8  # frames per write


def test_a_held_up_source_leaves_the_bytes_in_the_tty_and_then_loses_none(tmp_path: Path) -> None:
    master, slave = os.openpty()
    tty.setraw(slave)
    link = tmp_path / "tty-pms"
    os.symlink(os.ttyname(slave), link)
    os.close(slave)
    os.set_blocking(master, False)
    cfg = parse_config(f"""
gateway: {{id: bp-gw, borough: camden, location: {{lat: 51.5, lon: -0.14}}, data_dir: '{tmp_path}'}}
sensors:
  - {{id: pm, driver: pms5003, serial: {{port: '{link}'}}}}
sinks: {{file: {{}}}}
""", "t.yaml", {})  # fmt: skip
    plan = build_plan(cfg).sensors["pm"]
    frames = [pms5003.encode_frame({"pm2_5": i % 1000, "pm10": i // 1000}) for i in range(FRAMES)]
    readings: list[Reading] = []
    held = asyncio.Event()

    async def emit(r: Reading) -> None:
        await held.wait()  # the committer's queue is full
        readings.append(r)

    async def main() -> int:
        source = SerialSource(plan, emit, Registry())
        task = asyncio.create_task(source.run())
        while not source.connected:
            await asyncio.sleep(0.01)
        sent = 0
        stalled = 0
        while sent < FRAMES and stalled < 50:  # written until the tty refuses for 0.5 s
            try:
                n = os.write(master, b"".join(frames[sent : sent + BURST]))
            except BlockingIOError:
                stalled += 1
                await asyncio.sleep(0.01)
                continue
            assert n % len(frames[0]) == 0, "a pty takes whole small writes or none"
            sent += n // len(frames[0])
            stalled = 0
            await asyncio.sleep(0)  # the source's reader gets its turn
        refused_at = sent
        held.set()
        while sent < FRAMES:
            try:
                sent += os.write(master, b"".join(frames[sent : sent + BURST])) // len(frames[0])
            except BlockingIOError:
                await asyncio.sleep(0.01)
        for _ in range(1000):
            if len(readings) >= FRAMES:
                break
            await asyncio.sleep(0.01)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return refused_at

    try:
        refused_at = asyncio.run(main())
    finally:
        os.close(master)
    print(f"the tty refused more after {refused_at} of {FRAMES} frames while the source was held up")
    assert refused_at < FRAMES, "the held-up source kept reading the port into memory"
    assert [(r.values["pm2_5"], r.values["pm10"]) for r in readings] == [(i % 1000, i // 1000) for i in range(FRAMES)]
