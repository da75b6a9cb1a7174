"""The `ocpp` source: an OCPP-J tap between each EV charger and its operator (tap.py), a minimal
CSMS for chargers with no operator (standalone.py), and the road from frames to readings
(ingest.py). Settings: `inputs.ocpp` (InputsOcpp) and each sensor's `ocpp:` key (OcppSensor).
Documented in docs/drivers/ocpp.md."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from gateway.ops.metrics import Registry
from gateway.sources.ocpp.ingest import FrameIngest, IngestSensor, Submit
from gateway.sources.ocpp.settings import InputsOcpp, OcppSensor
from gateway.sources.ocpp.tap import Direction, OcppTap, OnFrame

__all__ = [
    "Direction",
    "FrameIngest",
    "InputsOcpp",
    "OcppSensor",
    "OcppTap",
    "OnFrame",
    "build_runnables",
]


def build_runnables(
    inputs: InputsOcpp,
    sensors: Sequence[tuple[str, OcppSensor, Mapping[str, Any]]],  # (sensor id, ocpp:, options)
    submit: Submit,
    metrics: Registry,
    clock: Callable[[], float] = time.time,
) -> list[OcppTap | FrameIngest]:
    """One tap for every charger and one ingest task: what the source registry's `build`
    returns once the pipeline hands it `ctx.submit` and the sensors' plans."""
    ingest = FrameIngest(
        {cfg.charge_box_id: IngestSensor(sid, options) for sid, cfg, options in sensors},
        submit,
        metrics,
        clock,
    )
    tap = OcppTap(inputs, [(sid, cfg) for sid, cfg, _ in sensors], ingest.on_frame, metrics, clock)  # fmt: skip
    return [tap, ingest]
