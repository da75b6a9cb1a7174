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
from collections.abc import Mapping

from gateway.model import Observation, Result

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


def prefix(obs: Observation, tags: dict[str, str]) -> str:
    """The measurement and tags: constant per Datastream (a sink may build it once). `tags` are
    the constant site tags; datastream and sensor are added here."""
    meas = _MEAS.sub(r"\\\1", _safe(obs.property))
    all_tags = {**tags, "sensor": obs.sensor_id, "datastream": str(obs.datastream_id)}
    tag_str = ",".join(f"{_escape_tag(k)}={_escape_tag(v)}" for k, v in sorted(all_tags.items()) if v)
    return f"{meas},{tag_str}"


def fields(result: Result | None, parameters: Mapping[str, object]) -> str:
    """The field set: the result (`value`, or `state` for a word, or why there is none) and the
    number of samples behind an aggregate."""
    if type(result) is float and not parameters:
        return f"value={result!r}"  # the usual row, first: a sink writes one per observation
    if result is None:
        out = "suppressed=true" if parameters.get("suppressed") else "withheld=true"
    elif isinstance(result, str):
        out = f"state={_field(result)}"
    else:
        out = f"value={_field(result)}"
    samples = parameters.get("samples")
    if isinstance(samples, int) and not isinstance(samples, bool):
        out += f",samples={float(samples)!r}"
    return out


def encode(obs: Observation, tags: dict[str, str]) -> str:
    """One line: prefix, fields, the phenomenon time in epoch milliseconds."""
    return f"{prefix(obs, tags)} {fields(obs.result, obs.parameters)} {round(obs.phenomenon_time * 1000)}"
