"""When a reading happened: one rule for every source."""

from __future__ import annotations

DEVICE_CLOCK_TOLERANCE = 300.0  # trust a device timestamp up to 5 min behind the gateway clock
DEVICE_CLOCK_AHEAD = 1.0  # and this far ahead of it: a reading cannot come from the future
RESOLUTION = 0.001  # the store's: milliseconds


class Stamper:
    """A device's own time within tolerance (up to 5 min behind, 1 s ahead) is kept unchanged, so a message redelivered after a
    crash lands on the same point again (the store overwrites: idempotent). Otherwise the gateway
    clock, strictly increasing per sensor at millisecond resolution, so two readings taken from
    one chunk never overwrite each other downstream."""

    def __init__(self) -> None:
        self._last: dict[str, float] = {}

    def stamp(self, sensor_id: str, now: float, device_time: float | None = None) -> float:
        if device_time is not None and -DEVICE_CLOCK_TOLERANCE <= device_time - now <= DEVICE_CLOCK_AHEAD:
            return device_time
        t = max(now, self._last.get(sensor_id, 0.0) + RESOLUTION)
        self._last[sensor_id] = t
        return t
