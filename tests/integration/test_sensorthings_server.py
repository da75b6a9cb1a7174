"""The SensorThings sink against a real SensorThings API 1.1 server process (django-ogc-sensorthings
on SQLite, started on a free port by the `sta_server` fixture), read back through the server's
HTTP API and with Fraunhofer's `frost-sta-client`.

Where the server departs from OGC 18-088 (docs/sinks/sensorthings.md, "The test server"), the
sink keeps to the standard and these tests compare against what the server can hold: whole
seconds for times, numbers for results, no Datastream without a unit.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import frost_sta_client as fsc
import pytest

from gateway.config import parse_config
from gateway.model import Observation, Reading
from gateway.outbox import Row
from gateway.pipeline import Pipeline
from gateway.plan import build_plan
from gateway.privacy.guard import EgressGuard
from gateway.sinks.base import BlockedError, RetryableError
from gateway.sinks.sensorthings import KEY, SensorThingsSettings, SensorThingsSink, observation_key
from gateway.standards import sensorthings
from tests.integration.sta_helpers import (
    T0,
    config_text,
    fill_outbox,
    load,
    make_sink,
    numeric_observations,
    rows_of,
)
from tests.integration.sta_server import ROOT, StaServer

pytestmark = pytest.mark.integration
COLLECTIONS = ("Things", "Locations", "Sensors", "ObservedProperties", "Datastreams")


def counts(srv: StaServer) -> dict[str, int]:
    return {c: len(srv.all(f"/{c}")) for c in COLLECTIONS}


def by_key(srv: StaServer, collection: str) -> dict[int, dict[str, Any]]:
    return {e["properties"][KEY]: e for e in srv.all(f"/{collection}")}


def whole_second(t: float) -> datetime:
    """The test server keeps whole seconds (it truncates: a departure from 18-088)."""
    return datetime.fromtimestamp(int(t), UTC)


def server_observations(srv: StaServer) -> dict[int, tuple[int, dict[str, Any]]]:
    """Every Observation on the server as key -> (Datastream key, entity); duplicates fail."""
    out: dict[int, tuple[int, dict[str, Any]]] = {}
    for ds in srv.all("/Datastreams"):
        # paging a navigation path repeats the last entity of each page on this server (a
        # departure): the same @iot.id twice is that; two ids with one key would be a duplicate
        for o in {o["@iot.id"]: o for o in srv.all(ds["Observations@iot.navigationLink"])}.values():
            key = o["parameters"][KEY]
            assert key not in out, f"observation {key} is on the server twice"
            out[key] = (ds["properties"][KEY], o)
    assert len(out) == len(srv.all("/Observations"))  # top-level paging has no such repeat
    return out


def assert_value_for_value(srv: StaServer, expected: list[Observation]) -> None:
    got = server_observations(srv)
    assert len(got) == len(expected)
    for obs in expected:
        key = observation_key(json.dumps(obs.sensorthings(), separators=(",", ":"), ensure_ascii=False).encode())
        ds_key, o = got[key]
        assert ds_key == obs.datastream_id
        assert o["result"] == obs.result
        assert datetime.fromisoformat(o["phenomenonTime"]) == whole_second(obs.phenomenon_time)
        assert datetime.fromisoformat(o["resultTime"]) == whole_second(obs.result_time)
        assert {k: v for k, v in o["parameters"].items() if k != KEY} == dict(obs.parameters)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def drain(sink: SensorThingsSink, rows: list[Any]) -> tuple[int, list[int]]:
    """What the pipeline's runner does with a sink: start, write batch by batch, close."""
    await sink.start()
    written, rejected = 0, []
    for i in range(0, len(rows), sink.batch_size):
        r = await sink.write(rows[i : i + sink.batch_size])
        written += r.written
        rejected += r.rejected
    await sink.close()
    return written, rejected


# ---------------------------------------------------------------------------------- entities


def test_entities_are_created_once_in_link_order_and_found_again_by_key(tmp_path: Path, sta_server: StaServer) -> None:
    cfg, plan = load(tmp_path / "data")
    published = sensorthings.entities(plan)
    run(make_sink(cfg, plan, sta_server.url).start())
    want = {c: len(published[c]) for c in COLLECTIONS}
    assert counts(sta_server) == want

    # every entity carries the gateway's stable id, and links resolve to the server's ids
    things = by_key(sta_server, "Things")
    (thing,) = things.values()
    assert set(things) == {e["@iot.id"] for e in published["Things"]}
    (loc,) = sta_server.all(thing["Locations@iot.navigationLink"])
    assert loc["properties"][KEY] == published["Locations"][0]["@iot.id"]
    assert loc["location"] == published["Locations"][0]["location"]
    for ds in published["Datastreams"]:
        server_ds = by_key(sta_server, "Datastreams")[ds["@iot.id"]]
        for link, coll in (("Thing", "Things"), ("Sensor", "Sensors"), ("ObservedProperty", "ObservedProperties")):
            status, linked = sta_server.get(server_ds[f"{link}@iot.navigationLink"])
            assert status == 200 and linked["properties"][KEY] == ds[link]["@iot.id"], coll
        assert server_ds["unitOfMeasurement"] == ds["unitOfMeasurement"]

    # a restart uses the id map: nothing new; a lost map is rebuilt from the server by key
    id_map = tmp_path / "data" / "sensorthings-sta.json"
    first = json.loads(id_map.read_text())["ids"]
    run(make_sink(cfg, plan, sta_server.url).start())
    assert counts(sta_server) == want
    id_map.unlink()
    run(make_sink(cfg, plan, sta_server.url).start())
    assert counts(sta_server) == want
    assert json.loads(id_map.read_text())["ids"] == first

    # a config change updates the entity in place
    cfg2 = parse_config(config_text(tmp_path / "data", description="Kerbside cabinet, Camden Road"), "t.yaml", {})
    run(make_sink(cfg2, build_plan(cfg2), sta_server.url).start())
    assert counts(sta_server) == want
    (thing,) = sta_server.all("/Things")
    assert thing["description"] == "Kerbside cabinet, Camden Road"


def test_entities_survive_a_crash_between_creates_without_duplicates(tmp_path: Path, sta_server: StaServer) -> None:
    """A map lost after the Location and Thing were created but before the rest: the restart
    finds them by key (the filter on properties is not trusted; this server's answers [] to it)."""
    cfg, plan = load(tmp_path / "data")
    sink = make_sink(cfg, plan, sta_server.url)
    sink.entities = [e for e in sink.entities if e.collection in ("Locations", "Things")]
    run(sink.start())
    (tmp_path / "data" / "sensorthings-sta.json").unlink()
    run(make_sink(cfg, plan, sta_server.url).start())
    published = sensorthings.entities(plan)
    assert counts(sta_server) == {c: len(published[c]) for c in COLLECTIONS}


# ---------------------------------------------------------------------------------- observations


@pytest.mark.parametrize("data_array", ["auto", "never"])
@pytest.mark.slow
def test_observations_read_back_value_for_value(tmp_path: Path, sta_server: StaServer, data_array: str) -> None:
    cfg, plan = load(tmp_path / "data")
    expected = numeric_observations(plan, 600 if data_array == "auto" else 240)
    sink = make_sink(cfg, plan, sta_server.url, data_array=data_array, batch_size=100)
    written, rejected = run(drain(sink, rows_of(expected)))
    assert (written, rejected) == (len(expected), [])
    assert sink._data_array is (data_array == "auto")  # the server lists dataArray (see docs)
    assert_value_for_value(sta_server, expected)

    # and as Fraunhofer's client reads them (de-duplicated by id: see server_observations)
    keyed = {observation_key(json.dumps(e.sensorthings(), separators=(",", ":")).encode()): e for e in expected}
    svc = fsc.SensorThingsService(sta_server.url)
    seen: dict[object, Any] = {}
    for ds in svc.datastreams().query().expand("Thing,ObservedProperty").list():
        assert ds.thing.name == "sta-test"
        for o in ds.get_observations().query().top(100).list():
            exp = keyed[o.parameters[KEY]]
            assert exp.datastream_id == ds.properties[KEY]
            assert o.result == exp.result
            assert datetime.fromisoformat(o.phenomenon_time) == whole_second(exp.phenomenon_time)
            seen[o.id] = o
    assert len(seen) == len(expected)


def test_the_servers_verdict_quarantines_only_the_observations_it_refuses(tmp_path: Path, sta_server: StaServer) -> None:
    """This server refuses a Datastream without a unit (category streams: 18-088 requires null
    unit fields there) and a null result (a suppressed small count): only those rows are
    quarantined, and the rest of the batch lands."""
    extra = "  - {id: ev-1, driver: openevse, mqtt: {topic: openevse/ev-1}}"
    cfg = parse_config(config_text(tmp_path / "data", extra_sensors=extra), "t.yaml", {})
    plan = build_plan(cfg)
    good = numeric_observations(plan, 60)
    pm = next(ds for ds in plan.datastreams.values() if ds.property == "pm2_5")
    status = next(ds for ds in plan.datastreams.values() if ds.property == "status")
    suppressed = Observation(pm.id, pm.sensor_id, "pm2_5", 1_795_000_500.0, 1_795_000_500.5, None)
    category = Observation(status.id, status.sensor_id, "status", 1_795_000_501.0, 1_795_000_501.5, "CHARGING")
    for data_array in ("auto", "never"):
        d = tmp_path / data_array
        sink = make_sink(cfg, plan, sta_server.url, data_array=data_array, name=data_array)
        sink.map.path = d / "map.json"
        rows = rows_of([*good[:30], suppressed, category, *good[30:]])
        written, rejected = run(drain(sink, rows))
        assert sorted(rejected) == [31, 32]
        assert written == 60
        assert f"Datastreams/{status.id}" in sink.refused
    assert len(server_observations(sta_server)) == 60  # the second pass found them all present


# ---------------------------------------------------------------------------------- crashes


def _child(data_dir: Path, url: str, data_array: str, *flags: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "tests.integration.sta_child", str(data_dir), url, data_array, *flags],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})  # fmt: skip


def _server_count(srv: StaServer) -> int:
    status, doc = srv.get("/Observations?$count=true&$top=1&$select=id")
    return int(doc["@iot.count"]) if status == 200 else -1


def _finish(data_dir: Path, url: str, data_array: str) -> list[dict[str, Any]]:
    child = _child(data_dir, url, data_array)
    out, _ = child.communicate(timeout=300)
    assert child.returncode == 0, out[-3000:]
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


@pytest.mark.parametrize("data_array", ["auto", "never"])
@pytest.mark.slow
def test_kill_9_after_the_server_committed_leaves_no_duplicates(tmp_path: Path, sta_server: StaServer, data_array: str) -> None:
    """The child SIGKILLs itself after a batch was written and before the cursor moved: the
    restart resends that batch, finds every key on the server, and posts none of it again."""
    data = tmp_path / "data"
    _, plan = load(data)
    expected = numeric_observations(plan, 500)
    fill_outbox(data / "outbox.sqlite", ["sta"], expected)
    child = _child(data, sta_server.url, data_array, "crash-after-first-write")
    child.communicate(timeout=300)
    assert child.returncode == -signal.SIGKILL
    assert _server_count(sta_server) == 200  # the first batch landed, the cursor did not move
    lines = _finish(data, sta_server.url, data_array)
    assert lines[0]["already_there"] == 200
    assert_value_for_value(sta_server, expected)


@pytest.mark.parametrize("data_array", ["auto", "never"])
@pytest.mark.slow
def test_kill_9_at_a_random_point_mid_post_leaves_no_duplicates_and_loses_nothing(
    tmp_path: Path, sta_server: StaServer, data_array: str
) -> None:
    """SIGKILL while observations are arriving at the server (somewhere inside a batch's POST
    or between batches), twice, then run to the end: each observation is there exactly once."""
    data = tmp_path / "data"
    _, plan = load(data)
    expected = numeric_observations(plan, 2000 if data_array == "auto" else 700)
    fill_outbox(data / "outbox.sqlite", ["sta"], expected)
    seed = os.environ.get("SG_SEED", str(time.time_ns()))
    rng = random.Random(seed)
    for _ in range(2):
        target = _server_count(sta_server) + rng.randint(1, 250)
        child = _child(data, sta_server.url, data_array)
        deadline = time.monotonic() + 120
        while _server_count(sta_server) < target and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        assert child.poll() is None, f"the child finished before the kill (SG_SEED={seed})"
        child.send_signal(signal.SIGKILL)
        child.communicate(timeout=30)
        assert 0 < _server_count(sta_server) < len(expected)
    _finish(data, sta_server.url, data_array)
    assert_value_for_value(sta_server, expected)


# ---------------------------------------------------------------------------------- outage


def test_server_outage_through_the_pipeline_loses_nothing(tmp_path: Path, sta_server: StaServer) -> None:
    """The real pipeline (privacy stage, guard, outbox, sink runner) with this sink: the server
    process stopped mid-stream and started again on the same port and database."""
    cfg, plan = load(tmp_path / "data")
    pm = next(ds for ds in plan.datastreams.values() if ds.sensor_id == "aq-2" and ds.property == "pm2_5")

    async def scenario() -> Pipeline:
        p = Pipeline(cfg, plan=plan, sinks=[])
        sink = make_sink(cfg, plan, sta_server.url, guard=p.guard, batch_size=50)
        p.sinks.append(sink)
        await p.start()
        for i in range(60):
            await p.submit(Reading("aq-2", 1_795_000_000.0 + i, {"pm2_5": float(i), "pm10": float(2 * i)}))
        await wait(lambda: p.stats.delivered.get("sta", 0) >= 120, "first deliveries")
        sta_server.stop()
        for i in range(60, 200):
            await p.submit(Reading("aq-2", 1_795_000_000.0 + i, {"pm2_5": float(i), "pm10": float(2 * i)}))
        await asyncio.sleep(2.0)  # the sink fails and backs off; rows stay in the outbox
        assert p.stats.delivered.get("sta", 0) == 120
        await asyncio.to_thread(sta_server.start)
        await wait(lambda: p.stats.delivered.get("sta", 0) >= 400, "the backlog after the outage", 60)
        await p.stop()
        return p

    run(scenario())
    obs = server_observations(sta_server)
    assert len(obs) == 400
    pm25 = sorted(o["result"] for ds_key, o in obs.values() if ds_key == pm.id)
    assert pm25 == [float(i) for i in range(200)]


async def wait(cond: Any, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def test_a_server_reset_under_a_kept_id_map_recreates_the_entities(tmp_path: Path, sta_server: StaServer) -> None:
    """The server's database replaced by an empty one while the gateway keeps its id map: the
    map is checked against the server (the Thing no longer carries our key) and rebuilt."""
    from gateway.sinks.base import SinkContext
    from gateway.sinks.sensorthings import build

    cfg, plan = load(tmp_path / "data")
    g = cfg.gateway
    ctx = SinkContext(g.id, g.borough, g.data_dir, plan, EgressGuard(frozenset(plan.datastreams)))
    settings = SensorThingsSettings(url=sta_server.url)
    first = numeric_observations(plan, 60)
    assert run(drain(build(ctx, "sta", settings), rows_of(first)))[0] == 60
    sta_server.stop()
    sta_server.db.unlink()
    sta_server.start()
    later = numeric_observations(plan, 60, seed=7)
    later = [Observation(o.datastream_id, o.sensor_id, o.property, o.phenomenon_time + 3600, o.result_time + 3600, o.result)
             for o in later]  # fmt: skip
    assert run(drain(build(ctx, "sta", settings), rows_of(later, start=61)))[0] == 60
    published = sensorthings.entities(plan)
    assert counts(sta_server) == {c: len(published[c]) for c in COLLECTIONS}
    assert_value_for_value(sta_server, later)


# ---------------------------------------------------------------------------------- auth


@pytest.mark.parametrize("kind", ["basic", "bearer"])
def test_basic_and_bearer_auth_from_secret_files(tmp_path: Path, kind: str) -> None:
    from tests.conftest import free_port

    secret = "gateway:s3cret-Pa55" if kind == "basic" else "tok-7Hq2mVx9"
    srv = StaServer(free_port(), tmp_path / "sta.sqlite3", tmp_path / "sta.log", auth=f"{kind}:{secret}")
    srv.start()
    try:
        cfg, plan = load(tmp_path / "data")
        secret_file = tmp_path / "secret"
        if kind == "basic":
            secret_file.write_text(secret.split(":", 1)[1] + "\n")
            auth: dict[str, Any] = {"username": "gateway", "password_file": str(secret_file)}
        else:
            secret_file.write_text(secret + "\n")
            auth = {"token_file": str(secret_file)}
        expected = numeric_observations(plan, 30)
        written, _ = run(drain(make_sink(cfg, plan, srv.url, **auth), rows_of(expected)))
        assert written == 30
        assert _server_count(srv) == 30

        # a wrong credential keeps the rows: it is no verdict on the observations, the sink
        # is blocked (BlockedError: the runner backs off and shows it, nothing quarantined)
        secret_file.write_text("wrong\n")
        sink = make_sink(cfg, plan, srv.url, **auth)
        with pytest.raises(BlockedError, match="HTTP 401"):
            run(sink.start())
    finally:
        srv.stop()


class TlsProxy:
    """TLS in front of the test server (Django's development server speaks plain HTTP): a
    thread accepts TLS on a free port and pipes bytes to the server's port."""

    def __init__(self, cert: Path, key: Path, target_port: int) -> None:
        import socket
        import ssl
        import threading

        from tests.conftest import free_port

        self.port = free_port()
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(cert, key)
        self.target = target_port
        self.sock = socket.create_server(("127.0.0.1", self.port))
        self.sock.settimeout(0.2)
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _exchange(self, tls: Any) -> None:
        """One request, one answer (the server closes every connection): read the request,
        forward it, copy the answer back until the server closes. One thread per connection and
        never two on one TLS socket (OpenSSL objects are not for concurrent use)."""
        import socket

        with contextlib.suppress(OSError), tls:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = tls.recv(65536)
                if not chunk:
                    return
                data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                           if line.lower().startswith(b"content-length:")), 0)  # fmt: skip
            while len(body) < length:
                body += tls.recv(65536)
            with socket.create_connection(("127.0.0.1", self.target)) as up:
                up.sendall(head + b"\r\n\r\n" + body)
                while chunk := up.recv(65536):
                    tls.sendall(chunk)

    def _serve(self) -> None:
        import threading

        while not self.stopping.is_set():
            try:
                raw, _ = self.sock.accept()
            except TimeoutError:
                continue
            raw.settimeout(30)
            try:
                tls = self.ctx.wrap_socket(raw, server_side=True)
            except OSError:  # a client that refused our certificate
                raw.close()
                continue
            threading.Thread(target=self._exchange, args=(tls,), daemon=True).start()

    def close(self) -> None:
        self.stopping.set()
        self.thread.join(5)
        self.sock.close()


def test_https_with_a_private_ca_and_absolute_links_rebased(tmp_path: Path, sta_server: StaServer) -> None:
    """Through TLS with the city's private CA in `ca_file`; the server's absolute links (its
    nextLink names the plain port) are followed on the configured origin only. Without the CA
    the sink refuses the server: RetryableError, rows kept."""
    from tests.integration.test_mqtt_tls import make_ca_and_server

    ca, cert, key = make_ca_and_server(tmp_path)
    proxy = TlsProxy(cert, key, sta_server.port)
    try:
        url = f"https://127.0.0.1:{proxy.port}/sensorthings/v1.1"
        cfg, plan = load(tmp_path / "data")
        expected = numeric_observations(plan, 720)  # 120 per Datastream: reads take two pages
        written, _ = run(drain(make_sink(cfg, plan, url, ca_file=str(ca), batch_size=1000), rows_of(expected)))
        assert written == 720
        # a restart re-sending everything (map lost too) pages through the server's answers,
        # whose nextLinks name the plain port: followed on the configured origin, all found
        (tmp_path / "data" / "sensorthings-sta.json").unlink()
        again = make_sink(cfg, plan, url, ca_file=str(ca), batch_size=1000)
        assert run(drain(again, rows_of(expected)))[0] == 720
        assert again.already_there == 720 and again.posted == 0
        assert_value_for_value(sta_server, expected)
        with pytest.raises(RetryableError, match="unreachable"):
            run(make_sink(cfg, plan, url).start())
    finally:
        proxy.close()


def test_settings_refuse_mixed_or_half_credentials(tmp_path: Path) -> None:
    from pydantic import ValidationError

    for bad in ({"username": "u"}, {"token": "t", "username": "u", "password": "p"},
                {"token_file": str(tmp_path / "missing")}, {"url": "ftp://x/v1.1"}, {"colour": "red"}):  # fmt: skip
        with pytest.raises(ValidationError):
            SensorThingsSettings.model_validate({"url": "http://127.0.0.1/v1.1", **bad})


# ---------------------------------------------------------------------------------- the server


def test_the_test_servers_departures_from_18_088_are_as_documented(tmp_path: Path, sta_server: StaServer) -> None:
    """Each departure docs/sinks/sensorthings.md names, pinned: when a new release of the
    package fixes one, this fails and the page is updated."""
    import urllib.error
    import urllib.request

    def call(method: str, path: str, body: object = None) -> tuple[int, str]:
        req = urllib.request.Request(sta_server.url + path, method=method,
                                     data=None if body is None else json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})  # fmt: skip
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    cfg, plan = load(tmp_path / "data")
    run(make_sink(cfg, plan, sta_server.url).start())
    (thing,) = sta_server.all("/Things")
    ds = sta_server.all("/Datastreams")[0]
    ds_ref = {"@iot.id": ds["@iot.id"]}
    base = {"resultTime": "2026-11-24T13:16:37.514Z", "Datastream": ds_ref}

    # 1. the service root answers only with a trailing slash
    assert call("GET", "")[0] == 404 and call("GET", "/")[0] == 200
    # 2. conformance lists requirement classes, not 18-088's requirement URIs
    conformance = sta_server.get("/")[1]["serverSettings"]["conformance"]
    assert "http://www.opengis.net/spec/iot_sensing/1.1/req/data-array" in conformance
    assert "http://www.opengis.net/spec/iot_sensing/1.1/req/data-array/data-array" not in conformance
    # 3. a Datastream without a unit (null name, symbol, definition) is refused
    no_unit = {"name": "s", "description": "d", "observationType":
               "http://www.opengis.net/def/observationType/OGC-OM/2.0/OM_CategoryObservation",
               "unitOfMeasurement": {"name": None, "symbol": None, "definition": None},
               "Thing": {"@iot.id": thing["@iot.id"]},
               "Sensor": {"@iot.id": sta_server.all("/Sensors")[0]["@iot.id"]},
               "ObservedProperty": {"@iot.id": sta_server.all("/ObservedProperties")[0]["@iot.id"]}}  # fmt: skip
    assert call("POST", "/Datastreams", no_unit)[0] == 422
    # 4. results are numbers only: a word and null are refused, true is stored as 1.0
    assert call("POST", "/Observations", {**base, "phenomenonTime": "2026-11-24T13:16:37.493Z", "result": "CHARGING"})[0] == 422
    assert call("POST", "/Observations", {**base, "phenomenonTime": "2026-11-24T13:16:37.493Z", "result": None})[0] == 422
    assert call("POST", "/Observations", {**base, "phenomenonTime": "2026-11-24T13:16:38.493Z", "result": True})[0] == 201
    # 5. an interval phenomenonTime is a server error
    assert call("POST", "/Observations", {**base, "phenomenonTime": "2026-11-24T13:00:00Z/2026-11-24T13:15:00Z", "result": 3})[0] == 500
    # 6. times keep whole seconds
    (o,) = sta_server.all(ds["Observations@iot.navigationLink"])
    assert (o["result"], o["phenomenonTime"], o["resultTime"]) == (1.0, "2026-11-24T13:16:38+00:00", "2026-11-24T13:16:37+00:00")
    # 7. a filter on a property inside `properties` answers an empty list
    key = thing["properties"][KEY]
    assert sta_server.get(f"/Things?$filter=properties/{KEY}%20eq%20{key}") == (200, {"value": []})
    # 8. paging a navigation path repeats the last entity of a page
    for i in range(3):
        call("POST", "/Observations", {**base, "phenomenonTime": f"2026-11-24T14:00:0{i}Z", "result": i})
    status, page = sta_server.get(ds["Observations@iot.navigationLink"] + "?$top=2")
    assert status == 200, page
    _, page2 = sta_server.get(page["@iot.nextLink"])
    assert page["value"][-1]["@iot.id"] == page2["value"][0]["@iot.id"]
    # 9. $top above 100 is refused rather than capped
    assert sta_server.get("/Observations?$top=101")[0] == 422
    # 10. an Observation for a Datastream that does not exist is a server error
    missing = {"@iot.id": "00000000-0000-7000-8000-000000000000"}
    assert call("POST", "/Observations", {**base, "phenomenonTime": "2026-11-24T15:00:00Z", "result": 1, "Datastream": missing})[0] == 500
    # 9b. a nextLink carries the filter's spaces raw (not a valid URL)
    _, filtered = sta_server.get("/Observations?$top=1&$filter=result%20ge%200")
    assert " " in filtered["@iot.nextLink"]
    # 11. ordering by phenomenonTime is a server error
    assert sta_server.get("/Observations?$orderby=phenomenonTime")[0] == 500
    # 12. one refused row makes every row of its Datastream "error" in CreateObservations
    status, body = call("POST", "/CreateObservations", [{"Datastream": ds_ref, "components": ["phenomenonTime", "result"],
                                                         "dataArray": [["2026-11-24T16:00:00Z", 1], ["2026-11-24T16:00:01Z", None]]}])  # fmt: skip
    assert (status, json.loads(body)) == (201, ["error", "error"])


# ---------------------------------------------------------------------------------- what a server cannot take


FOOTFALL = "  - {id: footfall-1, driver: wifi_probe_sniffer, mqtt: {topic: footfall/1/probes}}"


def windows(plan: Any, n: int, start: float = T0) -> list[Observation]:
    """Footfall counts per 15-minute window: 18-088 intervals (TM_Period phenomenonTime)."""
    ds = plan.sensors["footfall-1"].datastreams["footfall"]
    return [Observation(ds.id, "footfall-1", "footfall", start + 900 * i, start + 900 * (i + 1) + 0.5, 20 + i,
                        start + 900 * (i + 1), {"aggregation": "distinct_count", "period": "PT15M"})
            for i in range(n)]  # fmt: skip


def runner(sink: SensorThingsSink, rows: list[Any], tries: int = 10) -> tuple[int, list[int]]:
    """What the sink runner does: each batch is written until it is done (RetryableError keeps
    it, without the backoff sleep), then the cursor moves on. Fails if a batch stays stuck."""

    async def go() -> tuple[int, list[int]]:
        await sink.start()
        written, rejected = 0, []
        for i in range(0, len(rows), sink.batch_size):
            batch = rows[i : i + sink.batch_size]
            for _ in range(tries):
                try:
                    r = await sink.write(batch)
                    break
                except RetryableError:
                    continue
            else:
                raise AssertionError(f"batch {i // sink.batch_size} still blocked after {tries} tries")
            written += r.written
            rejected += r.rejected
        await sink.close()
        return written, rejected

    return run(go())


@pytest.mark.parametrize("data_array", ["auto", "never"])
def test_observations_the_server_cannot_take_are_parked_and_the_rest_moves_on(
    tmp_path: Path, sta_server: StaServer, data_array: str
) -> None:
    """This server answers 500 to an interval phenomenonTime (departure 5). The sink keeps to
    18-088 and sends the window as an interval; after three 500s for the same Observations while
    the server takes other writes, they are parked in the data dir, and every other row of the
    backlog lands. A restart tries the parked ones again without duplicating anything."""
    data = tmp_path / "data"
    cfg, plan = load(data, extra_sensors=FOOTFALL)
    streams = [ds for ds in plan.datastreams.values() if ds.sensor_id != "footfall-1"]
    good = [o for o in numeric_observations(plan, 400) if o.datastream_id in {ds.id for ds in streams}][:300]
    win = windows(plan, 5)
    rows = rows_of([*good[:100], *win[:3], *good[100:200], *win[3:], *good[200:]])
    sink = make_sink(cfg, plan, sta_server.url, data_array=data_array, batch_size=100)
    written, rejected = runner(sink, rows)
    assert (written, rejected) == (300, [])
    assert_value_for_value(sta_server, good)
    parked_file = data / "sensorthings-sta-parked.jsonl"
    parked = [json.loads(line) for line in parked_file.read_text().splitlines()]
    assert sorted(Observation.from_record(p["record"]).result for p in parked) == [20, 21, 22, 23, 24]
    assert all(p["reason"].startswith("HTTP 500") for p in parked)

    # restart: parked rows are tried at the first write and stay parked (the server still
    # cannot take them); the new rows land once
    later = [Observation(o.datastream_id, o.sensor_id, o.property, o.phenomenon_time + 3600, o.result_time + 3600,
                         o.result) for o in good[:50]]  # fmt: skip
    again = make_sink(cfg, plan, sta_server.url, data_array=data_array, batch_size=100)
    assert runner(again, rows_of(later, start=1000)) == (50, [])
    assert len(again.parked.items) == 5
    assert all(item["attempts"] == 4 for item in again.parked.items.values())
    assert_value_for_value(sta_server, [*good, *later])


class FaultyFront:
    """An HTTP front for the test server that answers 500 to the requests `fail` picks and
    passes everything else through unchanged: a server that cannot take particular
    Observations, or whose database is gone, in front of a real one."""

    def __init__(self, target_port: int) -> None:
        import http.client
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        from tests.conftest import free_port

        self.fail: Any = lambda method, body: False
        front = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _any(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if front.fail(self.command, body):
                    msg = b'{"detail": "injected failure"}'
                    self.send_response(500)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(msg)))
                    self.end_headers()
                    self.wfile.write(msg)
                    return
                up = http.client.HTTPConnection("127.0.0.1", target_port, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                up.request(self.command, self.path, body=body or None, headers=headers)
                resp = up.getresponse()
                payload = resp.read()
                up.close()
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in ("content-length", "connection", "transfer-encoding", "server", "date"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PATCH = do_DELETE = _any

        self.port = free_port()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/sensorthings/v1.1"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_parked_observations_land_once_the_server_takes_them(tmp_path: Path, sta_server: StaServer) -> None:
    """Two Observations the server fails with 500 while it takes the rest: parked, the backlog
    moves on; once the server takes them, the next try delivers them, once each."""
    front = FaultyFront(sta_server.port)
    try:
        data = tmp_path / "data"
        cfg, plan = load(data)
        expected = numeric_observations(plan, 200)
        poison = {expected[17].result, expected[151].result}  # floats, each once in the set
        assert len(poison) == 2 and all(isinstance(v, float) and sum(o.result == v for o in expected) == 1 for v in poison)
        # as a single POST (`"result":v,`) or inside a dataArray row (`,v,{`)
        mark = re.compile(rb"[:,](" + rb"|".join(re.escape(json.dumps(v).encode()) for v in poison) + rb")[,}]")
        front.fail = lambda method, body: method == "POST" and mark.search(body) is not None
        sink = make_sink(cfg, plan, front.url, batch_size=50, park_retry=0.001)  # 1 ms: the next write tries parked rows again
        assert runner(sink, rows_of(expected)) == (198, [])
        assert len(sink.parked.items) == 2 and len(server_observations(sta_server)) == 198

        front.fail = lambda method, body: False
        more = [Observation(o.datastream_id, o.sensor_id, o.property, o.phenomenon_time + 3600, o.result_time + 3600,
                            o.result) for o in expected[:10]]  # fmt: skip
        assert runner(sink, rows_of(more, start=500)) == (10, [])
        assert sink.parked.items == {}
        assert (data / "sensorthings-sta-parked.jsonl").read_text() == ""
        assert_value_for_value(sta_server, [*expected, *more])
    finally:
        front.close()


def test_parked_observations_pass_the_egress_guard_again_before_they_leave(tmp_path: Path, sta_server: StaServer) -> None:
    """A parked row leaves later, maybe under another config: it is cleared by the guard again,
    like every row from the outbox. One whose record now carries an identifier (planted in the
    parked file) is dropped and counted as blocked; the other parked row lands."""
    front = FaultyFront(sta_server.port)
    try:
        data = tmp_path / "data"
        cfg, plan = load(data)
        expected = numeric_observations(plan, 60)
        poison = {expected[7].result, expected[41].result}
        assert len(poison) == 2 and all(isinstance(v, float) and sum(o.result == v for o in expected) == 1 for v in poison)
        mark = re.compile(rb"[:,](" + rb"|".join(re.escape(json.dumps(v).encode()) for v in poison) + rb")[,}]")
        front.fail = lambda method, body: method == "POST" and mark.search(body) is not None
        sink = make_sink(cfg, plan, front.url, batch_size=20, park_retry=0.001)
        assert runner(sink, rows_of(expected)) == (58, [])
        parked_file = data / "sensorthings-sta-parked.jsonl"
        items = [json.loads(line) for line in parked_file.read_text().splitlines()]
        assert len(items) == 2
        planted = "sn:3c-22-fb-12-34-56"
        items[0]["record"] = re.sub(r'"r":[^,}]+', json.dumps({"r": planted})[1:-1], items[0]["record"])
        parked_file.write_text("".join(json.dumps(i) + "\n" for i in items))
        front.fail = lambda method, body: False
        again = make_sink(cfg, plan, front.url, batch_size=20, park_retry=0.001)
        more = [Observation(o.datastream_id, o.sensor_id, o.property, o.phenomenon_time + 3600, o.result_time + 3600,
                            o.result) for o in expected[:5]]  # fmt: skip
        assert runner(again, rows_of(more, start=500)) == (5, [])
        assert again.parked.items == {} and sum(again.guard.blocked.values()) >= 1
        stored = json.dumps(server_observations(sta_server))
        assert planted not in stored and "3c-22-fb" not in stored
        assert len(server_observations(sta_server)) == 58 + 1 + 5
    finally:
        front.close()


@pytest.mark.slow
def test_a_server_that_takes_no_writes_parks_nothing_and_keeps_every_row(tmp_path: Path, sta_server: StaServer) -> None:
    """Every write failing (a database gone read-only) is an outage, not a verdict on the rows:
    nothing is parked however often the batch is tried, and it lands once writes work again."""
    front = FaultyFront(sta_server.port)
    try:
        cfg, plan = load(tmp_path / "data")
        run(make_sink(cfg, plan, front.url).start())
        expected = numeric_observations(plan, 60)
        front.fail = lambda method, body: method in ("POST", "PATCH")
        for data_array in ("auto", "never"):
            sink = make_sink(cfg, plan, front.url, data_array=data_array, name=data_array)
            with pytest.raises(AssertionError, match="still blocked"):
                runner(sink, rows_of(expected), tries=6)
            assert sink.parked.items == {}
        front.fail = lambda method, body: False
        assert runner(make_sink(cfg, plan, front.url, name="never"), rows_of(expected)) == (60, [])
        assert_value_for_value(sta_server, expected)
    finally:
        front.close()


def test_an_identifier_planted_in_an_outbox_row_never_reaches_the_server(tmp_path: Path, sta_server: StaServer) -> None:
    """Rows from the outbox are cleared by the egress guard before a POST (`clear_record`, as
    the file and MQTT sinks): an identifier in the result, in a parameter, or an undeclared field
    is blocked and counted per reason; the clean rows around them land, value for value."""
    data = tmp_path / "data"
    cfg, plan = load(data)
    clean = numeric_observations(plan, 12)
    rows = rows_of(clean)
    planted = [("3c:22:fb:12:34:56", "mac"), ("resident@example.org", "email")]
    bad = []
    for i, (text, _) in enumerate(planted):
        doc = json.loads(rows[3 + i].body)
        doc["r"] = f"seen {text}"
        bad.append(Row(100 + i, rows[3 + i].ds, rows[3 + i].t, json.dumps(doc).encode()))
    doc = json.loads(rows[5].body)
    doc.setdefault("pa", {})["quality"] = "AB12 CDE"  # a plate in a parameter
    bad.append(Row(110, rows[5].ds, rows[5].t, json.dumps(doc).encode()))
    doc = json.loads(rows[6].body)
    doc["idTag"] = "04A2B3C4D5E6F7"  # a field the record format does not have
    bad.append(Row(111, rows[6].ds, rows[6].t, json.dumps(doc).encode()))
    sink = make_sink(cfg, plan, sta_server.url, batch_size=8)
    written, rejected = runner(sink, [*rows, *bad])
    assert (written, rejected) == (12, [])
    assert sum(sink.guard.blocked.values()) == 4 and sink.guard.blocked["mac"] == 1 and sink.guard.blocked["email"] == 1
    stored = json.dumps(server_observations(sta_server))
    for text in ("3c:22:fb", "resident@", "AB12", "04A2B3"):
        assert text not in stored
    assert_value_for_value(sta_server, clean)
