"""InfluxDB line protocol for Observations. Pure.

Layout (documented in the README): measurement = observed property (`pm2_5`), tags = `gateway`,
`borough`, `sensor`, `datastream` (all from config, never from device data), fields = `value`
(number or boolean) or `state` (category word), plus `suppressed` and `samples` for aggregates;
timestamp = phenomenonTime start in milliseconds, so a replay overwrites the same point.

No line can split: a control character (a newline above all) in any part of a line has no
escape in line protocol, so such an observation is refused with `LineProtocolError` rather than
sent (the store would log the broken line, answer 204 and drop the point unseen). A number
result is `value`; a result withheld for being outside its field's physical range is
`withheld=true`, never a number.
"""

from __future__ import annotations

import re

from gateway.model import Observation

_MEAS = re.compile(r"([,\s\\])")
_TAG = re.compile(r"([,=\s\\])")
_CONTROL = re.compile("[\x00-\x1f\x7f]")


class LineProtocolError(ValueError):
    """An observation no line can carry safely (a control character in a name or a word)."""


def _safe(s: str) -> str:
    if _CONTROL.search(s):
        raise LineProtocolError("a control character cannot be carried in line protocol")
    return s


def _escape_tag(s: str) -> str:
    return _TAG.sub(r"\\\1", _safe(s))


def _field(v: float | int | str | bool) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return f"{float(v)!r}"  # one type per field across points: always float
    if isinstance(v, float):
        return repr(v)
    return '"' + _safe(v).replace("\\", "\\\\").replace('"', '\\"') + '"'


def encode(obs: Observation, tags: dict[str, str]) -> str:
    """One line. `tags` are the constant site tags; datastream and sensor are added here."""
    meas = _MEAS.sub(r"\\\1", _safe(obs.property))
    all_tags = {**tags, "sensor": obs.sensor_id, "datastream": str(obs.datastream_id)}
    tag_str = ",".join(f"{_escape_tag(k)}={_escape_tag(v)}" for k, v in sorted(all_tags.items()) if v)
    fields: list[str] = []
    r = obs.result
    if r is None:
        fields.append("suppressed=true" if obs.parameters.get("suppressed") else "withheld=true")
    elif isinstance(r, str):
        fields.append(f"state={_field(r)}")
    else:
        fields.append(f"value={_field(r)}")
    samples = obs.parameters.get("samples")
    if isinstance(samples, int) and not isinstance(samples, bool):
        fields.append(f"samples={float(samples)!r}")
    ts = round(obs.phenomenon_time * 1000)
    return f"{meas},{tag_str} {','.join(fields)} {ts}"
