"""Both ends of an OCPP-J link as the maintained `ocpp` library (PyPI `ocpp`, Mobility House)
implements them, over real WebSockets (`websockets`): an operator's CSMS, and a charge point.

Every text either end writes or reads passes through a `Wire` that records it, so a test can
compare, byte for byte and in order, what the charger sent with what the operator received.
The library validates every call and result against the OCA JSON schemas on both ends.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ssl
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ocpp.routing import on
from ocpp.v16 import ChargePoint as ChargePoint16
from ocpp.v16 import call as call16
from ocpp.v16 import call_result as result16
from ocpp.v16.enums import Action as Action16
from ocpp.v201 import ChargePoint as ChargePoint201
from ocpp.v201 import call as call201
from ocpp.v201 import call_result as result201
from ocpp.v201.enums import Action as Action201
from websockets.asyncio.client import connect
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.typing import Subprotocol

TAG = "04A1B2C3D4E5F6"  # an RFID card UID: must never reach a reading, log or metric


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class Wire:
    """The connection the ocpp library talks through, recording every text on the way."""

    ws: Any
    sent: list[str] = field(default_factory=list)
    received: list[str] = field(default_factory=list)

    async def recv(self) -> str:
        message = await self.ws.recv()
        self.received.append(message)
        return str(message)

    async def send(self, message: str) -> None:
        await self.ws.send(message)
        self.sent.append(message)


# --------------------------------------------------------------------------- the operator


class Operator16(ChargePoint16):
    """The operator's view of one 1.6 charge point: accepts everything, numbers transactions.
    (Handlers are `on_*`: the library's own `start` and `call` must not be shadowed.)"""

    next_tx: Callable[[], int]

    @on(Action16.boot_notification)
    def on_boot(self, **_: Any) -> Any:
        return result16.BootNotification(current_time=now_iso(), interval=300, status="Accepted")

    @on(Action16.heartbeat)
    def on_heartbeat(self) -> Any:
        return result16.Heartbeat(current_time=now_iso())

    @on(Action16.status_notification)
    def on_status(self, **_: Any) -> Any:
        return result16.StatusNotification()

    @on(Action16.authorize)
    def on_authorize(self, id_tag: str) -> Any:
        return result16.Authorize(id_tag_info={"status": "Accepted"})

    @on(Action16.start_transaction)
    def on_start(self, **_: Any) -> Any:
        return result16.StartTransaction(transaction_id=self.next_tx(), id_tag_info={"status": "Accepted"})  # fmt: skip

    @on(Action16.meter_values)
    def on_meter(self, **_: Any) -> Any:
        return result16.MeterValues()

    @on(Action16.stop_transaction)
    def on_stop(self, **_: Any) -> Any:
        return result16.StopTransaction(id_tag_info={"status": "Accepted"})


class Operator201(ChargePoint201):
    @on(Action201.boot_notification)
    def on_boot(self, **_: Any) -> Any:
        return result201.BootNotification(current_time=now_iso(), interval=300, status="Accepted")

    @on(Action201.heartbeat)
    def on_heartbeat(self, **_: Any) -> Any:
        return result201.Heartbeat(current_time=now_iso())

    @on(Action201.status_notification)
    def on_status(self, **_: Any) -> Any:
        return result201.StatusNotification()

    @on(Action201.authorize)
    def on_authorize(self, **_: Any) -> Any:
        return result201.Authorize(id_token_info={"status": "Accepted"})

    @on(Action201.transaction_event)
    def on_transaction(self, id_token: Any = None, **_: Any) -> Any:
        if id_token is None:
            return result201.TransactionEvent()
        return result201.TransactionEvent(id_token_info={"status": "Accepted"})

    @on(Action201.meter_values)
    def on_meter(self, **_: Any) -> Any:
        return result201.MeterValues()


class Operator:
    """A CSMS on a port of its own: records each charger's wires and handshake headers."""

    def __init__(
        self,
        port: int,
        ssl_context: ssl.SSLContext | None = None,
        password: str | None = None,  # basic auth it demands of chargers, if any
    ) -> None:
        self.port = port
        self.ssl_context = ssl_context
        self.password = password
        self.wires: dict[str, list[Wire]] = defaultdict(list)
        self.authorization: list[str | None] = []  # Authorization header of each handshake
        self.user_agents: list[str | None] = []
        self.refused = 0
        self._tx = 5530
        self._server: Server | None = None

    @property
    def url(self) -> str:
        scheme = "wss" if self.ssl_context is not None else "ws"
        return f"{scheme}://{'localhost' if self.ssl_context else '127.0.0.1'}:{self.port}/ocpp"

    def next_tx(self) -> int:
        self._tx += 1
        return self._tx

    async def start(self) -> None:
        self._server = await serve(
            self._handle,
            "127.0.0.1",
            self.port,
            subprotocols=[Subprotocol("ocpp2.0.1"), Subprotocol("ocpp1.6")],
            ssl=self.ssl_context,
            process_request=self._check,
        )

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    def _check(self, conn: ServerConnection, request: Request) -> Response | None:
        header = request.headers.get("Authorization")
        self.authorization.append(header)
        self.user_agents.append(request.headers.get("User-Agent"))
        if self.password is None:
            return None
        cbid = request.path.rsplit("/", 1)[-1]
        expected = "Basic " + base64.b64encode(f"{cbid}:{self.password}".encode()).decode()
        if header != expected:
            self.refused += 1
            return conn.respond(401, "Unauthorized\n")
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        cbid = ws.request.path.rsplit("/", 1)[-1] if ws.request is not None else "?"
        wire = Wire(ws)
        self.wires[cbid].append(wire)
        cp: Any
        if ws.subprotocol == "ocpp1.6":
            cp = Operator16(cbid, wire)
            cp.next_tx = self.next_tx
        else:
            cp = Operator201(cbid, wire)
        with contextlib.suppress(ConnectionClosed):
            await cp.start()

    def sent(self, cbid: str) -> list[str]:
        return [m for w in self.wires[cbid] for m in w.sent]

    def received(self, cbid: str) -> list[str]:
        return [m for w in self.wires[cbid] for m in w.received]


# --------------------------------------------------------------------------- the charger


@dataclass
class Charger:
    cp: Any  # ocpp.v16.ChargePoint or ocpp.v201.ChargePoint
    wire: Wire
    ws: Any


def basic_auth(user: str, password: str) -> list[tuple[str, str]]:
    return [("Authorization", "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode())]


@contextlib.asynccontextmanager
async def charger(
    url: str,
    cbid: str,
    version: str,
    password: str | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> AsyncIterator[Charger]:
    """A charge point (the ocpp library) connected to `url`/<cbid>, its reader running."""
    headers = basic_auth(cbid, password) if password is not None else []
    async with connect(
        f"{url}/{cbid}",
        subprotocols=[Subprotocol(version)],
        additional_headers=headers,
        user_agent_header="test-charger/1.0",
        ssl=ssl_context,
        proxy=None,
        open_timeout=20,
    ) as ws:
        wire = Wire(ws)
        cls = ChargePoint16 if version == "ocpp1.6" else ChargePoint201
        cp = cls(cbid, wire, response_timeout=15)
        reader = asyncio.create_task(cp.start())
        try:
            yield Charger(cp, wire, ws)
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                await reader


# --------------------------------------------------------------------------- sessions


def sampled16(energy_wh: int, power_w: int, soc: int) -> list[dict[str, Any]]:
    return [{"timestamp": now_iso(), "sampledValue": [
        {"value": str(energy_wh), "measurand": "Energy.Active.Import.Register", "unit": "Wh"},
        {"value": str(power_w), "measurand": "Power.Active.Import", "unit": "W"},
        {"value": str(soc), "measurand": "SoC", "unit": "Percent", "location": "EV"},
    ]}]  # fmt: skip


async def session16(cp: Any, tag: str = TAG, meter_start: int = 1000) -> int:
    """Boot, Status, Authorize, Start, MeterValues, Stop as a 1.6 charge point sends them."""
    boot = await cp.call(call16.BootNotification(charge_point_model="LC-7", charge_point_vendor="Street"))  # fmt: skip
    assert boot.status == "Accepted"
    await cp.call(call16.StatusNotification(connector_id=1, error_code="NoError", status="Preparing", timestamp=now_iso()))  # fmt: skip
    auth = await cp.call(call16.Authorize(id_tag=tag))
    assert auth.id_tag_info["status"] == "Accepted"
    start = await cp.call(call16.StartTransaction(connector_id=1, id_tag=tag, meter_start=meter_start, timestamp=now_iso()))  # fmt: skip
    await cp.call(call16.StatusNotification(connector_id=1, error_code="NoError", status="Charging", timestamp=now_iso()))  # fmt: skip
    await cp.call(call16.MeterValues(connector_id=1, transaction_id=start.transaction_id,
                                     meter_value=sampled16(meter_start + 1500, 7200, 54)))  # fmt: skip
    await cp.call(call16.StopTransaction(meter_stop=meter_start + 3500, timestamp=now_iso(),
                                         transaction_id=start.transaction_id, id_tag=tag,
                                         reason="EVDisconnected"))  # fmt: skip
    await cp.call(call16.StatusNotification(connector_id=1, error_code="NoError", status="Available", timestamp=now_iso()))  # fmt: skip
    return int(start.transaction_id)


def sampled201(context: str, energy_wh: float, power_w: float | None = None, soc: int | None = None) -> list[dict[str, Any]]:  # fmt: skip
    """A MeterValueType as MicroOcpp's v201 code writes it (src/MicroOcpp/Model/Metering/
    MeterValuesV201.cpp): numbers, `context` unless periodic, `unitOfMeasure` {unit}."""
    values: list[dict[str, Any]] = [{"value": energy_wh, "context": context,
                                     "measurand": "Energy.Active.Import.Register",
                                     "unitOfMeasure": {"unit": "Wh"}}]  # fmt: skip
    if power_w is not None:
        values.append({"value": power_w, "context": context, "measurand": "Power.Active.Import", "unitOfMeasure": {"unit": "W"}})  # fmt: skip
    if soc is not None:
        values.append({"value": soc, "context": context, "measurand": "SoC", "location": "EV", "unitOfMeasure": {"unit": "Percent"}})  # fmt: skip
    return [{"timestamp": now_iso(), "sampledValue": values}]


async def session201(cp: Any, tag: str = TAG, txid: str = "tx-7f3a91", meter_start: float = 1000) -> None:  # fmt: skip
    """The same session as a 2.0.1 station sends it: TransactionEvent Started/Updated/Ended."""
    token = {"idToken": tag, "type": "ISO14443"}
    boot = await cp.call(call201.BootNotification(charging_station={"model": "LC-7", "vendorName": "Street"}, reason="PowerUp"))  # fmt: skip
    assert boot.status == "Accepted"
    await cp.call(call201.StatusNotification(timestamp=now_iso(), connector_status="Occupied", evse_id=1, connector_id=1))  # fmt: skip
    auth = await cp.call(call201.Authorize(id_token=token))
    assert auth.id_token_info["status"] == "Accepted"
    await cp.call(call201.TransactionEvent(
        event_type="Started", timestamp=now_iso(), trigger_reason="Authorized", seq_no=0,
        transaction_info={"transactionId": txid, "chargingState": "EVConnected"},
        id_token=token, evse={"id": 1, "connectorId": 1},
        meter_value=sampled201("Transaction.Begin", meter_start)))  # fmt: skip
    await cp.call(call201.TransactionEvent(
        event_type="Updated", timestamp=now_iso(), trigger_reason="MeterValuePeriodic", seq_no=1,
        transaction_info={"transactionId": txid, "chargingState": "Charging"},
        meter_value=sampled201("Sample.Periodic", meter_start + 1500, 7200, 54)))  # fmt: skip
    await cp.call(call201.MeterValues(evse_id=1, meter_value=sampled201("Sample.Clock", meter_start + 2000)))  # fmt: skip
    await cp.call(call201.TransactionEvent(
        event_type="Ended", timestamp=now_iso(), trigger_reason="EVCommunicationLost", seq_no=2,
        transaction_info={"transactionId": txid, "stoppedReason": "EVDisconnected", "timeSpentCharging": 3400},
        id_token=token, meter_value=sampled201("Transaction.End", meter_start + 3500)))  # fmt: skip
    await cp.call(call201.StatusNotification(timestamp=now_iso(), connector_status="Available", evse_id=1, connector_id=1))  # fmt: skip
