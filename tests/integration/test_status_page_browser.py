"""The commissioning page in a real headless browser (Debian `chromium`): a plugged-in PMS5003 shows
its last values, an unplugged one shows a fault. Under CI=true a missing chromium fails."""

from __future__ import annotations

import asyncio
import html.parser
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from firmware_bridge.drivers import SERIAL_DRIVERS
from firmware_bridge.drivers.pms5003 import PUBLISHED
from gateway.config import parse_config
from gateway.pipeline import Pipeline
from gateway.service import serve
from gateway.simulate.serial_pty import PtyDevice
from tests.conftest import free_port, require_binary
from tests.integration.test_ops import FRAME_PERIOD, gateway_config, pause, trusting_clock, wait_for

pytestmark = pytest.mark.integration


def chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        if shutil.which(name):
            return name
    return require_binary("chromium", "chromium")  # fails under CI=true, skips locally


def dump_dom(browser: str, url: str) -> str:
    with tempfile.TemporaryDirectory(prefix="sg-chromium-") as profile:
        out = subprocess.run(
            [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--dump-dom", url],
            capture_output=True, timeout=60, check=False,
        )  # fmt: skip
    assert out.returncode == 0, out.stderr.decode(errors="replace")[-2000:]
    return out.stdout.decode()


class Rows(html.parser.HTMLParser):
    """Table rows of the rendered DOM: data-sensor / data-sink -> class and cell texts."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[str, tuple[str, list[str]]] = {}
        self.ids: dict[str, str] = {}
        self._row: str | None = None
        self._cells: list[str] = []
        self._span: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "tr" and (key := a.get("data-sensor") or a.get("data-sink")):
            self._row, self._cells = key, []
            self.rows[key] = (a.get("class") or "", self._cells)
        elif tag == "td" and self._row is not None:
            self._cells.append("")
        elif tag == "span" and a.get("id"):
            self._span = a["id"]
            self.ids[self._span] = ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "tr":
            self._row = None
        elif tag == "span":
            self._span = None

    def handle_data(self, data: str) -> None:
        if self._row is not None and self._cells:
            self._cells[-1] += data
        if self._span is not None:
            self.ids[self._span] += data


def test_status_page_in_a_browser_shows_values_and_faults(tmp_path: Path) -> None:
    browser = chromium()
    port = free_port()
    data = tmp_path / "data"
    north = tmp_path / "usb-pm-north"
    cfg = parse_config(
        gateway_config(data, port, {"pm-north": north, "pm-south": tmp_path / "unplugged"}),
        "t.yaml",
        {},
    )

    async def scenario() -> tuple[str, dict[str, object]]:
        sim = PtyDevice(SERIAL_DRIVERS["pms5003"], north, seed=5)
        sim.device.period = FRAME_PERIOD  # type: ignore[attr-defined]
        sim.plug()
        sim.start()
        stop = asyncio.Event()
        holder: dict[str, Pipeline] = {}
        task = asyncio.create_task(
            serve(cfg, until=stop, on_started=lambda p: holder.update(p=p), clock=trusting_clock())
        )
        await wait_for(lambda: "p" in holder, what="gateway started")
        p = holder["p"]
        await wait_for(lambda: len(sim.delivered) >= 3, what="frames")
        pause(sim)
        await wait_for(lambda: p.stats.readings == len(sim.delivered), what="frames read")
        await wait_for(
            lambda: p.stats.delivered.get("file", 0) == p.stats.committed, what="delivery"
        )
        dom = await asyncio.to_thread(dump_dom, browser, f"http://127.0.0.1:{port}/")
        last = dict(sim.delivered[-1])
        stop.set()
        assert await asyncio.wait_for(task, 30) == 0
        await sim.stop()
        return dom, last

    dom, last = asyncio.run(scenario())
    page = Rows()
    page.feed(dom)
    assert page.ids.get("gateway") == "camden-lc-0423"
    cls, cells = page.rows["pm-north"]
    assert cls == "ok", cells
    values = dict(kv.split("=") for kv in cells[4].split(", "))
    assert values == {k: str(last[k]) for k in PUBLISHED}
    assert cells[5] == "ok"
    cls, cells = page.rows["pm-south"]
    assert cls == "fault"
    assert "serial port not open" in cells[5]
    assert cells[3] == "never" and cells[4] == ""
    cls, cells = page.rows["file"]
    assert cls == "ok" and cells[1] == "ok" and int(cells[2]) > 0 and cells[3] == "0"
    assert "synchronised" in page.ids.get("clock-state", "")
