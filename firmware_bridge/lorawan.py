"""LoRaWAN network-server uplinks, from the two servers' MQTT integrations to one neutral shape.

- ChirpStack v4, JSON marshaler: `application/<application id>/device/<DevEUI>/event/<event>`,
  the body an `integration.UplinkEvent` in the Protocol Buffers JSON mapping (camelCase keys,
  bytes in base64). Recent releases emit every field, older ones leave defaults out.
- The Things Stack v3: `v3/<application id>[@<tenant id>]/devices/<device id>/<event>`, the
  body snake_case with the uplink under `uplink_message`; empty fields are left out.

Only what a reading needs is kept: who sent it (DevEUI, device and application ids), fPort,
frame counter, the FRMPayload bytes, the server's decoded object, the time and keys to drop
duplicates. Radio metadata (RSSI, SNR, gateway ids and locations, data rate, frequency) is never
read, so it cannot reach a reading, a log line or an error message.

Pure and total: `parse_*` return an `Uplink`, `None` for a valid message that is not an uplink
(join, ack, status, location, downlink events: counted as ignored), or a `DecodeError`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from firmware_bridge.base import DecodeError
from firmware_bridge.jsonpayload import as_int, load_json, parse_rfc3339
from firmware_bridge.options import DEFAULT_MAX_PAYLOAD_BYTES

Network = Literal["chirpstack", "tts"]

MAX_FRM_PAYLOAD = 255  # LoRaWAN caps FRMPayload at 242 bytes; a longer one is not an uplink
_EUI = re.compile(r"[0-9A-Fa-f]{16}")
_HEX = re.compile(r"[0-9A-Fa-f]{0,16}")
_ID = re.compile(r"[A-Za-z0-9@._:-]{1,128}")  # ids and tenants: no '/', '+', '#' or spaces
_U32 = 2**32


@dataclass(frozen=True, slots=True)
class Uplink:
    """One application uplink, as either server reported it, minus everything radio."""

    network: Network
    application: str  # ChirpStack application UUID, or TTS application id (without tenant)
    device: str  # the device's id in the topic: ChirpStack DevEUI, TTS device id
    dev_eui: str | None  # upper-case hex; None only for a TTS device registered without one
    f_port: int  # 0 when the server left it out (proto3 / TTS omit zero values)
    f_cnt: int
    payload: bytes
    decoded: Mapping[str, Any] | None  # the server's payload-formatter output, if any
    device_time: float | None  # epoch seconds: ChirpStack `time`, TTS `received_at`
    dedup_keys: tuple[bytes, ...]  # digests for `Deduplicator`; RAM only, never logged


def _digest(*parts: str) -> bytes:
    return hashlib.blake2b("\x1f".join(parts).encode(), digest_size=16).digest()


def _error(reason: str, detail: str) -> DecodeError:
    return DecodeError(reason, detail)


def _u32(value: object, name: str) -> int | DecodeError:
    """A proto3 uint32 in JSON: a number, or a decimal string; absent means 0."""
    if value is None:
        return 0
    number = as_int(value)
    if number is None or not 0 <= number < _U32:
        return _error("wrong_type", f"{name} is not an unsigned 32-bit integer")
    return number


def _bytes(value: object, name: str) -> bytes | DecodeError:
    """Base64 bytes in JSON (either alphabet, as proto3 JSON parsers accept); absent is empty."""
    if value is None:
        return b""
    if not isinstance(value, str) or len(value) > 4 * MAX_FRM_PAYLOAD:
        return _error("wrong_type", f"{name} is not a base64 string of a LoRaWAN payload")
    text = value.replace("-", "+").replace("_", "/")
    text += "=" * (-len(text) % 4)
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return _error("bad_base64", f"{name} is not valid base64")
    if len(raw) > MAX_FRM_PAYLOAD:
        return _error("too_large", f"{name} is longer than a LoRaWAN payload can be")
    return raw


def _object(value: object, name: str) -> Mapping[str, Any] | DecodeError | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        return _error("wrong_type", f"{name} is not a JSON object")
    return value


def _eui(value: object, name: str) -> str | DecodeError:
    if not isinstance(value, str) or not _EUI.fullmatch(value):
        return _error("bad_eui", f"{name} is not a 64-bit EUI in hex")
    return value.upper()


def _time(value: object) -> float | None:
    when = parse_rfc3339(value)
    return when if when is not None and 0 < when < 2**33 else None


def _envelope(payload: bytes, limit: int) -> dict[str, Any] | DecodeError:
    message = load_json(payload, limit)
    if isinstance(message, DecodeError):
        return message
    if not isinstance(message, dict):
        return _error("wrong_type", "uplink event is not a JSON object")
    return message


def _frame(
    message: Mapping[str, Any], port: str, count: str, payload: str, decoded: str
) -> tuple[int, int, bytes, Mapping[str, Any] | None] | DecodeError:
    """(fPort, fCnt, FRMPayload, decoded object) of an uplink, under each network's key names."""
    f_port = _u32(message.get(port), port)
    if isinstance(f_port, DecodeError):
        return f_port
    f_cnt = _u32(message.get(count), count)
    if isinstance(f_cnt, DecodeError):
        return f_cnt
    data = _bytes(message.get(payload), payload)
    if isinstance(data, DecodeError):
        return data
    obj = _object(message.get(decoded), decoded)
    if isinstance(obj, DecodeError):
        return obj
    if f_port > 255:
        return _error("wrong_type", f"{port} is not a LoRaWAN port")
    return f_port, f_cnt, data, obj


def chirpstack_event(topic: str) -> tuple[str, str, str] | None:
    """(application id, DevEUI, event) from a ChirpStack event topic, whatever its prefix."""
    levels = topic.split("/")
    if len(levels) < 6 or levels[-6] != "application" or levels[-4] != "device":
        return None
    if levels[-2] != "event" or not all(levels[-i] for i in (1, 3, 5)):
        return None
    return levels[-5], levels[-3], levels[-1]


def parse_chirpstack(
    topic: str, payload: bytes, limit: int = DEFAULT_MAX_PAYLOAD_BYTES
) -> Uplink | DecodeError | None:
    """A ChirpStack v4 JSON integration event; only `up` events become an `Uplink`."""
    where = chirpstack_event(topic)
    if where is None:
        return _error("unknown_topic", "topic is not a ChirpStack application event topic")
    application, topic_eui, event = where
    if event != "up":
        return None  # join, status, ack, txack, log, location, integration
    message = _envelope(payload, limit)
    if isinstance(message, DecodeError):
        return message
    info = message.get("deviceInfo")
    if not isinstance(info, dict):
        return _error("missing_field", "uplink event has no deviceInfo object")
    dev_eui = _eui(info.get("devEui"), "deviceInfo.devEui")
    if isinstance(dev_eui, DecodeError):
        return dev_eui
    if topic_eui.upper() != dev_eui:
        return _error("identity_mismatch", "DevEUI in the topic and in the event differ")
    app = info.get("applicationId", application)
    if app != application:
        return _error("identity_mismatch", "application in the topic and in the event differ")
    frame = _frame(message, "fPort", "fCnt", "data", "object")
    if isinstance(frame, DecodeError):
        return frame
    f_port, f_cnt, data, decoded = frame
    dev_addr = message.get("devAddr", "")
    if not isinstance(dev_addr, str) or not _HEX.fullmatch(dev_addr):
        return _error("wrong_type", "devAddr is not a hex device address")
    keys = [_digest("fcnt", dev_eui, dev_addr.upper(), str(f_cnt))]
    dedup_id = message.get("deduplicationId")
    if dedup_id is not None:
        if not isinstance(dedup_id, str) or not _ID.fullmatch(dedup_id):
            return _error("wrong_type", "deduplicationId is not an identifier")
        keys.insert(0, _digest("chirpstack", dedup_id))
    return Uplink(
        network="chirpstack",
        application=application,
        device=topic_eui,
        dev_eui=dev_eui,
        f_port=f_port,
        f_cnt=f_cnt,
        payload=data,
        decoded=decoded,
        device_time=_time(message.get("time")),
        dedup_keys=tuple(keys),
    )


def tts_event(topic: str) -> tuple[str, str, str] | None:
    """(application id, device id, event path) from a The Things Stack v3 topic."""
    levels = topic.split("/")
    if len(levels) < 5 or levels[0] != "v3" or levels[2] != "devices":
        return None
    if not levels[1] or not levels[3] or not all(levels[4:]):
        return None
    application = levels[1].split("@", 1)[0]
    return application, levels[3], "/".join(levels[4:])


def parse_tts(
    topic: str, payload: bytes, limit: int = DEFAULT_MAX_PAYLOAD_BYTES
) -> Uplink | DecodeError | None:
    """A The Things Stack v3 MQTT message; only `up` becomes an `Uplink`."""
    where = tts_event(topic)
    if where is None:
        return _error("unknown_topic", "topic is not a The Things Stack v3 device topic")
    application, device, event = where
    if event != "up":
        return None  # join, down/*, service/data, location/solved
    message = _envelope(payload, limit)
    if isinstance(message, DecodeError):
        return message
    ids = message.get("end_device_ids")
    if not isinstance(ids, dict):
        return _error("missing_field", "uplink has no end_device_ids object")
    if ids.get("device_id") != device:
        return _error("identity_mismatch", "device id in the topic and in the message differ")
    app_ids = ids.get("application_ids")
    if isinstance(app_ids, dict) and app_ids.get("application_id", application) != application:
        return _error("identity_mismatch", "application in the topic and in the message differ")
    dev_eui: str | None = None
    if ids.get("dev_eui") is not None:
        checked = _eui(ids.get("dev_eui"), "end_device_ids.dev_eui")
        if isinstance(checked, DecodeError):
            return checked
        dev_eui = checked
    up = message.get("uplink_message")
    if not isinstance(up, dict):
        return _error("missing_field", "uplink has no uplink_message object")
    frame = _frame(up, "f_port", "f_cnt", "frm_payload", "decoded_payload")
    if isinstance(frame, DecodeError):
        return frame
    f_port, f_cnt, data, decoded = frame
    session = up.get("session_key_id", "")
    if not isinstance(session, str) or len(session) > 128:
        return _error("wrong_type", "session_key_id is not an identifier")
    who = dev_eui or f"{application}/{device}"
    keys = [_digest("fcnt", who, session, str(f_cnt))]
    correlation = message.get("correlation_ids")
    if isinstance(correlation, list):
        for cid in correlation:
            if isinstance(cid, str) and cid.startswith("as:up:") and len(cid) <= 128:
                keys.insert(0, _digest("tts", cid))
                break
    when = _time(up.get("received_at"))
    if when is None:
        when = _time(message.get("received_at"))
    return Uplink(
        network="tts",
        application=application,
        device=device,
        dev_eui=dev_eui,
        f_port=f_port,
        f_cnt=f_cnt,
        payload=data,
        decoded=decoded,
        device_time=when,
        dedup_keys=tuple(keys),
    )


class Deduplicator:
    """Drops an uplink seen before: the same server id, or the same device, session and frame
    counter (two LoRa gateways, two integrations or a resend all repeat them). Bounded in
    entries and in time; `now` is any monotonic clock in seconds, passed in."""

    def __init__(self, capacity: int = 4096, window: float = 900.0) -> None:
        if capacity < 1 or window <= 0:
            raise ValueError("capacity and window must be positive")
        self.capacity = capacity
        self.window = window
        self._seen: OrderedDict[bytes, float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._seen)

    def seen(self, keys: Sequence[bytes], now: float) -> bool:
        """True if any key was seen within the window; records the keys either way."""
        while self._seen:
            key, at = next(iter(self._seen.items()))
            if now - at <= self.window:
                break
            self._seen.popitem(last=False)
        duplicate = any(key in self._seen for key in keys)
        for key in keys:
            self._seen.pop(key, None)
            self._seen[key] = now
        while len(self._seen) > self.capacity:
            self._seen.popitem(last=False)
        return duplicate
