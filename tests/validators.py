"""Official validators over the copies in tests/data: Smart Data Models JSON Schemas (offline,
every `$ref` resolved to a copy), the published NGSI-LD @contexts through a JSON-LD processor
(PyLD), RFC 8428's CDDL through `cddl-verifier`, and SEMIC's DCAT-AP 3.0.1 SHACL shapes through
pyshacl.

    python -m tests.validators [catalogue.jsonld …]   # DCAT-AP violations grouped by shape

Without arguments it validates the catalogue of every example config in `config/`.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.validators import validator_for
from referencing import Registry, Resource

DATA = Path(__file__).parent / "data"
SDM = DATA / "smart-data-models"
DCAT_AP = DATA / "dcat-ap-3.0.1"
RFC8428 = DATA / "rfc8428"
NGSI_LD = DATA / "ngsi-ld"

SDM_MODELS = {
    "AirQualityObserved": SDM / "dataModel.Environment" / "AirQualityObserved" / "schema.json",
    "EVChargingStation": SDM / "dataModel.Transportation" / "EVChargingStation" / "schema.json",
    "CrowdFlowObserved": SDM / "dataModel.Transportation" / "CrowdFlowObserved" / "schema.json",
}
# where the schemas point, and the copy that stands in for it
SDM_REFS = {
    "https://smart-data-models.github.io/data-models/common-schema.json": SDM / "data-models" / "common-schema.json",
    "https://raw.githubusercontent.com/smart-data-models/dataModel.Environment/master/Environment-schema.json":
        SDM / "dataModel.Environment" / "Environment-schema.json",
}  # fmt: skip


def sdm_validator(model: str) -> Any:
    """A JSON Schema validator for a Smart Data Model (key-values representation) that never
    touches the network: an unknown remote `$ref` is an error, not a download."""
    schema = json.loads(SDM_MODELS[model].read_text())
    resources = [(url, Resource.from_contents(json.loads(path.read_text()))) for url, path in SDM_REFS.items()]

    def refuse(uri: str) -> Resource[Any]:
        raise LookupError(f"{uri} is not copied into tests/data/smart-data-models")

    registry: Registry[Any] = Registry(retrieve=refuse).with_resources(resources)  # type: ignore[call-arg]
    cls = validator_for(schema, default=Draft202012Validator)
    return cls(schema, registry=registry, format_checker=cls.FORMAT_CHECKER)


# ----------------------------------------------------------------------------- SenML (RFC 8428)


def senml_validator() -> Any:
    """RFC 8428 section 11's CDDL (common part and JSON labels), as `cddl-verifier` parses it.
    (pycddl 0.6 rejects every float where the CDDL says `number`: anweiss/cddl PR 646.)"""
    from cddl_verifier import Validator

    return Validator((RFC8428 / "senml.cddl").read_text() + "\n" + (RFC8428 / "senml-json.cddl").read_text())


def senml_errors(pack: Any, validator: Any = None) -> list[str]:
    """What RFC 8428's CDDL says against a SenML pack in its JSON form (decoded JSON values:
    the CDDL describes the JSON representation through the labels of senml-json.cddl)."""
    v = validator or senml_validator()
    return [str(e) for e in v.validate(json.loads(json.dumps(pack)), "SenML-Pack").errors]


# ----------------------------------------------------------------------------- NGSI-LD


CONTEXTS = {
    "https://smart-data-models.github.io/dataModel.Environment/context.jsonld": SDM / "dataModel.Environment" / "context.jsonld",
    "https://smart-data-models.github.io/dataModel.Transportation/context.jsonld": SDM / "dataModel.Transportation" / "context.jsonld",
    "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.3.jsonld": NGSI_LD / "ngsi-ld-core-context-v1.3.jsonld",
}  # fmt: skip
DEFAULT_VOCAB = "https://uri.etsi.org/ngsi-ld/default-context/"


def _context_document(url: str, options: Any = None) -> dict[str, Any]:
    """PyLD's document loader over the copies: an unknown context fails, never downloads."""
    if url not in CONTEXTS:
        raise LookupError(f"{url} is not copied into tests/data")
    text = CONTEXTS[url].read_text()
    if text.startswith("https://"):  # Orion-LD's copies open with the URL they stand for
        text = text.split("\n", 1)[1]
    return {"contextUrl": None, "documentUrl": url, "document": json.loads(text)}


def ngsi_ld_expanded(entity: dict[str, Any]) -> list[dict[str, Any]]:
    """The entity expanded by a JSON-LD processor against the published @contexts it names."""
    from pyld import jsonld

    return list(jsonld.expand(entity, {"documentLoader": _context_document}))


def unresolved_terms(entity: dict[str, Any]) -> list[str]:
    """Terms of the entity that no @context it names defines: in expansion they fall to the
    core context's default vocabulary (`@vocab`), which names nothing."""
    expanded = ngsi_ld_expanded(entity)
    iris: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, list):
            for n in node:
                walk(n)
        elif isinstance(node, dict):
            for k, v in node.items():
                if not k.startswith("@"):
                    iris.add(k)
                elif k == "@type":
                    iris.update(v if isinstance(v, list) else [v])
                walk(v)

    walk(expanded)
    out = sorted(i for i in iris if i.startswith(DEFAULT_VOCAB))
    if not expanded:
        out.append("(the whole entity vanished in expansion)")
    return out


def key_values(entity: dict[str, Any]) -> dict[str, Any]:
    """An entity in NGSI-LD normalised form as the key-values form the Smart Data Models
    schemas describe (`options=keyValues` in NGSI-LD): each attribute's value, DateTime
    values as their strings, no @context."""
    out: dict[str, Any] = {}
    for k, v in entity.items():
        if k == "@context":
            continue
        if isinstance(v, dict) and v.get("type") in ("Property", "GeoProperty", "Relationship"):
            value = v.get("object") if v["type"] == "Relationship" else v.get("value")
            if isinstance(value, dict) and value.get("@type") == "DateTime":
                value = value["@value"]
            out[k] = value
        else:
            out[k] = v
    return out


def sdm_errors(entity: dict[str, Any]) -> list[str]:
    """The Smart Data Models JSON Schema of the entity's type on its key-values form."""
    v = sdm_validator(str(entity["type"]))
    return [f"{list(e.absolute_path)}: {e.message}" for e in v.iter_errors(key_values(entity))]


# ----------------------------------------------------------------------------- DCAT-AP


@dataclass(frozen=True)
class ShaclResult:
    severity: str  # Violation, Warning, Info
    shape: str  # the node shape that holds the failing constraint (or the property shape)
    focus: str
    path: str
    message: str


SHAPES = ("shapes.ttl", "range.ttl")
RECOMMENDED = ("shapes_recommended.ttl",)


def dcat_ap_results(doc: dict[str, Any] | str, shape_files: tuple[str, ...] = SHAPES) -> list[ShaclResult]:
    """Validate a DCAT-AP JSON-LD document (dict or text) with pyshacl against SEMIC's shapes.
    The document's @context must be inline (no network)."""
    from pyshacl import validate
    from rdflib import Graph, Namespace, URIRef
    from rdflib.namespace import RDF

    data = Graph().parse(data=doc if isinstance(doc, str) else json.dumps(doc), format="json-ld")
    shapes = Graph()
    for name in shape_files:
        shapes.parse(DCAT_AP / name, format="turtle")
    _, report, _ = validate(data, shacl_graph=shapes, inference="none", advanced=True, allow_warnings=True)
    sh = Namespace("http://www.w3.org/ns/shacl#")
    owners: dict[Any, Any] = {}  # property shape -> the node shape that lists it
    for node, prop in shapes.subject_objects(sh.property):
        owners[prop] = node
    out: list[ShaclResult] = []
    for r in report.subjects(RDF.type, sh.ValidationResult):
        source = report.value(r, sh.sourceShape)
        owner = owners.get(source, source)
        label = shapes.value(owner, URIRef("http://www.w3.org/2000/01/rdf-schema#label"))
        # e.g. range.ttl#Distribution_Shape: shapes.ttl and range.ttl both name a Distribution_Shape
        name = str(owner).rsplit("/", 1)[-1] if isinstance(owner, URIRef) else str(label or "(anonymous)")
        out.append(ShaclResult(
            severity=str(report.value(r, sh.resultSeverity)).rsplit("#", 1)[-1],
            shape=name,
            focus=str(report.value(r, sh.focusNode)),
            path=str(report.value(r, sh.resultPath)),
            message=str(report.value(r, sh.resultMessage)),
        ))  # fmt: skip
    return out


def grouped(results: list[ShaclResult]) -> Counter[tuple[str, str, str]]:
    """(severity, shape, path) -> how many results."""
    return Counter((r.severity, r.shape, r.path) for r in results)


def _example_catalogues() -> dict[str, dict[str, Any]]:
    """The `catalogue` output of every example config (secrets filled with placeholders)."""
    import tempfile

    from gateway.config import load_config
    from gateway.plan import build_plan
    from gateway.standards.catalogue import dcat_catalogue

    root = Path(__file__).parent.parent
    out: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "influx-token").write_text("placeholder\n")
        (Path(tmp) / "sta-token").write_text("placeholder\n")
        env = {"INFLUX_TOKEN": "x", "LOCAL_MQTT_PASSWORD": "x", "CITY_MQTT_PASSWORD": "x",
               "CREDENTIALS_DIRECTORY": tmp}  # fmt: skip
        for path in sorted((root / "config").glob("*.yaml")):
            cfg = load_config(path, env=env)
            out[path.name] = dcat_catalogue(cfg, build_plan(cfg))
    return out


def main(argv: list[str]) -> int:
    docs = {a: json.loads(Path(a).read_text()) for a in argv} if argv else _example_catalogues()
    for name, doc in docs.items():
        for label, files in (("shapes.ttl + range.ttl", SHAPES), ("shapes_recommended.ttl", RECOMMENDED)):
            results = dcat_ap_results(doc, files)
            print(f"{name}: {len(results)} results against {label}")
            for (severity, shape, path), n in sorted(grouped(results).items(), key=lambda kv: (-kv[1], kv[0])):
                print(f"  {n:4d}  {severity:9s} {shape:28s} {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
