"""`street-gateway run` in the benchmarks as the shipped systemd unit runs it.

deploy/raspberrypi/street-gateway.service sets PYTHONOPTIMIZE=2, PYTHONNODEBUGRANGES=1 and a
PYTHONPYCACHEPREFIX that install.sh fills with bytecode compiled so (the standard library and the
venv). `deployed_env` reads those Environment= lines from the unit itself (so a bench cannot
drift from what ships), points the prefix at a cache of the bench's own (bench/.pycache-deployed,
git-ignored) and compiles into it as install.sh does, plus the work tree's gateway and
firmware_bridge (the dev venv installs them editable, so their source is here). The first call
compiles the whole standard library and venv (~30 s here); later ones check it (~10 s, once per
bench process and interpreter).

BENCH_PLAIN_PYTHON=1 turns this off (`run` as started by hand, the ordinary bytecode), to
measure what the unit's settings are worth.
"""

from __future__ import annotations

import functools
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "deploy" / "raspberrypi" / "street-gateway.service"
CACHE = ROOT / "bench" / ".pycache-deployed"
SKIP = r"/(test|tests|idlelib|tkinter|turtledemo|lib2to3|ensurepip|pydoc_data)/"  # as install.sh

# run by the interpreter that will run the gateway, under the unit's variables: its standard
# library, its venv (sys.prefix/lib) and the work tree's packages
_COMPILE = f"""
import compileall, re, sys, sysconfig
dirs = [sysconfig.get_path("stdlib"), sys.prefix + "/lib", *sys.argv[1:]]
ok = all([compileall.compile_dir(d, quiet=1, workers=0, rx=re.compile({SKIP!r})) for d in dirs])
sys.exit(0 if ok else 1)
"""


def unit_python_env() -> dict[str, str]:
    """The PYTHON* variables the unit sets (PYTHONPYCACHEPREFIX as the unit has it)."""
    return dict(re.findall(r"^Environment=(PYTHON\w+)=(\S*)$", UNIT.read_text(), re.M))


@functools.cache
def _compile(python: str, flags: tuple[tuple[str, str], ...]) -> None:
    env = {**os.environ, **dict(flags)}
    proc = subprocess.run([python, "-c", _COMPILE, str(ROOT / "gateway"), str(ROOT / "firmware_bridge")],
                          env=env, capture_output=True, text=True)  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(f"compiling the deployed bytecode failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")


def deployed_env(base: dict[str, str] | None = None, python: str = sys.executable) -> dict[str, str]:
    """`base` (default: os.environ) plus the unit's PYTHON* variables, the bytecode prefix being
    the bench's own cache, compiled for `python` (optimisation and flags from those variables)."""
    base = dict(os.environ if base is None else base)
    if base.get("BENCH_PLAIN_PYTHON") == "1":
        return base
    flags = {**unit_python_env(), "PYTHONPYCACHEPREFIX": str(CACHE)}
    _compile(python, tuple(sorted(flags.items())))
    return {**base, **flags}


if __name__ == "__main__":  # prepare the cache (and print the variables)
    print(unit_python_env())
    deployed_env()
    print(f"compiled into {CACHE}")
