"""Cayenne LPP against an independent implementation (pycayennelpp) and The Things Stack's
documented examples; the codec registry against its contract."""

from __future__ import annotations

import base64
import json
import math

import pytest
from cayennelpp import LppFrame
from cayennelpp.lpp_type import LppType as TheirType
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from firmware_bridge import lpp
from firmware_bridge.base import Aggregation, Catalogue, Decoded, DecodeError, Ignored, Role
from firmware_bridge.codecs import CODECS, CodecSpec, guarded
from firmware_bridge.codecs import cayenne_lpp as cayenne_codec
from firmware_bridge.options import DriverOptions
from tests.unit.firmware_data import load

PROPS = settings(max_examples=400, derandomize=True, database=None, deadline=None)
THEIR_CODES = sorted(c for c in range(256) if TheirType.get_lpp_type(c) is not None)


@st.composite
def lpp_items(draw: st.DrawFn) -> tuple[int, int, bytes]:
    code = draw(st.sampled_from(THEIR_CODES))
    size = TheirType.get_lpp_type(code).size
    return draw(st.integers(0, 255)), code, draw(st.binary(min_size=size, max_size=size))


def test_every_type_pycayennelpp_knows_is_known_here_with_the_same_shape():
    for code in THEIR_CODES:
        theirs, ours = TheirType.get_lpp_type(code), lpp.TYPES[code]
        assert ours.size == theirs.size, code
        assert len(ours.sizes) == theirs.dimension, code


@PROPS
@given(st.lists(lpp_items(), min_size=1, max_size=8))
def test_dynamic_frames_decode_as_pycayennelpp_decodes_them(items):
    frame = b"".join(bytes([ch, code]) + data for ch, code, data in items)
    theirs = list(LppFrame.from_bytes(frame))
    ours = lpp.parse_dynamic(frame)
    assert not isinstance(ours, DecodeError)
    assert len(ours) == len(theirs)
    for mine, their in zip(ours, theirs, strict=True):
        assert (mine.channel, mine.type.code) == (their.channel, int(their.type))
        for a, b in zip(mine.values, their.value, strict=True):
            assert math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


@PROPS
@given(st.lists(lpp_items(), min_size=1, max_size=8))
def test_packed_frames_number_items_by_position(items):
    frame = b"".join(bytes([code]) + data for _, code, data in items)
    ours = lpp.parse_packed(frame)
    assert not isinstance(ours, DecodeError)
    assert [i.channel for i in ours] == list(range(len(items)))
    assert [i.type.code for i in ours] == [code for _, code, _ in items]


TTS = load("lorawan", "tts_docs.json")


@pytest.mark.parametrize("example", TTS["cayenne_examples"], ids=lambda e: e["lines"])
def test_decoding_matches_the_things_stack_cayenne_formatter_examples(example):
    """The TTS docs' examples (as published: a trailing comma makes them invalid JSON, so the
    two fields are read by pattern)."""
    body = example["body"]
    frm = body.split('"frm_payload": "')[1].split('"')[0]
    decoded = json.loads("{" + body.split('"decoded_payload": {')[1].split("}")[0] + "}")
    items = lpp.parse_dynamic(base64.b64decode(frm))
    assert not isinstance(items, DecodeError)
    ours = {i.key: i.values[0] for i in items}
    assert ours.keys() == decoded.keys()
    for key, value in decoded.items():
        assert math.isclose(ours[key], value, rel_tol=1e-6)  # TTS decodes through float32


@pytest.mark.parametrize(
    ("payload", "reason"),
    [(b"", "empty"), (b"\x01", "truncated"), (b"\x01\x67\x00", "truncated"),
     (b"\x01\x05\x00", "unknown_type"), (bytes(300), "too_large")],
)  # fmt: skip
def test_malformed_dynamic_frames_are_errors(payload, reason):
    result = lpp.parse_dynamic(payload)
    assert isinstance(result, DecodeError) and result.reason == reason


@PROPS
@given(st.binary(max_size=300))
def test_any_bytes_parse_or_give_an_error(payload):
    for parse in (lpp.parse_dynamic, lpp.parse_packed):
        result = parse(payload)
        assert isinstance(result, list | DecodeError)


# --- the codec registry


@pytest.mark.parametrize("name", sorted(CODECS))
def test_each_codec_is_registered_under_its_own_name_with_a_strict_frozen_options_model(name):
    spec = CODECS[name]
    assert isinstance(spec, CodecSpec) and spec.name == name
    assert issubclass(spec.Options, DriverOptions)
    options = spec.Options()
    with pytest.raises(ValidationError):
        spec.Options(no_such_option=1)
    with pytest.raises(ValidationError):
        options.__setattr__("x", 1)
    catalogue = spec.catalogue_for(options)
    assert isinstance(catalogue, Catalogue) and catalogue.driver == name
    assert catalogue.transport == "lorawan"


PAX = load("firmware", "paxcounter.json")["formats"]
PAX_CODEC = {"packed": "paxcounter_packed", "packed_opensensebox": "paxcounter_packed",
             "plain": "paxcounter_plain", "lpp_dynamic": "paxcounter_lpp",
             "lpp_packed": "paxcounter_lpp"}  # fmt: skip


@pytest.mark.parametrize("fmt", sorted(PAX_CODEC))
def test_paxcounter_codecs_yield_only_catalogued_fields_and_ignore_frames_without_counts(fmt):
    """A codec is mapped to the port the counts arrive on. The LPP encoders put status and
    battery frames on that same port: those are valid and ignored. The packed and plain
    encoders send them on their own ports, which a profile does not map to the codec."""
    spec = CODECS[PAX_CODEC[fmt]]
    options = spec.Options()
    catalogue = spec.catalogue_for(options)
    readings = ignored = 0
    for case in PAX[fmt]:
        if case["case"] in ("status", "battery") and case["fport"] != PAX[fmt][0]["fport"]:
            continue  # on a port of its own
        events = spec.decode(bytes.fromhex(case["hex"]), case["fport"], options)
        if case["case"] in ("status", "battery"):
            assert events == [Ignored("not_a_count")]
            ignored += 1
            continue
        (event,) = events
        assert isinstance(event, Decoded)
        for key, value in event.values.items():
            field = catalogue.field(key)
            assert field is not None and not field.derived, key
            assert field.minimum is None or value >= field.minimum
            assert field.maximum is None or value <= field.maximum
        readings += 1
    assert readings >= 12 and ignored == (2 if fmt.startswith("lpp") else 0)


@pytest.mark.parametrize("name", ["paxcounter_packed", "paxcounter_plain", "paxcounter_lpp"])
def test_paxcounter_counts_are_person_counts_leaving_as_a_max_and_pm_are_readings(name):
    catalogue = CODECS[name].catalogue_for(CODECS[name].Options())
    for key in ("wifi_devices", "ble_devices", "pax_devices"):
        assert catalogue.field(key).role is Role.PERSON_COUNT
        assert catalogue.field(key).personal
        peak = catalogue.field(f"{key}_max")
        assert (peak.aggregation, peak.source, peak.personal) == (Aggregation.MAX, key, False)
    for key in ("pm10", "pm2_5"):
        assert catalogue.field(key).role is Role.READING


def test_cayenne_lpp_maps_configured_channels_and_ignores_the_rest():
    options = cayenne_codec.Options.model_validate(
        {"items": {"temperature_3": {"key": "air_temperature"},
                   "luminosity_5": {"key": "people", "unit": "{devices}", "role": "person_count"}}}
    )  # fmt: skip
    catalogue = cayenne_codec.catalogue_for(options)
    assert catalogue.field("air_temperature").unit == "Cel"
    assert catalogue.field("people").role is Role.PERSON_COUNT
    frame = bytes.fromhex("03670110") + bytes.fromhex("05650007") + bytes.fromhex("086801")
    assert cayenne_codec.decode(frame, 8, options) == [
        Decoded({"air_temperature": 27.2, "people": 7})
    ]
    nothing = [Ignored("no_configured_item")]
    assert cayenne_codec.decode(bytes.fromhex("086801"), 8, options) == nothing  # unmapped
    assert cayenne_codec.decode(bytes.fromhex("03650110"), 8, options) == nothing  # luminosity_3
    peak = catalogue.field("people_max")
    assert (peak.aggregation, peak.source, peak.unit) == (Aggregation.MAX, "people", "{devices}")
    twice = cayenne_codec.decode(bytes.fromhex("0367011003670111"), 8, options)
    assert twice[0].reason == "duplicate_channel"


@pytest.mark.parametrize(
    "bad",
    [{"items": {"no_such_type_1": {"key": "t"}}},
     {"items": {"accelerometer_1": {"key": "a"}}},
     {"items": {"temperature_1": {"key": "t", "axis": "x"}}},
     {"items": {"temperature_1": {"key": "t"}, "luminosity_2": {"key": "t"}}},
     {"items": {"temperature_300": {"key": "t"}}},
     {"items": {"temperature": {"key": "t"}}},
     {"items": {"temperature_1": {"key": "Bad Key"}}},
     {"items": {"temperature_1": {"key": "t", "type": "temperature"}}}],
)  # fmt: skip
def test_cayenne_lpp_options_refuse_what_could_not_work(bad):
    with pytest.raises(ValidationError):
        cayenne_codec.Options.model_validate(bad)


@PROPS
@given(
    st.sampled_from(sorted(CODECS)),
    st.binary(max_size=260),
    st.one_of(st.none(), st.integers(0, 255)),
)
def test_every_codec_returns_events_for_any_bytes_and_port_never_raises(name, payload, fport):
    spec = CODECS[name]
    options = spec.Options()
    if name == "cayenne_lpp":
        options = spec.Options.model_validate(
            {"items": {f"luminosity_{ch}": {"key": f"c{ch}"} for ch in range(0, 256, 7)}}
        )
    events = spec.decode(payload, fport, options)  # unguarded: a bug must fail the test
    assert all(isinstance(e, Decoded | DecodeError | Ignored) for e in events)
    assert guarded(spec, payload, fport, options) == events
    catalogue = spec.catalogue_for(options)
    for event in events:
        if isinstance(event, Decoded):
            assert all(catalogue.field(key) is not None for key in event.values)
        elif isinstance(event, DecodeError):
            assert event.reason != "decoder_bug"
