"""OpenEVSE charger (ESP32 WiFi firmware 5.x): one plain-text value per topic `<base>/<key>`.

The firmware's base topic is its hostname, one topic level: `openevse-<4 hex>` (e.g.
`openevse-55ad`) unless changed on the charger's MQTT page. MQTT wildcards cannot match
`openevse-+`, so the sensor names its charger: `options: {base_topic: openevse-55ad}`, and
subscribes to `<base_topic>/+` (or gives its own `mqtt.topic`; then the key is the last level). Scales follow the firmware (`src/input.cpp`,
`src/energy_meter.cpp`): amp in mA, temp in tenths of a degree, frequency in hundredths of a
hertz, session_energy in Wh, total_energy in kWh.

Valid topics this profile does not use are `Ignored`, not errors: the always-retained
housekeeping documents (`config`, `claim`, `override`, `schedule`, `limit`, `config_version`),
command and RAPI topics, `openevse/announce/<id>`, and keys not collected (diagnostics, vehicle
state of charge, the deprecated `wattsec`/`watthour` duplicates).

The firmware names no charging session, so the decoder tells sessions apart from the firmware's
own session boundaries (`_Sessions`) and puts a RAM-only session label into the readings of
each session, as an identifier: the privacy stage then counts sessions, not reports, behind an
energy figure, and never publishes the label.
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
    Ignored,
    ObservationType,
    Role,
    Value,
)
from firmware_bridge.driver import MessageDriver
from firmware_bridge.jsonpayload import (
    PayloadDecoder,
    as_float,
    as_int,
    load_text,
)
from firmware_bridge.options import PayloadOptions

MAX_TEXT = 64  # one scalar per topic; anything longer is not a status value
M, C, T = ObservationType.MEASUREMENT, ObservationType.CATEGORY, ObservationType.TRUTH

# OpenEVSE state codes: OpenEVSE/OpenEVSE_Lib src/openevse.h (J1772 A/B/C/D, faults, admin).
# 12 and 13 are reserved there and never sent: an unmapped code is flagged, not an error.
STATE_NAMES: dict[int, str] = {
    0: "starting", 1: "not_connected", 2: "connected", 3: "charging", 4: "vent_required",
    5: "diode_check_failed", 6: "gfci_fault", 7: "no_ground", 8: "stuck_relay",
    9: "gfci_self_test_failed", 10: "over_temperature", 11: "over_current",
    14: "relay_closure_fault", 15: "pp_shorted", 16: "pp_missing", 17: "eeprom_failure",
    254: "sleeping", 255: "disabled",
}  # fmt: skip

# OpenEVSE state -> OCPI 2.2.1 EVSE status. A plugged-in vehicle means the EVSE is in use
# (CHARGING in OCPI, whether or not energy flows); faults are OUTOFORDER; sleeping/disabled is
# an operator or timer decision, so INOPERATIVE; the boot state is UNKNOWN.
STATE_TO_OCPI: dict[int, str] = {
    0: "UNKNOWN", 1: "AVAILABLE", 2: "CHARGING", 3: "CHARGING", 4: "OUTOFORDER",
    5: "OUTOFORDER", 6: "OUTOFORDER", 7: "OUTOFORDER", 8: "OUTOFORDER", 9: "OUTOFORDER",
    10: "OUTOFORDER", 11: "OUTOFORDER", 14: "OUTOFORDER", 15: "OUTOFORDER", 16: "OUTOFORDER",
    17: "OUTOFORDER", 254: "INOPERATIVE", 255: "INOPERATIVE",
}  # fmt: skip

# The firmware's own `status` words (src/evse_state.h EvseState::toString()).
FIRMWARE_STATUSES = frozenset({"active", "disabled", "none", "unknown"})

CATALOGUE = Catalogue(
    driver="openevse",
    make="OpenEVSE",
    model="OpenEVSE WiFi (ESP32 firmware 5.x)",
    description="Level 2 EV charger publishing its status over MQTT",
    transport="mqtt",
    datasheet="openevse_esp32_firmware docs/mqtt.md",
    fields=(
        Field("current", "A", M, "Charging current", minimum=0, maximum=100),
        Field("voltage", "V", M, "Supply voltage", minimum=0, maximum=300),
        Field("pilot_current", "A", M, "Current offered to the vehicle (J1772 pilot)",
              minimum=0, maximum=80),
        Field("power", "W", M, "Charging power", minimum=0, maximum=25000),
        Field("frequency", "Hz", M, "Supply frequency (D9 controllers only)",
              minimum=40, maximum=70),
        Field("temperature", "Cel", M, "EVSE internal temperature", minimum=-40, maximum=120),
        Field("evse_state", None, C, "OpenEVSE state name (J1772 state or fault)",
              vocabulary=frozenset(STATE_NAMES.values())),
        Field("status", None, C, "EVSE status in the OCPI 2.2.1 vocabulary",
              vocabulary=frozenset(STATE_TO_OCPI.values())),
        Field("vehicle_connected", None, T, "A vehicle is plugged in"),
        Field("firmware_status", None, C, "Firmware activity word (active/disabled/none/unknown)",
              vocabulary=FIRMWARE_STATUSES),
        Field("total_energy", "kW.h", M,
              "Lifetime energy register of the charger: its steps are the sessions' energy",
              role=Role.RUNNING_TOTAL, minimum=0, maximum=1e7),
        Field("session_energy", "kW.h", M, "Energy of the current session so far",
              role=Role.RUNNING_TOTAL, minimum=0, maximum=500),  # no car battery holds more
        Field("energy_increment", "kW.h", M, "Session energy since the previous report",
              role=Role.PERSON_EVENT, minimum=0, maximum=500),
        Field("elapsed", "s", M, "Duration of the current session", role=Role.PERSON_EVENT,
              minimum=0, maximum=30 * 86400),
        Field("rfid_uid", None, C, "RFID card UID the firmware publishes: never decoded or kept, "
              "declared so the raw stream is treated as personal at source", role=Role.IDENTIFIER),
        Field("session", None, C, "The charging session a reading belongs to, told apart in RAM "
              "from the firmware's session boundaries: never published", role=Role.IDENTIFIER),
        Field("rfid_auth", None, T, "A new RFID card was accepted (the UID is never kept)",
              role=Role.PERSON_EVENT),
        Field("total_energy_increment", "kW.h", M,
              "Increase of the lifetime energy register in the window",
              aggregation=Aggregation.INCREMENT, source="total_energy", minimum=0),
        Field("energy_delivered", "kW.h", M, "Energy delivered in the window",
              aggregation=Aggregation.SUM, source="energy_increment", minimum=0),
        Field("authorisations", "{count}", ObservationType.COUNT,
              "RFID authorisations in the window", aggregation=Aggregation.COUNT,
              source="rfid_auth"),
    ),
)  # fmt: skip

# Retained documents and command topics under `<base>/`: the charger's configuration, not status.
HOUSEKEEPING = frozenset({"config", "config_version", "claim", "override", "schedule", "limit"})
COMMANDS = frozenset({"restart"})

# Keys the firmware publishes that this profile deliberately does not collect, so that
# `unknown_key` keeps meaning "something new". Vehicle SoC/range are personal (OCPI treats SoC
# as privacy-sensitive), `rfid_input` is a card UID; the rest are diagnostics or duplicates.
# `wattsec`/`watthour` repeat session_energy/total_energy in other units ("deprecated, will be
# removed soon" in src/input.cpp); read twice, one register would step down whenever the two
# renderings differ in their last digits, which the increment would take for a reset.
IGNORED_KEYS = frozenset({
    "temp1", "temp2", "temp3", "temp4", "temp_max", "srssi", "freeram", "ipaddress",
    "ipv6address", "macaddress", "divertmode", "divert_active", "divert_update", "charge_rate",
    "available_current", "smoothed_available_current", "trigger_current", "total_day",
    "total_week", "total_month", "total_year", "total_switches", "manual_override", "mode",
    "flags", "time", "local_time", "offset", "uptime", "claims_version", "override_version",
    "schedule_version", "schedule_plan_version", "schedule_feature_skipped", "limit_version",
    "evse_connected", "rapi_connected", "wifi_client_connected", "eth_connected",
    "net_connected", "mqtt_connected", "mqtt_status", "mqtt_connected_since",
    "mqtt_broker_version", "mqtt_error", "mqtt_error_detail", "mqtt_close_code",
    "mqtt_close_reason", "ocpp_connected", "emoncms_connected", "emoncms_message",
    "packets_sent", "packets_success", "ota_update", "service_level", "max_current", "colour",
    "shaper", "shaper_live_pwr", "shaper_smoothed_live_pwr", "shaper_max_pwr", "shaper_cur",
    "shaper_updated", "min_charge_end", "solar", "grid_ie", "ohm_hour", "rfid_waiting",
    "rfid_input", "battery_level", "battery_range", "time_to_full_charge",
    "vehicle_charge_limit", "home_battery_soc", "home_battery_power", "vehicle_state_update",
    "tesla_vehicle_count", "tesla_vehicle_id", "tesla_vehicle_name", "tesla_error",
    "charge_energy_added", "charge_miles_added_rated", "charge_limit_soc", "charger_voltage",
    "wattsec", "watthour",
    # older firmware (4.x): no longer sent, still quiet if an old charger sends them
    "wh", "gfcicount", "nogndcount", "stuckcount", "vehicle_soc", "vehicle_range",
    "vehicle_eta",
})  # fmt: skip
_FALSEY_TEXT = frozenset({"", "false", "null", "0"})
_BASE_PATTERN = r"^[^/+#\s]{1,64}(/[^/+#\s]{1,64}){0,7}$"


def _number_error() -> DecodeError:
    return DecodeError("wrong_type", "status value is not a number")


class Options(PayloadOptions):
    base_topic: str | None = Opt(
        None,
        pattern=_BASE_PATTERN,
        description="The charger's MQTT base topic: its hostname (openevse-xxxx, four hex "
        "digits) unless changed on its MQTT page. The sensor subscribes to <base_topic>/+; "
        "without it, give mqtt.topic.",
    )
    ignore_keys: tuple[str, ...] = Opt(
        (), description="Further status keys to ignore quietly (counted as ignored, not errors)."
    )


class _Sessions:
    """Which charging session a reading belongs to, from the firmware's own boundaries (firmware
    5.x: `EvseMonitor` fires "session complete" when the vehicle-connected flag drops, src/
    evse_monitor.cpp lines 75-76 and 317; `EvseManager` then calls `EnergyMeter::clearSession()`,
    src/evse_man.cpp lines 368-375, which zeroes session energy and time and publishes them,
    src/energy_meter.cpp lines 209-216; both only grow while charging, lines 228-270).

    A session begins when the vehicle is heard connected with no session open (a connect, or
    the first word after start-up), or when session energy or time counts on with no session
    open (heard mid-way: after the gateway started, or with the connect lost), or restarts from
    a reset whose zero was lost. It ends when the vehicle leaves or a counter is reset to zero. A counter that drops to
    a value above zero begins a new session only if that counter was already seen in the open
    one, so one reset seen through both counters, or a connect heard before the reset it
    follows, gives one session, not two. A counter unchanged since its session ended (the
    unplug's report before the clear) and register steps after it ended (the clear's report
    carries the last step) still belong to it: energy only flows while a vehicle charges.
    Labels are RAM-only and never leave (the privacy stage pseudonymises them); a label is the
    charger's topic and a count, so two chargers never share one."""

    def __init__(self) -> None:
        self.current: str | None = None  # the open session's label
        self.latest: str | None = None  # the open or the most recent session's label
        self._seen: set[str] = set()  # counters read in the open session
        self._last: dict[str, float] = {}  # counter -> its previous value
        self._count = 0

    def _begin(self, box: str) -> None:
        self._count += 1
        self.current = self.latest = f"{box}#{self._count}"
        self._seen = set()

    def vehicle(self, box: str, connected: bool) -> None:
        if connected and self.current is None:
            self._begin(box)  # a new vehicle; or the first word after start-up, mid-session
        elif not connected:
            self.current = None
        # connected with a session open: the same vehicle (a session heard mid-way through its
        # counters, its connect lost, then the 30 s burst repeating the flag). A new vehicle
        # whose unplug was lost shows as its counters' reset, which `counter` sees.

    def counter(self, box: str, name: str, value: float) -> str | None:
        """Note a session counter (energy or time); the label of the session it belongs to."""
        prev = self._last.get(name)
        self._last[name] = value
        if prev is not None and value < prev:  # the firmware's clearSession(), or a missed one
            if value == 0:
                self.current = None
                return None
            if self.current is None or name in self._seen:
                self._begin(box)
        elif self.current is None and value > 0:
            if value == prev:
                return self.latest  # the session that just ended, its counter not cleared yet
            self._begin(box)  # counting on: a session heard mid-way (a start-up, a lost connect)
        if self.current is not None:
            self._seen.add(name)
        return self.current


class Decoder(PayloadDecoder):
    """Decodes one OpenEVSE status message. Holds small pieces of RAM-only state: the last
    session energy (to derive `energy_increment`), the session boundaries (`_Sessions`) and a
    digest of the last RFID UID (so that the UID the firmware repeats every 30 s counts as one
    authorisation)."""

    def __init__(self, options: Options) -> None:
        super().__init__(options)
        self.prefix = f"{options.base_topic}/" if options.base_topic is not None else None
        self.ignored = IGNORED_KEYS | frozenset(options.ignore_keys)
        self._last_session_kwh: float | None = None
        self._last_tag_digest: bytes | None = None
        self._sessions = _Sessions()
        self._box = ""  # the charger's topic, for session labels
        self._handlers: dict[str, Callable[[str], list[Event]]] = {
            "amp": self._scaled("current", 0.001),
            "voltage": self._scaled("voltage", 1.0),
            "pilot": self._scaled("pilot_current", 1.0),
            "power": self._scaled("power", 1.0),
            "frequency": self._scaled("frequency", 0.01),
            "temp": self._temperature,
            "total_energy": self._total_energy,
            "session_energy": self._session_energy,
            "elapsed": self._elapsed,
            "session_elapsed": self._elapsed,
            "state": self._state,
            "vehicle": self._vehicle,
            "status": self._firmware_status,
            "rfid_auth": self._rfid,
        }

    def _decode(self, topic: str, payload: bytes) -> list[Event]:
        if topic.startswith("openevse/announce/"):
            return [Ignored("announce")]  # name, IP address, base topic: metadata
        # the status key: everything after the base topic (the last level under a custom filter)
        if self.prefix is not None and topic.startswith(self.prefix):
            key = topic[len(self.prefix) :]
        else:
            key = topic.rsplit("/", 1)[-1]
        if "/" in key or key in COMMANDS:
            return [Ignored("command")]  # */set, schedule/clear, rapi/in/*, rapi/out, restart
        self._box = topic[: len(topic) - len(key) - 1]
        if key in HOUSEKEEPING:
            return [Ignored("housekeeping")]
        if key in self.ignored:
            return [Ignored("not_collected")]
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

    def _total_energy(self, text: str) -> list[Event]:
        """The lifetime register: never negative, or the per-window increment would jump. Its
        steps are credited to the open or the most recent session."""
        kwh = as_float(text)
        if kwh is None:
            return [_number_error()]
        if kwh < 0:
            return [DecodeError("bad_value", "an energy register is negative")]
        return [Decoded(self._of_session({"total_energy": round(kwh, 6)}, self._sessions.latest))]

    def _of_session(self, values: dict[str, Value], label: str | None) -> dict[str, Value]:
        if label is not None:
            values["session"] = label
        return values

    def _elapsed(self, text: str) -> list[Event]:
        seconds = as_float(text)
        if seconds is None:
            return [_number_error()]
        label = self._sessions.counter(self._box, "elapsed", seconds)
        return [Decoded(self._of_session({"elapsed": round(seconds, 6)}, label))]

    def _temperature(self, text: str) -> list[Event]:
        if text == "false":
            return [Ignored("no_sensor")]  # the firmware's way of saying "no valid sensor"
        return self._scaled("temperature", 0.1)(text)

    def _session_energy(self, text: str) -> list[Event]:
        wh = as_float(text)
        if wh is None:
            return [_number_error()]
        if wh < 0:
            return [DecodeError("bad_value", "an energy register is negative")]
        kwh = round(wh / 1000, 6)
        values: dict[str, Value] = {"session_energy": kwh}
        last = self._last_session_kwh
        if last is not None:
            # a drop means a new session began: everything in it is new energy
            values["energy_increment"] = round(kwh - last, 6) if kwh >= last else kwh
        self._last_session_kwh = kwh
        return [Decoded(self._of_session(values, self._sessions.counter(self._box, "energy", kwh)))]

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
        self._sessions.vehicle(self._box, code == 1)
        return [Decoded({"vehicle_connected": code == 1})]

    def _firmware_status(self, text: str) -> list[Event]:
        if text not in FIRMWARE_STATUSES:
            return [DecodeError("bad_value", "firmware activity flag is not a known word")]
        return [Decoded({"firmware_status": text})]

    def _rfid(self, text: str) -> list[Event]:
        if text.lower() in _FALSEY_TEXT or text == "\0":
            self._last_tag_digest = None
            return [Ignored("no_card")]
        digest = hashlib.blake2b(text.encode(), digest_size=16).digest()
        if digest == self._last_tag_digest:
            return [Ignored("same_card")]  # repeated with every status report
        self._last_tag_digest = digest
        return [Decoded({"rfid_auth": True})]


def catalogue_for(options: Options) -> Catalogue:
    return CATALOGUE


def topic_for(options: Options) -> str | None:
    return f"{options.base_topic}/+" if options.base_topic is not None else None


def _base(topic: str) -> str:
    """The charger's base topic from a sensor's filter (`openevse-55ad/+` -> `openevse-55ad`)."""
    for suffix in ("/#", "/+"):
        topic = topic.removesuffix(suffix)
    return "/".join("openevse-5a1e" if level in ("+", "#") else level for level in topic.split("/"))


def _number(value: float) -> str:
    """As ArduinoJson 6 renders a double: no trailing zeros, exponent form from 1e7."""
    if value >= 1e7:
        mantissa, exponent = f"{value:.8e}".split("e")
        return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"
    return f"{round(value, 6):f}".rstrip("0").rstrip(".") or "0"


def simulate(rng: random.Random, now: float, base_topic: str) -> list[tuple[str, bytes]]:
    """One 30-second status burst of a charger, as firmware 5.1 publishes it (src/input.cpp
    create_rapi_json, src/energy_meter.cpp): a new session every four hours, a card per session."""
    base = _base(base_topic)
    elapsed = int(now % 14400)
    charging = elapsed < 10800  # three hours charging, then one hour idle
    amps = rng.randint(6, 32) if charging else 0
    voltage = rng.randint(228, 248)
    session_wh = round(min(elapsed, 10800) / 3600 * 7000, 1)
    total_kwh = round(1200 + now / 3600 * 0.3, 4)
    values = {
        "evse_connected": "1",
        "amp": str(amps * 1000),
        "voltage": str(voltage),
        "power": str(amps * voltage),
        "pilot": "32",
        "max_current": "32",
        "temp": str(rng.randint(180, 380)),
        "temp_max": "false",
        "state": "3" if charging else "254",
        "status": "active" if charging else "disabled",
        "flags": "512",
        "vehicle": "1" if charging else "0",
        "srssi": str(rng.randint(-80, -40)),
        "session_elapsed": str(elapsed),
        "session_energy": _number(session_wh),
        "total_energy": _number(total_kwh),
        "total_day": _number(round(session_wh / 1000, 3)),
        "elapsed": str(elapsed),
        "wattsec": _number(session_wh * 3600),
        "watthour": _number(total_kwh * 1000),
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
    default_topic=None,  # the base topic is each charger's own hostname: `options.base_topic`
    topic_for=topic_for,
    simulate=simulate,
    doc="docs/drivers/openevse.md",
    example_options={"base_topic": "openevse-55ad"},
)
