"""The service runs with PYTHONOPTIMIZE=2 (deploy/raspberrypi/street-gateway.service, issue 19:
1.5 MiB less resident without docstrings), which strips `assert` statements: so the code that
ships has none, and every check it makes is made the same way under -OO as in the tests."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_no_assert_statement_in_the_shipped_packages() -> None:
    found = []
    files = sorted((ROOT / "gateway").rglob("*.py")) + sorted((ROOT / "firmware_bridge").rglob("*.py"))
    assert len(files) > 100  # the packages are where this test thinks they are
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Assert):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert found == [], "use `if not ...: raise` (stripped under -O): " + ", ".join(found)
