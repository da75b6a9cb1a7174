"""The privacy report: what a gateway collects, strips, keeps and sends — from the enforced plan.

Pure: takes the validated `Config` and the `SitePlan` the gateway itself runs on (so the report
cannot drift from what is enforced) and returns a JSON-ready dict; `to_markdown` renders the
same dict for an information-governance lead to attach to a DPIA.
"""

from __future__ import annotations

from typing import Any

from firmware_bridge.base import Aggregation, Field, Role
from gateway.config import Config
from gateway.model import iso
from gateway.model import iso_duration as iso_period
from gateway.plan import SensorPlan, SitePlan, personal_aggregates
from gateway.privacy.disclosure import Statistic, describe
from gateway.privacy.estimators import ESTIMATORS
from gateway.privacy.stage import contributors_of, counts_events, rule_of
from gateway.sinks import SINKS
from gateway.sources import SOURCES

NOT_SET = "not set"
GOVERNANCE_LABELS = {
    "controller": "Data controller",
    "dpo_contact": "Data protection officer (contact)",
    "dpia_reference": "DPIA reference",
    "lawful_basis": "Lawful basis",
    "retention": "Retention",
    "data_sharing_agreement": "Data sharing agreement",
}
_AGG_WORDS = {
    Aggregation.DISTINCT_COUNT: "distinct count per window",
    Aggregation.SUM: "sum per window",
    Aggregation.MEAN: "mean per window",
    Aggregation.COUNT: "count of events per window",
    Aggregation.LAST: "last value per window",
    Aggregation.INCREMENT: "increase of a running total per window",
    Aggregation.MAX: "largest value per window",
}
GUARD_BLOCKS = (
    "MAC addresses in any notation (colons, dashes, dots, bare 12 hex digits, EUI-64)",
    "RFID / OCPP idTag-like hex tokens (8-20 hex digits)",
    "IMEI and IMSI numbers",
    "GB vehicle registrations (current, prefix and suffix formats) and Northern Ireland ones",
    "email addresses, also written as (at) / at",
    "phone numbers (UK and international, with spaces, dashes, dots or brackets)",
    "IPv4 and IPv6 addresses",
    "any text result that is not a word of its Datastream's declared vocabulary (free text)",
    "any Observation key or parameter outside the published vocabulary",
    "Datastream ids not in this plan",
)


def _size(n: int) -> str:
    for unit, f in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= f and n % f == 0:
            return f"{n // f} {unit}"
    return f"{n} bytes"


def _dur(s: float) -> str:
    for unit, f in (("d", 86400), ("h", 3600), ("min", 60)):
        if s >= f and s % f == 0:
            return f"{int(s // f)} {unit}"
    return f"{s:g} s"


def _field_transform(sp: SensorPlan, f: Field) -> tuple[str, bool]:
    """(what happens to this field, does it leave the device as-is or as an aggregate)."""
    zones = ", ".join(sp.zones)
    if f.aggregation is not Aggregation.NONE:
        if sp.suppressed:
            return f"not computed: privacy zone {zones} suppresses this sensor", False
        leaving = {a.key: a for a in sp.aggregates}
        if f.key in leaving:
            return (f"derived in the gateway from `{f.source}`: {_AGG_WORDS[f.aggregation]}; "
                    "leaves as an aggregate"), True  # fmt: skip
        return "derived aggregate not selected in privacy.publish: not computed", False
    if sp.suppressed:
        return f"dropped on arrival: privacy zone {zones} suppresses this sensor", False
    if f in sp.published:
        return "published as-is, per reading", True
    users = [a for a in sp.aggregates if a.source == f.key]
    if f.role is Role.RUNNING_TOTAL and users:
        names = ", ".join(f"`{a.key}`" for a in users)
        return (f"a running total: never leaves as it is, only its increase per window as {names}, "
                "under the disclosure rule"), False  # fmt: skip
    if users:
        names = ", ".join(f"`{a.key}` ({_AGG_WORDS[a.aggregation]})" for a in users)
        if f.personal and any(a.aggregation is Aggregation.DISTINCT_COUNT for a in users):
            return (f"pseudonymised in RAM (HMAC-SHA-256, RAM-only key) to count {names}; "
                    "the value itself never leaves and is forgotten"), False  # fmt: skip
        if f.personal:
            return f"used in RAM only to compute {names}; never leaves as-is", False
        return f"leaves only as {names} (privacy zone {zones})", False
    readers = [a for a in sp.aggregates if a.estimator is not None and f.key in a.inputs]
    if readers:
        names = ", ".join(f"`{a.key}` ({a.estimator})" for a in readers)
        return f"read in RAM by the estimator of {names}, then forgotten; never leaves", False
    if f.role is Role.IDENTIFIER and personal_aggregates(sp):
        names = ", ".join(f"`{a.key}`" for a in personal_aggregates(sp))
        return (f"pseudonymised in RAM (HMAC-SHA-256, RAM-only key) only to tell people or sessions "
                f"apart in {names}; never leaves, forgotten at the window's end"), False  # fmt: skip
    if f.personal:
        return "personal: dropped on arrival, never leaves", False
    return "not selected in privacy.publish: dropped on arrival", False


def disclosure_of(sp: SensorPlan, f: Field) -> dict[str, Any] | None:
    """The disclosure rule of one aggregate Datastream, in figures and in plain words; None
    when it is not derived from personal data."""
    if f not in personal_aggregates(sp):
        return None
    rule = rule_of(sp)
    source = sp.catalogue.field(f.source) if f.source is not None else None
    statistic = Statistic(f.aggregation.value)
    if f.aggregation is Aggregation.INCREMENT:
        statistic = Statistic.COUNT if counts_events(source) else Statistic.SUM
    who, how = contributors_of(f, source)
    words = describe(rule, statistic, who)
    if how:
        words += f" {how}"
    if f.estimator is not None:
        words += (" The figure is the footfall method's estimate (an index of passing devices, "
                  "not of people); the threshold applies to the devices actually heard.")  # fmt: skip
    if f.aggregation in (Aggregation.DISTINCT_COUNT, Aggregation.COUNT) or f.estimator is not None:
        words += (f" Above {sp.distinct_cap:,} of them in one window they are counted by a "
                  "fixed-size sketch (HyperLogLog, standard error 0.81 %), and the figure says "
                  "`estimate: true`.")  # fmt: skip
    return {"policy": rule.policy.value, "threshold": rule.threshold, "contributors": who,
            "expected_abs_error": round(rule.expected_abs_error(), 2) if statistic not in
            (Statistic.SUM, Statistic.MEAN) else None, "rule": words}  # fmt: skip


def _sensor(sp: SensorPlan) -> dict[str, Any]:
    s = sp.sensor
    fields = []
    for f in sp.catalogue.fields:
        transform, leaves = _field_transform(sp, f)
        fields.append({
            "key": f.key, "unit": f.unit, "description": f.description, "personal": f.personal,
            "derived": f.aggregation is not Aggregation.NONE, "transform": transform,
            "leaves": leaves,
        })  # fmt: skip
    words = {f.key: f.vocabulary for f in (*sp.published, *sp.aggregates)}
    datastreams = []
    by_key = {f.key: f for f in (*sp.published, *sp.aggregates)}
    for key, ds in sorted(sp.datastreams.items()):
        agg = ds.aggregation
        windowed = agg != Aggregation.NONE.value
        rule = disclosure_of(sp, by_key[key]) if key in by_key else None
        datastreams.append({
            "id": ds.id, "property": key, "unit": ds.unit,
            "observation_type": ds.observation_type.value.rsplit("/", 1)[-1],
            "aggregation": agg,
            "window": iso_period(sp.window_s) if windowed else None,
            "min_count": rule["threshold"] if rule else None,
            "delay_s": sp.delay_s if windowed else None,
            "description": ds.description,
            # the only words a text result may be; none: no text leaves (default deny)
            "vocabulary": sorted(words.get(key) or ()) if ds.observation_type.name == "CATEGORY" else None,
            "disclosure": rule,
        })  # fmt: skip
    out: dict[str, Any] = {
        "id": s.id,
        "driver": sp.driver.name,
        "device": f"{sp.catalogue.make} {sp.catalogue.model}",
        "description": s.description or sp.catalogue.description,
        "transport": sp.transport,
        "input": SOURCES[sp.transport].describe(sp.section),
        "suppressed": sp.suppressed,
        "privacy_zones": list(sp.zones),
        "fields": fields,
        "datastreams": datastreams,
        "window_s": sp.window_s,
        "min_count": sp.min_count,
        "delay_s": sp.delay_s,
        "disclosure": sp.disclosure,
        "residential": sp.residential,
    }
    estimators = []
    for key, opts in sp.estimators:
        name = next(a.estimator for a in sp.aggregates if a.key == key)
        if name is None:
            raise AssertionError("name is not None")
        estimators.append({"field": key, "estimator": name, **ESTIMATORS[name].describe(opts)})
    if estimators:
        out["estimators"] = estimators
    return out


def _destinations(cfg: Config) -> list[dict[str, Any]]:
    """Each configured sink, as its own module describes it (never with credentials)."""
    out: list[dict[str, Any]] = []
    for name, settings in cfg.sinks.items():
        d = SINKS[settings.type].describe(name, settings, cfg.gateway.data_dir)
        out.append({"sink": name, "type": d.type,
                    "host": "this device" if d.on_device else d.where,
                    "detail": f"{d.what}; {d.on_device}" if d.on_device else d.what,
                    "leaves_device": d.on_device is None, "on_device": d.on_device})  # fmt: skip
    return out


def _on_device(cfg: Config, plan: SitePlan) -> list[dict[str, str]]:
    p, ob = cfg.privacy, cfg.outbox
    windows = [sp.window_s + sp.delay_s for sp in plan.sensors.values() if sp.aggregates]
    longest = _dur(max(windows)) if windows else _dur(p.window)
    items = [
        {"what": "Outbox (non-personal Observations awaiting delivery)",
         "where": f"{cfg.gateway.data_dir / 'outbox.sqlite'} (SQLite, disk)",
         "how_long": f"until every sink has it; at most {_dur(ob.max_age)} and {_size(ob.max_bytes)} "
                     f"(oldest dropped first: {ob.when_full})"},
        {"what": "Pseudonym key (HMAC-SHA-256)",
         "where": "RAM only, never on disk; from os.urandom, new at every start",
         "how_long": f"one key per {_dur(p.salt_rotation)} on the clock, zeroed when its period ends "
                     "whatever the traffic; every pseudonym, dwell entry and record key made with it "
                     "goes with it"},
        {"what": "Raw personal readings (MAC addresses, signal strengths, session data)",
         "where": "RAM only, never on disk, not even for durability",
         "how_long": f"at most one window (up to {longest} including delay); lost on a crash"},
    ]  # fmt: skip
    dwells = [getattr(opts, "dwell_max_s", 0.0) for sp in plan.sensors.values()
              for _, opts in sp.estimators]  # fmt: skip
    if dwells:
        dwell = max(dwells)
        items.append({
            "what": "Footfall dwell table (pseudonyms with first/last seen times)",
            "where": "RAM only, never on disk; bounded in size",
            "how_long": f"until absent for {_dur(dwell)}; all forgotten at every key rotation "
                        f"(every {_dur(cfg.privacy.salt_rotation)})",
        })  # fmt: skip
    for d in _destinations(cfg):
        if d["on_device"]:
            where, _, how_long = str(d["on_device"]).partition(": ")
            items.append({"what": f"Local copy of published Observations (sink {d['sink']})",
                          "where": where, "how_long": how_long})  # fmt: skip
    items.append({"what": "Logs", "where": "stderr / journald",
                  "how_long": "per the host's journald settings; identifiers scrubbed, secrets masked"})  # fmt: skip
    return items


def _location(cfg: Config, plan: SitePlan) -> dict[str, Any]:
    p = cfg.privacy
    if plan.location is None:
        return {"published": None, "method": "withheld: the site is inside a suppress zone"}
    if p.street_segment:
        how = ("midpoint of the configured street segment" if p.street_segment_publish == "midpoint"
               else f"projected onto the configured street segment, {plan.location_grid_m:g} m bins")  # fmt: skip
    else:
        how = f"centre of its {plan.location_grid_m:g} m grid cell"
    lon, lat = plan.location
    return {"published": {"lon": lon, "lat": lat}, "method": how,
            "zones": [{"name": z.name, "action": z.action, "sensors": z.sensors or "all"}
                      for z in p.zones]}  # fmt: skip


def build_report(cfg: Config, plan: SitePlan, *, generated_at: float, source: str = "") -> dict[str, Any]:
    """Everything the report says, as JSON-ready data."""
    g = cfg.gateway
    gov = cfg.privacy.governance
    return {
        "title": f"Privacy report: gateway {g.id}",
        "generated_at": iso(generated_at),
        "config": source,
        "gateway": {"id": g.id, "borough": g.borough, "name": g.name or NOT_SET},
        "governance": {k: (getattr(gov, k) or NOT_SET) for k in GOVERNANCE_LABELS},
        "privacy_defaults": {
            "window": iso_period(cfg.privacy.window), "min_count": cfg.privacy.min_count,
            "disclosure": cfg.privacy.disclosure, "distinct_cap": cfg.privacy.distinct_cap,
            "location_grid_m": cfg.privacy.location_grid_m,
            "salt_rotation": _dur(cfg.privacy.salt_rotation),
        },
        "location": _location(cfg, plan),
        "sensors": [_sensor(sp) for sp in plan.sensors.values()],
        "destinations": _destinations(cfg),
        "on_device": _on_device(cfg, plan),
        "egress_guard_blocks": list(GUARD_BLOCKS),
        "data_flow": data_flow_text(cfg, plan),
    }


# --------------------------------------------------------------------------- rendering


def _mid(prefix: str, name: str) -> str:
    return prefix + "".join(c if c.isalnum() else "_" for c in name)


def _label(text: str) -> str:
    return text.replace('"', "'")


def data_flow_mermaid(cfg: Config, plan: SitePlan) -> str:
    lines = ["flowchart LR", '  subgraph device["On the gateway"]']
    for sp in plan.sensors.values():
        personal = [f.key for f in sp.catalogue.fields if f.personal]
        tag = f"personal: {', '.join(personal)}" if personal else "no personal fields"
        lines.append(f'    {_mid("s_", sp.id)}["{_label(sp.id)} ({sp.driver.name})<br/>{tag}"] --> privacy')
    lines += [
        '    privacy["Privacy stage (RAM): drop personal fields,<br/>pseudonymise, aggregate, '
        'disclosure control<br/>(threshold on contributors, cell key / 10-5)"]',
        '    privacy --> guard["Egress guard: blocks identifier-shaped values"]',
        f'    guard --> outbox[("Outbox on disk: non-personal only,<br/>max {_dur(cfg.outbox.max_age)}")]',
        '    privacy -. "dropped: personal raw values" .-> bin(["forgotten"])',
        "  end",
    ]
    for d in _destinations(cfg):
        node = _mid("d_", d["sink"])
        lines.append(f'  outbox --> {node}["{d["sink"]}: {_label(d["host"])}"]')
    return "\n".join(lines)


def data_flow_text(cfg: Config, plan: SitePlan) -> str:
    lines = ["sensors:"]
    for sp in plan.sensors.values():
        personal = [f.key for f in sp.catalogue.fields if f.personal]
        out = ", ".join(sorted(sp.datastreams)) or "nothing"
        lines.append(f"  {sp.id} ({sp.driver.name}) -> privacy stage"
                     f"  [personal, RAM only: {', '.join(personal) or 'none'}]  -> publishes: {out}")  # fmt: skip
    lines += [
        "privacy stage (RAM) -> egress guard -> outbox (disk, non-personal only)",
        "outbox ->",
    ]
    for d in _destinations(cfg):
        lines.append(f"  {d['sink']}: {d['host']} ({d['detail']})")
    if not cfg.sinks:
        lines.append("  (no sink configured)")
    return "\n".join(lines)


def _cell(v: Any) -> str:
    if v is None:
        return "—"
    return str(v).replace("|", "\\|").replace("\n", " ")


def to_markdown(report: dict[str, Any], mermaid: str) -> str:
    r = report
    out: list[str] = [f"# {r['title']}", ""]
    out.append(f"Generated {r['generated_at']} from `{r['config']}` — the same configuration and plan "
               "the gateway enforces. Personal data is removed on the device; only the Datastreams "
               "listed below leave it.")  # fmt: skip
    out += ["", "## Governance", "", "| item | value |", "| --- | --- |"]
    for k, label in GOVERNANCE_LABELS.items():
        v = r["governance"][k]
        out.append(f"| {label} | {'**not set**' if v == NOT_SET else _cell(v)} |")
    g = r["gateway"]
    out += ["", "## Site", "", f"- Gateway `{g['id']}`, borough {g['borough']}, name: {g['name']}"]
    loc = r["location"]
    if loc["published"] is None:
        out.append(f"- Location: {loc['method']}")
    else:
        p = loc["published"]
        out.append(f"- Published location: {p['lat']}, {p['lon']} ({loc['method']})")
    for z in loc.get("zones", []):
        out.append(f"- Privacy zone `{z['name']}`: {z['action']}, sensors: {z['sensors']}")
    d = r["privacy_defaults"]
    out.append(f"- Defaults: window {d['window']}, min_count {d['min_count']}, disclosure policy "
               f"`{d['disclosure']}`, key rotation {d['salt_rotation']}")  # fmt: skip
    out += ["", "## Data flow", "", "```mermaid", mermaid, "```", "", "Plain text:", "", "```",
            r["data_flow"], "```"]  # fmt: skip
    out += ["", "## Sensors"]
    for s in r["sensors"]:
        out += ["", f"### `{s['id']}` — {s['driver']} ({_cell(s['device'])})", ""]
        out.append(f"{_cell(s['description'])}. Input: {s['transport']} `{s['input']}`.")
        if s["suppressed"]:
            out += ["", f"**Suppressed by privacy zone {', '.join(s['privacy_zones'])}: nothing "
                        "from this sensor leaves the device.**"]  # fmt: skip
        elif s["privacy_zones"]:
            out += ["", f"Coarsened by privacy zone {', '.join(s['privacy_zones'])}."]
        if s["residential"]:
            out += ["", "Residential bay: per-reading properties leave only as the last value of "
                        f"each {_dur(s['window_s'])} window, {_dur(s['delay_s'])} after it ends; "
                        "the EVSE status with its occupancy states (available, charging, reserved, "
                        "blocked) published as UNKNOWN, so it does not show when the household is in."]  # fmt: skip
        out += ["", "What is collected and what happens to it:", "",
                "| field | unit | personal | transform | leaves the device |",
                "| --- | --- | --- | --- | --- |"]  # fmt: skip
        for f in s["fields"]:
            name = f"`{f['key']}`" + (" (derived)" if f["derived"] else "")
            out.append(f"| {name} | {_cell(f['unit'])} | {'**yes**' if f['personal'] else 'no'} | "
                       f"{_cell(f['transform'])} | {'yes' if f['leaves'] else '**no**'} |")  # fmt: skip
        out += ["", "What leaves (SensorThings Datastreams):", ""]
        if not s["datastreams"]:
            out.append("Nothing.")
        else:
            out += ["| Datastream id | property | unit | aggregation | window | min_count | delay |",
                    "| --- | --- | --- | --- | --- | --- | --- |"]  # fmt: skip
            for ds in s["datastreams"]:
                out.append(f"| {ds['id']} | `{ds['property']}` | {_cell(ds['unit'])} | "
                           f"{ds['aggregation']} | {_cell(ds['window'])} | {_cell(ds['min_count'])} | "
                           f"{_cell(ds['delay_s'])} |")  # fmt: skip
            for ds in s["datastreams"]:
                if ds["vocabulary"] is not None:
                    words = ", ".join(f"`{w}`" for w in ds["vocabulary"]) or "none: no text leaves"
                    out.append(f"\n`{ds['property']}` leaves only as one of these words: {words}.")
        rules = [ds for ds in s["datastreams"] if ds["disclosure"]]
        if rules:
            out += ["", "Disclosure rule per Datastream (what a single person can and cannot be "
                        "inferred from it):", ""]  # fmt: skip
            for ds in rules:
                rl = ds["disclosure"]
                err = (f", expected error ±{rl['expected_abs_error']:g}"
                       if rl["expected_abs_error"] else "")  # fmt: skip
                out.append(f"- `{ds['property']}` ({ds['id']}; policy `{rl['policy']}`, threshold "
                           f"{rl['threshold']} {rl['contributors']}{err}): {_cell(rl['rule'])}")  # fmt: skip
        for m in s.get("estimators", []):
            if m["estimator"] == "wifi_footfall":
                out += ["", f"Footfall method: probes weaker than {m['rssi_min_dbm']:g} dBm ignored; "
                            f"devices seen across more than {_dur(m['dwell_max_s'])} removed as "
                            f"residents/staff; randomised MACs scaled by {m['randomised_factor']:g}. "
                            "Windows below the threshold are published as `result: null` with "
                            "`parameters.suppressed: true`."]  # fmt: skip
            else:
                out += ["", f"`{m['field']}` is estimated by `{m['estimator']}`: {m}"]
    out += ["", "## Destinations", "", "| sink | host | detail | leaves the device |",
            "| --- | --- | --- | --- |"]  # fmt: skip
    for dst in r["destinations"]:
        out.append(f"| {dst['sink']} | {_cell(dst['host'])} | {_cell(dst['detail'])} | "
                   f"{'yes' if dst['leaves_device'] else 'no'} |")  # fmt: skip
    if not r["destinations"]:
        out.append("| — | — | no sink configured | — |")
    out += ["", "## What stays on the device, and for how long", "", "| what | where | how long |",
            "| --- | --- | --- |"]  # fmt: skip
    for item in r["on_device"]:
        out.append(f"| {_cell(item['what'])} | {_cell(item['where'])} | {_cell(item['how_long'])} |")
    out += ["", "## Egress guard", "",
            "Independently of the privacy stage, every record and payload about to leave is "
            "checked; anything matching the following is blocked, counted and logged without "
            "its value (fail closed):", ""]  # fmt: skip
    out += [f"- {b}" for b in r["egress_guard_blocks"]]
    out += ["", "See docs/privacy.md for the method, disclosure control (thresholds, the cell key "
                "and 10-5 policies, measured errors and attack rates) and the crash trade-off.", ""]  # fmt: skip
    return "\n".join(out)


def render(cfg: Config, plan: SitePlan, *, generated_at: float, source: str = "") -> tuple[str, dict[str, Any]]:
    """(Markdown, JSON data) of the report."""
    report = build_report(cfg, plan, generated_at=generated_at, source=source)
    return to_markdown(report, data_flow_mermaid(cfg, plan)), report
