"""Estimators: named methods that turn personal-at-source readings into a published number.

A driver's catalogue names one on an aggregate field (`estimator="wifi_footfall"`, with the
decoded fields it reads as `inputs`); the plan looks it up here and the privacy stage runs it.
Adding a method (e.g. BLE footfall) is one entry in `ESTIMATORS`, not a new branch in the stage.

Pure: pseudonyms come in as opaque bytes made by the stage with its RAM-only key; time comes in
as arguments.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from firmware_bridge.base import Value
from gateway.privacy.footfall import (
    OPTION_KEYS,
    FootfallCount,
    FootfallEstimator,
    FootfallOptions,
    FootfallWindow,
    is_locally_administered,
)
from gateway.privacy.sketch import DEFAULT_CAP


@dataclass(frozen=True, slots=True)
class Estimate:
    """A closed window: `value` is published; `contributors` (distinct people or devices behind
    it) is what the disclosure rules look at; `cell_key` is their record keys summed mod 256;
    `sketched` says a set was past its cap (the count is an estimate); `details` feed the
    report and metrics only."""

    value: int
    contributors: int
    details: Mapping[str, int]
    cell_key: int = 0
    sketched: bool = False


class Estimator(Protocol):
    """One per (sensor, aggregate, key epoch): state kept across windows (a dwell table) lives
    here and is dropped with the epoch; each open window has its own accumulator."""

    @property
    def tracked(self) -> int:
        """Pseudonyms kept across windows right now."""
        ...

    def open_window(self) -> Any: ...

    def observe(self, window: Any, pseudonym: bytes, t: float, source: Value,
                inputs: Mapping[str, Value]) -> None: ...  # fmt: skip

    def close(self, window: Any, now: float) -> Estimate: ...

    def held(self, window: Any) -> int:
        """Pseudonyms a window holds right now."""
        ...

    def forget(self) -> None: ...


@dataclass(frozen=True)
class EstimatorSpec:
    name: str
    # the method's settings: the gateway-wide section and a sensor's driver options (overrides)
    configure: Callable[[Mapping[str, Any], Any], Any]
    new: Callable[[Any, int], Estimator]  # (settings, cap of exact pseudonyms per window set)
    describe: Callable[[Any], dict[str, Any]]


class WifiFootfall:
    """Adapter from the stage's call to the footfall method (gateway/privacy/footfall.py)."""

    def __init__(self, options: FootfallOptions, cap: int = DEFAULT_CAP) -> None:
        self.method = FootfallEstimator(options, cap)

    @property
    def tracked(self) -> int:
        return self.method.tracked

    def open_window(self) -> FootfallWindow:
        return self.method.open_window()

    def observe(self, window: Any, pseudonym: bytes, t: float, source: Value,
                inputs: Mapping[str, Value]) -> None:  # fmt: skip
        rssi = inputs.get("rssi")
        flag = inputs.get("randomised")
        self.method.observe_in(
            window,
            pseudonym,
            t,
            float(rssi) if isinstance(rssi, int | float) and not isinstance(rssi, bool) else None,
            flag if isinstance(flag, bool) else is_locally_administered(str(source)),
        )

    def close(self, window: Any, now: float) -> Estimate:
        c: FootfallCount = self.method.close_window(window, now)
        return Estimate(c.estimate, c.distinct, {"fixed": c.fixed, "randomised": c.randomised,
                                                 "dwellers": c.dwellers, "weak": c.weak,
                                                 "probes": c.probes}, c.cell_key, c.sketched)  # fmt: skip

    def held(self, window: Any) -> int:
        return int(window.held)

    def forget(self) -> None:
        self.method.forget()


def _footfall_options(section: Mapping[str, Any], driver_options: Any) -> FootfallOptions:
    base = FootfallOptions.from_mapping(section)
    overrides = {k: getattr(driver_options, k) for k in OPTION_KEYS
                 if getattr(driver_options, k, None) is not None}  # fmt: skip
    return FootfallOptions.from_mapping(overrides, base)


def _describe_footfall(o: FootfallOptions) -> dict[str, Any]:
    return {
        "method": "Wi-Fi probe footfall (UCL/CDRC Smart Street Sensor style)",
        "rssi_min_dbm": o.rssi_min_dbm,
        "dwell_max_s": o.dwell_max_s,
        "randomised_factor": o.randomised_factor,
        "max_tracked": o.max_tracked,
    }


ESTIMATORS: dict[str, EstimatorSpec] = {
    "wifi_footfall": EstimatorSpec("wifi_footfall", _footfall_options, WifiFootfall, _describe_footfall),
}
