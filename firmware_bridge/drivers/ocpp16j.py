"""OCPP 1.6J messages relayed onto MQTT by a charger-side agent (topic `ocpp/<chargeBoxId>/in`).

Frames: `[2, id, Action, body]` CALL, `[3, id, body]` CALLRESULT, `[4, id, code, text, details]`
CALLERROR. Only StatusNotification, MeterValues, StartTransaction and StopTransaction yield
readings; other known actions, results and errors are protocol traffic and yield nothing.
idTag and SoC are never put into a reading. Session data are personal fields (issue 12): the
energy register is a running total whose steps are sessions' energy, power and session energy
are person events, and the transactionId rides along as an identifier so that the privacy stage
can tell sessions apart (pseudonymised in RAM, never published). Details in errors use the
gateway's words, never the device's, so no payload text can leak.
"""

from __future__ import annotations

import random
from typing import Any

from pydantic import Field as Opt

from firmware_bridge.base import (
    Catalogue,
    Decoded,
    Event,
    Field,
    ObservationType,
    Value,
)
from firmware_bridge.driver import MessageDriver
from firmware_bridge.jsonpayload import PayloadDecoder, as_float, concrete_topic, parse_rfc3339
from firmware_bridge.ocppj import (
    Kind,
    call,
    err,
    integer,
    iso,
    measurand,
    nonneg_int,
    read_frame,
    remember,
    session_fields,
)
from firmware_bridge.options import PayloadOptions

MAX_STATE = 256  # open sessions remembered per decoder; oldest forgotten first

# OCPP 1.6 ChargePointStatus -> OCPI 2.2.1 EVSE status. OCPI's CHARGING means "the EVSE is in
# use", so every state in which the connector is taken by a user maps to it: Preparing (tag
# presented or cable in, not yet a transaction), SuspendedEV/SuspendedEVSE (transaction on,
# no energy flowing) and Finishing (transaction over, vehicle still plugged in). Unavailable is
# an operator decision (ChangeAvailability), so INOPERATIVE; Faulted is broken, so OUTOFORDER.
# OCPI's BLOCKED (bay blocked by a parked car), PLANNED and REMOVED have no OCPP 1.6 source.
OCPP_TO_OCPI: dict[str, str] = {
    "Available": "AVAILABLE",
    "Preparing": "CHARGING",
    "Charging": "CHARGING",
    "SuspendedEVSE": "CHARGING",
    "SuspendedEV": "CHARGING",
    "Finishing": "CHARGING",
    "Reserved": "RESERVED",
    "Unavailable": "INOPERATIVE",
    "Faulted": "OUTOFORDER",
}

ERROR_CODES = frozenset({
    "ConnectorLockFailure", "EVCommunicationError", "GroundFailure", "HighTemperature",
    "InternalError", "LocalListConflict", "NoError", "OtherError", "OverCurrentFailure",
    "OverVoltage", "PowerMeterFailure", "PowerSwitchFailure", "ReaderFailure", "ResetFailure",
    "UnderVoltage", "WeakSignal",
})  # fmt: skip

# What may leave for each category (docs/privacy.md, default deny): the statuses this decoder
# maps to, plus UNKNOWN for a status outside OCPP 1.6; connectors 0 (the whole charge point) to
# MAX_CONNECTOR, the bound `connector_id` has in the options.
STATUS_WORDS = frozenset({*OCPP_TO_OCPI.values(), "UNKNOWN"})
MAX_CONNECTOR = 100
CONNECTOR_WORDS = frozenset(str(n) for n in range(MAX_CONNECTOR + 1))

# Actions that are valid OCPP 1.6 (core, profiles and the security whitepaper) but carry no
# street data, or only personal data we do not collect (Authorize carries the idTag).
QUIET_ACTIONS = frozenset({
    "Authorize", "BootNotification", "DataTransfer", "DiagnosticsStatusNotification",
    "FirmwareStatusNotification", "Heartbeat", "CancelReservation", "ChangeAvailability",
    "ChangeConfiguration", "ClearCache", "ClearChargingProfile", "GetCompositeSchedule",
    "GetConfiguration", "GetDiagnostics", "GetLocalListVersion", "RemoteStartTransaction",
    "RemoteStopTransaction", "ReserveNow", "Reset", "SendLocalList", "SetChargingProfile",
    "TriggerMessage", "UnlockConnector", "UpdateFirmware", "SecurityEventNotification",
    "SignCertificate", "CertificateSigned", "DeleteCertificate", "ExtendedTriggerMessage",
    "GetInstalledCertificateIds", "GetLog", "InstallCertificate", "LogStatusNotification",
    "SignedFirmwareStatusNotification", "SignedUpdateFirmware",
})  # fmt: skip

M, C, T = ObservationType.MEASUREMENT, ObservationType.CATEGORY, ObservationType.TRUTH

CATALOGUE = Catalogue(
    driver="ocpp16j",
    make="any",
    model="OCPP 1.6J charge point via an MQTT relay",
    description="EV charge point status and metering from OCPP 1.6J messages",
    transport="mqtt",
    datasheet="OCA OCPP 1.6 edition 2; OCPI 2.2.1 EVSE status",
    fields=(
        Field("connector_status", None, C, "Connector status, OCPI 2.2.1 EVSE vocabulary",
              vocabulary=STATUS_WORDS),
        Field(
            "connector_id",
            None,
            C,
            'Connector the status belongs to ("0" = whole charge point)',
            vocabulary=CONNECTOR_WORDS,
        ),
        Field("error_code", None, C, "OCPP 1.6 ChargePointErrorCode", vocabulary=ERROR_CODES),
        *session_fields("meterStop - meterStart"),
    ),
)


def _remember(store: dict[Any, Any], key: Any, value: Any) -> None:
    remember(store, key, value, MAX_STATE)


class Options(PayloadOptions):
    connector_id: int | None = Opt(
        None, ge=0, le=MAX_CONNECTOR, description="Only this connector (0 = the whole charge point); all if unset."
    )


class Decoder(PayloadDecoder):
    """Decodes OCPP 1.6J frames. Session energy needs meterStart, which StopTransaction lacks,
    so the decoder remembers open sessions in RAM (bounded) and links them to the stop through
    the StartTransaction result, a MeterValues message, or the only open session on the box.
    A start or stop whose message id was just seen is a redelivery and is ignored."""

    def __init__(self, options: Options) -> None:
        super().__init__(options)
        self.connector: int | None = options.connector_id
        # (box, message id) -> (connector, meterStart Wh) until the CALLRESULT names the session
        self._pending: dict[tuple[str, str], tuple[int, int]] = {}
        # (box, connector) -> meterStart Wh of the session open on that connector
        self._open: dict[tuple[str, int], int] = {}
        # (box, transactionId) -> (connector, meterStart Wh)
        self._sessions: dict[tuple[str, int], tuple[int, int]] = {}
        # (box, message id) of recent session calls: MQTT QoS 1 may deliver a message twice,
        # and a duplicated start or stop must not count twice
        self._seen: dict[tuple[str, str], None] = {}

    def _decode(self, topic: str, payload: bytes) -> list[Event]:
        frame = read_frame(payload, self.limit)
        if isinstance(frame, list):
            return frame
        box = topic.rsplit("/", 1)[0]
        if frame.kind is Kind.CALL:
            if frame.action is None:
                raise AssertionError("frame.action is not None")
            return self._call(box, frame.uid, frame.action, frame.body)
        if frame.kind is Kind.RESULT:
            return self._result(box, frame.uid, frame.body)
        return []  # an error reply between charger and central system: no street data

    def _call(self, box: str, uid: str, name: str, body: dict[str, Any]) -> list[Event]:
        if name == "StatusNotification":
            return self._status(body)
        if name == "MeterValues":
            return self._meter_values(box, body)
        if name in ("StartTransaction", "StopTransaction"):
            if (box, uid) in self._seen:
                return []
            _remember(self._seen, (box, uid), None)
            if name == "StartTransaction":
                return self._start(box, uid, body)
            return self._stop(box, body)
        if name in QUIET_ACTIONS:
            return []
        return err("unknown_action", "call names an operation outside OCPP 1.6")

    def _wanted(self, connector: int) -> bool:
        return self.connector is None or connector == self.connector

    def _status(self, body: dict[str, Any]) -> list[Event]:
        connector = nonneg_int(body.get("connectorId"))
        if connector is None:
            return err("missing_field", "plug number absent or not a non-negative integer")
        ocpp, code = body.get("status"), body.get("errorCode")
        if not isinstance(ocpp, str) or not isinstance(code, str):
            return err("missing_field", "plug state or fault code absent or not text")
        if not self._wanted(connector):
            return []
        flags: list[str] = []
        values: dict[str, Value] = {
            "connector_status": OCPP_TO_OCPI.get(ocpp, "UNKNOWN"),
            "connector_id": str(connector),
        }
        if ocpp not in OCPP_TO_OCPI:
            flags.append("unmapped_status")
        if code in ERROR_CODES:
            values["error_code"] = code
        else:
            flags.append("unmapped_error_code")
        when = parse_rfc3339(body.get("timestamp"))
        return [Decoded(values, device_time=when, flags=tuple(flags))]

    def _meter_values(self, box: str, body: dict[str, Any]) -> list[Event]:
        connector = nonneg_int(body.get("connectorId"))
        readings = body.get("meterValue")
        if connector is None:
            return err("missing_field", "plug number absent or not a non-negative integer")
        if not isinstance(readings, list):
            return err("missing_field", "list of meter readings absent or not a list")
        txid = integer(body.get("transactionId"))
        if (
            txid is not None
            and (box, connector) in self._open
            and (box, txid) not in self._sessions
        ):
            _remember(self._sessions, (box, txid), (connector, self._open[(box, connector)]))
        if not self._wanted(connector):
            return []
        events: list[Event] = []
        for reading in readings:
            events.extend(self._one_reading(connector, reading, txid))
        return events

    def _one_reading(self, connector: int, reading: object, txid: int | None = None) -> list[Event]:
        if not isinstance(reading, dict) or not isinstance(reading.get("sampledValue"), list):
            return err("wrong_type", "a meter reading is not an object holding a list")
        values: dict[str, Value] = {}
        events: list[Event] = []
        for sample in reading["sampledValue"]:
            if not isinstance(sample, dict):
                events += err("wrong_type", "an item in a meter reading is not an object")
                continue
            known = measurand(sample)
            if known is None:
                continue  # SoC (personal), per-phase and vehicle-side values are not collected
            field, factors, default_unit = known
            unit = sample.get("unit", default_unit)
            factor = factors.get(unit) if isinstance(unit, str) else None
            number = as_float(sample.get("value"))
            if factor is None:
                events += err("wrong_unit", "a meter item has a unit this driver cannot use")
            elif number is None:
                events += err("wrong_type", "a meter item value is not a decimal number")
            else:
                values[field] = round(number * factor, 6)
        if values:
            # all personal now (issue 12): no connector id rides along, or it would leave alone
            # per reading, stamped with the times a session was drawing power
            if txid is not None:
                values["transaction_id"] = str(txid)
            when = parse_rfc3339(reading.get("timestamp"))
            flags = () if when is not None else ("no_device_time",)
            events.insert(0, Decoded(values, device_time=when, flags=flags))
        return events

    def _start(self, box: str, uid: str, body: dict[str, Any]) -> list[Event]:
        connector = nonneg_int(body.get("connectorId"))
        meter = nonneg_int(body.get("meterStart"))
        if connector is None or meter is None:
            return err("missing_field", "plug number or start meter reading absent or invalid")
        _remember(self._pending, (box, uid), (connector, meter))
        _remember(self._open, (box, connector), meter)
        if not self._wanted(connector):
            return []
        return [Decoded({"session_start": True}, device_time=parse_rfc3339(body.get("timestamp")))]

    def _result(self, box: str, uid: str, body: dict[str, Any]) -> list[Event]:
        started = self._pending.pop((box, uid), None)
        txid = integer(body.get("transactionId"))
        if started is not None and txid is not None:
            _remember(self._sessions, (box, txid), started)
        return []

    def _stop(self, box: str, body: dict[str, Any]) -> list[Event]:
        txid, meter = integer(body.get("transactionId")), nonneg_int(body.get("meterStop"))
        if txid is None or meter is None:
            return err("missing_field", "session number or stop meter reading absent or invalid")
        session = self._sessions.pop((box, txid), None)
        if session is None:
            open_here = [k for k in self._open if k[0] == box]
            if len(open_here) == 1:
                session = (open_here[0][1], self._open[open_here[0]])
        if session is not None:
            self._open.pop((box, session[0]), None)
        connector = session[0] if session is not None else None
        if self.connector is not None and connector != self.connector:
            return []  # cannot attribute this stop to the configured connector
        values: dict[str, Value] = {"session_end": True, "transaction_id": str(txid)}
        flags: tuple[str, ...] = ()
        if session is None:
            flags = ("session_energy_unknown",)
        elif meter >= session[1]:
            values["session_energy"] = round((meter - session[1]) / 1000, 6)
        else:
            flags = ("meter_went_backwards",)
        when = parse_rfc3339(body.get("timestamp"))
        return [Decoded(values, device_time=when, flags=flags)]


def catalogue_for(options: Options) -> Catalogue:
    return CATALOGUE


def simulate(rng: random.Random, now: float, base_topic: str) -> list[tuple[str, bytes]]:
    """A session on connector 1 as a charger reports it: status, start, meter values, stop.
    Which of these appear depends on where `now` falls in a simulated two-hour cycle."""
    topic = concrete_topic(base_topic, "CB-SIM-1")
    cycle, phase = divmod(int(now), 7200)
    uid = cycle * 10 + 1
    meter_start = 100_000 + cycle * 12_000
    txid = 5000 + cycle
    tag = f"04{random.Random(cycle).getrandbits(48):012X}"
    out: list[bytes] = []
    ts = iso(now)
    if phase < 60:
        out.append(
            call(
                uid,
                "StatusNotification",
                {"connectorId": 1, "errorCode": "NoError", "status": "Preparing", "timestamp": ts},
            )
        )
        out.append(
            call(
                uid + 1,
                "StartTransaction",
                {"connectorId": 1, "idTag": tag, "meterStart": meter_start, "timestamp": ts},
            )
        )
    elif phase < 5400:
        energy = meter_start + int(phase / 3600 * 7200)
        power = 7200 + rng.randint(-150, 150)
        out.append(
            call(
                uid + 2,
                "MeterValues",
                {
                    "connectorId": 1,
                    "transactionId": txid,
                    "meterValue": [
                        {
                            "timestamp": ts,
                            "sampledValue": [
                                {
                                    "value": str(energy),
                                    "measurand": "Energy.Active.Import.Register",
                                    "unit": "Wh",
                                },
                                {
                                    "value": str(power),
                                    "measurand": "Power.Active.Import",
                                    "unit": "W",
                                },
                                {
                                    "value": str(min(100, 20 + phase // 90)),
                                    "measurand": "SoC",
                                    "unit": "Percent",
                                },
                            ],
                        }
                    ],
                },
            )
        )
    elif phase < 5460:
        stop = meter_start + int(5400 / 3600 * 7200)
        out.append(
            call(
                uid + 3,
                "StopTransaction",
                {
                    "transactionId": txid,
                    "idTag": tag,
                    "meterStop": stop,
                    "timestamp": ts,
                    "reason": "EVDisconnected",
                },
            )
        )
        out.append(
            call(
                uid + 4,
                "StatusNotification",
                {"connectorId": 1, "errorCode": "NoError", "status": "Available", "timestamp": ts},
            )
        )
    else:
        out.append(call(uid + 5, "Heartbeat", {}))
    return [(topic, body) for body in out]


DRIVER = MessageDriver(
    name="ocpp16j",
    catalogue_for=catalogue_for,
    new_decoder=Decoder,
    options=Options,
    default_topic="ocpp/+/in",
    simulate=simulate,
    doc="docs/drivers/ocpp16j.md",
    transports=("mqtt", "ocpp"),  # the relay on the local broker, or the OCPP tap
)
