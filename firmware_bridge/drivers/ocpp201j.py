"""OCPP 2.0.1 (OCPP-J) frames from a charging station, as the OCPP tap or an MQTT relay hears them.

Same framing as 1.6 (`firmware_bridge.ocppj`). StatusNotification, MeterValues and
TransactionEvent yield readings with the same properties and roles as the `ocpp16j` driver;
every other 2.0.1 action, result and error is protocol traffic and yields nothing. Session data
are personal (issue 12): the energy register is a running total whose steps are sessions'
energy, power and session energy are person events, and the transactionId rides along in every
reading of its transaction as an identifier, so that the privacy stage can tell sessions apart
(pseudonymised in RAM, never published). The idToken, the charging time and the SoC are never
put into a reading. Details in errors use the gateway's words, never the device's.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from pydantic import Field as Opt

from firmware_bridge.base import (
    Catalogue,
    Decoded,
    Event,
    Field,
    ObservationType,
    Role,
    Value,
)
from firmware_bridge.driver import MessageDriver
from firmware_bridge.jsonpayload import PayloadDecoder, as_float, concrete_topic, parse_rfc3339
from firmware_bridge.ocppj import (
    Kind,
    call,
    err,
    iso,
    measurand,
    nonneg_int,
    read_frame,
    remember,
    session_fields,
)
from firmware_bridge.options import PayloadOptions

MAX_STATE = 256  # sessions, EVSEs and event numbers remembered per decoder; oldest forgotten first
MAX_CONNECTORS = 16  # connectors remembered per EVSE
MAX_TRANSACTION_ID = 36  # TransactionType.transactionId: string, maxLength 36
MAX_MULTIPLIER = 9  # unitOfMeasure.multiplier is a power of ten; beyond 1e±9 it is nonsense

# OCPP 2.0.1 ConnectorStatusEnumType -> OCPI 2.2.1 EVSE status. 2.0.1 folds 1.6's Preparing,
# Charging, SuspendedEV(SE) and Finishing into Occupied: the connector is taken by a user, which
# is what OCPI's CHARGING ("in use") means. Unavailable is an operator decision, Faulted broken.
OCPP_TO_OCPI: dict[str, str] = {
    "Available": "AVAILABLE",
    "Occupied": "CHARGING",
    "Reserved": "RESERVED",
    "Unavailable": "INOPERATIVE",
    "Faulted": "OUTOFORDER",
}

# OCPI's status is per EVSE, 2.0.1 reports per connector. An EVSE with a socket and a tethered
# cable is in use when either is; it is usable when any connector is; broken beats switched off.
EVSE_PRECEDENCE = ("CHARGING", "RESERVED", "AVAILABLE", "OUTOFORDER", "INOPERATIVE", "UNKNOWN")

# What may leave for each category (docs/privacy.md, default deny): the EVSE statuses this
# decoder can say, and EVSE numbers 0 (the whole station) to MAX_EVSE, the bound `evse_id` has.
STATUS_WORDS = frozenset(EVSE_PRECEDENCE)
MAX_EVSE = 100
EVSE_WORDS = frozenset(str(n) for n in range(MAX_EVSE + 1))

# Every OCPP 2.0.1 action, in both directions (OCPP 2.0.1 edition 3, part 2, and its JSON
# schemas). Those not handled below carry no street data, or only personal data we never take.
ACTIONS = frozenset({
    "Authorize", "BootNotification", "CancelReservation", "CertificateSigned",
    "ChangeAvailability", "ClearCache", "ClearChargingProfile", "ClearDisplayMessage",
    "ClearVariableMonitoring", "ClearedChargingLimit", "CostUpdated", "CustomerInformation",
    "DataTransfer", "DeleteCertificate", "FirmwareStatusNotification", "Get15118EVCertificate",
    "GetBaseReport", "GetCertificateStatus", "GetChargingProfiles", "GetCompositeSchedule",
    "GetDisplayMessages", "GetInstalledCertificateIds", "GetLocalListVersion", "GetLog",
    "GetMonitoringReport", "GetReport", "GetTransactionStatus", "GetVariables", "Heartbeat",
    "InstallCertificate", "LogStatusNotification", "MeterValues", "NotifyChargingLimit",
    "NotifyCustomerInformation", "NotifyDisplayMessages", "NotifyEVChargingNeeds",
    "NotifyEVChargingSchedule", "NotifyEvent", "NotifyMonitoringReport", "NotifyReport",
    "PublishFirmware", "PublishFirmwareStatusNotification", "ReportChargingProfiles",
    "RequestStartTransaction", "RequestStopTransaction", "ReservationStatusUpdate", "ReserveNow",
    "Reset", "SecurityEventNotification", "SendLocalList", "SetChargingProfile",
    "SetDisplayMessage", "SetMonitoringBase", "SetMonitoringLevel", "SetNetworkProfile",
    "SetVariableMonitoring", "SetVariables", "SignCertificate", "StatusNotification",
    "TransactionEvent", "TriggerMessage", "UnlockConnector", "UnpublishFirmware", "UpdateFirmware",
})  # fmt: skip

M, C, T = ObservationType.MEASUREMENT, ObservationType.CATEGORY, ObservationType.TRUTH

CATALOGUE = Catalogue(
    driver="ocpp201j",
    make="any",
    model="OCPP 2.0.1 charging station (OCPP-J)",
    description="EV charging station status and metering from OCPP 2.0.1 messages",
    transport="mqtt",
    datasheet="OCA OCPP 2.0.1 edition 3; OCPI 2.2.1 EVSE status",
    fields=(
        Field("connector_status", None, C, "EVSE status, OCPI 2.2.1 EVSE vocabulary",
              vocabulary=STATUS_WORDS),
        Field(
            "connector_id",
            None,
            C,
            'EVSE the status belongs to ("0" = whole station)',
            vocabulary=EVSE_WORDS,
        ),
        Field(
            "id_token",
            None,
            C,
            "idToken of the driver (RFID UID, eMAID, MAC): read at source, never put into a reading",
            role=Role.IDENTIFIER,
        ),
        *session_fields("register at its end - at its start"),
    ),
)


@dataclass(slots=True)
class _Session:
    evse: int | None
    begin_kwh: float | None  # energy register in the Started event, if the station sent one
    last_kwh: float | None  # latest energy register in a later event of the session


@dataclass(frozen=True, slots=True)
class _Sample:
    field: str
    value: float
    context: str


def _remember(store: dict[Any, Any], key: Any, value: Any) -> None:
    remember(store, key, value, MAX_STATE)


class Options(PayloadOptions):
    evse_id: int | None = Opt(
        None, ge=0, le=MAX_EVSE, description="Only this EVSE (0 = the whole station); all if unset."
    )


class Decoder(PayloadDecoder):
    """Decodes OCPP 2.0.1 frames. Every TransactionEvent names its transaction, so a session's
    energy is the register in its Ended event minus the one in its Started event, remembered in
    RAM (bounded). A TransactionEvent whose (transaction, seqNo) was just seen is a retry and is
    ignored. Connector statuses are remembered per EVSE to give OCPI's per-EVSE status."""

    def __init__(self, options: Options) -> None:
        super().__init__(options)
        self.evse: int | None = options.evse_id
        # (box, transactionId) -> the session's EVSE and energy registers
        self._sessions: dict[tuple[str, str], _Session] = {}
        # (box, transactionId, seqNo) of recent transaction events
        self._seen: dict[tuple[str, str, int], None] = {}
        # (box, evseId) -> {connectorId: OCPI status}
        self._connectors: dict[tuple[str, int], dict[int, str]] = {}

    def _decode(self, topic: str, payload: bytes) -> list[Event]:
        frame = read_frame(payload, self.limit)
        if isinstance(frame, list):
            return frame
        if frame.kind is Kind.CALL:
            if frame.action is None:
                raise AssertionError("frame.action is not None")
            return self._call(topic.rsplit("/", 1)[0], frame.action, frame.body)
        # results carry idTokenInfo, costs; errors are between station and CSMS: nothing for
        # the street
        return []

    def _call(self, box: str, name: str, body: dict[str, Any]) -> list[Event]:
        if name == "StatusNotification":
            return self._status(box, body)
        if name == "MeterValues":
            return self._meter_values(box, body)
        if name == "TransactionEvent":
            return self._transaction_event(box, body)
        if name in ACTIONS:
            return []
        return err("unknown_action", "call names an operation outside OCPP 2.0.1")

    def _wanted(self, evse: int | None) -> bool:
        return self.evse is None or evse == self.evse

    # ------------------------------------------------------------------ status

    def _status(self, box: str, body: dict[str, Any]) -> list[Event]:
        evse, connector = nonneg_int(body.get("evseId")), nonneg_int(body.get("connectorId"))
        if evse is None or connector is None:
            return err("missing_field", "EVSE or plug number absent or not a non-negative integer")
        ocpp = body.get("connectorStatus")
        if not isinstance(ocpp, str):
            return err("missing_field", "plug state absent or not text")
        status = OCPP_TO_OCPI.get(ocpp, "UNKNOWN")
        known = self._connectors.get((box, evse))
        connectors = dict(known) if known is not None else {}
        if connector in connectors or len(connectors) < MAX_CONNECTORS:
            connectors[connector] = status
        _remember(self._connectors, (box, evse), connectors)
        if not self._wanted(evse):
            return []
        overall = min(connectors.values(), key=EVSE_PRECEDENCE.index, default=status)
        values: dict[str, Value] = {"connector_status": overall, "connector_id": str(evse)}
        flags = () if ocpp in OCPP_TO_OCPI else ("unmapped_status",)
        return [Decoded(values, device_time=parse_rfc3339(body.get("timestamp")), flags=flags)]

    # ------------------------------------------------------------------ metering

    def _meter_values(self, box: str, body: dict[str, Any]) -> list[Event]:
        evse = nonneg_int(body.get("evseId"))
        readings = body.get("meterValue")
        if evse is None:
            return err("missing_field", "EVSE number absent or not a non-negative integer")
        if not isinstance(readings, list):
            return err("missing_field", "list of meter readings absent or not a list")
        if not self._wanted(evse):
            return []
        # 2.0.1 MeterValues name no transaction: a reading taken while one session is open on
        # that EVSE belongs to it (clock-aligned values during a session)
        open_here = [txid for (b, txid), s in self._sessions.items() if b == box and s.evse == evse]
        txid = open_here[0] if len(open_here) == 1 else None
        events: list[Event] = []
        for reading in readings:
            samples, errors = _samples(reading)
            events += _meter_reading(reading, samples, txid)
            events += errors
        return events

    # ------------------------------------------------------------------ sessions

    def _transaction_event(self, box: str, body: dict[str, Any]) -> list[Event]:
        kind, seq = body.get("eventType"), nonneg_int(body.get("seqNo"))
        info = body.get("transactionInfo")
        txid = info.get("transactionId") if isinstance(info, dict) else None
        if kind not in ("Started", "Updated", "Ended") or seq is None:
            return err("missing_field", "event type or sequence number absent or invalid")
        if not isinstance(txid, str) or not 0 < len(txid) <= MAX_TRANSACTION_ID:
            return err("missing_field", "session number absent or not text of 1 to 36 characters")
        evse_obj = body.get("evse")
        evse = nonneg_int(evse_obj.get("id")) if isinstance(evse_obj, dict) else None
        readings = body.get("meterValue", [])
        if not isinstance(readings, list):
            return err("wrong_type", "list of meter readings is not a list")
        if (box, txid, seq) in self._seen:
            return []
        _remember(self._seen, (box, txid, seq), None)

        session = self._sessions.get((box, txid))
        if session is None:
            session = _Session(evse, None, None)
        elif evse is not None:
            session.evse = evse
        events: list[Event] = []
        metered: list[Event] = []
        for reading in readings:
            samples, errors = _samples(reading)
            events += errors
            for s in samples:
                if s.field != "energy":
                    continue
                if kind != "Started":
                    session.last_kwh = s.value
                elif session.begin_kwh is None or s.context == "Transaction.Begin":
                    session.begin_kwh = s.value
            metered += _meter_reading(reading, samples, txid)

        when = parse_rfc3339(body.get("timestamp"))
        marker: list[Event] = []
        if kind == "Ended":
            self._sessions.pop((box, txid), None)
            marker = [self._ended(session, txid, when)]
        else:
            _remember(self._sessions, (box, txid), session)
            if kind == "Started":
                marker = [Decoded({"session_start": True, "transaction_id": txid}, device_time=when)]
        if not self._wanted(session.evse):
            return events  # cannot attribute this session to the configured EVSE
        return marker + metered + events

    @staticmethod
    def _ended(session: _Session, txid: str, when: float | None) -> Decoded:
        values: dict[str, Value] = {"session_end": True, "transaction_id": txid}
        flags: tuple[str, ...] = ()
        if session.begin_kwh is None or session.last_kwh is None:
            flags = ("session_energy_unknown",)
        elif session.last_kwh >= session.begin_kwh:
            values["session_energy"] = round(session.last_kwh - session.begin_kwh, 6)
        else:
            flags = ("meter_went_backwards",)
        return Decoded(values, device_time=when, flags=flags)


def _samples(reading: object) -> tuple[list[_Sample], list[Event]]:
    """The energy and power samples of one MeterValueType, converted to kW.h and W."""
    if not isinstance(reading, dict) or not isinstance(reading.get("sampledValue"), list):
        return [], err("wrong_type", "a meter reading is not an object holding a list")
    samples: list[_Sample] = []
    errors: list[Event] = []
    for sample in reading["sampledValue"]:
        if not isinstance(sample, dict):
            errors += err("wrong_type", "an item in a meter reading is not an object")
            continue
        known = measurand(sample)
        if known is None:
            continue  # SoC (personal), per-phase and vehicle-side values are not collected
        field, factors, default_unit = known
        measure = sample.get("unitOfMeasure", {})
        unit = measure.get("unit", default_unit) if isinstance(measure, dict) else None
        multiplier = measure.get("multiplier", 0) if isinstance(measure, dict) else None
        factor = factors.get(unit) if isinstance(unit, str) else None
        number = as_float(sample.get("value"))
        context = sample.get("context", "Sample.Periodic")
        if (
            factor is None
            or isinstance(multiplier, bool)
            or not isinstance(multiplier, int)
            or abs(multiplier) > MAX_MULTIPLIER
        ):
            errors += err("wrong_unit", "a meter item has a unit this driver cannot use")
        elif number is None:
            errors += err("wrong_type", "a meter item value is not a decimal number")
        elif not isinstance(context, str):
            errors += err("wrong_type", "a meter item reading context is not text")
        else:
            value = round(number * factor * 10.0**multiplier, 6)
            samples.append(_Sample(field, value, context))
    return samples, errors


def _meter_reading(reading: object, samples: list[_Sample], txid: str | None) -> list[Event]:
    """One reading of a MeterValueType's register and power, with the transaction it belongs
    to. All personal now (issue 12): no EVSE id rides along, or it would leave alone per
    reading, stamped with the times a session was drawing power."""
    values: dict[str, Value] = {s.field: s.value for s in samples}
    if not values or not isinstance(reading, dict):
        return []
    if txid is not None:
        values["transaction_id"] = txid
    when = parse_rfc3339(reading.get("timestamp"))
    flags = () if when is not None else ("no_device_time",)
    return [Decoded(values, device_time=when, flags=flags)]


def catalogue_for(options: Options) -> Catalogue:
    return CATALOGUE


def _meter(ts: str, energy_wh: int, power_w: int | None, context: str) -> dict[str, Any]:
    sampled: list[dict[str, Any]] = [
        {"value": energy_wh, "context": context, "measurand": "Energy.Active.Import.Register",
         "unitOfMeasure": {"unit": "Wh"}},
    ]  # fmt: skip
    if power_w is not None:
        sampled.append({"value": power_w, "context": context, "measurand": "Power.Active.Import",
                        "unitOfMeasure": {"unit": "W"}})  # fmt: skip
    return {"timestamp": ts, "sampledValue": sampled}


def simulate(rng: random.Random, now: float, base_topic: str) -> list[tuple[str, bytes]]:
    """A session on EVSE 1 as a 2.0.1 station reports it (the shapes MicroOcpp's v201 code
    sends): Occupied, Started, periodic Updated, Ended, Available; in a two-hour cycle."""
    topic = concrete_topic(base_topic, "CS-SIM-1")
    cycle, phase = divmod(int(now), 7200)
    uid = cycle * 10 + 1
    meter_start = 100_000 + cycle * 12_000
    txid = f"sim-{cycle:08d}"
    tag = {"idToken": f"04{random.Random(cycle).getrandbits(48):012X}", "type": "ISO14443"}
    ts = iso(now)
    out: list[bytes] = []
    if phase < 60:
        out.append(call(uid, "StatusNotification", {"timestamp": ts, "connectorStatus": "Occupied", "evseId": 1, "connectorId": 1}))  # fmt: skip
        out.append(call(uid + 1, "TransactionEvent", {
            "eventType": "Started", "timestamp": ts, "triggerReason": "Authorized", "seqNo": 0,
            "transactionInfo": {"transactionId": txid, "chargingState": "EVConnected"},
            "idToken": tag, "evse": {"id": 1, "connectorId": 1},
            "meterValue": [_meter(ts, meter_start, None, "Transaction.Begin")]}))  # fmt: skip
    elif phase < 5400:
        energy = meter_start + int(phase / 3600 * 7200)
        power = 7200 + rng.randint(-150, 150)
        out.append(call(uid + 2, "TransactionEvent", {
            "eventType": "Updated", "timestamp": ts, "triggerReason": "MeterValuePeriodic",
            "seqNo": 1 + phase // 60, "transactionInfo": {"transactionId": txid,
                                                          "chargingState": "Charging"},
            "meterValue": [_meter(ts, energy, power, "Sample.Periodic")]}))  # fmt: skip
    elif phase < 5460:
        stop = meter_start + int(5400 / 3600 * 7200)
        out.append(call(uid + 3, "TransactionEvent", {
            "eventType": "Ended", "timestamp": ts, "triggerReason": "EVCommunicationLost",
            "seqNo": 200, "transactionInfo": {"transactionId": txid, "stoppedReason": "EVDisconnected",
                                              "timeSpentCharging": 5400},
            "idToken": tag, "meterValue": [_meter(ts, stop, None, "Transaction.End")]}))  # fmt: skip
        out.append(call(uid + 4, "StatusNotification", {"timestamp": ts, "connectorStatus": "Available", "evseId": 1, "connectorId": 1}))  # fmt: skip
    else:
        out.append(call(uid + 5, "Heartbeat", {}))
    return [(topic, body) for body in out]


DRIVER = MessageDriver(
    name="ocpp201j",
    catalogue_for=catalogue_for,
    new_decoder=Decoder,
    options=Options,
    default_topic="ocpp/+/in",
    simulate=simulate,
    doc="docs/drivers/ocpp201j.md",
    transports=("mqtt", "ocpp"),
)
