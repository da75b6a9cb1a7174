"""The egress guard: an independent, fail-closed last check on every byte that leaves.

It knows nothing of drivers or the privacy stage. It blocks any serialised payload or tag that
contains something shaped like an identifier (MAC/EUI-64 in any notation, RFID/idTag-like hex
token, IMEI/IMSI, GB and Northern Ireland vehicle registration, email also as `(at)`, phone
number with spaces or brackets, IP address), after NFKC normalisation, and any Observation key
or parameter that is not part of the published vocabulary, and (given the plan's vocabularies)
any text result that is not a declared word of its Datastream. Blocked payloads are counted per
reason and logged without the offending value. Each check covers one payload: a block never
takes a batch's other observations with it.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
import unicodedata
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from json.encoder import encode_basestring
from typing import Any

from gateway.model import Observation

OBSERVATION_KEYS = frozenset({"phenomenonTime", "resultTime", "result", "Datastream", "parameters"})
PARAMETER_KEYS = frozenset(
    {"quality", "aggregation", "period", "samples", "suppressed", "min_count", "window",
     "disclosure", "estimate"}
)  # fmt: skip

_HEX = "[0-9A-Fa-f]"
_SEP = r"[:\-. _]"  # between the bytes of a MAC: colon, dash, dot, space, underscore
# Separators a phone number is written with: spaces, dashes, dots, brackets.
_PH = r"[ .\-()]{0,3}"
# Northern Ireland registration marks: a two-letter code that contains I or Z, optionally a
# letter before it, then 1-4 digits (AZ, BZ, ..., IA, IB, IG, IJ, IL, IW, JI, OI, UI, XI).
_NI_CODE = r"(?:[A-HJ-PR-Y]Z|I[ABGJLW]|[JOUX]I)"
PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    # EUI-48 and EUI-64 with any one separator: 3c:22:fb:12:34:56, 3C-22-FB-12-34-56,
    # 3c 22 fb 12 34 56, 3c.22.fb.12.34.56, also after a label (sn:3c-22-fb-12-34-56)
    ("mac", re.compile(rf"(?<![0-9A-Fa-f]){_HEX}{{2}}(?P<sep>{_SEP}){_HEX}{{2}}(?:(?P=sep){_HEX}{{2}}){{4,6}}(?![0-9A-Fa-f])")),
    # Cisco dotted: 3c22.fb12.3456, and EUI-64 3c22.fbff.fe12.3456
    ("mac", re.compile(rf"(?<![0-9A-Fa-f.]){_HEX}{{4}}\.{_HEX}{{4}}\.{_HEX}{{4}}(?:\.{_HEX}{{4}})?(?![0-9A-Fa-f])")),
    ("email", re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")),
    # Obfuscated: alex (at) example (dot) org, alex[at]example.org, alex at example dot org
    ("email", re.compile(r"(?i)(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]+(?:\s*[(\[{<]\s*at\s*[)\]}>]\s*|\s+at\s+)"
                         r"[A-Za-z0-9-]+(?:(?:\.|\s*[(\[{<]\s*dot\s*[)\]}>]\s*|\s+dot\s+)[A-Za-z0-9-]+)*"
                         r"(?:\.|\s*[(\[{<]\s*dot\s*[)\]}>]\s*|\s+dot\s+)[A-Za-z]{2,24}(?![A-Za-z0-9])")),
    # IMEI (14-15 digits, or 2-6-6-1(2) with separators) and IMSI (MCC-MNC-MSIN). Not 16
    # bare digits: that is every Datastream id.
    ("imei_imsi", re.compile(r"(?<![\d.])\d{14,15}(?!\d|\.\d)")),
    ("imei_imsi", re.compile(r"(?<![\d.])\d{2}[ \-/]\d{6}[ \-/]\d{6}[ \-/]?\d{1,2}(?!\d)")),
    ("imei_imsi", re.compile(r"(?<![\d.])\d{3}[ \-]\d{2,3}[ \-]\d{9,10}(?!\d)")),
    # International: + or 00, then 8-15 digits written with spaces, dashes, dots or brackets:
    # +44 (0)20 7946 0958, +1 (555) 123-4567, 0044 20 7946 0958, +447700900123
    ("phone", re.compile(rf"(?<![\w+])\+{_PH}(?:\d{_PH}){{7,14}}\d(?!\d)")),
    ("phone", re.compile(rf"(?<![\d.]){_PH}00{_PH}[1-9](?:{_PH}\d){{7,13}}(?!\d)")),
    # UK national: (020) 7946 0958, 020 7946 0958, 07700 900123, 01632-960-001, 07700900123
    ("phone", re.compile(r"(?<![\d.])(?:\(0\d{2,4}\)|0\d{2,4})(?:[ .\-]?\d){6,8}(?!\d)")),
    # 12 bare hex digits (a MAC without separators)
    ("mac", re.compile(rf"(?<![0-9A-Za-z.+]){_HEX}{{12}}(?![0-9A-Za-z])")),
    # RFID UIDs and OCPP idTags: 8-20 hex digits mixing letters and digits (also bare EUI-64)
    # (not the fractional digits of a float: 1.505641162975121e-16)
    ("id_token", re.compile(rf"(?<![0-9A-Za-z])(?<!\d\.)(?=[0-9A-Fa-f]*[A-Fa-f])(?=[0-9A-Fa-f]*[0-9]){_HEX}{{8,20}}(?![0-9A-Za-z])")),
    # GB registrations: current (AB12 CDE), prefix (A123 BCD), suffix (ABC 123D)
    ("vehicle_registration", re.compile(r"(?<![A-Za-z0-9_])[A-Za-z]{2}\d{2}[\s\-]?[A-Za-z]{3}(?![A-Za-z0-9_])")),
    ("vehicle_registration", re.compile(r"(?<![A-Za-z0-9_])[A-Za-z]\d{1,3}[\s\-]?[A-Za-z]{3}(?![A-Za-z0-9_])")),
    ("vehicle_registration", re.compile(r"(?<![A-Za-z0-9_])[A-Za-z]{3}[\s\-]?\d{1,3}[A-Za-z](?![A-Za-z0-9_])")),
    # Northern Ireland: ABZ 1234, IJZ 4812, AZ 12
    ("vehicle_registration", re.compile(rf"(?i)(?<![A-Za-z0-9_])[A-Z]?{_NI_CODE}[\s\-]?\d{{1,4}}(?![A-Za-z0-9_])")),
    ("ip_address", re.compile(r"(?<![\d.])(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)(?![\d.])")),
    ("ip_address", re.compile(rf"(?<![0-9A-Fa-f:])(?:{_HEX}{{1,4}}:){{1,7}}:(?:{_HEX}{{1,4}})?|(?<![0-9A-Fa-f:])(?:{_HEX}{{1,4}}:){{5,7}}{_HEX}{{1,4}}(?![0-9A-Fa-f:])")),
)  # fmt: skip

# What NFKC leaves that still reads as the same identifier: dash and space look-alikes become
# ASCII, invisible characters (zero-width, soft hyphen, word joiner, BOM) go.
_FOLD = str.maketrans(
    {**dict.fromkeys(map(ord, "\u2010\u2011\u2012\u2013\u2014\u2015\u2212\ufe58\ufe63"), "-"),
     **dict.fromkeys(map(ord, "\u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007"
                              "\u2008\u2009\u200a\u202f\u205f\u3000"), " "),
     **dict.fromkeys(map(ord, "\u00ad\u180e\u200b\u200c\u200d\u2060\ufeff"), None)}
)  # fmt: skip


def normalise(text: str) -> str:
    """NFKC (full-width and compatibility forms: `３ｃ：２２` is `3c:22`), then dash and space
    look-alikes folded and invisible characters removed. ASCII text is returned as is (the
    check is O(1) in CPython), so the common case costs nothing."""
    if text.isascii():
        return text
    return unicodedata.normalize("NFKC", text).translate(_FOLD)


_AT_WORD = re.compile(r"(?i)[\s(\[{<]at[\s)\]}>]")


def _hint(pattern: re.Pattern[str]) -> Callable[[str], bool]:
    """A cheap test that must hold for `pattern` to match at all, so a scan of a large batch
    skips the patterns that cannot apply (a substring test runs at memchr speed)."""
    p = pattern.pattern
    if "@" in p:
        return lambda t: "@" in t
    if "at\\s*" in p:  # the obfuscated e-mail: needs a standalone "at"
        return lambda t: _AT_WORD.search(t) is not None
    if p.startswith("(?<![\\w+])\\+"):  # international phone with +
        return lambda t: "+" in t
    return lambda t: True


def _min_width(pattern: re.Pattern[str]) -> int:
    """The fewest characters any match of `pattern` spans (look-arounds span none): a shorter
    text cannot hold a match, so the pattern need not run on it."""
    import re._parser

    return int(re._parser.parse(pattern.pattern, pattern.flags).getwidth()[0])


_SCAN: tuple[tuple[str, re.Pattern[str], Callable[[str], bool], int], ...] = tuple(
    (kind, pattern, _hint(pattern), _min_width(pattern)) for kind, pattern in PATTERNS
)


def find_identifier(text: str) -> str | None:
    """The kind of the first identifier-shaped token in `text`, or None."""
    text = normalise(text)
    n = len(text)
    for kind, pattern, may_match, width in _SCAN:
        if n >= width and may_match(text) and pattern.search(text):
            return kind
    return None


@dataclass(frozen=True, slots=True)
class Verdict:
    ok: bool
    reason: str = ""


PASS = Verdict(True)


NOT_IN_VOCABULARY = "not_in_vocabulary"
# Datastream id -> (sensor id, the words a text result may be); built from the plan
# (`SitePlan.vocabularies`), so the guard needs no driver to know them.
Vocabularies = Mapping[int, tuple[str, frozenset[str]]]
RECORD_KEYS = frozenset({"ds", "s", "p", "t", "rt", "r", "te", "pa"})  # Observation.to_record
USUAL_RECORD_KEYS = frozenset({"ds", "s", "p", "t", "rt", "r"})  # an instant, no parameters

# ------------------------------------------------------------------ what each value looks like
# Every way a sink that builds its bytes from an Observation writes a value (outbox record and
# SensorThings JSON: `json.dumps(ensure_ascii=False)`; line protocol: `lineprotocol._field`, a
# number always as a float, a word quoted with the same two escapes as JSON and never with a
# control character in it). The guard scans exactly these texts, so what a sink splices in is
# what was scanned.


_CONSTANT = {True: "true", False: "false", None: "null"}  # json.dumps of each


# A number in (-NUMBER_BOUND, NUMBER_BOUND) — an int (not a bool) or a finite float, of exactly
# those types — is written only in shapes no identifier pattern can match: `str(int)` and
# `repr(float)` have at most 11 digits before any point, one point, no letter but the `e` of an
# exponent after a single digit (`1.5e-05`), no `+`, `@`, `:`, space or bracket. Every identifier
# pattern needs one of: 12 or more digits in a row not after a point (bare MAC, IMEI/IMSI), a
# `+`/`00`/leading-`0` phone shape, two or more points or separators (MAC, IP, IMEI groups),
# `@`/`at`, a colon (IPv6) or two or more letters (plates, hex tokens). So the guard decides such
# a number without rendering or scanning it. tests/unit/test_guard_once.py holds every pattern
# to that over arbitrary strings of those shapes (`NUMBER_SHAPE`), and holds every number in
# range to those shapes; a longer number (a 12-digit int is a phone number, or a MAC) is scanned
# in every rendering, as before.
NUMBER_BOUND = 1e11


def is_short_number(value: object) -> bool:
    """`value` is a number whose renderings no identifier pattern can match (see above)."""
    return (type(value) is float or type(value) is int) and -NUMBER_BOUND < value < NUMBER_BOUND


def renderings(value: object) -> tuple[str, ...]:
    """The texts `value` (a result or a parameter value) is written as by any sink."""
    if isinstance(value, bool) or value is None:
        return (_CONSTANT[value],)
    if isinstance(value, int):
        return (str(value), repr(float(value)))  # JSON; line protocol writes every number as a float
    if isinstance(value, float):
        return (repr(value),)
    if isinstance(value, str):  # a word: JSON, and line protocol's quoting
        return (encode_basestring(value),)  # what json.dumps(value, ensure_ascii=False) returns
    return (json.dumps(value, ensure_ascii=False),)


# A time in [TIME_LOW, TIME_HIGH) (2001-09-09 to 2286-11-20, epoch seconds) is written only in
# shapes no identifier pattern can match: the record's float `dddddddddd.ddd…` (ten digits,
# first not 0, a fraction), ISO 8601 `YYYY-MM-DDTHH:MM:SS.mmmZ` and line protocol's 13-digit
# epoch milliseconds (first not 0). tests/unit/test_guard_once.py holds every pattern to that
# over arbitrary strings of those shapes. Any other time (a device's 1990s clock, 1970 on an
# unsynchronised box, a relative offset) is scanned in all three renderings.
TIME_LOW = 1_000_000_000.0
TIME_HIGH = 9_999_999_999.0  # below it epoch ms keep 13 digits after rounding
# The times ISO 8601 can be written for (`iso`: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59Z;
# the committer commits none past the latter). A time outside, or a NaN or an infinity, is not a
# time any sink can write (a damaged row): blocked, never handed to a sink to fail on.
EARLIEST_TIME = -62_135_596_800.0
LATEST_TIME = 253_402_300_799.0


def time_renderings(t: float) -> tuple[str, ...]:
    """The texts a time is written as: the record's number, ISO 8601 (SensorThings, NGSI-LD),
    epoch milliseconds (line protocol)."""
    from gateway.model import iso

    out = [json.dumps(t)]
    with contextlib.suppress(OverflowError, ValueError, OSError):  # none can: quarantined
        out.append(iso(t))
    out.append(str(round(t * 1000)))
    return tuple(out)


# json.loads' own default decoder, its C scanner
_JSON_SCAN: Callable[[str, int], tuple[object, int]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]

_INF = float("inf")
_NO_PARAMETERS: Mapping[str, object] = {}
_SCALARS = (int, float, str)  # and bool, an int: what a result or a parameter value may be

MEMO_MAX = 4096  # distinct scanned texts remembered (a few hundred KiB at most)
# Outbox rows one sink has parsed and the others have not read yet (`EgressGuard.row_readers`):
# while every sink delivers, the rows of about one flush interval (the sinks read the same rows
# within one: hundreds at 1,000 readings/s); up to this many while one sink cannot deliver or
# lags at saturation, then all forgotten (a sink parses its rows itself meanwhile). 1.2 KiB each
# (tracemalloc): 0.6 MiB at most; 2,048 held 0.5-1.9 MiB more at peak with every sink flat out and
# were not faster there (bench/RESULTS-issue19.md, phase 11).
SHARED_ROWS_MAX = 512
_MISS = object()


def record_observation(doc: dict[str, Any]) -> Observation:
    """The Observation of a record's fields as `EgressGuard.record_fields` parsed them."""
    return Observation(doc["ds"], doc["s"], doc["p"], doc["t"], doc["rt"], doc.get("r"), doc.get("te"), doc.get("pa", {}))


class EgressGuard:
    """Counts and blocks. One instance per gateway, shared by the committer and every sink.

    Per Observation it checks, independently of the privacy stage and failing closed:
    - the constant parts (Datastream id, sensor id, property: from the config) and the sink's
      constant text (measurement and tags) — scanned once per distinct text, then remembered;
    - what can carry device data (the result, the parameters' values, the times) — each value
      in every rendering a sink writes it as (`renderings`, `time_renderings`), scanned once:
      a verdict on a text is remembered (`MEMO_MAX`), so the same value met again at a sink,
      or a word of a category's vocabulary, costs a lookup, not a scan;
    - the keys: an undeclared record field or parameter is blocked;
    - with `vocabularies` (the pipeline always gives them), a text result leaves only if it is a
      word of its Datastream's declared vocabulary: free text in a category is blocked per
      observation and counted per sensor.

    Sinks that write SensorThings JSON or line protocol build their bytes only from parts the
    guard cleared (`clear_record`), so those bytes are not scanned again. A format that composes
    text of its own (SenML names, NGSI-LD entity ids) and every payload handed to `check_text`
    or `check_observation_json` is scanned whole."""

    def __init__(
        self, allowed_datastreams: frozenset[int] | None = None, vocabularies: Vocabularies | None = None
    ) -> None:
        self.allowed = allowed_datastreams
        self.vocabularies = vocabularies
        self.blocked: Counter[str] = Counter()  # reason -> count
        self.blocked_by_sensor: Counter[tuple[str, str]] = Counter()  # (sensor, reason) -> count
        self.passed = 0
        # The counts above are written by the loop and by the sinks' worker threads (the file
        # sink clears its rows in one): a `+=` on them is not atomic across threads (CI once
        # lost 12 of 180 `blocked` increments in test_guard_shared_rows.py's threaded test; a
        # stress of that test lost some in 9 runs of 100, none with this lock), so each goes
        # under this.
        self._counting = threading.Lock()
        self._memo: dict[str, str | None] = {}
        # (Datastream, sensor, property), or the Datastream alone -> verdict on those texts
        self._constants: dict[object, str | None] = {}
        self.scans = 0  # texts actually scanned (not remembered): for benches and tests
        # How many sinks read each outbox row through the guard (the pipeline sets it): with
        # more than one, a row's parse and verdict (`record_fields`) and its SensorThings JSON
        # (`clear_record_json`) are made by the first sink that reads it and taken by the
        # others, keyed by the row's exact bytes: the same bytes, the same verdict.
        self.row_readers = 1
        self._shared: dict[bytes, list[Any]] = {}  # row -> [readers to come, (doc, problem), (obs, json) | None]
        self.shared_hits = 0  # rows taken from another sink's parse: for benches and tests

    # ------------------------------------------------------------------ scanning, once

    def scan(self, text: str) -> str | None:
        """`find_identifier(text)`, remembered per exact text. Counts nothing, so a worker
        thread may call it (a dict read or write is atomic under the GIL)."""
        kind = self._memo.get(text, _MISS)
        if kind is _MISS:
            kind = find_identifier(text)
            self.scans += 1
            if len(text) <= 200:  # constants and values; long payloads are not worth keeping
                if len(self._memo) >= MEMO_MAX:
                    self._memo.clear()
                self._memo[text] = kind
        return kind  # type: ignore[return-value]

    def _value_kind(self, value: object) -> str | None:
        if (type(value) is float or type(value) is int) and -NUMBER_BOUND < value < NUMBER_BOUND:
            return None  # is_short_number, inline: no rendering of it can look like an identifier
        for text in renderings(value):
            if (kind := self.scan(text)) is not None:
                return kind
        return None

    def _time_kind(self, t: object) -> str | None:
        if type(t) is float and TIME_LOW <= t < TIME_HIGH:
            return None  # the common case first: see TIME_LOW
        if isinstance(t, bool) or not isinstance(t, int | float):
            return "undeclared_field"  # not a time: nothing a sink could write
        if TIME_LOW <= t < TIME_HIGH:
            return None
        if not EARLIEST_TIME <= t <= LATEST_TIME:  # NaN, an infinity, past the year 9999 (a
            return "undeclared_field"  # damaged row): no sink can write it as a time
        for text in time_renderings(float(t) if isinstance(t, int) else t):
            if (kind := self.scan(text)) is not None:
                return kind
        return None

    # ------------------------------------------------------------------ one Observation

    def observation_problem(self, obs: Observation, names: bool = True) -> tuple[str, str | None] | None:
        """Why `obs` may not leave, as (reason, sensor to count it against or None), or None.
        Counts nothing (a worker thread may call it); `count` does, on the loop.

        `names`: also the sensor id and property, which the outbox record carries (checked at
        commit). A sink checks the constant text its own format writes instead: SensorThings
        JSON names only the Datastream id; the line protocol prefix is scanned by its sink."""
        return self.parts_problem(obs.datastream_id, obs.sensor_id, obs.property, obs.phenomenon_time,
                                  obs.result_time, obs.result, obs.phenomenon_end, obs.parameters, names)  # fmt: skip

    def parts_problem(self, ds: object, sensor_id: object, prop: object, t: object, rt: object, result: object,
                      end: object, params: Mapping[str, object], names: bool) -> tuple[str, str | None] | None:  # fmt: skip
        """`observation_problem` of an Observation's fields, given one by one."""
        if self.allowed is not None and ds not in self.allowed:
            return "unknown_datastream", None
        if params and not params.keys() <= PARAMETER_KEYS:
            return "undeclared_parameter", None
        if isinstance(result, str) and (sensor := self.off_vocabulary(ds, result)) is not None:
            return NOT_IN_VOCABULARY, sensor  # (off_vocabulary passes anything but text)
        # constants (from the config): once per distinct Datastream and names
        key = (ds, sensor_id, prop) if names else ds
        kind = self._constants.get(key, _MISS)
        if kind is _MISS:
            kind = self._constants_kind(ds, sensor_id, prop, names)
            if len(self._constants) >= MEMO_MAX:
                self._constants.clear()
            self._constants[key] = kind
        if kind is not None:
            return kind, None  # type: ignore[return-value]
        # what can carry device data (the usual number and times decided inline: the fast
        # paths of _value_kind and _time_kind, without their calls)
        if (type(result) is float or type(result) is int) and -NUMBER_BOUND < result < NUMBER_BOUND:
            kind = None
        else:
            kind = self._value_kind(result)
        if kind is None and not (type(t) is float and TIME_LOW <= t < TIME_HIGH):
            kind = self._time_kind(t)
        if kind is None and not (type(rt) is float and TIME_LOW <= rt < TIME_HIGH):
            kind = self._time_kind(rt)
        if kind is None and end is not None:
            kind = self._time_kind(end)
        if kind is None and params:
            kind = next((k for v in params.values() if (k := self._value_kind(v)) is not None), None)
        return None if kind is None else (kind, None)

    def _constants_kind(self, ds: object, sensor_id: object, prop: object, names: bool) -> str | None:
        names_of = (renderings(sensor_id)[0], renderings(prop)[0]) if names else ()
        for text in (str(ds), *names_of):
            if (kind := self.scan(text)) is not None:
                return kind
        return None

    def count(self, problem: tuple[str, str | None] | None) -> Verdict:
        """Count a verdict from `observation_problem` / `record_problem` (on the loop thread)."""
        if problem is None:
            with self._counting:
                self.passed += 1
            return PASS
        return self._block(*problem)

    def _usual(self, ds: object, r: object, t: object, rt: object, key: object) -> bool:
        """True for the usual observation, which `parts_problem` passes: a number in range at a
        time in range, of an allowed Datastream whose constants (under `key`) were cleared
        before. The caller has seen it carries no period end, no parameters and no text, so
        the general steps would find nothing; anything else takes them in full (the one
        statement of this shortcut: tests/unit/test_guard_usual_record.py holds it to them)."""
        return (type(r) is float and -NUMBER_BOUND < r < NUMBER_BOUND and type(t) is float and TIME_LOW <= t < TIME_HIGH
                and type(rt) is float and TIME_LOW <= rt < TIME_HIGH and (self.allowed is None or ds in self.allowed)
                and self._constants.get(key, _MISS) is None)  # fmt: skip

    def check_observation(self, obs: Observation) -> Verdict:
        """One Observation before it is committed: everything it carries (counting)."""
        r, t, rt, ds = obs.result, obs.phenomenon_time, obs.result_time, obs.datastream_id
        if obs.phenomenon_end is None and not obs.parameters \
                and self._usual(ds, r, t, rt, (ds, obs.sensor_id, obs.property)):  # fmt: skip
            with self._counting:
                self.passed += 1
            return PASS
        return self.count(self.parts_problem(ds, obs.sensor_id, obs.property, t, rt, r, obs.phenomenon_end,
                                             obs.parameters, True))  # fmt: skip

    def record_problem(self, record: bytes, names: bool = False) -> tuple[Observation | None, tuple[str, str | None] | None]:
        """An outbox record parsed, and why it may not leave (None: it may), for a sink (without
        `names`: see `observation_problem`). A record that is not a JSON object of the declared
        fields and types is blocked whole: fail closed."""
        doc, problem = self.record_fields(record, names)
        if doc is None:
            return None, problem
        return record_observation(doc), problem

    def record_fields(self, record: bytes, names: bool = False) -> tuple[dict[str, Any] | None, tuple[str, str | None] | None]:
        """`record_problem` with the record's fields as parsed (a dict of the declared keys and
        types, `record_observation` makes it the Observation), for a sink that builds its bytes
        from them without an Observation per row. With several sinks (`row_readers`) the dict
        may be the one another sink was given for the same row: read it, never change it."""
        if names or self.row_readers <= 1 or type(record) is not bytes:
            return self._record_fields(record, names)
        return self._shared_row(record)[1]  # type: ignore[no-any-return]

    def _shared_row(self, record: bytes) -> list[Any]:
        """The entry of `record` among the rows the sinks share (see `row_readers`): made by the
        first reader, handed to the others, forgotten when the last has read it (or, if one
        sink does not read for a while, when SHARED_ROWS_MAX rows wait). A dict read, write or
        pop is atomic under the GIL, so sinks on other threads may call it; a race costs at
        most a second parse of the row, or (a lost decrement of the count) an entry kept until
        the bound clears it: never a different verdict."""
        shared = self._shared
        entry = shared.get(record)
        if entry is None:
            entry = [self.row_readers - 1, self._record_fields(record, False), None]
            if len(shared) >= SHARED_ROWS_MAX:
                shared.clear()
            shared[record] = entry
        else:
            self.shared_hits += 1
            entry[0] -= 1
            if entry[0] <= 0:
                shared.pop(record, None)
        return entry

    def _record_fields(self, record: bytes, names: bool) -> tuple[dict[str, Any] | None, tuple[str, str | None] | None]:
        try:
            # json.loads(record) without its per-call set-up: one JSON value spanning the whole
            # record (no whitespace around it, as to_record writes it; strict UTF-8, no BOM)
            text = record.decode() if type(record) is bytes else record
            doc, end = _JSON_SCAN(text, 0)  # type: ignore[arg-type]
            if end != len(text):
                raise ValueError("trailing data")
        except (ValueError, StopIteration, TypeError, RecursionError):  # StopIteration: no value
            return None, ("not_json", None)
        if type(doc) is dict and doc.keys() == USUAL_RECORD_KEYS:
            # the usual record (a number of its Datastream, now): decided here, the same verdict
            # the checks below and `parts_problem` give it; anything else takes them in full
            ds, s, p = doc["ds"], doc["s"], doc["p"]
            if type(ds) is int and type(s) is str and type(p) is str \
                    and self._usual(ds, doc["r"], doc["t"], doc["rt"], (ds, s, p) if names else ds):  # fmt: skip
                return doc, None
        if type(doc) is not dict or not doc.keys() <= RECORD_KEYS:
            return None, ("undeclared_field", None)
        pa = doc.get("pa", _NO_PARAMETERS)
        r = doc.get("r")
        try:
            if not (isinstance(doc["ds"], int) and isinstance(doc["s"], str) and isinstance(doc["p"], str)
                    and isinstance(pa, dict) and (type(r) is float or r is None or isinstance(r, _SCALARS))):  # fmt: skip
                raise TypeError
            if type(r) is float and not -_INF < r < _INF:  # what Observation refuses (NaN too)
                raise ValueError
            t, rt = doc["t"], doc["rt"]
        except (KeyError, TypeError, ValueError):
            return None, ("undeclared_field", None)
        if pa and not all(isinstance(v, _SCALARS) for v in pa.values()):  # a dict: above
            return None, ("undeclared_parameter", None)
        return doc, self.parts_problem(doc["ds"], doc["s"], doc["p"], t, rt, r, doc.get("te"), pa, names)

    def clear_record(self, record: bytes, outbox_row: bool = True) -> Observation | None:
        """The record's Observation if it may leave (counting), else None. What a sink builds
        from it is built from cleared parts only: it needs no scan of its own. A record that
        is not a row every sink reads from the outbox (`outbox_row=False`: one a sink kept for
        itself) is parsed on its own, not shared (`row_readers`)."""
        doc, problem = (self.record_fields if outbox_row else self._record_fields)(record, False)
        self.count(problem)
        return record_observation(doc) if problem is None and doc is not None else None

    def clear_record_json(self, record: bytes) -> tuple[Observation, bytes] | None:
        """`clear_record` with the Observation's SensorThings JSON (`sensorthings_json`, built
        from the cleared parts only), the bytes the file and MQTT sinks write (counting). With
        several sinks the pair is built once per row (`row_readers`)."""
        if self.row_readers <= 1 or type(record) is not bytes:
            obs = self.clear_record(record)
            return None if obs is None else (obs, obs.sensorthings_json())
        entry = self._shared_row(record)
        doc, problem = entry[1]
        self.count(problem)
        if problem is not None:
            return None
        made: tuple[Observation, bytes] | None = entry[2]
        if made is None:
            obs = record_observation(doc)
            entry[2] = made = (obs, obs.sensorthings_json())
        return made

    def check_record(self, record: bytes) -> Verdict:
        """An outbox record: every field it carries, names included (counting)."""
        return self.count(self.record_problem(record, names=True)[1])

    # ------------------------------------------------------------------ whole payloads

    def count_passed(self, n: int) -> None:
        """`n` verdicts to pass, decided elsewhere from this guard's (a sink that cleared a batch)."""
        with self._counting:
            self.passed += n

    def count_blocked(self, reason: str) -> Verdict:
        """A refusal a sink decided by the guard's rules (e.g. a Datastream not in the plan)."""
        return self._block(reason)

    def _block(self, reason: str, sensor: str | None = None) -> Verdict:
        with self._counting:
            self.blocked[reason] += 1
            if sensor is not None:
                self.blocked_by_sensor[(sensor, reason)] += 1
        return Verdict(False, reason)

    def off_vocabulary(self, datastream: object, result: object) -> str | None:
        """The sensor whose Datastream `result` is text outside the declared vocabulary of (or
        "unknown" for a Datastream the plan does not know); None if it may leave. Counts
        nothing, so a worker thread may call it; `block_off_vocabulary` counts on the loop."""
        if self.vocabularies is None or not isinstance(result, str):
            return None
        entry = self.vocabularies.get(datastream) if isinstance(datastream, int) else None
        if entry is None:
            return "unknown"
        sensor, words = entry
        return None if result in words else sensor

    def block_off_vocabulary(self, sensor: str) -> Verdict:
        return self._block(NOT_IN_VOCABULARY, sensor)

    def check_text(self, text: str) -> Verdict:
        """A whole payload (a format that composes text of its own, entity metadata): scanned."""
        kind = self.scan(text)
        if kind is not None:
            return self._block(kind)
        with self._counting:
            self.passed += 1
        return PASS

    def check_observation_json(self, payload: bytes) -> Verdict:
        """A SensorThings Observation as serialised for a sink: shape and content, scanned whole
        (for sinks that do not build their bytes from a cleared record)."""
        try:
            doc = json.loads(payload)
        except (ValueError, UnicodeDecodeError):
            return self._block("not_json")
        if not isinstance(doc, dict) or not set(doc) <= OBSERVATION_KEYS:
            return self._block("undeclared_field")
        params = doc.get("parameters", {})
        if not isinstance(params, dict) or not set(params) <= PARAMETER_KEYS:
            return self._block("undeclared_parameter")
        ds = doc.get("Datastream")
        if not isinstance(ds, dict) or set(ds) != {"@iot.id"}:
            return self._block("undeclared_field")
        if self.allowed is not None and ds.get("@iot.id") not in self.allowed:
            return self._block("unknown_datastream")
        sensor = self.off_vocabulary(ds.get("@iot.id"), doc.get("result"))
        if sensor is not None:
            return self.block_off_vocabulary(sensor)
        return self.check_text(payload.decode("utf-8", "replace"))
