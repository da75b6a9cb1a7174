"""round_result's short path (a float with 4 decimals or fewer) gives exactly `round(v, 4)`.

The reference is Python's own correctly rounded `round`, with negative zero made 0.0 as
round_result always did; equality is of the bits (struct), so -0.0 and 0.0 differ, NaN equals
NaN, and a result one ulp off fails."""

from __future__ import annotations

import math
import struct
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.privacy.stage import _ROUND_EXACT_BELOW, round_result


def reference(v: float) -> float:
    r = round(v, 4)
    return 0.0 if r == 0 else r


def bits(v: float) -> bytes:
    return struct.pack("<d", v)


def same(v: float) -> bool:
    return bits(round_result(v)) == bits(reference(v))


@settings(max_examples=3000)
@given(st.floats(allow_nan=True, allow_infinity=True, allow_subnormal=True))
def test_any_float(v: float) -> None:
    assert same(v)


# what sensors send: decimal text with a few places, parsed to the nearest float
@settings(max_examples=3000)
@given(st.integers(min_value=-(10**12), max_value=10**12), st.integers(min_value=0, max_value=8))
def test_decimal_values_as_devices_send_them(mantissa: int, places: int) -> None:
    v = float(Decimal(mantissa).scaleb(-places))
    assert same(v)
    assert same(-v)


def test_every_value_with_up_to_4_decimals_in_a_range() -> None:
    # -100.0000 .. 100.0000 in steps of 0.0001 (2,000,001 values): the short path's home ground
    for n in range(-1_000_000, 1_000_001):
        v = n / 10000
        if bits(round_result(v)) != bits(reference(v)):
            raise AssertionError(f"{v!r}: {round_result(v)!r} != {reference(v)!r}")


def test_the_floats_next_to_4_decimal_values() -> None:
    # one and two ulps either side of each 4-decimal value in -10 .. 10: their product is often
    # the same whole number, so a short path that returned v itself instead of k / 10^4 fails
    # here (7.9422999999999995 is 7.9423 to 4 decimals)
    for n in range(-100_000, 100_001):
        v = n / 10000
        for away in (math.inf, -math.inf):
            one = math.nextafter(v, away)
            for x in (one, math.nextafter(one, away)):
                if bits(round_result(x)) != bits(reference(x)):
                    raise AssertionError(f"{x!r}: {round_result(x)!r} != {reference(x)!r}")


def test_halfway_and_near_halfway_values() -> None:
    # 5 in the fifth place (ties in decimal, never exactly in binary) and a few ulps around
    for n in range(-20_000, 20_000):
        base = (n + 0.5) / 10000
        for v in (base, math.nextafter(base, math.inf), math.nextafter(base, -math.inf)):
            assert same(v), v


def test_at_the_bound_and_beyond() -> None:
    for k in (_ROUND_EXACT_BELOW, 2.0**51, 2.0**52, 2.0**53, 1e20, 1e300, 1.7976931348623157e308):
        for v in (k / 10000, math.nextafter(k / 10000, 0.0), math.nextafter(k / 10000, math.inf)):
            assert same(v), v
            assert same(-v), -v


def test_zero_tiny_and_special() -> None:
    for v in (0.0, -0.0, 5e-324, -5e-324, 4.9e-5, -4.9e-5, 5e-5, -5e-5, 5.0000001e-5,
              math.inf, -math.inf, math.nan):
        assert same(v), v
    assert bits(round_result(-0.00001)) == bits(0.0)


# where every float is a whole number (from 2^53 on) the product is whole for any v: the short
# path must not be taken there (values found by a search against `round`)
def test_large_values_whose_product_is_whole_but_not_exact() -> None:
    # products in [2^54, 2^55) and beyond: a bound of 2^54, 2^55, 2^56 or more fails on one of them
    for v in (928873291048.2771, 2081934856979.6418, 3985707240145.195, 117219081133582.5):
        assert (v * 10000.0).is_integer()
        assert same(v), v
        assert same(-v), -v


@settings(max_examples=3000)
@given(st.floats(min_value=2.0**50 / 10000, max_value=2.0**70 / 10000))
def test_any_float_near_and_past_the_bound(v: float) -> None:
    assert same(v)
    assert same(-v)
