"""The egress guard: an independent, fail-closed last check on every byte that leaves.

It knows nothing of drivers or the privacy stage. It blocks any serialised payload or tag that
contains something shaped like an identifier (MAC in any notation, RFID/idTag-like hex token, UK
vehicle registration, email, phone number, IP address) and any Observation key or parameter
that is not part of the published vocabulary. Blocked payloads are counted per reason and logged
without the offending value.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass

OBSERVATION_KEYS = frozenset({"phenomenonTime", "resultTime", "result", "Datastream", "parameters"})
PARAMETER_KEYS = frozenset(
    {"quality", "aggregation", "period", "samples", "suppressed", "min_count", "window"}
)

_HEX = "[0-9A-Fa-f]"
PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    # 3c:22:fb:12:34:56, 3c-22-fb-12-34-56 and 3c22.fb12.3456,
    # and EUI-64 forms
    ("mac", re.compile(rf"(?<![0-9A-Fa-f:.-]){_HEX}{{2}}(?P<sep>[:-]){_HEX}{{2}}(?:(?P=sep){_HEX}{{2}}){{4,6}}(?![0-9A-Fa-f])")),
    ("mac", re.compile(rf"(?<![0-9A-Fa-f.]){_HEX}{{4}}\.{_HEX}{{4}}\.{_HEX}{{4}}(?![0-9A-Fa-f])")),
    ("email", re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")),
    # UK phone numbers: +44 / 0044 / 0 followed by 9-10 digits, spaces or dashes allowed
    ("phone", re.compile(r"(?<![\d.])(?:\+44|0044|\(?0)\s?\d{2,4}\)?[\s-]?\d{3,4}[\s-]?\d{3,4}(?![\d.])")),
    ("phone", re.compile(r"(?<![\d.])\+\d{9,14}(?!\d)")),
    # 12 bare hex digits (a MAC without separators)
    ("mac", re.compile(rf"(?<![0-9A-Za-z.+]){_HEX}{{12}}(?![0-9A-Za-z])")),
    # RFID UIDs and OCPP idTags: 8-20 hex digits mixing letters and digits
    ("id_token", re.compile(rf"(?<![0-9A-Za-z])(?=[0-9A-Fa-f]*[A-Fa-f])(?=[0-9A-Fa-f]*[0-9]){_HEX}{{8,20}}(?![0-9A-Za-z])")),
    # UK registrations: current (AB12 CDE), prefix (A123 BCD), suffix (ABC 123D)
    ("vehicle_registration", re.compile(r"(?<![A-Za-z0-9_])[A-Za-z]{2}\d{2}\s?[A-Za-z]{3}(?![A-Za-z0-9_])")),
    ("vehicle_registration", re.compile(r"(?<![A-Za-z0-9_])[A-Za-z]\d{1,3}\s?[A-Za-z]{3}(?![A-Za-z0-9_])")),
    ("vehicle_registration", re.compile(r"(?<![A-Za-z0-9_])[A-Za-z]{3}\s?\d{1,3}[A-Za-z](?![A-Za-z0-9_])")),
    ("ip_address", re.compile(r"(?<![\d.])(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)(?![\d.])")),
    ("ip_address", re.compile(rf"(?<![0-9A-Fa-f:])(?:{_HEX}{{1,4}}:){{1,7}}:(?:{_HEX}{{1,4}})?|(?<![0-9A-Fa-f:])(?:{_HEX}{{1,4}}:){{5,7}}{_HEX}{{1,4}}(?![0-9A-Fa-f:])")),
)  # fmt: skip


def find_identifier(text: str) -> str | None:
    """The kind of the first identifier-shaped token in `text`, or None."""
    for kind, pattern in PATTERNS:
        if pattern.search(text):
            return kind
    return None


@dataclass(frozen=True, slots=True)
class Verdict:
    ok: bool
    reason: str = ""


PASS = Verdict(True)


class EgressGuard:
    """Counts and blocks. One instance per gateway; sinks call it on their final bytes."""

    def __init__(self, allowed_datastreams: frozenset[int] | None = None) -> None:
        self.allowed = allowed_datastreams
        self.blocked: Counter[str] = Counter()  # reason -> count
        self.passed = 0

    def _block(self, reason: str) -> Verdict:
        self.blocked[reason] += 1
        return Verdict(False, reason)

    def check_text(self, text: str) -> Verdict:
        kind = find_identifier(text)
        if kind is not None:
            return self._block(kind)
        self.passed += 1
        return PASS

    def check_observation_json(self, payload: bytes) -> Verdict:
        """A SensorThings Observation as serialised for a sink: shape and content."""
        try:
            doc = json.loads(payload)
        except (ValueError, UnicodeDecodeError):
            return self._block("not_json")
        if not isinstance(doc, dict) or not set(doc) <= OBSERVATION_KEYS:
            return self._block("undeclared_field")
        params = doc.get("parameters", {})
        if not isinstance(params, dict) or not set(params) <= PARAMETER_KEYS:
            return self._block("undeclared_parameter")
        ds = doc.get("Datastream")
        if not isinstance(ds, dict) or set(ds) != {"@iot.id"}:
            return self._block("undeclared_field")
        if self.allowed is not None and ds.get("@iot.id") not in self.allowed:
            return self._block("unknown_datastream")
        return self.check_text(payload.decode("utf-8", "replace"))

    def check_record(self, record: bytes) -> Verdict:
        """An outbox record (compact Observation) before it is committed."""
        return self.check_text(record.decode("utf-8", "replace"))
