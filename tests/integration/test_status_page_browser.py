"""The status page in a real headless browser (Debian `chromium`), at a phone's width (360 px)
and a laptop's (1280 px), against a real gateway: a PMS5003 that reads (green), one that is
unplugged (red), one plugged in but silent (amber) and a Wi-Fi footfall sniffer on a real
Mosquitto whose count window has not closed yet.

Chromium is driven over the DevTools protocol (`websockets`, already installed with amqtt): the
test measures the laid-out page (nothing cut off or hidden at 360 px, faults first, cards side by
side on a laptop) and takes full-page screenshots, kept as artefacts at the path the test prints;
the screenshots are decoded and their colours compared with the layout. Under CI=true a missing
chromium fails.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import tempfile
import time
import urllib.request
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import ClientConnection, connect

from firmware_bridge.drivers import MESSAGE_DRIVERS, SERIAL_DRIVERS
from firmware_bridge.drivers.pms5003 import PUBLISHED
from gateway.config import parse_config
from gateway.datastreams import shown_unit
from gateway.ops.statuspage import COLOURS
from gateway.pipeline import Pipeline
from gateway.service import serve
from gateway.simulate.mqtt_devices import MqttDevice
from gateway.simulate.serial_pty import PtyDevice
from tests.conftest import Mosquitto, free_port, require_binary
from tests.integration.test_ops import FRAME_PERIOD, pause, trusting_clock, wait_for

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
ARTEFACTS = Path(os.environ.get("STATUS_PAGE_ARTEFACTS", ROOT / "build" / "artefacts" / "status-page"))
WIDTHS = {"phone": 360, "laptop": 1280}


def chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        if shutil.which(name):
            return name
    return require_binary("chromium", "chromium")  # fails under CI=true, skips locally


# ------------------------------------------------------------------ DevTools protocol, minimal


class DevTools:
    """One page of a headless Chromium, driven by Chrome DevTools Protocol commands."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.ids = itertools.count(1)

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        n = next(self.ids)
        self.ws.send(json.dumps({"id": n, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv(timeout=60))
            if msg.get("id") == n:
                assert "error" not in msg, msg
                return msg.get("result", {})  # type: ignore[no-any-return]

    def wait_event(self, method: str) -> None:
        while json.loads(self.ws.recv(timeout=60)).get("method") != method:
            pass

    def open(self, url: str, width: int) -> None:
        self.call("Emulation.setDeviceMetricsOverride", width=width, height=800, deviceScaleFactor=1,
                  mobile=width < 600)  # fmt: skip
        self.call("Page.navigate", url=url)
        self.wait_event("Page.loadEventFired")

    def evaluate(self, expression: str) -> Any:
        return self.call("Runtime.evaluate", expression=expression, returnByValue=True)["result"]["value"]

    def screenshot(self, width: int, height: int) -> bytes:
        shot = self.call("Page.captureScreenshot", format="png", captureBeyondViewport=True,
                         clip={"x": 0, "y": 0, "width": width, "height": height, "scale": 1})  # fmt: skip
        return base64.b64decode(shot["data"])


@contextlib.contextmanager
def headless_chromium() -> Iterator[DevTools]:
    browser = chromium()
    with tempfile.TemporaryDirectory(prefix="sg-chromium-") as profile:
        proc = subprocess.Popen(
            [browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--hide-scrollbars",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--remote-debugging-port=0",
             "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            start_new_session=True,  # its helper processes too can be ended, all together
        )  # fmt: skip
        try:
            assert proc.stderr is not None
            port = None
            for line in proc.stderr:
                if m := re.search(r"DevTools listening on ws://127\.0\.0\.1:(\d+)/", line):
                    port = int(m.group(1))
                    break
            assert port, "chromium did not start its DevTools endpoint"
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as r:
                page = next(t for t in json.load(r) if t["type"] == "page")
            with connect(page["webSocketDebuggerUrl"], max_size=None) as ws:
                tools = DevTools(ws)
                tools.call("Page.enable")
                yield tools
        finally:
            end_process_group(proc)


def end_process_group(proc: subprocess.Popen[str]) -> None:
    """End chromium and every helper process it started (renderer, crashpad...), and wait until
    none is left: a helper still running writes into the profile while it is being removed."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if proc.poll() is None:
                time.sleep(0.05)
                continue
            try:
                os.killpg(proc.pid, 0)  # anyone left in the group?
            except ProcessLookupError:
                return
            time.sleep(0.05)
    proc.wait()


# What the laid-out page shows: every card's box, colour, and whether its fault, "ago" and values
# are on screen (inside the viewport's width, not hidden)
LAYOUT = """JSON.stringify((() => {
  const vw = window.innerWidth;
  const shown = el => { if (!el) return null; const r = el.getBoundingClientRect(), cs = getComputedStyle(el);
    return r.width > 0 && r.height > 0 && r.left >= 0 && r.right <= vw + 0.5 && cs.visibility !== 'hidden'
      && cs.display !== 'none' ? el.textContent : null; };
  const cards = [...document.querySelectorAll('[data-sensor],[data-sink]')].map(c => {
    const r = c.getBoundingClientRect();
    return {key: c.dataset.sensor || c.dataset.sink, kind: c.dataset.sensor ? 'sensor' : 'sink',
      level: c.dataset.level, x: r.left, y: r.top + window.scrollY, w: r.width, right: r.right,
      fault: shown(c.querySelector('.fault')), ago: shown(c.querySelector('.ago')),
      values: Object.fromEntries([...c.querySelectorAll('.values li')].map(li => [li.dataset.property, shown(li)])),
      link: c.querySelector('a[href^="#ds-"]')?.getAttribute('href') || null};
  });
  return {vw, scrollWidth: document.documentElement.scrollWidth, height: document.documentElement.scrollHeight,
    cards, anchors: [...document.querySelectorAll('[id^="ds-"]')].map(e => e.id)};
})())"""


# ------------------------------------------------------------------ PNG, decoded with the stdlib


def decode_png(data: bytes) -> tuple[int, int, list[bytes], int]:
    """(width, height, rows of pixels, bytes per pixel) of an 8-bit RGB/RGBA PNG."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width = 8, b"", 0
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and colour in (2, 6) and interlace == 0, (depth, colour, interlace)
            bpp = 3 if colour == 2 else 4
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw = zlib.decompress(idat)
    stride = width * bpp
    rows: list[bytes] = []
    prev = bytearray(stride)
    for y in range(height):
        f, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b, c = prev[i], prev[i - bpp] if i >= bpp else 0
            if f == 1:
                line[i] = (line[i] + a) & 255
            elif f == 2:
                line[i] = (line[i] + b) & 255
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line))
        prev = line
    return width, height, rows, bpp


def first_row_with(rows: list[bytes], bpp: int, hex_colour: str, x_from: int = 0, x_to: int = 40) -> int | None:
    """The first pixel row with a run of 4 pixels of this colour (±3 per channel) near the left
    edge, where the cards' colour bars are."""
    want = bytes.fromhex(hex_colour.lstrip("#"))
    for y, row in enumerate(rows):
        run = 0
        for x in range(x_from, min(x_to, len(row) // bpp)):
            px = row[x * bpp : x * bpp + 3]
            run = run + 1 if all(abs(px[i] - want[i]) <= 3 for i in range(3)) else 0
            if run >= 4:
                return y
    return None


# ------------------------------------------------------------------ the test


def test_status_page_at_phone_and_laptop_width(tmp_path: Path, mosquitto: Mosquitto) -> None:
    port = free_port()
    data = tmp_path / "data"
    north, quiet = tmp_path / "usb-pm-north", tmp_path / "usb-pm-quiet"
    cfg = parse_config(f"""
gateway: {{id: camden-lc-0423, borough: camden, location: {{lat: 51.539, lon: -0.1426}}, data_dir: '{data}'}}
sensors:
  - {{id: pm-north, driver: pms5003, serial: {{port: '{north}'}}}}
  - {{id: pm-south, driver: pms5003, serial: {{port: '{tmp_path / "unplugged"}'}}}}
  - {{id: pm-quiet, driver: pms5003, serial: {{port: '{quiet}'}}}}
  - {{id: footfall-1, driver: wifi_probe_sniffer, mqtt: {{topic: footfall/+/probes}}}}
inputs: {{mqtt: {{host: 127.0.0.1, port: {mosquitto.port}}}}}
privacy: {{window: 15m, min_count: 10}}
sinks:
  file: {{path: observations.jsonl}}
ops: {{http: '127.0.0.1:{port}'}}
""", "t.yaml", {})  # fmt: skip

    async def scenario() -> tuple[dict[str, Any], dict[str, bytes], dict[str, Any]]:
        sim = PtyDevice(SERIAL_DRIVERS["pms5003"], north, seed=5)
        sim.device.period = FRAME_PERIOD  # type: ignore[attr-defined]
        sim.plug()
        sim.start()
        silent = PtyDevice(SERIAL_DRIVERS["pms5003"], quiet, seed=6)
        silent.plug()  # plugged in, never steps: the port opens, nothing arrives
        sniffer = MqttDevice(MESSAGE_DRIVERS["wifi_probe_sniffer"], "footfall/+/probes", "127.0.0.1",
                             mosquitto.port, seed=3, period_s=0.2)  # fmt: skip
        sniffer.start()
        stop = asyncio.Event()
        holder: dict[str, Pipeline] = {}
        task = asyncio.create_task(
            serve(cfg, until=stop, on_started=lambda p: holder.update(p=p), clock=trusting_clock())
        )
        await wait_for(lambda: "p" in holder, what="gateway started")
        p = holder["p"]
        await wait_for(lambda: len(sim.delivered) >= 3 and sniffer.published >= 3, what="frames and probes")
        pause(sim)
        await sniffer.stop()
        await wait_for(lambda: p.stats.delivered.get("file", 0) == p.stats.committed > 0, what="delivery")
        await wait_for(lambda: p.stats.readings >= len(sim.delivered) + 3, what="frames and probes read")

        def browse() -> tuple[dict[str, Any], dict[str, bytes]]:
            layouts, shots = {}, {}
            with headless_chromium() as page:
                for name, width in WIDTHS.items():
                    page.open(f"http://127.0.0.1:{port}/", width)
                    layouts[name] = json.loads(page.evaluate(LAYOUT))
                    shots[name] = page.screenshot(width, layouts[name]["height"])
            return layouts, shots

        layouts, shots = await asyncio.to_thread(browse)
        last = dict(sim.delivered[-1])
        stop.set()
        assert await asyncio.wait_for(task, 30) == 0
        await sim.stop()
        silent.unplug()
        return layouts, shots, last

    layouts, shots, last = asyncio.run(scenario())
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    for name, png in shots.items():
        (ARTEFACTS / f"status-{name}-{WIDTHS[name]}px.png").write_bytes(png)
    print(f"status page screenshots: {ARTEFACTS}")

    expected_levels = {"pm-north": "ok", "pm-south": "fault", "pm-quiet": "warn", "footfall-1": "ok", "file": "ok"}
    for name, layout in layouts.items():
        width = WIDTHS[name]
        assert layout["vw"] == width
        assert layout["scrollWidth"] <= width, f"{name}: the page is wider than the screen"
        cards = {c["key"]: c for c in layout["cards"]}
        assert {k: c["level"] for k, c in cards.items()} == expected_levels
        for c in cards.values():  # nothing cut off or hidden
            assert c["right"] <= width + 0.5, (name, c)
            if c["kind"] == "sensor":
                assert c["fault"] and c["ago"] and all(c["values"].values()), (name, c)
                assert c["link"] == f"#ds-{c['key']}" and c["link"][1:] in layout["anchors"]
        # the reading sensor: every value with its unit, a last reading some seconds ago
        north = cards["pm-north"]
        for prop in PUBLISHED:
            unit = shown_unit(SERIAL_DRIVERS["pms5003"].catalogue.field(prop).unit)  # type: ignore[union-attr]
            assert unit and north["values"][prop] == f"{prop}: {last[prop]} {unit}", north["values"]
        assert re.fullmatch(r"\d+ s ago", north["ago"]), north["ago"]
        assert north["fault"] == "reading normally"
        assert "serial port not open" in cards["pm-south"]["fault"] and cards["pm-south"]["ago"] == "never"
        assert cards["pm-quiet"]["fault"] == "no reading yet"
        # a blank footfall row says why it is blank
        assert cards["footfall-1"]["values"]["footfall"] == "footfall: — first value when the 15 min window closes"
        # faults first
        sensors = sorted((c for c in cards.values() if c["kind"] == "sensor"), key=lambda c: (c["y"], c["x"]))
        assert [c["level"] for c in sensors][:2] == ["fault", "warn"], sensors

    phone = {c["key"]: c for c in layouts["phone"]["cards"]}
    laptop = {c["key"]: c for c in layouts["laptop"]["cards"]}
    assert len({round(c["x"]) for c in phone.values()}) == 1, "phone: cards are stacked in one column"
    assert len({round(c["y"]) for c in laptop.values() if c["kind"] == "sensor"}) < 4, "laptop: cards side by side"

    # the screenshots: each colour is where the layout puts its first card, at both widths
    for name, png in shots.items():
        width, height, rows, bpp = decode_png(png)
        assert (width, height) == (WIDTHS[name], layouts[name]["height"])
        cards = layouts[name]["cards"]
        for level, colour in COLOURS.items():
            card = min((c for c in cards if c["level"] == level), key=lambda c: (c["y"], c["x"]))
            first, x = card["y"], round(card["x"])
            seen = first_row_with(rows, bpp, colour, x, x + 12)
            assert seen is not None, f"{name}: no {level} colour {colour} in the screenshot"
            assert abs(seen - first) <= 6, f"{name}: {level} colour at y={seen}, its first card at y={first}"
