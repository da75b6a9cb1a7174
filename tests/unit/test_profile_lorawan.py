"""The `chirpstack` and `thethingsstack` profiles: ChirpStack uplinks built with ChirpStack's own
message classes (`chirpstack-api`), The Things Stack messages from its documentation, payloads
from the Paxcounter firmware's own encoder (tests/data/firmware/paxcounter.json)."""

from __future__ import annotations

import json
import random
import re

import pytest
from paho.mqtt.client import topic_matches_sub
from pydantic import ValidationError

from firmware_bridge.base import Aggregation, Decoded, DecodeError, Ignored, Role
from firmware_bridge.drivers import MESSAGE_DRIVERS, chirpstack, thethingsstack
from tests.unit.firmware_data import load
from tests.unit.test_lorawan import (
    CS_DOCS,
    EUI,
    GATEWAYS,
    RADIO_MARKERS,
    TTS,
    TTS_TOPIC,
    chirpstack_event,
    tts_message,
    tts_uplink_example,
)
from tests.unit.test_paxcounter_payload import expected

PAX = load("firmware", "paxcounter.json")["formats"]
AQ = {"fields": [{"path": "pm2_5", "property": "pm2_5", "unit": "ug/m3"},
                 {"path": "pm10", "property": "pm10", "unit": "ug/m3"},
                 {"path": "temperature", "property": "temperature", "unit": "Cel",
                  "optional": True}]}  # fmt: skip
TTS_EUI = "0004A30B001C0530"  # the documentation's device


def cs(**options: object) -> chirpstack.Decoder:
    return chirpstack.new_decoder(chirpstack.Options.model_validate({"dev_eui": EUI, **options}))


def tts(**options: object) -> thethingsstack.Decoder:
    opts = {"dev_eui": TTS_EUI, "device_id": "dev1", **options}
    return thethingsstack.new_decoder(thethingsstack.Options.model_validate(opts))


PACKED = {"ports": {1: {"codec": "paxcounter_packed"}}}


@pytest.mark.parametrize("case", [c for c in PAX["packed"] if c["case"].startswith("wifi=")],
                         ids=lambda c: c["case"])  # fmt: skip
@pytest.mark.parametrize("emit_defaults", [False, True], ids=["v4-older", "v4-emit-fields"])
def test_a_paxcounter_packed_uplink_through_chirpstack(case: dict, emit_defaults: bool) -> None:
    topic, body = chirpstack_event(payload=bytes.fromhex(case["hex"]), emit_defaults=emit_defaults)
    [event] = cs(**PACKED).decode(topic, body)
    assert isinstance(event, Decoded)
    assert dict(event.values) == expected(case["case"]).values()
    assert event.device_time is not None  # ChirpStack's `time`


@pytest.mark.parametrize("fmt", ["lpp_dynamic", "lpp_packed"])
def test_paxcounter_lpp_uplinks_and_their_status_frames(fmt: str) -> None:
    dec = cs(ports={PAX[fmt][0]["fport"]: {"codec": "paxcounter_lpp"}})
    for n, case in enumerate(PAX[fmt]):
        topic, body = chirpstack_event(payload=bytes.fromhex(case["hex"]), f_port=case["fport"],
                                       f_cnt=100 + n, dedup=f"id-{n}")  # fmt: skip
        [event] = dec.decode(topic, body)
        if case["case"].startswith("wifi="):
            assert event == Decoded(expected(case["case"]).values(), device_time=event.device_time)
        else:
            assert event == Ignored("not_a_count")


def test_a_decoded_air_quality_object_through_chirpstack() -> None:
    topic, body = chirpstack_event(obj={"pm2_5": 8.5, "pm10": 13.0, "temperature": 11.5,
                                        "battery": 3.6})  # fmt: skip
    [event] = cs(decoded=AQ).decode(topic, body)
    assert isinstance(event, Decoded)
    assert dict(event.values) == {"pm2_5": 8.5, "pm10": 13.0, "temperature": 11.5}


def test_the_chirpstack_documentation_events() -> None:
    """The documented `up` event (DevEUI 0101…) and every other event type."""
    dec = chirpstack.new_decoder(chirpstack.Options.model_validate(
        {"dev_eui": "0101010101010101", "ports": {1: {"codec": "cayenne_lpp", "options": {
            "items": {"digital_input_170": {"key": "x"}}}}}}))  # fmt: skip
    for event in CS_DOCS["events"]:
        [result] = dec.decode(event["topic"], event["body"].encode())
        if event["event"] == "up":
            assert isinstance(result, DecodeError) and result.reason == "truncated"  # `qg==`
        elif event["event"] == "integration":
            assert result == Ignored("not_an_uplink")  # and another device's
        else:
            assert result == Ignored("not_an_uplink"), event["event"]


def test_the_same_uplink_from_two_gateways_counts_once() -> None:
    """Two server instances (two deduplicationIds), each hearing the frame through its own
    gateway: the same device session and frame counter."""
    dec = cs(**PACKED)
    first = chirpstack_event(gateway=GATEWAYS[0], dedup="3ac7e3c4-4401-4b8d-9386-a5c902f9202d")
    again = chirpstack_event(gateway=GATEWAYS[1], dedup="b1b1b1b1-4401-4b8d-9386-a5c902f9202d")
    resent = chirpstack_event(gateway=GATEWAYS[0], dedup="3ac7e3c4-4401-4b8d-9386-a5c902f9202d")
    assert isinstance(dec.decode(*first)[0], Decoded)
    assert dec.decode(*again) == [Ignored("duplicate")]
    assert dec.decode(*resent) == [Ignored("duplicate")]
    assert isinstance(dec.decode(*chirpstack_event(f_cnt=8, dedup="next"))[0], Decoded)


def test_ports_without_a_codec_mac_commands_and_other_devices_are_ignored() -> None:
    dec = cs(**PACKED)
    assert dec.decode(*chirpstack_event(f_port=2, f_cnt=1, dedup="a")) == [Ignored("unmapped_port")]
    assert dec.decode(*chirpstack_event(f_port=0, f_cnt=2, dedup="b", payload=b"")) == [
        Ignored("mac_commands")]  # fmt: skip
    other = chirpstack.new_decoder(chirpstack.Options.model_validate(
        {"dev_eui": "0101010101010101", **PACKED}))  # fmt: skip
    assert other.decode(*chirpstack_event(f_cnt=3)) == [Ignored("other_device")]


def test_a_mapped_port_without_a_decoded_object_is_an_error() -> None:
    [event] = cs(decoded=AQ).decode(*chirpstack_event())
    assert isinstance(event, DecodeError) and event.reason == "no_decoded_payload"
    mapped_elsewhere = cs(decoded={**AQ, "ports": [2]})
    assert mapped_elsewhere.decode(*chirpstack_event(f_cnt=9)) == [Ignored("unmapped_port")]


def test_no_radio_metadata_or_device_identity_in_any_event() -> None:
    outputs = []
    for dec, (topic, body) in [(cs(**PACKED), chirpstack_event()),
                               (cs(decoded=AQ), chirpstack_event(obj={"pm2_5": 1, "pm10": 2})),
                               (cs(**PACKED), chirpstack_event(payload=b"\x01"))]:  # fmt: skip
        assert all(marker in body.decode() for marker in RADIO_MARKERS)
        outputs += dec.decode(topic, body)
    text = repr(outputs).lower()
    for marker in (*RADIO_MARKERS, EUI, "00189440", "pax-camden-high-st", "camden-lc-0423"):
        assert marker.lower() not in text


# ---- The Things Stack


def test_the_tts_documented_uplink_with_its_comma_restored() -> None:
    body = tts_uplink_example().replace('    }\n    "received_at"', '    },\n    "received_at"')
    mapping = {"fields": [{"path": "temperature", "property": "temperature", "unit": "Cel"},
                          {"path": "luminosity", "property": "luminosity", "unit": "lx"}]}  # fmt: skip
    # the example leaves f_port out (zero values are omitted): fPort 0, MAC commands only
    assert tts(decoded=mapping).decode(TTS_TOPIC, body.encode()) == [Ignored("mac_commands")]
    with_port = json.loads(body)
    with_port["uplink_message"]["f_port"] = 1
    [event] = tts(decoded=mapping).decode(TTS_TOPIC, json.dumps(with_port).encode())
    assert isinstance(event, Decoded)
    assert dict(event.values) == {"temperature": 1.0, "luminosity": 0.64}
    assert event.device_time is not None  # uplink_message.received_at


def test_the_tts_uplink_example_as_published_stays_an_error() -> None:
    [event] = tts(**PACKED).decode(TTS_TOPIC, tts_uplink_example().encode())
    assert isinstance(event, DecodeError) and event.reason == "not_json"


@pytest.mark.parametrize("example", TTS["cayenne_examples"], ids=lambda e: e["lines"])
def test_tts_cayenne_uplinks_decode_alike_from_bytes_and_from_decoded_payload(example) -> None:
    document = json.loads(re.sub(r",(\s*})", r"\1", example["body"]))  # a trailing comma as published
    frm = document["uplink_message"]["frm_payload"]
    decoded = document["uplink_message"]["decoded_payload"]
    items = {name: {"key": name} for name in decoded}
    from_bytes = tts(ports={8: {"codec": "cayenne_lpp", "options": {"items": items}}})
    [a] = from_bytes.decode(TTS_TOPIC, tts_message(frm_payload=frm, f_port=8))
    fields = [{"path": name, "property": name, "unit": "Cel" if "temp" in name else "hPa"}
              for name in decoded]  # fmt: skip
    [b] = tts(decoded={"fields": fields}).decode(
        TTS_TOPIC, tts_message(frm_payload=frm, f_port=8, decoded_payload=decoded))
    assert isinstance(a, Decoded) and isinstance(b, Decoded)
    assert set(a.values) == set(b.values) == set(decoded)
    for key, value in decoded.items():  # the formatter works in float32: 27.200000762939453
        assert a.values[key] == pytest.approx(value, abs=1e-6) == b.values[key]


def test_a_paxcounter_through_tts_and_its_duplicate() -> None:
    case = next(c for c in PAX["packed"] if c["case"] == "wifi=42,ble=17")
    dec = tts(**PACKED)
    body = tts_message(frm_payload=case["mqtt_payload"])
    [event] = dec.decode(TTS_TOPIC, body)
    assert isinstance(event, Decoded) and event.values["pax_devices"] == 59
    assert dec.decode(TTS_TOPIC, body) == [Ignored("duplicate")]


def test_tts_identity_device_id_default_and_a_mismatched_dev_eui() -> None:
    opts = thethingsstack.Options.model_validate({"dev_eui": TTS_EUI, **PACKED})
    assert thethingsstack.DRIVER.topic(opts) == "v3/+/devices/eui-0004a30b001c0530/up"
    someone_else = json.loads(tts_message())
    someone_else["end_device_ids"]["device_id"] = "dev2"
    assert tts(**PACKED).decode("v3/app1@tenant1/devices/dev2/up", json.dumps(someone_else).encode()) == [
        Ignored("other_device")]  # fmt: skip
    wrong = tts(dev_eui="0101010101010101", **PACKED)
    [event] = wrong.decode(TTS_TOPIC, tts_message(frm_payload="KgA="))
    assert isinstance(event, DecodeError) and event.reason == "identity_mismatch"
    assert "0101010101010101" not in event.detail and TTS_EUI not in event.detail


@pytest.mark.parametrize("message", ["Join-accept Messages", "Downlink Events Messages"])
def test_tts_non_uplink_messages_are_ignored(message: str) -> None:
    body = next(m for m in TTS["messages"] if m["heading"] == message)["body"]
    topic = TTS_TOPIC.replace("/up", "/join" if "Join" in message else "/down/queued")
    assert tts(**PACKED).decode(topic, body.encode()) == [Ignored("not_an_uplink")]


# ---- options, topics, catalogues


@pytest.mark.parametrize("driver", [chirpstack.DRIVER, thethingsstack.DRIVER], ids=lambda d: d.name)
def test_default_topics_are_the_servers_and_a_device_narrows_them(driver) -> None:
    options = driver.options.model_validate(driver.example_options)
    topic = driver.topic(options)
    assert topic_matches_sub(driver.default_topic, topic.replace("+", "x"))
    for t, _ in driver.simulate(random.Random(1), 1.7e9, topic):
        assert topic_matches_sub(topic, t) and topic_matches_sub(driver.default_topic, t)
    assert driver.default_topic in ("application/+/device/+/event/up", "v3/+/devices/+/up")


@pytest.mark.parametrize(
    "bad",
    [{"dev_eui": EUI},  # neither ports nor decoded
     {"dev_eui": "70b3d57ed0051a2", **PACKED},  # 15 digits
     {"dev_eui": EUI, "ports": {0: {"codec": "paxcounter_packed"}}},
     {"dev_eui": EUI, "ports": {1: {"codec": "no_such_codec"}}},
     {"dev_eui": EUI, "ports": {1: {"codec": "paxcounter_lpp", "options": {"layout": "x"}}}},
     {"dev_eui": EUI, **PACKED, "decoded": {**AQ, "ports": [1]}},  # a port with both
     {"dev_eui": EUI, **PACKED, "decoded": {"fields": [  # one key, two meanings
         {"path": "n", "property": "wifi_devices", "type": "count"}]}},
     {"dev_eui": EUI, **PACKED, "decoded": AQ}],  # pm2_5: the Paxcounter's SDS011 and the object
)  # fmt: skip
def test_chirpstack_options_refuse_what_could_not_work(bad: dict) -> None:
    with pytest.raises(ValidationError):
        chirpstack.Options.model_validate(bad)


def test_tts_options_need_a_name_for_the_device() -> None:
    with pytest.raises(ValidationError):
        thethingsstack.Options.model_validate(PACKED)
    with pytest.raises(ValidationError):
        thethingsstack.Options.model_validate({"device_id": "Bad_Id", **PACKED})
    assert thethingsstack.Options.model_validate({"device_id": "pax-7", **PACKED}).device == "pax-7"


def test_the_catalogue_is_the_codecs_and_the_mapping_with_their_roles() -> None:
    battery = {"fields": [{"path": "battery", "property": "battery_voltage", "unit": "V"}], "ports": [2]}
    options = chirpstack.Options.model_validate({"dev_eui": EUI, **PACKED, "decoded": battery})
    cat = chirpstack.catalogue_for(options)
    assert cat.field("wifi_devices").role is Role.PERSON_COUNT
    assert cat.field("wifi_devices_max").aggregation is Aggregation.MAX
    assert cat.field("pm2_5").role is Role.READING and cat.field("battery_voltage").unit == "V"
    assert not cat.personal_at_source  # counts identify nobody: the durable broker (docs/privacy.md)


def test_registered_in_the_mqtt_registry() -> None:
    assert MESSAGE_DRIVERS["chirpstack"] is chirpstack.DRIVER
    assert MESSAGE_DRIVERS["thethingsstack"] is thethingsstack.DRIVER
