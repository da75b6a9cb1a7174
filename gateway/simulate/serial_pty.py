"""Simulated serial devices on real pseudo-terminals.

Each simulator owns a pty pair and a stable symlink (like `/dev/serial/by-id/…`) that points at
the current slave. `unplug()` closes the master, exactly what a pulled USB adapter looks like to
pyserial; `replug()` makes a new pty and re-points the symlink. The device model (pure, from the
driver module) answers commands and emits frames.

Like a USB-serial adapter, bytes reach the host only while the host has the port open: the
simulator keeps no slave descriptor of its own and watches the master for hang-up (no slave
open). `delivered` lists exactly the frames written while the host was listening.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import select
import time
import tty
from pathlib import Path

from firmware_bridge.base import Value
from firmware_bridge.driver import SerialDriver, SimulatedDevice


class PtyDevice:
    def __init__(
        self,
        driver: SerialDriver,
        link: Path,
        *,
        seed: int = 0,
        noise: float = 0.0,
        device: SimulatedDevice | None = None,
    ) -> None:
        self.driver = driver
        self.link = link
        self.rng = random.Random(seed)
        self.device = device if device is not None else driver.new_device(self.rng)
        self.noise = noise  # probability per chunk of injecting garbage bytes
        self.master: int | None = None
        self.slave: int | None = None
        self.delivered: list[dict[str, Value]] = []  # values of frames written while plugged in
        self._task: asyncio.Task[None] | None = None
        self._acked = 0  # how many of device.sent have been accounted for

    @property
    def plugged(self) -> bool:
        return self.master is not None

    def plug(self) -> None:
        master, slave = os.openpty()
        tty.setraw(slave)  # no echo, no line discipline: bytes pass unchanged, as on a real UART
        os.set_blocking(master, False)
        self.master = master
        tmp = self.link.with_name(self.link.name + ".tmp")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        os.symlink(os.ttyname(slave), tmp)
        os.replace(tmp, self.link)
        os.close(slave)  # the host opens it; until then the master reports hang-up

    def unplug(self) -> None:
        if self.master is not None:
            with contextlib.suppress(OSError):
                os.close(self.master)
        self.master = None

    def remove_link(self) -> None:
        """Remove the symlink (if it is still ours: a symlink), as the by-id link of an adapter
        that is gone; the simulator's owner calls it on every way out."""
        for path in (self.link, self.link.with_name(self.link.name + ".tmp")):
            if path.is_symlink():
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()

    def replug(self) -> None:
        self.unplug()
        self.plug()

    def host_listening(self) -> bool:
        """True while some process has the slave open (the master is not hung up)."""
        if self.master is None:
            return False
        p = select.poll()
        p.register(self.master, select.POLLIN | select.POLLHUP)
        return all(not ev & select.POLLHUP for _, ev in p.poll(0))

    def _read_commands(self) -> None:
        if self.master is None:
            raise AssertionError("self.master is not None")
        try:
            data = os.read(self.master, 4096)
        except OSError:
            return
        if data:
            self._write(self.device.receive(data, time.monotonic()))

    def _write(self, data: bytes) -> None:
        new = self.device.sent[self._acked :]
        self._acked = len(self.device.sent)
        if not data or self.master is None:
            return
        if self.noise and self.rng.random() < self.noise:
            data = bytes(self.rng.getrandbits(8) for _ in range(self.rng.randint(1, 12))) + data
        try:
            written = os.write(self.master, data)
        except OSError:
            return
        if written == len(data):
            self.delivered.extend(new)

    def step(self) -> None:
        """One simulation step: answer commands, emit due frames (if the host listens)."""
        now = time.monotonic()
        if self.host_listening():
            self._read_commands()
            self._write(self.device.tick(now))
        else:
            self.device.tick(now)  # the sensor keeps talking; nobody hears it
            self._acked = len(self.device.sent)

    async def run(self, period: float = 0.02) -> None:
        """Plug in and emit frames until cancelled."""
        if not self.plugged:
            self.plug()
        try:
            while True:
                self.step()
                await asyncio.sleep(period)
        finally:
            self.unplug()

    def start(self) -> asyncio.Task[None]:
        self._task = asyncio.create_task(self.run())
        return self._task

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
