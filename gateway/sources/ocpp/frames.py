"""OCPP-J framing, just enough for the tap: is a text frame a call, a result or an error, and
with which message id and action. Pure; never raises on input. The decoders in
`firmware_bridge.drivers.ocpp16j`/`ocpp201j` read the bodies; this only sorts frames."""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

MAX_UNIQUE_ID = 36


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


def _reject_constant(name: str) -> Any:
    raise ValueError("non-finite constant")


def parse(text: str) -> Frame | str:
    """The frame, or a reason word why it is not OCPP-J: `not_json` or `not_ocpp`."""
    try:
        value = json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        return "not_json"
    if not isinstance(value, list) or len(value) < 3:
        return "not_ocpp"
    kind, uid = value[0], value[1]
    if isinstance(kind, bool) or kind not in (2, 3, 4):
        return "not_ocpp"
    if not isinstance(uid, str) or not 0 < len(uid) <= MAX_UNIQUE_ID:
        return "not_ocpp"
    if kind == Kind.CALL and len(value) == 4 and isinstance(value[2], str):
        return Frame(Kind.CALL, uid, value[2], value[3])
    if kind == Kind.RESULT and len(value) == 3:
        return Frame(Kind.RESULT, uid, None, value[2])
    if kind == Kind.ERROR and len(value) == 5:
        return Frame(Kind.ERROR, uid, None, value[2])
    return "not_ocpp"


def call_id(text: str) -> str | None:
    """The message id of a CALL that is JSON but otherwise malformed, so it can be answered."""
    try:
        value = json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        return None
    if (
        isinstance(value, list)
        and len(value) >= 2
        and value[0] == Kind.CALL
        and not isinstance(value[0], bool)
        and isinstance(value[1], str)
        and 0 < len(value[1]) <= MAX_UNIQUE_ID
    ):
        return value[1]
    return None


def result(uid: str, body: dict[str, Any]) -> str:
    return json.dumps([Kind.RESULT.value, uid, body], separators=(",", ":"))


def error(uid: str, code: str, description: str) -> str:
    return json.dumps([Kind.ERROR.value, uid, code, description, {}], separators=(",", ":"))
