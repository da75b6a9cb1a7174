"""OCPP-J (the JSON over WebSocket framing of OCPP 1.6 and 2.0.1): what the `ocpp16j` and
`ocpp201j` decoders and the gateway's OCPP tap share. Pure, sans-I/O; never raises on input.

Frames: `[2, id, Action, body]` CALL, `[3, id, body]` CALLRESULT,
`[4, id, errorCode, errorDescription, details]` CALLERROR; the message id is a string of at most
36 characters. Errors name what is wrong in the gateway's words, never the frame's content.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import IntEnum
from typing import Any

from firmware_bridge.base import Aggregation, DecodeError, Event, Field, ObservationType, Role
from firmware_bridge.jsonpayload import STRICT_DECODER, load_json

MAX_UNIQUE_ID = 36  # OCPP-J: the message id is at most 36 characters

# measurand -> (field, {unit: factor to the field's UCUM unit}, default unit): the same in 1.6
# and 2.0.1, so chargers of both versions feed the same properties
MEASURANDS: dict[str, tuple[str, dict[str, float], str]] = {
    "Energy.Active.Import.Register": ("energy", {"Wh": 0.001, "kWh": 1.0}, "Wh"),
    "Power.Active.Import": ("power", {"W": 1.0, "kW": 1000.0}, "W"),
}
DEFAULT_MEASURAND = "Energy.Active.Import.Register"


def session_fields(session_energy_from: str) -> tuple[Field, ...]:
    """The metering and session fields both OCPP decoders yield, with their roles and the
    aggregates that may leave (docs/privacy.md): the register is a running total published only
    as its increase per window, sessions and their energy only as per-window counts and sums,
    the transactionId only in RAM, to tell sessions apart."""
    m, t = ObservationType.MEASUREMENT, ObservationType.TRUTH
    return (
        Field("energy", "kW.h", m,
              "Energy.Active.Import.Register: the charger's register; its steps are sessions' energy",
              role=Role.RUNNING_TOTAL, minimum=0,
              maximum=1e8),  # a 350 kW charger running flat out for 30 years: 9.2e7 kWh
        Field("power", "W", m, "Power.Active.Import: one vehicle's charging power during its session",
              role=Role.PERSON_EVENT, minimum=0, maximum=400000),
        Field("transaction_id", None, ObservationType.CATEGORY,
              "transactionId: tells sessions apart in RAM (pseudonymised), never published",
              role=Role.IDENTIFIER),
        Field("session_start", None, t, "A charging session started", role=Role.PERSON_EVENT),
        Field("session_end", None, t, "A charging session ended", role=Role.PERSON_EVENT),
        Field("session_energy", "kW.h", m, f"Energy of one finished session ({session_energy_from})",
              role=Role.PERSON_EVENT, minimum=0,
              maximum=1000),  # the largest vehicle batteries hold well under 1 MWh
        Field("sessions_started", "{count}", ObservationType.COUNT, "Sessions started in the window",
              aggregation=Aggregation.COUNT, source="session_start"),
        Field("sessions_ended", "{count}", ObservationType.COUNT, "Sessions ended in the window",
              aggregation=Aggregation.COUNT, source="session_end"),
        Field("energy_delivered", "kW.h", m, "Energy of the sessions that ended in the window",
              aggregation=Aggregation.SUM, source="session_energy"),
        Field("energy_metered", "kW.h", m,
              "Increase of the energy register in the window, by the sessions that drew it",
              aggregation=Aggregation.INCREMENT, source="energy"),
    )  # fmt: skip


class Kind(IntEnum):
    CALL = 2
    RESULT = 3
    ERROR = 4


@dataclass(frozen=True, slots=True)
class Frame:
    kind: Kind
    uid: str
    action: str | None  # CALL only
    body: Any  # CALL/RESULT: the payload (an object if well formed); ERROR: the error code


def _kind(value: object) -> Kind | None:
    if isinstance(value, bool) or value not in (2, 3, 4):
        return None
    return Kind(value)


def _uid(value: object) -> bool:
    return isinstance(value, str) and 0 < len(value) <= MAX_UNIQUE_ID


# ---------------------------------------------------------------------------- the tap's view


def parse(text: str) -> Frame | str:
    """The frame, or a reason word why it is not OCPP-J: `not_json` or `not_ocpp`. Lenient about
    bodies (the tap relays everything and only sorts frames)."""
    try:
        value = STRICT_DECODER.decode(text)
    except (ValueError, RecursionError):
        return "not_json"
    if not isinstance(value, list) or len(value) < 3:
        return "not_ocpp"
    kind, uid = _kind(value[0]), value[1]
    if kind is None or not _uid(uid):
        return "not_ocpp"
    if kind is Kind.CALL and len(value) == 4 and isinstance(value[2], str):
        return Frame(Kind.CALL, uid, value[2], value[3])
    if kind is Kind.RESULT and len(value) == 3:
        return Frame(Kind.RESULT, uid, None, value[2])
    if kind is Kind.ERROR and len(value) == 5:
        return Frame(Kind.ERROR, uid, None, value[2])
    return "not_ocpp"


def call_id(text: str) -> str | None:
    """The message id of a CALL that is JSON but otherwise malformed, so it can be answered."""
    try:
        value = STRICT_DECODER.decode(text)
    except (ValueError, RecursionError):
        return None
    if isinstance(value, list) and len(value) >= 2 and _kind(value[0]) is Kind.CALL and _uid(value[1]):
        return str(value[1])
    return None


def result(uid: str, body: dict[str, Any]) -> str:
    return json.dumps([Kind.RESULT.value, uid, body], separators=(",", ":"))


def error(uid: str, code: str, description: str) -> str:
    return json.dumps([Kind.ERROR.value, uid, code, description, {}], separators=(",", ":"))


def call(uid: int | str, action: str, body: dict[str, Any]) -> bytes:
    """A CALL frame as a charger sends it (the drivers' simulators)."""
    return json.dumps([Kind.CALL.value, str(uid), action, body], separators=(",", ":")).encode()


def iso(epoch: float) -> str:
    """A charger's timestamp, whole seconds in UTC (the drivers' simulators)."""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# ---------------------------------------------------------------------------- the decoders' view


def err(reason: str, detail: str) -> list[Event]:
    return [DecodeError(reason, detail)]


def read_frame(payload: bytes, limit: int) -> Frame | list[Event]:
    """A frame the decoders can read (a call or a result with an object body, or an error), or
    the events that say why not. Stricter than `parse` about bodies, laxer about result ids."""
    value = load_json(payload, limit)
    if isinstance(value, DecodeError):
        return [value]
    if not isinstance(value, list) or not value:
        return err("wrong_type", "frame is not a non-empty JSON array")
    kind = _kind(value[0])
    if kind is Kind.CALL and len(value) == 4:
        uid, name, body = value[1], value[2], value[3]
        if not _uid(uid):
            return err("bad_frame", "frame id is not a string of 1 to 36 characters")
        if not isinstance(name, str) or not isinstance(body, dict):
            return err("bad_frame", "call frame lacks a name string and a body object")
        return Frame(Kind.CALL, uid, name, body)
    if kind is Kind.RESULT and len(value) == 3:
        if not isinstance(value[1], str) or not isinstance(value[2], dict):
            return err("bad_frame", "result frame lacks an id string and a body object")
        return Frame(Kind.RESULT, value[1], None, value[2])
    if kind is Kind.ERROR and len(value) == 5:
        return Frame(Kind.ERROR, "", None, value[2])  # between charger and CSMS: no street data
    return err("bad_frame", "frame type or length is not an OCPP-J call, result or error")


def measurand(sample: dict[str, Any]) -> tuple[str, dict[str, float], str] | None:
    """(field, unit factors, default unit) of a sampled value this gateway collects: the energy
    register and the power drawn. None for anything else: SoC (personal), per-phase and
    vehicle-side values. A sample without a measurand is the register (the OCPP default)."""
    name = sample.get("measurand", DEFAULT_MEASURAND)
    known = MEASURANDS.get(name) if isinstance(name, str) else None
    if known is None or "phase" in sample or sample.get("location") == "EV":
        return None
    return known


def remember(store: dict[Any, Any], key: Any, value: Any, cap: int) -> None:
    """Put `key` last in a bounded insertion-ordered store, forgetting the oldest beyond `cap`."""
    store.pop(key, None)
    store[key] = value
    while len(store) > cap:
        del store[next(iter(store))]


def integer(value: object) -> int | None:
    """A JSON integer (not a bool)."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def nonneg_int(value: object) -> int | None:
    number = integer(value)
    return number if number is not None and number >= 0 else None
