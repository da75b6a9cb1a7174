#!/usr/bin/env python3
"""Write tests/data/firmware/openevse.json: what OpenEVSE's ESP32 WiFi firmware publishes.

Hand-built from reading the firmware's source (cited per vector); not run by the tests. Every
value is written as the firmware's ArduinoJson 6.20.1 `as<String>()` renders it: integers and
doubles without quotes or trailing zeros, doubles >= 1e7 in exponent form, booleans as
true/false, strings bare (platformio.ini pins bblanchon/ArduinoJson@6.20.1; its
Configuration.hpp sets ARDUINOJSON_POSITIVE_EXPONENTIATION_THRESHOLD 1e7).
"""

from __future__ import annotations

import json
from pathlib import Path

COMMIT = "1797b7a3a1dd8b34f4ce2a4261a23c75e310457d"
BASE = "openevse-55ad"  # esp_hostname_default "openevse-"+ESPAL.getShortId() (docs/mqtt.md example)
OUT = Path(__file__).resolve().parents[2] / "tests" / "data" / "firmware" / "openevse.json"

R, IGN, E = "reading", "ignored", "error"


def v(key, payload, expect, cite, values=None, retained=False, topic=None, note=None):
    row = {
        "topic": topic or f"{BASE}/{key}",
        "payload": payload,
        "retained": retained,
        "expect": expect,
        "cite": cite,
    }
    if values is not None:
        row["values"] = values
    if note:
        row["note"] = note
    return row


BURST = "src/input.cpp create_rapi_json() lines 99-165, published by event_send -> Mqtt::publishData (src/main.cpp 340-350, src/mqtt.cpp 605-621)"
STATE_EVENT = "src/input.cpp InputTask::loop() lines 67-85"

vectors = [
    # --- the 30 s status burst, a charger mid-session
    v("evse_connected", "1", IGN, BURST),
    v(
        "rfid_auth",
        "",
        IGN,
        BURST + "; src/rfid.cpp 150-155: String('\\0') when no card",
        note="empty: no authenticated card",
    ),
    v(
        "rfid_auth",
        "04A1B2C3D4E5F6",
        R,
        BURST,
        values={"rfid_auth": True},
        note="a card UID: an identifier, never kept",
    ),
    v(
        "amp",
        "16000",
        R,
        BURST + "; src/emonesp.h line 153 AMPS_SCALE_FACTOR 1000 (mA)",
        values={"current": 16.0},
    ),
    v("amp", "15482.5", R, BURST, values={"current": 15.4825}),
    v("voltage", "240", R, BURST, values={"voltage": 240.0}),
    v("voltage", "239.5", R, BURST, values={"voltage": 239.5}),
    v(
        "frequency",
        "5000",
        R,
        "src/input.cpp lines 107-112: 1/100 Hz, only on D9+ controllers",
        values={"frequency": 50.0},
    ),
    v("power", "3840", R, BURST + " (W; POWER_SCALE_FACTOR 1.0)", values={"power": 3840.0}),
    v("pilot", "32", R, BURST, values={"pilot_current": 32.0}),
    v("max_current", "32", IGN, BURST),
    v(
        "temp",
        "284",
        R,
        BURST + "; src/emonesp.h line 157 TEMP_SCALE_FACTOR 10",
        values={"temperature": 28.4},
    ),
    v("temp", "false", IGN, BURST + ": no valid sensor"),
    v("temp_max", "301", IGN, BURST),
    v("temp1", "false", IGN, BURST),
    v("temp2", "284", IGN, BURST),
    v("temp3", "false", IGN, BURST),
    v("state", "3", R, BURST, values={"evse_state": "charging", "status": "CHARGING"}),
    v(
        "status",
        "active",
        R,
        BURST + "; src/evse_state.h lines 29-35",
        values={"firmware_status": "active"},
    ),
    v("flags", "512", IGN, BURST),
    v("vehicle", "1", R, BURST, values={"vehicle_connected": True}),
    v("colour", "6", IGN, BURST),
    v("manual_override", "0", IGN, BURST),
    v("freeram", "143268", IGN, BURST),
    v("divertmode", "1", IGN, BURST),
    v("srssi", "-61", IGN, BURST + ": the charger's own Wi-Fi signal"),
    v(
        "time",
        "2026-05-01T12:00:00Z",
        IGN,
        "src/time_man.cpp TimeManager::serialise() lines 412-433",
    ),
    v("local_time", "2026-05-01T13:00:00+0100", IGN, "src/time_man.cpp lines 412-433"),
    v("offset", "+0100", IGN, "src/time_man.cpp lines 412-433"),
    v("uptime", "3600", IGN, "src/time_man.cpp line 432"),
    v(
        "session_elapsed",
        "1800",
        R,
        "src/energy_meter.cpp createEnergyMeterJsonDoc() line 293 (s)",
        values={"elapsed": 1800.0},
    ),
    v(
        "session_energy",
        "1925.5",
        R,
        "src/energy_meter.cpp line 294 (Wh)",
        values={"session_energy": 1.9255},
    ),
    v(
        "total_energy",
        "1234.567",
        R,
        "src/energy_meter.cpp line 295 (kWh)",
        values={"total_energy": 1234.567},
    ),
    v("total_day", "12.3", IGN, "src/energy_meter.cpp line 296"),
    v("total_week", "80.1", IGN, "src/energy_meter.cpp line 297"),
    v("total_month", "301.4", IGN, "src/energy_meter.cpp line 298"),
    v("total_year", "1234.567", IGN, "src/energy_meter.cpp line 299"),
    v("total_switches", "42", IGN, "src/energy_meter.cpp line 300"),
    v("elapsed", "1800", R, BURST + " ('Deprecated properties')", values={"elapsed": 1800.0}),
    # `wattsec` and `watthour` are the same registers as session_energy and total_energy in
    # other units, marked "Deprecated properties, will be removed soon". Read twice, one
    # register would feed the per-window increment from two renderings: above 1e7 the exponent
    # form keeps 8 significant digits, so total_energy 12345.6789 followed by watthour
    # 1.2345678e7 reads as a step down, i.e. a register reset. One source each: ignored.
    v(
        "wattsec",
        "6931800",
        IGN,
        BURST + "; src/emonesp.h line 165 SESSION_ENERGY_SCALE_FACTOR 3600 (Ws)",
        note="deprecated duplicate of session_energy (Ws)",
    ),
    v(
        "wattsec",
        "1.08e8",
        IGN,
        BURST + ": a 30 kWh session crosses ArduinoJson's 1e7 exponent threshold",
        note="deprecated duplicate of session_energy (Ws)",
    ),
    v(
        "watthour",
        "1234567",
        IGN,
        BURST + "; src/emonesp.h line 161 TOTAL_ENERGY_SCALE_FACTOR 1000 (Wh)",
        note="deprecated duplicate of total_energy (Wh)",
    ),
    v(
        "watthour",
        "1.2345678e7",
        IGN,
        BURST + ": >= 1e7 Wh renders in exponent form, 8 significant digits",
        note="deprecated duplicate of total_energy (Wh)",
    ),
    v(
        "total_energy",
        "12345.6789",
        R,
        "src/energy_meter.cpp line 295 (kWh): the register that watthour 1.2345678e7 renders",
        values={"total_energy": 12345.6789},
    ),
    # --- the state-change event
    v("state", "1", R, STATE_EVENT, values={"evse_state": "not_connected", "status": "AVAILABLE"}),
    v("vehicle", "0", R, STATE_EVENT, values={"vehicle_connected": False}),
    v("elapsed", "0", R, STATE_EVENT, values={"elapsed": 0.0}),
    # --- every status word the firmware has
    v("status", "disabled", R, "src/evse_state.h line 32", values={"firmware_status": "disabled"}),
    v("status", "none", R, "src/evse_state.h line 33", values={"firmware_status": "none"}),
    v(
        "status",
        "unknown",
        R,
        "src/evse_state.h line 34 (fallback of toString())",
        values={"firmware_status": "unknown"},
    ),
    v("status", "sleeping", E, "not a word src/evse_state.h can produce", note="bad_value"),
]

STATES = {
    0: ("starting", "UNKNOWN"), 1: ("not_connected", "AVAILABLE"), 2: ("connected", "CHARGING"),
    3: ("charging", "CHARGING"), 4: ("vent_required", "OUTOFORDER"),
    5: ("diode_check_failed", "OUTOFORDER"), 6: ("gfci_fault", "OUTOFORDER"),
    7: ("no_ground", "OUTOFORDER"), 8: ("stuck_relay", "OUTOFORDER"),
    9: ("gfci_self_test_failed", "OUTOFORDER"), 10: ("over_temperature", "OUTOFORDER"),
    11: ("over_current", "OUTOFORDER"), 14: ("relay_closure_fault", "OUTOFORDER"),
    15: ("pp_shorted", "OUTOFORDER"), 16: ("pp_missing", "OUTOFORDER"),
    17: ("eeprom_failure", "OUTOFORDER"), 254: ("sleeping", "INOPERATIVE"),
    255: ("disabled", "INOPERATIVE"),
}  # fmt: skip
for code, (name, ocpi) in STATES.items():
    vectors.append(
        v(
            "state",
            str(code),
            R,
            "OPENEVSE_STATE_* in OpenEVSE/OpenEVSE_Lib src/openevse.h @2c7c3f3545934a42da23c9b7da60e9e479e3b96a lines 9-29",
            values={"evse_state": name, "status": ocpi},
        )
    )
vectors.append(
    v(
        "state",
        "12",
        R,
        "0x0C is reserved in the controller (OpenEVSE_Lib src/openevse.h line 23)",
        values={"status": "UNKNOWN"},
        note="flag unmapped_state",
    )
)

# --- retained housekeeping topics: JSON documents, always retained (src/mqtt.cpp 624-725)
HK = "src/mqtt.cpp Mqtt::publish*() lines 624-725: published retained on connect and on change"
vectors += [
    v(
        "config",
        json.dumps(
            {
                "firmware": "5.1.5",
                "protocol": "-",
                "espflash": 16777216,
                "hostname": BASE,
                "mqtt_enabled": True,
                "mqtt_topic": BASE,
                "mqtt_pass": "_DUMMY_PASSWORD",
            }
        ),
        IGN,
        HK + " (publishConfig, config_serialize with secrets hidden)",
        retained=True,
    ),
    v("config_version", "1", IGN, "src/mqtt.cpp lines 637-641", retained=True),
    v("claim", '{"state":"null"}', IGN, HK + " (publishClaim, no claim)", retained=True),
    v(
        "claim",
        '{"priority":500,"state":"active","charge_current":16,"auto_release":true}',
        IGN,
        HK + "; src/evse_man.cpp EvseProperties::serialize() 72-87",
        retained=True,
    ),
    v("override", '{"state":"null"}', IGN, HK + " (publishOverride)", retained=True),
    v("override", '{"state":"disabled","auto_release":false}', IGN, HK, retained=True),
    v(
        "schedule",
        "[]",
        IGN,
        HK + "; src/scheduler.cpp Scheduler::serialize() 834-851",
        retained=True,
    ),
    v(
        "schedule",
        '[{"id":1,"state":"active","time":"22:00:00","days":["monday","tuesday"]}]',
        IGN,
        "src/scheduler.cpp 890-913",
        retained=True,
    ),
    v(
        "limit",
        '{"type":"none","value":0,"auto_release":true}',
        IGN,
        HK + "; src/limit.cpp 123-130, init() 72-77",
        retained=True,
    ),
    v(
        "limit",
        '{"type":"energy","value":10000,"auto_release":true}',
        IGN,
        "src/limit.cpp 41-49, 123-130",
        retained=True,
    ),
    v("rapi/out", "$OK 3^20", IGN, "src/mqtt.cpp lines 547-563: reply to a RAPI command"),
    # announce and its last will (device metadata, not readings)
    v(
        None,
        json.dumps(
            {
                "state": "connected",
                "id": "c44f330dxxad",
                "name": BASE,
                "mqtt": BASE,
                "http": "http://192.168.1.43/",
            },
            separators=(",", ":"),
        ),
        IGN,
        "src/mqtt.cpp lines 247-256; src/app_config.cpp line 273 (openevse/announce/<shortid>)",
        retained=True,
        topic="openevse/announce/55ad",
    ),
    v(
        None,
        json.dumps(
            {"state": "disconnected", "id": "c44f330dxxad", "name": BASE}, separators=(",", ":")
        ),
        IGN,
        "src/mqtt.cpp lines 195-206 (last will)",
        retained=True,
        topic="openevse/announce/55ad",
    ),
]
# --- command topics the firmware subscribes to (seen when subscribing <base>/#)
for sub, payload in (
    ("override/set", "toggle"),
    ("claim/set", "release"),
    ("schedule/set", "[]"),
    ("schedule/clear", "1"),
    ("limit/set", "clear"),
    ("config/set", "{}"),
    ("restart", '{"device":"gateway"}'),
    ("divertmode/set", "1"),
    ("shaper/set", "0"),
    ("rapi/in/$SC", "13"),
):
    vectors.append(v(sub, payload, IGN, "src/mqtt.cpp Mqtt::subscribeTopics() lines 302-349"))
# --- every other key event_send() can publish (each is <base>/<key>)
OTHER = {
    "src/mqtt.cpp lines 259-264, 292-299 (MQTT state)": [
        "mqtt_connected",
        "mqtt_status",
        "mqtt_connected_since",
        "mqtt_broker_version",
        "mqtt_close_code",
        "mqtt_close_reason",
        "mqtt_error",
        "mqtt_error_detail",
    ],
    "src/mqtt.cpp lines 448-479 (vehicle and home battery feeds)": [
        "battery_level",
        "battery_range",
        "time_to_full_charge",
        "vehicle_charge_limit",
        "home_battery_soc",
        "home_battery_power",
    ],
    "src/evse_man.cpp lines 220-227, 445-481": ["claims_version", "override_version"],
    "src/scheduler.cpp lines 297, 438, 1076-1078": [
        "schedule_version",
        "schedule_plan_version",
        "schedule_feature_skipped",
    ],
    "src/limit.cpp lines 305-323": ["limit", "limit_version"],
    "src/app_config.cpp line 376": ["config_version"],
    "src/current_shaper.cpp lines 60-176": [
        "shaper",
        "shaper_live_pwr",
        "shaper_smoothed_live_pwr",
        "shaper_max_pwr",
        "shaper_cur",
        "shaper_updated",
    ],
    "src/divert.cpp lines 140-157, 276-287": [
        "divert_active",
        "charge_rate",
        "trigger_current",
        "available_current",
        "smoothed_available_current",
        "min_charge_end",
    ],
    "src/emoncms.cpp lines 38-42": ["emoncms_connected", "emoncms_message"],
    "src/net_manager.cpp lines 261-267, 489-496": [
        "wifi_client_connected",
        "eth_connected",
        "net_connected",
        "ipaddress",
        "ipv6address",
        "macaddress",
    ],
    "src/rfid.cpp lines 45-50, 128-131, 181-183": ["rfid_waiting"],
    "src/tesla_client.cpp lines 320-327, 447-460": [
        "tesla_vehicle_count",
        "tesla_vehicle_id",
        "tesla_vehicle_name",
        "tesla_error",
        "charge_energy_added",
        "charge_miles_added_rated",
        "charge_limit_soc",
        "charger_voltage",
    ],
    "src/web_server.cpp lines 877-916 (POST /status echoed)": [
        "vehicle_state_update",
        "solar",
        "grid_ie",
    ],
}
BOOLEAN_KEYS = {"limit", "divert_active", "tesla_error"}  # published as true/false
for cite, keys in OTHER.items():
    for key in keys:
        note = None
        if key == "limit":
            note = "same topic as the retained JSON limit document: both must be ignored"
        vectors.append(v(key, "false" if key in BOOLEAN_KEYS else "0", IGN, cite, note=note))
vectors.append(
    v(
        "rfid_input",
        "04A1B2C3D4E5F6",
        IGN,
        "src/rfid.cpp lines 45-50: a scanned UID while adding a card",
        note="personal: an RFID UID; ignored and never logged",
    )
)
# --- malformed variants: errors, never exceptions
vectors += [
    v("amp", "abc", E, "malformed", note="wrong_type"),
    v("amp", "", E, "malformed", note="wrong_type"),
    v("voltage", "nan", E, "malformed", note="wrong_type"),
    v("state", "3.5", E, "malformed", note="wrong_type"),
    v(
        "state",
        "-1",
        R,
        "OPENEVSE_STATE_INVALID -1 (OpenEVSE_Lib src/openevse.h line 7) is never published",
        values={"status": "UNKNOWN"},
        note="flag unmapped_state",
    ),
    v("vehicle", "2", E, "malformed", note="wrong_type"),
    v("total_energy", "1e400", E, "malformed: not finite", note="wrong_type"),
    v("total_energy", "-5", E, "malformed: a lifetime register is never negative", note="bad_value"),
    v("amp", "9" * 80, E, "malformed: longer than any status value", note="too_large"),
    v("status", "\udcff", E, "malformed: not UTF-8", note="not_utf8"),
    v("no_such_key", "1", E, "a key no firmware source publishes", note="unknown_key"),
]

# --- sessions: what the firmware publishes around each plug-in, in order. The firmware names no
# session; the profile tells sessions apart from these boundaries (its `session` identifier).
# Only the keys the profile reads for that are listed (state, vehicle, elapsed, session_*,
# total_energy); the other keys of each document come between them and are ignored.
# `session`: the plug-in whose quantity the reading carries (a session counter above zero, or a
# step of the lifetime register), or None where it carries none (counters zeroed by
# clearSession); absent where it carries nothing that counts either way, or where a loss mixed
# two plug-ins into one step. `lost`: published by the firmware but not heard (the
# personal-data broker is QoS 0; a network drop loses what was sent meanwhile).
STATE_EV = "src/input.cpp InputTask::loop() lines 67-85: the state-change event (state, vehicle, elapsed, in that order)"
METER_EV = ("src/energy_meter.cpp EnergyMeter::update() lines 228-270: while charging, session time "
            "and energy grow and createEnergyMeterJsonDoc() (lines 291-301: session_elapsed s, "
            "session_energy Wh, total_energy kWh) is published every EVENT_INTERVAL (src/energy_meter.h "
            "line 11: 5 s)")
BURST_EV = BURST + "; src/input.cpp lines 49-65 (the 30 s burst)"
CLEAR = ("the vehicle-connected flag drops: EvseMonitor's session-complete event (src/evse_monitor.cpp "
         "lines 75-76, 317) -> EvseManager (src/evse_man.cpp lines 368-375) -> "
         "EnergyMeter::clearSession() (src/energy_meter.cpp lines 209-216): session time and energy "
         "zeroed and published with the register; the state-change event may come before or after it")


def sv(key, payload, cite, session="-", lost=False):
    row = {"topic": f"{BASE}/{key}", "payload": payload, "cite": cite}
    if session != "-":
        row["session"] = session
    if lost:
        row["lost"] = True
    return row


def state_event(state, vehicle, elapsed, session="-", lost=False):
    return [sv("state", str(state), STATE_EV, lost=lost), sv("vehicle", str(vehicle), STATE_EV, lost=lost),
            sv("elapsed", str(elapsed), STATE_EV, session if elapsed else "-", lost)]


def meter(elapsed, wh, kwh, session, step, cite=METER_EV, lost=False):
    """`session` for the counters (None once zeroed), `step` for the register's step."""
    return [sv("session_elapsed", str(elapsed), cite, session if elapsed else None, lost),
            sv("session_energy", wh, cite, session if wh != "0" else None, lost),
            sv("total_energy", kwh, cite, step, lost)]


def burst(vehicle, elapsed, wh, kwh, session, step):
    return [sv("vehicle", str(vehicle), BURST_EV),
            *meter(elapsed, wh, kwh, session, step, BURST_EV),
            sv("elapsed", str(elapsed), BURST_EV, session if elapsed else "-")]


def clear(kwh, step, lost=False):
    return meter(0, "0", kwh, None, step, CLEAR, lost)


sessions = [
    # idle, then plug-in "1"; the unplug's state event comes before the clear
    *burst(0, 0, "0", "1234.5", None, "-"),
    *state_event(2, 1, 0), *state_event(3, 1, 0),
    *meter(5, "10", "1234.51", "1", "1"), *meter(10, "20", "1234.52", "1", "1"),
    *burst(1, 30, "60", "1234.56", "1", "1"),
    *state_event(1, 0, 30, session="1"),  # unplugged: its time not cleared yet
    *clear("1234.57", "1"),  # the register's last step is still plug-in 1's energy
    *burst(0, 0, "0", "1234.57", None, "-"),
    # plug-in "2"; the clear comes before the unplug's state event
    *state_event(2, 1, 0), *state_event(3, 1, 0),
    *meter(5, "10", "1234.58", "2", "2"), *meter(10, "20.5", "1234.59", "2", "2"),
    *clear("1234.6", "2"), *state_event(1, 0, 0),
    # plug-in "3"; its unplug and clear are lost, then plug-in "4" begins: the register step
    # heard next holds the end of 3 and the start of 4
    *state_event(2, 1, 0), *state_event(3, 1, 0),
    *meter(5, "10", "1234.61", "3", "3"), *burst(1, 30, "60", "1234.66", "3", "3"),
    *state_event(1, 0, 30, lost=True), *clear("1234.67", "-", lost=True),
    *state_event(2, 1, 0), *state_event(3, 1, 0),
    *meter(5, "10", "1234.68", "4", "-"), *meter(10, "20", "1234.69", "4", "4"),
    *clear("1234.7", "4"), *state_event(1, 0, 0),
    # a network drop while plug-in "5" begins: its first reports are lost, it is heard mid-session
    *state_event(2, 1, 0, lost=True), *state_event(3, 1, 0, lost=True),
    *meter(600, "1200", "1236.0", "5", "5", lost=True),
    *meter(605, "1210", "1236.01", "5", "5"),  # the step heard holds all of 5's energy so far
    *burst(1, 630, "1260", "1236.06", "5", "5"),
    *clear("1236.07", "5"), *state_event(1, 0, 0),
]

doc = {
    "source": {
        "repository": "OpenEVSE/openevse_esp32_firmware (formerly OpenEVSE/ESP32_WiFi_V4.x)",
        "commit": COMMIT,
        "also_checked": "OpenEVSE/ESP32_WiFi_V4.x@18506b7737176bdb97f9c253f2b41dc44a4fd58b (v5.1.2-53): same keys, scales, status words and housekeeping topics; it lacks frequency, mqtt_status/mqtt_error*, vehicle_charge_limit and home_battery_*",
        "tags_between": "v5.1.3, v5.1.4, v5.1.5 (464986d, 2025-10-14), vRePartition4MB",
        "state_codes": "OpenEVSE/OpenEVSE_Lib src/openevse.h @2c7c3f3545934a42da23c9b7da60e9e479e3b96a (the firmware pins OpenEVSE_Lib 0.0.19, platformio.ini line 41)",
        "base_topic": "mqtt_topic defaults to esp_hostname (src/app_config.cpp line 259), whose default is 'openevse-' + ESPAL.getShortId() (line 181): one topic level, e.g. openevse-55ad; docs/mqtt.md says so too",
        "announce": "openevse/announce/<shortid>, retained, with the last will on the same topic (src/app_config.cpp line 273; src/mqtt.cpp 195-256)",
        "retain": "status keys are retained only with the mqtt_retained flag (off by default: CONFIG_DEFAULT_FLAGS, src/app_config.cpp 193-198); config, claim, override, schedule, limit and config_version are always retained",
        "mqtt_enabled": "off until configured (CONFIG_SERVICE_MQTT is not in CONFIG_DEFAULT_FLAGS)",
        "generator": "scripts/firmware_vectors/make_openevse_vectors.py",
        "payload_encoding": "payload strings become bytes with UTF-8 and errors='surrogateescape' (so '\\udcff' is the byte 0xff)",
        "expect": "reading: decodes to `values` (profile field names; `rfid_auth` marks an identifier that must never be kept); ignored: a valid topic the profile does not use, counted apart from errors; error: a DecodeError whose reason is `note`",
    },
    "default_base_topic": BASE,
    "vectors": vectors,
    "sessions": {
        "what": "five plug-ins on one charger as the firmware publishes them, in order: the "
        "session boundaries the profile derives its RAM-only `session` identifier from",
        "session": "the plug-in whose quantity the reading carries (a session counter above zero, "
        "or a step of total_energy); null: none (counters zeroed by clearSession); absent: "
        "nothing that counts either way",
        "lost": "published by the firmware but not heard by the gateway (QoS 0 on the personal-data broker, a network drop)",
        "messages": sessions,
    },
}
OUT.parent.mkdir(parents=True, exist_ok=True)
OUT.write_text(json.dumps(doc, indent=1, ensure_ascii=True) + "\n")
print(f"wrote {OUT}: {len(vectors)} vectors")
