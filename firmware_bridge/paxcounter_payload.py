"""ESP32-Paxcounter's binary payloads, read the way the firmware writes them.

One module for the three encoders the firmware offers (`PAYLOAD_ENCODER` in paxcounter.conf),
shared by the MQTT profile (which gets `paxout/<port>` with the bytes in base64) and the LoRaWAN
codecs (which get the FRMPayload and fPort from a network server):

- *packed* (default, 2): little-endian integers, after thesolarnomad/lora-serialization;
- *plain* (1): big-endian integers; an SDS011 reading is appended as text (",%5.1f" twice);
- *Cayenne LPP* dynamic (3, channels 21/22 on fPort 1) or packed (4, by position on fPort 2).

The count message (port 1, COUNTERPORT) is `wifi[, ble][, GPS][, SDS011]`, or with
PAYLOAD_OPENSENSEBOX `GPS, wifi[, ble][, SDS011]` (src/senddata.cpp, sendData()). Each layout
has its own length, so the length says which parts are present. GPS is the device's own
position and is not kept. Counts are 16-bit: the firmware's addCount takes a uint16_t.

Every function is pure and total: bad bytes give a `DecodeError`, never an exception.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from firmware_bridge import lpp
from firmware_bridge.base import Aggregation, DecodeError, Field, ObservationType, Role, Value

COUNTER_PORT = 1  # COUNTERPORT in paxcounter_orig.conf
LPP_DYNAMIC_PORT = 1  # CAYENNE_LPP1: encoder 3 sends everything here
LPP_PACKED_PORT = 2  # CAYENNE_LPP2: encoder 4 sends everything here
LPP_WIFI_CHANNEL = 21  # include/payload.h LPP_COUNT_WIFI_CHANNEL
LPP_BLE_CHANNEL = 22  # LPP_COUNT_BLE_CHANNEL
LPP_PM10_CHANNEL = 32  # LPP_PARTMATTER10_CHANNEL
LPP_PM25_CHANNEL = 33  # LPP_PARTMATTER25_CHANNEL
_LUMINOSITY = 101  # the type the firmware borrows for counts ("no data type meter")
_GPS = 136

_GPS_FULL = 13  # lat(4) lon(4) sats(1) hdop(2) altitude(2)
_GPS_SHORT = 8  # with PAYLOAD_OPENSENSEBOX: lat, lon only
_SDS_BINARY = 4  # packed: pm10*10, pm25*10 as uint16
_SDS_TEXT = re.compile(rb",\s*(\d{1,4}\.\d),\s*(\d{1,4}\.\d)")  # plain: ",%5.1f" twice


@dataclass(frozen=True, slots=True)
class PaxCounts:
    """What one count message says. `ble` is None when the device does not scan BLE."""

    wifi: int
    ble: int | None = None
    pm10: float | None = None  # ug/m3, from an SDS011 wired to the Paxcounter
    pm2_5: float | None = None

    def values(self) -> dict[str, Value]:
        """Field values in the catalogue's names; `pax_devices` is wifi + ble, as the
        firmware's own payload formatters report `pax`."""
        out: dict[str, Value] = {"wifi_devices": self.wifi}
        total = self.wifi
        if self.ble is not None:
            out["ble_devices"] = self.ble
            total += self.ble
        out["pax_devices"] = total
        if self.pm10 is not None:
            out["pm10"] = self.pm10
        if self.pm2_5 is not None:
            out["pm2_5"] = self.pm2_5
        return out


def _length_error(what: str) -> DecodeError:
    return DecodeError("bad_length", f"{what} count message has a length no firmware layout has")


def _counts(
    payload: bytes, order: Literal["little", "big"], with_ble: bool, at: int
) -> tuple[int, int | None]:
    wifi = int.from_bytes(payload[at : at + 2], order)
    ble = int.from_bytes(payload[at + 2 : at + 4], order) if with_ble else None
    return wifi, ble


# length -> (offset of the counts, BLE present, offset of the SDS011 part or None)
_PACKED_LAYOUTS: dict[int, tuple[int, bool, int | None]] = {
    2: (0, False, None),
    4: (0, True, None),
    2 + _SDS_BINARY: (0, False, 2),
    4 + _SDS_BINARY: (0, True, 4),
    2 + _GPS_FULL: (0, False, None),
    4 + _GPS_FULL: (0, True, None),
    2 + _GPS_FULL + _SDS_BINARY: (0, False, 2 + _GPS_FULL),
    4 + _GPS_FULL + _SDS_BINARY: (0, True, 4 + _GPS_FULL),
    _GPS_SHORT + 2: (_GPS_SHORT, False, None),  # PAYLOAD_OPENSENSEBOX
    _GPS_SHORT + 4: (_GPS_SHORT, True, None),
    _GPS_SHORT + 2 + _SDS_BINARY: (_GPS_SHORT, False, _GPS_SHORT + 2),
    _GPS_SHORT + 4 + _SDS_BINARY: (_GPS_SHORT, True, _GPS_SHORT + 4),
}


def decode_packed_counts(payload: bytes) -> PaxCounts | DecodeError:
    """A port-1 message from the packed encoder (little-endian)."""
    layout = _PACKED_LAYOUTS.get(len(payload))
    if layout is None:
        return _length_error("packed")
    at, with_ble, sds = layout
    wifi, ble = _counts(payload, "little", with_ble, at)
    if sds is None:
        return PaxCounts(wifi, ble)
    pm10 = int.from_bytes(payload[sds : sds + 2], "little") / 10
    pm25 = int.from_bytes(payload[sds + 2 : sds + 4], "little") / 10
    return PaxCounts(wifi, ble, pm10, pm25)


# length without the SDS011 text -> (offset of the counts, BLE present)
_PLAIN_LAYOUTS: dict[int, tuple[int, bool]] = {
    2: (0, False),
    4: (0, True),
    2 + _GPS_FULL: (0, False),
    4 + _GPS_FULL: (0, True),
    _GPS_SHORT + 2: (_GPS_SHORT, False),  # PAYLOAD_OPENSENSEBOX
    _GPS_SHORT + 4: (_GPS_SHORT, True),
}


def decode_plain_counts(payload: bytes) -> PaxCounts | DecodeError:
    """A port-1 message from the plain encoder (big-endian; SDS011 appended as text)."""
    pm10 = pm25 = None
    body = payload
    comma = payload.find(b",")
    if comma >= 0:  # counts and GPS are binary, but only the SDS011 text starts with ","
        for start in (2, 4, 2 + _GPS_FULL, 4 + _GPS_FULL, _GPS_SHORT + 2, _GPS_SHORT + 4):
            match = _SDS_TEXT.fullmatch(payload, start)
            if match is not None:
                body = payload[:start]
                pm10, pm25 = float(match.group(1)), float(match.group(2))
                break
    layout = _PLAIN_LAYOUTS.get(len(body))
    if layout is None:
        return _length_error("plain")
    at, with_ble = layout
    wifi, ble = _counts(body, "big", with_ble, at)
    return PaxCounts(wifi, ble, pm10, pm25)


def decode_lpp_counts(payload: bytes, packed: bool) -> PaxCounts | DecodeError | None:
    """A message from a Cayenne LPP encoder, or None when it is valid LPP but not a count
    message (status, battery, GPS and BME readings share the same fPort in LPP modes)."""
    items = lpp.parse_packed(payload) if packed else lpp.parse_dynamic(payload)
    if isinstance(items, DecodeError):
        return items
    if packed:
        return _lpp_packed_counts(items)
    by_channel: dict[int, lpp.LppItem] = {}
    for item in items:
        if item.channel in by_channel:
            return DecodeError("duplicate_channel", "LPP message repeats a channel")
        by_channel[item.channel] = item
    wifi = by_channel.get(LPP_WIFI_CHANNEL)
    if wifi is None:
        return None  # not the count message
    ble = by_channel.get(LPP_BLE_CHANNEL)
    if any(c is not None and c.type.code != _LUMINOSITY for c in (wifi, ble)):
        return DecodeError("wrong_type", "a count channel does not carry a 16-bit count")
    pms: list[float | None] = []
    for channel in (LPP_PM10_CHANNEL, LPP_PM25_CHANNEL):
        pm = by_channel.get(channel)
        if pm is not None and pm.type.code != _LUMINOSITY:
            return DecodeError("wrong_type", "a particulate channel has an unexpected type")
        pms.append(None if pm is None else pm.values[0] / 10)
    ble_count = None if ble is None else int(ble.values[0])
    return PaxCounts(int(wifi.values[0]), ble_count, pms[0], pms[1])


def _lpp_packed_counts(items: list[lpp.LppItem]) -> PaxCounts | DecodeError | None:
    """Packed LPP has no channels: the firmware writes wifi, [ble], [GPS], [pm10, pm25], all
    counts and PM values as the luminosity type, so their number says which are present."""
    if not items or items[0].type.code != _LUMINOSITY:
        return None  # status or battery message on the same port
    numbers = [int(i.values[0]) for i in items if i.type.code == _LUMINOSITY]
    if any(i.type.code not in (_LUMINOSITY, _GPS) for i in items):
        return DecodeError("wrong_type", "count message carries an unexpected LPP type")
    if len(numbers) == 1:
        return PaxCounts(numbers[0])
    if len(numbers) == 2:
        return PaxCounts(numbers[0], numbers[1])
    if len(numbers) == 3:
        return PaxCounts(numbers[0], None, numbers[1] / 10, numbers[2] / 10)
    if len(numbers) == 4:
        return PaxCounts(numbers[0], numbers[1], numbers[2] / 10, numbers[3] / 10)
    return DecodeError("bad_length", "count message has more values than the firmware writes")


def catalogue_fields() -> tuple[Field, ...]:
    """The fields a Paxcounter count message yields, shared by the MQTT profile and the codecs.
    The device counts hashed devices on board; a count of devices nearby is still about
    people, so the counts are person counts: they leave only as the largest count per window,
    under the disclosure-control rules of the privacy stage."""
    counts = (
        _count("wifi_devices", "Wi-Fi devices seen in the device's counting cycle", 0xFFFF),
        _count("ble_devices", "Bluetooth LE devices seen in the device's counting cycle", 0xFFFF),
        _count("pax_devices", "Wi-Fi plus BLE devices, as the firmware's formatters report pax",
               2 * 0xFFFF),
    )  # fmt: skip
    return (
        *counts,
        Field("pm10", "ug/m3", ObservationType.MEASUREMENT,
              "PM10 from an SDS011 wired to the Paxcounter", minimum=0, maximum=999.9),
        Field("pm2_5", "ug/m3", ObservationType.MEASUREMENT,
              "PM2.5 from an SDS011 wired to the Paxcounter", minimum=0, maximum=999.9),
        *(_peak(c) for c in counts),
    )  # fmt: skip


def _count(key: str, description: str, maximum: int) -> Field:
    return Field(
        key,
        "{devices}",
        ObservationType.COUNT,
        description,
        minimum=0,
        maximum=maximum,
        role=Role.PERSON_COUNT,
    )


def _peak(count: Field) -> Field:
    return Field(
        f"{count.key}_max",
        "{devices}",
        ObservationType.COUNT,
        f"Largest count per window: {count.description[0].lower()}{count.description[1:]}",
        aggregation=Aggregation.MAX,
        source=count.key,
        minimum=0,
        maximum=count.maximum,
    )
