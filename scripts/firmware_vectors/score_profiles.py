#!/usr/bin/env python3
"""Print how the MQTT profiles fare on the firmware vectors in tests/data/firmware/.

A vector counts as right when the profile's topic filter (its default, or the one its example
options derive) subscribes to it, or it is expected to be ignored anyway, and the decoder's
outcome (reading / ignored / error, and the values) is the one the vector expects.
Run before and after a profile rewrite: `python scripts/firmware_vectors/score_profiles.py`.
"""

from __future__ import annotations

import collections
import sys
from pathlib import Path

from paho.mqtt.client import topic_matches_sub

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from firmware_bridge.base import Decoded, DecodeError
from firmware_bridge.drivers import MESSAGE_DRIVERS
from tests.unit.firmware_data import load, payload_bytes


def outcome(events: list[object]) -> str:
    if not events:
        return "ignored"
    if isinstance(events[0], DecodeError):
        return "error"
    return "reading" if isinstance(events[0], Decoded) else "ignored"


def same(values: dict[str, object], want: dict[str, object]) -> bool:
    for key, expected in want.items():
        got = values.get(key)
        if isinstance(expected, float) and isinstance(got, int | float):
            if abs(got - expected) > 1e-6:
                return False
        elif got != expected:
            return False
    return True


def score(driver: str, vectors: list[dict[str, object]], **options: object) -> None:
    spec = MESSAGE_DRIVERS[driver]
    opts = spec.options.model_validate({**spec.example_options, **options})
    tally: collections.Counter[str] = collections.Counter()
    for v in vectors:
        decoder = spec.new_decoder(opts)  # a first report, as after a restart
        topic = str(v["topic"])
        events = decoder.decode(topic, payload_bytes(str(v["payload"])))
        got = outcome(events)
        decoded_right = got == v["expect"]
        if decoded_right and got == "reading" and "values" in v:
            decoded_right = same(dict(events[0].values), v["values"])  # type: ignore[union-attr, arg-type]
            if not decoded_right:
                tally["reading with wrong values"] += 1
        elif not decoded_right:
            tally[f"expected {v['expect']}, decoded as {got}"] += 1
        subscribed = topic_matches_sub(spec.topic(opts) or "", topic)
        if not subscribed and v["expect"] != "ignored":
            tally["not subscribed by the default topic"] += 1
        tally["right"] += (subscribed or v["expect"] == "ignored") and decoded_right
    print(f"{driver} {options or ''}: {tally['right']}/{len(vectors)} right")
    for key, n in sorted(tally.items()):
        if key != "right":
            print(f"  {key}: {n}")


def main() -> None:
    score("openevse", load("firmware", "openevse.json")["vectors"])
    score("axis_object_analytics", load("firmware", "axis_object_analytics.json")["vectors"])
    encoders = {"packed": "packed", "packed_opensensebox": "packed", "plain": "plain",
                "lpp_dynamic": "lpp", "lpp_packed": "lpp"}  # fmt: skip
    for fmt, cases in load("firmware", "paxcounter.json")["formats"].items():
        pax = [{"topic": c["mqtt_topic"], "payload": c["mqtt_payload"],
                "expect": "reading" if c["case"].startswith("wifi=") else "ignored"}
               for c in cases]  # fmt: skip
        score("paxcounter", pax, encoder=encoders[fmt])

if __name__ == "__main__":
    main()
