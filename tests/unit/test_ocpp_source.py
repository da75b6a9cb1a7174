"""The pure parts of the OCPP source: the standalone CSMS's answers (checked against the OCA JSON
schemas the `ocpp` library ships), its Authorize policy, OCPP-J framing, the flood bucket, and
the settings a borough officer writes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from ocpp.messages import Call, CallResult, _validate_payload
from pydantic import ValidationError

from firmware_bridge import ocppj
from gateway.sources.ocpp.settings import InputsOcpp, OcppSensor
from gateway.sources.ocpp.standalone import (
    EMPTY_16,
    EMPTY_201,
    REFUSED_16,
    REFUSED_201,
    StandaloneCsms,
)
from gateway.sources.ocpp.tap import TokenBucket

NOW = 1_741_946_401.25
TAG = "04A1B2C3D4E5F6"

# A valid request body for every call the standalone CSMS answers, per version
REQUESTS_16: dict[str, dict[str, Any]] = {
    "BootNotification": {"chargePointVendor": "Street", "chargePointModel": "LC-7"},
    "Heartbeat": {},
    "StatusNotification": {"connectorId": 1, "errorCode": "NoError", "status": "Available"},
    "MeterValues": {"connectorId": 1, "meterValue": [{"timestamp": "2025-03-14T10:00:00Z", "sampledValue": [{"value": "1"}]}]},
    "Authorize": {"idTag": TAG},
    "StartTransaction": {"connectorId": 1, "idTag": TAG, "meterStart": 0, "timestamp": "2025-03-14T10:00:00Z"},
    "StopTransaction": {"meterStop": 10, "timestamp": "2025-03-14T11:00:00Z", "transactionId": 1, "idTag": TAG},
    "DiagnosticsStatusNotification": {"status": "Idle"},
    "FirmwareStatusNotification": {"status": "Idle"},
    "DataTransfer": {"vendorId": "com.example"},
    "SecurityEventNotification": {"type": "StartupOfTheDevice", "timestamp": "2025-03-14T10:00:00Z"},
    "SignCertificate": {"csr": "-----BEGIN CERTIFICATE REQUEST-----"},
    "LogStatusNotification": {"status": "Idle"},
    "SignedFirmwareStatusNotification": {"status": "Idle"},
}  # fmt: skip
TOKEN = {"idToken": TAG, "type": "ISO14443"}
REQUESTS_201: dict[str, dict[str, Any]] = {
    "BootNotification": {"chargingStation": {"model": "LC-7", "vendorName": "Street"}, "reason": "PowerUp"},
    "Heartbeat": {},
    "StatusNotification": {"timestamp": "2025-03-14T10:00:00Z", "connectorStatus": "Available", "evseId": 1, "connectorId": 1},
    "MeterValues": {"evseId": 1, "meterValue": [{"timestamp": "2025-03-14T10:00:00Z", "sampledValue": [{"value": 1}]}]},
    "Authorize": {"idToken": TOKEN},
    "TransactionEvent": {"eventType": "Started", "timestamp": "2025-03-14T10:00:00Z", "triggerReason": "Authorized", "seqNo": 0, "transactionInfo": {"transactionId": "t1"}, "idToken": TOKEN},
    "NotifyEvent": {"generatedAt": "2025-03-14T10:00:00Z", "seqNo": 0, "eventData": [{"eventId": 1, "timestamp": "2025-03-14T10:00:00Z", "trigger": "Alerting", "actualValue": "1", "eventNotificationType": "HardWiredNotification", "component": {"name": "EVSE"}, "variable": {"name": "Problem"}}]},
    "NotifyReport": {"requestId": 1, "generatedAt": "2025-03-14T10:00:00Z", "seqNo": 0},
    "SecurityEventNotification": {"type": "StartupOfTheDevice", "timestamp": "2025-03-14T10:00:00Z"},
    "FirmwareStatusNotification": {"status": "Idle"},
    "LogStatusNotification": {"status": "Idle"},
    "NotifyMonitoringReport": {"requestId": 1, "seqNo": 0, "generatedAt": "2025-03-14T10:00:00Z"},
    "ClearedChargingLimit": {"chargingLimitSource": "EMS"},
    "NotifyChargingLimit": {"chargingLimit": {"chargingLimitSource": "EMS"}},
    "ReservationStatusUpdate": {"reservationId": 1, "reservationUpdateStatus": "Expired"},
    "NotifyDisplayMessages": {"requestId": 1},
    "NotifyCustomerInformation": {"data": "x", "seqNo": 0, "generatedAt": "2025-03-14T10:00:00Z", "requestId": 1},
    "PublishFirmwareStatusNotification": {"status": "Idle"},
    "ReportChargingProfiles": {"requestId": 1, "chargingLimitSource": "EMS", "evseId": 1, "chargingProfile": [{"id": 1, "stackLevel": 0, "chargingProfilePurpose": "TxDefaultProfile", "chargingProfileKind": "Absolute", "chargingSchedule": [{"id": 1, "chargingRateUnit": "W", "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 7400}]}]}]},
    "DataTransfer": {"vendorId": "com.example"},
    "SignCertificate": {"csr": "-----BEGIN CERTIFICATE REQUEST-----"},
    "NotifyEVChargingNeeds": {"evseId": 1, "chargingNeeds": {"requestedEnergyTransfer": "AC_single_phase"}},
    "NotifyEVChargingSchedule": {"timeBase": "2025-03-14T10:00:00Z", "evseId": 1, "chargingSchedule": {"id": 1, "chargingRateUnit": "W", "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 7400}]}},
    "Get15118EVCertificate": {"iso15118SchemaVersion": "urn:iso:15118:2:2013:MsgDef", "action": "Install", "exiRequest": "AA=="},
    "GetCertificateStatus": {"ocspRequestData": {"hashAlgorithm": "SHA256", "issuerNameHash": "a", "issuerKeyHash": "b", "serialNumber": "c", "responderURL": "http://ocsp.example"}},
}  # fmt: skip
OCPP_VERSION = {"ocpp1.6": "1.6", "ocpp2.0.1": "2.0.1"}


def csms(allowed: set[str] | None = None) -> StandaloneCsms:
    policy = (lambda tag: True) if allowed is None else (lambda tag: tag.casefold() in allowed)
    return StandaloneCsms(policy, 300, NOW)


def ask(c: StandaloneCsms, subprotocol: str, action: str, body: Any, uid: str = "m-1") -> list[Any]:
    text = json.dumps([2, uid, action, body])
    reply = c.reply(ocppj.parse(text), text, subprotocol, NOW)
    assert reply is not None
    return list(json.loads(reply))


@pytest.mark.parametrize(
    ("subprotocol", "action"),
    [("ocpp1.6", a) for a in REQUESTS_16] + [("ocpp2.0.1", a) for a in REQUESTS_201],
)
def test_every_answer_is_valid_by_the_oca_schemas(subprotocol: str, action: str) -> None:
    body = (REQUESTS_16 if subprotocol == "ocpp1.6" else REQUESTS_201)[action]
    version = OCPP_VERSION[subprotocol]
    _validate_payload(Call("m-1", action, body), version)  # the request is real 1.6 / 2.0.1
    kind, uid, payload = ask(csms(), subprotocol, action, body)
    assert (kind, uid) == (3, "m-1")
    _validate_payload(CallResult("m-1", payload, action=action), version)


def test_every_call_it_claims_to_answer_is_tested() -> None:
    handled_16 = EMPTY_16 | set(REFUSED_16) | {"BootNotification", "Heartbeat", "Authorize", "StartTransaction", "StopTransaction"}  # fmt: skip
    handled_201 = EMPTY_201 | set(REFUSED_201) | {"BootNotification", "Heartbeat", "Authorize", "TransactionEvent"}  # fmt: skip
    assert handled_16 == set(REQUESTS_16) and handled_201 == set(REQUESTS_201)


def test_boot_and_heartbeat_carry_the_time_and_interval() -> None:
    _, _, boot = ask(csms(), "ocpp2.0.1", "BootNotification", REQUESTS_201["BootNotification"])
    assert boot == {"currentTime": "2025-03-14T10:00:01.250Z", "interval": 300, "status": "Accepted"}  # fmt: skip


def test_local_list_policy_accepts_listed_tags_in_any_case_and_nothing_else() -> None:
    c = csms({TAG.lower()})
    assert ask(c, "ocpp1.6", "Authorize", {"idTag": TAG})[2] == {"idTagInfo": {"status": "Accepted"}}
    assert ask(c, "ocpp1.6", "Authorize", {"idTag": "FFFF"})[2] == {"idTagInfo": {"status": "Invalid"}}
    started = ask(c, "ocpp1.6", "StartTransaction", {**REQUESTS_16["StartTransaction"], "idTag": "FFFF"})[2]  # fmt: skip
    assert started["idTagInfo"] == {"status": "Invalid"}  # the charger must not deliver energy
    assert ask(c, "ocpp2.0.1", "Authorize", {"idToken": {"idToken": TAG.lower(), "type": "ISO14443"}})[2] == {"idTokenInfo": {"status": "Accepted"}}  # fmt: skip
    assert ask(c, "ocpp2.0.1", "Authorize", {"idToken": {"idToken": "FFFF", "type": "ISO14443"}})[2] == {"idTokenInfo": {"status": "Invalid"}}  # fmt: skip
    # a station configured without authorisation has no token to check
    assert ask(c, "ocpp2.0.1", "TransactionEvent", {**REQUESTS_201["TransactionEvent"], "idToken": {"idToken": "", "type": "NoAuthorization"}})[2] == {"idTokenInfo": {"status": "Accepted"}}  # fmt: skip
    assert ask(c, "ocpp2.0.1", "TransactionEvent", {k: v for k, v in REQUESTS_201["TransactionEvent"].items() if k != "idToken"})[2] == {}  # fmt: skip


def test_transaction_ids_count_up_from_the_clock() -> None:
    c = csms()
    ids = [ask(c, "ocpp1.6", "StartTransaction", REQUESTS_16["StartTransaction"])[2]["transactionId"] for _ in range(3)]  # fmt: skip
    assert ids == [int(NOW) + 1, int(NOW) + 2, int(NOW) + 3]


@pytest.mark.parametrize(
    ("subprotocol", "text", "reply"),
    [("ocpp1.6", '[2,"a","Reset",{"type":"Hard"}]', [4, "a", "NotImplemented"]),
     ("ocpp1.6", '[2,"b","LaunchRocket",{}]', [4, "b", "NotImplemented"]),
     ("ocpp1.6", '[2,"c","Authorize",[]]', [4, "c", "FormationViolation"]),
     ("ocpp1.6", '[2,"d","Authorize",{"idTag":5}]', [4, "d", "FormationViolation"]),
     ("ocpp2.0.1", '[2,"e","Authorize",{"idToken":"x"}]', [4, "e", "FormatViolation"]),
     ("ocpp2.0.1", '[2,"f","Heartbeat"]', [4, "f", "FormatViolation"]),
     ("ocpp1.6", '[3,"g",{}]', None), ("ocpp1.6", '[4,"h","x","y",{}]', None),
     ("ocpp1.6", "not json", None), ("ocpp1.6", '{"a":1}', None), ("ocpp1.6", '[2,7,"Heartbeat",{}]', None)],
)  # fmt: skip
def test_what_it_does_not_offer_or_cannot_read_is_answered_with_an_error_or_not_at_all(subprotocol: str, text: str, reply: list[Any] | None) -> None:  # fmt: skip
    got = csms().reply(ocppj.parse(text), text, subprotocol, NOW)
    if reply is None:
        assert got is None
    else:
        assert got is not None and json.loads(got)[:3] == reply


def test_framing() -> None:
    assert ocppj.parse('[2,"x","Heartbeat",{}]') == ocppj.Frame(ocppj.Kind.CALL, "x", "Heartbeat", {})  # fmt: skip
    assert ocppj.parse('[3,"x",{"a":1}]') == ocppj.Frame(ocppj.Kind.RESULT, "x", None, {"a": 1})
    assert ocppj.parse('[4,"x","GenericError","",{}]') == ocppj.Frame(ocppj.Kind.ERROR, "x", None, "GenericError")  # fmt: skip
    for bad, why in [("[", "not_json"), ("[NaN]", "not_json"), ("[" * 100_000, "not_json"),
                     ("[2]", "not_ocpp"), ('[true,"x",{}]', "not_ocpp"), ('[2,"x",5,{}]', "not_ocpp"),
                     ('[3,"x",{},1]', "not_ocpp"), ('[2,"' + "x" * 37 + '","H",{}]', "not_ocpp")]:  # fmt: skip
        assert ocppj.parse(bad) == why, bad


def test_the_flood_bucket_allows_the_burst_then_the_rate() -> None:
    bucket = TokenBucket(rate=10, burst=5, now=0.0)
    assert [bucket.take(0.0) for _ in range(6)] == [True] * 5 + [False]
    assert bucket.take(0.1) and not bucket.take(0.1)  # one more token per 1/rate seconds
    assert sum(bucket.take(100.0) for _ in range(20)) == 5  # never more than the burst


# --------------------------------------------------------------------------- settings


def test_a_proxy_charger_needs_an_upstream_and_standalone_must_not_have_one() -> None:
    with pytest.raises(ValidationError, match="proxy mode needs"):
        OcppSensor(charge_box_id="CB-1")
    with pytest.raises(ValidationError, match="standalone mode has no upstream"):
        OcppSensor(charge_box_id="CB-1", mode="standalone", upstream="wss://csms.example/ocpp")
    with pytest.raises(ValidationError, match="apply to standalone mode only"):
        OcppSensor(charge_box_id="CB-1", upstream="wss://csms.example/ocpp", authorize="local_list")
    with pytest.raises(ValidationError, match="local_list needs local_list_file"):
        OcppSensor(charge_box_id="CB-1", mode="standalone", authorize="local_list")


def test_credentials_never_go_to_a_cleartext_upstream_by_accident() -> None:
    with pytest.raises(ValidationError, match="cleartext"):
        OcppSensor(charge_box_id="CB-1", upstream="ws://csms.example/ocpp")
    OcppSensor(charge_box_id="CB-1", upstream="ws://csms.example/ocpp", upstream_auth="none")
    OcppSensor(charge_box_id="CB-1", upstream="ws://csms.example/ocpp", insecure_upstream=True)


@pytest.mark.parametrize("url", ["https://csms.example/ocpp", "wss:///ocpp", "wss://u:p@csms.example/", "wss://csms.example/?x=1"])  # fmt: skip
def test_upstream_must_be_a_plain_websocket_url(url: str) -> None:
    with pytest.raises(ValidationError):
        OcppSensor(charge_box_id="CB-1", upstream=url)


@pytest.mark.parametrize("cbid", ["", "a b", "CB:1", "x" * 49, "CB/1", "CB%201"])
def test_charge_box_ids_are_ocpp_identities(cbid: str) -> None:
    with pytest.raises(ValidationError):
        OcppSensor(charge_box_id=cbid, mode="standalone")


def test_secrets_come_from_files_and_never_show_in_errors(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("correct-horse-battery\n")
    s = OcppSensor(charge_box_id="CB-1", mode="standalone", auth={"password_file": str(tmp_path / "pw")})  # fmt: skip
    assert s.auth is not None and s.auth.password.get_secret_value() == "correct-horse-battery"
    assert "correct-horse" not in repr(s) and "correct-horse" not in str(s.model_dump())
    with pytest.raises(ValidationError, match="cannot read secret file") as info:
        OcppSensor(charge_box_id="CB-1", mode="standalone", auth={"password_file": str(tmp_path / "nope")})  # fmt: skip
    with pytest.raises(ValidationError, match="8 to 64") as info:
        OcppSensor(charge_box_id="CB-1", mode="standalone", auth={"password": "short-1"})
    assert "short-1" not in str(info.value)
    with pytest.raises(ValidationError, match="extra"):
        OcppSensor(charge_box_id="CB-1", mode="standalone", pasword="typo")  # type: ignore[call-arg]


def test_the_local_list_is_read_once_case_folded_and_never_echoed(tmp_path: Path) -> None:
    (tmp_path / "tags").write_text(f"# fleet\n{TAG}  # van 3\n\nabcdef01\n")
    s = OcppSensor(charge_box_id="CB-1", mode="standalone", authorize="local_list", local_list_file=tmp_path / "tags")  # fmt: skip
    assert s.local_list == {TAG.lower(), "abcdef01"}
    (tmp_path / "long").write_text("Z" * 40 + "\n")
    with pytest.raises(ValidationError, match="longer than 36") as info:
        OcppSensor(charge_box_id="CB-1", mode="standalone", authorize="local_list", local_list_file=tmp_path / "long")  # fmt: skip
    assert "ZZZZ" not in str(info.value)


def test_inputs_defaults_and_timeouts() -> None:
    cfg = InputsOcpp()
    assert (cfg.host, cfg.port, cfg.max_frame_bytes, cfg.tls) == ("0.0.0.0", 8180, 65536, None)
    assert InputsOcpp(max_frame_bytes="128KiB", handshake_timeout="30s").max_frame_bytes == 131072  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="shorter than handshake_timeout"):
        InputsOcpp(upstream_connect_timeout=20, handshake_timeout=10)
    with pytest.raises(ValidationError, match="cannot load"):
        InputsOcpp(tls={"cert_file": "/nonexistent.pem", "key_file": "/nonexistent.key"})  # type: ignore[arg-type]


def test_ingest_decodes_the_sensors_version_skips_others_and_drops_newest_when_full() -> None:
    import asyncio

    from firmware_bridge.drivers import ocpp16j, ocpp201j
    from gateway.model import Reading
    from gateway.ops.metrics import Registry
    from gateway.sources.ocpp.ingest import FrameIngest, IngestSensor
    from gateway.sources.ocpp.tap import Direction

    got: list[Reading] = []

    async def submit(reading: Reading, ack: Any) -> None:
        assert ack is None  # already delivered to the operator: nothing to acknowledge
        got.append(reading)

    metrics = Registry()
    sensors = {"CB-1": IngestSensor("ev-1", ocpp16j.DRIVER, ocpp16j.Options(), "ocpp1.6"),
               "CS-2": IngestSensor("ev-2", ocpp201j.DRIVER, ocpp201j.Options(), "ocpp2.0.1")}  # fmt: skip
    ingest = FrameIngest(sensors, submit, metrics, clock=lambda: NOW, max_queue=4)
    s16 = '[2,"a","StatusNotification",{"connectorId":1,"errorCode":"NoError","status":"Faulted"}]'
    s201 = '[2,"b","StatusNotification",{"timestamp":"2025-03-14T10:00:00Z","connectorStatus":"Faulted","evseId":2,"connectorId":1}]'  # fmt: skip
    ingest.on_frame("CB-1", Direction.IN, s16, "ocpp1.6")
    ingest.on_frame("CS-2", Direction.IN, s201, "ocpp2.0.1")
    ingest.on_frame("CB-1", Direction.IN, s201, "ocpp2.0.1")  # not the version its driver reads
    ingest.on_frame("CB-9", Direction.IN, s16, "ocpp1.6")  # not configured: ignored
    ingest.on_frame("CB-1", Direction.IN, s16, "ocpp1.6")  # the queue is full: dropped

    async def drain() -> None:
        task = asyncio.create_task(ingest.run())
        for _ in range(1000):  # no clock: a bounded number of turns of the loop
            if len(got) == 2 and not ingest._queue:
                break
            await asyncio.sleep(0)
        task.cancel()

    asyncio.run(drain())
    assert [(r.sensor_id, dict(r.values)) for r in got] == [
        ("ev-1", {"connector_status": "OUTOFORDER", "connector_id": "1", "error_code": "NoError"}),
        ("ev-2", {"connector_status": "OUTOFORDER", "connector_id": "2"}),
    ]
    assert got[0].time == NOW  # no device time: the gateway's clock
    assert metrics.metrics["gateway_ocpp_ingest_dropped_total"].get(sensor="ev-1") == 1
    assert metrics.metrics["gateway_ocpp_ingest_skipped_total"].get(sensor="ev-1") == 1


# --------------------------------------------------------------------------- in a config file


def ev_config(tmp: Path, second: str) -> str:
    from tests.integration.test_mqtt_tls import make_ca_and_server

    _, cert, key = make_ca_and_server(tmp)
    (tmp / "cb.pw").write_text("a-long-charger-password\n")
    (tmp / "tags").write_text(f"{TAG}\n")
    return f"""\
gateway: {{id: ev-gw-1, borough: islington, location: {{lat: 51.538, lon: -0.103}}}}
inputs:
  ocpp:
    port: 8180
    tls: {{cert_file: '{cert}', key_file: '{key}'}}
sensors:
  - id: ev-cp-42
    driver: ocpp16j
    ocpp:
      charge_box_id: CB-0042
      upstream: wss://csms.operator.example/ocpp
      auth: {{password_file: '{tmp / "cb.pw"}'}}
    options: {{connector_id: 1}}
  - id: ev-borough-7
    driver: ocpp201j
    ocpp:
      charge_box_id: LBC-EV-007
      mode: standalone
      authorize: local_list
      local_list_file: '{tmp / "tags"}'
{second}
sinks: {{file: {{}}}}
"""


def test_a_config_with_ocpp_sensors_loads_plans_and_describes_them(tmp_path: Path) -> None:
    from gateway.cli import semantic_problems
    from gateway.config import iter_secret_values, parse_config
    from gateway.plan import build_plan
    from gateway.sources import SOURCES

    cfg = parse_config(ev_config(tmp_path, ""), "ev.yaml", {})
    plan = build_plan(cfg)
    assert semantic_problems(cfg, plan) == []
    sp = plan.sensors["ev-cp-42"]
    assert sp.transport == "ocpp" and isinstance(sp.section, OcppSensor)
    assert sp.section.auth is not None  # the loader read password_file into a SecretStr
    assert "a-long-charger-password" in set(iter_secret_values(cfg))  # so logs mask it
    assert SOURCES["ocpp"].describe(sp.section) == "OCPP charger CB-0042, relayed to wss://csms.operator.example/ocpp"  # fmt: skip
    assert plan.sensors["ev-borough-7"].section.local_list == {TAG.lower()}  # type: ignore[attr-defined]
    assert {f.key for f in plan.sensors["ev-borough-7"].aggregates} == {"sessions_started", "sessions_ended", "energy_delivered", "energy_metered"}  # fmt: skip


def test_check_finds_ocpp_mistakes_with_their_lines(tmp_path: Path) -> None:
    from gateway.cli import semantic_problems
    from gateway.config import ConfigError, parse_config
    from gateway.plan import PlanError, build_plan

    mismatch = ("  - {id: ev-x, driver: ocpp201j, ocpp: {charge_box_id: CB-9, "
                "upstream: 'wss://csms.example/ocpp', subprotocols: [ocpp1.6]}}")  # fmt: skip
    text = ev_config(tmp_path, mismatch)
    cfg = parse_config(text, "ev.yaml", {})
    line = 1 + text.splitlines().index(mismatch)
    with pytest.raises(PlanError) as mismatch_error:  # a config problem: --no-devices finds it too
        build_plan(cfg)
    assert [str(p) for p in mismatch_error.value.problems] == [
        f"ev.yaml:{line} sensors[2].ocpp.subprotocols: ocpp201j reads ocpp2.0.1, which is not in [ocpp1.6]"
    ]
    twice = ("  - {id: ev-y, driver: ocpp16j, ocpp: {charge_box_id: CB-9, "
             "upstream: 'wss://csms.example/ocpp'}}\n"
             "  - {id: ev-z, driver: ocpp16j, ocpp: {charge_box_id: CB-9, "
             "upstream: 'wss://csms.example/ocpp'}}")  # fmt: skip
    with pytest.raises(PlanError) as twice_error:
        build_plan(parse_config(ev_config(tmp_path, twice), "ev.yaml", {}))
    assert [p.message for p in twice_error.value.problems] == [
        "this chargeBoxId is already used by sensor 'ev-y'"]
    cfg = parse_config(ev_config(tmp_path, ""), "ev.yaml", {})
    assert semantic_problems(cfg, build_plan(cfg)) == []
    for bad, where in [
        ("  - {id: ev-x, driver: ocpp16j, ocpp: {charge_box_id: CB-9}}", "sensors[2].ocpp"),
        ("  - {id: ev-x, driver: ocpp16j, ocpp: {charge_box_id: CB-9, mode: standalone, upstrem: x}}", "sensors[2].ocpp.upstrem"),
        ("  - {id: ev-x, driver: pms5003, ocpp: {charge_box_id: CB-9, mode: standalone}}", "sensors[2].ocpp"),
        # the loader says it cannot read the file (the missing password that follows is its
        # effect, not a second problem, and is not repeated)
        ("  - {id: ev-x, driver: ocpp16j, ocpp: {charge_box_id: CB-9, mode: standalone, auth: {password_file: /nonexistent}}}", "sensors[2].ocpp.auth.password_file"),
    ]:
        with pytest.raises(ConfigError) as e:
            parse_config(ev_config(tmp_path, bad), "ev.yaml", {})
        assert sorted(p.path for p in e.value.problems) == where.split(), (bad, [str(p) for p in e.value.problems])  # fmt: skip
    text = ev_config(tmp_path, "")
    start = text.index("inputs:")
    no_inputs = text[:start] + text[text.index("sensors:"):]
    with pytest.raises(PlanError) as pe:
        build_plan(parse_config(no_inputs, "ev.yaml", {}))
    assert "ocpp sensors need `inputs: {ocpp: …}`" in str(pe.value)
