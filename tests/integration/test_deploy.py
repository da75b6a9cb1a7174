"""The Raspberry Pi deployment: install.sh, the systemd unit, udev, journald and broker config.

Real tools, no mocks: shellcheck, systemd-analyze, the local systemd-journald binary and a real
Mosquitto started on a free port. install.sh runs into a temporary root (--destdir), so no test
needs root or touches the machine. A missing tool skips its test locally and fails it under CI
(env CI set), so CI can never go green by skipping.
"""

from __future__ import annotations

import importlib
import os
import re
import shutil
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import free_port, missing

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy" / "raspberrypi"
INSTALL = DEPLOY / "install.sh"
UNIT = DEPLOY / "street-gateway.service"
EXE = "/opt/street-gateway/bin/street-gateway"


def need(tool: str, apt_package: str) -> str:
    """Path of `tool`; without it the test fails (tests.conftest.missing)."""
    path = shutil.which(tool)
    if path is None:
        missing(f"{tool} not found: apt-get install {apt_package}")
    return path


def need_module(name: str) -> Any:
    """Import `name`; without it the test fails (as `need`)."""
    try:
        return importlib.import_module(name)
    except ImportError as err:
        missing(f"{name} not importable ({err}): pip install the project with its test extras")


def run_install(
    *args: str | Path, check: bool = True, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        ["bash", str(INSTALL), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        pytest.fail(f"install.sh {args} exited {proc.returncode}:\n{proc.stderr}")
    return proc


def fake_pi_boot(root: Path) -> Path:
    """A bookworm firmware partition as Raspberry Pi OS ships it (serial console on)."""
    boot = root / "boot" / "firmware"
    boot.mkdir(parents=True)
    (boot / "config.txt").write_text("dtparam=audio=on\n[pi4]\narm_boost=1\n[all]\n")
    (boot / "cmdline.txt").write_text(
        "console=serial0,115200 console=tty1 root=PARTUUID=1234-02 rootfstype=ext4 rootwait\n"
    )
    return boot


def snapshot(root: Path) -> dict[str, tuple[int, bytes | str]]:
    """Every path under root with its mode and content (or link target)."""
    out: dict[str, tuple[int, bytes | str]] = {}
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        if p.is_symlink():
            body: bytes | str = os.readlink(p)
        elif p.is_file():
            body = p.read_bytes()
        else:
            body = ""
        out[str(p.relative_to(root))] = (st.st_mode, body)
    return out


def mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


DEVICES = ("--device", "cam-1:axis/cam-1", "--personal-device", "sniffer-1:footfall/sniffer-1",
           "--personal-device", "evse-1:openevse/evse-1/#")  # fmt: skip


@pytest.fixture
def installed(tmp_path: Path) -> Iterator[tuple[Path, subprocess.CompletedProcess[str]]]:
    root = tmp_path / "root"
    fake_pi_boot(root)
    proc = run_install("--destdir", root, "--source", REPO, "--enable-uart", *DEVICES)
    yield root, proc


# ------------------------------------------------------------------------------ shell


def test_install_script_is_shellcheck_clean() -> None:
    shellcheck = need("shellcheck", "shellcheck")
    proc = subprocess.run([shellcheck, str(INSTALL)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_help_and_bad_options(tmp_path: Path) -> None:
    assert "--destdir" in run_install("--help").stdout
    assert run_install("--frobnicate", check=False).returncode != 0
    root = tmp_path / "root"
    for bad in ("sniffer-1", "sniffer-1:footfall/+", "gateway:footfall/x", "x:street-gateway/y"):
        proc = run_install("--destdir", root, "--device", bad, check=False)
        assert proc.returncode != 0, bad
        assert not root.exists(), "a rejected option must leave nothing behind"


# ------------------------------------------------------------------------------ systemd unit


def verify_unit(unit_text: str, tmp_path: Path) -> list[str]:
    """Problems `systemd-analyze verify` reports for this unit (empty list: clean).

    The real ExecStart binary does not exist here, and verify rightly flags that, so the copy
    points at a stub executable instead; every other line is verified as written. verify exits
    0 on unknown keys, so its output is what counts.
    """
    analyze = need("systemd-analyze", "systemd")
    stub = tmp_path / "bin" / "street-gateway"
    stub.parent.mkdir(parents=True, exist_ok=True)
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    unit = tmp_path / "street-gateway.service"
    unit.write_text(unit_text.replace(EXE, str(stub)))
    proc = subprocess.run(
        [analyze, "verify", "--man=no", str(unit)],
        capture_output=True,
        text=True,
        env={**os.environ, "SYSTEMD_LOG_COLOR": "0"},
    )
    # Only lines about our unit: a CI host may print noise about its own units.
    lines = (proc.stdout + proc.stderr).splitlines()
    problems = [ln for ln in lines if str(unit) in ln or "street-gateway.service" in ln]
    if proc.returncode != 0:
        problems.append(f"exit {proc.returncode}: {proc.stderr.strip()}")
    return problems


def test_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    text = UNIT.read_text()
    assert f"ExecStart={EXE} run -c /etc/street-gateway/gateway.yaml" in text
    assert verify_unit(text, tmp_path) == []


def test_verify_catches_a_misspelled_directive(tmp_path: Path) -> None:
    """Guards the test above against passing vacuously."""
    text = UNIT.read_text().replace("ProtectHome=yes", "ProtectHomme=yes")
    problems = verify_unit(text, tmp_path)
    assert any("ProtectHomme" in p for p in problems), problems


def unit_exposure(unit_text: str, tmp_path: Path, name: str = "street-gateway.service") -> float:
    """`systemd-analyze security` score of a unit file: 0 (locked down) to 10."""
    analyze = need("systemd-analyze", "systemd")
    unit = tmp_path / name
    unit.write_text(unit_text)
    proc = subprocess.run(
        [analyze, "security", "--offline=yes", "--no-pager", str(unit)],
        capture_output=True,
        text=True,
    )
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", proc.stdout)
    assert m, proc.stdout[-2000:] + proc.stderr
    return float(m.group(1))


def test_unit_sandbox_exposure_stays_low(tmp_path: Path) -> None:
    """The unit scores 1.5 on systemd 252; the issue's ceiling is 2.0."""
    assert unit_exposure(UNIT.read_text(), tmp_path) <= 2.0


def test_exposure_score_is_read_from_systemd(tmp_path: Path) -> None:
    """Guards the test above: the same unit without its sandbox scores far worse."""
    bare = "\n".join(
        ln for ln in UNIT.read_text().splitlines()
        if not ln.startswith(("Protect", "Restrict", "Private", "SystemCall", "Capability",
                              "NoNewPrivileges", "MemoryDeny", "DevicePolicy", "User="))
    )  # fmt: skip
    assert unit_exposure(bare, tmp_path) > 5.0


def test_unit_contract() -> None:
    """The lines other people build against (notify, user, paths, signals)."""
    text = UNIT.read_text()
    for line in (
        "Type=notify",
        "NotifyAccess=main",
        "WatchdogSec=60",
        "User=street-gateway",
        "SupplementaryGroups=dialout",
        "EnvironmentFile=-/etc/street-gateway/secrets.env",
        f"ExecStartPre={EXE} check -c /etc/street-gateway/gateway.yaml",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "Restart=always",
        "ProtectSystem=strict",
        "StateDirectory=street-gateway",
        "DevicePolicy=closed",
        "CapabilityBoundingSet=",
        "MemoryMax=128M",
        # RAM holds the key, pseudonyms and raw personal readings: never paged, never dumped.
        "MemorySwapMax=0",
        "LimitCORE=0",
    ):
        assert re.search(rf"^{re.escape(line)}$", text, re.M), line


def test_the_service_reads_the_bytecode_install_sh_compiles_for_it() -> None:
    """Issue 19: the unit runs the service with -OO and no column tables, from bytecode compiled
    so into a prefix of its own; install.sh compiles into that same prefix with the same flags
    (tests/integration/test_run_as_deployed.py runs the gateway under the unit's variables)."""
    env = dict(re.findall(r"^Environment=(PYTHON\w+)=(\S*)$", UNIT.read_text(), re.M))
    assert env["PYTHONOPTIMIZE"] == "2" and env["PYTHONNODEBUGRANGES"] == "1"
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"  # /opt is read-only to the service anyway
    script = INSTALL.read_text()
    venv = re.search(r"^readonly VENV=(\S+)$", script, re.M)
    prefix = re.search(r"^readonly PYCACHE=\$VENV(/\S+)$", script, re.M)
    assert venv and prefix and env["PYTHONPYCACHEPREFIX"] == venv.group(1) + prefix.group(1)
    compile_cmd = re.search(r'PYTHONPYCACHEPREFIX=\$\(r "\$PYCACHE"\) "\$python" (.*)$', script, re.M)
    assert compile_cmd and compile_cmd.group(1).startswith("-OO -X no_debug_ranges -m compileall ")
    assert re.search(r"^\s*compile_service_bytecode$", script, re.M)  # called, not only defined


# ------------------------------------------------------------------------------ journald, udev


def test_journald_dropin_keys_are_known_to_journald() -> None:
    """journald ignores unknown keys with a log line nobody reads; its binary lists the real ones."""
    binary = next(
        (
            Path(p)
            for p in ("/lib/systemd/systemd-journald", "/usr/lib/systemd/systemd-journald")
            if Path(p).exists()
        ),
        None,
    )
    if binary is None:
        need("systemd-journald-binary-not-found", "systemd")
        return
    known = binary.read_bytes()
    text = (DEPLOY / "journald-street-gateway.conf").read_text()
    assert "[Journal]" in text
    keys = re.findall(r"^([A-Za-z]+)=", text, re.M)
    assert {"Storage", "SystemMaxUse", "RuntimeMaxUse", "MaxRetentionSec"} <= set(keys)
    assert re.search(r"^SystemMaxUse=64M$", text, re.M)
    unknown = [k for k in keys if f"Journal.{k}\0".encode() not in known]
    assert unknown == []


MATCH_KEYS = {"ACTION", "SUBSYSTEM", "KERNEL", "ATTRS", "ENV", "SUBSYSTEMS", "KERNELS", "DRIVERS"}
ASSIGN_KEYS = {"SYMLINK", "GROUP", "MODE", "OWNER", "ENV", "GOTO", "LABEL", "TAG"}
UDEV_PAIR = re.compile(r'\s*([A-Z_]+)(\{[^}]+\})?\s*(==|!=|\+=|:=|=)\s*"([^"]*)"\s*(,|$)')


def test_udev_rules_are_well_formed_and_cover_the_adapters() -> None:
    text = (DEPLOY / "99-street-gateway-serial.rules").read_text()
    seen: set[tuple[str, str]] = set()
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        pos, pairs = 0, []
        while pos < len(line):
            m = UDEV_PAIR.match(line, pos)
            assert m, f"line {n}: cannot parse at {line[pos:]!r}"
            pairs.append(m.groups()[:4])
            pos = m.end()
        for key, _attr, op, _value in pairs:
            if op in ("==", "!="):
                assert key in MATCH_KEYS, f"line {n}: {key} is not a match key"
            else:
                assert key in ASSIGN_KEYS, f"line {n}: {key}{op} (meant ==?)"
        attrs = {(k + (a or "")): v for k, a, _op, v in pairs}
        if "ATTRS{idVendor}" in attrs:
            seen.add((attrs["ATTRS{idVendor}"], attrs["ATTRS{idProduct}"]))
            assert attrs.get("SYMLINK", "").startswith("street-gateway/"), f"line {n}"
    assert {
        ("0403", "6001"),
        ("1a86", "7523"),
        ("10c4", "ea60"),
        ("067b", "2303"),
        ("2e8a", "000a"),
        ("303a", "1001"),
    } <= seen
    assert 'GROUP="dialout"' in text and 'MODE="0660"' in text
    udevadm = shutil.which("udevadm")
    if (
        udevadm
        and subprocess.run([udevadm, "verify", "--help"], capture_output=True).returncode == 0
    ):
        # systemd >= 254 has a real rules checker; bookworm's 252 does not.
        proc = subprocess.run(
            [udevadm, "verify", str(DEPLOY / "99-street-gateway-serial.rules")],
            capture_output=True,
            text=True,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr


# ------------------------------------------------------------------------------ install.sh


def test_install_into_destdir_lays_down_the_tree(
    installed: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    root, proc = installed
    expected = {
        "etc/systemd/system/street-gateway.service": 0o644,
        "etc/udev/rules.d/99-street-gateway-serial.rules": 0o644,
        "etc/systemd/journald.conf.d/street-gateway.conf": 0o644,
        "etc/mosquitto/conf.d/street-gateway.conf": 0o644,
        "etc/mosquitto/street-gateway.acl": 0o640,
        "etc/mosquitto/street-gateway.passwd": 0o640,
        "etc/mosquitto/street-gateway-personal.conf": 0o644,
        "etc/mosquitto/street-gateway-personal.acl": 0o640,
        "etc/mosquitto/street-gateway-personal.passwd": 0o640,
        "etc/systemd/system/street-gateway-personal-broker.service": 0o644,
        "etc/street-gateway/gateway.yaml": 0o640,
        "etc/street-gateway/devices/sniffer-1.password": 0o600,
    }
    for rel, want in expected.items():
        assert (root / rel).is_file(), rel
        assert mode(root / rel) == want, f"{rel}: {oct(mode(root / rel))}"
    assert mode(root / "etc/street-gateway/secrets.env") in (0o600, 0o640)
    assert (root / "var/lib/street-gateway").is_dir()
    assert mode(root / "etc/street-gateway") == 0o750
    assert mode(root / "etc/street-gateway/devices") == 0o700
    assert (root / "etc/systemd/system/street-gateway.service").read_bytes() == UNIT.read_bytes()
    assert os.readlink(root / "usr/local/bin/street-gateway") == EXE
    assert not (root / "opt/street-gateway").exists(), "venv is only built with --with-venv"

    # Every device gets a user and an ACL for its own prefix only (a trailing /# is accepted).
    acl = (root / "etc/mosquitto/street-gateway.acl").read_text()
    assert "user cam-1\ntopic readwrite axis/cam-1/#\n" in acl
    pacl = (root / "etc/mosquitto/street-gateway-personal.acl").read_text()
    assert "user sniffer-1\ntopic readwrite footfall/sniffer-1/#\n" in pacl
    assert "user evse-1\ntopic readwrite openevse/evse-1/#\n" in pacl
    users = [ln.split(":")[0] for ln in (root / "etc/mosquitto/street-gateway.passwd").open()]
    assert users == ["gateway", "cam-1"]
    pusers = [ln.split(":")[0] for ln in (root / "etc/mosquitto/street-gateway-personal.passwd").open()]
    assert pusers == ["gateway", "sniffer-1", "evse-1"]
    conf = (root / "etc/mosquitto/conf.d/street-gateway.conf").read_text()
    assert re.search(r"^max_queued_messages 100000$", conf, re.M)
    assert re.search(r"^allow_anonymous false$", conf, re.M)

    # Passwords are stored, never printed.
    secrets = (root / "etc/street-gateway/secrets.env").read_text()
    gateway_pw = re.search(r"^LOCAL_MQTT_PASSWORD=(\S{20,})$", secrets, re.M)
    assert gateway_pw, "gateway broker password generated"
    device_pw = (root / "etc/street-gateway/devices/sniffer-1.password").read_text().strip()
    for pw in (gateway_pw.group(1), device_pw):
        assert pw not in proc.stdout + proc.stderr
    assert "/etc/street-gateway/devices/sniffer-1.password" in proc.stderr

    # --enable-uart on a bookworm firmware partition.
    boot = root / "boot/firmware"
    assert re.search(r"^enable_uart=1$", (boot / "config.txt").read_text(), re.M)
    cmdline = (boot / "cmdline.txt").read_text()
    assert cmdline == "console=tty1 root=PARTUUID=1234-02 rootfstype=ext4 rootwait\n"


def test_second_run_changes_nothing_and_keeps_site_edits(
    installed: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    root, _ = installed
    config = root / "etc/street-gateway/gateway.yaml"
    secrets = root / "etc/street-gateway/secrets.env"
    config.write_text(config.read_text() + "# edited on site\n")
    secrets.write_text(secrets.read_text().replace("INFLUX_TOKEN=", "INFLUX_TOKEN=site-token"))
    before = snapshot(root)

    run_install("--destdir", root, "--source", REPO, "--enable-uart", *DEVICES)

    after = snapshot(root)
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    assert changed == []
    assert config.read_text().endswith("# edited on site\n")


def test_new_device_is_added_without_touching_existing_ones(
    installed: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    root, _ = installed
    passwd = root / "etc/mosquitto/street-gateway.passwd"
    old = passwd.read_text()
    run_install("--destdir", root, "--device", "pax-1:paxcounter/pax-1")
    new = passwd.read_text()
    assert new.startswith(old) and new.count("\n") == old.count("\n") + 1
    assert (
        "user pax-1\ntopic readwrite paxcounter/pax-1/#\n"
        in (root / "etc/mosquitto/street-gateway.acl").read_text()
    )


def listeners_with_tls(conf: Path) -> list[tuple[str, bool, str]]:
    """(listener line, has a certfile, max_qos or '') per listener block."""
    out: list[tuple[str, bool, str]] = []
    for line in conf.read_text().splitlines():
        if line.startswith("listener "):
            out.append((line, False, ""))
        elif out and line.startswith("certfile "):
            out[-1] = (out[-1][0], True, out[-1][2])
        elif out and line.startswith("max_qos "):
            out[-1] = (out[-1][0], out[-1][1], line.split()[1])
    return out


def san_ips(cert_pem: bytes) -> list[str]:
    x509 = need_module("cryptography.x509")
    cert = x509.load_pem_x509_certificate(cert_pem)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]


def test_sensor_lan_listeners_are_tls_only_with_a_local_ca_and_remembered(tmp_path: Path) -> None:
    need("openssl", "openssl")
    root = tmp_path / "root"
    main = root / "etc/mosquitto/conf.d/street-gateway.conf"
    personal = root / "etc/mosquitto/street-gateway-personal.conf"
    tls = root / "etc/mosquitto/street-gateway-tls"
    run_install("--destdir", root, "--sensor-lan", "192.168.50.1")
    want_main = [("listener 1883 127.0.0.1", False, ""), ("listener 8883 192.168.50.1", True, "")]
    want_personal = [("listener 1884 127.0.0.1", False, "0"), ("listener 8884 192.168.50.1", True, "0")]
    assert listeners_with_tls(main) == want_main
    assert listeners_with_tls(personal) == want_personal
    assert san_ips((tls / "server.crt").read_bytes()) == ["192.168.50.1"]
    # The CA key never sits where the broker reads; the server key is not world-readable.
    assert mode(root / "etc/street-gateway/tls/ca.key") == 0o600
    assert mode(root / "etc/street-gateway/tls") == 0o700
    assert mode(tls / "server.key") == 0o640
    assert [p.name for p in tls.glob("*.key")] == ["server.key"], "no CA key next to the broker"
    ca = (tls / "ca.crt").read_bytes()

    before = snapshot(root)
    run_install("--destdir", root)  # remembered, nothing rewritten
    assert snapshot(root) == before

    run_install("--destdir", root, "--sensor-lan", "192.168.60.1")  # a new address
    assert san_ips((tls / "server.crt").read_bytes()) == ["192.168.60.1"]
    assert (tls / "ca.crt").read_bytes() == ca, "devices keep trusting the same CA"
    assert listeners_with_tls(main)[1] == ("listener 8883 192.168.60.1", True, "")

    run_install("--destdir", root, "--sensor-lan", "127.0.0.1")
    assert listeners_with_tls(main) == want_main[:1]
    assert listeners_with_tls(personal) == want_personal[:1]


def test_a_plain_sensor_lan_listener_from_an_older_install_becomes_tls(tmp_path: Path) -> None:
    need("openssl", "openssl")
    root = tmp_path / "root"
    run_install("--destdir", root)
    main = root / "etc/mosquitto/conf.d/street-gateway.conf"
    main.write_text(main.read_text() + "\nlistener 1883 192.168.50.1\n")  # what 0.1 wrote
    run_install("--destdir", root)
    assert listeners_with_tls(main)[1:] == [("listener 8883 192.168.50.1", True, "")]


def test_plain_text_listener_beyond_loopback_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "root"
    run_install("--destdir", root)
    other = root / "etc/mosquitto/conf.d/site.conf"
    for line in ("listener 1883", "listener 1883 0.0.0.0", "listener 1883 192.168.50.1"):
        other.write_text(f"# a site's own file\n{line}\nallow_anonymous false\n")
        proc = run_install("--destdir", root, check=False)
        assert proc.returncode == 1, line
        assert "plain-text MQTT listener beyond loopback" in proc.stderr
        assert "site.conf:2" in proc.stderr
    other.write_text("listener 1883 127.0.0.5\nlistener 8883 192.168.50.1\ncertfile /x\n")
    assert run_install("--destdir", root, check=False).returncode == 0


def make_ca_and_server(tmp: Path, ip: str) -> tuple[Path, Path, Path]:
    """The borough's CA and a server certificate it issued (with the `cryptography` package)."""
    import datetime
    import ipaddress

    x509 = need_module("cryptography.x509")
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Borough IoT CA")])
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key()).serial_number(1)
        .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ip)]))
        .issuer_name(ca_name).public_key(key.public_key()).serial_number(2)
        .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    paths = tmp / "borough-ca.crt", tmp / "borough-server.crt", tmp / "borough-server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))  # fmt: skip
    return paths


def test_the_boroughs_certificate_is_taken_instead_of_a_local_ca(tmp_path: Path) -> None:
    ca, cert, key = make_ca_and_server(tmp_path, "192.168.50.1")
    root = tmp_path / "root"
    run_install("--destdir", root, "--sensor-lan", "192.168.50.1",
                "--tls-cert", cert, "--tls-key", key, "--tls-ca", ca)  # fmt: skip
    tls = root / "etc/mosquitto/street-gateway-tls"
    assert (tls / "ca.crt").read_bytes() == ca.read_bytes()
    assert (tls / "server.crt").read_bytes() == cert.read_bytes()
    assert (tls / "server.key").read_bytes() == key.read_bytes()
    assert not (root / "etc/street-gateway/tls/ca.key").exists(), "no local CA was made"
    before = snapshot(root)
    run_install("--destdir", root)  # kept, never replaced by a local one
    assert snapshot(root) == before
    assert run_install("--destdir", root, "--tls-cert", cert, check=False).returncode != 0


def test_overlapping_device_prefixes_are_refused_naming_both_devices(tmp_path: Path) -> None:
    root = tmp_path / "root"
    for args in (
        ("--device", "cam-1:axis/cam", "--device", "cam-2:axis/cam/2"),
        ("--device", "cam-1:axis/cam", "--personal-device", "cam-2:axis/cam"),
        ("--device", "cam-1:axis/cam", "--device", "cam-1:axis/other"),
    ):
        proc = run_install("--destdir", root, *args, check=False)
        assert proc.returncode != 0, args
        assert "cam-1" in proc.stderr and ("cam-2" in proc.stderr or "twice" in proc.stderr), proc.stderr
        assert not root.exists()
    # A whole level apart is not an overlap: axis/cam and axis/camera are different devices.
    run_install("--destdir", root, "--device", "cam-1:axis/cam", "--personal-device", "sniffer-1:footfall/s1",
                "--device", "cam-2:axis/camera")  # fmt: skip
    # Against what is installed, on either broker, hand edits included.
    for args in (("--device", "cam-3:axis/cam/3"), ("--personal-device", "s2:footfall"),
                 ("--device", "sniffer-1:footfall/x")):  # fmt: skip
        proc = run_install("--destdir", root, *args, check=False)
        assert proc.returncode != 0, args
        name = args[1].split(":")[0]
        other = {"cam-3": "cam-1", "s2": "sniffer-1", "sniffer-1": "other broker"}[name]
        assert name in proc.stderr and other in proc.stderr, proc.stderr
    acl = root / "etc/mosquitto/street-gateway.acl"
    acl.write_text(acl.read_text() + "\nuser hand-made\ntopic readwrite weather/#\n")
    proc = run_install("--destdir", root, "--device", "wx-1:weather/station-1", check=False)
    assert proc.returncode != 0 and "hand-made" in proc.stderr and "wx-1" in proc.stderr


def test_personal_data_broker_config_and_unit(tmp_path: Path) -> None:
    """RAM only, QoS 0 on every listener, no retain unless asked (and remembered)."""
    root = tmp_path / "root"
    run_install("--destdir", root, "--personal-device", "sniffer-1:footfall/sniffer-1")
    conf = root / "etc/mosquitto/street-gateway-personal.conf"
    text = conf.read_text()
    for line in ("persistence false", "retain_available false", "queue_qos0_messages false",
                 "allow_anonymous false", "password_file /etc/mosquitto/street-gateway-personal.passwd"):  # fmt: skip
        assert re.search(rf"^{re.escape(line)}$", text, re.M), line
    assert "include_dir" not in text and "persistence_location" not in text
    assert all(qos == "0" for _, _, qos in listeners_with_tls(conf))
    acl = (root / "etc/mosquitto/street-gateway-personal.acl").read_text()
    assert "user sniffer-1\ntopic readwrite footfall/sniffer-1/#\n" in acl
    assert "user sniffer-1" not in (root / "etc/mosquitto/street-gateway.acl").read_text()
    users = [ln.split(":")[0] for ln in (root / "etc/mosquitto/street-gateway-personal.passwd").open()]
    assert users == ["gateway", "sniffer-1"]

    run_install("--destdir", root, "--personal-retain")
    assert re.search(r"^retain_available true$", conf.read_text(), re.M)
    run_install("--destdir", root)
    assert re.search(r"^retain_available true$", conf.read_text(), re.M)
    run_install("--destdir", root, "--no-personal-retain")
    assert not re.search(r"^retain_available true$", conf.read_text(), re.M)

    unit = (DEPLOY / "street-gateway-personal-broker.service").read_text()
    assert (root / "etc/systemd/system/street-gateway-personal-broker.service").read_text() == unit
    for line in ("ExecStart=/usr/sbin/mosquitto -c /etc/mosquitto/street-gateway-personal.conf",
                 "ProtectSystem=strict", "MemorySwapMax=0", "LimitCORE=0", "User=mosquitto"):  # fmt: skip
        assert re.search(rf"^{re.escape(line)}$", unit, re.M), line
    assert "ReadWritePaths" not in unit and "StateDirectory" not in unit, "nothing writable"
    assert unit_exposure(unit, tmp_path, "street-gateway-personal-broker.service") <= 2.0
    dropin = (root / "etc/systemd/system/mosquitto.service.d/street-gateway.conf").read_text()
    assert "MemorySwapMax=0" in dropin and "LimitCORE=0" in dropin


def test_swap_on_disk_is_warned_about_with_the_way_to_turn_it_off(tmp_path: Path) -> None:
    """Raspberry Pi OS keeps /var/swap (dphys-swapfile) on the SD card; zram stays in RAM."""
    root = tmp_path / "root"
    (root / "proc").mkdir(parents=True)
    (root / "var").mkdir()
    (root / "var/swap").write_bytes(b"")
    (root / "proc/swaps").write_text(
        "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n"
        "/var/swap                               file\t\t102396\t\t0\t\t-2\n"
        "/dev/zram0                              partition\t524284\t\t0\t\t100\n"
        "/dev/mmcblk0p3                          partition\t1048572\t\t0\t\t-3\n"
    )
    err = run_install("--destdir", root).stderr
    warnings = [ln for ln in err.splitlines() if "WARNING: swap" in ln]
    assert len(warnings) == 2, err
    assert "/var/swap is on disk" in warnings[0]
    assert "/dev/mmcblk0p3 is on the SD card" in warnings[1]
    assert all("dphys-swapfile swapoff" in w for w in warnings)
    assert "zram0" not in " ".join(warnings)

    (root / "proc/swaps").write_text("Filename\tType\tSize\tUsed\tPriority\n/dev/zram0 partition 1 0 100\n")
    assert "WARNING: swap" not in run_install("--destdir", root).stderr


def test_installed_config_is_valid_for_the_gateway(
    installed: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    """What install.sh puts in gateway.yaml must pass the gateway's own loader."""
    config = need_module("gateway.config")
    root, _ = installed
    env = {"LOCAL_MQTT_PASSWORD": "x", "INFLUX_TOKEN": "x", "CITY_MQTT_PASSWORD": "x"}
    config.load_config(root / "etc/street-gateway/gateway.yaml", env=env)


def test_uninstall_keeps_config_and_data_unless_purged(
    installed: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    root, _ = installed
    (root / "var/lib/street-gateway/outbox.sqlite3").write_bytes(b"readings")
    run_install("--destdir", root, "--uninstall")
    assert not (root / "etc/systemd/system/street-gateway.service").exists()
    assert not (root / "etc/mosquitto/conf.d/street-gateway.conf").exists()
    assert not (root / "usr/local/bin/street-gateway").is_symlink()
    assert (root / "etc/street-gateway/gateway.yaml").exists()
    assert (root / "var/lib/street-gateway/outbox.sqlite3").read_bytes() == b"readings"
    run_install("--destdir", root, "--uninstall", "--purge")
    assert not (root / "etc/street-gateway").exists()
    assert not (root / "var/lib/street-gateway").exists()
    assert not (root / "etc/mosquitto/street-gateway.passwd").exists()


# ------------------------------------------------------------------------------ real broker


def test_broker_config_authenticates_and_confines_devices(
    installed: tuple[Path, subprocess.CompletedProcess[str]], tmp_path: Path
) -> None:
    """The generated conf, passwd and ACL in a real Mosquitto: the hashes install.sh computes
    are accepted, anonymous clients are not, and a device can publish only under its prefix."""
    mosquitto = need("mosquitto", "mosquitto")
    mqtt = need_module("paho.mqtt.client")
    root, _ = installed
    port = free_port()
    conf = (root / "etc/mosquitto/conf.d/street-gateway.conf").read_text()
    conf = conf.replace("/etc/mosquitto/", f"{root}/etc/mosquitto/")
    conf = re.sub(r"^listener .*$", "", conf, flags=re.M)
    if os.geteuid() == 0:
        conf += "user root\n"  # else it drops to user mosquitto, who cannot read tmp_path
    conf += f"persistence_location {tmp_path}/\nlistener {port} 127.0.0.1\n"
    (tmp_path / "mosquitto.conf").write_text(conf)
    broker = subprocess.Popen(
        [mosquitto, "-c", str(tmp_path / "mosquitto.conf")],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if broker.poll() is not None or time.monotonic() > deadline:
                    out = broker.communicate()[0] if broker.poll() is not None else ""
                    pytest.fail(f"mosquitto did not start:\n{out}")
                time.sleep(0.05)

        secrets = (root / "etc/street-gateway/secrets.env").read_text()
        gateway_pw = re.search(r"^LOCAL_MQTT_PASSWORD=(.*)$", secrets, re.M)
        assert gateway_pw
        device_pw = (root / "etc/street-gateway/devices/cam-1.password").read_text().strip()

        def connect(user: str | None, pw: str | None) -> tuple[object, int]:
            client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
            if user is not None:
                client.username_pw_set(user, pw)
            rc: list[int] = []
            client.on_connect = lambda c, u, f, reason, p: rc.append(reason.value)
            client.connect("127.0.0.1", port)
            client.loop_start()
            until = time.monotonic() + 5
            while not rc and time.monotonic() < until:
                time.sleep(0.02)
            return client, rc[0] if rc else -1

        anon, rc = connect(None, None)
        anon.loop_stop()  # type: ignore[attr-defined]
        assert rc != 0, "anonymous login must be refused"
        wrong, rc = connect("cam-1", "not-the-password")
        wrong.loop_stop()  # type: ignore[attr-defined]
        assert rc != 0, "a wrong password must be refused"

        gateway, rc = connect("gateway", gateway_pw.group(1))
        assert rc == 0
        got: list[str] = []
        subscribed: list[bool] = []
        gateway.on_message = lambda c, u, m: got.append(m.topic)  # type: ignore[attr-defined]
        gateway.on_subscribe = lambda *a: subscribed.append(True)  # type: ignore[attr-defined]
        gateway.subscribe("#", qos=1)  # type: ignore[attr-defined]
        device, rc = connect("cam-1", device_pw)
        assert rc == 0
        until = time.monotonic() + 5
        while not subscribed and time.monotonic() < until:
            time.sleep(0.02)
        for topic in ("axis/cam-2/count", "street-gateway/x", "axis/cam-1/count"):
            device.publish(topic, b"1", qos=1).wait_for_publish(5)  # type: ignore[attr-defined]
        until = time.monotonic() + 5
        while "axis/cam-1/count" not in got and time.monotonic() < until:
            time.sleep(0.02)
        # Mosquitto delivers in order per client, so by the time the allowed message arrived
        # the two denied ones would have too.
        assert got == ["axis/cam-1/count"]
        for c in (gateway, device):
            c.disconnect()  # type: ignore[attr-defined]
            c.loop_stop()  # type: ignore[attr-defined]
    finally:
        broker.terminate()
        try:
            broker.wait(timeout=10)
        except subprocess.TimeoutExpired:
            broker.kill()


# ------------------------------------------------------------------------------ supply chain

LOCK = REPO / "requirements.lock"


def locked() -> dict[str, list[tuple[str, str]]]:
    """name -> [(version, marker)] from requirements.lock (one entry per resolver fork)."""
    out: dict[str, list[tuple[str, str]]] = {}
    for m in re.finditer(r"^([A-Za-z0-9_.-]+)==(\S+)(?: ; (.*?))? \\$", LOCK.read_text(), re.M):
        out.setdefault(m.group(1).lower().replace("_", "-"), []).append((m.group(2), m.group(3) or ""))
    return out


def test_the_lock_pins_every_dependency_within_the_pyproject_ranges() -> None:
    """A stale lock (a dependency added to pyproject.toml but not locked) fails here, not on a Pi."""
    import tomllib

    from packaging.requirements import Requirement
    from packaging.version import Version

    pins = locked()
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    wanted = [*project["project"]["dependencies"], *project["build-system"]["requires"]]
    for spec in wanted:
        req = Requirement(spec)
        name = req.name.lower().replace("_", "-")
        assert name in pins, f"{name} is not in requirements.lock: run scripts/lock"
        for version, _ in pins[name]:
            assert Version(version) in req.specifier, f"{name}=={version} outside {req.specifier}"
    text = LOCK.read_text()
    blocks = re.split(r"\n(?=[A-Za-z0-9])", text[text.index("\n", text.index("==") - 40) + 1:])
    assert all("--hash=sha256:" in b for b in blocks if "==" in b), "every pin carries its hashes"


@pytest.mark.slow
def test_install_from_the_lock_with_require_hashes_into_a_fresh_venv(tmp_path: Path) -> None:
    """install.sh --with-venv builds a fresh venv from requirements.lock with --require-hashes
    (the path a Pi takes), the gateway runs from it, and the same lock resolves to hashed
    CPython 3.11 wheels for aarch64 (a 64-bit Pi) as well as this x86_64 machine. Slow: it
    installs and downloads real packages."""
    root = tmp_path / "root"
    proc = run_install("--destdir", root, "--with-venv", "--source", REPO, timeout=900)
    assert "requirements.lock (hash-pinned" in proc.stderr
    exe = root / "opt/street-gateway/bin/street-gateway"
    run = subprocess.run([str(exe), "schema"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and '"title": "street-gateway configuration"' in run.stdout
    # the service's own bytecode (-OO), for the venv and the standard library
    pycache = root / "opt/street-gateway/pycache"
    assert next(pycache.rglob("site-packages/gateway/cli.cpython-3*.opt-2.pyc"))
    assert next(pycache.rglob("asyncio/base_events.cpython-3*.opt-2.pyc"))
    pip = root / "opt/street-gateway/bin/pip"
    frozen = subprocess.run([str(pip), "freeze", "--all"], capture_output=True, text=True).stdout
    versions = {ln.split("==")[0].lower().replace("_", "-"): ln.split("==")[1]
                for ln in frozen.splitlines() if "==" in ln}  # fmt: skip
    for name, forks in locked().items():
        if name in versions:
            assert versions[name] in {v for v, _ in forks}, name
    assert set(locked()) - {"pip"} <= set(versions) | {n for n, f in locked().items() if all(m for _, m in f)}

    # A package whose files match none of its hashes (a re-upload, a compromised mirror) must
    # stop the install: here every hash of aiomqtt is changed.
    bad = tmp_path / "bad.lock"
    text = LOCK.read_text()
    block = re.search(r"^aiomqtt==.*?(?=^\S)", text, re.M | re.S)
    assert block and "--hash" in block.group(0)
    bad.write_text(text.replace(block.group(0), re.sub(r"[0-9a-f]{64}", "0" * 64, block.group(0))))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    tampered = subprocess.run([str(venv / "bin/pip"), "install", "-q", "--require-hashes", "--no-deps",
                               "-r", str(bad)], capture_output=True, text=True, timeout=600)  # fmt: skip
    assert tampered.returncode != 0 and "hash" in tampered.stderr.lower()

    # aarch64: every pin for CPython 3.11 downloads as a wheel whose hash is in the lock, for
    # the glibc of Raspberry Pi OS bookworm (2.36): manylinux 2.17 (2014) up to 2.36.
    platforms = [a for g in (17, 24, 27, 28, 31, 34, 35, 36) for a in ("--platform", f"manylinux_2_{g}_aarch64")]
    arm = subprocess.run(
        [str(pip), "download", "-q", "--require-hashes", "--no-deps", "--only-binary=:all:",
         *platforms, "--platform", "manylinux2014_aarch64", "--python-version", "3.11", "--implementation", "cp",
         "--abi", "cp311", "-d", str(tmp_path / "aarch64"), "-r", str(LOCK)],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert arm.returncode == 0, arm.stderr[-3000:]
    wheels = [p.name for p in (tmp_path / "aarch64").iterdir()]
    assert any("pydantic_core" in w and "aarch64" in w for w in wheels), wheels


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))


def test_next_steps_copy_paste_as_the_readme_says(installed: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    """The commands install.sh prints after installing are the README's, with nothing to fill in
    by hand (no `<user>`-style blanks), and `check` is given the secrets file as systemd is."""
    _, proc = installed
    steps = proc.stderr[proc.stderr.index("Next"):].split("\n\n")[0].splitlines()[1:]
    commands = [re.sub(r"^\s*(\d\.)?\s*", "", line).split("  #")[0].strip() for line in steps]
    readme = (REPO / "README.md").read_text()
    check = next(c for c in commands if " check " in c)
    assert check == "sudo street-gateway check -c /etc/street-gateway/gateway.yaml --env-file /etc/street-gateway/secrets.env"
    for command in commands:
        assert "<" not in command and "…" not in command.split("#")[0], command
        if command.startswith(("sudo", "journalctl")):
            assert command in readme, f"not in the README's install section: {command}"
