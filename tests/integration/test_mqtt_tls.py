"""TLS and username/password, both ways: the gateway reads devices from a broker and publishes
the city feed to a broker that refuse anonymous and plain-text clients (a real Mosquitto with a
certificate made by the test)."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import ipaddress
import json
import os
import ssl
import subprocess
from pathlib import Path

import aiomqtt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from gateway.config import parse_config
from gateway.pipeline import Pipeline
from tests.conftest import free_port, require_binary, wait_port
from tests.integration.test_mqtt_ingest import pax_frame, wait_for

pytestmark = pytest.mark.integration


def make_ca_and_server(d: Path) -> tuple[Path, Path, Path]:
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "street-gateway test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))  # fmt: skip
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(ca_key, hashes.SHA256()))  # fmt: skip
    paths = (d / "ca.pem", d / "server.pem", d / "server.key")
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))  # fmt: skip
    return paths


def mosquitto_hash(password: str) -> str:
    """Mosquitto 2.x's $7$ password hash (PBKDF2-SHA512, 101 rounds), as mosquitto_passwd writes."""
    salt = os.urandom(12)
    dk = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, 101)
    return f"$7${101}${base64.b64encode(salt).decode()}${base64.b64encode(dk).decode()}"


def test_gateway_reads_and_publishes_over_tls_with_passwords(tmp_path: Path) -> None:
    binary = require_binary("mosquitto", "mosquitto")
    ca, cert, key = make_ca_and_server(tmp_path)
    (tmp_path / "passwd").write_text(
        f"gateway:{mosquitto_hash('gw-pass')}\ndevice:{mosquitto_hash('dev-pass')}\ncity:{mosquitto_hash('city-pass')}\n"
    )
    port = free_port()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\ncafile {ca}\ncertfile {cert}\nkeyfile {key}\n"
        f"allow_anonymous false\npassword_file {tmp_path / 'passwd'}\n"
        + ("user root\n" if os.geteuid() == 0 else "")
    )
    proc = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port)
        (tmp_path / "city.secret").write_text("city-pass\n")
        cfg = parse_config(f"""
gateway: {{id: tls-gw-01, borough: camden, location: {{lat: 51.539, lon: -0.1426}}, data_dir: '{tmp_path / "data"}'}}
sensors:
  - {{id: pax-1, driver: paxcounter, mqtt: {{topic: paxout/+}}}}
inputs: {{mqtt: {{host: 127.0.0.1, port: {port}, tls: true, ca_file: '{ca}', username: gateway, password: '${{LOCAL_MQTT_PASSWORD}}'}}}}
sinks:
  mqtt: {{host: 127.0.0.1, port: {port}, tls: true, ca_file: '{ca}', username: city, password_file: '{tmp_path / "city.secret"}'}}
ops: {{http: null}}
""", "tls.yaml", {"LOCAL_MQTT_PASSWORD": "gw-pass"})
        tls = ssl.create_default_context(cafile=str(ca))

        async def scenario() -> list[dict[str, object]]:
            # a client without TLS, and one with TLS but no password, are both refused
            with pytest.raises(aiomqtt.MqttError):
                async with aiomqtt.Client("127.0.0.1", port, timeout=3):
                    pass
            with pytest.raises(aiomqtt.MqttError):
                async with aiomqtt.Client("127.0.0.1", port, tls_context=tls, timeout=3):
                    pass
            feed: list[dict[str, object]] = []
            async with aiomqtt.Client("127.0.0.1", port, tls_context=tls, username="city", password="city-pass") as sub:
                await sub.subscribe("v1.1/+/Observations", qos=1)

                async def collect() -> None:
                    async for m in sub.messages:
                        feed.append(json.loads(m.payload))  # type: ignore[arg-type]

                collector = asyncio.create_task(collect())
                p = Pipeline(cfg)
                await p.start()
                await wait_for(lambda: getattr(p, "mqtt_source", None) is not None and p.mqtt_source.connected, what="TLS connection")
                async with aiomqtt.Client("127.0.0.1", port, tls_context=tls, username="device", password="dev-pass") as dev:
                    for i in range(5):
                        await dev.publish("paxout/1", pax_frame(10 + i, 10 + i), qos=1)
                await wait_for(lambda: len(feed) >= 10, what="observations on the TLS feed")
                await p.stop()
                collector.cancel()
            return feed

        feed = asyncio.run(scenario())
        pm = {o["result"] for o in feed}  # pm10 and pm2.5 of the five frames
        assert {10, 11, 12, 13, 14} <= pm
    finally:
        proc.terminate()
        proc.wait(10)
