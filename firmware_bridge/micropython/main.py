"""Street node firmware (MicroPython, RP2040 or ESP32): read sensors, send framed readings.

Copy this file and firmware_bridge/framing.py side by side to the board's filesystem; the
gateway decodes the frames with the very same framing.py. It sends message version 2 (the
header carries the body length, so the gateway can tell a truncated frame from a good one). Pick the board below. Under CPython
the tests inject a fake `machine` module and call `run(...)` with a bounded loop.
"""

import time

try:
    from typing import Any  # annotations only: MicroPython ignores them and may lack typing
except ImportError:
    pass

try:
    import machine
except ImportError:  # CPython without a fake `machine`: only run() and the helpers work
    machine = None

import framing  # on the board: framing.py copied next to this file

BOARD = "dummy"  # "rp2040", "esp32" or "dummy"
PERIOD_MS = 10000
BAUD = 115200

# Analogue NO2 front end: ug/m3 = (volts - NO2_ZERO_V) * NO2_UG_PER_V. Calibrate per cell
# against a reference analyser; these are placeholders for a 0-3.3 V, 0-400 ug/m3 board.
NO2_ZERO_V = 0.40
NO2_UG_PER_V = 138.0
ADC_VREF = 3.3


def _volts(adc: Any) -> float:
    return float(adc.read_u16() * ADC_VREF / 65535)


def rp2040_sensors(machine_mod: Any) -> list[tuple[str, Any]]:
    """RP2040: internal temperature sensor (ADC 4) and an NO2 front end on GP26 (ADC 0)."""
    temp_adc = machine_mod.ADC(4)
    no2_adc = machine_mod.ADC(26)

    def temperature() -> float:
        # RP2040 datasheet 4.9.5: T = 27 - (V - 0.706) / 0.001721
        return round(27 - (_volts(temp_adc) - 0.706) / 0.001721, 2)

    def no2() -> float:
        return round(max(0.0, (_volts(no2_adc) - NO2_ZERO_V) * NO2_UG_PER_V), 1)

    return [("temperature", temperature), ("no2", no2)]


def esp32_sensors(machine_mod: Any) -> list[tuple[str, Any]]:
    """ESP32: NO2 front end on GPIO34 (ADC1, 11 dB attenuation for the 0-3.3 V range)."""
    adc = machine_mod.ADC(machine_mod.Pin(34))
    adc.atten(machine_mod.ADC.ATTN_11DB)

    def no2() -> float:
        return round(max(0.0, (_volts(adc) - NO2_ZERO_V) * NO2_UG_PER_V), 1)

    return [("no2", no2)]


def dummy_sensors(seed: int = 1) -> list[tuple[str, Any]]:
    """Plausible made-up readings from a tiny LCG (no `random` module needed), for bench tests."""
    state = [seed & 0x7FFFFFFF]

    def step(lo: float, hi: float, digits: int) -> float:
        state[0] = (state[0] * 1103515245 + 12345) & 0x7FFFFFFF
        return round(lo + (hi - lo) * state[0] / 0x7FFFFFFF, digits)

    return [
        ("no2", lambda: step(10, 80, 1)),
        ("temperature", lambda: step(-5, 30, 2)),
        ("humidity", lambda: step(30, 95, 1)),
    ]


def make_sensors(board: str, machine_mod: Any) -> list[tuple[str, Any]]:
    if board == "rp2040":
        return rp2040_sensors(machine_mod)
    if board == "esp32":
        return esp32_sensors(machine_mod)
    return dummy_sensors()


def make_uart(board: str, machine_mod: Any) -> Any:
    """UART0 on GP0/GP1 (RP2040) or UART2 on GPIO17/16 (ESP32), 115200 8N1."""
    uart_cls = machine_mod.UART
    if board == "esp32":
        return uart_cls(2, baudrate=BAUD, tx=17, rx=16)
    if board == "rp2040":
        pin = machine_mod.Pin
        return uart_cls(0, baudrate=BAUD, tx=pin(0), rx=pin(1))
    return uart_cls(0, baudrate=BAUD)


def read_all(sensors: list[tuple[str, Any]]) -> dict[str, float]:
    """One reading per sensor; a sensor that fails is left out of this message, not fatal."""
    readings: dict[str, float] = {}
    for key, read in sensors:
        try:
            value = read()
        except Exception:  # a flaky sensor must not stop the node
            continue
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value - value == 0:
            readings[key] = value
    return readings


def run(uart: Any, sensors: list[tuple[str, Any]], clock: Any,
        iterations: int | None = None, period_ms: int = PERIOD_MS) -> int:  # fmt: skip
    """Read, frame, send, sleep; `iterations=None` loops forever. Returns the next seq number.
    `clock` is MicroPython's `time` (ticks_ms, ticks_diff, sleep_ms) or a fake in tests."""
    seq = 0
    done = 0
    while iterations is None or done < iterations:
        started = clock.ticks_ms()
        readings = read_all(sensors)
        if readings:
            uart.write(framing.encode_readings(seq, readings))
            seq = (seq + 1) & 0xFF
        done += 1
        elapsed = clock.ticks_diff(clock.ticks_ms(), started)
        if period_ms > elapsed:
            clock.sleep_ms(period_ms - elapsed)
    return seq


def main() -> None:
    run(make_uart(BOARD, machine), make_sensors(BOARD, machine), time)


if __name__ == "__main__":
    main()
