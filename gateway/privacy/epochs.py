"""Key epochs that always end on time, and windows that each fit inside one epoch.

Before issue 12 the pseudonym key rotated only between windows with no pseudonyms in RAM, so on
a busy street it never rotated and a resident's phone stayed linkable for the life of the
process. Here time is cut into epochs of `rotation_s`, aligned to absolute time like the
windows (epoch e covers [e·rotation, (e+1)·rotation)); the rotation is a whole multiple of every
window (`disclosure.validate_rotation`), so every window lies in exactly one epoch and uses
that epoch's key only. When an epoch has ended (plus a fixed `grace_s` for late readings) its
key is zeroed and dropped whatever the traffic, and `advance()` names the epoch so that every
pseudonym, dwell entry and record-key sum made under it is wiped by its holder.

Pure: `now` comes in; keys come from an injected factory (`os.urandom(32)` in the shell).
"""

from __future__ import annotations

import hmac
import math
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


def _floor_div(t: float, length: float) -> int:
    return math.floor(t / length)


class EpochKeys:
    """One random pseudonym key per epoch; a retired epoch's key is zeroed and gone."""

    def __init__(
        self,
        rotation_s: float,
        key_factory: Callable[[], bytes],
        *,
        grace_s: float = 0.0,
        ahead_s: float = 0.0,
    ) -> None:
        if not rotation_s > 0:
            raise ValueError("rotation must be positive")
        if not 0 <= grace_s < rotation_s:
            raise ValueError("grace must be at least 0 and shorter than the rotation")
        self.rotation_s = rotation_s
        self.grace_s = grace_s
        self.ahead_s = ahead_s  # a device clock this far ahead still gets its epoch's key
        self._factory = key_factory
        self._keys: dict[int, bytearray] = {}
        self._retired_below: int | None = None  # every epoch below this is gone
        self.rotations = 0  # keys retired
        self.keys_made = 0
        self.refused_late = 0  # asked for a key of a retired epoch (a late reading)
        self.refused_future = 0  # asked for a key of an epoch that has not begun

    def epoch(self, t: float) -> int:
        return _floor_div(t, self.rotation_s)

    def bounds(self, epoch: int) -> tuple[float, float]:
        return epoch * self.rotation_s, (epoch + 1) * self.rotation_s

    @property
    def live(self) -> tuple[int, ...]:
        """Epochs whose key exists right now (at most two: the current one and, during the
        grace after a boundary, the one before)."""
        return tuple(sorted(self._keys))

    def key(self, t: float, now: float) -> bytearray | None:
        """The key of the epoch containing `t`, made on first use; None if that epoch is
        retired (too late) or has not begun by `now` (+ grace, for a device clock a little
        ahead)."""
        e = math.floor(t / self.rotation_s)
        k = self._keys.get(e)
        if k is not None and (e + 1) * self.rotation_s + self.grace_s > now:
            return k  # the common case: a live key, its epoch not over
        if self._retired_below is not None and e < self._retired_below:
            self.refused_late += 1
            return None
        end = self.bounds(e)[1]
        if end + self.grace_s <= now:
            self.refused_late += 1  # its epoch is over even if advance() has not run yet
            return None
        if e > self.epoch(now + max(self.grace_s, self.ahead_s)):
            self.refused_future += 1
            return None
        if k is None:
            k = self._keys[e] = bytearray(self._factory())
            if len(k) < 16:
                raise ValueError("pseudonym keys must be at least 16 bytes")
            self.keys_made += 1
        return k

    def pseudonym(self, identifier: object, t: float, now: float) -> bytes | None:
        """Keyed hash (HMAC-SHA-256, 16 bytes) of an identifier under `t`'s epoch key; the same
        identifier gives the same pseudonym within an epoch only."""
        k = self.key(t, now)
        if k is None:
            return None
        return hmac.digest(k, str(identifier).lower().encode(), "sha256")[:16]

    def live_key(self, epoch: int) -> bytearray | None:
        """The key of an epoch if it exists now (never makes one): for closing a window."""
        return self._keys.get(epoch)

    def wipe_all(self) -> int:
        """Zero and drop every key now (an operator's emergency rotation, or shutdown). The
        epochs stay open: the next use makes a fresh key. Returns how many keys went."""
        n = len(self._keys)
        for k in self._keys.values():
            k[:] = bytes(len(k))
        self._keys.clear()
        self.rotations += n
        return n

    def advance(self, now: float) -> list[int]:
        """Retire every epoch that ended at least `grace_s` before `now`: zero and drop its key.
        Returns the retired epochs (oldest first) so their holders wipe what they made."""
        current = self.epoch(now - self.grace_s)  # epochs below this have ended + grace
        retired = sorted(e for e in self._keys if e < current)
        for e in retired:
            k = self._keys.pop(e)
            k[:] = bytes(len(k))
            self.rotations += 1
        if self._retired_below is None or current > self._retired_below:
            self._retired_below = current
        return retired


class Windows(Generic[T]):
    """The open windows of one aggregate, keyed by window index, each with its accumulator.

    A window [i·w, (i+1)·w) is due at its end + `grace_s`; a reading for a window that was
    already published (or one before it) is refused (counted in `late`), never reopened. A
    reading for a past window that was never opened (a device clock a little behind) opens it,
    and it is published at the next `due`.
    """

    def __init__(self, window_s: float, factory: Callable[[], T], *, grace_s: float = 0.0) -> None:
        if not window_s > 0:
            raise ValueError("window must be positive")
        self.window_s = window_s
        self.grace_s = grace_s
        self._factory = factory
        self._open: dict[int, T] = {}
        self._closed_below: int | None = None
        self.late = 0

    def index(self, t: float) -> int:
        return _floor_div(t, self.window_s)

    def bounds(self, index: int) -> tuple[float, float]:
        return index * self.window_s, (index + 1) * self.window_s

    def at(self, t: float) -> T | None:
        """The accumulator of `t`'s window (opened on first use); None if already closed."""
        i = self.index(t)
        if self._closed_below is not None and i < self._closed_below:
            self.late += 1
            return None
        acc = self._open.get(i)
        if acc is None:
            acc = self._open[i] = self._factory()
        return acc

    def due(self, now: float) -> list[tuple[int, T]]:
        """Remove and return, oldest first, every window that ended by `now` − grace."""
        ready = sorted(i for i in self._open if (i + 1) * self.window_s + self.grace_s <= now)
        out = [(i, self._open.pop(i)) for i in ready]
        self._published_up_to(ready)
        return out

    def _published_up_to(self, indices: list[int]) -> None:
        if indices and (self._closed_below is None or indices[-1] + 1 > self._closed_below):
            self._closed_below = indices[-1] + 1

    def drain(self) -> list[tuple[int, T]]:
        """Every open window (shutdown: publish them flagged partial)."""
        out = sorted(self._open.items())
        self._open.clear()
        self._published_up_to([i for i, _ in out])
        return out

    def discard(self, below: int | None = None) -> list[tuple[int, T]]:
        """Remove and return the open windows with an index below `below` (all if None),
        unpublished: key rotation drops what a retired key made."""
        gone = sorted(i for i in self._open if below is None or i < below)
        return [(i, self._open.pop(i)) for i in gone]

    def open_indices(self) -> list[int]:
        return sorted(self._open)

    def open_items(self) -> list[tuple[int, T]]:
        return sorted(self._open.items(), key=lambda item: item[0])

    def open_values(self) -> list[T]:
        return list(self._open.values())

    def __len__(self) -> int:
        return len(self._open)
