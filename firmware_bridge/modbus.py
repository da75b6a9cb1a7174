"""Modbus RTU pieces shared by the polled meters (SenseAir S8, Eastron SDM), sans-I/O: CRC,
request/response encoding, the response stream decoder, a base for a meter's event decoder and
a base for its simulated server.

RTU frames are delimited on the wire by 3.5 characters of silence, which a sans-I/O decoder
cannot see. Instead the response decoder knows each response's length from its function code
and byte count, checks the CRC, and after a rejected candidate drops exactly one byte and hunts
again, so a real frame hiding behind noise is still found. An incomplete candidate that has a
complete CRC-valid frame after its start is given up at once (a polled device goes quiet after
each answer, so waiting for the missing bytes would hold the good frame until the next poll).

Polling (`CyclePoller`): one request on the bus at a time; the next goes once the answer came
(or `timeout` passed) plus a short silence; a cycle of requests always completes before the
next cycle begins. The poller and the decoder share one `Transaction` (the request in flight),
so the poller knows when its answer arrived and a late answer is rejected, not misread.
"""

from __future__ import annotations

import struct
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass

from firmware_bridge.base import Decoded, DecodeError, Event, FrameCounters, PollCounters

READ_HOLDING_REGISTERS = 0x03
READ_INPUT_REGISTERS = 0x04
READ_FUNCTIONS = frozenset({READ_HOLDING_REGISTERS, READ_INPUT_REGISTERS})
EXCEPTION_BIT = 0x80
MAX_READ_COUNT = 125  # registers per read, from the Modbus application protocol spec
MAX_BYTE_COUNT = 2 * MAX_READ_COUNT
MAX_BUFFER = 512  # a response is at most 3 + 250 + 2 bytes; this is the hard bound

EXCEPTION_NAMES = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "server device failure",
    5: "acknowledge",
    6: "server device busy",
    8: "memory parity error",
    10: "gateway path unavailable",
    11: "gateway target failed to respond",
}


def _make_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_TABLE = _make_table()


def crc16(data: bytes | bytearray | memoryview) -> int:
    """CRC-16/MODBUS: reflected poly 0xA001, init 0xFFFF (check value 0x4B37)."""
    crc = 0xFFFF
    for b in data:
        crc = (crc >> 8) ^ _TABLE[(crc ^ b) & 0xFF]
    return crc


def with_crc(body: bytes) -> bytes:
    """Append the CRC low byte first, as RTU sends it."""
    return body + crc16(body).to_bytes(2, "little")


def crc_ok(frame: bytes | bytearray) -> bool:
    return len(frame) >= 4 and crc16(frame[:-2]) == int.from_bytes(frame[-2:], "little")


def read_request(address: int, function: int, start: int, count: int) -> bytes:
    """Encode a read holding (0x03) / input (0x04) registers request."""
    if function not in READ_FUNCTIONS:
        raise ValueError(f"function 0x{function:02X} is not a register read")
    if not 0 <= address <= 0xFF or not 0 <= start <= 0xFFFF or not 1 <= count <= MAX_READ_COUNT:
        raise ValueError("address, start or count out of range")
    return with_crc(struct.pack(">BBHH", address, function, start, count))


def read_input_registers(address: int, start: int, count: int) -> bytes:
    return read_request(address, READ_INPUT_REGISTERS, start, count)


def read_holding_registers(address: int, start: int, count: int) -> bytes:
    return read_request(address, READ_HOLDING_REGISTERS, start, count)


def parse_request(frame: bytes) -> tuple[int, int, int, int] | None:
    """(address, function, start, count) of an 8-byte read request, or None; for simulators."""
    if len(frame) != 8 or not crc_ok(frame) or frame[1] not in READ_FUNCTIONS:
        return None
    address, function, start, count = struct.unpack(">BBHH", frame[:6])
    return address, function, start, count


def encode_response(address: int, function: int, data: bytes) -> bytes:
    """A read response as a server sends it: address, function, byte count, data, CRC."""
    return with_crc(bytes([address, function, len(data)]) + data)


def encode_exception(address: int, function: int, code: int) -> bytes:
    return with_crc(bytes([address, function | EXCEPTION_BIT, code]))


def registers(data: bytes) -> tuple[int, ...]:
    """Big-endian 16-bit registers of a response's data."""
    return struct.unpack(f">{len(data) // 2}H", data[: len(data) // 2 * 2])


def float32(data: bytes, offset: int = 0) -> float:
    """A big-endian IEEE-754 float32 (two registers), as the shortest decimal that maps back to
    the same float32, so 230.1 reads as 230.1 and not 230.10000610351562."""
    raw = data[offset : offset + 4]
    (value,) = struct.unpack(">f", raw)
    if value != value or value in (float("inf"), float("-inf")):
        return float(value)
    for digits in (6, 7, 8):
        shortest = float(f"{value:.{digits}g}")
        if struct.pack(">f", shortest) == raw:
            return shortest
    return float(f"{value:.9g}")


def pack_float32(value: float) -> bytes:
    return struct.pack(">f", value)


@dataclass(frozen=True, slots=True)
class Response:
    """A CRC-checked read response; `data` is the register bytes after the byte count."""

    address: int
    function: int
    data: bytes


@dataclass(frozen=True, slots=True)
class ExceptionResponse:
    """A server's refusal (function | 0x80). Kept apart from DecodeError so callers can tie it
    to the request in flight before reporting it."""

    address: int
    function: int
    code: int

    def error(self) -> DecodeError:
        name = EXCEPTION_NAMES.get(self.code, "unknown exception")
        return DecodeError(
            "modbus_exception",
            f"device {self.address} refused function 0x{self.function:02X}: "
            f"exception {self.code} ({name})",
        )


Frame = Response | ExceptionResponse | DecodeError


class ResponseDecoder:
    """Feed any split of the bytes a master receives; get responses back, in order.

    `byte_counts` (the response sizes the caller can ask for) and `addresses` narrow the hunt:
    a candidate header outside them is skipped at once instead of waiting for up to 255 bytes
    of noise to fail a CRC. Never raises on input.
    """

    def __init__(
        self,
        functions: Iterable[int] = READ_FUNCTIONS,
        byte_counts: Iterable[int] | None = None,
        addresses: Iterable[int] | None = None,
        counters: FrameCounters | None = None,
    ) -> None:
        self.functions = frozenset(functions)
        self.exception_functions = frozenset(f | EXCEPTION_BIT for f in self.functions)
        self.byte_counts = (
            frozenset(byte_counts)
            if byte_counts is not None
            else frozenset(range(2, MAX_BYTE_COUNT + 1, 2))
        )
        self.addresses = frozenset(addresses) if addresses is not None else None
        self.counters = counters if counters is not None else FrameCounters()
        self._buf = bytearray()
        self._aligned = True

    def _skip(self, n: int) -> None:
        """Drop n bytes that cannot start a frame; one resync per run of skipped bytes."""
        if self._aligned:
            self.counters.resyncs += 1
            self._aligned = False
        del self._buf[:n]

    def _length_at(self, i: int) -> int:
        """Frame length if a plausible header starts at i; 0 if more bytes are needed to tell;
        -1 if no frame can start there."""
        buf = self._buf
        if self.addresses is not None and buf[i] not in self.addresses:
            return -1
        if len(buf) < i + 2:
            return 0
        function = buf[i + 1]
        if function in self.exception_functions:
            return 5
        if function not in self.functions:
            return -1
        if len(buf) < i + 3:
            return 0
        return 5 + buf[i + 2] if buf[i + 2] in self.byte_counts else -1

    def _complete_frame_after_start(self) -> int:
        """Where a later complete, CRC-valid frame starts, or 0. A polled device goes quiet
        after each response, so a truncated frame must not hold the next one hostage until
        more bytes arrive."""
        buf = self._buf
        for i in range(1, len(buf) - 4):
            total = self._length_at(i)
            if total > 0 and i + total <= len(buf) and crc_ok(buf[i : i + total]):
                return i
        return 0

    def feed(self, data: bytes) -> list[Frame]:
        self.counters.bytes += len(data)
        buf = self._buf
        buf += data
        out: list[Frame] = []
        while buf:
            total = self._length_at(0)
            if total < 0:
                self._skip(1)
                continue
            if total == 0 or len(buf) < total:
                later = self._complete_frame_after_start() if total else 0
                if not later:
                    break
                self.counters.rejected += 1
                out.append(DecodeError("truncated", "incomplete frame followed by a complete one"))
                self._skip(later)
                continue
            frame = bytes(buf[:total])
            if not crc_ok(frame):
                self.counters.checksum_errors += 1
                out.append(DecodeError("checksum", "Modbus CRC mismatch"))
                self._skip(1)
                continue
            del buf[:total]
            self._aligned = True
            if frame[1] & EXCEPTION_BIT:
                out.append(ExceptionResponse(frame[0], frame[1] & 0x7F, frame[2]))
            else:
                out.append(Response(frame[0], frame[1], frame[3:-2]))
        if len(buf) > MAX_BUFFER:  # unreachable given the byte-count check; a hard bound
            del buf[:-MAX_BUFFER]
        return out


class MeterDecoder:
    """A polled meter's stream decoder: any split of the bytes in, one event per response out.

    A subclass gives the response sizes (and addresses) it can ask for and `decode`s one
    response's register data; an exception response is a counted rejection. A subclass that
    must also check a response against the request in flight overrides `answer` and hands what
    it accepts on to this one.
    """

    def __init__(
        self,
        byte_counts: Iterable[int],
        addresses: Iterable[int] | None = None,
        functions: Iterable[int] = (READ_INPUT_REGISTERS,),
    ) -> None:
        self.counters = FrameCounters()
        self._modbus = ResponseDecoder(functions, byte_counts, addresses, self.counters)

    @property
    def _buf(self) -> bytearray:  # the pending bytes, for the bounded-buffer tests
        return self._modbus._buf

    def feed(self, data: bytes) -> list[Event]:
        return [
            frame if isinstance(frame, DecodeError) else self.answer(frame)
            for frame in self._modbus.feed(data)
        ]

    def answer(self, frame: Response | ExceptionResponse) -> Event:
        if isinstance(frame, ExceptionResponse):
            return self.reject(frame.error())
        self.counters.frames_ok += 1
        return self.decode(frame)

    def reject(self, error: DecodeError) -> DecodeError:
        self.counters.rejected += 1
        return error

    def decode(self, response: Response) -> Decoded:
        raise NotImplementedError


INTER_FRAME_S = 0.01  # RTU needs 3.5 characters of silence between frames (3.6 ms at 9600 baud)


class Transaction:
    """The request in flight, shared by one poller (which sets it) and one decoder (which
    takes it when the answer arrives). Pure and single-threaded: the serial source calls both
    from one task. Only one request is ever outstanding on an RS-485 bus."""

    def __init__(self) -> None:
        self.pending: tuple[int, Hashable] | None = None

    def sent(self, address: int, key: Hashable) -> None:
        self.pending = (address, key)

    def take(self) -> tuple[int, Hashable] | None:
        pending, self.pending = self.pending, None
        return pending


def cycle_seconds(requests: int, timeout: float, gap: float = INTER_FRAME_S) -> float:
    """The longest a cycle of `requests` can take: every one timing out. The shortest poll
    interval that always lets a cycle finish."""
    return requests * (timeout + gap)


class CyclePoller:
    """Sends `requests` ((address, key, frame) each) in turn every `interval` seconds. Each
    waits for its answer (the decoder takes the transaction) or `timeout`, then `gap` of
    silence, then the next: no request is ever skipped. A cycle that cannot start on time
    because the previous one is still running starts when it ends, counted as late."""

    def __init__(self, requests: Sequence[tuple[int, Hashable, bytes]], interval: float,
                 transaction: Transaction, timeout: float, gap: float = INTER_FRAME_S) -> None:  # fmt: skip
        self.requests = tuple(requests)
        self.interval = interval
        self.transaction = transaction
        self.timeout = timeout
        self.gap = gap
        self.counters = PollCounters()
        self._queue: list[tuple[int, Hashable, bytes]] = []
        self._next_cycle = 0.0
        self._ready_at = 0.0
        self._sent_at: float | None = None  # set while a request waits for its answer

    def _settle(self, now: float) -> None:
        """Has the request in flight been answered, or timed out?"""
        if self._sent_at is None:
            return
        if self.transaction.pending is None:
            self.counters.answered += 1
        elif now >= self._sent_at + self.timeout:
            self.transaction.take()  # a late answer is now unsolicited
            self.counters.timeouts += 1
        else:
            return
        self._sent_at = None
        self._ready_at = now + self.gap

    def _send(self, now: float) -> list[bytes]:
        address, key, frame = self._queue.pop(0)
        self.transaction.sent(address, key)
        self.counters.requests += 1
        self._sent_at = now
        return [frame]

    def on_open(self, now: float) -> list[bytes]:
        self.transaction.take()
        self._sent_at = None
        self._queue = list(self.requests)
        self._next_cycle = now + self.interval
        return self._send(now)

    def due(self, now: float) -> list[bytes]:
        self._settle(now)
        if self._sent_at is not None:
            return []
        if not self._queue and now >= self._next_cycle:
            # more than a timeout behind schedule: held up by the previous cycle, not by jitter
            if now - self._next_cycle > self.timeout:
                self.counters.late_cycles += 1
            missed = int((now - self._next_cycle) // self.interval)
            self._next_cycle += self.interval * (missed + 1)
            self._queue = list(self.requests)
        if self._queue and now >= self._ready_at:
            return self._send(now)
        return []

    def next_due(self, now: float) -> float:
        """When `due` next has something to do if no byte arrives first."""
        if self._sent_at is not None:
            if self.transaction.pending is None:
                return now  # answered: settle at once
            return self._sent_at + self.timeout
        if self._queue:
            return self._ready_at
        return self._next_cycle

    def on_close(self) -> list[bytes]:
        return []


class SimulatedServer:
    """A simulated Modbus server: buffers what the host sends and answers each whole, CRC-valid
    read request in turn; a byte that cannot start one is dropped. A subclass `answer`s one
    request with the response bytes, or b"" to stay silent (another device's address)."""

    def __init__(self) -> None:
        self._inbuf = bytearray()

    def receive(self, data: bytes, now: float) -> bytes:
        self._inbuf += data
        out = b""
        while len(self._inbuf) >= 8:
            request = parse_request(bytes(self._inbuf[:8]))
            if request is None:
                del self._inbuf[:1]
                continue
            del self._inbuf[:8]
            out += self.answer(*request, now)
        return out

    def answer(self, address: int, function: int, start: int, count: int, now: float) -> bytes:
        raise NotImplementedError

    def tick(self, now: float) -> bytes:
        return b""  # a server only ever answers
