"""A small Prometheus-text metrics registry: counters and gauges with labels, no dependency.

Label values come from config (sensor ids, sink names, reasons), never from device data.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

Labels = tuple[tuple[str, str], ...]


@dataclass
class Metric:
    name: str
    help: str
    kind: str  # "counter" or "gauge"
    values: dict[Labels, float] = field(default_factory=dict)

    def inc(self, n: float = 1, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        self.values[key] = self.values.get(key, 0.0) + n

    def set(self, v: float, **labels: str) -> None:
        self.values[tuple(sorted(labels.items()))] = float(v)

    @staticmethod
    def key(**labels: str) -> Labels:
        """The labels as `inc_key`/`set_key` take them: made once for a per-message series."""
        return tuple(sorted(labels.items()))

    def inc_key(self, key: Labels, n: float = 1) -> None:
        """`inc` for labels made a key once (`key`): no sorting per message."""
        self.values[key] = self.values.get(key, 0.0) + n

    def set_key(self, key: Labels, v: float) -> None:
        self.values[key] = float(v)

    def get(self, **labels: str) -> float:
        return self.values.get(tuple(sorted(labels.items())), 0.0)

    def total(self) -> float:
        return sum(self.values.values())


def _esc(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _esc_help(v: str) -> str:
    return v.replace("\\", "\\\\").replace("\n", "\\n")


def _num(v: float) -> str:
    """Full precision (timestamps need ten digits; `:g` keeps six) in Prometheus spelling."""
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    if v.is_integer() and abs(v) < 2**53:
        return str(int(v))
    return repr(v)


class Registry:
    def __init__(self) -> None:
        self.metrics: dict[str, Metric] = {}
        self.collectors: list[Callable[[], None]] = []  # refresh gauges before rendering

    def counter(self, name: str, help: str) -> Metric:
        return self.metrics.setdefault(name, Metric(name, help, "counter"))

    def gauge(self, name: str, help: str) -> Metric:
        """A `_total` name is a counter by Prometheus convention, also when its value is copied
        from a cumulative count rather than incremented here: typed so, rate() works on it."""
        kind = "counter" if name.endswith("_total") else "gauge"
        return self.metrics.setdefault(name, Metric(name, help, kind))

    def render(self) -> str:
        for collect in self.collectors:
            collect()
        out: list[str] = []
        for m in sorted(self.metrics.values(), key=lambda m: m.name):
            out.append(f"# HELP {m.name} {_esc_help(m.help)}")
            out.append(f"# TYPE {m.name} {m.kind}")
            for labels, v in sorted(m.values.items()):
                lab = ",".join(f'{k}="{_esc(val)}"' for k, val in labels)
                out.append(f"{m.name}{{{lab}}} {_num(v)}" if lab else f"{m.name} {_num(v)}")
        return "\n".join(out) + "\n"
