from __future__ import annotations

from gateway.sources.stamp import Stamper


def test_gateway_times_are_strictly_increasing_per_sensor_at_millisecond_resolution() -> None:
    s = Stamper()
    assert s.stamp("a", 100.0) == 100.0
    assert s.stamp("a", 100.0) == 100.001  # two frames from one read never share a timestamp
    assert s.stamp("b", 100.0) == 100.0  # per sensor
    assert s.stamp("a", 200.0) == 200.0


def test_a_device_time_near_the_gateway_clock_is_kept_so_replays_overwrite() -> None:
    s = Stamper()
    assert s.stamp("a", 1000.0, device_time=990.0) == 990.0
    assert s.stamp("a", 1000.5, device_time=990.0) == 990.0  # redelivered: the same point
    assert s.stamp("a", 1000.0, device_time=10.0) == 1000.0  # a device clock far off is not trusted
