"""LoRaWAN network-server envelopes: ChirpStack events built with ChirpStack's own message
classes and marshalled with protobuf's JSON mapping, as ChirpStack's JSON marshaler does; The
Things Stack and ChirpStack messages from their documentation (tests/data/lorawan/)."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import pytest
from chirpstack_api.common import common_pb2
from chirpstack_api.gw import gw_pb2
from chirpstack_api.integration import integration_pb2
from google.protobuf import json_format
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_bridge import lorawan
from firmware_bridge.base import DecodeError
from firmware_bridge.codecs import CODECS
from firmware_bridge.lorawan import Deduplicator, Uplink, parse_chirpstack, parse_tts
from tests.unit.firmware_data import load

PROPS = settings(max_examples=300, derandomize=True, database=None, deadline=None)
APP = "17c82e96-be03-4f38-aef3-f83d48582d97"
EUI = "70b3d57ed0051a2b"
GATEWAYS = ("0016c001f153a14c", "0016c001f153a14d")
RADIO_MARKERS = (GATEWAYS[0], "-118", "7.25", "51.5421", "-0.1426", "867100000")


def chirpstack_event(
    *,
    payload: bytes = b"\x2a\x00",
    f_port: int = 1,
    f_cnt: int = 7,
    dedup: str = "3ac7e3c4-4401-4b8d-9386-a5c902f9202d",
    gateway: str = GATEWAYS[0],
    obj: dict[str, object] | None = None,
    emit_defaults: bool = False,
) -> tuple[str, bytes]:
    event = integration_pb2.UplinkEvent(
        deduplication_id=dedup,
        device_info=integration_pb2.DeviceInfo(
            tenant_id="52f14cd4-c6f1-4fbd-8f87-4025e1d49242",
            tenant_name="Camden",
            application_id=APP,
            application_name="footfall",
            device_profile_name="Paxcounter",
            device_name="pax-camden-high-st",
            dev_eui=EUI,
            device_class_enabled=common_pb2.DeviceClass.CLASS_A,
            tags={"site": "camden-lc-0423"},
        ),
        dev_addr="00189440",
        dr=5,
        f_cnt=f_cnt,
        f_port=f_port,
        data=payload,
        rx_info=[
            gw_pb2.UplinkRxInfo(
                gateway_id=gateway,
                uplink_id=4217106255,
                rssi=-118,
                snr=7.25,
                location=common_pb2.Location(latitude=51.5421, longitude=-0.1426, altitude=30),
            )
        ],
        tx_info=gw_pb2.UplinkTxInfo(frequency=867100000),
    )
    event.time.FromDatetime(datetime(2026, 5, 1, 12, 0, 0, 123000, tzinfo=UTC))
    if obj is not None:
        event.object.update(obj)
    body = json_format.MessageToJson(event, always_print_fields_with_no_presence=emit_defaults)
    return f"application/{APP}/device/{EUI}/event/up", body.encode()


@pytest.mark.parametrize("emit_defaults", [False, True], ids=["defaults_left_out", "emit_fields"])
def test_a_chirpstack_uplink_becomes_a_neutral_uplink(emit_defaults):
    topic, body = chirpstack_event(obj={"wifi": 42.0}, emit_defaults=emit_defaults)
    up = parse_chirpstack(topic, body)
    assert isinstance(up, Uplink)
    assert (up.network, up.application, up.device) == ("chirpstack", APP, EUI)
    assert up.dev_eui == EUI.upper()
    assert (up.f_port, up.f_cnt, up.payload) == (1, 7, b"\x2a\x00")
    assert up.decoded == {"wifi": 42.0}
    assert up.device_time == datetime(2026, 5, 1, 12, 0, 0, 123000, tzinfo=UTC).timestamp()


def test_a_first_uplink_with_frame_counter_zero_left_out_reads_as_zero():
    topic, body = chirpstack_event(f_cnt=0)
    assert "fCnt" not in json.loads(body)
    assert parse_chirpstack(topic, body).f_cnt == 0


def test_no_radio_metadata_survives_parsing():
    for topic, body in (chirpstack_event(), chirpstack_event(emit_defaults=True)):
        text = body.decode()
        assert all(marker in text for marker in RADIO_MARKERS)  # the input carries them
        up = parse_chirpstack(topic, body)
        kept = repr(up)
        assert not any(marker in kept for marker in RADIO_MARKERS)
        assert set(Uplink.__dataclass_fields__) == {
            "network", "application", "device", "dev_eui", "f_port", "f_cnt", "payload",
            "decoded", "device_time", "dedup_keys",
        }  # fmt: skip


def test_the_same_uplink_through_two_gateways_or_twice_counts_once():
    dedup = Deduplicator()
    first = parse_chirpstack(*chirpstack_event(gateway=GATEWAYS[0]))
    again = parse_chirpstack(*chirpstack_event(gateway=GATEWAYS[1]))
    other_id = parse_chirpstack(*chirpstack_event(dedup="a0b1c2d3-0000-4000-8000-000000000001"))
    next_frame = parse_chirpstack(
        *chirpstack_event(f_cnt=8, dedup="a0b1c2d3-0000-4000-8000-000000000002")
    )
    assert not dedup.seen(first.dedup_keys, now=0.0)
    assert dedup.seen(again.dedup_keys, now=1.0)  # same deduplicationId
    assert dedup.seen(other_id.dedup_keys, now=2.0)  # same device, session and frame counter
    assert not dedup.seen(next_frame.dedup_keys, now=3.0)


def test_deduplication_forgets_after_its_window_and_stays_bounded():
    dedup = Deduplicator(capacity=8, window=60.0)
    keys = [bytes([i]) * 16 for i in range(100)]
    assert not dedup.seen([keys[0]], now=0.0)
    assert dedup.seen([keys[0]], now=59.0)
    assert not dedup.seen([keys[0]], now=200.0)
    for i, key in enumerate(keys):
        dedup.seen([key], now=300.0 + i)
        assert len(dedup) <= 8


def test_paxcounter_packed_through_chirpstack_decodes_with_the_codec():
    pax = load("firmware", "paxcounter.json")["formats"]["packed"]
    case = next(c for c in pax if c["case"] == "wifi=42,ble=17")
    up = parse_chirpstack(*chirpstack_event(payload=bytes.fromhex(case["hex"])))
    spec = CODECS["paxcounter_packed"]
    (reading,) = spec.decode(up.payload, up.f_port, spec.Options())
    assert reading.values == {"wifi_devices": 42, "ble_devices": 17, "pax_devices": 59}


CS_DOCS = load("lorawan", "chirpstack_docs.json")


@pytest.mark.parametrize("event", CS_DOCS["events"], ids=lambda e: e["event"])
def test_chirpstack_documented_events(event):
    result = parse_chirpstack(event["topic"], event["body"].encode())
    if event["event"] != "up":
        assert result is None  # valid, not an uplink: ignored
        return
    assert isinstance(result, Uplink)
    assert result.dev_eui == "0101010101010101"
    assert (result.f_port, result.f_cnt, result.payload) == (1, 0, b"\xaa")
    assert result.device_time == datetime(2022, 7, 18, 9, 34, 15, 775023, tzinfo=UTC).timestamp()


TTS = load("lorawan", "tts_docs.json")
TTS_TOPIC = "v3/app1@tenant1/devices/dev1/up"


def tts_uplink_example() -> str:
    return next(m for m in TTS["messages"] if m["heading"] == "Uplink Messages")["body"]


def test_the_tts_uplink_example_as_published_is_invalid_json_and_an_error():
    result = parse_tts(TTS_TOPIC, tts_uplink_example().encode())
    assert isinstance(result, DecodeError) and result.reason == "not_json"


def test_the_tts_uplink_example_with_its_missing_comma_restored():
    body = tts_uplink_example().replace('    }\n    "received_at"', '    },\n    "received_at"')
    up = parse_tts(TTS_TOPIC, body.encode())
    assert isinstance(up, Uplink)
    assert (up.network, up.application, up.device) == ("tts", "app1", "dev1")
    assert up.dev_eui == "0004A30B001C0530"
    assert (up.f_port, up.f_cnt) == (0, 1)  # the example leaves f_port out: zero is omitted
    assert up.payload == base64.b64decode("gkHe")
    assert up.decoded == {"temperature": 1.0, "luminosity": 0.64}
    assert up.device_time == datetime(2020, 2, 12, 15, 15, 45, 789585, tzinfo=UTC).timestamp()
    kept = repr(up)
    for marker in ("gtw1", "9C5C8E00001A05C4", "-35", "37.97155556731436", "868300000"):
        assert marker in body and marker not in kept
    assert parse_tts("v3/app1/devices/dev1/up", body.encode()).device == "dev1"  # open source


@pytest.mark.parametrize(
    ("message", "topic"),
    [("Join-accept Messages", "v3/app1@tenant1/devices/dev1/join"),
     ("Downlink Events Messages", "v3/app1@tenant1/devices/dev1/down/queued")],
)  # fmt: skip
def test_tts_non_uplink_messages_are_ignored(message, topic):
    body = next(m for m in TTS["messages"] if m["heading"] == message)["body"]
    assert parse_tts(topic, body.encode()) is None


def tts_message(**uplink: object) -> bytes:
    return json.dumps(
        {
            "end_device_ids": {
                "device_id": "dev1",
                "application_ids": {"application_id": "app1"},
                "dev_eui": "0004A30B001C0530",
            },
            "correlation_ids": ["as:up:01E0WZGT6Y7657CPFPE5WEYDSQ", "gs:conn:01E0WDEC6T5T4"],
            "received_at": "2020-02-12T15:15:46.014773143Z",
            "uplink_message": {
                "session_key_id": "AXA50tHUGUucuzS/bCGMNw==",
                "f_port": 1,
                "f_cnt": 5,
                **uplink,
            },
        }
    ).encode()


@pytest.mark.parametrize("example", TTS["cayenne_examples"], ids=lambda e: e["lines"])
def test_tts_cayenne_uplinks_decode_alike_with_the_builtin_codec(example):
    frm = example["body"].split('"frm_payload": "')[1].split('"')[0]
    up = parse_tts(TTS_TOPIC, tts_message(frm_payload=frm, f_port=8))
    spec = CODECS["cayenne_lpp"]
    options = spec.Options.model_validate(
        {
            "items": {
                "temperature_0": {"key": "t0"},
                "temperature_3": {"key": "t3"},
                "temperature_5": {"key": "t5"},
                "barometric_pressure_0": {"key": "p0"},
            }
        }
    )  # the TTS decoded_payload keys are the item names
    (reading,) = spec.decode(up.payload, up.f_port, options)
    assert reading.values in ({"t3": 27.2, "t5": 25.5}, {"p0": 1017.5, "t0": 22.2})


def test_tts_duplicates_share_the_as_up_id_or_the_session_and_frame_counter():
    dedup = Deduplicator()
    first = parse_tts(TTS_TOPIC, tts_message(frm_payload="Kg=="))
    again = parse_tts(TTS_TOPIC, tts_message(frm_payload="Kg=="))
    assert not dedup.seen(first.dedup_keys, 0.0)
    assert dedup.seen(again.dedup_keys, 1.0)


def mutate(body: bytes, path: tuple[str, ...], value: object) -> bytes:
    doc = json.loads(body)
    node = doc
    for key in path[:-1]:
        node = node[key]
    if value is KeyError:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return json.dumps(doc).encode()


CS_TOPIC, CS_BODY = chirpstack_event()


@pytest.mark.parametrize(
    ("topic", "body", "reason"),
    [
        (CS_TOPIC, b"{", "not_json"),
        (CS_TOPIC, b"[]", "wrong_type"),
        (CS_TOPIC, mutate(CS_BODY, ("deviceInfo",), KeyError), "missing_field"),
        (CS_TOPIC, mutate(CS_BODY, ("deviceInfo", "devEui"), "0101"), "bad_eui"),
        (CS_TOPIC.replace(EUI, "0101010101010101"), CS_BODY, "identity_mismatch"),
        (CS_TOPIC.replace(APP, "other-app"), CS_BODY, "identity_mismatch"),
        (CS_TOPIC, mutate(CS_BODY, ("data",), "not base64!"), "bad_base64"),
        (CS_TOPIC, mutate(CS_BODY, ("data",), base64.b64encode(bytes(300)).decode()), "too_large"),
        (CS_TOPIC, mutate(CS_BODY, ("fCnt",), 2**32), "wrong_type"),
        (CS_TOPIC, mutate(CS_BODY, ("fCnt",), -1), "wrong_type"),
        (CS_TOPIC, mutate(CS_BODY, ("fPort",), 256), "wrong_type"),
        (CS_TOPIC, mutate(CS_BODY, ("object",), [1, 2]), "wrong_type"),
        (CS_TOPIC, mutate(CS_BODY, ("devAddr",), "not hex"), "wrong_type"),
        (CS_TOPIC, mutate(CS_BODY, ("deduplicationId",), "a/b"), "wrong_type"),
        ("application/x/device", CS_BODY, "unknown_topic"),
        ("devices/x/up", CS_BODY, "unknown_topic"),
    ],
)
def test_malformed_chirpstack_events_are_errors(topic, body, reason):
    result = parse_chirpstack(topic, body)
    assert isinstance(result, DecodeError) and result.reason == reason
    assert EUI not in result.detail and EUI.upper() not in result.detail


@pytest.mark.parametrize(
    ("topic", "body", "reason"),
    [
        (TTS_TOPIC, mutate(tts_message(), ("uplink_message",), KeyError), "missing_field"),
        (TTS_TOPIC, mutate(tts_message(), ("end_device_ids",), KeyError), "missing_field"),
        ("v3/app1@tenant1/devices/dev2/up", tts_message(), "identity_mismatch"),
        ("v3/app2@tenant1/devices/dev1/up", tts_message(), "identity_mismatch"),
        (TTS_TOPIC, mutate(tts_message(), ("end_device_ids", "dev_eui"), "zz"), "bad_eui"),
        (TTS_TOPIC, tts_message(frm_payload="@@@"), "bad_base64"),
        (TTS_TOPIC, tts_message(f_cnt="seven"), "wrong_type"),
        (TTS_TOPIC, tts_message(decoded_payload="x"), "wrong_type"),
        ("v2/app1/devices/dev1/up", tts_message(), "unknown_topic"),
    ],
)
def test_malformed_tts_messages_are_errors(topic, body, reason):
    result = parse_tts(topic, body)
    assert isinstance(result, DecodeError) and result.reason == reason


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=20,
)
FIELDS_CS = ("deduplicationId", "time", "deviceInfo", "devAddr", "fCnt", "fPort", "data", "object")
FIELDS_TTS = ("f_port", "f_cnt", "frm_payload", "decoded_payload", "received_at", "session_key_id")


@PROPS
@given(st.sampled_from(FIELDS_CS), json_values)
def test_any_value_in_any_chirpstack_field_gives_an_uplink_or_an_error(field, value):
    result = parse_chirpstack(CS_TOPIC, mutate(CS_BODY, (field,), value))
    assert isinstance(result, Uplink | DecodeError)


@PROPS
@given(st.sampled_from(FIELDS_TTS), json_values)
def test_any_value_in_any_tts_field_gives_an_uplink_or_an_error(field, value):
    result = parse_tts(TTS_TOPIC, mutate(tts_message(), ("uplink_message", field), value))
    assert isinstance(result, Uplink | DecodeError)


@PROPS
@given(st.text(max_size=80), st.binary(max_size=400))
def test_any_topic_and_bytes_never_raise(topic, body):
    for parse in (lorawan.parse_chirpstack, lorawan.parse_tts):
        result = parse(topic, body)
        assert result is None or isinstance(result, Uplink | DecodeError)
