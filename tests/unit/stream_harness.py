"""Shared pieces for testing serial stream decoders: how to split a byte stream, feed it, damage
frames, and drive a simulated device through its poller. Plain functions and strategies; the
properties themselves are in test_stream_decoders.py, parametrised over every serial driver."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Protocol

from hypothesis import settings
from hypothesis import strategies as st

from firmware_bridge.base import Decoded, DecodeError, Event, FrameCounters
from firmware_bridge.driver import Poller, SimulatedDevice

PROPS = settings(max_examples=200, derandomize=True, database=None, deadline=None)

# cut points for chunks(): taken modulo the stream length, so any list splits any stream
cuts = st.lists(st.integers(0, 10_000), max_size=12)
# (kind, where, xor) for damaged()
damage = st.tuples(st.sampled_from(["truncate", "corrupt"]), st.integers(0, 10_000),
                   st.integers(1, 255))  # fmt: skip


class BufferedDecoder(Protocol):
    """A stream decoder whose pending bytes are visible, for the bounded-buffer property."""

    counters: FrameCounters
    _buf: bytearray

    def feed(self, data: bytes) -> list[Event]: ...


def garbage_without(*starts: int, max_size: int = 30) -> st.SearchStrategy[bytes]:
    """Random bytes with every byte that could start a frame left out, so garbage can never
    hide an accidental valid frame."""
    drop = bytes(starts)
    return st.binary(max_size=max_size).map(lambda b: bytes(x for x in b if x not in drop))


def chunks(data: bytes, points: list[int]) -> list[bytes]:
    """`data` cut at `points` (modulo its length): the parts join back to `data`."""
    marks = sorted({p % (len(data) + 1) for p in points} | {0, len(data)})
    return [data[a:b] for a, b in pairwise(marks)]


def splits(data: bytes, points: list[int]) -> list[list[bytes]]:
    """The same stream whole, byte by byte, and cut at `points`."""
    return [[data], [bytes([b]) for b in data], chunks(data, points)]


def feed(decoder: BufferedDecoder, parts: list[bytes]) -> list[Event]:
    events: list[Event] = []
    for part in parts:
        events += decoder.feed(part)
    return events


def values(events: list[Event]) -> list[dict[str, object]]:
    return [dict(e.values) for e in events if isinstance(e, Decoded)]


def errors(events: list[Event]) -> list[DecodeError]:
    return [e for e in events if isinstance(e, DecodeError)]


def damaged(frame: bytes, kind: str, where: int, xor: int, keep: int = 1, lose: int = 1) -> bytes:
    """`frame` truncated (at least `keep` bytes kept and `lose` lost) or with one byte flipped."""
    if kind == "truncate":
        return frame[: keep + where % (len(frame) - keep - lose + 1)]
    i = where % len(frame)
    return frame[:i] + bytes([frame[i] ^ xor]) + frame[i + 1 :]


Damage = Callable[[bytes, str, int, int], bytes]


@dataclass(frozen=True)
class StreamCase:
    """One serial driver as the stream properties see it.

    `frames` draws (valid frame bytes, what `observe` must report for it); `garbage` draws
    bytes that cannot contain a frame; `garbage_counters` are the counters of which at least one
    must move when garbage was skipped (a COBS decoder rejects it, a header hunter resyncs)."""

    name: str
    new_decoder: Callable[[], BufferedDecoder]
    frames: st.SearchStrategy[tuple[bytes, object]]
    garbage: st.SearchStrategy[bytes]
    max_buffer: int
    observe: Callable[[list[Event]], Sequence[object]] = values
    damaged: Damage = damaged
    garbage_counters: tuple[str, ...] = ("resyncs",)
    max_frames: int = 6  # per stream; a stream with damaged frames gets two more
    max_noise_part: int = 64  # size of one random-bytes part fed to the decoder


def exchange(
    device: SimulatedDevice,
    poller: Poller | None,
    decoder: BufferedDecoder,
    *,
    start: float,
    step: float,
    steps: int,
) -> list[Event]:
    """Open the poller, then every `step` seconds send what it says is due and take what the
    device sends by itself; close the poller. Everything the device answers goes to `decoder`."""
    events: list[Event] = []
    t = start
    for cmd in poller.on_open(t) if poller else []:
        events += decoder.feed(device.receive(cmd, t))
    for n in range(steps):
        t = start + n * step
        for cmd in poller.due(t) if poller else []:
            events += decoder.feed(device.receive(cmd, t))
        events += decoder.feed(device.tick(t))
    for cmd in poller.on_close() if poller else []:
        events += decoder.feed(device.receive(cmd, t))
    return events
