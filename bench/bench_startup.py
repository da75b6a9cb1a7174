"""What `street-gateway run` costs to start and to reload, and its memory once up.

`run` validates its configuration in a child process with pydantic and runs without it
(gateway/validated_config.py, issue 19). This measures, for a config with one MQTT sensor and
every sink (file, InfluxDB into a real VictoriaMetrics, MQTT feed into a real Mosquitto), as the
systemd unit runs the service (bench/deployed.py):

- start: spawn -> READY=1 on a NOTIFY_SOCKET (what systemd waits for), wall seconds;
- the service's RSS (VmRSS, VmHWM) 3 s after READY=1, and whether it maps pydantic-core;
- reload: SIGHUP -> the next READY=1 (the unit's ExecReload), wall seconds;
- the validating child alone, spawned as `run` spawns it: wall seconds, CPU seconds and peak
  RSS (`wait4`), when this tree has one (a tree from before it has not: "-").

Run from the repo root (or a snapshot's): `.venv/bin/python bench/bench_startup.py [rounds]`.
Prints figures; asserts nothing.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_imports import config, status, store_and_broker  # noqa: E402
from bench.deployed import deployed_env  # noqa: E402


def wait_ready(sock: socket.socket, proc: subprocess.Popen[bytes], timeout: float = 120.0) -> float:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"run exited with {proc.returncode}")
        try:
            msg = sock.recv(4096).decode()
        except TimeoutError:
            continue
        if "READY=1" in msg.split("\n"):
            return time.monotonic()
    raise RuntimeError("no READY=1")


def one_round(tmp: Path, cfg: Path, env: dict[str, str]) -> dict[str, float | str]:
    name = f"bench-startup-{os.getpid()}-{time.monotonic_ns()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(0.05)
    out: dict[str, float | str] = {}
    t0 = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "gateway.cli", "run", "-c", str(cfg)], cwd=ROOT,
                            env={**env, "NOTIFY_SOCKET": "@" + name}, stdout=subprocess.DEVNULL,
                            stderr=(tmp / "gw.log").open("a"))  # fmt: skip
    try:
        out["start_s"] = wait_ready(sock, proc) - t0
        time.sleep(3.0)
        st = status(proc.pid)
        out["rss"], out["hwm"] = st["VmRSS"] / 2**20, st["VmHWM"] / 2**20
        out["pydantic"] = "yes" if "_pydantic_core" in Path(f"/proc/{proc.pid}/maps").read_text() else "no"
        t1 = time.monotonic()
        proc.send_signal(signal.SIGHUP)
        out["reload_s"] = wait_ready(sock, proc) - t1
        time.sleep(1.0)
        out["hwm_after_reload"] = status(proc.pid)["VmHWM"] / 2**20
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        sock.close()
    return out


def child_alone(cfg: Path, env: dict[str, str]) -> tuple[float, float, float] | None:
    """(wall s, CPU s, peak RSS MiB) of the validating child, spawned as `run` spawns it."""
    if not (ROOT / "gateway" / "validated_config.py").exists():
        return None  # a tree from before it
    from gateway.validated_config import child_command

    t0 = time.monotonic()
    proc = subprocess.Popen(child_command(str(cfg), None), env=env, stdout=subprocess.DEVNULL)
    _, code_, ru = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(code_)
    if proc.returncode != 0:
        raise RuntimeError(f"child exited with {proc.returncode}")
    return time.monotonic() - t0, ru.ru_utime + ru.ru_stime, ru.ru_maxrss / 1024


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    with store_and_broker("bench-startup-") as (tmp, vm, mq_port):
        env = deployed_env({**os.environ, "PYTHONPATH": str(ROOT), "STREET_GATEWAY_CLOCK": "system"})
        cfg = config(tmp / "gw", mq_port, vm.url, ["file", "influxdb", "mqtt"])
        print(f"{ROOT}: `run`, one MQTT sensor, every sink; load {os.getloadavg()[0]:.1f}")
        print(f"{'round':>5} {'start s':>8} {'reload s':>8} {'RSS':>6} {'VmHWM':>6} {'HWM after reload':>16} "
              f"{'pydantic':>8}   child alone: wall s, CPU s, peak RSS MiB")  # fmt: skip
        for i in range(rounds):
            r = one_round(tmp, cfg, env)
            c = child_alone(cfg, env)
            child = f"{c[0]:.2f}, {c[1]:.2f}, {c[2]:.1f}" if c else "-"
            print(f"{i + 1:5d} {r['start_s']:8.2f} {r['reload_s']:8.2f} {r['rss']:6.1f} {r['hwm']:6.1f} "
                  f"{r['hwm_after_reload']:16.1f} {r['pydantic']:>8}   {child}")  # fmt: skip


if __name__ == "__main__":
    main()
