"""Simulated MQTT street devices and an embedded broker for the demo.

Each device publishes what its driver's `simulate()` says a real one would, QoS 1, to the local
broker. The broker is Mosquitto when the binary is installed, otherwise amqtt in-process, so
`street-gateway demo` needs nothing beyond `pip install`.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import aiomqtt

from firmware_bridge.driver import MessageDriver
from gateway.mqttconn import QuietLossClient


class MqttDevice:
    def __init__(self, driver: MessageDriver, topic: str, host: str, port: int, *, seed: int = 0,
                 period_s: float = 2.0) -> None:  # fmt: skip
        self.driver = driver
        self.topic = topic
        self.host, self.port = host, port
        self.rng = random.Random(seed)
        self.period = period_s
        self.published = 0
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()

    async def run(self) -> None:
        while not self._stop.is_set():
            try:
                # a broker restart is a reconnect here, not an asyncio ERROR at GC (QuietLossClient)
                async with QuietLossClient(self.host, self.port, timeout=5) as client:
                    while not self._stop.is_set():
                        for topic, payload in self.driver.simulate(self.rng, time.time(), self.topic):
                            await client.publish(topic, payload, qos=1)
                            self.published += 1
                        await asyncio.sleep(self.period * self.rng.uniform(0.7, 1.3))
            except aiomqtt.MqttError:
                await asyncio.sleep(0.5)

    def start(self) -> asyncio.Task[None]:
        self._task = asyncio.create_task(self.run())
        return self._task

    async def stop(self) -> None:
        self._stop.set()  # the loop ends even if a cancel is swallowed inside aiomqtt's wait_for
        if self._task is not None:
            from gateway.pipeline import cancel_and_wait

            await cancel_and_wait([self._task], 5.0, f"simulated {self.driver.name}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def find_mosquitto() -> str | None:
    found = shutil.which("mosquitto")
    if found:
        return found
    return "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None


class EmbeddedBroker:
    """A local broker on a free loopback port for the demo; `kind` says which one runs."""

    def __init__(self) -> None:
        self.port = free_port()
        self.kind = ""
        self._proc: subprocess.Popen[bytes] | None = None
        self._amqtt: Any = None
        self._dir: tempfile.TemporaryDirectory[str] | None = None

    async def start(self) -> None:
        binary = find_mosquitto()
        if binary:
            self._dir = tempfile.TemporaryDirectory(prefix="sg-broker-")
            conf = Path(self._dir.name) / "mosquitto.conf"
            # max_queued_messages raised: the default of 1000 per client silently drops a
            # persistent session's backlog while the gateway restarts
            conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\n"
                            "max_queued_messages 100000\nlog_type error\n")  # fmt: skip
            self._proc = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL)  # fmt: skip
            self.kind = "mosquitto"
        else:
            from amqtt.broker import Broker

            self._amqtt = Broker({
                "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{self.port}"}},
                "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
            })  # fmt: skip
            await self._amqtt.start()
            self.kind = "amqtt (embedded)"
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                _, w = await asyncio.open_connection("127.0.0.1", self.port)
                w.close()
                return
            except OSError:
                await asyncio.sleep(0.05)
        raise RuntimeError("embedded MQTT broker did not start")

    async def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(5)
        if self._amqtt is not None:
            with contextlib.suppress(Exception):
                await self._amqtt.shutdown()
        if self._dir is not None:
            self._dir.cleanup()
