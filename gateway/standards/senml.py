"""SenML JSON (RFC 8428) export of Observations, with RFC 8798 secondary units. Pure.

For consumers that speak SenML rather than SensorThings (LwM2M, CoAP tooling); the `mqtt` and
`file` sinks offer it as `format: senml`. One pack per sensor: `bn` names gateway and sensor,
`n` the property, `t` is absolute epoch seconds. A pack using a secondary unit (`ug/m3`, `ppm`,
`kWh`, `dBm`…) declares `bver: 26` — RFC 9100 feature code 4 (secondary units) on top of base
version 10 — so an RFC 8428-only reader refuses that pack instead of misreading the unit; packs
of sensors with primary units only carry no `bver` and any RFC 8428 reader takes them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from firmware_bridge import units
from firmware_bridge.units import SenmlUnit
from gateway.model import Datastream, Observation

BASE_VERSION = 10
SECONDARY_UNITS_FEATURE = 1 << 4  # RFC 9100 feature code 4
BVER_SECONDARY = BASE_VERSION + SECONDARY_UNITS_FEATURE  # 26

Record = dict[str, object]


HUMIDITY = {"humidity", "relative_humidity"}


def senml_unit(ucum: str | None, prop: str) -> SenmlUnit | None:
    """The SenML unit for a published UCUM code (firmware_bridge.units decides)."""
    return units.senml_unit(ucum, humidity=prop in HUMIDITY)


def base_name(gateway_id: str, sensor_id: str) -> str:
    return f"urn:dev:street-gateway:{gateway_id}:{sensor_id}:"


def _number(v: float) -> float | int:
    """Scaled values keep 9 significant digits: avoids 0.30000000000000004 in goldens."""
    if isinstance(v, int):
        return v
    r = float(f"{v:.9g}")
    return int(r) if r.is_integer() and abs(r) < 2**53 else r


def _seconds(t: float) -> float | int:
    """Epoch seconds at millisecond precision (as the Observation's ISO times), int if whole."""
    r = round(t, 3)
    return int(r) if r.is_integer() else r


def record(obs: Observation, ds: Datastream | None) -> Record | None:
    """One SenML record, or None when SenML cannot carry it: a suppressed count has no value,
    and RFC 8428 requires every record to have one."""
    if obs.result is None:
        return None
    rec: Record = {"n": obs.property}
    unit = senml_unit(ds.unit if ds else None, obs.property)
    r = obs.result
    if isinstance(r, bool):
        rec["vb"] = r
    elif isinstance(r, str):
        rec["vs"] = r
    else:
        if unit is not None:
            rec["u"] = unit.symbol
            rec["v"] = _number(r * unit.factor) if unit.factor != 1.0 else r
        else:
            rec["v"] = r
    # SenML has no intervals: `t` is the start (as in the time-series store) and `ut` the
    # window length, i.e. when the next value is due.
    rec["t"] = _seconds(obs.phenomenon_time)
    if obs.phenomenon_end is not None:
        rec["ut"] = _seconds(obs.phenomenon_end - obs.phenomenon_time)
    return rec


def packs(
    gateway_id: str, observations: Iterable[Observation], datastreams: Mapping[int, Datastream]
) -> list[tuple[str, list[Record]]]:
    """One SenML pack (a JSON array) per sensor, in the order sensors first appear: its first
    record carries the sensor's `bn`, and `bver: 26` only if this pack uses a secondary unit —
    so one sensor's `ug/m3` never makes an RFC 8428-only reader refuse another sensor's data."""
    groups: dict[str, list[Record]] = {}
    secondary: set[str] = set()
    for obs in observations:
        ds = datastreams.get(obs.datastream_id)
        rec = record(obs, ds)
        if rec is None:
            continue
        unit = senml_unit(ds.unit if ds else None, obs.property)
        if "v" in rec and unit is not None and unit.secondary:
            secondary.add(obs.sensor_id)
        groups.setdefault(obs.sensor_id, []).append(rec)
    out: list[tuple[str, list[Record]]] = []
    for sensor, records in groups.items():
        head: Record = {"bver": BVER_SECONDARY} if sensor in secondary else {}
        records[0] = {**head, "bn": base_name(gateway_id, sensor), **records[0]}
        out.append((sensor, records))
    return out
