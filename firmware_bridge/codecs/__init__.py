"""LoRaWAN payload codecs: the one explicit registry. A codec is one module and one line here.

A codec turns a LoRaWAN FRMPayload (and its fPort) into readings, for devices whose network
server delivers bytes rather than a decoded object. Each module exports `CODEC`, a `CodecSpec`:
its pydantic `Options` model, the catalogue those options give, and a pure `decode` that never
raises. A valid frame this codec does not turn into readings (a status or configuration frame,
say) gives `Ignored`: the caller counts it apart from errors. The LoRaWAN profiles choose a
codec per fPort (`ports: {1: {codec: paxcounter_packed}}`); `tests/unit/test_registry.py`
holds every codec here to the plugin contract.
"""

from __future__ import annotations

from typing import Any

from firmware_bridge.codecs import cayenne_lpp, paxcounter_lpp, paxcounter_packed, paxcounter_plain
from firmware_bridge.codecs.spec import CodecSpec, guarded

__all__ = ["CODECS", "CodecSpec", "guarded"]

CODECS: dict[str, CodecSpec[Any]] = {
    "cayenne_lpp": cayenne_lpp.CODEC,
    "paxcounter_packed": paxcounter_packed.CODEC,
    "paxcounter_plain": paxcounter_plain.CODEC,
    "paxcounter_lpp": paxcounter_lpp.CODEC,
}
