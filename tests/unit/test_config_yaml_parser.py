"""gateway/config.py parses a config once, with libyaml (issue 19: memory): the data and the line
of every key are what PyYAML's pure-Python parser gives (what the gateway used before), on the
shipped example configs and on YAML's corners; a file libyaml refuses reads as it always did
(tests/unit/test_config.py: YAML_MISTAKES)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.config import _lines, _parse_yaml, parse_config

ROOT = Path(__file__).resolve().parents[2]

CORNERS = """\
gateway: &gw
  id: corner-01
  borough: "Camden \\u00e9\\t"
  location: {lat: 51.539, lon: -1.5e-1}
  name: 'it''s here'
  description: |
    two lines,
      kept as they are
  usrn: >-
    folded
    text
base: &base {window: 15m, min_count: 10}
privacy:
  <<: *base
  distinct_cap: 1_000
  location_grid_m: 0o17
  zones: []
flags: [yes, No, on, OFF, ~, null, .inf, -.Inf, .nan, 0x1F, 1:30, 2024-05-01, 2024-05-01T12:00:00Z]
ports: {1: {codec: a}, 2: {codec: b}, "3": c}
copy: *gw
empty:
"""


def both(text: str) -> tuple[tuple[Any, dict[Any, int], list[Any]], tuple[Any, dict[Any, int], list[Any]]]:
    """(data, key lines, keys given twice) from the gateway's parse, and from the two parses by
    the pure-Python parser the gateway made before (yaml.compose for the lines, yaml.safe_load)."""
    lines: dict[Any, int] = {}
    dups: list[Any] = []
    data = _parse_yaml(text, lines, dups)
    py_lines: dict[Any, int] = {}
    py_dups: list[Any] = []
    _lines(yaml.compose(text, Loader=yaml.SafeLoader), (), py_lines, py_dups)
    return (data, lines, dups), (yaml.safe_load(text), py_lines, py_dups)


def same(a: Any, b: Any) -> bool:
    """Equal, NaN included."""
    if isinstance(a, float) and isinstance(b, float) and a != a:
        return b != b
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(map(same, a, b))
    return type(a) is type(b) and a == b


def test_libyaml_is_there_so_the_fast_path_is_the_one_compared() -> None:
    assert yaml.__with_libyaml__ and hasattr(yaml, "CSafeLoader")


@pytest.mark.parametrize("path", sorted((ROOT / "config").glob("*.yaml")), ids=lambda p: p.name)
def test_example_configs_parse_as_pure_python_pyyaml_parses_them(path: Path) -> None:
    fast, slow = both(path.read_text())
    assert same(fast[0], slow[0]) and fast[1:] == slow[1:]


def test_yaml_corners_parse_as_pure_python_pyyaml_parses_them() -> None:
    (data, lines, dups), (py_data, py_lines, py_dups) = both(CORNERS)
    assert same(data, py_data) and lines == py_lines and dups == py_dups == []
    assert data["privacy"]["distinct_cap"] == 1000 and data["ports"][1] == {"codec": "a"}  # the corpus is read
    assert data["privacy"]["window"] == "15m" and ("privacy", "<<") in lines  # a merge, overridden below
    override = CORNERS.replace("  distinct_cap: 1_000\n", "  distinct_cap: 1_000\n  window: 5m\n")
    (data, lines, dups), (py_data, py_lines, py_dups) = both(override)
    assert same(data, py_data) and data["privacy"]["window"] == "5m" and lines == py_lines and dups == py_dups == []


def test_what_libyaml_refuses_is_read_by_the_pure_python_parser(monkeypatch: pytest.MonkeyPatch) -> None:
    """A tab where YAML wants spaces: the problem is the pure-Python parser's sentence, and it
    is not libyaml's that produced it (libyaml's own message differs)."""
    text = "gateway:\n\tid: a\n"
    with pytest.raises(yaml.YAMLError) as c_error:
        yaml.load(text, Loader=yaml.CSafeLoader)
    with pytest.raises(yaml.YAMLError) as py_error:
        yaml.safe_load(text)
    assert str(c_error.value) != str(py_error.value)
    with pytest.raises(Exception) as got:
        parse_config(text, "gw.yaml", {})
    assert str(got.value) == ("gw.yaml:2: a tab or another character YAML cannot start a value with: indent with "
                              "spaces only, and quote values that start with `@` or a backtick")  # fmt: skip
