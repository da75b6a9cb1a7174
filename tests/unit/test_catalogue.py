"""DCAT-AP and CKAN catalogue records for every example config: well-formed, complete, golden.

JSON-LD is checked structurally (every compact IRI's prefix is in the inline @context, values are
JSON-LD value/node objects) and then expanded by a real JSON-LD processor (PyLD), which must
find the dcat:Catalog. UPDATE_GOLDEN=1 rewrites the goldens.
"""

from __future__ import annotations

import json
import os
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
                value = iri(value, ctx)
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
    if local.startswith("//") or prefix in ("urn", "http", "https", "mqtt", "mqtts"):
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
            assert "@id" in first(dist, DCAT + "accessURL")
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
    n_dist = sum(len(d["dcat:distribution"]) for d in datasets)
    sinks = len(cfg.sinks_of_type("mqtt")) + len(cfg.sinks_of_type("influxdb"))
    assert n_dist == sinks * len(plan.datastreams)
    golden(GOLDEN / f"{path.stem}.jsonld", doc)


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
    assert f"{loc.lat}" not in text or cfg.privacy.location_grid_m == 0
    for sp in plan.sensors.values():
        for f in sp.withheld:
            assert f"{sp.id} {f.key} (" not in text


def test_mqtt_distributions_point_at_sensorthings_observation_topics(env: dict[str, str]) -> None:
    cfg, plan = load(ROOT / "config" / "camden-lamp-column.yaml", env)
    doc = dcat_catalogue(cfg, plan)
    dists = [d for ds in doc["dcat:dataset"] for d in ds["dcat:distribution"]]  # type: ignore[attr-defined]
    mqtt = [d for d in dists if d["@id"].endswith(":mqtt")]
    assert mqtt and all("/Observations" in d["dcat:accessURL"]["@id"] for d in mqtt)
    tsdb = [d for d in dists if d["@id"].endswith(":tsdb")]
    assert {d["dct:description"].split("measurement ")[1].split(",")[0] for d in tsdb} == {
        prop for sp in plan.sensors.values() for prop in sp.datastreams
    }


def test_licence_and_title_flags(env: dict[str, str]) -> None:
    cfg, plan = load(CONFIGS[0], env)
    cc = "https://creativecommons.org/licenses/by/4.0/"
    doc = dcat_catalogue(cfg, plan, licence=cc, title="My feeds")
    assert doc["dct:license"] == {"@id": cc} and doc["dct:title"] == "My feeds"
    assert ckan_package(cfg, plan, licence=cc)["license_id"] == "cc-by"
    assert dcat_catalogue(cfg, plan)["dct:license"] == {"@id": OGL_V3}


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
