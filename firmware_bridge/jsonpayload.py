"""Safe loading of MQTT payloads for the JSON/text device profiles, shared so that every profile
rejects the same things the same way: too large, not UTF-8, not JSON, NaN/Infinity, too deep,
and strings the gateway could not carry safely (lone surrogates, which cannot be encoded as UTF-8
again; NUL and other control characters, which split a line-protocol line or a log line).

Every failure comes back as a `DecodeError` whose detail is a fixed sentence: nothing from the
payload is ever echoed, because payloads may carry identifiers (MACs, RFID UIDs).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

from firmware_bridge.base import DecodeError, Event
from firmware_bridge.options import DEFAULT_MAX_PAYLOAD_BYTES, PayloadOptions

_MAX_NUMBER_CHARS = 64

JsonValue = None | bool | int | float | str | list[Any] | dict[str, Any]

# C0 controls (NUL included), DEL, C1 controls and UTF-16 surrogates: never in a device's word
_BAD_CHAR = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
# literal DEL/C1 in JSON text can only sit inside a string (JSON forbids literal C0 there)
_BAD_LITERAL = re.compile("[\x7f-\x9f]")

_DECIMAL = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_INTEGER = re.compile(r"[+-]?\d+")


def too_large(limit: int) -> DecodeError:
    return DecodeError("too_large", f"payload exceeds the {limit} byte limit")


def bad_string() -> DecodeError:
    return DecodeError("bad_string", "a string holds a control character, NUL or a lone surrogate")


def clean_string(text: str) -> bool:
    """No NUL, no control character, no lone surrogate: safe in every sink and log line."""
    return _BAD_CHAR.search(text) is None


def clean_strings(value: object) -> bool:
    """Every string in a parsed JSON value (object keys included) is `clean_string`."""
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, str):
            if _BAD_CHAR.search(v):
                return False
        elif isinstance(v, dict):
            for k, item in v.items():
                if _BAD_CHAR.search(k):
                    return False
                stack.append(item)
        elif isinstance(v, list):
            stack.extend(v)
    return True


def _decode_utf8(payload: bytes, limit: int) -> str | DecodeError:
    if len(payload) > limit:
        return too_large(limit)
    try:
        return payload.decode("utf-8")
    except UnicodeDecodeError:
        return DecodeError("not_utf8", "payload is not valid UTF-8 text")


def load_text(payload: bytes, limit: int = DEFAULT_MAX_PAYLOAD_BYTES) -> str | DecodeError:
    """Size-check and UTF-8-decode a plain-text payload (e.g. one OpenEVSE value per topic).
    Surrounding whitespace (a trailing newline from `mosquitto_pub -l`) is stripped; any other
    control character is refused."""
    text = _decode_utf8(payload, limit)
    if isinstance(text, DecodeError):
        return text
    text = text.strip()
    return text if clean_string(text) else bad_string()


def reject_constant(name: str) -> Any:
    """`json.loads(..., parse_constant=reject_constant)`: NaN and Infinity are not JSON."""
    raise ValueError("non-finite constant")


# one decoder for every payload: `json.loads` with a keyword argument builds a new one per call
STRICT_DECODER = json.JSONDecoder(parse_constant=reject_constant)
# its C scanner: one JSON value from a position (`decode` calls it through two Python frames and
# two whitespace regexes, which cost as much as the scan of a small payload)
_SCAN_ONCE: Callable[[str, int], tuple[Any, int]] = STRICT_DECODER.scan_once  # type: ignore[attr-defined]


def _strict_loads(text: str) -> Any:
    """`STRICT_DECODER.decode(text)`: the same value or the same error. A payload that is one
    value spanning the whole text, as devices send it, is the scanner's alone; anything else
    (whitespace around it, trailing data, not JSON) goes through `decode` for its verdict."""
    try:
        value, end = _SCAN_ONCE(text, 0)
    except StopIteration:  # no value at the start (whitespace first, or not JSON)
        return STRICT_DECODER.decode(text)
    if end != len(text):
        return STRICT_DECODER.decode(text)
    return value


def load_json(payload: bytes, limit: int = DEFAULT_MAX_PAYLOAD_BYTES) -> JsonValue | DecodeError:
    """Parse a JSON payload; NaN/Infinity and absurd nesting are rejected like syntax errors,
    strings holding control characters, NUL or lone surrogates as `bad_string`."""
    text = _decode_utf8(payload, limit)
    if isinstance(text, DecodeError):
        return text
    try:
        value: JsonValue = _strict_loads(text)
    except RecursionError:
        return DecodeError("not_json", "payload is nested too deeply to parse")
    except ValueError:  # JSONDecodeError, and int digit-limit errors, are ValueErrors
        return DecodeError("not_json", "payload is not valid JSON")
    # JSON text has no literal C0 inside strings, and valid UTF-8 holds no surrogates: only an
    # escape (`\u0000`, `\ud800`, `\n`) or a literal DEL/C1 can bring a bad character in
    if ("\\" in text or _BAD_LITERAL.search(text)) and not clean_strings(value):
        return bad_string()
    return value


def is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def as_float(value: object) -> float | None:
    """A finite float from a JSON number or a decimal string (firmware often sends "16000")."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        try:
            result = float(value)
        except OverflowError:
            return None
    elif isinstance(value, float):
        result = value
    elif isinstance(value, str):
        text = value.strip()
        if len(text) > _MAX_NUMBER_CHARS or not _DECIMAL.fullmatch(text):
            return None
        result = float(text)
    else:
        return None
    return result if math.isfinite(result) else None


def as_int(value: object) -> int | None:
    """An int from a JSON integer, an integral float, or an integer string ("3")."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if math.isfinite(value) and value.is_integer() else None
    if isinstance(value, str):
        text = value.strip()
        if len(text) > _MAX_NUMBER_CHARS or not _INTEGER.fullmatch(text):
            return None
        return int(text)
    return None


def parse_rfc3339(value: object) -> float | None:
    """Epoch seconds from an RFC 3339 timestamp; None if absent, malformed or without offset
    (a zone-less time is ambiguous, so the gateway's receive time is used instead)."""
    if not isinstance(value, str) or not 10 <= len(value) <= 40:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return None
    try:
        return parsed.timestamp()
    except (OverflowError, ValueError, OSError):
        return None


def concrete_topic(topic_filter: str, fill: str = "sim-1") -> str:
    """A publishable topic for simulators: `+` levels become `fill`, a trailing `#` is dropped."""
    levels = [fill if level == "+" else level for level in topic_filter.split("/")]
    while levels and levels[-1] == "#":
        levels.pop()
    return "/".join(levels) or fill


def guarded(decode: Callable[[str, bytes], list[Event]], topic: str, payload: bytes) -> list[Event]:
    """Last-resort net: a decoder bug on hostile input becomes a counted `decoder_bug` error
    rather than an exception in the MQTT source. Tests assert it never fires."""
    try:
        return decode(topic, payload)
    except Exception:  # deliberate: bad input must never crash the MQTT source
        return [DecodeError("decoder_bug", "decoder failed unexpectedly on this input")]


class PayloadDecoder:
    """Base of a profile's decoder: the sensor's payload size limit, and `decode` behind the
    last-resort net of `guarded`. A subclass implements `_decode`."""

    def __init__(self, options: PayloadOptions) -> None:
        self.limit = options.max_payload_bytes

    def decode(self, topic: str, payload: bytes) -> list[Event]:
        return guarded(self._decode, topic, payload)

    def _decode(self, topic: str, payload: bytes) -> list[Event]:
        raise NotImplementedError
