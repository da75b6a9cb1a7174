"""The OCPP tap between real chargers and a real operator: the `ocpp` library on both ends, real
WebSockets on free ports, the tap in the middle. What the charger sends reaches the operator
byte for byte and in order, and the other way; every frame reaches on_frame and decodes to the
right readings; the tap never answers for the operator, survives what it is sent, and keeps the
other chargers going."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from ocpp.v16 import call as call16
from ocpp.v201 import call as call201
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.typing import Subprotocol

from firmware_bridge.drivers import MESSAGE_DRIVERS
from gateway.model import Reading
from gateway.ops.metrics import Registry
from gateway.sources.ocpp import VERSIONS
from gateway.sources.ocpp.ingest import FrameIngest, IngestSensor
from gateway.sources.ocpp.settings import InputsOcpp, OcppSensor
from gateway.sources.ocpp.tap import Direction, OcppTap
from tests.conftest import free_port
from tests.integration.ocpp_peers import (
    TAG,
    Operator,
    basic_auth,
    charger,
    now_iso,
    sampled16,
    session16,
    session201,
)
from tests.integration.test_mqtt_ingest import wait_for
from tests.integration.test_mqtt_tls import make_ca_and_server

pytestmark = pytest.mark.integration

FAST = {"host": "127.0.0.1", "port": 0, "upstream_connect_timeout": 2, "handshake_timeout": 5,
        "upstream_backoff_max": 1}  # fmt: skip


@dataclass
class Rig:
    tap: OcppTap
    metrics: Registry
    frames: list[tuple[str, Direction, str, str]] = field(default_factory=list)
    readings: list[Reading] = field(default_factory=list)

    @property
    def url(self) -> str:
        scheme = "wss" if self.tap.inputs.tls is not None else "ws"
        return f"{scheme}://{'localhost' if scheme == 'wss' else '127.0.0.1'}:{self.tap.port}"

    def metric(self, name: str, **labels: str) -> float:
        return self.metrics.metrics[name].get(**labels) if name in self.metrics.metrics else 0.0

    def seen(self, cbid: str, direction: Direction) -> list[str]:
        return [text for box, d, text, _ in self.frames if box == cbid and d is direction]

    def values(self, sensor: str) -> list[dict[str, Any]]:
        return [dict(r.values) for r in self.readings if r.sensor_id == sensor]


DRIVER_OF = {version: name for name, version in VERSIONS.items()}


def ingest_sensor(sid: str, driver: str) -> IngestSensor:
    d = MESSAGE_DRIVERS[driver]
    return IngestSensor(sid, d, d.options(), VERSIONS[driver])


@contextlib.asynccontextmanager
async def rig(chargers: list[tuple[str, OcppSensor]], drivers: dict[str, str] | None = None,
              **inputs: Any) -> AsyncIterator[Rig]:  # fmt: skip
    """The tap, with FrameIngest and the sensors' real OCPP decoders behind its on_frame
    (`drivers`: sensor id -> driver name, ocpp16j unless named)."""
    metrics = Registry()
    r: Rig

    async def submit(reading: Reading, ack: Any) -> None:
        r.readings.append(reading)

    sensors = {cfg.charge_box_id: ingest_sensor(sid, (drivers or {}).get(sid, "ocpp16j")) for sid, cfg in chargers}  # fmt: skip
    ingest = FrameIngest(sensors, submit, metrics)

    def on_frame(cbid: str, direction: Direction, text: str, subprotocol: str) -> None:
        r.frames.append((cbid, direction, text, subprotocol))
        ingest.on_frame(cbid, direction, text, subprotocol)

    tap = OcppTap(InputsOcpp(**{**FAST, **inputs}), chargers, on_frame, metrics)
    r = Rig(tap, metrics)
    task = asyncio.create_task(ingest.run())
    try:
        async with tap:
            yield r
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def proxy(cbid: str, op: Operator, **kw: Any) -> OcppSensor:
    return OcppSensor(charge_box_id=cbid, upstream=op.url, **{"upstream_auth": "none", **kw})


@contextlib.asynccontextmanager
async def operator(port: int | None = None, **kw: Any) -> AsyncIterator[Operator]:
    op = Operator(port or free_port(), **kw)
    await op.start()
    try:
        yield op
    finally:
        await op.stop()


async def raw(url: str, cbid: str, version: str = "ocpp1.6", **kw: Any) -> ClientConnection:
    """A bare WebSocket client: sends whatever the test wants, OCPP or not."""
    kw.setdefault("subprotocols", [Subprotocol(version)])
    return await connect(f"{url}/{cbid}", proxy=None, **kw)


async def refused_with(url: str, cbid: str, **kw: Any) -> int:
    with pytest.raises(InvalidStatus) as info:
        await raw(url, cbid, **kw)
    return info.value.response.status_code


def expected_readings(version: str) -> list[dict[str, Any]]:
    """What the session in ocpp_peers decodes to: status in OCPI words, the meter, and the
    session only as personal markers and its energy (meter_stop - meter_start = 3.5 kWh)."""
    if version == "ocpp1.6":
        return [
            {"connector_status": "CHARGING", "connector_id": "1", "error_code": "NoError"},
            {"session_start": True},
            {"connector_status": "CHARGING", "connector_id": "1", "error_code": "NoError"},
            {"energy": 2.5, "power": 7200.0},  # personal (issue 12): no connector id rides along
            {"session_end": True, "session_energy": 3.5},
            {"connector_status": "AVAILABLE", "connector_id": "1", "error_code": "NoError"},
        ]
    return [  # the 2.0.1 meter is personal too: every register reading, none with its EVSE id
        {"connector_status": "CHARGING", "connector_id": "1"},
        {"session_start": True},
        {"energy": 1.0},
        {"energy": 2.5, "power": 7200.0},
        {"energy": 3.0},
        {"session_end": True, "session_energy": 3.5},
        {"energy": 4.5},
        {"connector_status": "AVAILABLE", "connector_id": "1"},
    ]


def untagged(values: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Readings without the transaction id, which both decoders carry as a declared identifier
    for the privacy stage to tell sessions apart (issue 12); its value is the operator's."""
    return [{k: v for k, v in d.items() if k != "transaction_id"} for d in values]


async def run_session(version: str, cp: Any) -> None:
    if version == "ocpp1.6":
        await session16(cp)
    else:
        await session201(cp)


# --------------------------------------------------------------------------- relay


@pytest.mark.parametrize("version", ["ocpp1.6", "ocpp2.0.1"])
def test_a_whole_session_reaches_the_operator_byte_identical_and_decodes(version: str) -> None:
    async def scenario() -> None:
        async with operator() as op, rig([("ev-1", proxy("CB-0042", op))], {"ev-1": DRIVER_OF[version]}) as r:  # fmt: skip
            async with charger(r.url, "CB-0042", version) as c:
                assert c.ws.subprotocol == version
                await run_session(version, c.cp)
            await wait_for(lambda: len(r.values("ev-1")) >= len(expected_readings(version)), 10, "readings")
            # byte for byte, in order, both ways
            assert c.wire.sent == op.received("CB-0042") and len(c.wire.sent) == 8
            assert op.sent("CB-0042") == c.wire.received and len(c.wire.received) == 8
            # every frame reached on_frame, in order, tagged with the negotiated version
            assert r.seen("CB-0042", Direction.IN) == c.wire.sent
            assert r.seen("CB-0042", Direction.OUT) == c.wire.received
            assert {f[3] for f in r.frames} == {version}
            assert untagged(r.values("ev-1")) == expected_readings(version)
            assert r.metric("gateway_ocpp_frames_total", sensor="ev-1", direction="in") == 8
            assert r.metric("gateway_ocpp_bad_frames_total", sensor="ev-1", direction="in", reason="not_json") == 0  # fmt: skip
            assert TAG not in repr([r.values("ev-1")]) and TAG not in r.metrics.render()

    asyncio.run(scenario())


def test_operator_restart_mid_session_closes_the_charger_and_the_session_resumes() -> None:
    async def scenario() -> None:
        port = free_port()
        async with operator(port) as op, rig([("ev-1", proxy("CB-1", op))]) as r:
            async with charger(r.url, "CB-1", "ocpp1.6") as c:
                await c.cp.call(call16.BootNotification(charge_point_model="M", charge_point_vendor="V"))  # fmt: skip
                start = await c.cp.call(call16.StartTransaction(connector_id=1, id_tag=TAG, meter_start=1000, timestamp=now_iso()))  # fmt: skip
                await op.stop()  # the operator goes away mid-session
                await asyncio.wait_for(c.ws.wait_closed(), 10)  # ... so the tap hangs up
                assert c.ws.close_code == 1001  # the operator's own close code, mirrored
                # while it is down nobody answers in its name: the handshake is refused
                assert await refused_with(r.url, "CB-1") == 503
                assert r.metric("gateway_ocpp_upstream_failures_total", sensor="ev-1", reason="unreachable") >= 1  # fmt: skip
            await op.start()  # back on the same address
            for _ in range(40):  # the charger retries, as OCPP chargers do
                try:
                    async with charger(r.url, "CB-1", "ocpp1.6") as c2:
                        await c2.cp.call(call16.MeterValues(connector_id=1, transaction_id=start.transaction_id, meter_value=sampled16(2500, 7200, 60)))  # fmt: skip
                        await c2.cp.call(call16.StopTransaction(meter_stop=4500, timestamp=now_iso(), transaction_id=start.transaction_id))  # fmt: skip
                        break
                except InvalidStatus as e:
                    assert e.response.status_code == 503
                    await asyncio.sleep(0.25)
            else:
                raise AssertionError("charger never got through after the operator came back")
            await wait_for(lambda: any("session_end" in v for v in r.values("ev-1")), 10, "stop")
            assert c2.wire.sent == op.wires["CB-1"][-1].received
            assert {"session_end": True, "session_energy": 3.5} in untagged(r.values("ev-1"))

    asyncio.run(scenario())


def test_a_reconnecting_charger_is_taken_at_once_and_its_old_link_dropped() -> None:
    async def scenario() -> None:
        async with operator() as op, rig([("ev-1", proxy("CB-1", op))]) as r:
            async with charger(r.url, "CB-1", "ocpp1.6") as old:
                await old.cp.call(call16.Heartbeat())
                # the charger rebooted; its old TCP link still looks open to the tap
                async with charger(r.url, "CB-1", "ocpp1.6") as new:
                    await asyncio.wait_for(old.ws.wait_closed(), 10)
                    hb = await new.cp.call(call16.Heartbeat())
                    assert hb.current_time
                    # the operator saw the old connection go before the new one came
                    assert len(op.wires["CB-1"]) == 2
                    assert op.wires["CB-1"][0].ws.state.name == "CLOSED"
                    assert op.wires["CB-1"][1].received == new.wire.sent
            assert r.metric("gateway_ocpp_handshakes_total", sensor="ev-1", result="accepted") == 2

    asyncio.run(scenario())


# --------------------------------------------------------------------------- bad input


def test_unknown_charge_box_and_wrong_password_are_refused_at_the_handshake(caplog: pytest.LogCaptureFixture) -> None:  # fmt: skip
    caplog.set_level(logging.DEBUG)

    async def scenario() -> None:
        secret = "s3cret-authorization-key"
        async with operator() as op, rig([
            ("ev-1", proxy("CB-1", op, auth={"password": secret}, upstream_auth="passthrough",
                           insecure_upstream=True)),
            ("ev-2", proxy("CB-2", op)),
        ]) as r:  # fmt: skip
            async with charger(r.url, "CB-2", "ocpp1.6") as other:
                assert await refused_with(r.url, "NOT-CONFIGURED-77") == 404
                assert await refused_with(r.url, "CB-1") == 401  # no credentials
                assert await refused_with(r.url, "CB-1", additional_headers=basic_auth("CB-1", "guess-guess")) == 401  # fmt: skip
                assert await refused_with(r.url, "CB-1", additional_headers=basic_auth("CB-2", secret)) == 401  # fmt: skip
                assert await refused_with(r.url, "CB-1", subprotocols=[Subprotocol("ocpp2.1")], additional_headers=basic_auth("CB-1", secret)) == 400  # fmt: skip
                async with charger(r.url, "CB-1", "ocpp1.6", password=secret) as good:
                    await session16(good.cp)
                await session16(other.cp)  # the other charger never noticed
            # none of the refused handshakes ever reached the operator
            assert len(op.wires["CB-1"]) == 1 and "NOT-CONFIGURED-77" not in op.wires
            assert r.metric("gateway_ocpp_handshakes_total", sensor="(unknown)", result="unknown_charger") == 1  # fmt: skip
            assert r.metric("gateway_ocpp_handshakes_total", sensor="ev-1", result="bad_auth") == 3
            assert r.metric("gateway_ocpp_handshakes_total", sensor="ev-1", result="no_subprotocol") == 1  # fmt: skip
            # passthrough: the charger's own Authorization header went on to the operator
            assert op.authorization == [None, basic_auth("CB-1", secret)[0][1]]
            ours = [rec.getMessage() + repr(rec.__dict__) for rec in caplog.records if rec.name.startswith("gateway")]  # fmt: skip
            assert any("charger refused" in line for line in ours)
            text = "\n".join(ours) + r.metrics.render()
            for leak in ("NOT-CONFIGURED-77", secret, "guess-guess", TAG):
                assert leak not in text

    asyncio.run(scenario())


def test_upstream_credentials_are_replaced_or_withheld_as_configured(tmp_path: Path) -> None:
    (tmp_path / "op.pw").write_text("operator-side-password\n")

    async def scenario() -> None:
        async with operator(password="operator-side-password") as op, rig([
            ("ev-1", OcppSensor(charge_box_id="CB-1", upstream=op.url, insecure_upstream=True,
                                upstream_auth={"password_file": str(tmp_path / "op.pw")})),
            ("ev-2", proxy("CB-2", op)),
        ]) as r:  # fmt: skip
            async with charger(r.url, "CB-1", "ocpp1.6", password="what-the-charger-knows") as c:
                await session16(c.cp)
            # the operator wants a password CB-2 is not given: its refusal is passed on as is
            assert await refused_with(r.url, "CB-2", additional_headers=basic_auth("CB-2", "whatever1")) == 401  # fmt: skip
            assert op.authorization == [basic_auth("CB-1", "operator-side-password")[0][1], None]
            assert op.user_agents[0] == "test-charger/1.0"
            assert r.metric("gateway_ocpp_upstream_failures_total", sensor="ev-2", reason="http_401") == 1  # fmt: skip

    asyncio.run(scenario())


def test_oversized_frames_cut_that_charger_only_and_are_counted() -> None:
    async def scenario() -> None:
        async with operator() as op, rig([("ev-1", proxy("CB-1", op)), ("ev-2", proxy("CB-2", op))],
                                         max_frame_bytes=4096) as r:  # fmt: skip
            async with charger(r.url, "CB-2", "ocpp1.6") as other:
                big = await raw(r.url, "CB-1")
                await big.send(json.dumps([2, "big", "DataTransfer", {"vendorId": "X", "data": "A" * 5000}]))  # fmt: skip
                await asyncio.wait_for(big.wait_closed(), 10)
                assert big.close_code == 1009
                await session16(other.cp)
            assert r.metric("gateway_ocpp_refused_total", sensor="ev-1", reason="too_large") == 1
            assert not any("big" in m for m in op.received("CB-1"))  # refused, not relayed
            async with charger(r.url, "CB-1", "ocpp1.6") as again:  # and welcome back
                await session16(again.cp)

    asyncio.run(scenario())


def test_frames_that_are_not_ocpp_are_relayed_unchanged_and_counted() -> None:
    async def scenario() -> None:
        junk = ["this is not json", '{"an": "object"}', "[2, 7, 9]", '[2,"x","Heartbeat",{}] trailing']  # fmt: skip
        async with operator() as op, rig([("ev-1", proxy("CB-1", op))]) as r:
            ws = await raw(r.url, "CB-1")
            for text in junk:
                await ws.send(text)
            await ws.send(b"\x00\x01binary")
            await ws.send('[2,"hb-1","Heartbeat",{}]')
            reply = json.loads(str(await asyncio.wait_for(ws.recv(), 10)))
            assert reply[0] == 3 and reply[1] == "hb-1"  # the operator answered, not the tap
            await ws.close()
            await wait_for(lambda: len(op.received("CB-1")) == 6, 10, "relay")
            # binary is not OCPP-J either, but it too goes on unchanged (as a binary message)
            assert op.received("CB-1") == [*junk, b"\x00\x01binary", '[2,"hb-1","Heartbeat",{}]']
            assert r.seen("CB-1", Direction.IN) == [*junk, '[2,"hb-1","Heartbeat",{}]']
            name = "gateway_ocpp_bad_frames_total"
            bad = {why: r.metric(name, sensor="ev-1", direction="in", reason=why)
                   for why in ("not_json", "not_ocpp", "binary")}  # fmt: skip
            assert bad == {"not_json": 2, "not_ocpp": 2, "binary": 1}
            await wait_for(lambda: r.metric("gateway_ocpp_decode_errors_total", sensor="ev-1", reason="not_json") == 2, 10, "decode errors")  # fmt: skip

    asyncio.run(scenario())


def test_a_flood_is_cut_and_counted_and_the_other_chargers_go_on() -> None:
    async def scenario() -> None:
        async with operator() as op, rig([("ev-1", proxy("CB-1", op)), ("ev-2", proxy("CB-2", op))],
                                         {"ev-2": "ocpp201j"}, max_frames_per_s=5, burst=20) as r:  # fmt: skip
            async with charger(r.url, "CB-2", "ocpp2.0.1") as other:
                flood = await raw(r.url, "CB-1")
                with contextlib.suppress(ConnectionClosed):
                    for i in range(500):
                        await flood.send(json.dumps([2, f"f{i}", "Heartbeat", {}]))
                await asyncio.wait_for(flood.wait_closed(), 10)
                assert flood.close_code == 1008
                await session201(other.cp)
            assert r.metric("gateway_ocpp_refused_total", sensor="ev-1", reason="flood") == 1
            assert len(op.received("CB-1")) <= 21  # the burst, then the cut
            assert untagged(r.values("ev-2")) == expected_readings("ocpp2.0.1")

    asyncio.run(scenario())


def test_a_charger_that_offers_both_versions_gets_the_operators_choice() -> None:
    async def scenario() -> None:
        async with operator() as op, rig([("ev-1", proxy("CB-1", op))]) as r:
            ws = await raw(r.url, "CB-1", subprotocols=[Subprotocol("ocpp1.6"), Subprotocol("ocpp2.0.1")])  # fmt: skip
            assert ws.subprotocol == "ocpp2.0.1"  # the test operator prefers 2.0.1
            await ws.close()
        async with operator() as op:
            only16 = OcppSensor(charge_box_id="CB-1", upstream=op.url, upstream_auth="none", subprotocols=["ocpp1.6"])  # fmt: skip
            async with rig([("ev-1", only16)]) as r:
                ws = await raw(r.url, "CB-1", subprotocols=[Subprotocol("ocpp2.0.1"), Subprotocol("ocpp1.6")])  # fmt: skip
                assert ws.subprotocol == "ocpp1.6"  # 2.0.1 was never offered upstream
                await ws.close()

    asyncio.run(scenario())


# --------------------------------------------------------------------------- TLS


def test_tls_to_the_charger_and_a_verified_wss_upstream(tmp_path: Path) -> None:
    ca, cert, key = make_ca_and_server(tmp_path)
    rogue_dir = tmp_path / "rogue"
    rogue_dir.mkdir()
    _, rogue_cert, rogue_key = make_ca_and_server(rogue_dir)  # same names, another CA
    (tmp_path / "cb.pw").write_text("profile-two-password\n")

    def server_ctx(c: Path, k: Path) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(c, k)
        return ctx

    client = ssl.create_default_context(cafile=ca)

    async def scenario() -> None:
        async with operator(ssl_context=server_ctx(cert, key)) as op, \
                   operator(ssl_context=server_ctx(rogue_cert, rogue_key)) as rogue, \
                   rig([("ev-1", OcppSensor(charge_box_id="CB-1", upstream=op.url, upstream_ca_file=ca,
                                            auth={"password_file": str(tmp_path / "cb.pw")})),
                        ("ev-2", OcppSensor(charge_box_id="CB-2", upstream=rogue.url, upstream_ca_file=ca))],
                       tls={"cert_file": cert, "key_file": key}) as r:  # fmt: skip
            assert r.url.startswith("wss://")
            async with charger(r.url, "CB-1", "ocpp2.0.1", password="profile-two-password", ssl_context=client) as c:  # fmt: skip
                await session201(c.cp)
            assert c.wire.sent == op.received("CB-1")
            # security profile 2: the password travelled inside TLS, passed through to the operator
            assert op.authorization == [basic_auth("CB-1", "profile-two-password")[0][1]]
            # an upstream whose certificate the configured CA did not sign is never used
            assert await refused_with(r.url, "CB-2", ssl=client) == 503
            assert r.metric("gateway_ocpp_upstream_failures_total", sensor="ev-2", reason="tls") >= 1
            assert rogue.wires == {}
            # and a charger that does not speak TLS gets nowhere
            with pytest.raises((InvalidHandshake, OSError)):
                await raw(r.url.replace("wss://localhost", "ws://127.0.0.1"), "CB-1", open_timeout=5)

    asyncio.run(scenario())


# --------------------------------------------------------------------------- standalone


def test_standalone_mode_is_a_minimal_csms_for_both_versions(tmp_path: Path) -> None:
    (tmp_path / "tags.txt").write_text(f"# borough fleet cards\n{TAG.lower()}\n")

    async def scenario() -> None:
        async with rig([
            ("ev-1", OcppSensor(charge_box_id="CB-1", mode="standalone")),
            ("ev-2", OcppSensor(charge_box_id="CS-2", mode="standalone", authorize="local_list",
                                local_list_file=tmp_path / "tags.txt")),
        ], {"ev-2": "ocpp201j"}) as r:  # fmt: skip
            async with charger(r.url, "CB-1", "ocpp1.6") as c16:
                await session16(c16.cp)  # the library validates every answer against the schemas
            async with charger(r.url, "CS-2", "ocpp2.0.1") as c201:
                await session201(c201.cp)  # the card is on the list (case does not matter)
                other = await c201.cp.call(call201.Authorize(id_token={"idToken": "DEADBEEF99", "type": "ISO14443"}))  # fmt: skip
                assert other.id_token_info["status"] == "Invalid"
            await wait_for(lambda: len(r.values("ev-1")) >= 6 and len(r.values("ev-2")) >= 8, 10, "readings")  # fmt: skip
            # the gateway's own answers reach on_frame too: the 1.6 stop links to its start
            assert r.seen("CB-1", Direction.OUT) == c16.wire.received
            assert untagged(r.values("ev-1")) == expected_readings("ocpp1.6")
            assert untagged(r.values("ev-2")) == expected_readings("ocpp2.0.1")

    asyncio.run(scenario())


def test_a_failing_frame_consumer_never_cuts_the_charger_off() -> None:
    async def scenario() -> None:
        def broken(cbid: str, direction: Direction, text: str, subprotocol: str) -> None:
            raise RuntimeError("pipeline trouble")

        metrics = Registry()
        async with operator() as op:
            tap = OcppTap(InputsOcpp(**FAST), [("ev-1", proxy("CB-1", op))], broken, metrics)
            async with tap, charger(f"ws://127.0.0.1:{tap.port}", "CB-1", "ocpp1.6") as c:
                await session16(c.cp)
            assert c.wire.sent == op.received("CB-1")
            assert metrics.metrics["gateway_ocpp_callback_errors_total"].get(sensor="ev-1") == 16

    asyncio.run(scenario())


def test_garbage_at_the_socket_and_the_handshake_never_stops_the_tap(caplog: pytest.LogCaptureFixture) -> None:  # fmt: skip
    caplog.set_level(logging.DEBUG)

    async def scenario() -> None:
        async with operator() as op, rig([("ev-1", proxy("CB-1", op, auth={"password": "right-password"}))]) as r:  # fmt: skip
            port = r.tap.port
            idle_reader, idle_writer = await asyncio.open_connection("127.0.0.1", port)  # says nothing
            for junk in (b"\x16\x03\x01\x02\x00" + bytes(range(256)) * 4,  # a TLS hello on plain ws
                         b"GET /CB-1 HTTP/1.1\r\nHost: x\r\n" + b"X: " + b"a" * 20000 + b"\r\n\r\n",
                         b"NONSENSE\r\n\r\n", b"\xff" * 10_000):  # fmt: skip
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(junk)
                await writer.drain()
                with contextlib.suppress(ConnectionError):
                    await asyncio.wait_for(reader.read(), 10)  # the tap answers or hangs up
                writer.close()
            for header in ("Basic !!!not-base64!!!", "Bearer abc", "Basic Q0ItMQ==", "Basic " + "QQ==" * 1000):  # fmt: skip
                assert await refused_with(r.url, "CB-1", additional_headers=[("Authorization", header)]) == 401  # fmt: skip
            with pytest.raises(InvalidHandshake):  # a header line over 8 KiB: dropped unanswered
                await raw(r.url, "CB-1", additional_headers=[("Authorization", "Basic " + "QQ==" * 5000)])  # fmt: skip
            for path in ("", "%2F%2F", "CB-1%00", "../../CB-1x", "CB-1/extra"):
                assert await refused_with(r.url, path) in (400, 404)
            async with charger(r.url, "CB-1", "ocpp1.6", password="right-password") as c:
                await session16(c.cp)
            assert c.wire.sent == op.received("CB-1")
            assert r.metric("gateway_ocpp_handshakes_total", sensor="(unknown)", result="bad_request") >= 4  # fmt: skip
            idle_writer.close()
            del idle_reader
        ours = [rec for rec in caplog.records if rec.name.startswith("gateway")]
        assert not [rec for rec in ours if rec.exc_info or "NONSENSE" in rec.getMessage()]

    asyncio.run(scenario())


# --------------------------------------------------------------------------- the whole gateway


def test_sessions_through_the_gateway_leave_as_the_right_observations(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:  # fmt: skip
    """`street-gateway run`'s pipeline from a config with `inputs.ocpp` and `ocpp:` sensors: a 1.6
    and a 2.0.1 charger through the tap and a borough charger in standalone mode, to the file
    store. Per reading: status only; sessions and meters only as counts, sums and increments per
    window, which one session per window cannot pass (min_count 3, issue 12): published withheld."""

    from gateway.config import parse_config
    from gateway.pipeline import Pipeline
    from tests.integration.test_mqtt_ingest import read_file

    caplog.set_level(logging.INFO)
    op_port, tap_port = free_port(), free_port()
    up = f"ws://127.0.0.1:{op_port}/ocpp"
    text = f"""
gateway: {{id: tap-gw-01, borough: camden, location: {{lat: 51.539, lon: -0.1426}}, data_dir: '{tmp_path / "data"}'}}
inputs: {{ocpp: {{host: 127.0.0.1, port: {tap_port}}}}}
sensors:
  - {{id: ev-16, driver: ocpp16j, ocpp: {{charge_box_id: CB-0042, upstream: '{up}', upstream_auth: none}}}}
  - {{id: ev-201, driver: ocpp201j, ocpp: {{charge_box_id: CS-0043, upstream: '{up}', upstream_auth: none}}}}
  - {{id: ev-own, driver: ocpp201j, ocpp: {{charge_box_id: LBC-EV-7, mode: standalone}}}}
privacy: {{window: 1m, min_count: 3}}
sinks: {{file: {{path: observations.jsonl}}}}
ops: {{http: null}}
"""

    async def scenario() -> Any:
        p = Pipeline(parse_config(text, "gw.yaml", {}))
        async with operator(op_port) as op:
            await p.start()
            url = f"ws://127.0.0.1:{tap_port}"
            for _ in range(200):  # the tap starts listening as a source task
                with contextlib.suppress(OSError):
                    _, w = await asyncio.open_connection("127.0.0.1", tap_port)
                    w.close()
                    break
                await asyncio.sleep(0.05)
            async with charger(url, "CB-0042", "ocpp1.6") as c16, charger(url, "CS-0043", "ocpp2.0.1") as c201:  # fmt: skip
                await asyncio.gather(session16(c16.cp), session201(c201.cp))
            async with charger(url, "LBC-EV-7", "ocpp2.0.1") as own:
                await session201(own.cp, txid="lbc-0001")
            assert c16.wire.sent == op.received("CB-0042") and c201.wire.sent == op.received("CS-0043")
            ingest = p.source("ocpp-ingest")
            await wait_for(lambda: not ingest._queue and p.queue.empty(), 10, "every frame decoded and committed")  # type: ignore[union-attr]  # fmt: skip
            await asyncio.sleep(0.3)
            metrics = p.metrics.render()
            await p.stop()
        return p, metrics

    p, metrics = asyncio.run(scenario())
    streams = p.plan.datastreams
    got: dict[tuple[str, str], list[Any]] = {}
    for o in read_file(p):
        ds = streams[o["Datastream"]["@iot.id"]]
        got.setdefault((ds.sensor_id, ds.property), []).append(o["result"])
    assert got.pop(("ev-16", "connector_status")) == ["CHARGING", "CHARGING", "AVAILABLE"]
    assert got.pop(("ev-16", "error_code")) == ["NoError"] * 3
    assert got.pop(("ev-16", "connector_id")) == ["1"] * 3  # the 1.6 meter is personal (issue 12)
    assert set(got.pop(("ev-16", "energy_metered"), [None])) == {None}  # one session: withheld
    for sid in ("ev-201", "ev-own"):  # the 2.0.1 meter is personal as well
        assert got.pop((sid, "connector_status")) == ["CHARGING", "AVAILABLE"]
        assert got.pop((sid, "connector_id")) == ["1"] * 2
        assert got.pop((sid, "energy_metered")) == [None]  # one session: withheld
    for sid in ("ev-16", "ev-201", "ev-own"):  # the sessions: one window each, no time of their own
        for prop in ("sessions_started", "sessions_ended", "energy_delivered"):
            assert got.pop((sid, prop)) == [None]  # one session is fewer than min_count: withheld
    assert got == {}
    stored = (p.cfg.gateway.data_dir / "observations.jsonl").read_text()
    logs = "\n".join(rec.getMessage() + repr(rec.__dict__) for rec in caplog.records if rec.name.startswith("gateway"))  # fmt: skip
    for leak in (TAG, "tx-7f3a91", "lbc-0001"):
        assert leak not in stored and leak not in logs and leak not in metrics
    assert 'gateway_ocpp_connected{sensor="ev-16"} 0' in metrics
