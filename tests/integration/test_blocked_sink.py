"""Blocked is not refused: a real HTTP server speaking the InfluxDB v2 write API answers 401,
then 403, then 404, then 204. Meanwhile /readyz, /status.json and `gateway_sink_blocked` say
that the influxdb sink is blocked and why; nothing is quarantined; once the server accepts, the
whole backlog arrives. A 400 that says a point could not be parsed is the only verdict that
quarantines anything, and then only that point.

The gateway runs in-process (`serve`, with its ops server) and talks to the test's server over
real HTTP through the InfluxDB sink's client, exactly as it would to a store.
"""

from __future__ import annotations

import asyncio
import gzip
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from gateway.config import parse_config
from gateway.model import Reading
from gateway.ops.clock import GatewayClock
from gateway.pipeline import Pipeline
from gateway.service import serve
from gateway.sinks.base import BlockedError, PermanentError, RetryableError
from gateway.sinks.influxdb import classify
from tests.conftest import free_port
from tests.integration.test_ops import http_get, metrics, status, value

pytestmark = pytest.mark.integration


class Store:
    """A minimal InfluxDB v2 write endpoint: answers `self.status` (204 stores the lines);
    a batch holding `self.refuse` is answered 400 with InfluxDB's parse-error body."""

    def __init__(self) -> None:
        self.status = 204
        self.refuse: str | None = None
        self.lines: list[str] = []
        self.requests: list[int] = []
        store = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                lines = body.decode().splitlines()
                status, answer = store.status, b""
                if status == 204 and store.refuse and any(store.refuse in line for line in lines):
                    status = 400
                    answer = b'{"code":"invalid","message":"unable to parse \'points\': invalid field format"}'
                elif status == 401:
                    answer = b'{"code":"unauthorized","message":"unauthorized access"}'
                store.requests.append(status)
                if status == 204:
                    store.lines += lines
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def store() -> Iterator[Store]:
    s = Store()
    try:
        yield s
    finally:
        s.close()


def config(tmp: Path, store_port: int, ops_port: int) -> str:
    return f"""
gateway: {{id: blocked-gw, borough: camden, location: {{lat: 51.539, lon: -0.1426}}, data_dir: '{tmp / "data"}'}}
sensors:
  - {{id: pm-x, driver: pms5003, serial: {{port: '{tmp / "no-such-port"}'}}}}
sinks:
  influxdb: {{url: 'http://127.0.0.1:{store_port}', org: london, bucket: street, token: expired-token, batch_size: 50}}
ops: {{http: '127.0.0.1:{ops_port}', log_level: warning}}
"""


async def until(cond, what: str, timeout: float = 40.0) -> None:  # type: ignore[no-untyped-def]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await asyncio.to_thread(cond):
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


def run_gateway(tmp: Path, store: Store, scenario) -> None:  # type: ignore[no-untyped-def]
    ops_port = free_port()
    cfg = parse_config(config(tmp, store.port, ops_port), "t.yaml", {})

    async def main() -> None:
        stop = asyncio.Event()
        holder: dict[str, Pipeline] = {}
        task = asyncio.create_task(serve(cfg, until=stop, on_started=lambda p: holder.update(p=p),
                                         clock=GatewayClock(probe=lambda: True)))  # fmt: skip
        while "p" not in holder:
            await asyncio.sleep(0.05)
        try:
            await scenario(holder["p"], ops_port)
        finally:
            stop.set()
            assert await asyncio.wait_for(task, 30) == 0

    asyncio.run(main())


def test_401_403_404_then_204_blocks_the_sink_and_the_backlog_arrives_complete(tmp_path: Path, store: Store) -> None:
    store.status = 401
    n = 200  # readings; 3 observations each (pm1_0, pm2_5, pm10)
    seen: dict[int, dict[str, object]] = {}

    async def scenario(p: Pipeline, port: int) -> None:
        clock = p.clock
        for i in range(n):
            await p.submit(Reading("pm-x", clock() + i * 0.001, {"pm1_0": i, "pm2_5": i + 0.5, "pm10": 2 * i}))
        for code, word in ((401, "unauthorised"), (403, "forbidden"), (404, "not_found")):
            store.status = code

            def blocked_with(code: int = code, word: str = word) -> bool:
                ready = http_get(port, "/readyz")
                m = metrics(port)
                st = status(port)["sinks"]["influxdb"]
                ok = (ready[0] == 503 and f"HTTP {code}".encode() in ready[1]
                      and value(m, "gateway_sink_blocked", sink="influxdb", reason=word) == 1
                      and st["state"] == "blocked" and f"HTTP {code}" in st["reason"])  # fmt: skip
                if ok:
                    seen[code] = {"readyz": ready[1].decode(), "status": st}
                return ok

            await until(blocked_with, f"the sink shown blocked by HTTP {code}")
            assert store.lines == []
        store.status = 204
        await until(lambda: len(store.lines) >= 3 * n, "the backlog in the store")
        await until(lambda: http_get(port, "/readyz")[0] == 200, "/readyz ready again")
        m = await asyncio.to_thread(metrics, port)  # the gateway's loop must keep answering
        assert value(m, "gateway_sink_blocked", sink="influxdb", reason="") == 0
        assert value(m, "gateway_sink_quarantined_total", sink="influxdb") == 0
        assert (await asyncio.to_thread(status, port))["sinks"]["influxdb"]["state"] == "ok"

    run_gateway(tmp_path, store, scenario)
    assert sorted(seen) == [401, 403, 404]
    assert "not ready: sink influxdb blocked (HTTP 401: credentials refused)" in seen[401]["readyz"]
    assert {401, 403, 404} <= set(store.requests) and store.requests[-1] == 204
    pm25 = sorted(float(line.split("value=")[1].split(" ")[0]) for line in store.lines if line.startswith("pm2_5,"))
    assert pm25 == [i + 0.5 for i in range(n)], "every observation of the backlog, once"
    assert len(store.lines) == 3 * n


def test_a_parse_error_on_one_point_quarantines_that_point_only(tmp_path: Path, store: Store) -> None:
    store.refuse = "value=13.5"  # the store cannot parse the point whose pm2_5 is 13.5
    n = 40

    async def scenario(p: Pipeline, port: int) -> None:
        clock = p.clock
        for i in range(n):
            await p.submit(Reading("pm-x", clock() + i * 0.001, {"pm1_0": i, "pm2_5": i + 0.5, "pm10": 2 * i}))
        await until(lambda: len(store.lines) >= 3 * n - 1, "every other point in the store")
        await until(lambda: value(metrics(port), "gateway_sink_quarantined_total", sink="influxdb") == 1,
                    "the refused point quarantined")  # fmt: skip
        assert (await asyncio.to_thread(http_get, port, "/readyz"))[0] == 200

    run_gateway(tmp_path, store, scenario)
    assert len(store.lines) == 3 * n - 1 and not any("value=13.5" in line for line in store.lines)


def test_what_each_http_answer_means() -> None:
    assert isinstance(classify(401, ""), BlockedError) and isinstance(classify(403, b""), BlockedError)
    assert isinstance(classify(404, ""), BlockedError) and isinstance(classify(407, ""), BlockedError)
    assert isinstance(classify(400, "<html>400 Bad Request: plain HTTP to an HTTPS port</html>"), BlockedError)
    assert isinstance(classify(400, '{"code":"invalid","message":"unable to parse x"}'), PermanentError)
    assert isinstance(classify(422, ""), PermanentError) and isinstance(classify(413, ""), PermanentError)
    for s in (0, 408, 429, 500, 502, 503):
        assert isinstance(classify(s, ""), RetryableError), s


def test_mqtt_not_authorised_is_blocked_not_refused(tmp_path: Path) -> None:
    """A real Mosquitto that admits no anonymous client refuses the city-broker sink's CONNECT
    (not authorised): that is BlockedError, so the runner keeps the backlog."""
    import subprocess

    from gateway.model import Observation
    from gateway.outbox import Row
    from gateway.plan import build_plan
    from gateway.privacy.guard import EgressGuard
    from gateway.sinks.mqtt import MqttSink
    from gateway.sinks.mqtt import Settings as MqttSettings
    from tests.conftest import require_binary, wait_port

    binary = require_binary("mosquitto", "mosquitto")
    port = free_port()
    conf = tmp_path / "closed.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous false\n" + ("user root\n" if os.geteuid() == 0 else ""))
    proc = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port)
        cfg = parse_config(config(tmp_path, 9, free_port()), "t.yaml", {})
        plan = build_plan(cfg)
        sink = MqttSink(MqttSettings(host="127.0.0.1", port=port, tls=False), plan, guard=EgressGuard(),
                        data_dir=tmp_path)  # fmt: skip
        rows = [Row(1, 1, 1.8e9, Observation(1, "pm-x", "pm2_5", 1.8e9, 1.8e9, 3.0).to_record())]

        async def write() -> None:
            await sink.start()
            try:
                await sink.write(rows)
            finally:
                await sink.close()

        with pytest.raises(BlockedError) as e:
            asyncio.run(write())
        assert e.value.code == "unauthorised"
    finally:
        proc.terminate()
        proc.wait(10)
