"""gateway/cli.py sizes argparse's help to the terminal without importing shutil, which brought
bz2 and lzma into every `run` (issue 19): the width is shutil's, and `run`'s command line and
the gateway's imports leave shutil, bz2 and lzma out."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def fresh(code: str, env: dict[str, str], tty: bool = False) -> str:
    if tty:  # stdout a terminal of 97 columns (a pty): what os.get_terminal_size reads
        import fcntl
        import pty
        import struct
        import termios

        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 97, 0, 0))
        with os.fdopen(master, "rb", buffering=0) as m:
            proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=env, stdout=slave, stderr=subprocess.PIPE)
            os.close(slave)
            out = b""
            while True:
                try:
                    chunk = m.read(4096)
                except OSError:
                    break
                if not chunk:
                    break
                out += chunk
            assert proc.wait(30) == 0, proc.stderr.read() if proc.stderr else ""
        return out.decode().strip()
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          check=True).stdout.strip()  # fmt: skip


WIDTHS = "import json, shutil; from gateway.cli import _terminal_columns; print(json.dumps([_terminal_columns(), shutil.get_terminal_size().columns]))"


@pytest.mark.parametrize("columns", ["57", "140", None, "not-a-number", "0", "-3"])
@pytest.mark.parametrize("tty", [False, True], ids=["pipe", "tty"])
def test_the_help_width_is_shutils(columns: str | None, tty: bool) -> None:
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"} | {"PYTHONPATH": str(ROOT)}
    if columns is not None:
        env["COLUMNS"] = columns
    ours, shutils = json.loads(fresh(WIDTHS, env, tty))
    assert ours == shutils
    assert ours == (int(columns) if columns and columns.isdigit() and int(columns) > 0 else 97 if tty else 80)


def test_parsing_runs_command_line_and_loading_a_config_leave_shutil_bz2_and_lzma_out() -> None:
    code = """
import json, sys
from gateway.cli import main
main(["check", "-c", "/nonexistent/gateway.yaml"])
print(json.dumps(sorted(m for m in ("shutil", "bz2", "lzma") if m in sys.modules)))
"""
    assert fresh(code, {**os.environ, "PYTHONPATH": str(ROOT)}).splitlines()[-1] == "[]"
