"""Every long-running task is supervised: kill each one with an injected exception (raised from
inside what the task really calls) and see /readyz flip to 503 naming it, the task restart, and
/readyz come back with data flowing again. While the committer is down the systemd watchdog is
not fed.

The gateway runs in-process (`serve`) with a simulated PMS5003 on a real pty, an MQTT sensor on
a real Mosquitto, the file sink and the ops server.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from firmware_bridge.drivers import SERIAL_DRIVERS
from gateway.config import parse_config
from gateway.ops.clock import GatewayClock
from gateway.pipeline import Pipeline
from gateway.service import serve
from gateway.simulate.serial_pty import PtyDevice
from gateway.supervisor import Supervisor
from tests.conftest import Mosquitto, free_port
from tests.integration.test_ops import http_get

pytestmark = pytest.mark.integration


def config(tmp: Path, link: Path, broker: int, ops: int) -> str:
    return f"""
gateway: {{id: sup-gw, borough: camden, location: {{lat: 51.539, lon: -0.1426}}, data_dir: '{tmp / "data"}'}}
inputs: {{mqtt: {{host: 127.0.0.1, port: {broker}}}}}
sensors:
  - {{id: pm-north, driver: pms5003, serial: {{port: '{link}'}}}}
  - {{id: gj-1, driver: generic_json, mqtt: {{topic: 'dev/+/json'}}, options: {{fields: [{{path: v, property: pm2_5, unit: ug/m3}}]}}}}
sinks: {{file: {{path: observations.jsonl}}}}
ops: {{http: '127.0.0.1:{ops}', log_level: warning}}
"""


class Notify:
    """systemd's side of sd_notify, read on the test's event loop so every datagram is seen
    the moment it arrives (a reader thread can lag behind a busy loop)."""

    def __init__(self) -> None:
        import socket

        self.name = f"sg-sup-test-{os.getpid()}"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + self.name)
        self.sock.setblocking(False)
        self.beats = 0

    def attach(self) -> None:
        asyncio.get_running_loop().add_reader(self.sock, self._read)

    def _read(self) -> None:
        while True:
            try:
                data = self.sock.recv(4096)
            except BlockingIOError:
                return
            self.beats += "WATCHDOG=1" in data.decode().split("\n")

    def close(self) -> None:
        self.sock.close()


class Once:
    """Replace `obj.attr` with something that raises once, then put the original back."""

    def __init__(self, obj: Any, attr: str, is_async: bool) -> None:
        self.obj, self.attr = obj, attr
        self.original = getattr(obj, attr)
        self.fired = False
        if is_async:

            async def boom(*args: Any, **kwargs: Any) -> Any:
                return self._fire()

            setattr(obj, attr, boom)
        else:
            setattr(obj, attr, lambda *a, **k: self._fire())

    def _fire(self) -> Any:
        setattr(self.obj, self.attr, self.original)
        self.fired = True
        raise RuntimeError("injected fault")


async def until(cond: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not cond():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


@pytest.mark.slow
def test_each_supervised_task_restarts_after_an_injected_exception_and_readyz_flips(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    ops_port = free_port()
    link = tmp_path / "usb-pm-north"
    cfg = parse_config(config(tmp_path, link, mosquitto.port, ops_port), "t.yaml", {})
    notify = Notify()
    os.environ["NOTIFY_SOCKET"], os.environ["WATCHDOG_USEC"] = "@" + notify.name, "100000"
    os.environ.pop("WATCHDOG_PID", None)
    seen_503: dict[str, str] = {}

    async def main() -> None:
        sim = PtyDevice(SERIAL_DRIVERS["pms5003"], link, seed=5)
        sim.device.period = 0.1  # type: ignore[attr-defined]
        sim.plug()
        sim.start()
        notify.attach()
        stop = asyncio.Event()
        holder: dict[str, Pipeline] = {}
        service_sup = Supervisor()
        task = asyncio.create_task(serve(cfg, until=stop, on_started=lambda p: holder.update(p=p),
                                         clock=GatewayClock(probe=lambda: True), supervisor=service_sup))  # fmt: skip
        await until(lambda: "p" in holder, "gateway started")
        p = holder["p"]
        await until(lambda: p.mqtt_source is not None and p.mqtt_source.connected, "mqtt subscribed")
        readyz_codes: list[tuple[int, str]] = []

        async def poll_readyz() -> None:  # from a thread: the gateway's loop must keep answering
            while True:
                try:
                    code, body = await asyncio.to_thread(http_get, ops_port, "/readyz", 2.0)
                except OSError:  # the ops server itself is down
                    code, body = 0, b""
                readyz_codes.append((code, body.decode()))
                await asyncio.sleep(0.02)

        poller = asyncio.create_task(poll_readyz())
        await until(lambda: bool(readyz_codes) and readyz_codes[-1][0] == 200, "ready")
        publisher = aiomqtt.Client("127.0.0.1", mosquitto.port, identifier="sup-dev")
        await publisher.__aenter__()
        counter = [0]

        async def publish() -> None:
            counter[0] += 1
            await publisher.publish("dev/d1/json", json.dumps({"v": counter[0]}), qos=1)

        mqtt_src = p.mqtt_source
        serial_src = p.source("serial-pm-north")
        sink = p.sinks[0]
        ops = service_sup.runs["ops"].__self__  # type: ignore[attr-defined]
        p.housekeeping_s = 0.2
        injections: list[tuple[str, Supervisor, Callable[[], Any], Callable[[], Any] | None]] = [
            ("committer", p.supervisor, lambda: Once(p.committer, "_gather", True), None),
            ("windows", p.supervisor, lambda: Once(p.privacy, "due", False), None),
            ("housekeeping", p.supervisor, lambda: Once(p.outbox.sync, "reclaim", False), None),  # type: ignore[union-attr]
            # the file sink's write as the runner calls it for a small batch: on the outbox's
            # thread (write_local), whose exception ends the runner's task all the same
            ("sink-file", p.supervisor, lambda: Once(sink, "write_local", False), None),
            ("serial-pm-north", p.supervisor, lambda: Once(serial_src, "_handle", True), None),
            ("mqtt", p.supervisor, lambda: Once(mqtt_src, "_handle", True), publish),
            ("ops", service_sup, lambda: ops._server.close(), None),  # the listener dies
        ]
        for name, sup, inject, trigger in injections:
            delivered = p.stats.delivered.get("file", 0)
            readyz_codes.clear()
            if name == "committer":
                sup.restart_min = 2.0  # long enough to see the watchdog go quiet
            inject()
            if trigger is not None:
                await trigger()
            await until(lambda name=name, sup=sup: sup.restarts.get(name, 0) == 1, f"{name} crashed")
            if name == "committer":
                beats = notify.beats
                await asyncio.sleep(1.0)  # ten watchdog periods while the committer is down
                assert notify.beats <= beats + 1, "watchdog fed while the committer was down"
            await until(lambda name=name, sup=sup: sup.up(name), f"{name} restarted")
            if name != "ops":  # /readyz is served by the ops server itself
                await until(lambda name=name: any(c == 503 and f"task {name} down" in b for c, b in readyz_codes),
                            f"/readyz naming {name}")  # fmt: skip
                seen_503[name] = next(b for c, b in readyz_codes if c == 503)
            await until(lambda: bool(readyz_codes) and readyz_codes[-1][0] == 200, f"ready after {name}")
            if name == "mqtt":
                await publish()
                await until(lambda: p.stats.readings > 0 and p.queue.empty(), "mqtt reading committed")
            await until(lambda d=delivered: p.stats.delivered.get("file", 0) > d, f"data flowing after {name}")
            if name == "committer":
                await until(lambda b=beats: notify.beats > b + 2, "watchdog fed again")
        poller.cancel()
        await publisher.__aexit__(None, None, None)
        stop.set()
        assert await asyncio.wait_for(task, 30) == 0
        await sim.stop()
        asyncio.get_running_loop().remove_reader(notify.sock)
        restarts = {**p.supervisor.restarts, **service_sup.restarts}
        assert restarts == {name: 1 for name, *_ in injections}

    try:
        asyncio.run(main())
    finally:
        os.environ.pop("NOTIFY_SOCKET", None)
        os.environ.pop("WATCHDOG_USEC", None)
        notify.close()
    assert set(seen_503) == {"committer", "windows", "housekeeping", "sink-file", "serial-pm-north", "mqtt"}
    assert all(body.startswith("not ready: task ") for body in seen_503.values())
