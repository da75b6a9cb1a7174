"""The status page's words and colours for states a running gateway rarely shows in a short test:
a blocked or unknown sink state, a withheld count, ages in minutes and days."""

from __future__ import annotations

import html
import html.parser

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.ops.statuspage import ago, escape, render_status_page
from gateway.service import SINK_LEVELS


class Cards(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.levels: dict[str, str] = {}
        self.text: dict[str, str] = {}
        self._key: str | None = None
        self._depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "section" and (key := a.get("data-sensor") or a.get("data-sink")):
            self._key, self._depth = key, 0
            self.levels[key] = a.get("data-level") or ""
            self.text[key] = ""
        if self._key and tag == "section":
            self._depth += 1

    def handle_endtag(self, tag: str) -> None:
        if self._key and tag == "section":
            self._depth -= 1
            if self._depth == 0:
                self._key = None

    def handle_data(self, data: str) -> None:
        if self._key:
            self.text[self._key] += data


def page(**status: object) -> Cards:
    cards = Cards()
    cards.feed(render_status_page({"gateway": "g", **status}))
    return cards


@pytest.mark.parametrize(("state", "level"), [("ok", "ok"), ("behind", "warn"), ("blocked", "fault"),
                                              ("a-state-nobody-placed", "fault")])  # fmt: skip
def test_a_sink_state_has_its_colour_and_an_unknown_one_shows_red(state: str, level: str) -> None:
    shown = SINK_LEVELS.get(state, "fault")
    assert shown == level
    cards = page(sinks={"city": {"state": state, "level": shown, "delivered": 3}})
    assert cards.levels["city"] == level and state in cards.text["city"]


def test_a_withheld_count_and_an_open_window_say_why_they_are_blank() -> None:
    sensor = {"id": "footfall-1", "driver": "wifi_probe_sniffer", "transport": "mqtt", "level": "ok",
              "last_seen_age_s": 4.2, "window_s": 900, "values": {"footfall": None},
              "datastreams": [
                  {"id": 1, "property": "footfall", "unit": "{devices}", "symbol": "devices",
                   "published": "distinct_count per PT15M", "min_count": 10, "value": None},
                  {"id": 2, "property": "dwellers", "unit": "{devices}", "symbol": "devices",
                   "published": "distinct_count per PT15M", "min_count": 10}]}  # fmt: skip
    text = page(sensors=[sensor]).text["footfall-1"]
    assert "footfall: withheld: fewer than 10 counted in the last window, so the number is not published" in text
    assert "dwellers: — first value when the 15 min window closes" in text
    assert "4 s ago" in text


def test_faults_come_first() -> None:
    sensors = [{"id": f"s{i}", "level": level, "fault": None if level == "ok" else "x"}
               for i, level in enumerate(["ok", "warn", "fault", "ok"])]  # fmt: skip
    assert list(page(sensors=sensors).levels.values()) == ["fault", "warn", "ok", "ok"]


@pytest.mark.parametrize(("seconds", "text"), [(None, "never"), (0.4, "0 s ago"), (12, "12 s ago"), (89, "89 s ago"),
                                               (150, "2 min ago"), (3 * 3600, "3 h ago"), (5 * 86400, "5 days ago")])  # fmt: skip
def test_ages_read_as_time_ago(seconds: float | None, text: str) -> None:
    assert ago(seconds) == text


@given(st.text(alphabet=st.sampled_from("&<>\"'a é;#x"), max_size=40) | st.text(max_size=40))
def test_escape_is_the_standard_librarys_html_escape(text: str) -> None:
    """The page escapes with its own five replacements (issue 19: `html` loads `html.entities`,
    ~0.3 MiB, at import); they are `html.escape`'s, character for character."""
    assert escape(text) == html.escape(text)
