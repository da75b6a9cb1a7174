"""Serial decoder throughput: frames/s fed as one buffer and byte by byte.

Run from the repo root: `python bench/bench_decoders.py [frames]`. Prints figures only; a
Raspberry Pi reads at most ~1,000 frames/s across all its UARTs, so anything far above that is
headroom. The byte-by-byte figure is the worst case of a serial read returning single bytes.
"""

from __future__ import annotations

import random
import struct
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from firmware_bridge import framing, modbus
from firmware_bridge.base import Decoded, StreamDecoder
from firmware_bridge.drivers import (
    eastron_sdm,
    node,
    pms5003,
    sds011,
    senseair_s8,
    sps30,
)


def streams(n: int, rng: random.Random) -> dict[str, tuple[Callable[[], StreamDecoder], bytes]]:
    def u16() -> int:
        return rng.randrange(0x10000)

    floats = [struct.pack(">10f", *(rng.uniform(0, 500) for _ in range(10))) for _ in range(n)]
    return {
        "pms5003": (pms5003.Decoder, b"".join(
            pms5003.encode_frame({w: u16() for w in pms5003.WORDS}) for _ in range(n))),
        "sds011": (sds011.Decoder, b"".join(
            sds011.encode_frame(rng.randrange(10000), rng.randrange(10000)) for _ in range(n))),
        "sps30": (sps30.Decoder, b"".join(
            sps30.encode_response(sps30.CMD_READ, f) for f in floats)),
        "senseair_s8": (senseair_s8.Decoder, b"".join(
            modbus.encode_response(0xFE, 4, struct.pack(">4H", 0, 0, 0, rng.randrange(400, 5000)))
            for _ in range(n))),
        "eastron_sdm": (eastron_sdm.Decoder, b"".join(
            modbus.encode_response(1, 4, struct.pack(">7f", *(rng.uniform(0, 300) for _ in range(7))))
            for _ in range(n))),
        "node": (node.Decoder, b"".join(
            framing.encode_readings(i, {"no2": round(rng.uniform(0, 99), 1),
                                        "temperature": round(rng.uniform(-5, 30), 2),
                                        "humidity": round(rng.uniform(30, 95), 1)})
            for i in range(n))),
    }  # fmt: skip


def rate(new: Callable[[], StreamDecoder], parts: list[bytes], frames: int) -> float:
    decoder = new()
    start = time.perf_counter()
    got = 0
    for part in parts:
        got += sum(isinstance(e, Decoded) for e in decoder.feed(part))
    elapsed = time.perf_counter() - start
    if got != frames:
        raise SystemExit(f"decoded {got} of {frames} frames")
    return frames / elapsed


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    print(f"{'decoder':<12} {'frame B':>8} {'whole frames/s':>15} {'bytewise frames/s':>18}")
    for name, (new, stream) in streams(n, random.Random(1)).items():
        whole = rate(new, [stream], n)
        bytewise = rate(new, [stream[i : i + 1] for i in range(len(stream))], n)
        print(f"{name:<12} {len(stream) / n:>8.1f} {whole:>15,.0f} {bytewise:>18,.0f}")


if __name__ == "__main__":
    main()
