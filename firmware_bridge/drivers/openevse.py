"""OpenEVSE charger (ESP32 WiFi firmware): one plain-text value per topic `<base>/<key>`.

The sensor's `mqtt.topic` is an ordinary subscription filter, normally `<base>/+` where `<base>`
is the `mqtt` value of the charger's announce message; the decoder only looks at the last topic
level, which is the status key. `openevse/announce/<id>` (retained announce and LWT) is device
metadata and is ignored without an event. Scales follow the firmware: amp in mA, temp in tenths
of a degree, `wh` the lifetime register in Wh, `total_energy` the same register in kWh.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable

from pydantic import Field as Opt

from firmware_bridge.base import (
    Aggregation,
    Catalogue,
    Decoded,
    DecodeError,
    Event,
    Field,
    ObservationType,
    Role,
    Value,
)
from firmware_bridge.driver import MessageDriver
from firmware_bridge.jsonpayload import (
    PayloadDecoder,
    as_float,
    as_int,
    concrete_topic,
    load_text,
)
from firmware_bridge.options import PayloadOptions

MAX_TEXT = 64  # one scalar per topic; anything longer is not a status value
M, C, T = ObservationType.MEASUREMENT, ObservationType.CATEGORY, ObservationType.TRUTH

CATALOGUE = Catalogue(
    driver="openevse",
    make="OpenEVSE",
    model="OpenEVSE WiFi (ESP32 firmware)",
    description="Level 2 EV charger publishing its status over MQTT",
    transport="mqtt",
    datasheet="openevse_esp32_firmware docs/mqtt.md",
    fields=(
        Field("current", "A", M, "Charging current", minimum=0, maximum=100),
        Field("voltage", "V", M, "Supply voltage", minimum=0, maximum=300),
        Field(
            "pilot_current",
            "A",
            M,
            "Current offered to the vehicle (J1772 pilot)",
            minimum=0,
            maximum=80,
        ),
        Field("power", "W", M, "Charging power", minimum=0, maximum=25000),
        Field("temperature", "Cel", M, "EVSE internal temperature", minimum=-40, maximum=120),
        Field("total_energy", "kW.h", M, "Lifetime energy register of the charger", minimum=0),
        Field("evse_state", None, C, "OpenEVSE state name (J1772 state or fault)"),
        Field("status", None, C, "EVSE status in the OCPI 2.2.1 vocabulary"),
        Field("vehicle_connected", None, T, "A vehicle is plugged in"),
        Field("firmware_status", None, C, "Firmware activity flag (active/disabled/...)"),
        Field(
            "session_energy", "kW.h", M, "Energy of the current session so far",
            role=Role.RUNNING_TOTAL, minimum=0,
        ),
        Field(
            "energy_increment",
            "kW.h",
            M,
            "Session energy since the previous report",
            role=Role.PERSON_EVENT,
            minimum=0,
        ),
        Field("elapsed", "s", M, "Duration of the current session", role=Role.PERSON_EVENT,
              minimum=0),
        Field(
            "rfid_auth",
            None,
            T,
            "A new RFID card was accepted (the UID is never kept)",
            role=Role.PERSON_EVENT,
        ),
        Field(
            "energy_delivered",
            "kW.h",
            M,
            "Energy delivered in the window",
            aggregation=Aggregation.SUM,
            source="energy_increment",
        ),
        Field(
            "authorisations",
            "{count}",
            ObservationType.COUNT,
            "RFID authorisations in the window",
            aggregation=Aggregation.COUNT,
            source="rfid_auth",
        ),
    ),
)

# OpenEVSE state codes (J1772 A/B/C/D and the firmware's fault and admin states).
STATE_NAMES: dict[int, str] = {
    0: "starting", 1: "not_connected", 2: "connected", 3: "charging", 4: "vent_required",
    5: "diode_check_failed", 6: "gfci_fault", 7: "no_ground", 8: "stuck_relay",
    9: "gfci_self_test_failed", 10: "over_temperature", 11: "over_current",
    254: "sleeping", 255: "disabled",
}  # fmt: skip

# OpenEVSE state -> OCPI 2.2.1 EVSE status. A plugged-in vehicle means the EVSE is in use
# (CHARGING in OCPI, whether or not energy flows); faults are OUTOFORDER; sleeping/disabled is
# an operator or timer decision, so INOPERATIVE; the boot state is UNKNOWN.
STATE_TO_OCPI: dict[int, str] = {
    0: "UNKNOWN", 1: "AVAILABLE", 2: "CHARGING", 3: "CHARGING", 4: "CHARGING",
    5: "OUTOFORDER", 6: "OUTOFORDER", 7: "OUTOFORDER", 8: "OUTOFORDER", 9: "OUTOFORDER",
    10: "OUTOFORDER", 11: "OUTOFORDER", 254: "INOPERATIVE", 255: "INOPERATIVE",
}  # fmt: skip

# Keys the firmware publishes that this profile deliberately does not collect. Dropped quietly
# so that `unknown_key` keeps meaning "something new": vehicle_soc/range are personal (OCPI
# treats SoC as privacy-sensitive), the rest are diagnostics or duplicates.
IGNORED_KEYS = frozenset({
    "temp1", "temp2", "temp3", "temp4", "temp_max", "srssi", "freeram", "ipaddress",
    "divertmode", "divert_active", "divert_update", "charge_rate", "available_current",
    "smoothed_available_current", "trigger_current", "total_day", "total_week", "total_month",
    "total_year", "total_switches", "manual_override", "mode", "flags", "time", "local_time",
    "offset", "config_version", "claims_version", "override_version", "schedule_version",
    "schedule_plan_version", "limit_version", "evse_connected", "rapi_connected",
    "wifi_client_connected", "eth_connected", "net_connected", "mqtt_connected",
    "ocpp_connected", "emoncms_connected", "packets_sent", "packets_success", "ota_update",
    "service_level", "gfcicount", "nogndcount", "stuckcount", "vehicle_soc", "vehicle_range",
    "vehicle_eta", "battery_level", "battery_range", "time_to_full_charge", "max_current",
    "shaper", "shaper_live_pwr", "shaper_cur", "solar", "grid_ie", "ohm_hour", "colour",
})  # fmt: skip

# The firmware's own `status` key: published as a category, so only its known words pass.
FIRMWARE_STATUSES = frozenset({"active", "disabled", "sleeping"})
_FALSEY_TEXT = frozenset({"", "false", "null", "0"})


def _number_error() -> DecodeError:
    return DecodeError("wrong_type", "status value is not a number")


class Options(PayloadOptions):
    ignore_keys: tuple[str, ...] = Opt(
        (), description="Further status topics to ignore quietly (counted as ignored, not errors)."
    )


class Decoder(PayloadDecoder):
    """Decodes one OpenEVSE status message. Holds two small pieces of RAM-only state: the last
    session energy (to derive `energy_increment`) and a digest of the last RFID UID (so that the
    UID the firmware repeats every 30 s counts as one authorisation)."""

    def __init__(self, options: Options) -> None:
        super().__init__(options)
        self.ignored = IGNORED_KEYS | frozenset(options.ignore_keys)
        self._last_session_kwh: float | None = None
        self._last_tag_digest: bytes | None = None
        self._handlers: dict[str, Callable[[str], list[Event]]] = {
            "amp": self._scaled("current", 0.001),
            "voltage": self._scaled("voltage", 1.0),
            "pilot": self._scaled("pilot_current", 1.0),
            "power": self._scaled("power", 1.0),
            "temp": self._temperature,
            "wh": self._scaled("total_energy", 0.001),
            "total_energy": self._scaled("total_energy", 1.0),
            "session_energy": self._session_energy,
            "elapsed": self._scaled("elapsed", 1.0),
            "session_elapsed": self._scaled("elapsed", 1.0),
            "state": self._state,
            "vehicle": self._vehicle,
            "status": self._firmware_status,
            "rfid_auth": self._rfid,
        }

    def _decode(self, topic: str, payload: bytes) -> list[Event]:
        levels = topic.split("/")
        if len(levels) >= 2 and levels[-2] == "announce":
            return []  # device metadata (name, IP, base topic): not a reading
        key = levels[-1]
        if key in self.ignored:
            return []
        handler = self._handlers.get(key)
        if handler is None:
            return [DecodeError("unknown_key", "topic's last level is not a known status key")]
        text = load_text(payload, self.limit)
        if isinstance(text, DecodeError):
            return [text]
        if len(text) > MAX_TEXT:
            return [DecodeError("too_large", f"a status value is at most {MAX_TEXT} bytes")]
        return handler(text.strip())

    def _scaled(self, field: str, scale: float) -> Callable[[str], list[Event]]:
        def handle(text: str) -> list[Event]:
            number = as_float(text)
            if number is None:
                return [_number_error()]
            return [Decoded({field: round(number * scale, 6)})]

        return handle

    def _temperature(self, text: str) -> list[Event]:
        if text == "false":
            return []  # the firmware's way of saying "no valid temperature sensor"
        return self._scaled("temperature", 0.1)(text)

    def _session_energy(self, text: str) -> list[Event]:
        wh = as_float(text)
        if wh is None:
            return [_number_error()]
        kwh = round(wh / 1000, 6)
        values: dict[str, Value] = {"session_energy": kwh}
        last = self._last_session_kwh
        if last is not None:
            # a drop means a new session began: everything in it is new energy
            values["energy_increment"] = round(kwh - last, 6) if kwh >= last else kwh
        self._last_session_kwh = kwh
        return [Decoded(values)]

    def _state(self, text: str) -> list[Event]:
        code = as_int(text)
        if code is None:
            return [DecodeError("wrong_type", "state value is not an integer code")]
        if code not in STATE_NAMES:
            return [Decoded({"status": "UNKNOWN"}, flags=("unmapped_state",))]
        return [Decoded({"evse_state": STATE_NAMES[code], "status": STATE_TO_OCPI[code]})]

    def _vehicle(self, text: str) -> list[Event]:
        code = as_int(text)
        if code not in (0, 1):
            return [DecodeError("wrong_type", "vehicle flag is not 0 or 1")]
        return [Decoded({"vehicle_connected": code == 1})]

    def _firmware_status(self, text: str) -> list[Event]:
        if text not in FIRMWARE_STATUSES:
            return [DecodeError("bad_value", "firmware activity flag is not a known word")]
        return [Decoded({"firmware_status": text})]

    def _rfid(self, text: str) -> list[Event]:
        if text.lower() in _FALSEY_TEXT:
            self._last_tag_digest = None
            return []
        digest = hashlib.blake2b(text.encode(), digest_size=16).digest()
        if digest == self._last_tag_digest:
            return []  # the firmware repeats the authenticated UID with every status report
        self._last_tag_digest = digest
        return [Decoded({"rfid_auth": True})]


def catalogue_for(options: Options) -> Catalogue:
    return CATALOGUE


def simulate(rng: random.Random, now: float, base_topic: str) -> list[tuple[str, bytes]]:
    """One 30-second status burst of a charger mid-session, as the firmware publishes it."""
    topic = base_topic
    for suffix in ("/#", "/+"):
        topic = topic.removesuffix(suffix)
    base = concrete_topic(topic, "openevse-sim1")
    charging = rng.random() < 0.7
    amps = rng.randint(6, 32) if charging else 0
    voltage = rng.randint(228, 248)
    elapsed = int(now % 14400)  # a new four-hour session every four hours
    session_wh = round(elapsed / 3600 * 7000, 1)
    total_kwh = round(1200 + (now % 10**7) / 3600 * 0.3, 2)
    values = {
        "amp": str(amps * 1000),
        "voltage": str(voltage),
        "pilot": "32",
        "power": str(amps * voltage),
        "wh": str(int(total_kwh * 1000)),
        "session_energy": str(session_wh),
        "total_energy": str(total_kwh),
        "temp": str(rng.randint(180, 380)),
        "state": "3" if charging else "1",
        "vehicle": "1" if charging else "0",
        "status": "active",
        "elapsed": str(elapsed),
        "srssi": str(rng.randint(-80, -40)),
    }
    messages = [(f"{base}/{key}", value.encode()) for key, value in values.items()]
    if charging:
        tag = random.Random(int(now // 14400)).getrandbits(48)  # one card per session
        messages.append((f"{base}/rfid_auth", f"04{tag:012X}".encode()))
    return messages


DRIVER = MessageDriver(
    name="openevse",
    catalogue_for=catalogue_for,
    new_decoder=Decoder,
    options=Options,
    default_topic="openevse/+/+",
    simulate=simulate,
    doc="docs/drivers/openevse.md",
)
