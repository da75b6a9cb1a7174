"""The InfluxDB sink's optional cap on observations/s (`max_rate`): none by default, so a
backlog drains as fast as the store takes it; when set, a token bucket that lets a second's worth
go at once and then spaces writes. The clock and the sleep are the test's, so nothing here
depends on wall time."""

from __future__ import annotations

import asyncio

import pytest

from gateway.privacy.guard import EgressGuard
from gateway.sinks import influxdb
from gateway.sinks.influxdb import InfluxSink, Settings


class FakeTime:
    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, s: float) -> None:
        self.slept.append(s)
        self.now += s


def paced(monkeypatch: pytest.MonkeyPatch, settings: Settings, writes: list[int | float]) -> list[float]:
    """Sleeps the sink asks for before each write of n observations; a float in `writes` is
    idle time instead (seconds on the test's clock)."""
    clock = FakeTime()
    monkeypatch.setattr(influxdb.time, "monotonic", clock.monotonic)
    monkeypatch.setattr(influxdb.asyncio, "sleep", clock.sleep)
    sink = InfluxSink(settings, site_tags={"gateway": "g", "borough": "camden"}, guard=EgressGuard())

    async def go() -> None:
        for n in writes:
            if isinstance(n, float):
                clock.now += n
            else:
                await sink._pace(n)

    asyncio.run(go())
    return clock.slept


def test_no_cap_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings(url="http://127.0.0.1:8428", org="o", bucket="b")
    assert settings.max_rate is None
    assert paced(monkeypatch, settings, [5000] * 100) == []


def test_a_cap_spaces_writes_and_credits_at_most_a_second_of_idle(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings(url="http://127.0.0.1:8428", org="o", bucket="b", max_rate=10000)
    # from start, each 5,000 waits its 0.5 s: 10,000 observations/s
    assert paced(monkeypatch, settings, [5000] * 4) == pytest.approx([0.5] * 4)
    # after 10 s idle only a second's worth (two writes) goes at once, then spacing resumes
    assert paced(monkeypatch, settings, [10.0, 5000, 5000, 5000, 5000]) == pytest.approx([0.5] * 2)
    # a write larger than the credit waits for the rest
    assert paced(monkeypatch, settings, [10.0, 25000]) == pytest.approx([1.5])


@pytest.mark.parametrize("bad", [0, -1])
def test_a_cap_must_be_positive(bad: float) -> None:
    with pytest.raises(ValueError, match="max_rate"):
        Settings(url="http://127.0.0.1:8428", org="o", bucket="b", max_rate=bad)
