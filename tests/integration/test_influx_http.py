"""The InfluxDB sink's own HTTP client (http.client, since issue 19) keeps what influxdb-client
did: TLS verified against the system CAs or `ca_file` (or not at all with `verify_tls: false`),
`Authorization: Token …`, gzip bodies, org/bucket/precision in the query under the URL's own
path, the `timeout`, and a keep-alive connection that survives the store closing it.

TLS against a real VictoriaMetrics serving https with a certificate from a CA the test makes;
the headers and the timeout against a stdlib HTTP server that records what it got.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import ssl
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from gateway.model import Observation
from gateway.outbox import Row
from gateway.privacy.guard import EgressGuard
from gateway.sinks.base import RetryableError
from gateway.sinks.influxdb import InfluxSink, Settings
from tests.conftest import free_port, require_binary, wait_port
from tests.integration.test_mqtt_tls import make_ca_and_server

pytestmark = pytest.mark.integration

T0 = 1_790_000_000.0


def rows(n: int, sensor: str = "pm-north") -> list[Row]:
    out = []
    for i in range(n):
        o = Observation(1234567890123456, sensor, "pm2_5", T0 + i, T0 + i, 10.0 + i)
        out.append(Row(i + 1, o.datastream_id, o.phenomenon_time, o.to_record()))
    return out


def write(settings: Settings, batch: list[Row]) -> int:
    async def go() -> int:
        sink = InfluxSink(settings, site_tags={"gateway": "http-gw", "borough": "camden"}, guard=EgressGuard())
        await sink.start()
        try:
            return (await sink.write(batch)).written
        finally:
            await sink.close()

    return asyncio.run(go())


def test_https_to_victoriametrics_verified_against_the_configured_ca(tmp_path: Path) -> None:
    binary = require_binary("victoria-metrics", "victoria-metrics")
    ca, cert, key = make_ca_and_server(tmp_path)
    port = free_port()
    proc = subprocess.Popen([binary, f"-httpListenAddr=127.0.0.1:{port}", f"-storageDataPath={tmp_path / 'vm'}",
                             "-tls", f"-tlsCertFile={cert}", f"-tlsKeyFile={key}", "-loggerLevel=ERROR",
                             "-search.latencyOffset=0s", "-retentionPeriod=100y"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        wait_port(port)
        url = f"https://127.0.0.1:{port}"
        assert write(Settings(url=url, org="o", bucket="b", ca_file=ca), rows(3)) == 3
        with pytest.raises(RetryableError, match="SSL"):  # not a CA the system trusts
            write(Settings(url=url, org="o", bucket="b"), rows(1, "other"))
        assert write(Settings(url=url, org="o", bucket="b", verify_tls=False), rows(2, "pm-south")) == 2
        tls = ssl.create_default_context(cafile=str(ca))
        deadline = time.monotonic() + 15
        while True:
            urllib.request.urlopen(f"{url}/internal/force_flush", context=tls, timeout=10).read()
            q = urllib.parse.urlencode({"match[]": "pm2_5_value", "start": "0"})
            body = urllib.request.urlopen(f"{url}/api/v1/export?{q}", context=tls, timeout=10).read()
            got = {json.loads(line)["metric"]["sensor"]: json.loads(line)["values"] for line in body.splitlines()}
            if sum(map(len, got.values())) >= 5 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert got == {"pm-north": [10.0, 11.0, 12.0], "pm-south": [10.0, 11.0]}
    finally:
        proc.terminate()
        proc.wait(10)


class Recorder:
    """Records each request; answers 204 after `delay` s; closes the connection after every
    answer when `close` (a store or proxy that does not keep connections alive)."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.delay = 0.0
        self.close = False
        rec = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                rec.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                time.sleep(rec.delay)
                self.send_response(204)
                if rec.close:
                    self.send_header("Connection", "close")
                self.send_header("Content-Length", "0")
                self.end_headers()
                if rec.close:
                    self.close_connection = True

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def test_token_gzip_query_path_timeout_and_reconnection() -> None:
    store = Recorder()
    try:
        settings = Settings(url=f"http://127.0.0.1:{store.port}/tsdb/", org="london", bucket="street",
                            token="s3cret-token", timeout=0.5)  # fmt: skip

        async def scenario() -> list[object]:
            sink = InfluxSink(settings, site_tags={"gateway": "g", "borough": "camden"}, guard=EgressGuard())
            await sink.start()
            out: list[object] = [(await sink.write(rows(2))).written]
            store.delay = 1.5  # longer than the timeout
            try:
                await sink.write(rows(1))
            except RetryableError as e:
                out.append(str(e))
            store.delay = 0.0
            store.close = True  # each answer closes the connection: the next write reconnects
            out += [(await sink.write(rows(1))).written, (await sink.write(rows(1))).written]
            await sink.close()
            return out

        got = asyncio.run(scenario())
        assert got[0] == 1 + 1 and "TimeoutError" in str(got[1]) and got[2:] == [1, 1]
        first = store.requests[0]
        path, _, query = first["path"].partition("?")
        assert path == "/tsdb/api/v2/write"
        assert urllib.parse.parse_qs(query) == {"org": ["london"], "bucket": ["street"], "precision": ["ms"]}
        h = first["headers"]
        assert h["Authorization"] == "Token s3cret-token" and h["Content-Encoding"] == "gzip"
        assert h["Content-Type"].startswith("text/plain")
        lines = gzip.decompress(first["body"]).decode().splitlines()
        assert lines == [f"pm2_5,borough=camden,datastream=1234567890123456,gateway=g,sensor=pm-north value={10.0 + i!r} "
                         f"{round((T0 + i) * 1000)}" for i in range(2)]  # fmt: skip
        assert len(store.requests) == 4  # one per write: the timed-out one is not retried here (the runner does)
    finally:
        store.server.shutdown()
        store.server.server_close()


def test_gzip_off_sends_plain_line_protocol() -> None:
    store = Recorder()
    try:
        assert write(Settings(url=f"http://127.0.0.1:{store.port}", org="o", bucket="b", gzip=False), rows(1)) == 1
        req = store.requests[0]
        assert "Content-Encoding" not in req["headers"] and "Authorization" not in req["headers"]
        assert req["body"].decode().startswith("pm2_5,borough=camden,")
    finally:
        store.server.shutdown()
        store.server.server_close()
