"""The `ocpp` source: an OCPP-J tap between each EV charger and its operator (tap.py), a minimal
CSMS for chargers with no operator (standalone.py), and the road from frames to readings
(ingest.py). A sensor's `ocpp:` key is `OcppSensor`, the gateway-wide `inputs.ocpp` is
`InputsOcpp` (settings.py). Doc: docs/sources/ocpp.md.

Importing this stays cheap (pydantic models only): websockets is imported by `build`.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from firmware_bridge.driver import MessageDriver
from gateway.sources.base import Loc, Runnable, SourceContext, SourceSpec, duplicates
from gateway.sources.ocpp.settings import InputsOcpp, OcppSensor

if TYPE_CHECKING:
    from gateway.plan import SensorPlan

log = logging.getLogger("gateway.sources.ocpp")

# The OCPP version each driver reads. The tap never narrows what a charger and its operator
# negotiate; frames of another version are relayed but not decoded (and counted).
VERSIONS: dict[str, str] = {"ocpp16j": "ocpp1.6", "ocpp201j": "ocpp2.0.1"}

__all__ = ["SPEC", "VERSIONS", "InputsOcpp", "OcppSensor", "build"]


def build(ctx: SourceContext, plans: list[SensorPlan]) -> list[Runnable]:
    """One tap for every charger, and one task that decodes what it sees."""
    from gateway.sources.ocpp.ingest import FrameIngest, IngestSensor
    from gateway.sources.ocpp.tap import OcppTap

    if not isinstance(ctx.inputs, InputsOcpp):  # inputs_required: the plan refused otherwise
        raise AssertionError("isinstance(ctx.inputs, InputsOcpp)")
    chargers: list[tuple[str, OcppSensor]] = []
    sensors: dict[str, IngestSensor] = {}
    for sp in plans:
        section, driver = sp.section, sp.driver
        if not isinstance(section, OcppSensor) or not isinstance(driver, MessageDriver):
            raise AssertionError("isinstance(section, OcppSensor) and isinstance(driver, MessageDriver)")
        if section.charge_box_id in sensors:
            log.error("chargeBoxId configured for two sensors: the first one gets it", extra={"sensor": sp.id})  # fmt: skip
            continue
        version = VERSIONS.get(driver.name, "")
        sensors[section.charge_box_id] = IngestSensor(sp.id, driver, sp.options, version)
        chargers.append((sp.id, section))
    ingest = FrameIngest(sensors, ctx.submit, ctx.metrics, ctx.clock)
    tap = OcppTap(ctx.inputs, chargers, ingest.on_frame, ctx.metrics, ctx.clock)
    return [tap, ingest]


def describe(section: OcppSensor) -> str:
    if section.mode == "standalone":
        return f"OCPP charger {section.charge_box_id}, the gateway as its CSMS (standalone)"
    return f"OCPP charger {section.charge_box_id}, relayed to {section.upstream}"


def check(plan: SensorPlan) -> list[tuple[Loc, str]]:
    """The sensor's driver must read a version this charger is allowed to speak."""
    section = plan.section
    if not isinstance(section, OcppSensor):
        raise AssertionError("isinstance(section, OcppSensor)")
    version = VERSIONS.get(plan.driver.name)
    if version is None:
        return [((), f"{plan.driver.name} does not read OCPP frames: use ocpp16j or ocpp201j")]
    if version not in section.subprotocols:
        allowed = ", ".join(section.subprotocols)
        return [(("ocpp", "subprotocols"), f"{plan.driver.name} reads {version}, which is not in [{allowed}]")]  # fmt: skip
    return []


def conflicts(plans: list[SensorPlan]) -> list[tuple[str, Loc, str]]:
    """Config problems, so `check --no-devices` finds them too: a driver that cannot read the
    negotiated version, and one chargeBoxId on two sensors (the tap would route it to one)."""
    out = [(sp.id, loc, msg) for sp in plans for loc, msg in check(sp)]

    def box(sp: SensorPlan) -> str:
        if not isinstance(sp.section, OcppSensor):
            raise AssertionError("isinstance(sp.section, OcppSensor)")
        return sp.section.charge_box_id

    return out + duplicates(plans, box, ("ocpp", "charge_box_id"), "this chargeBoxId")


SPEC: SourceSpec = SourceSpec("ocpp", OcppSensor, build, describe, inputs=InputsOcpp, inputs_required=True,
                              conflicts=conflicts, doc="docs/sources/ocpp.md")  # fmt: skip
