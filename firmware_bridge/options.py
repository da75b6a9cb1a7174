"""Typed options for drivers and codecs: one pydantic model per plugin, the only place options
are checked.

`street-gateway check` validates a sensor's `options:` against its driver's model, so a typo, a
wrong type or an out-of-range value is reported as `FILE:LINE sensors[2].options.mode: …` before
anything runs, and a decoder or poller receives a validated, frozen object: nothing raises on
options at run time. `schema` exports the same models as JSON Schema.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|min|h|d|w)?\s*$")
_DUR_FACTOR = {"ms": 0.001, "s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800, None: 1}


def parse_duration(v: Any) -> float:
    """'15m', '24h', '30d', '500ms' or a number of seconds."""
    if isinstance(v, bool):
        raise ValueError("must be a duration like 15m, 24h or 30d")
    if isinstance(v, int | float):
        return float(v)
    m = _DURATION.match(str(v))
    if not m:
        raise ValueError(f"must be a duration like 15m, 24h or 30d, not {v!r}")
    return float(m.group(1)) * _DUR_FACTOR[m.group(2)]


Duration = Annotated[float, BeforeValidator(parse_duration), Field(ge=0)]
PositiveDuration = Annotated[float, BeforeValidator(parse_duration), Field(gt=0)]


MAX_WORD_CHARS = 64


def _words(v: Any) -> Any:
    """YAML `allowed: [0, 1]` means the words "0" and "1" (a device's numeric status codes)."""
    if isinstance(v, list):
        return [str(x) if isinstance(x, int) and not isinstance(x, bool) else x for x in v]
    return v


# A category's vocabulary: the only words that may leave for it (docs/privacy.md, default deny).
Vocabulary = Annotated[
    list[Annotated[str, Field(min_length=1, max_length=MAX_WORD_CHARS)]],
    BeforeValidator(_words),
    Field(min_length=1, max_length=256),
]
VOCABULARY_NEEDED = (
    "allowed: a published category needs its vocabulary, the words that may leave (free text "
    "never does): list the device's words, or mark the field personal"
)


class DriverOptions(BaseModel):
    """Base of every driver's and codec's `Options`: unknown keys are errors, values frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


class NoOptions(DriverOptions):
    """For drivers that take no options: any key is an error."""


MAX_PAYLOAD_BYTES_CEILING = 1024 * 1024
DEFAULT_MAX_PAYLOAD_BYTES = 64 * 1024


class PayloadOptions(DriverOptions):
    """Options every message (MQTT, OCPP) profile shares."""

    max_payload_bytes: int = Field(
        DEFAULT_MAX_PAYLOAD_BYTES,
        gt=0,
        le=MAX_PAYLOAD_BYTES_CEILING,
        description="Messages larger than this are refused (counted as too_large).",
    )


class DutyCycle(DriverOptions):
    """Sleep the fan and laser between bursts so they last years: `{work: 30s, sleep: 4m30s}`."""

    work_s: float = Field(gt=0, description="Seconds awake and measuring per cycle.")
    sleep_s: float = Field(gt=0, description="Seconds asleep per cycle.")
