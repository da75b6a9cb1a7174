"""`load_json` takes a payload that is one JSON value spanning the whole text with the decoder's
C scanner alone (`_strict_loads`), and leaves everything else to `JSONDecoder.decode`: the two
must give the same value, or the same error, for any text."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_bridge.jsonpayload import STRICT_DECODER, _strict_loads

values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)
space = st.sampled_from(["", " ", "\n", "\t ", "\r\n"])
tails = st.sampled_from(["", "", "x", "}", ",", "1", " 2", "//", "NaN", "\x00"])


def outcome(load: object, text: str) -> tuple[str, object]:
    try:
        return "value", load(text)  # type: ignore[operator]
    except Exception as e:  # the same kind of error, with the same message
        return type(e).__name__, str(e)


@settings(max_examples=1500, deadline=None)
@given(value=values, before=space, after=space, tail=tails, compact=st.booleans())
def test_the_scanner_alone_gives_what_decode_gives(value: object, before: str, after: str, tail: str,
                                                   compact: bool) -> None:  # fmt: skip
    body = json.dumps(value, separators=(",", ":") if compact else None, allow_nan=True)
    text = before + body + after + tail
    assert outcome(_strict_loads, text) == outcome(STRICT_DECODER.decode, text)


@settings(max_examples=1500, deadline=None)
@given(text=st.text(alphabet='{}[]":,0123456789.eE+-tfnulrsaINfiy \\\n', max_size=24))
def test_any_text_gives_the_same_value_or_error(text: str) -> None:
    assert outcome(_strict_loads, text) == outcome(STRICT_DECODER.decode, text)


def test_deep_nesting_and_constants_fail_alike() -> None:
    for text in ["[" * 100_000 + "]" * 100_000, "NaN", '{"a": Infinity}', "-Infinity", "1" * 5000]:
        assert outcome(_strict_loads, text) == outcome(STRICT_DECODER.decode, text), text[:20]
