"""The gauges that describe the pipeline as a whole: guard and privacy counters copied at scrape
time, outbox depth and each sink's lag read from the outbox by housekeeping."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gateway.ops.metrics import Registry
from gateway.outbox import AsyncOutbox
from gateway.privacy.guard import EgressGuard
from gateway.privacy.stage import PrivacyStage


class PipelineMetrics:
    def __init__(self, m: Registry, guard: EgressGuard, privacy: PrivacyStage,
                 clock: Callable[[], float]) -> None:  # fmt: skip
        self.guard, self.privacy, self.clock = guard, privacy, clock
        self.m_blocked = m.counter("gateway_guard_blocked_total", "Payloads blocked by the egress guard")
        self.m_blocked_sensor = m.counter("gateway_guard_blocked_by_sensor_total",
                                          "Observations blocked by the egress guard, by sensor and reason")  # fmt: skip
        self.m_privacy = m.counter("gateway_privacy_dropped_total", "Fields withheld by the privacy stage")
        self.m_suppressed = m.counter("gateway_privacy_suppressed_windows_total",
                                      "Windows of personal data published without a number")
        self.m_sketched = m.counter("gateway_privacy_sketch_windows_total",
                                    "Windows published as a sketch estimate: a set passed distinct_cap (a flood?)")
        self.m_rotations = m.counter("gateway_privacy_key_rotations_total", "Pseudonym keys zeroed and dropped")
        self.m_held = m.gauge("gateway_privacy_pseudonyms_held", "Pseudonyms in RAM now (open windows, dwell tables)")
        self.m_lag = m.gauge("gateway_sink_lag_observations", "Observations not yet delivered")
        self.m_oldest = m.gauge("gateway_sink_oldest_pending_age_seconds", "Age of the oldest undelivered")
        self.m_depth = m.gauge("gateway_outbox_observations", "Rows in the outbox")
        self.m_bytes = m.gauge("gateway_outbox_bytes", "Approximate payload bytes in the outbox")
        self.m_drops = m.counter("gateway_outbox_dropped_total",
                                 "Observations a sink never got: removed at a bound before it delivered them")  # fmt: skip
        m.collectors.append(self.collect)

    def collect(self) -> None:
        for reason, n in self.guard.blocked.items():
            self.m_blocked.set(n, reason=reason)
        for (sensor, reason), n in self.guard.blocked_by_sensor.items():
            self.m_blocked_sensor.set(n, sensor=sensor, reason=reason)
        for (sensor, reason), n in self.privacy.dropped.items():
            self.m_privacy.set(n, sensor=sensor, reason=reason)
        for sensor, n in self.privacy.suppressed.items():
            self.m_suppressed.set(n, sensor=sensor)
        for sensor, n in self.privacy.sketched.items():
            self.m_sketched.set(n, sensor=sensor)
        self.m_rotations.set(self.privacy.keys.rotations)
        self.m_held.set(self.privacy.holding().pseudonyms)

    async def refresh_outbox(self, outbox: AsyncOutbox, sinks: list[str]) -> None:
        ob = outbox.sync
        now = self.clock()

        def read() -> dict[str, Any]:
            return {
                "lag": {s: ob.lag(s) for s in sinks},
                "oldest": {s: ob.oldest_pending_time(s) for s in sinks},
                "count": ob.count(),
                "bytes": ob.payload_bytes,
                "drops": ob.drops(),
            }

        r = await outbox.call(read)
        for name, lag in r["lag"].items():
            self.m_lag.set(lag, sink=name)
            t = r["oldest"][name]
            self.m_oldest.set(max(0.0, now - t) if t else 0, sink=name)
        self.m_depth.set(r["count"])
        self.m_bytes.set(r["bytes"])
        by_reason: dict[tuple[str, str], int] = {}
        for (sink, _, reason), n in r["drops"].items():
            by_reason[(sink, reason)] = by_reason.get((sink, reason), 0) + n
        for (sink, reason), n in by_reason.items():
            self.m_drops.set(n, sink=sink, reason=reason)
