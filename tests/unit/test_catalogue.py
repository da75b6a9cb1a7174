"""DCAT-AP and CKAN catalogue records for every example config: well-formed, complete, golden.

JSON-LD is checked structurally (every compact IRI's prefix is in the inline @context, values are
JSON-LD value/node objects) and then expanded by a real JSON-LD processor (PyLD), which must
find the dcat:Catalog. UPDATE_GOLDEN=1 rewrites the goldens.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest

from gateway.cli import main
from gateway.config import Config, load_config
from gateway.plan import SitePlan, build_plan
from gateway.standards.catalogue import OGL_V3, ckan_name, ckan_package, dcat_catalogue

ROOT = Path(__file__).parent.parent.parent
CONFIGS = sorted((ROOT / "config").glob("*.yaml"))
GOLDEN = Path(__file__).parent.parent / "golden" / "catalogue"
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"
DCAT, DCT, FOAF = "http://www.w3.org/ns/dcat#", "http://purl.org/dc/terms/", "http://xmlns.com/foaf/0.1/"


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "influx-token").write_text("token-for-tests\n")
    (creds / "sta-token").write_text("sta-token-for-tests\n")
    return {"INFLUX_TOKEN": "influx-secret", "LOCAL_MQTT_PASSWORD": "local-secret",
            "CITY_MQTT_PASSWORD": "city-secret",
            "CREDENTIALS_DIRECTORY": str(creds)}  # fmt: skip


def load(path: Path, env: dict[str, str]) -> tuple[Config, SitePlan]:
    cfg = load_config(path, env=env)
    return cfg, build_plan(cfg)


# --------------------------------------------------------------------------- mini JSON-LD


def expand(node: Any, ctx: dict[str, str]) -> Any:
    """Expand compact IRIs against a flat prefix context; raise on an undefined prefix."""
    if isinstance(node, list):
        return [expand(n, ctx) for n in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "@context":
            continue
        if key.startswith("@"):
            if key == "@type":
                value = [iri(v, ctx) for v in value] if isinstance(value, list) else iri(value, ctx)
            out[key] = value
            continue
        out[iri(key, ctx)] = expand(value, ctx)
    return out


def iri(term: str, ctx: dict[str, str]) -> str:
    prefix, sep, local = term.partition(":")
    if not sep:
        raise AssertionError(f"term {term!r} is not a compact IRI and not in @context")
    if prefix in ctx:
        return ctx[prefix] + local
    if local.startswith("//") or prefix in ("urn", "http", "https", "mqtt", "mqtts", "mailto"):
        return term
    raise AssertionError(f"prefix {prefix!r} of {term!r} is not defined in @context")


def first(node: dict[str, Any], key: str) -> Any:
    assert key in node, f"missing {key} in {node.get('@id')}"
    v = node[key]
    assert v not in ("", [], {}, None), f"empty {key} in {node.get('@id')}"
    return v


def check_dcat_ap(doc: dict[str, Any]) -> None:
    ctx = doc["@context"]
    assert isinstance(ctx, dict) and all(v.startswith("http") for v in ctx.values())
    cat = expand(doc, ctx)
    assert cat["@type"] == DCAT + "Catalog"
    for key in (DCT + "title", DCT + "description", DCT + "publisher", DCAT + "dataset"):
        first(cat, key)
    assert cat[DCT + "publisher"]["@type"] == FOAF + "Agent"
    first(cat[DCT + "publisher"], FOAF + "name")
    for ds in cat[DCAT + "dataset"]:
        assert ds["@type"] == DCAT + "Dataset"
        first(ds, DCT + "title")
        first(ds, DCT + "description")
        for dist in ds.get(DCAT + "distribution", []):
            assert dist["@type"] == DCAT + "Distribution"
            urls = first(dist, DCAT + "accessURL")
            assert all("@id" in u for u in (urls if isinstance(urls, list) else [urls]))
    # cross-check with a real JSON-LD processor (offline: the @context is inline)
    from pyld import jsonld

    expanded = jsonld.expand(doc)
    assert any(DCAT + "Catalog" in node.get("@type", []) for node in expanded)


# --------------------------------------------------------------------------- tests


def test_there_are_example_configs() -> None:
    assert CONFIGS, "config/*.yaml is empty"


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_catalogue_is_dcat_ap_and_matches_golden(path: Path, env: dict[str, str]) -> None:
    cfg, plan = load(path, env)
    doc = dcat_catalogue(cfg, plan)
    check_dcat_ap(json.loads(json.dumps(doc)))
    datasets = doc["dcat:dataset"]
    assert isinstance(datasets, list) and len(datasets) == len(plan.sensors)
    # one distribution per sensor and sink instance that offers it (never the local file)
    got = {d["@id"].rsplit(":", 1)[-1] for ds in datasets for d in ds["dcat:distribution"]}  # type: ignore[index]
    assert got == {name for name, s in cfg.sinks.items() if s.type != "file"}
    golden(GOLDEN / f"{path.stem}.jsonld", doc)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_catalogue_of_every_example_config_passes_semics_dcat_ap_3_shapes_with_ranges(
    path: Path, env: dict[str, str]
) -> None:
    """SEMIC's DCAT-AP 3.0.1 shapes.ttl + range.ttl through pyshacl: not one violation. Of the
    recommended properties (shapes_recommended.ttl) only an end date is missing: the feeds are
    open-ended."""
    from tests.validators import RECOMMENDED, dcat_ap_results

    cfg, plan = load(path, env)
    doc = json.loads(json.dumps(dcat_catalogue(cfg, plan)))
    assert [(r.shape, r.path, r.message) for r in dcat_ap_results(doc)] == []
    warnings = {(r.shape, r.path) for r in dcat_ap_results(doc, RECOMMENDED)}
    assert warnings == {("r5r#PeriodOfTime_Shape", "http://www.w3.org/ns/dcat#endDate")}


def test_catalogue_formats_each_get_their_media_type_format_and_standard(env: dict[str, str]) -> None:
    """A feed in SensorThings, SenML and NGSI-LD and a SensorThings server: one distribution
    each, typed and described by format; NGSI-LD only for sensors a Smart Data Model fits."""
    from gateway.config import parse_config

    cfg = parse_config(
        "gateway: {id: gw-1, borough: camden, location: {lat: 51.5, lon: -0.1}}\n"
        "sensors: [{id: pm-1, driver: pms5003, serial: {port: /dev/ttyUSB0}},"
        " {id: meter-1, driver: eastron_sdm, serial: {port: /dev/ttyUSB1}}]\n"
        "sinks:\n"
        "  st: {type: mqtt, host: b.example}\n"
        "  sm: {type: mqtt, host: b.example, format: senml}\n"
        "  ng: {type: mqtt, host: b.example, format: ngsi-ld, topic_prefix: city/ngsi}\n"
        "  sta: {type: sensorthings, url: 'https://sta.example/v1.1'}\n"
        "  local: {type: file, format: senml}\n"
        "catalogue: {issued: 2026-01-05, contact: {name: Team, email: t@x.example}, homepage: 'https://x.example'}\n",
        "x.yaml", env={})  # fmt: skip
    doc = json.loads(json.dumps(dcat_catalogue(cfg, build_plan(cfg))))
    from tests.validators import dcat_ap_results

    assert dcat_ap_results(doc) == []
    dists = {d["@id"].split(":", 3)[3]: d for ds in doc["dcat:dataset"] for d in ds["dcat:distribution"]}
    assert set(dists) == {"pm-1:st", "pm-1:sm", "pm-1:ng", "pm-1:sta", "meter-1:st", "meter-1:sm", "meter-1:sta"}
    nodes = {n["@id"]: n for n in _all_nodes(doc) if "@type" in n and "@id" in n}
    media = {k: nodes[d["dcat:mediaType"]["@id"]]["@id"].rsplit("media-types/", 1)[1] for k, d in dists.items()}
    assert media["pm-1:st"] == "application/json" and media["pm-1:sm"] == "application/senml+json"
    assert media["pm-1:ng"] == "application/ld+json" and media["pm-1:sta"] == "application/json"
    assert nodes[dists["pm-1:sm"]["dct:conformsTo"]["@id"]]["@type"] == "dct:Standard"
    assert "rfc8428" in dists["pm-1:sm"]["dct:conformsTo"]["@id"]
    assert [u["@id"] for u in dists["pm-1:ng"]["dcat:accessURL"]] == ["mqtts://b.example:8883/city/ngsi/gw-1/pm-1"]
    assert all("streetGatewayKey%20eq%20" in u["@id"] for u in dists["pm-1:sta"]["dcat:accessURL"])


def _all_nodes(doc: Any) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if isinstance(doc, dict):
        out.append(doc)
        for v in doc.values():
            out += _all_nodes(v)
    elif isinstance(doc, list):
        for v in doc:
            out += _all_nodes(v)
    return out


def test_check_names_what_the_catalogue_record_lacks_as_warnings(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Missing recommended properties do not fail `check`; it names each with its key."""
    cfg_file = tmp_path / "gw.yaml"
    head = "gateway: {id: gw-1, borough: camden, location: {lat: 51.5, lon: -0.1}, data_dir: '" + str(tmp_path) + "'}\n"
    cfg_file.write_text(head + "sensors: [{id: pm-1, driver: pms5003, serial: {port: /dev/null}}]\n"
                        "sinks: {file: {}}\ncatalogue: {licence: 'https://example.org/my-licence'}\n")  # fmt: skip
    assert main(["check", "--no-devices", "-c", str(cfg_file)]) == 0
    err = capsys.readouterr().err
    for key in ("catalogue.contact", "catalogue.issued", "catalogue.homepage", "catalogue.licence"):
        assert f"warning: {cfg_file}" in err and key in err, key
    assert f"{cfg_file}:4 catalogue.licence" in err


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_the_catalogue_never_reads_a_secret(path: Path, env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """A data officer describing public feeds has no secrets: the catalogue module must not
    need them. Reading any SecretStr while building the records fails this test."""
    from pydantic import SecretStr

    cfg, plan = load(path, env)

    def refuse(self: SecretStr) -> str:
        raise AssertionError("the catalogue read a secret")

    monkeypatch.setattr(SecretStr, "get_secret_value", refuse)
    dcat_catalogue(cfg, plan)
    ckan_package(cfg, plan)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_ckan_package_is_complete_and_matches_golden(path: Path, env: dict[str, str]) -> None:
    cfg, plan = load(path, env)
    pkg = ckan_package(cfg, plan)
    assert pkg["license_id"] == "uk-ogl"
    assert pkg["name"] == ckan_name(str(pkg["name"])) and 2 <= len(str(pkg["name"])) <= 100
    for key in ("name", "title", "notes", "organization", "tags", "resources"):
        assert pkg[key], key
    for r in pkg["resources"]:  # type: ignore[attr-defined]
        assert r["url"] and r["name"] and r["format"]
    golden(GOLDEN / f"{path.stem}.ckan.json", pkg)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_catalogue_never_names_withheld_fields_or_secrets(path: Path, env: dict[str, str]) -> None:
    cfg, plan = load(path, env)
    text = json.dumps([dcat_catalogue(cfg, plan), ckan_package(cfg, plan)])
    for secret in ("token-for-tests", "influx-secret", "local-secret", "city-secret"):
        assert secret not in text
    loc = cfg.gateway.location
    numbers = {float(x) for x in re.findall(r"-?\d+\.\d+", text)}
    assert cfg.privacy.location_grid_m == 0 or not {loc.lat, loc.lon} & numbers  # only the snapped site
    for sp in plan.sensors.values():
        for f in sp.withheld:
            assert f"{sp.id} {f.key} (" not in text


def test_mqtt_distributions_point_at_sensorthings_observation_topics(env: dict[str, str]) -> None:
    cfg, plan = load(ROOT / "config" / "camden-lamp-column.yaml", env)
    doc = dcat_catalogue(cfg, plan)
    dists = [d for ds in doc["dcat:dataset"] for d in ds["dcat:distribution"]]  # type: ignore[attr-defined]
    mqtt = [d for d in dists if d["@id"].endswith(":mqtt")]
    assert mqtt and all("/Observations" in u["@id"] for d in mqtt for u in d["dcat:accessURL"])
    assert sum(len(d["dcat:accessURL"]) for d in mqtt) == len(plan.datastreams)
    tsdb = [d for d in dists if d["@id"].endswith(":influxdb")]
    assert {m for d in tsdb for m in d["dct:description"].split("measurements ")[1].split(", tags")[0].split(", ")} == {
        prop for sp in plan.sensors.values() for prop in sp.datastreams
    }


def test_licence_and_title_flags(env: dict[str, str]) -> None:
    cfg, plan = load(CONFIGS[0], env)
    cc = "https://creativecommons.org/licenses/by/4.0/"
    doc = dcat_catalogue(cfg, plan, licence=cc, title="My feeds")
    assert doc["dct:license"]["@id"] == cc and doc["dct:title"] == "My feeds"  # type: ignore[index]
    assert ckan_package(cfg, plan, licence=cc)["license_id"] == "cc-by"
    assert dcat_catalogue(cfg, plan)["dct:license"]["@id"] == OGL_V3  # type: ignore[index]


def test_temporal_resolution_is_the_window_for_aggregates(env: dict[str, str]) -> None:
    from gateway.config import parse_config

    cfg = parse_config(
        "gateway: {id: gw-1, borough: camden, location: {lat: 51.5, lon: -0.1}}\n"
        "sensors: [{id: footfall-1, driver: wifi_probe_sniffer, mqtt: {topic: f/1}}]\n"
        "inputs: {mqtt: {host: 127.0.0.1}}\nprivacy: {window: 10m}\n", "x.yaml", env={})  # fmt: skip
    [ds] = dcat_catalogue(cfg, build_plan(cfg))["dcat:dataset"]  # type: ignore[misc]
    assert ds["dcat:temporalResolution"] == {"@value": "PT10M", "@type": "xsd:duration"}


def test_cli_writes_both_files(env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    out = tmp_path / "out"
    assert main(["catalogue", "-c", str(CONFIGS[0]), "--out", str(out)]) == 0
    check_dcat_ap(json.loads((out / "catalogue.jsonld").read_text()))
    assert json.loads((out / "ckan_package.json").read_text())["license_id"] == "uk-ogl"
    assert main(["catalogue", "-c", str(tmp_path / "missing.yaml"), "--out", str(out)]) == 2


def golden(path: Path, actual: object) -> None:
    text = json.dumps(actual, indent=2, ensure_ascii=False) + "\n"
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return
    assert path.exists(), f"missing golden {path}: run with UPDATE_GOLDEN=1"
    assert json.loads(path.read_text(encoding="utf-8")) == actual, (
        f"{path} differs; if intended, rerun with UPDATE_GOLDEN=1 and review the diff"
    )


def test_standards_doc_property_table_is_up_to_date() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("gen_units_table", ROOT / "scripts" / "gen_units_table.py")
    assert spec is not None and spec.loader is not None
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    text = gen.DOC.read_text(encoding="utf-8")
    assert gen.updated(text) == text, "docs/standards.md is stale: run scripts/gen_units_table.py"
    assert "| `mac` |" not in text  # personal fields are never listed as publishable
