"""The pseudonym key and the pseudonyms it makes never reach disk.

A real Pipeline (privacy stage, egress guard, SQLite outbox, file sink) on a temp data dir is
fed Wi-Fi probe readings, its key is rotated, it is stopped and a second one started on the same
data dir; then every byte of every file under the data dir is searched for each key (raw, hex,
base64) and for the HMAC pseudonyms of the planted MACs under each key: no hit allowed.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import os
from pathlib import Path

import pytest

from gateway.config import Config, parse_config
from gateway.model import Reading
from gateway.pipeline import Pipeline

MACS = [f"3c:22:fb:00:00:{i:02x}" for i in range(12)] + [f"da:a1:19:00:00:{i:02x}" for i in range(12)]


class NoSourcePipeline(Pipeline):
    """The real pipeline minus its MQTT source: readings come in through `submit`."""

    def _start_sources(self) -> None:
        pass


def config(data_dir: Path) -> Config:
    return parse_config(f"""
gateway: {{id: t-gw, borough: camden, location: {{lat: 51.539, lon: -0.1426}}, data_dir: "{data_dir}"}}
sensors:
  - {{id: footfall-1, driver: wifi_probe_sniffer, mqtt: {{topic: footfall/+/probes}}}}
inputs: {{mqtt: {{host: 127.0.0.1}}}}
privacy: {{window: 1m, min_count: 3, salt_rotation: 1h, disclosure: suppress}}
sinks: {{file: {{path: observations.jsonl}}}}
outbox: {{sync: normal}}
ops: {{http: null}}
""", env={})  # fmt: skip


def needles(keys: list[bytes]) -> list[tuple[str, bytes]]:
    out: list[tuple[str, bytes]] = []
    for n, key in enumerate(keys):
        out += [(f"key{n} raw", key), (f"key{n} hex", key.hex().encode()),
                (f"key{n} HEX", key.hex().upper().encode()),
                (f"key{n} b64", base64.b64encode(key)), (f"key{n} b64url", base64.urlsafe_b64encode(key))]  # fmt: skip
        for mac in MACS:
            digest = hmac.new(key, mac.encode(), hashlib.sha256).digest()
            for form, value in (("raw16", digest[:16]), ("raw", digest), ("hex16", digest[:16].hex().encode()),
                                ("hex", digest.hex().encode()), ("b64", base64.b64encode(digest[:16]))):  # fmt: skip
                out.append((f"hmac({mac}) {form} under key{n}", value))
    return out


async def run(data_dir: Path, keys: list[bytes], t0: float) -> None:
    clock = [t0]

    def factory() -> bytes:
        k = os.urandom(32)
        keys.append(k)
        return k

    for _ in range(2):  # the second pipeline is the restart on the same data dir
        p = NoSourcePipeline(config(data_dir), key_factory=factory, clock=lambda: clock[0])
        await p.start()
        for phase in range(2):
            for i, mac in enumerate(MACS):
                await p.submit(Reading("footfall-1", clock[0] + i * 0.1,
                                       {"mac": mac, "rssi": -55, "randomised": mac.startswith("da"), "ch": 6}))  # fmt: skip
            await p.queue.join()
            clock[0] += 61  # the window closes; the next one opens after the rotation
            await p.commit(p.privacy.due(clock[0]))
            if phase == 0:
                p.privacy.force_rotate(clock[0])
        await p.stop()
        clock[0] += 5


def test_key_and_pseudonyms_never_reach_disk(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    keys: list[bytes] = []
    asyncio.run(run(data_dir, keys, t0=1_790_000_000.0))
    assert len(keys) == 4  # two starts, one forced rotation each
    files = [f for f in data_dir.rglob("*") if f.is_file()]
    names = {f.name for f in files}
    assert "outbox.sqlite" in names and "observations.jsonl" in names
    published = (data_dir / "observations.jsonl").read_text()
    assert published.count('"result":24') >= 3  # the footfall windows did leave, counted
    control = b"x" + base64.b64encode(keys[0]) + hmac.new(keys[1], MACS[0].encode(), hashlib.sha256).digest()[:16]
    found = {what for what, needle in needles(keys) if needle in control}  # the search does find
    assert {"key0 b64", f"hmac({MACS[0]}) raw16 under key1"} <= found
    blobs = {f: f.read_bytes() for f in files}
    hits = [(str(f.relative_to(data_dir)), what) for f, blob in blobs.items()
            for what, needle in needles(keys) if needle in blob]  # fmt: skip
    assert hits == []
    for mac in MACS:  # and of course not the MACs themselves
        assert not any(mac.encode() in blob or mac.replace(":", "").encode() in blob for blob in blobs.values())


@pytest.fixture(autouse=True)
def _quiet_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("WARNING")
