"""Eastron SDM120 / SDM630 energy meter over Modbus RTU (RS-485, 9600 8N1 by default), polled.

Input registers hold big-endian IEEE-754 float32 pairs. The Poller reads a few register blocks
in turn; each response yields one `Decoded` with that block's fields.

Polling: `modbus.CyclePoller` reads the blocks one at a time, each after the previous one was
answered (or timed out), and finishes a cycle before the next begins, so no block is ever
skipped; `interval_s` below the longest possible cycle is refused at `check`.

Matching responses to requests: a Modbus response does not name the registers it carries.
Two mechanisms, one always on:
- every block in every read plan has a distinct byte count (checked at import), so a response
  identifies its block by itself. This is all `DRIVER.new_decoder()` (a listen-only decoder,
  e.g. for a bus sniffer or tests) relies on;
- the serial source builds decoder and poller with `new_session(options)`, which makes them share
  one pure `modbus.Transaction` (the request in flight). The decoder then also checks the slave address
  and rejects responses that arrive with no request outstanding (late answers from a meter that
  timed out).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

from pydantic import Field as Opt
from pydantic import field_validator, model_validator

from firmware_bridge import modbus
from firmware_bridge.base import (
    Catalogue,
    Decoded,
    DecodeError,
    Event,
    Field,
    ObservationType,
    Value,
)
from firmware_bridge.driver import SerialDriver
from firmware_bridge.options import DriverOptions

DEFAULT_ADDRESS = 1
DEFAULT_INTERVAL_S = 10.0
# a block's answer takes ~35 ms at 9600 baud plus the meter's latency; one that has not come
# within this is counted as timed out and the next block is read
RESPONSE_TIMEOUT_S = 0.29


@dataclass(frozen=True, slots=True)
class Block:
    """One read: `fields` maps a decoded key to the float32's first register."""

    name: str
    start: int
    count: int
    fields: tuple[tuple[str, int], ...]

    @property
    def byte_count(self) -> int:
        return 2 * self.count

    def decode(self, data: bytes) -> dict[str, Value]:
        return {key: modbus.float32(data, 2 * (reg - self.start)) for key, reg in self.fields}


# SDM120 (single phase) and SDM630 phase-L1 values share these registers.
INSTANT_L1 = Block("instant_l1", 0x0000, 14,
                   (("voltage", 0x0000), ("current", 0x0006), ("power", 0x000C)))  # fmt: skip
# SDM630 system values: average L-N voltage, sum of line currents, total system power.
INSTANT_SYSTEM = Block("instant_system", 0x002A, 12,
                       (("voltage", 0x002A), ("current", 0x0030), ("power", 0x0034)))  # fmt: skip
FREQUENCY_IMPORT = Block("frequency_import", 0x0046, 4,
                         (("frequency", 0x0046), ("energy_import", 0x0048)))  # fmt: skip
ENERGY_TOTAL = Block("energy_total", 0x0156, 2, (("energy_total", 0x0156),))

PLANS: dict[str, tuple[Block, ...]] = {
    "sdm120": (INSTANT_L1, FREQUENCY_IMPORT, ENERGY_TOTAL),
    "sdm630": (INSTANT_SYSTEM, FREQUENCY_IMPORT, ENERGY_TOTAL),
}
BLOCKS_BY_BYTES: dict[int, Block] = {
    b.byte_count: b for plan in PLANS.values() for b in plan
}
if len(BLOCKS_BY_BYTES) != len({b for plan in PLANS.values() for b in plan}):
    raise AssertionError("every block must have a distinct byte count so responses identify themselves")

CATALOGUE = Catalogue(
    driver="eastron_sdm",
    make="Eastron",
    model="SDM120/SDM630",
    description="DIN-rail energy meter (e.g. on an EV charger or a street-furniture feed)",
    transport="serial",
    datasheet="Eastron SDM120-Modbus / SDM630-Modbus protocol v1.x",
    fields=(
        Field("voltage", "V", ObservationType.MEASUREMENT,
              "RMS voltage (SDM630: average line to neutral)", minimum=0, maximum=500),
        Field("current", "A", ObservationType.MEASUREMENT,
              "RMS current (SDM630: sum of line currents)", minimum=0, maximum=300),
        Field("power", "W", ObservationType.MEASUREMENT,
              "Active power (SDM630: total system power)", minimum=-250000, maximum=250000),
        Field("frequency", "Hz", ObservationType.MEASUREMENT, "Supply frequency",
              minimum=45, maximum=65),
        # the registers' display range: 9,999,999.9 kWh on an SDM630
        Field("energy_import", "kW.h", ObservationType.MEASUREMENT, "Imported active energy",
              minimum=0, maximum=1e7),
        Field("energy_total", "kW.h", ObservationType.MEASUREMENT, "Total active energy",
              minimum=0, maximum=1e7),
    ),
)


class Decoder(modbus.MeterDecoder):
    """Feed any split of the byte stream; get one `Decoded` per block response."""

    def __init__(self, transaction: modbus.Transaction | None = None) -> None:
        super().__init__(byte_counts=BLOCKS_BY_BYTES, addresses=range(1, 248))
        self.transaction = transaction

    def answer(self, frame: modbus.Response | modbus.ExceptionResponse) -> Event:
        if self.transaction is None:
            return super().answer(frame)
        pending = self.transaction.take()
        if pending is None:
            return self.reject(DecodeError("unsolicited", "response with no request outstanding"))
        if isinstance(frame, modbus.Response):
            block = BLOCKS_BY_BYTES[len(frame.data)]
            if pending[0] != frame.address or pending[1] != block:
                return self.reject(DecodeError(
                    "unexpected_response",
                    f"response from device {frame.address} does not match the request to "
                    f"device {pending[0]} for block {getattr(pending[1], 'name', pending[1])}",
                ))  # fmt: skip
        return super().answer(frame)

    def decode(self, response: modbus.Response) -> Decoded:
        return Decoded(BLOCKS_BY_BYTES[len(response.data)].decode(response.data))


class Options(DriverOptions):
    address: int = Opt(DEFAULT_ADDRESS, ge=1, le=247, description="Modbus slave id of the meter.")
    model: Literal["sdm120", "sdm630"] = Opt("sdm120", description="Which register map to read.")
    interval_s: float = Opt(DEFAULT_INTERVAL_S, le=86400, description="Seconds between poll cycles.")

    @field_validator("model", mode="before")
    @classmethod
    def _lower(cls, v: object) -> object:
        return v.lower() if isinstance(v, str) else v

    @model_validator(mode="after")
    def _room_for_every_block(self) -> Options:
        blocks = len(PLANS[self.model])
        minimum = round(modbus.cycle_seconds(blocks, RESPONSE_TIMEOUT_S), 3)
        if self.interval_s < minimum:
            raise ValueError(
                f"interval_s: a {self.model} cycle reads {blocks} register blocks one at a time "
                f"and may take {minimum:g} s when the meter is slow to answer, so it must be at "
                f"least {minimum:g}"
            )
        return self


class Poller(modbus.CyclePoller):
    """Reads the model's register blocks in turn every `interval_s` (default 10), one request
    on the bus at a time, every block every cycle."""

    def __init__(self, options: Options, transaction: modbus.Transaction | None = None) -> None:
        address = options.address
        requests = [(address, b, modbus.read_input_registers(address, b.start, b.count))
                    for b in PLANS[options.model]]  # fmt: skip
        super().__init__(requests, options.interval_s, transaction or modbus.Transaction(),
                         timeout=RESPONSE_TIMEOUT_S)  # fmt: skip


def new_session(options: Options) -> tuple[Decoder, Poller]:
    """A Decoder and Poller that share one Transaction: what the serial source runs per port."""
    transaction = modbus.Transaction()
    return Decoder(transaction), Poller(options, transaction)


class Device(modbus.SimulatedServer):
    """Simulated meter holding both models' registers; answers function 0x04 at its address."""

    def __init__(self, rng: random.Random, address: int = DEFAULT_ADDRESS) -> None:
        super().__init__()
        self.rng = rng
        self.address = address
        self.sent: list[dict[str, Value]] = []
        self._energy = round(rng.uniform(100, 5000), 2)

    def _values(self, now: float) -> dict[int, float]:
        """Values with at most 6 significant digits, so float32 carries them exactly."""
        voltage = round(self.rng.uniform(225, 245), 1)
        current = round(self.rng.uniform(0, 32), 2)
        power = round(voltage * current * self.rng.uniform(0.9, 1.0), 1)
        self._energy = round(self._energy + self.rng.uniform(0, 0.5), 2)
        return {
            0x0000: voltage, 0x0006: current, 0x000C: power,
            0x002A: voltage, 0x0030: round(current * 3, 2), 0x0034: round(power * 3, 1),
            0x0046: round(self.rng.uniform(49.9, 50.1), 2),
            0x0048: self._energy, 0x0156: round(self._energy + 1.25, 2),
        }  # fmt: skip

    def answer(self, address: int, function: int, start: int, count: int, now: float) -> bytes:
        if address != self.address:
            return b""
        if function != modbus.READ_INPUT_REGISTERS or count > 80 or count % 2:
            return modbus.encode_exception(address, function, 3)
        values = self._values(now)
        payload = b"".join(
            modbus.pack_float32(values.get(start + i, 0.0)) for i in range(0, count, 2)
        )
        block = next((b for b in BLOCKS_BY_BYTES.values()
                      if (b.start, b.count) == (start, count)), None)  # fmt: skip
        if block is not None:
            self.sent.append({key: values[reg] for key, reg in block.fields})
        return modbus.encode_response(address, function, payload)


DRIVER = SerialDriver(
    name="eastron_sdm",
    catalogue=CATALOGUE,
    baud=9600,
    new_decoder=lambda options: Decoder(),
    new_device=Device,
    options=Options,
    new_poller=Poller,
    new_session=new_session,
    doc="docs/drivers/eastron_sdm.md",
)
