"""Framing for our own microcontroller node: COBS + CRC-16/CCITT-FALSE, message version 2.

This one file runs unchanged on the gateway (CPython) and on the node (MicroPython): copy it
next to micropython/main.py on the board. Hence: no imports, no dataclasses, no f-strings,
annotations only with builtin types (MicroPython's compiler ignores them).

On the wire, each message is `00 COBS(payload + CRC) 00`. COBS removes every 00 from the
encoded bytes, so 00 only ever delimits; the leading 00 closes any partial frame left by line
noise or a node reset, so one bad frame never swallows the next.

Payload, version 2 (sent): `[version=2][type][seq][len] body`, where `len` is one byte, the
body's length in bytes (0..236), then the CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no
reflection) of those bytes, big-endian. `len` makes truncation detectable without the CRC:
losing the tail of a frame (and its closing 00) leaves either a broken COBS block or a decoded
prefix that is shorter than `len` says, so it is rejected ("cobs", "too_short" or "length")
even when the 2 bytes that now sit where the CRC was happen to match it.

Payload, version 1 (still accepted, from nodes already in the field): `[version=1][type][seq]
body` + CRC as above; only the CRC guards it against truncation (a cut can pass it by chance).

`seq` counts 0..255 and wraps, so the gateway can count lost messages. Type 1 (READINGS): body
is ASCII `key=value` pairs joined by `,`, keys `[a-z0-9_]{1,32}`, values decimal numbers
(`-12`, `21.5`, `1.5e-3`; no nan or inf).
"""

VERSION = 2  # what encode_message sends
VERSION_1 = 1  # still decoded: no length byte, the CRC alone catches truncation
MSG_READINGS = 1
HEADER_LEN = 4  # version 2: version, type, seq, body length
HEADER_LEN_V1 = 3  # version 1: version, type, seq
CRC_LEN = 2
MAX_PAYLOAD = 240
MAX_BODY = MAX_PAYLOAD - HEADER_LEN
MAX_ENCODED = MAX_PAYLOAD + CRC_LEN + 2  # COBS adds one byte per 254, plus the first code
MAX_KEY = 32
DELIMITER = b"\x00"

_KEY_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789_"
_NUMBER_CHARS = "0123456789+-.eE"
_CRC_NIBBLE = (
    0x0000, 0x1021, 0x2042, 0x3063, 0x4084, 0x50A5, 0x60C6, 0x70E7,
    0x8108, 0x9129, 0xA14A, 0xB16B, 0xC18C, 0xD1AD, 0xE1CE, 0xF1EF,
)  # fmt: skip


class FrameError(ValueError):
    """A frame or message that must be rejected; `reason` is a short word for counters and
    `detail` a sentence that never quotes the frame's content."""

    def __init__(self, reason: str, detail: str) -> None:
        ValueError.__init__(self, detail)
        self.reason = reason
        self.detail = detail


def crc16_ccitt(data: bytes, crc: int = 0xFFFF) -> int:
    """CRC-16/CCITT-FALSE with a 16-entry nibble table: small enough for a microcontroller.
    Check value: crc16_ccitt(b"123456789") == 0x29B1."""
    for b in data:
        crc = ((crc << 4) & 0xFFFF) ^ _CRC_NIBBLE[(crc >> 12) ^ (b >> 4)]
        crc = ((crc << 4) & 0xFFFF) ^ _CRC_NIBBLE[(crc >> 12) ^ (b & 0x0F)]
    return crc


def cobs_encode(data: bytes) -> bytes:
    """Consistent Overhead Byte Stuffing, without the trailing delimiter."""
    out = bytearray(b"\x00")
    code_at = 0
    code = 1
    for b in data:
        if b == 0:
            out[code_at] = code
            code_at = len(out)
            out.append(0)
            code = 1
            continue
        out.append(b)
        code += 1
        if code == 0xFF:
            out[code_at] = code
            code_at = len(out)
            out.append(0)
            code = 1
    out[code_at] = code
    return bytes(out)


def cobs_decode(data: bytes) -> bytes:
    """Inverse of cobs_encode; `data` is one segment between delimiters (no 00 in it)."""
    out = bytearray()
    i = 0
    n = len(data)
    while i < n:
        code = data[i]
        end = i + code
        if code == 0 or end > n:
            raise FrameError("cobs", "COBS block runs past the end of the frame")
        out += data[i + 1 : end]
        i = end
        if code != 0xFF and i < n:
            out.append(0)
    return bytes(out)


def encode_frame(payload: bytes) -> bytes:
    """`00 COBS(payload + CRC big-endian) 00`, ready for the UART."""
    if len(payload) > MAX_PAYLOAD:
        raise FrameError("too_long", "payload longer than MAX_PAYLOAD")
    crc = crc16_ccitt(payload)
    return DELIMITER + cobs_encode(payload + bytes([crc >> 8, crc & 0xFF])) + DELIMITER


def _check_length(data: bytes) -> None:
    """Version 2: the length byte must account for every byte between header and CRC."""
    if len(data) < HEADER_LEN or data[3] != len(data) - HEADER_LEN:
        raise FrameError("length", "body length in the header does not match the frame")


def decode_frame(segment: bytes) -> bytes:
    """The payload of one segment between delimiters, CRC checked; raises FrameError.

    A version-2 frame's length byte is checked before the CRC, so a truncated frame that
    COBS-decodes is rejected as "length", whatever the bytes that now sit where the CRC was."""
    if len(segment) > MAX_ENCODED:
        raise FrameError("too_long", "frame longer than MAX_ENCODED")
    data = cobs_decode(segment)
    if len(data) < HEADER_LEN_V1 + CRC_LEN:
        raise FrameError("too_short", "frame shorter than a message header and CRC")
    payload = data[:-CRC_LEN]
    if payload[0] == VERSION:
        _check_length(payload)
    if crc16_ccitt(payload) != (data[-2] << 8) | data[-1]:
        raise FrameError("checksum", "CRC-16 mismatch")
    return payload


def encode_message(msg_type: int, seq: int, body: bytes) -> bytes:
    """A version-2 payload: `[2][type][seq][len] body`."""
    if len(body) > MAX_BODY:
        raise FrameError("too_long", "body longer than MAX_BODY")
    return bytes([VERSION, msg_type, seq & 0xFF, len(body)]) + body


def decode_message(payload: bytes) -> tuple[int, int, bytes]:
    """(type, seq, body) of a version-2 or version-1 payload; raises FrameError."""
    if len(payload) < HEADER_LEN_V1:
        raise FrameError("too_short", "payload shorter than a message header")
    if payload[0] == VERSION:
        _check_length(payload)
        return payload[1], payload[2], payload[HEADER_LEN:]
    if payload[0] == VERSION_1:
        return payload[1], payload[2], payload[HEADER_LEN_V1:]
    raise FrameError("unsupported_version", "message version is neither 1 nor 2")


def _check_key(key: str) -> None:
    if not 1 <= len(key) <= MAX_KEY:
        raise FrameError("bad_key", "reading key is empty or longer than 32 characters")
    for c in key:
        if c not in _KEY_CHARS:
            raise FrameError("bad_key", "reading key has a character outside [a-z0-9_]")


def _format(value: float) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise FrameError("bad_value", "reading value is not a number")
    if value - value != 0:
        raise FrameError("bad_value", "reading value is not finite")
    if isinstance(value, int):
        return str(value)
    return repr(value)


def format_readings(readings: dict[str, float]) -> bytes:
    """The READINGS body: sorted `key=value` pairs joined by `,`."""
    parts = []
    for key in sorted(readings):
        _check_key(key)
        parts.append(key + "=" + _format(readings[key]))
    return ",".join(parts).encode()


def parse_readings(body: bytes) -> dict[str, float]:
    """Inverse of format_readings; integers stay int. Raises FrameError."""
    readings: dict[str, float] = {}
    if not body:
        return readings
    try:
        text = body.decode()
    except UnicodeError:
        raise FrameError("bad_body", "readings body is not ASCII") from None
    for pair in text.split(","):
        kv = pair.split("=", 1)
        if len(kv) != 2 or not kv[1]:
            raise FrameError("bad_body", "readings pair is not key=value")
        key, raw = kv
        _check_key(key)
        for c in raw:
            if c not in _NUMBER_CHARS:
                raise FrameError("bad_value", "reading value is not a decimal number")
        try:
            digits = raw[1:] if raw[0] in "+-" else raw
            value: float = int(raw) if digits.isdigit() else float(raw)
        except ValueError:
            raise FrameError("bad_value", "reading value is not a decimal number") from None
        if value - value != 0:
            raise FrameError("bad_value", "reading value is not finite")
        if key in readings:
            raise FrameError("bad_body", "reading key repeated")
        readings[key] = value
    return readings


def encode_readings(seq: int, readings: dict[str, float]) -> bytes:
    """One complete READINGS frame for the UART."""
    return encode_frame(encode_message(MSG_READINGS, seq, format_readings(readings)))
