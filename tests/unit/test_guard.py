from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.model import Observation, stable_id
from gateway.privacy.guard import EgressGuard, find_identifier

IDENTIFIERS = [
    ("3c:22:fb:12:34:56", "mac"),
    ("3C-22-FB-12-34-56", "mac"),
    ("3c22.fb12.3456", "mac"),
    ("3c22fb123456", "mac"),
    ("04A1B2C3D4E5F6", "id_token"),
    ("resident@example.org", "email"),
    ("+447700900123", "phone"),
    ("07700 900123", "phone"),
    ("AB12 CDE", "vehicle_registration"),
    ("ab12cde", "vehicle_registration"),
    ("A123 BCD", "vehicle_registration"),
    ("192.168.1.20", "ip_address"),
    ("fe80::1ff:fe23:4567:890a", "ip_address"),
]


@pytest.mark.parametrize(("token", "kind"), IDENTIFIERS)
def test_identifier_shapes_are_found_inside_json(token: str, kind: str) -> None:
    payload = json.dumps({"result": 1, "parameters": {"quality": f"x {token} y"}})
    assert find_identifier(payload) == kind


def obs(result: float | int | str | bool | None, **params: object) -> Observation:
    return Observation(stable_id("datastream", "g", "s", "p"), "pm-north", "pm2_5",
                       1764000000.123, 1764000000.456, result, None, params)  # type: ignore[arg-type]


@settings(max_examples=300)
@given(
    result=st.one_of(
        st.integers(-10**9, 10**9),
        st.floats(-1e6, 1e6, allow_nan=False).map(lambda v: round(v, 4)),
        st.sampled_from(["AVAILABLE", "CHARGING", "OUTOFORDER", "BLOCKED", "INOPERATIVE"]),
        st.booleans(),
    ),
    t=st.floats(1.6e9, 2.2e9),
)
def test_legitimate_observations_pass(result: float | int | str | bool, t: float) -> None:
    o = Observation(stable_id("datastream", "camden-lc-0423", "pm-north", "pm2_5"), "pm-north",
                    "pm2_5", t, t + 0.5, result, t + 900, {"aggregation": "sum", "period": "PT15M", "samples": 12})  # fmt: skip
    guard = EgressGuard()
    assert guard.check_record(o.to_record()).ok
    assert guard.check_observation_json(json.dumps(o.sensorthings()).encode()).ok


def test_undeclared_keys_and_parameters_are_blocked() -> None:
    g = EgressGuard()
    good = obs(3).sensorthings()
    assert g.check_observation_json(json.dumps(good).encode()).ok
    assert g.check_observation_json(json.dumps({**good, "idTag": "x"}).encode()).reason == "undeclared_field"
    bad = {**good, "parameters": {"mac_hash": "x"}}
    assert g.check_observation_json(json.dumps(bad).encode()).reason == "undeclared_parameter"
    assert g.blocked == {"undeclared_field": 1, "undeclared_parameter": 1}


def test_unknown_datastream_is_blocked() -> None:
    g = EgressGuard(allowed_datastreams=frozenset({1}))
    assert g.check_observation_json(json.dumps(obs(3).sensorthings()).encode()).reason == "unknown_datastream"


def test_identifier_in_a_category_result_is_blocked() -> None:
    g = EgressGuard()
    v = g.check_record(obs("04A1B2C3D4E5F6").to_record())
    assert not v.ok and v.reason == "id_token"


def test_stable_ids_are_16_digits_and_stable() -> None:
    a = stable_id("datastream", "camden-lc-0423", "pm-north", "pm2_5")
    assert a == stable_id("datastream", "camden-lc-0423", "pm-north", "pm2_5")
    assert len(str(a)) == 16
    assert a != stable_id("datastream", "camden-lc-0423", "pm-north", "pm10")
