"""What a codec module exports. Kept apart from the registry so codec modules can import it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from firmware_bridge.base import Catalogue, DecodeError, Event
from firmware_bridge.options import DriverOptions

OptionsT = TypeVar("OptionsT", bound=DriverOptions)


@dataclass(frozen=True, slots=True)
class CodecSpec(Generic[OptionsT]):
    """`decode(payload, fport, options)` is pure and never raises; `catalogue_for(options)`
    declares every field `decode` can yield under those options (and the aggregates the privacy
    stage derives from them). A valid frame that holds no reading gives `Ignored`."""

    name: str
    Options: type[OptionsT]
    catalogue_for: Callable[[OptionsT], Catalogue]
    decode: Callable[[bytes, int | None, OptionsT], list[Event]]
    doc: str
    example_options: dict[str, Any] = field(default_factory=dict)  # for docs, demos and tests


def guarded(spec: CodecSpec[Any], payload: bytes, fport: int | None, options: Any) -> list[Event]:
    """Last-resort net: a codec bug on hostile bytes becomes a counted `decoder_bug` error
    instead of an exception in the source. Tests assert it never fires."""
    try:
        return spec.decode(payload, fport, options)
    except Exception:  # deliberate: bad input must never crash the source
        return [DecodeError("decoder_bug", "codec failed unexpectedly on this input")]
