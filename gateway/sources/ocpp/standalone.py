"""A minimal CSMS for borough-owned chargers with no operator (`mode: standalone`). Pure: a call
frame and `now` in, the reply frame out.

It accepts what a charger needs to run and report: BootNotification, Heartbeat,
StatusNotification, MeterValues, Start/StopTransaction (1.6), TransactionEvent (2.0.1) and the
notifications; Authorize by policy: everyone, or the idTags of a local list. It never calls the
charger (no remote start, no configuration, no firmware): anything else is answered with a
CALLERROR NotImplemented. idTags are compared, never kept or logged.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from firmware_bridge import ocppj
from firmware_bridge.ocppj import Frame, Kind

EMPTY: dict[str, Any] = {}

# Calls a charger makes that need nothing but an empty confirmation.
EMPTY_16 = frozenset({
    "StatusNotification", "MeterValues", "DiagnosticsStatusNotification",
    "FirmwareStatusNotification", "SecurityEventNotification", "LogStatusNotification",
    "SignedFirmwareStatusNotification",
})  # fmt: skip
EMPTY_201 = frozenset({
    "StatusNotification", "MeterValues", "NotifyEvent", "NotifyReport",
    "SecurityEventNotification", "FirmwareStatusNotification", "LogStatusNotification",
    "NotifyMonitoringReport", "ClearedChargingLimit", "NotifyChargingLimit",
    "ReservationStatusUpdate", "NotifyDisplayMessages", "NotifyCustomerInformation",
    "PublishFirmwareStatusNotification", "ReportChargingProfiles",
})  # fmt: skip
# Calls whose honest answer from a CSMS without these services is a refusal.
REFUSED_16: dict[str, dict[str, Any]] = {
    "DataTransfer": {"status": "UnknownVendorId"},
    "SignCertificate": {"status": "Rejected"},
}
REFUSED_201: dict[str, dict[str, Any]] = {
    "DataTransfer": {"status": "UnknownVendorId"},
    "SignCertificate": {"status": "Rejected"},
    "NotifyEVChargingNeeds": {"status": "Rejected"},
    "NotifyEVChargingSchedule": {"status": "Rejected"},
    "Get15118EVCertificate": {"status": "Failed", "exiResponse": ""},
    "GetCertificateStatus": {"status": "Failed"},
}
FORMAT_ERROR = {"ocpp1.6": "FormationViolation", "ocpp2.0.1": "FormatViolation"}


def iso(now: float) -> str:
    return (
        datetime.fromtimestamp(now, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )


class StandaloneCsms:
    """One charger's CSMS. It outlives connections, so 1.6 transaction ids keep counting up
    across reconnects; they start from the clock, so a restarted gateway does not reuse them."""

    def __init__(
        self,
        authorize: Callable[[str], bool],
        heartbeat_interval: int,
        now: float,
    ) -> None:
        self.authorize = authorize
        self.heartbeat_interval = heartbeat_interval
        self._next_transaction = int(now) % 2**31

    def reply(self, frame: Frame | str, text: str, subprotocol: str, now: float) -> str | None:
        """The answer to a frame from the charger: a CALLRESULT or CALLERROR for its calls;
        None for its results and errors (this CSMS never calls) and for what has no id."""
        if isinstance(frame, str):
            uid = ocppj.call_id(text)
            if uid is None:
                return None
            return ocppj.error(uid, FORMAT_ERROR[subprotocol], "frame is not a valid OCPP-J call")
        if frame.kind is not Kind.CALL or frame.action is None:
            return None
        if not isinstance(frame.body, dict):
            return ocppj.error(frame.uid, FORMAT_ERROR[subprotocol], "payload is not an object")
        handler = self._v16 if subprotocol == "ocpp1.6" else self._v201
        body = handler(frame.action, frame.body, now)
        if body is None:
            return ocppj.error(frame.uid, "NotImplemented", "not offered by this standalone CSMS")
        if isinstance(body, str):
            return ocppj.error(frame.uid, FORMAT_ERROR[subprotocol], body)
        return ocppj.result(frame.uid, body)

    def _status(self, accepted: bool) -> dict[str, str]:
        return {"status": "Accepted" if accepted else "Invalid"}

    def _v16(self, action: str, body: dict[str, Any], now: float) -> dict[str, Any] | str | None:
        if action == "BootNotification":
            return {
                "status": "Accepted",
                "currentTime": iso(now),
                "interval": self.heartbeat_interval,
            }
        if action == "Heartbeat":
            return {"currentTime": iso(now)}
        if action in EMPTY_16:
            return EMPTY
        if action in REFUSED_16:
            return REFUSED_16[action]
        tag = body.get("idTag")
        if action == "Authorize":
            if not isinstance(tag, str):
                return "idTag is required and must be text"
            return {"idTagInfo": self._status(self.authorize(tag))}
        if action == "StartTransaction":
            if not isinstance(tag, str):
                return "idTag is required and must be text"
            self._next_transaction = self._next_transaction % (2**31 - 1) + 1
            return {"transactionId": self._next_transaction,
                    "idTagInfo": self._status(self.authorize(tag))}  # fmt: skip
        if action == "StopTransaction":
            if tag is None:
                return EMPTY
            if not isinstance(tag, str):
                return "idTag must be text"
            return {"idTagInfo": self._status(self.authorize(tag))}
        return None

    def _token(self, token: object) -> bool | str:
        if not isinstance(token, dict):
            return "idToken is required and must be an object"
        value, kind = token.get("idToken"), token.get("type")
        if not isinstance(value, str) or not isinstance(kind, str):
            return "idToken needs idToken and type as text"
        return kind == "NoAuthorization" or self.authorize(value)

    def _v201(self, action: str, body: dict[str, Any], now: float) -> dict[str, Any] | str | None:
        if action == "BootNotification":
            return {
                "currentTime": iso(now),
                "interval": self.heartbeat_interval,
                "status": "Accepted",
            }
        if action == "Heartbeat":
            return {"currentTime": iso(now)}
        if action in EMPTY_201:
            return EMPTY
        if action in REFUSED_201:
            return REFUSED_201[action]
        if action == "Authorize" or (action == "TransactionEvent" and "idToken" in body):
            ok = self._token(body.get("idToken"))
            if isinstance(ok, str):
                return ok
            return {"idTokenInfo": self._status(ok)}
        if action == "TransactionEvent":
            return EMPTY
        return None
