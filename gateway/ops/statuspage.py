"""The status page: what a field engineer reads on a phone at the foot of a lamp column.

One card per sensor and per sink, faults first, each green (ok), amber (warn) or red (fault);
"12 s ago" rather than a timestamp; every value with its unit; a blank count explained (the
window is still open, or the count was withheld as too small); each sensor linked to the list of
its Datastreams. Cards stack on a 360 px phone and sit side by side on a laptop. Values shown are
observations that passed the privacy stage and the egress guard: nothing personal can appear.
"""

from __future__ import annotations

from typing import Any

from gateway.model import iso_duration


def escape(s: str) -> str:
    """`html.escape(s)`, the same five replacements: the `html` module's import also loads
    `html.entities` (2,231 named references for `unescape`), ~0.3 MiB that `run` keeps (issue 19)."""
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;").replace("'", "&#x27;")


LEVEL_WORD = {"ok": "ok", "warn": "warning", "fault": "fault"}
ORDER = {"fault": 0, "warn": 1, "ok": 2}
# the three colours; tests look for them in screenshots
COLOURS = {"ok": "#1e8e3e", "warn": "#f29900", "fault": "#d93025"}

CSS = f"""
*{{box-sizing:border-box}}
body{{font-family:system-ui,sans-serif;margin:0;padding:.75rem;color:#202124;background:#f8f9fa;line-height:1.35}}
h1{{font-size:1.25rem;margin:0 0 .25rem;overflow-wrap:anywhere}} h2{{font-size:1.05rem;margin:1rem 0 .5rem}}
p{{margin:.25rem 0}} .muted{{color:#5f6368;font-size:.9rem}}
.cards{{display:grid;gap:.6rem;grid-template-columns:repeat(auto-fill,minmax(min(100%,21rem),1fr))}}
.card{{background:#fff;border-radius:6px;border-left:.5rem solid;padding:.5rem .75rem;box-shadow:0 1px 2px #0002;min-width:0}}
.card h3{{font-size:1rem;margin:0;overflow-wrap:anywhere}} .card .kind{{font-weight:normal;color:#5f6368;font-size:.85rem}}
.level{{display:inline-block;font-weight:600;padding:0 .4rem;border-radius:3px;color:#fff;margin:.2rem 0}}
.ok{{border-color:{COLOURS["ok"]}}} .ok .level{{background:{COLOURS["ok"]}}}
.warn{{border-color:{COLOURS["warn"]}}} .warn .level{{background:{COLOURS["warn"]};color:#202124}}
.fault{{border-color:{COLOURS["fault"]}}} .fault .level{{background:{COLOURS["fault"]}}}
ul.values{{list-style:none;padding:0;margin:.3rem 0;display:grid;grid-template-columns:repeat(auto-fill,minmax(9.5rem,1fr));gap:.1rem .75rem}}
ul.values li{{overflow-wrap:anywhere}} .v{{font-weight:600}} .blank{{color:#5f6368;font-style:italic}}
dl{{display:grid;grid-template-columns:auto 1fr;gap:.1rem .75rem;margin:.3rem 0}} dt{{color:#5f6368}} dd{{margin:0}}
.summary span{{margin-right:.75rem}}
.ds{{overflow-x:auto}} table{{border-collapse:collapse;font-size:.85rem}} td,th{{border-bottom:1px solid #ddd;padding:.2rem .5rem;text-align:left}}
a{{color:#1a73e8}}
"""


def ago(seconds: float | None) -> str:
    """`12 s ago`, `3 min ago`, `5 h ago`, `2 days ago`; `never` without a time."""
    if seconds is None:
        return "never"
    s = max(0, round(seconds))
    if s < 90:
        return f"{s} s ago"
    if s < 90 * 60:
        return f"{round(s / 60)} min ago"
    if s < 48 * 3600:
        return f"{round(s / 3600)} h ago"
    return f"{round(s / 86400)} days ago"


def _value(ds: dict[str, Any], window_s: float) -> str:
    """A value with its unit, or what its blank means."""
    e = escape
    if "value" not in ds:
        if ds.get("published", "every reading") != "every reading":
            return (f'<span class="blank">— first value when the {e(_window(window_s))} window '
                    "closes</span>")  # fmt: skip
        return '<span class="blank">— none yet</span>'
    if ds["value"] is None:
        n = ds.get("min_count")
        return (f'<span class="blank">withheld: fewer than {e(str(n))} counted in the last window, '
                "so the number is not published</span>")  # fmt: skip
    unit = f" {e(ds['symbol'])}" if ds.get("symbol") else ""
    value = ds["value"]
    shown = "yes" if value is True else "no" if value is False else str(value)
    return f'<span class="v">{e(shown)}</span>{unit}'


def _window(seconds: float) -> str:
    d = iso_duration(seconds).removeprefix("PT")
    return d.replace("M", " min").replace("H", " h").replace("S", " s")


def _sensor_card(s: dict[str, Any]) -> str:
    e = escape
    level = s.get("level") or ("fault" if s.get("fault") else "ok")
    sid = str(s["id"])
    streams = s.get("datastreams")
    if streams is None:  # a status without the legend: plain values
        streams = [{"property": k, "value": v} for k, v in sorted(s.get("values", {}).items())]
    items = "".join(
        f'<li data-property="{e(str(ds["property"]))}">{e(str(ds["property"]))}: {_value(ds, s.get("window_s", 0))}</li>'
        for ds in streams
    )
    fault = s.get("fault")
    return (
        f'<section class="card {level}" data-sensor="{e(sid)}" data-level="{level}">'
        f'<h3>{e(sid)} <span class="kind">{e(str(s.get("driver", "")))} · {e(str(s.get("transport", "")))}</span></h3>'
        f'<span class="level">{LEVEL_WORD[level]}</span> <span class="fault">{e(fault) if fault else "reading normally"}</span>'
        f'<p class="seen">last reading: <span class="ago" title="{e(str(s.get("last_seen") or ""))}">'
        f"{e(ago(s.get('last_seen_age_s')))}</span></p>"
        f'<ul class="values">{items}</ul>'
        f'<p class="muted"><a href="#ds-{e(sid)}">its Datastreams</a></p></section>'
    )


def _sink_card(name: str, v: dict[str, Any]) -> str:
    e = escape
    state = str(v.get("state", ""))
    level = v.get("level") or ("ok" if state == "ok" else "fault")
    return (
        f'<section class="card {level}" data-sink="{e(name)}" data-level="{level}">'
        f'<h3>{e(name)} <span class="kind">sink</span></h3>'
        f'<span class="level">{LEVEL_WORD[level]}</span> <span class="state">{e(state)}</span>'
        + (f' <span class="reason">{e(str(v["reason"]))}</span>' if v.get("reason") else "")
        + f'<dl><dt>delivered</dt><dd class="delivered">{int(v.get("delivered", 0))}</dd>'
        f'<dt>waiting</dt><dd class="lag">{int(v.get("lag", 0))}</dd>'
        f'<dt>oldest waiting</dt><dd>{e(str(v.get("oldest_pending_age_s", 0)))} s</dd>'
        f'<dt>failed writes</dt><dd>{int(v.get("failures", 0))}</dd></dl></section>'
    )


def _clock_line(clock: Any) -> str:
    e = escape
    if not isinstance(clock, dict):
        return f'<span id="clock">{e(str(clock))}</span>'
    mode = str(clock.get("mode", ""))
    note = {
        "synchronised": "synchronised",
        "provisional": "NOT synchronised: times are provisional (flagged clock_unsynced)",
        "held": "system clock stepped and was refused: time held on the monotonic clock",
        "system": "system clock",
    }.get(mode, mode)
    cls = "ok" if clock.get("synchronised") else "fault"
    return (
        f'<span id="clock">{e(str(clock.get("time", "")))}</span> '
        f'<span id="clock-state" class="{cls}" data-mode="{e(mode)}">{e(note)}</span>'
        f" (offset {e(str(clock.get('offset_s', 0)))} s)"
    )


def _datastreams(sensors: list[dict[str, Any]]) -> str:
    e = escape
    parts = []
    for s in sensors:
        rows = "".join(
            f"<tr><td>{e(str(ds['property']))}</td><td>{e(str(ds.get('unit') or ''))}</td>"
            f"<td>{e(str(ds.get('published', '')))}</td><td><code>{ds['id']}</code></td></tr>"
            for ds in s.get("datastreams") or []
        )
        parts.append(
            f'<h3 id="ds-{e(str(s["id"]))}">{e(str(s["id"]))}</h3><div class="ds"><table>'
            f"<tr><th>property</th><th>unit (UCUM)</th><th>published</th><th>Datastream id</th></tr>{rows}</table></div>"
        )
    return "".join(parts)


def _problems(problems: list[Any]) -> str:
    """What /readyz says keeps the gateway from being ready: a task down, a sink blocked."""
    items = "".join(f"<li>{escape(str(p))}</li>" for p in problems)
    return f'<ul id="problems" class="card fault">{items}</ul>' if items else ""


def render_status_page(st: dict[str, Any]) -> str:
    """The page; it refreshes itself every 5 s."""
    e = escape
    sensors = sorted(st.get("sensors", []), key=lambda s: (ORDER.get(s.get("level") or "ok", 2), str(s["id"])))
    sinks = sorted(st.get("sinks", {}).items(), key=lambda kv: (ORDER.get(kv[1].get("level") or "ok", 2), kv[0]))
    levels = [s.get("level") or "ok" for s in sensors] + [v.get("level") or "ok" for _, v in sinks]
    counts = " ".join(f'<span class="{lv}" data-count="{lv}">{levels.count(lv)} {LEVEL_WORD[lv]}</span>'
                      for lv in ("fault", "warn", "ok"))  # fmt: skip
    gateway = e(str(st.get("gateway", "")))
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><meta http-equiv="refresh" content="5">
<title>street-gateway {gateway}</title><style>{CSS}</style></head>
<body><h1>street-gateway <span id="gateway">{gateway}</span></h1>
<p class="summary">{counts}</p>
{_problems(st.get("problems", []))}
<p class="muted">Clock: {_clock_line(st.get("clock", ""))}</p>
<p class="muted">Outbox: <span id="outbox">{st.get("outbox", {}).get("observations", 0)}</span> observations waiting · readings since start: <span id="readings">{st.get("readings", 0)}</span></p>
<h2>Sensors</h2>
<p class="muted">Counts of people and devices are published per window: a blank count is a window not yet closed; "withheld" means too few were counted to publish a number.</p>
<div class="cards" id="sensors">{"".join(_sensor_card(s) for s in sensors)}</div>
<h2>Sinks</h2><div class="cards" id="sinks">{"".join(_sink_card(k, v) for k, v in sinks)}</div>
<h2>Datastreams</h2><div id="datastreams">{_datastreams(sensors)}</div>
<p class="muted"><a href="/metrics">metrics</a> · <a href="/status.json">status.json</a></p>
</body></html>"""
