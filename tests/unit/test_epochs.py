"""Key rotation that always happens: one key per epoch, windows inside one epoch, and nothing
made under an old key — pseudonym, dwell entry, record key, the key itself — outlives it."""

from __future__ import annotations

import gc
import hashlib
import hmac
import random
import types

import pytest

from gateway.privacy.disclosure import validate_rotation
from gateway.privacy.epochs import EpochKeys, Windows
from gateway.privacy.footfall import FootfallEstimator, FootfallOptions
from gateway.privacy.sketch import DistinctSet

T0 = 1_700_000_100.0  # a multiple of 300 s: epochs and windows start here


def _reachable_bytes(*roots: object) -> set[bytes]:
    """Every bytes/bytearray value reachable from the roots through containers and instances
    (not through classes, modules or functions: the key factory is the test's own)."""
    skip = (type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType, types.MethodType)
    seen: set[int] = set()
    found: set[bytes] = set()
    stack = list(roots)
    while stack:
        o = stack.pop()
        if id(o) in seen or isinstance(o, skip):
            continue
        seen.add(id(o))
        if isinstance(o, bytes | bytearray):
            found.add(bytes(o))
            continue
        if isinstance(o, int | float | str | bool) or o is None:
            continue
        stack.extend(gc.get_referents(o))
    return found


def _mac(i: int) -> str:
    return f"3c:22:fb:{(i >> 16) & 255:02x}:{(i >> 8) & 255:02x}:{i & 255:02x}"


def test_one_hour_at_100_probes_a_second_rotates_12_times_and_wipes_every_epoch() -> None:
    """The issue's third attack: at 100 probes/s the old stage never rotated. Here a 5-minute
    rotation happens 12 times in an hour, and after each one nothing of the old epoch is left
    in RAM — checked by recomputing, outside the code under test, every pseudonym each old key
    made and searching everything the privacy state holds for it."""
    made: list[bytes] = []

    def factory() -> bytes:
        k = hashlib.sha256(b"epoch key %d" % len(made)).digest()
        made.append(k)
        return k

    keys = EpochKeys(300, factory)
    assert validate_rotation(300, [60, 300]) == []
    per_minute: Windows[DistinctSet] = Windows(60, DistinctSet)
    footfall = FootfallEstimator(FootfallOptions(dwell_max_s=120))  # dwell table across windows
    rng = random.Random(12)
    dwellers = list(range(15))  # shop staff: the same phones all hour
    macs_by_epoch: dict[int, set[str]] = {}
    key_refs: dict[int, bytearray] = {}
    published: list[int] = []
    boundary = T0 + 300
    rotations_seen = 0
    for i in range(100 * 3600):
        t = T0 + i / 100
        if t >= boundary:  # what the stage's due(now) does, once a second in the shell
            published += [ds.count() for _, ds in per_minute.due(t)]
            footfall.close(t)
            before = _reachable_bytes(keys, per_minute, footfall)
            old_epoch = keys.epoch(boundary - 1)
            old = {hmac.new(made[-1], m.lower().encode(), hashlib.sha256).digest()[:16]
                   for m in macs_by_epoch[old_epoch]}  # fmt: skip
            assert before & old, "the scan must see the old epoch's dwell entries before rotation"
            retired = keys.advance(t)
            if retired:
                footfall.forget()
            assert retired == [old_epoch]
            rotations_seen += 1
            after = _reachable_bytes(keys, per_minute, footfall)
            assert not after & old  # no pseudonym or dwell entry of the old epoch
            assert made[-1] not in after and bytes(key_refs[old_epoch]) == bytes(32)  # key zeroed
            assert footfall.tracked == 0 and not footfall.holds_pseudonyms
            assert all(w * 60 >= t - 1e-6 for w in per_minute.open_indices())  # no old record keys
            assert keys.live == ()
            boundary += 300
        mac_i = rng.choice(dwellers) if rng.random() < 0.2 else 1000 + int(t // 40) * 50 + rng.randrange(50)
        mac = _mac(mac_i)
        e = keys.epoch(t)
        macs_by_epoch.setdefault(e, set()).add(mac)
        p = keys.pseudonym(mac, t, t)
        assert p is not None
        key = keys.key(t, t)
        assert key is not None
        key_refs[e] = key
        ds = per_minute.at(t)
        assert ds is not None
        ds.add(p)
        footfall.observe(p, t, -60.0, False)
    # the last boundary, at the end of the hour
    end = T0 + 3600
    per_minute.due(end)
    footfall.close(end)
    assert keys.advance(end) == [keys.epoch(end - 1)]
    rotations_seen += 1
    footfall.forget()
    assert rotations_seen == 12 and keys.rotations == 12 and keys.keys_made == 12 == len(made)
    assert all(bytes(k) == bytes(32) for k in key_refs.values())
    assert not _reachable_bytes(keys, per_minute, footfall)
    assert len(published) == 55 and min(published) > 50  # the minutes before the last 5


def test_late_and_future_readings_get_no_key() -> None:
    keys = EpochKeys(300, lambda: b"k" * 32, grace_s=2)
    assert keys.key(T0 + 299, T0 + 301) is not None  # inside the grace: the old epoch's key
    assert keys.live == (keys.epoch(T0),)
    assert keys.advance(T0 + 301) == []  # grace not over yet
    assert keys.key(T0 + 300.5, T0 + 301) is not None
    assert len(keys.live) == 2  # two keys only during the grace, never for one window
    assert keys.advance(T0 + 302) == [keys.epoch(T0)]
    assert keys.key(T0 + 299, T0 + 302) is None and keys.refused_late == 1
    assert keys.key(T0 + 900, T0 + 302) is None and keys.refused_future == 1
    assert keys.pseudonym("3C:22:FB:00:00:01", T0 + 301, T0 + 302) == keys.pseudonym(
        "3c:22:fb:00:00:01", T0 + 400, T0 + 401
    )  # case-insensitive within an epoch


def test_pseudonyms_do_not_link_across_epochs() -> None:
    n = iter(range(100))
    keys = EpochKeys(300, lambda: hashlib.sha256(bytes([next(n)])).digest())
    a = keys.pseudonym("3c:22:fb:00:00:01", T0 + 10, T0 + 10)
    keys.advance(T0 + 300)
    b = keys.pseudonym("3c:22:fb:00:00:01", T0 + 310, T0 + 310)
    assert a is not None and b is not None and a != b


def test_a_closed_window_is_never_reopened() -> None:
    w: Windows[DistinctSet] = Windows(60, DistinctSet)
    acc = w.at(T0 + 5)
    assert acc is not None
    acc.add(b"\x01" * 16)
    assert [i for i, _ in w.due(T0 + 60)] == [int((T0 + 5) // 60)]
    assert w.at(T0 + 59) is None and w.late == 1
    assert w.at(T0 + 61) is not None


def test_epoch_and_window_arguments_are_checked() -> None:
    with pytest.raises(ValueError):
        EpochKeys(0, lambda: b"k" * 32)
    with pytest.raises(ValueError):
        EpochKeys(300, lambda: b"k" * 32, grace_s=300)
    with pytest.raises(ValueError):
        EpochKeys(300, lambda: b"short").key(T0, T0)
    with pytest.raises(ValueError):
        Windows(0, DistinctSet)


def test_a_burst_stamped_ahead_of_the_clock_across_a_boundary_gets_its_epochs_key() -> None:
    """The Stamper puts one sensor's readings 1 ms apart from `now`: 2,000 at once, 1.5 s before
    a key rotation, reach 0.5 s into the next epoch. The stage's tolerance (DEVICE_AHEAD_S) gives
    them that epoch's key; the device-clock tolerance alone (1 s) would refuse the ~500 past the boundary."""
    from gateway.privacy.stage import DEVICE_AHEAD_S
    from gateway.sources.stamp import DEVICE_CLOCK_AHEAD, Stamper

    now = T0 + 300 - 1.5
    stamper = Stamper()
    stamps = [stamper.stamp("footfall-1", now) for _ in range(2000)]
    assert stamps[-1] - now > DEVICE_CLOCK_AHEAD
    stage_keys = EpochKeys(300, lambda: b"k" * 32, ahead_s=DEVICE_AHEAD_S)
    assert all(stage_keys.key(t, now) is not None for t in stamps) and stage_keys.refused_future == 0
    assert len(stage_keys.live) == 2
    strict = EpochKeys(300, lambda: b"k" * 32, ahead_s=DEVICE_CLOCK_AHEAD)
    refused = sum(strict.key(t, now) is None for t in stamps)
    assert refused == strict.refused_future == sum(t >= T0 + 300 for t in stamps) > 400
