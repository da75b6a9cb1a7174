"""Wi-Fi footfall: turn pseudonymised probe requests into a count of passing devices per window.

The method follows the Smart Street Sensor work at UCL / CDRC (Soundararaj, Cheshire & Longley,
"Estimating real-time highstreet footfall from Wi-Fi probe requests", IJGIS 33(2), 2019,
doi:10.1080/13658816.2019.1587616): keep only probes strong enough to come from the pavement
in front of the sensor, de-duplicate devices inside the window, drop devices that stay for
longer than anybody walking past would (residents, shop staff, the shop's own kit), and treat
randomised (locally administered) MACs separately because one phone shows up as several.

Randomised MACs: the probe sequence number, which would let us stitch a device's rotating
addresses back together, is deliberately dropped by the driver (it is linkable), so we do not
cluster. Instead randomised MACs are counted separately and scaled by `randomised_factor`
(expected real devices per distinct randomised MAC in a window). Known bias: the factor is a
site calibration; it over-counts when randomising dwellers (staff phones rotating every few
minutes, which the dwell filter cannot link) are a larger share than at calibration time, and
under-counts when passers-by linger less. See docs/privacy.md and bench/bench_footfall.py.

Pure: time comes in as arguments, pseudonyms are opaque bytes made by the privacy stage. The
dwell table holds pseudonyms across windows (RAM only, bounded) and must be forgotten at every
key rotation: `forget()`.
"""

from __future__ import annotations

import math
import re
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gateway.privacy.sketch import record_key

DEFAULT_RSSI_MIN_DBM = -71.0
DEFAULT_DWELL_MAX_S = 1800.0
DEFAULT_RANDOMISED_FACTOR = 1.0
DEFAULT_MAX_TRACKED = 50_000

OPTION_KEYS = ("rssi_min_dbm", "dwell_max", "randomised_factor", "max_tracked")

_MAC = re.compile(r"[0-9a-f]{2}([:-]?)[0-9a-f]{2}(?:\1[0-9a-f]{2}){4}")


def is_locally_administered(mac: str) -> bool:
    """True for a 48-bit MAC with the locally administered bit set (a randomised address).

    Anything that is not a MAC is not randomised: the stage counts it as an ordinary device.
    """
    m = mac.strip().lower()
    if not _MAC.fullmatch(m):
        return False
    return bool(int(m[:2], 16) & 0x02)


def _duration(v: Any, key: str) -> float:
    from firmware_bridge.options import parse_duration

    try:
        return parse_duration(v)
    except ValueError as e:
        raise ValueError(f"{key}: {e}") from None


@dataclass(frozen=True, slots=True)
class FootfallOptions:
    """The method's knobs. Defaults are the Smart Street Sensor-style settings."""

    rssi_min_dbm: float = DEFAULT_RSSI_MIN_DBM  # probes weaker than this are ignored
    dwell_max_s: float = DEFAULT_DWELL_MAX_S  # seen across longer than this: not footfall
    randomised_factor: float = DEFAULT_RANDOMISED_FACTOR  # devices per distinct random MAC
    max_tracked: int = DEFAULT_MAX_TRACKED  # bound on the dwell table (least recent evicted)

    @classmethod
    def from_mapping(
        cls, options: Mapping[str, Any], base: FootfallOptions | None = None
    ) -> FootfallOptions:
        """Read `rssi_min_dbm`, `dwell_max` (a duration), `randomised_factor`, `max_tracked`;
        raise ValueError naming the key."""
        b = base or cls()
        rssi, dwell, factor, tracked = (
            b.rssi_min_dbm,
            b.dwell_max_s,
            b.randomised_factor,
            b.max_tracked,
        )
        if "rssi_min_dbm" in options:
            v = options["rssi_min_dbm"]
            if isinstance(v, bool) or not isinstance(v, int | float) or not -120 <= v <= 0:
                raise ValueError("rssi_min_dbm: must be a number from -120 to 0 (dBm)")
            rssi = float(v)
        if "dwell_max" in options:
            dwell = _duration(options["dwell_max"], "dwell_max")
            if dwell <= 0:
                raise ValueError("dwell_max: must be a positive duration, e.g. 30m")
        if "randomised_factor" in options:
            v = options["randomised_factor"]
            if isinstance(v, bool) or not isinstance(v, int | float) or not 0 <= v <= 1:
                raise ValueError("randomised_factor: must be a number from 0 to 1")
            factor = float(v)
        if "max_tracked" in options:
            v = options["max_tracked"]
            if isinstance(v, bool) or not isinstance(v, int) or not 100 <= v <= 1_000_000:
                raise ValueError("max_tracked: must be an integer from 100 to 1000000")
            tracked = v
        return cls(rssi, dwell, factor, tracked)


@dataclass(slots=True)
class _Seen:
    first: float
    last: float


@dataclass(frozen=True, slots=True)
class FootfallCount:
    """One closed window. `estimate` is what is published; `distinct` (devices actually
    counted, before the randomised factor) is what small-count suppression also looks at."""

    estimate: int
    distinct: int
    fixed: int  # globally administered MACs counted
    randomised: int  # distinct randomised MACs counted (before the factor)
    dwellers: int  # devices removed as long dwellers
    weak: int  # probes ignored as too weak
    probes: int  # probes seen in the window
    cell_key: int = 0  # record keys of the counted devices summed mod 256 (disclosure control)


@dataclass
class FootfallEstimator:
    """Per (sensor, aggregate): the open window's devices and a dwell table across windows."""

    options: FootfallOptions = field(default_factory=FootfallOptions)
    _fixed: set[bytes] = field(default_factory=set)
    _random: set[bytes] = field(default_factory=set)
    _seen: OrderedDict[bytes, _Seen] = field(default_factory=OrderedDict)
    _weak: int = 0
    _probes: int = 0

    @property
    def holds_pseudonyms(self) -> bool:
        """Pseudonyms of the open window (the key may only rotate when this is False)."""
        return bool(self._fixed or self._random)

    @property
    def tracked(self) -> int:
        return len(self._seen)

    def observe(self, pseudonym: bytes, t: float, rssi: float | None, randomised: bool) -> bool:
        """Absorb one probe; True if it counts towards the open window.

        Every probe, weak or not, extends the dwell table: a shop worker's phone behind glass
        is often just below the threshold and must still be recognised as a dweller. A probe
        without a signal strength cannot be placed and is counted (the field of measurement is
        then the radio's range).
        """
        self._probes += 1
        seen = self._seen.get(pseudonym)
        if seen is None:
            self._seen[pseudonym] = _Seen(t, t)
            if len(self._seen) > self.options.max_tracked:
                self._seen.popitem(last=False)  # least recently seen
        else:
            seen.first = min(seen.first, t)
            seen.last = max(seen.last, t)
            self._seen.move_to_end(pseudonym)
        if rssi is not None and (not math.isfinite(rssi) or rssi < self.options.rssi_min_dbm):
            self._weak += 1
            return False
        (self._random if randomised else self._fixed).add(pseudonym)
        return True

    def _dweller(self, p: bytes) -> bool:
        s = self._seen.get(p)
        return s is not None and s.last - s.first > self.options.dwell_max_s

    def close(self, now: float) -> FootfallCount:
        """End the open window: count, clear its pseudonyms, expire absent devices."""
        fixed = [p for p in self._fixed if not self._dweller(p)]
        rand = [p for p in self._random if not self._dweller(p)]
        dwellers = len(self._fixed) + len(self._random) - len(fixed) - len(rand)
        estimate = len(fixed) + round(self.options.randomised_factor * len(rand))
        cell_key = sum(record_key(p) for p in (*fixed, *rand)) % 256
        out = FootfallCount(estimate, len(fixed) + len(rand), len(fixed), len(rand), dwellers,
                            self._weak, self._probes, cell_key)  # fmt: skip
        self._fixed.clear()
        self._random.clear()
        self._weak = self._probes = 0
        self._expire(now)
        return out

    def _expire(self, now: float) -> None:
        """A device absent for longer than dwell_max is forgotten: it would count anew."""
        cutoff = now - self.options.dwell_max_s
        while self._seen:
            p, s = next(iter(self._seen.items()))
            if s.last >= cutoff:
                break
            del self._seen[p]

    def forget(self) -> None:
        """Key rotation: the dwell table (pseudonyms across windows) goes with the old key.

        The open window's sets are kept: the stage rotates only between windows, when they are
        empty; a forced rotation mid-window keeps them until that window closes (at most one
        window), so its count is not lost, at the price of counting twice a device heard on
        both sides of the rotation.
        """
        self._seen.clear()
