"""ESP32 Wi-Fi probe-request sniffer for footfall: personal data at source.

Each probe becomes one reading whose every field is personal; the only thing that may leave the
gateway is `footfall`, a distinct count of MACs per window computed (and small counts suppressed)
by the privacy stage. The probe sequence number is linkable across randomised MACs and is not
needed for counting, so it is dropped here and never enters the pipeline.
"""

from __future__ import annotations

import json
import random
import re
from typing import Any

from pydantic import Field as Opt

from firmware_bridge.base import (
    Aggregation,
    Catalogue,
    Decoded,
    DecodeError,
    Event,
    Field,
    ObservationType,
    Role,
    Value,
)
from firmware_bridge.driver import MessageDriver
from firmware_bridge.jsonpayload import (
    PayloadDecoder,
    as_float,
    as_int,
    concrete_topic,
    load_json,
)
from firmware_bridge.options import PayloadOptions, PositiveDuration

DEFAULT_MAX_PROBES = 500
_MAC = re.compile(r"[0-9a-fA-F]{2}([:-]?)[0-9a-fA-F]{2}(?:\1[0-9a-fA-F]{2}){4}")
_LOCAL_BIT_DIGITS = frozenset("26ae")  # second hex digit with the locally-administered bit set

CATALOGUE = Catalogue(
    driver="wifi_probe_sniffer",
    make="Espressif",
    model="ESP32 probe-request sniffer (monitor mode)",
    description="Wi-Fi probe requests for footfall estimation; counted, never forwarded",
    transport="mqtt",
    datasheet="ICO guidance on Wi-Fi analytics",
    fields=(
        Field(
            "mac",
            None,
            ObservationType.CATEGORY,
            "Source MAC, lower case with colons",
            role=Role.IDENTIFIER,
        ),
        Field(
            "rssi",
            "dB[mW]",
            ObservationType.MEASUREMENT,
            "Received signal strength",
            role=Role.CONTEXT,
            minimum=-120,
            maximum=0,
        ),
        Field(
            "randomised",
            None,
            ObservationType.TRUTH,
            "MAC has the locally-administered bit",
            role=Role.CONTEXT,
        ),
        Field(
            "ch",
            None,
            ObservationType.OBSERVATION,
            "Wi-Fi channel number the probe was heard on",
            role=Role.CONTEXT,
        ),
        Field(
            "footfall",
            "{devices}",
            ObservationType.COUNT,
            "Distinct devices heard in the window",
            aggregation=Aggregation.DISTINCT_COUNT,
            source="mac",
            estimator="wifi_footfall",
            inputs=("rssi", "randomised"),
        ),
    ),
)


def normalise_mac(value: object) -> str | None:
    """`3C-22-FB-12-34-56`, `3c22fb123456` and `3c:22:fb:12:34:56` are one device."""
    if not isinstance(value, str) or not _MAC.fullmatch(value):
        return None
    digits = re.sub(r"[:-]", "", value).lower()
    return ":".join(digits[i : i + 2] for i in range(0, 12, 2))


def is_randomised(mac: str) -> bool:
    return mac[1] in _LOCAL_BIT_DIGITS


class Options(PayloadOptions):
    """The decoder's bound, and per-sensor overrides of the footfall method (privacy.footfall):
    unset means the gateway-wide value."""

    max_probes_per_message: int = Opt(
        DEFAULT_MAX_PROBES, gt=0, le=10_000, description="Longer probe lists are refused."
    )
    rssi_min_dbm: float | None = Opt(None, ge=-120, le=0, description="Weaker probes are ignored.")
    dwell_max: PositiveDuration | None = Opt(None, description="Seen across longer: not footfall.")
    randomised_factor: float | None = Opt(None, ge=0, le=1, description="Devices per random MAC.")
    max_tracked: int | None = Opt(None, ge=100, le=1_000_000, description="Dwell table bound.")


class Decoder(PayloadDecoder):
    """Stateless: one payload is one probe object or a list of them (bounded)."""

    def __init__(self, options: Options) -> None:
        super().__init__(options)
        self.max_probes = options.max_probes_per_message

    def _decode(self, topic: str, payload: bytes) -> list[Event]:
        message = load_json(payload, self.limit)
        if isinstance(message, DecodeError):
            return [message]
        probes = message if isinstance(message, list) else [message]
        if len(probes) > self.max_probes:
            return [DecodeError("too_large", f"more than {self.max_probes} probes in one batch")]
        return [_probe(p) for p in probes]


def _probe(probe: Any) -> Event:
    if not isinstance(probe, dict):
        return DecodeError("wrong_type", "probe is not a JSON object")
    if "mac" not in probe or "rssi" not in probe:
        return DecodeError("missing_field", "probe lacks its address or signal strength")
    mac = normalise_mac(probe["mac"])
    if mac is None:
        return DecodeError("bad_value", "probe address is not a 48-bit hardware address")
    rssi = as_int(probe["rssi"])
    if rssi is None or not -120 <= rssi <= 0:
        return DecodeError("bad_value", "signal strength is not an integer from -120 to 0")
    values: dict[str, Value] = {"mac": mac, "rssi": rssi, "randomised": is_randomised(mac)}
    if "ch" in probe:
        channel = as_int(probe["ch"])
        if channel is None or not 1 <= channel <= 233:
            return DecodeError("bad_value", "radio channel is not an integer from 1 to 233")
        values["ch"] = channel
    when: float | None = None
    if "ts" in probe:
        when = as_float(probe["ts"])
        if when is None or not 0 < when < 2**33:
            return DecodeError("bad_value", "probe time is not plausible epoch seconds")
    return Decoded(values, device_time=when)


def catalogue_for(options: Options) -> Catalogue:
    return CATALOGUE


def _random_mac(rng: random.Random, randomised: bool) -> str:
    octets = [rng.randrange(256) for _ in range(6)]
    octets[0] = (octets[0] & 0xFC) | (0x02 if randomised else 0x00)  # unicast, local or global
    return ":".join(f"{o:02x}" for o in octets)


def simulate(rng: random.Random, now: float, base_topic: str) -> list[tuple[str, bytes]]:
    """A few seconds of a busy pavement: phones probe in bursts, most with randomised MACs,
    some seen more than once, signal strength spread from near the sniffer to across the road."""
    topic = concrete_topic(base_topic, "sniffer-1")
    devices = [_random_mac(rng, rng.random() < 0.7) for _ in range(rng.randint(5, 40))]
    probes: list[dict[str, Any]] = []
    for mac in devices:
        base_rssi = max(-95, min(-30, int(rng.gauss(-70, 10))))
        for burst in range(rng.choice((1, 1, 2, 3))):
            probes.append(
                {
                    "mac": mac,
                    "rssi": max(-100, min(-20, base_rssi + rng.randint(-3, 3))),
                    "seq": rng.randrange(4096),
                    "ch": rng.choice((1, 6, 11)),
                    "ts": round(now - rng.uniform(0, 5) + burst * 0.1, 3),
                }
            )
    rng.shuffle(probes)
    messages: list[tuple[str, bytes]] = []
    while probes:
        size = 1 if rng.random() < 0.3 else rng.randint(2, 50)
        batch, probes = probes[:size], probes[size:]
        body: Any = batch[0] if len(batch) == 1 else batch
        messages.append((topic, json.dumps(body, separators=(",", ":")).encode()))
    return messages


DRIVER = MessageDriver(
    name="wifi_probe_sniffer",
    catalogue_for=catalogue_for,
    new_decoder=Decoder,
    options=Options,
    default_topic="footfall/+/probes",
    simulate=simulate,
    doc="docs/drivers/wifi_probe_sniffer.md",
)
