"""What a loaded config keeps for the life of the gateway (issue 19, peak RSS): its file's text,
not a map from every key path to its line (121 KiB for 32 sensors). A problem found after
validation still names its line, found again from the text (`problem_at`)."""

from __future__ import annotations

import gc
import weakref
from pathlib import Path
from typing import Any

import pytest

from gateway.config import Config, parse_config, problem_at

TEXT = """\
gateway: {id: camden-lc-0423, borough: camden, location: {lat: 51.5390, lon: -0.1426}, data_dir: /tmp/x}
sensors:
  - {id: pm-north, driver: pms5003, serial: {port: /dev/ttyUSB0}}
  - id: pm-south
    driver: pms5003
    serial:
      port: /dev/ttyUSB1
sinks:
  file: {path: observations.jsonl}
"""


def test_a_problem_after_validation_names_its_line() -> None:
    cfg = parse_config(TEXT, "gw.yaml", {})
    assert str(problem_at(cfg, ("sensors", 1, "serial", "port"), "no such port")) == \
        "gw.yaml:7 sensors[1].serial.port: no such port"  # fmt: skip
    assert str(problem_at(cfg, ("sensors", 0, "driver"), "x")) == "gw.yaml:3 sensors[0].driver: x"
    # a path the file does not have: the line of its nearest key that it has
    assert str(problem_at(cfg, ("sensors", 1, "options", "mode"), "x")) == "gw.yaml:4 sensors[1].options.mode: x"
    assert str(problem_at(Config.model_construct(), ("gateway",), "x")).startswith("<config>")


def _reachable(root: object) -> list[Any]:
    seen: set[int] = set()
    todo, out = [root], []
    while todo:
        obj = todo.pop()
        if id(obj) in seen or isinstance(obj, type):
            continue
        seen.add(id(obj))
        out.append(obj)
        todo.extend(gc.get_referents(obj))
    return out


def test_a_loaded_config_keeps_no_map_of_its_keys_lines() -> None:
    cfg = parse_config(TEXT, "gw.yaml", {})
    maps = [o for o in _reachable(cfg)
            if isinstance(o, dict) and o and all(isinstance(k, tuple) for k in o)]  # fmt: skip
    assert maps == []


def test_run_does_not_keep_the_plan_that_proved_the_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`run` builds a plan to check the config, then the pipeline builds its own: the first
    must be garbage by the time the service runs (`cfg, _ = loaded` kept it alive in `_` for
    the life of `run`)."""
    import gateway.cli as cli
    import gateway.ops.logs
    import gateway.ops.memory
    import gateway.service

    path = tmp_path / "gw.yaml"
    path.write_text(TEXT.replace("/tmp/x", str(tmp_path)))
    proved: list[weakref.ref[Any]] = []
    alive: list[bool] = []
    real_load = cli._load

    def load(*args: Any, **kwargs: Any) -> Any:
        got = real_load(*args, **kwargs)
        if not isinstance(got, int):
            proved.append(weakref.ref(got[1]))
        return got

    async def serve(cfg: Config, reload: Any) -> int:
        gc.collect()
        alive.append(proved[0]() is not None)
        return 0

    monkeypatch.setattr(cli, "_load", load)
    monkeypatch.setattr(gateway.service, "serve", serve)
    monkeypatch.setattr(gateway.ops.memory, "prepare_service", lambda: None)  # not in the test process
    monkeypatch.setattr(gateway.ops.logs, "setup_logging", lambda *a, **k: None)
    assert cli.main(["run", "-c", str(path)]) == 0
    assert alive == [False]
