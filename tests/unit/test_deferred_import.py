"""gateway/deferred.py: paho's `urllib.request` is imported only when used, and then behaves as
if imported up front (issue 19: 0.4 MiB resident). Each case in a fresh interpreter, where
nothing has imported urllib.request yet (this test process has)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def fresh(code: str, **env: str) -> dict[str, object]:
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                         cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), **env}, check=True)  # fmt: skip
    result: dict[str, object] = json.loads(out.stdout.splitlines()[-1])
    return result


def test_after_what_run_does_first_the_mqtt_path_does_not_load_urllib_request_or_tempfile() -> None:
    got = fresh("""
        import json, sys, types
        import gateway.cli
        from gateway.ops.memory import prepare_service
        prepare_service()  # as cmd_run does
        import gateway.sources.mqtt, gateway.sinks.mqtt, aiomqtt, gateway.mqttconn
        print(json.dumps({"real": type(sys.modules["urllib.request"]) is types.ModuleType,
                          "tempfile": "tempfile" in sys.modules}))
    """)
    assert got == {"real": False, "tempfile": False}


def test_paho_reads_a_proxy_from_the_environment_through_the_stand_in() -> None:
    """What paho does with urllib.request when PySocks is there: `mqtt_proxy` from the
    environment, unless no_proxy names the broker. PySocks is not a dependency: a stand-in for
    its constants is enough for paho's lookup."""
    code = """
        import json, sys, types
        from gateway.ops.memory import prepare_service
        prepare_service()
        import gateway.mqttconn
        import paho.mqtt.client as pc
        pc.socks = types.SimpleNamespace(HTTP=3, SOCKS4=1, SOCKS5=2, get_default_proxy=lambda: None)
        c = pc.Client(pc.CallbackAPIVersion.VERSION2)
        c._host = sys.argv[1] if len(sys.argv) > 1 else "broker.example"
        proxy = c._get_proxy()
        from urllib.request import urlopen  # a later `from` import gets the real thing too
        print(json.dumps({"proxy": proxy, "real": type(sys.modules["urllib.request"]) is types.ModuleType,
                          "urlopen": urlopen.__module__}))
    """
    got = fresh(code, mqtt_proxy="http://proxy.example:3128", no_proxy="local.example")
    assert got == {"proxy": {"proxy_type": 3, "proxy_addr": "proxy.example", "proxy_port": 3128},
                   "real": True, "urlopen": "urllib.request"}  # fmt: skip
    bypassed = fresh(code.replace('sys.argv[1] if len(sys.argv) > 1 else "broker.example"', '"local.example"'),
                     mqtt_proxy="http://proxy.example:3128", no_proxy="local.example")  # fmt: skip
    assert bypassed["proxy"] is None and bypassed["real"] is True


def test_a_module_imported_already_is_left_as_it_is() -> None:
    got = fresh("""
        import json, sys, urllib.request
        before = sys.modules["urllib.request"]
        from gateway.deferred import defer
        defer("urllib.request")
        print(json.dumps({"same": sys.modules["urllib.request"] is before}))
    """)
    assert got == {"same": True}
