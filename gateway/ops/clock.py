"""The gateway's time on a box with no clock battery.

A Pi boots with whatever time fake-hwclock saved, or 1970, and learns the real time from NTP
some seconds — or, at a site without network, days — later. Readings must never be stamped with
1970 or with a future time, so the gateway does not read the system clock blindly:

- until the system clock is known to be synchronised, time is *provisional*: the best lower bound
  we have (the last trusted time persisted in `clock.json`, or the release date of this code)
  plus the monotonic time elapsed since start — or the system clock, when there is no sync
  evidence but it is later than that (a container or a PC off a Pi keeps good time while the
  kernel says "unsynchronised"; a Pi restores fake-hwclock's saved time). It is never 1970 and
  never earlier than a plausible system clock. Every stamp handed out this way is remembered, in
  a *segment* that moves with the monotonic clock, so the pipeline flags its observations
  (`parameters.quality` contains `clock_unsynced`) and, once the clock synchronises, knows the
  true time of each exactly: sync time minus the monotonic time elapsed since the stamp
  (`restamp`). Sinks hold provisional rows until then (up to `clock.max_hold`). The segments
  and the sync's offset are kept in `clock.json` with the kernel's boot id, so a gateway that
  restarts (crash, upgrade, OOM) without a reboot continues its provisional time on the same
  monotonic line and still corrects the rows its earlier run stamped; after a reboot the
  monotonic clock starts again and those rows leave flagged;
- once synchronised, the system clock is used as is; a step of more than `max_step` seconds
  while running (a bad NTP answer, someone running `date -s`) is refused: time continues from the
  last trusted reading on the monotonic clock (*held*, also flagged) until the clock agrees again
  or the process restarts.

The decision logic is pure and driven by injected `wall`, `monotonic` and `probe` callables, so
it is tested with fake clocks; `system_probe` is the thin Linux part.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import json
import logging
import math
import os
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.ops.metrics import Registry

log = logging.getLogger("gateway.ops.clock")

FLAG = "clock_unsynced"
# No stamp can be earlier than the release of the code that makes it. Move forward at release.
RELEASE_FLOOR = 1_793_491_200.0  # 2026-11-01T00:00:00Z
MAX_STEP_S = 600.0  # a running, synchronised clock never legitimately jumps this far
MAX_OFFLINE_S = 10 * 365.25 * 86400  # beyond last trusted + this, a wall clock is garbage
PERSIST_EVERY_S = 3600.0  # SD cards wear: one small fsynced write per hour, and at stop
PROBE_EVERY_S = 1.0
BOOT_ID_FILE = Path("/proc/sys/kernel/random/boot_id")  # changes at every boot, same monotonic clock
MAX_PERSISTED_SEGMENTS = 16
SEGMENT_PERSIST_S = 60.0  # a new provisional segment is saved at once, unless one was within this
SYNC_FILE = Path("/run/systemd/timesync/synchronized")  # systemd-timesyncd creates it on sync
TIME_ERROR = 5  # adjtimex() return value while the kernel clock is unsynchronised (STA_UNSYNC)

Probe = Callable[[], bool | None]  # True synchronised, False not, None cannot tell
CORRECTED = "clock_corrected"  # a provisional stamp re-stamped with the true time


@dataclass
class Segment:
    """Stamps handed out while untrusted, all `anchor_t + (monotonic - anchor_m)`: one constant
    offset from the monotonic clock, so one sync gives all of them their true time exactly.
    `held` segments (a refused step) are flagged but already continue trusted time."""

    lo: float
    hi: float
    anchor_t: float
    anchor_m: float
    held: bool = False


def _iso(t: float) -> str:
    from gateway.model import iso

    try:
        return iso(t)
    except (OverflowError, ValueError, OSError):
        return str(t)


@functools.cache
def _adjtimex() -> Any:
    """libc's adjtimex, looked up once: `CDLL(None)` is the running process's own symbols (libc
    is loaded already). `ctypes.util.find_library` would fork `ldconfig -p` on every call:
    every second, where timesyncd's flag file is absent."""
    try:
        return ctypes.CDLL(None, use_errno=True).adjtimex
    except (OSError, AttributeError, TypeError):
        return None


def adjtimex_synchronised() -> bool | None:
    """Ask the kernel (read-only adjtimex, modes=0). None where the call is unavailable or
    filtered (systemd's ProtectClock= denies it with EPERM)."""
    adjtimex = _adjtimex()
    if adjtimex is None:
        return None
    buf = ctypes.create_string_buffer(1024)  # struct timex, zeroed: modes=0 changes nothing
    state = adjtimex(buf)
    if state < 0:
        return None
    return bool(state != TIME_ERROR)


def read_boot_id() -> str | None:
    """The kernel's id of this boot: CLOCK_MONOTONIC readings are comparable while it is the same."""
    try:
        return BOOT_ID_FILE.read_text(encoding="ascii").strip() or None
    except (OSError, UnicodeDecodeError):
        return None


def system_probe() -> bool | None:
    """Synchronised? timesyncd's flag file first (readable in the sandbox), then the kernel.

    `STREET_GATEWAY_CLOCK=system` trusts the system clock outright: for containers and CI
    machines whose host keeps time but whose kernel reports unsynchronised.
    """
    if os.environ.get("STREET_GATEWAY_CLOCK") == "system":
        return True
    if SYNC_FILE.exists():
        return True
    kernel = adjtimex_synchronised()
    if kernel is not None:
        return kernel
    if SYNC_FILE.parent.is_dir():
        return False  # timesyncd runs but has not synchronised yet
    return None


class GatewayClock:
    """`now()` (or calling the object) is the pipeline clock: epoch seconds, never 1970, never
    ahead of the true time by more than a synchronised clock's own error."""

    def __init__(
        self,
        *,
        wall: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        probe: Probe = system_probe,
        state_file: Path | None = None,
        floor: float = RELEASE_FLOOR,
        max_step: float = MAX_STEP_S,
        max_offline: float = MAX_OFFLINE_S,
        persist_every: float = PERSIST_EVERY_S,
        probe_every: float = PROBE_EVERY_S,
        boot_id: Callable[[], str | None] = read_boot_id,
    ) -> None:
        self._wall, self._mono, self._probe = wall, monotonic, probe
        self.state_file = state_file
        self.boot_id = boot_id()
        self._saved: dict[str, Any] = {}
        self.floor = floor
        self.max_step = max_step
        self.persist_every = persist_every
        self.probe_every = probe_every
        persisted = self._load()
        self.persisted = persisted
        self.lower_bound = max(floor, persisted or 0.0)
        self.ceiling = self.lower_bound + max_offline
        self.mode = "provisional"  # provisional -> synchronised <-> held
        self._anchor = (self.lower_bound, monotonic())  # (gateway time, monotonic) to extrapolate
        self._segments: deque[Segment] = deque(maxlen=64)  # where flagged stamps lie
        self._open_interval = False
        self.sync_offset: float | None = None  # wall - monotonic at the first sync
        self._probe_at = -math.inf
        self._probe_result: bool | None = None
        self._persisted_at = -math.inf
        self.last_trusted: float | None = None
        self.correction: float | None = None  # how far the first sync moved time forward
        self.refused_steps = 0
        self.last_wall = 0.0
        resumed = self._resume()
        source = "clock.json" if persisted is not None and persisted >= floor else "release floor"
        log.info("clock starting provisional", extra={"lower_bound": _iso(self.lower_bound), "bound_from": source,
                                                       "system_clock": _iso(wall())})  # fmt: skip
        if resumed:
            log.info("clock continues the provisional time of the previous run (same boot): its rows are corrected at sync",
                     extra={"segments": len(self._segments), "synchronised_before": self.sync_offset is not None})  # fmt: skip

    # ------------------------------------------------------------------ time

    def __call__(self) -> float:
        return self.now()

    @property
    def synchronised(self) -> bool:
        return self.mode == "synchronised"

    def now(self) -> float:
        m = self._mono()
        w = self._wall()
        self.last_wall = w
        expected = self._anchor[0] + (m - self._anchor[1])
        if self.mode == "provisional":
            if self._acceptable_first(w, m):
                self.correction = w - expected
                self.sync_offset = w - m
                log.info("system clock synchronised; stamping with wall time, provisional stamps re-stamped exactly",
                         extra={"correction_s": round(self.correction, 3)})  # fmt: skip
                stamp = self._trust(w, m)
                self.persist(force=True)  # an earlier run's rows, and ours, stay correctable after a restart
                return stamp
            if self.floor <= w <= self.ceiling and w > expected + 0.001:
                # no sync evidence, but the system clock is later than what we know: prefer it,
                # still provisional (a new segment: its offset from monotonic time changed)
                log.info("clock provisional, following the unsynchronised system clock (later than the lower bound)",
                         extra={"system_clock": _iso(w), "ahead_s": round(w - expected, 3)})  # fmt: skip
                self._anchor = (w, m)
                self._open_interval = False
                expected = w
            return self._untrusted_stamp(expected)
        step = w - expected
        if abs(step) <= self.max_step and self.floor <= w <= self.ceiling:
            if self.mode == "held":
                log.warning("system clock agrees again; stamping with wall time",
                            extra={"step_s": round(step, 3)})  # fmt: skip
            return self._trust(w, m)
        if self.mode == "synchronised":
            self.refused_steps += 1
            log.error("system clock stepped; refused, holding time on the monotonic clock",
                      extra={"step_s": round(step, 3)})  # fmt: skip
            self.mode = "held"
        return self._untrusted_stamp(expected)

    def _acceptable_first(self, w: float, m: float) -> bool:
        if not self.floor <= w <= self.ceiling:
            return False
        synced = self._probe_cached(m)
        if synced is None:  # cannot tell: accept only a time no earlier than what we know
            return w >= self.lower_bound
        if synced and w < self.lower_bound:
            log.warning("synchronised clock is earlier than the last trusted time; trusting NTP",
                        extra={"behind_s": round(self.lower_bound - w, 3)})  # fmt: skip
        return synced

    def _probe_cached(self, m: float) -> bool | None:
        if m - self._probe_at >= self.probe_every:
            self._probe_at = m
            try:
                self._probe_result = self._probe()
            except Exception:
                log.exception("clock probe failed")
                self._probe_result = None
        return self._probe_result

    def _trust(self, w: float, m: float) -> float:
        self.mode = "synchronised"
        self._anchor = (w, m)
        self._open_interval = False
        self.last_trusted = w
        return w

    def _untrusted_stamp(self, t: float) -> float:
        if self._open_interval and self._segments:
            seg = self._segments[-1]
            seg.lo, seg.hi = min(seg.lo, t), max(seg.hi, t)
        else:
            self._segments.append(Segment(t, t, *self._anchor, held=self.mode == "held"))
            self._open_interval = True
            if self.mode == "provisional":  # a restart in this boot continues this segment
                self.persist(force=self._mono() - self._persisted_at >= SEGMENT_PERSIST_S)
        return t

    def _segment(self, t: float) -> Segment | None:
        """The segment a stamp came from, newest first. Stamps get up to a second of slack
        (sources add milliseconds to keep them increasing)."""
        for seg in reversed(self._segments):
            if seg.lo - 1e-6 <= t <= seg.hi + 1.0:
                return seg
        return None

    def quality_flags(self, t: float) -> tuple[str, ...]:
        """('clock_unsynced',) for a stamp this clock handed out while not synchronised; an
        overlap errs on the side of flagging."""
        return (FLAG,) if self._segment(t) is not None else ()

    def provisional(self, t: float) -> bool:
        """A provisional stamp whose true time is not known yet (the clock has not synced)."""
        seg = self._segment(t)
        return seg is not None and not seg.held and self.sync_offset is None

    def restamp(self, t: float) -> float | None:
        """The true time of a provisional stamp, exactly, once the clock synchronised: the
        sync's wall time minus the monotonic time elapsed since the stamp. None for a stamp that
        was not provisional (or whose segment is forgotten, or before the sync)."""
        seg = self._segment(t)
        if seg is None or seg.held or self.sync_offset is None:
            return None
        return t + self.sync_offset - (seg.anchor_t - seg.anchor_m)

    # ------------------------------------------------------------------ persistence

    def _load(self) -> float | None:
        if self.state_file is None:
            return None
        try:
            data = json.loads(self.state_file.read_text(encoding="utf-8"))
            if not isinstance(data, dict):
                raise TypeError("not an object")
            t = None if data.get("last_trusted") is None else float(data["last_trusted"])
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError):
            log.warning("clock state unreadable; ignored", extra={"path": str(self.state_file)})
            return None
        self._saved = data
        if t is None or not math.isfinite(t) or t > self.floor + MAX_OFFLINE_S:
            return None
        return t

    def _resume(self) -> bool:
        """Take over the provisional segments (and the sync's offset) an earlier run of this
        boot saved: its stamps lie on the same monotonic clock, so they stay correctable. An
        unsynchronised run is continued on its own line: every stamp from both runs is
        corrected by one sync."""
        data, m = self._saved, self._mono()
        if self.boot_id is None or data.get("boot_id") != self.boot_id:
            return False
        try:
            segments = [Segment(float(lo), float(hi), float(at), float(am))
                        for lo, hi, at, am in data.get("segments", [])]
            offset = None if data.get("sync_offset") is None else float(data["sync_offset"])
        except (TypeError, ValueError):
            log.warning("clock state unreadable; ignored", extra={"path": str(self.state_file)})
            return False
        if not segments or any(not all(map(math.isfinite, (g.lo, g.hi, g.anchor_t, g.anchor_m)))
                               or g.anchor_m > m for g in segments):  # fmt: skip
            return False
        self._segments.extend(segments)
        if offset is not None and math.isfinite(offset):
            self.sync_offset = offset
            return True
        last = segments[-1]
        here = last.anchor_t + (m - last.anchor_m)  # where that run's line is now
        if here >= self.lower_bound:
            last.hi = max(last.hi, here)
            self._anchor = (last.anchor_t, last.anchor_m)
            self._open_interval = True
        return True

    def persist(self, force: bool = False) -> bool:
        """Write the last trusted time, and the provisional segments with this boot's id
        (atomic, fsynced) at most every `persist_every` s, or now when `force`d."""
        provisional = [[g.lo, g.hi, g.anchor_t, g.anchor_m] for g in self._segments if not g.held]
        if self.state_file is None or (self.last_trusted is None and not provisional):
            return False
        m = self._mono()
        if not force and m - self._persisted_at < self.persist_every:
            return False
        self._persisted_at = m
        tmp = self.state_file.with_name(self.state_file.name + ".tmp")
        try:
            self.state_file.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump({"last_trusted": self.last_trusted, "boot_id": self.boot_id,
                           "segments": provisional[-MAX_PERSISTED_SEGMENTS:],
                           "sync_offset": self.sync_offset}, f)  # fmt: skip
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.state_file)
            with contextlib.suppress(OSError):
                fd = os.open(self.state_file.parent, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
        except OSError as e:
            log.warning("clock state not saved", extra={"reason": e.strerror or str(e)})
            return False
        return True

    # ------------------------------------------------------------------ ops

    def state(self) -> dict[str, Any]:
        t = self.now()
        return {
            "time": t,
            "synchronised": self.synchronised,
            "mode": self.mode,
            "offset_s": round(self.last_wall - t, 3),
            "correction_s": None if self.correction is None else round(self.correction, 3),
            "refused_steps": self.refused_steps,
            "last_trusted": self.last_trusted,
        }

    def bind(self, registry: Registry) -> None:
        """Expose the clock's state in a metrics registry (refreshed at every scrape)."""
        synced = registry.gauge("gateway_clock_synchronised",
                                "1 while stamps come from the synchronised system clock")  # fmt: skip
        offset = registry.gauge("gateway_clock_offset_seconds",
                                "System clock minus the time the gateway stamps with")  # fmt: skip
        correction = registry.gauge("gateway_clock_sync_correction_seconds",
                                    "How far the first synchronisation moved time forward")  # fmt: skip
        refused = registry.counter("gateway_clock_refused_steps_total",
                                   "System clock steps refused while running")  # fmt: skip

        def collect() -> None:
            st = self.state()
            synced.set(1 if st["synchronised"] else 0)
            offset.set(st["offset_s"])
            correction.set(st["correction_s"] or 0.0)
            refused.set(self.refused_steps)

        registry.collectors.append(collect)
