"""The Datastream legend: which sensor and property each opaque Datastream id stands for.

Datastream ids are 16-digit numbers (stable, derived from gateway, sensor and property); a person
reading `observations.jsonl`, an MQTT topic or a TSDB tag needs the way back. One table, from the
plan the gateway enforces, for `street-gateway datastreams`, the demo and the status page.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from firmware_bridge import units
from gateway.config import Config
from gateway.model import iso_duration
from gateway.plan import SitePlan


@dataclass(frozen=True)
class LegendRow:
    id: int
    sensor: str
    driver: str
    property: str
    unit: str | None
    aggregation: str  # "none" (every reading) or how a window is summarised
    window: str | None  # ISO 8601 duration of the window, for aggregates
    min_count: int | None  # for counts of people/devices: fewer are published without a number
    description: str
    destinations: tuple[str, ...]
    symbol: str  # the unit as a person reads it: µg/m³, °C, devices
    how: str  # `every reading`, or e.g. `distinct_count per PT1M`


def shown_unit(code: str | None) -> str:
    """What a person reads next to a value: `µg/m³`, `°C`, `devices`; nothing for a bare count."""
    if not code or code == "{count}":
        return ""
    try:
        symbol = units.unit(code).symbol
    except ValueError:
        return code
    return symbol.replace("{", "").replace("}", "")


def legend(cfg: Config, plan: SitePlan) -> list[LegendRow]:
    """One row per Datastream, in config order of sensors. Every sink gets every Datastream."""
    sinks = tuple(name if name == s.type else f"{name} ({s.type})" for name, s in cfg.sinks.items())
    rows = []
    for sp in plan.sensors.values():
        counts = {f.key for f in sp.aggregates if f.aggregation.value in ("distinct_count", "count")}
        for prop, ds in sp.datastreams.items():
            aggregate = ds.aggregation != "none"
            window = iso_duration(sp.window_s) if aggregate else None
            rows.append(LegendRow(
                id=ds.id, sensor=sp.id, driver=sp.driver.name, property=prop, unit=ds.unit,
                aggregation=ds.aggregation, window=window,
                min_count=sp.min_count if prop in counts else None, description=ds.description,
                destinations=sinks, symbol=shown_unit(ds.unit),
                how=f"{ds.aggregation} per {window}" if aggregate else "every reading",
            ))  # fmt: skip
    return rows


def as_json(rows: list[LegendRow]) -> str:
    return json.dumps([{**asdict(r), "destinations": list(r.destinations)} for r in rows], indent=2) + "\n"


def as_table(rows: list[LegendRow]) -> str:
    """A plain-text table that reads in a terminal and in a text editor."""
    head = ("datastream", "sensor", "property", "unit", "published", "destinations")
    body = [(str(r.id), r.sensor, r.property, r.unit or "-", r.how, ", ".join(r.destinations)) for r in rows]
    widths = [max(len(row[i]) for row in (head, *body)) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in (head, *body)]
    return "\n".join(lines) + "\n"


def for_status(rows: list[LegendRow]) -> dict[str, list[dict[str, Any]]]:
    """Per sensor, its Datastreams as the status page lists them."""
    out: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        out.setdefault(r.sensor, []).append({"id": r.id, "property": r.property, "unit": r.unit,
                                             "symbol": r.symbol, "published": r.how,
                                             "min_count": r.min_count})  # fmt: skip
    return out
