"""The README's command lines, run exactly as written, from a fresh folder beside a checkout
(`scripts/` and `config/` linked in), with no secret in the environment: each must exit with the
code the README states, and what it says it writes must be there."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
SECRETS = ("INFLUX_TOKEN", "LOCAL_MQTT_PASSWORD", "CITY_MQTT_PASSWORD", "CREDENTIALS_DIRECTORY")


def readme_lines() -> list[tuple[str, int, str]]:
    """(command, exit code, what the README says) for the block of tested command lines."""
    text = README.read_text()
    start = text.index("These lines are run exactly as written")
    fence = text.index("```sh\n", start) + 6
    block = text[fence : text.index("\n```", fence)]
    out = []
    for line in block.splitlines():
        m = re.fullmatch(r"(scripts/street-gateway .*?|scripts/street-gateway)\s+# exit (\d+)(?::\s*(.*))?", line)
        assert m, f"README line without `# exit N`: {line!r}"
        out.append((m.group(1), int(m.group(2)), m.group(3) or ""))
    return out


LINES = readme_lines()


def test_the_readme_shows_every_command_a_newcomer_needs() -> None:
    shown = {cmd.split()[1] for cmd, _, _ in LINES if len(cmd.split()) > 1}
    assert {"check", "datastreams", "privacy-report", "catalogue", "schema", "simulate"} <= shown
    assert any(cmd.endswith("simulate") and code == 2 for cmd, code, _ in LINES)


def test_the_quick_start_is_two_commands_and_ci_runs_the_second() -> None:
    """One runs the gateway end to end with simulated devices, one installs and runs the tests;
    `.ci/run` calls that test command and nothing else."""
    text = README.read_text()
    start = text.index("## Quick start")
    fence = text.index("```sh\n", start) + 6
    block = text[fence : text.index("\n```", fence)]
    commands = [line.split("#", 1)[0].strip() for line in block.splitlines()]
    commands = [c for c in commands if c]
    assert commands == ["scripts/demo --duration 30", "scripts/test"], commands
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    steps = [line for line in ci if line and not line.startswith("#")]
    assert steps[-1] == "exec scripts/test", steps
    assert all(s.startswith(("set ", "cd ")) for s in steps[:-1]), steps


@pytest.fixture(scope="module")
def newcomer(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    here = tmp_path_factory.mktemp("clone-user")
    (here / "scripts").symlink_to(ROOT / "scripts")
    (here / "config").symlink_to(ROOT / "config")
    env = {k: v for k, v in os.environ.items() if k not in SECRETS}
    return here, env


@pytest.mark.parametrize(("command", "code", "says"), LINES, ids=[c for c, _, _ in LINES])
def test_a_readme_command_line_exits_as_the_readme_says(command: str, code: int, says: str,
                                                         newcomer: tuple[Path, dict[str, str]]) -> None:  # fmt: skip
    here, env = newcomer
    r = subprocess.run(["bash", "-c", command], cwd=here, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == code, f"{command}\nstdout: {r.stdout[-2000:]}\nstderr: {r.stderr[-2000:]}"
    assert "Traceback" not in r.stderr
    if code == 2:
        assert r.stderr.strip(), "a refusal must say why"
        if m := re.match(r"(\S+) … is not set", says):
            assert f"environment variable {m.group(1)} is not set" in r.stderr
    for path in re.findall(r"writes (\S+)", says):
        assert (here / path).is_file(), f"{command}: README says it writes {path}"
    if command.split()[1:2] == ["simulate"]:
        assert not [p for p in here.iterdir() if p.is_symlink() and p.name not in ("scripts", "config")], \
            "simulate left its pty links behind"  # fmt: skip
