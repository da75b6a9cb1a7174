#!/usr/bin/env python3
"""Regenerate the property table in docs/standards.md from the driver catalogues.

    python scripts/gen_units_table.py          # rewrite the table in place
    python scripts/gen_units_table.py --check  # exit 1 if the doc is out of date (tests do this)

The catalogues are the single source of truth; the doc only mirrors them.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from firmware_bridge.base import Aggregation, Catalogue  # noqa: E402
from firmware_bridge.drivers import REGISTERED  # noqa: E402

DOC = ROOT / "docs" / "standards.md"
BEGIN = "<!-- BEGIN PROPERTY TABLE (scripts/gen_units_table.py) -->"
END = "<!-- END PROPERTY TABLE -->"


def catalogues() -> tuple[list[Catalogue], list[str]]:
    """Every fixed catalogue once (aliases such as pms7003 share one), and the drivers whose
    properties come from the sensor's options."""
    from pydantic import ValidationError

    seen: dict[str, Catalogue] = {}
    configurable: list[str] = []
    for d in sorted(REGISTERED, key=lambda d: d.name):
        try:
            options = d.options()
        except ValidationError:  # options required: the properties are the user's mapping
            configurable.append(d.name)
            continue
        cat = d.catalogue_for(options)
        seen.setdefault(cat.driver, cat)
    return [seen[k] for k in sorted(seen)], configurable


def render_table() -> str:
    cats, configurable = catalogues()
    lines = [
        "| property | unit (UCUM) | observationType | published as | driver |",
        "| --- | --- | --- | --- | --- |",
    ]
    for cat in cats:
        for f in cat.fields:
            if f.personal:
                continue  # never leaves the gateway
            how = "per reading" if f.aggregation is Aggregation.NONE else (
                f"{f.aggregation.value} per window of `{f.source}`")
            unit = f"`{f.unit}`" if f.unit else "—"
            lines.append(f"| `{f.key}` | {unit} | {f.observation_type.value.rsplit('/', 1)[-1]} "
                         f"| {how} | `{cat.driver}` |")
    if configurable:
        names = ", ".join(f"`{n}`" for n in configurable)
        lines.append("")
        lines.append(f"Drivers whose properties are declared in the sensor's `options` (units checked "
                     f"against the UCUM table at `check`): {names}.")
    return "\n".join(lines) + "\n"


def updated(text: str) -> str:
    head, sep, rest = text.partition(BEGIN)
    _, sep2, tail = rest.partition(END)
    if not sep or not sep2:
        raise SystemExit(f"{DOC}: table markers not found")
    return f"{head}{BEGIN}\n{render_table()}{END}{tail}"


def main(argv: list[str]) -> int:
    text = DOC.read_text(encoding="utf-8")
    new = updated(text)
    if "--check" in argv:
        if new != text:
            print(f"{DOC} is out of date: run scripts/gen_units_table.py", file=sys.stderr)
            return 1
        return 0
    DOC.write_text(new, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
