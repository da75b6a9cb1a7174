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
key rotation: `forget()`. A window's devices are bounded too (`DistinctSet`): exact up to a cap,
then a fixed-size sketch, so a flood of random MACs cannot exhaust memory (issue 12).
"""

from __future__ import annotations

import math
import re
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gateway.privacy.sketch import DEFAULT_CAP, DistinctSet, record_key

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
    sketched: bool = False  # a flood filled a set past its cap: the count is a sketch estimate


@dataclass(slots=True)
class FootfallWindow:
    """The devices of one open window: bounded sets (exact to a cap, then a HyperLogLog)."""

    fixed: DistinctSet
    random: DistinctSet
    weak: int = 0
    probes: int = 0

    @classmethod
    def new(cls, cap: int = DEFAULT_CAP) -> FootfallWindow:
        return cls(DistinctSet(cap), DistinctSet(cap))

    @property
    def held(self) -> int:
        """Pseudonyms held in RAM for this window."""
        return self.fixed.held + self.random.held

    def wipe(self) -> None:
        self.fixed.wipe()
        self.random.wipe()
        self.weak = self.probes = 0


@dataclass
class FootfallEstimator:
    """Per (sensor, aggregate, key epoch): a dwell table across windows, and the windows' sets.

    The stage gives each window its own `FootfallWindow` (`open_window`, `observe_in`,
    `close_window`), so a window still open during its delay and the next one never mix. The
    single-window calls (`observe`, `close`) serve the benches and simple uses.
    """

    options: FootfallOptions = field(default_factory=FootfallOptions)
    cap: int = DEFAULT_CAP
    _seen: OrderedDict[bytes, _Seen] = field(default_factory=OrderedDict)
    _window: FootfallWindow | None = None

    @property
    def holds_pseudonyms(self) -> bool:
        """Pseudonyms of the default open window (the single-window calls)."""
        return self._window is not None and self._window.held > 0

    @property
    def tracked(self) -> int:
        return len(self._seen)

    def open_window(self) -> FootfallWindow:
        return FootfallWindow.new(self.cap)

    def observe(self, pseudonym: bytes, t: float, rssi: float | None, randomised: bool) -> bool:
        """Absorb one probe into the default window; True if it counts towards it."""
        if self._window is None:
            self._window = self.open_window()
        return self.observe_in(self._window, pseudonym, t, rssi, randomised)

    def observe_in(
        self, window: FootfallWindow, pseudonym: bytes, t: float, rssi: float | None, randomised: bool
    ) -> bool:
        """Absorb one probe; True if it counts towards the window.

        Every probe, weak or not, extends the dwell table: a shop worker's phone behind glass
        is often just below the threshold and must still be recognised as a dweller. A probe
        without a signal strength cannot be placed and is counted (the field of measurement is
        then the radio's range).
        """
        window.probes += 1
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
            window.weak += 1
            return False
        (window.random if randomised else window.fixed).add(pseudonym)
        return True

    def _dweller(self, p: bytes) -> bool:
        s = self._seen.get(p)
        return s is not None and s.last - s.first > self.options.dwell_max_s

    def _part(self, devices: DistinctSet) -> tuple[int, int, int, int]:
        """(devices counted, dwellers removed, cell key part, contributors) of one set. Once a
        flood pushed the set past its cap it is a sketch: dwellers (a handful, against at least
        `cap` devices) can no longer be picked out and stay in the count."""
        if devices.is_estimate:
            return devices.count(), 0, devices.cell_key(), devices.contributors()
        kept = [p for p in devices.members() if not self._dweller(p)]
        ck = sum(record_key(p) for p in kept)
        return len(kept), devices.held - len(kept), ck, len(kept)

    def close_window(self, window: FootfallWindow, now: float) -> FootfallCount:
        """End a window: count, wipe its pseudonyms, expire absent devices."""
        fixed, fixed_dw, fixed_ck, fixed_c = self._part(window.fixed)
        rand, rand_dw, rand_ck, rand_c = self._part(window.random)
        estimate = fixed + round(self.options.randomised_factor * rand)
        out = FootfallCount(estimate, fixed_c + rand_c, fixed, rand, fixed_dw + rand_dw,
                            window.weak, window.probes, (fixed_ck + rand_ck) % 256,
                            window.fixed.is_estimate or window.random.is_estimate)  # fmt: skip
        window.wipe()
        self._expire(now)
        return out

    def close(self, now: float) -> FootfallCount:
        """End the default window (the single-window calls)."""
        if self._window is None:
            self._window = self.open_window()
        out = self.close_window(self._window, now)
        self._window = None
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
        """Key rotation: the dwell table and the default window go with the old key (the
        stage keeps one estimator per key epoch and drops it whole when the epoch ends)."""
        self._seen.clear()
        if self._window is not None:
            self._window.wipe()
            self._window = None
