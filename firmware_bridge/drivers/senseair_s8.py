"""SenseAir S8 CO2 sensor over Modbus RTU (UART 9600 8N1), polled.

The host reads input registers IR1..IR4 (meter status, alarm status, output status, CO2) or
IR4 alone; the response's byte count (8 or 2) says which, so the decoder needs no request
context. A non-zero meter status under the error mask 0x007F flags the reading "sensor_fault".
The serial source runs decoder and poller as one session (`new_session`) sharing the request in
flight: every request is counted answered or timed out, and a late answer is rejected.
"""

from __future__ import annotations

import random

from pydantic import Field as Opt

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

ANY_ADDRESS = 0xFE  # SenseAir's "any sensor" address: fine on a point-to-point UART
IR_STATUS = 0x0000  # IR1, meter status
IR_CO2 = 0x0003  # IR4, space CO2 in ppm
STATUS_ERROR_MASK = 0x007F
STATUS_BYTES = 8  # IR1..IR4
CO2_BYTES = 2  # IR4 only
DEFAULT_INTERVAL_S = 4.0  # the S8 updates its CO2 value every 2 s; 4 s halves bus chatter
# an answer takes ~15 ms at 9600 baud plus the sensor's latency; later counts as timed out
RESPONSE_TIMEOUT_S = 0.19
MIN_INTERVAL_S = round(modbus.cycle_seconds(1, RESPONSE_TIMEOUT_S), 3)  # 0.2

CMD_READ_ALL = modbus.read_input_registers(ANY_ADDRESS, IR_STATUS, 4)
CMD_READ_CO2 = modbus.read_input_registers(ANY_ADDRESS, IR_CO2, 1)

CATALOGUE = Catalogue(
    driver="senseair_s8",
    make="SenseAir",
    model="S8",
    description="NDIR carbon dioxide sensor",
    transport="serial",
    datasheet="SenseAir S8 Modbus specification TDE2067",
    fields=(
        Field("co2", "[ppm]", ObservationType.MEASUREMENT, "CO2 mole fraction in air",
              minimum=0, maximum=10000),
    ),
)


class Decoder(modbus.MeterDecoder):
    """Feed any split of the byte stream; get `Decoded`/`DecodeError` events."""

    def __init__(self, transaction: modbus.Transaction | None = None) -> None:
        super().__init__(byte_counts=(CO2_BYTES, STATUS_BYTES))
        self.transaction = transaction

    def answer(self, frame: modbus.Response | modbus.ExceptionResponse) -> Event:
        if self.transaction is not None and self.transaction.take() is None:
            return self.reject(DecodeError("unsolicited", "response with no request outstanding"))
        return super().answer(frame)

    def decode(self, response: modbus.Response) -> Decoded:
        regs = modbus.registers(response.data)
        co2 = int.from_bytes(response.data[-2:], "big", signed=True)
        flags: tuple[str, ...] = ()
        if len(regs) == 4 and regs[0] & STATUS_ERROR_MASK:
            flags = ("sensor_fault",)
        return Decoded({"co2": co2}, flags=flags)


class Options(DriverOptions):
    address: int = Opt(
        ANY_ADDRESS, ge=1, le=0xFE, description="Modbus address; 254 (0xFE) reaches any S8."
    )
    interval_s: float = Opt(
        DEFAULT_INTERVAL_S, ge=MIN_INTERVAL_S, le=3600,
        description="Seconds between reads (the S8 updates its CO2 value every 2 s; a read is "
        f"answered or given up within {MIN_INTERVAL_S:g} s, so that is the floor).",
    )  # fmt: skip
    read_status: bool = Opt(True, description="Also read the status/alarm registers IR1-IR3.")


class Poller(modbus.CyclePoller):
    """Reads IR1..IR4 every `interval_s` (default 4), or IR4 alone with `read_status: false`.
    `address` defaults to 0xFE, which every S8 answers."""

    def __init__(self, options: Options, transaction: modbus.Transaction | None = None) -> None:
        address = options.address
        if options.read_status:
            request = modbus.read_input_registers(address, IR_STATUS, 4)
        else:
            request = modbus.read_input_registers(address, IR_CO2, 1)
        super().__init__([(address, "co2", request)], options.interval_s,
                         transaction or modbus.Transaction(), timeout=RESPONSE_TIMEOUT_S)  # fmt: skip


def new_session(options: Options) -> tuple[Decoder, Poller]:
    """A Decoder and Poller that share the request in flight: what the serial source runs."""
    transaction = modbus.Transaction()
    return Decoder(transaction), Poller(options, transaction)


class Device(modbus.SimulatedServer):
    """Simulated S8: answers reads of IR1..IR4 (any sub-range) at its address or 0xFE."""

    def __init__(self, rng: random.Random, address: int = 0x68) -> None:
        super().__init__()
        self.rng = rng
        self.address = address
        self.sent: list[dict[str, Value]] = []
        self.fault = False  # set to make IR1 report an error bit
        self._co2 = rng.uniform(420, 900)

    def _registers(self) -> list[int]:
        self._co2 = min(10000.0, max(380.0, self._co2 + self.rng.gauss(0, 8)))
        status = 0x0004 if self.fault else 0
        return [status, 0, 0, round(self._co2)]

    def answer(self, address: int, function: int, start: int, count: int, now: float) -> bytes:
        if address not in (self.address, ANY_ADDRESS):
            return b""
        if function != modbus.READ_INPUT_REGISTERS or start + count > 4:
            return modbus.encode_exception(address, function, 2)
        regs = self._registers()[start : start + count]
        if start + count == 4:
            self.sent.append({"co2": regs[-1]})
        data = b"".join(r.to_bytes(2, "big") for r in regs)
        return modbus.encode_response(address, function, data)


DRIVER = SerialDriver(
    name="senseair_s8",
    catalogue=CATALOGUE,
    baud=9600,
    new_decoder=lambda options: Decoder(),
    new_device=Device,
    options=Options,
    new_poller=Poller,
    new_session=new_session,
    doc="docs/drivers/senseair_s8.md",
)
