"""SensorThings API 1.1 server sink: entities and Observations over HTTP (OGC 18-088).

A SensorThings server (FROST-Server, …) assigns its own `@iot.id`s, so the gateway's stable
ids cannot be links there. The sink therefore:

- creates Location, Thing, Sensors, ObservedProperties and Datastreams in link order, each
  carrying the gateway's stable id as `properties.streetGatewayKey` — the id the same entity has
  on the MQTT feed and in the catalogue — and keeps the server's ids in a map in the data dir;
  a lost map is rebuilt by finding each key on the server (standard collection reads only);
- posts Observations with the dataArray extension (`CreateObservations`) when the service
  root's `serverSettings.conformance` lists it, one by one otherwise;
- gives every Observation a key derived from its content (`parameters.streetGatewayKey`). After
  a start or any failure, before posting a batch it asks the server which keys of that batch it
  already holds (a `resultTime` range per Datastream) and posts only the others, so a crash or a
  `kill -9` between the server's commit and the cursor's advance never leaves two copies.

Errors: an unreachable server, 5xx, 408/425/429, 401/403 and 404 keep the rows
(RetryableError; 401/403, and 404 at the service root, as BlockedError: the sink shows
blocked); a 4xx about one Observation, once the map is known to be current, quarantines
that Observation only. Payloads pass the egress guard in the gateway's own id space (as the MQTT
sink publishes them); the server's own ids are swapped in afterwards.

HTTP is the standard library's `http.client` on worker threads: no new dependency, and nothing
measurable on top of what the gateway already loads (see docs/sinks/sensorthings.md).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import os
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote, urlsplit

from pydantic import Field, SecretStr, model_validator

from gateway.configtypes import Duration, is_loopback_host
from gateway.model import Observation, compact_json, iso
from gateway.outbox import Row
from gateway.privacy.guard import EgressGuard
from gateway.sinks.base import (
    BlockedError,
    Destination,
    Loc,
    Offer,
    RetryableError,
    SinkContext,
    SinkError,
    SinkSettings,
    SinkSpec,
    WriteResult,
)
from gateway.sinks.jsonlines import trim_torn_line
from gateway.sinks.keepalive import KeepAlive, Response, Unreachable

if TYPE_CHECKING:
    from gateway.plan import SitePlan

log = logging.getLogger("gateway.sinks.sensorthings")

Json = dict[str, Any]
KEY = "streetGatewayKey"
ORDER = ("Locations", "Things", "Sensors", "ObservedProperties", "Datastreams")
LINKS = {"Locations": "Locations", "Thing": "Things", "Sensor": "Sensors",
         "ObservedProperty": "ObservedProperties"}  # fmt: skip
# OGC 18-088 names the requirement `…/req/data-array/data-array`; some servers list only the
# requirements class `…/req/data-array` (see docs/sinks/sensorthings.md): both mean dataArray.
DATA_ARRAY = ("http://www.opengis.net/spec/iot_sensing/1.1/req/data-array/data-array",
              "http://www.opengis.net/spec/iot_sensing/1.1/req/data-array")  # fmt: skip
COMPONENTS = ["phenomenonTime", "resultTime", "result", "parameters"]
RETRY_STATUS = frozenset({401, 403, 404, 408, 425, 429})
MAX_PAGES = 10_000
PARK_AFTER = 3  # 5xx answers for one Observation, while the server takes writes, before it is parked


class SensorThingsSettings(SinkSettings):
    """`sinks.<name>` with `type: sensorthings`: a SensorThings API 1.1 server over HTTP."""

    type: Literal["sensorthings"] = "sensorthings"
    url: str = Field(
        pattern=r"^https?://[^/\s]+(/\S*)?$",
        description="Service root with its version, e.g. https://sta.example.london/FROST-Server/v1.1",
    )
    username: str | None = Field(None, description="HTTP Basic user (with password or password_file).")
    password: SecretStr | None = None
    token: SecretStr | None = Field(None, description="Bearer token (or token_file).")
    data_array: Literal["auto", "always", "never"] = Field(
        "auto", description="auto: dataArray when the server's conformance list has it.")  # fmt: skip
    batch_size: int = Field(500, ge=1, le=10000)
    concurrency: int = Field(4, ge=1, le=32, description="Parallel POSTs when one by one.")
    timeout: Duration = Field(30, gt=0)
    park_retry: Duration = Field(
        3600, gt=0, description="How often Observations the server cannot take (see docs) are tried again.")
    park_max: int = Field(100_000, ge=0, le=10_000_000, description="Parked Observations kept at most.")
    verify_tls: bool = True
    ca_file: Path | None = None

    @model_validator(mode="before")
    @classmethod
    def _secret_files(cls, data: Any) -> Any:
        """`password_file`/`token_file` hold the secret (the config loader does the same for
        every section; this keeps the model usable on its own)."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for key, target in (("password_file", "password"), ("token_file", "token")):
            if key in data:
                if target in data:
                    raise ValueError(f"give either {target} or {key}, not both")
                try:
                    data[target] = Path(data.pop(key)).read_text().strip()
                except OSError as e:
                    raise ValueError(f"{key}: cannot read secret file: {e.strerror}") from None
        return data

    @model_validator(mode="after")
    def _auth(self) -> SensorThingsSettings:
        if self.token is not None and (self.username is not None or self.password is not None):
            raise ValueError("give either token (Bearer) or username and password (Basic), not both")
        if (self.username is None) != (self.password is None):
            raise ValueError("username and password go together")
        return self


# ------------------------------------------------------------------------------ HTTP


class Http:
    """The server's origin and root, the credentials, and a keep-alive pool (`KeepAlive`, shared
    with the InfluxDB sink); each call runs on a worker thread. Requests are not sent twice here:
    creating entities is not idempotent, the sink checks keys before posting again."""

    def __init__(self, s: SensorThingsSettings) -> None:
        headers = {"Accept": "application/json", "Content-Type": "application/json",
                   "User-Agent": "street-gateway"}  # fmt: skip
        if s.token is not None:
            headers["Authorization"] = f"Bearer {s.token.get_secret_value()}"
        elif s.username is not None and s.password is not None:
            pair = f"{s.username}:{s.password.get_secret_value()}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
        self.pool = KeepAlive(s.url, timeout=s.timeout, headers=headers, ca_file=s.ca_file,
                              verify_tls=s.verify_tls)  # fmt: skip
        self.pool.load_tls()
        self.origin = self.pool.origin
        self.root = self.pool.root

    def target(self, url_or_path: str) -> str:
        """A request target on our own origin: absolute links the server gives (nextLink,
        Location) are re-based here, so credentials never go to another host; characters a
        URL cannot carry (some servers put raw spaces in nextLinks) are percent-encoded."""
        if url_or_path.startswith(("http://", "https://")):
            u = urlsplit(url_or_path)
            target = u.path + (f"?{u.query}" if u.query else "")
        else:
            target = self.root + url_or_path
        return quote(target, safe="/?&=$'(),:;@+!*~%")

    def request(self, method: str, url_or_path: str, body: object = None) -> Response:
        data = None if body is None else compact_json(body)
        return self.pool.request(method, self.target(url_or_path), data)

    def close(self) -> None:
        self.pool.close()


def id_segment(server_id: object) -> str:
    """`(42)` or `('abc')`: OData key syntax for the server's id, whatever its JSON type."""
    if isinstance(server_id, int) and not isinstance(server_id, bool):
        return f"({server_id})"
    return "('" + quote(str(server_id).replace("'", "''"), safe="-_.~") + "')"


_LOCATION_ID = re.compile(r"\((?:'((?:[^']|'')*)'|([^()']*))\)\s*$")


def created_id(resp: Response) -> object:
    """The new entity's id: the body's `@iot.id` when the server returns the entity, else the
    key in the `Location` header 18-088 requires."""
    try:
        doc = resp.json()
    except ValueError:
        doc = None
    if isinstance(doc, dict) and "@iot.id" in doc:
        return doc["@iot.id"]
    m = _LOCATION_ID.search(resp.location or "")
    if m is None:
        raise ValueError("the server answered 201 without an id (no body and no Location header)")
    if m.group(1) is not None:
        return m.group(1).replace("''", "'")
    raw = m.group(2)
    return int(raw) if raw.isdigit() else raw


def observation_key(payload: bytes) -> int:
    """A 16-digit key from the Observation as the gateway publishes it: the same row gives the
    same key after any restart, and digits only keep it clear of the egress guard's patterns."""
    digest = hashlib.sha256(payload).digest()
    return 10**15 + int.from_bytes(digest[:8], "big") % (9 * 10**15 - 10**15)


# ------------------------------------------------------------------------------ entities


@dataclass(frozen=True, slots=True)
class Entity:
    collection: str
    key: int  # the gateway's stable id
    body: Json  # without @iot.id and links; properties carry the key
    links: tuple[tuple[str, str, int, bool], ...]  # (field, collection, key, as a list)
    guarded: Json  # what the egress guard checks: the body with the gateway's own links

    @property
    def ref(self) -> str:
        return f"{self.collection}/{self.key}"

    @property
    def fingerprint(self) -> str:
        canon = json.dumps(self.body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(canon.encode()).hexdigest()


def plan_entities(published: Mapping[str, Iterable[Json]]) -> list[Entity]:
    """The entities of `gateway.standards.sensorthings.entities()`, in link order, ready for a
    server that assigns its own ids."""
    out: list[Entity] = []
    for collection in ORDER:
        for src in published.get(collection, ()):
            key = int(src["@iot.id"])
            body: Json = {}
            links: list[tuple[str, str, int, bool]] = []
            for k, v in src.items():
                if k == "@iot.id":
                    continue
                if k in LINKS:
                    if isinstance(v, list):
                        links += [(k, LINKS[k], int(x["@iot.id"]), True) for x in v]
                    else:
                        links.append((k, LINKS[k], int(v["@iot.id"]), False))
                    continue
                body[k] = v
            body["properties"] = {**dict(body.get("properties") or {}), KEY: key}
            guarded = {**src, "properties": body["properties"]}
            out.append(Entity(collection, key, body, tuple(links), guarded))
    return out


class IdMap:
    """Server ids by entity ref, kept in the data dir so a restart needs no lookups.

    Written atomically (temp file, fsync, rename): a crash leaves the old map or the new one.
    """

    def __init__(self, path: Path, url: str) -> None:
        self.path = path
        self.url = url
        self.ids: dict[str, object] = {}
        self.fps: dict[str, str] = {}

    def load(self) -> None:
        try:
            doc = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return
        if isinstance(doc, dict) and doc.get("url") == self.url:
            self.ids = dict(doc.get("ids", {}))
            self.fps = dict(doc.get("fingerprints", {}))

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "w") as fh:
            json.dump({"url": self.url, "ids": self.ids, "fingerprints": self.fps}, fh, sort_keys=True)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)

    def forget(self, ref: str) -> None:
        self.ids.pop(ref, None)
        self.fps.pop(ref, None)


# ------------------------------------------------------------------------------ the sink


@dataclass
class Prepared:
    seq: int
    obs: Observation
    body: Json  # the Observation as published, plus its key; Datastream still the gateway's
    key: int
    record: str  # the outbox row's body, kept if the Observation is parked


@dataclass
class Outcome:
    written: int = 0
    rejected: list[int] = field(default_factory=list)
    parked: int = 0


class Parked:
    """Observations a server keeps answering 5xx for while it takes other writes: it cannot hold
    them (the test server cannot store an interval phenomenonTime, for one). They wait here, in
    the data dir, and are tried again every `park_retry`, so they never hold up the rows behind
    them; nothing is changed to suit the server.

    Appended (and fsynced) when rows are parked; rewritten atomically when rows leave. Bounded:
    past `limit` the oldest are dropped, counted and logged.
    """

    def __init__(self, path: Path, limit: int) -> None:
        self.path = path
        self.limit = limit
        self.items: dict[int, Json] = {}  # key -> {"record", "since", "attempts", "reason"}
        self.dropped = 0

    def load(self) -> None:
        try:
            # a power cut while rows were appended leaves part of a line: those rows were not
            # acknowledged and are parked again; the part goes, or the next append glues onto it
            trim_torn_line(self.path)
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except OSError:
            return
        unreadable = 0
        for line in lines:
            try:
                item = json.loads(line)
                self.items[int(item["key"])] = {k: v for k, v in item.items() if k != "key"}
            except (ValueError, KeyError, TypeError):
                unreadable += 1
        if unreadable:
            log.error("parked observations could not be read and were left out",
                      extra={"file": self.path.name, "lines": unreadable})  # fmt: skip

    def add(self, entries: Sequence[tuple[int, str, str]], now: float) -> None:
        """(key, outbox record, the server's reason) for each row to park."""
        lines = []
        for key, record, reason in entries:
            item: Json = {"record": record, "since": now, "attempts": PARK_AFTER, "reason": reason}
            self.items[key] = item
            lines.append(compact_json({"key": key, **item}).decode() + "\n")
        over = len(self.items) - self.limit
        if over > 0:
            for key in list(self.items)[:over]:
                del self.items[key]
            self.dropped += over
            log.error("too many parked observations; the oldest were dropped",
                      extra={"dropped": over, "park_max": self.limit})  # fmt: skip
            self.save()
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.writelines(lines)
            fh.flush()
            os.fsync(fh.fileno())

    def save(self) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "w", encoding="utf-8") as fh:
            for key, item in self.items.items():
                fh.write(compact_json({"key": key, **item}).decode() + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)


def build(ctx: SinkContext, name: str, settings: SensorThingsSettings) -> SensorThingsSink:
    """The registry's factory: entities from the same plan the MQTT sink publishes."""
    from gateway.standards.sensorthings import entities

    return SensorThingsSink(name, settings, entities=entities(ctx.plan), data_dir=ctx.data_dir,
                            guard=ctx.guard)  # fmt: skip


class SensorThingsSink:
    def __init__(
        self,
        name: str,
        settings: SensorThingsSettings,
        *,
        entities: Mapping[str, Iterable[Json]],
        data_dir: Path,
        guard: EgressGuard,
    ) -> None:
        self.name = name
        self.settings = settings
        self.batch_size = settings.batch_size
        self.guard = guard
        self.entities = plan_entities(entities)
        self.by_ref = {e.ref: e for e in self.entities}
        self.http = Http(settings)
        self.map = IdMap(data_dir / f"sensorthings-{name}.json", settings.url.rstrip("/"))
        self.map.load()
        self.refused: dict[str, str] = {}  # entity ref -> why the server (or the guard) refused it
        self._logged_refusals: set[str] = set()
        self._suspect = True  # unknown past (start) or a failure: check map and keys first
        self._data_array: bool | None = None
        self._sem = asyncio.Semaphore(settings.concurrency)
        self._listings: dict[str, list[Json]] = {}  # collection reads, per sync
        self.already_there = 0  # rows found on the server when checking (not posted again)
        self.posted = 0
        self.parked = Parked(data_dir / f"sensorthings-{name}-parked.jsonl", settings.park_max)
        self.parked.load()
        self._strikes: dict[int, int] = {}  # Observation key -> 5xx answers in a row
        self._next_parked_try = 0.0  # monotonic; the first write after a start tries them

    # -------------------------------------------------------------- plumbing

    async def _call(self, method: str, path: str, body: object = None) -> Response:
        try:
            return await asyncio.to_thread(self.http.request, method, path, body)
        except Unreachable as e:
            self._suspect = True
            raise RetryableError(f"SensorThings server unreachable: {e}") from e

    def _retry(self, what: str, resp: Response, *, root: bool = False) -> SinkError:
        """Keep the rows. A refusal of the gateway itself (401, 403; 404 for the service root,
        i.e. a wrong URL) is BlockedError: the runner shows the sink blocked until it writes."""
        self._suspect = True
        if resp.status in (401, 403) or (root and resp.status == 404):
            code = {401: "unauthorised", 403: "forbidden", 404: "not_found"}[resp.status]
            return BlockedError(code, f"{what}: HTTP {resp.status}: {resp.detail()[:200]}")
        return RetryableError(f"{what}: HTTP {resp.status}: {resp.detail()[:200]}")

    async def _pages(self, path: str) -> list[Json]:
        """Every entity of a collection read, following `@iot.nextLink`."""
        out: list[Json] = []
        url: str | None = path
        for _ in range(MAX_PAGES):
            if url is None:
                break
            resp = await self._call("GET", url)
            if resp.status != 200:
                raise self._retry(f"reading {path}", resp)
            doc = resp.json()
            if not isinstance(doc, dict):
                raise RetryableError(f"reading {path}: not a SensorThings collection")
            out += [v for v in doc.get("value", []) if isinstance(v, dict)]
            nxt = doc.get("@iot.nextLink")
            url = nxt if isinstance(nxt, str) else None
        return out

    # -------------------------------------------------------------- start / close

    async def start(self) -> None:
        """Learn what the server offers and bring the entities up to date. An unreachable
        server raises RetryableError; the runner retries, and the rows wait in the outbox."""
        try:
            await self._capabilities()
            await self._sync()
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise RetryableError(f"unexpected answer from the SensorThings server: {type(e).__name__}: {e}") from e
        self._suspect = True  # still check the first batch's keys: the last run may have died

    async def close(self) -> None:
        await asyncio.to_thread(self.http.close)

    async def _capabilities(self) -> None:
        if self.settings.data_array != "auto":
            self._data_array = self.settings.data_array == "always"
            return
        resp = await self._call("GET", "/")
        if resp.status != 200:
            raise self._retry("reading the service root", resp, root=True)
        doc = resp.json()
        settings = doc.get("serverSettings") if isinstance(doc, dict) else None
        conformance = settings.get("conformance", []) if isinstance(settings, dict) else []
        self._data_array = any(c in DATA_ARRAY for c in conformance)
        log.info("SensorThings server", extra={"sink": self.name, "data_array": self._data_array})

    # -------------------------------------------------------------- entities

    async def _sync(self) -> None:
        """Check the map against the server, find what it lacks by key, create what is missing
        in link order, and PATCH what changed in the config."""
        await self._validate_map()
        self.refused.clear()
        self._listings = {}
        for e in self.entities:
            await self._ensure(e)
        self.map.save()

    async def _validate_map(self) -> None:
        """A server that was reset or replaced no longer has our ids — or, with integer ids
        counted afresh, has them on other entities: keep only ids that still carry our key."""
        thing = next((e for e in self.entities if e.collection == "Things"), None)
        if thing is None or thing.ref not in self.map.ids:
            return
        tid = self.map.ids[thing.ref]
        resp = await self._call("GET", f"/Things{id_segment(tid)}")
        if resp.status == 200:
            doc = resp.json()
            props = doc.get("properties") if isinstance(doc, dict) else None
            ours = isinstance(props, dict) and props.get(KEY) == thing.key
        elif resp.status in (400, 404, 410, 422):
            ours = False
        else:
            raise self._retry("checking the Thing", resp)
        if not ours:
            log.warning("the Thing in the id map is gone from the server; finding entities again",
                        extra={"sink": self.name})  # fmt: skip
            self.map.ids.clear()
            self.map.fps.clear()
            return
        listed = await self._pages(f"/Things{id_segment(tid)}/Datastreams?$select=id,properties")
        present = {str(v.get("@iot.id")): (v.get("properties") or {}).get(KEY) for v in listed}
        for e in self.entities:
            ref = e.ref
            if e.collection == "Datastreams" and ref in self.map.ids and present.get(str(self.map.ids[ref])) != e.key:
                self.map.forget(ref)

    async def _find(self, e: Entity) -> Json | None:
        """The entity with our key on the server, if any: scoped under our Thing where 18-088
        gives a path, else a `properties/…` filter, else the whole collection — the filter is an
        optimisation only: an empty answer is checked by reading the collection (read once per
        sync and cached)."""
        thing = next(x for x in self.entities if x.collection == "Things")
        tid = self.map.ids.get(thing.ref)
        paths: list[tuple[str, bool]] = []  # (path, cacheable)
        if tid is not None and e.collection in ("Locations", "Datastreams"):
            paths.append((f"/Things{id_segment(tid)}/{e.collection}", True))
        if e.collection != "Datastreams" or tid is None:
            if f"/{e.collection}" not in self._listings:
                paths.append((f"/{e.collection}?$filter=properties/{KEY}%20eq%20{e.key}", False))
            paths.append((f"/{e.collection}", True))
        for path, cacheable in paths:
            if cacheable and path in self._listings:
                values = self._listings[path]
            else:
                values = await self._pages(path)
                if cacheable:
                    self._listings[path] = values
            for v in values:
                props = v.get("properties")
                if isinstance(props, dict) and props.get(KEY) == e.key and "@iot.id" in v:
                    return v
        return None

    def _linked(self, e: Entity) -> Json | None:
        """The body with server ids for links; None when a linked entity is not there."""
        body = dict(e.body)
        for fld, coll, key, as_list in e.links:
            sid = self.map.ids.get(f"{coll}/{key}")
            if sid is None:
                return None
            ref = {"@iot.id": sid}
            if as_list:
                body.setdefault(fld, []).append(ref)
            else:
                body[fld] = ref
        return body

    def _refuse(self, e: Entity, why: str) -> None:
        self.refused[e.ref] = why
        if e.ref not in self._logged_refusals:
            self._logged_refusals.add(e.ref)
            log.error("SensorThings entity refused; its observations are quarantined",
                      extra={"sink": self.name, "entity": e.ref, "reason": why})  # fmt: skip

    async def _ensure(self, e: Entity) -> None:
        if not self.guard.check_text(compact_json(e.guarded).decode()).ok:
            self._refuse(e, "blocked by the egress guard (check names and descriptions in the config)")
            return
        missing = [f"{c}/{k}" for _, c, k, _ in e.links if f"{c}/{k}" in self.refused]
        if missing:
            self._refuse(e, f"links to a refused entity ({', '.join(missing)})")
            return
        if e.ref in self.map.ids:
            if self.map.fps.get(e.ref) == e.fingerprint:
                return
            await self._patch(e, self.map.ids[e.ref], None)
            return
        found = await self._find(e)
        if found is not None:
            self.map.ids[e.ref] = found["@iot.id"]
            await self._patch(e, found["@iot.id"], found)
            return
        body = self._linked(e)
        if body is None:  # a linked entity could not be created: already refused above
            self._refuse(e, "a linked entity is missing")
            return
        resp = await self._call("POST", f"/{e.collection}", body)
        if resp.status in (200, 201):
            self.map.ids[e.ref] = created_id(resp)
            self.map.fps[e.ref] = e.fingerprint
            self.map.save()  # before anything links to it: a crash now is found by key later
            log.info("created SensorThings entity", extra={"sink": self.name, "entity": e.ref})
        elif 400 <= resp.status < 500 and resp.status not in RETRY_STATUS:
            self._refuse(e, f"HTTP {resp.status}: {resp.detail()[:200]}")
        else:
            raise self._retry(f"creating {e.ref}", resp)

    async def _patch(self, e: Entity, sid: object, current: Json | None) -> None:
        """Update the fields that differ (all of them when the server's copy is not at hand);
        links are a function of the keys, so they are not re-sent."""
        changed = {k: v for k, v in e.body.items() if current is None or current.get(k) != v}
        if changed:
            resp = await self._call("PATCH", f"/{e.collection}{id_segment(sid)}", changed)
            if resp.status in (404, 410):
                self.map.forget(e.ref)
                raise self._retry(f"updating {e.ref}: it is gone", resp)
            if 400 <= resp.status < 500 and resp.status not in RETRY_STATUS:
                log.warning("SensorThings server refused an update; keeping its copy",
                            extra={"sink": self.name, "entity": e.ref, "status": resp.status})  # fmt: skip
            elif resp.status not in (200, 204):
                raise self._retry(f"updating {e.ref}", resp)
            else:
                log.info("updated SensorThings entity", extra={"sink": self.name, "entity": e.ref})
        self.map.fps[e.ref] = e.fingerprint

    # -------------------------------------------------------------- observations

    def _prepare(self, rows: Sequence[Row]) -> tuple[list[Prepared], list[tuple[int, str]], int]:
        """Clear each row with the egress guard (`clear_record`, as the MQTT and file sinks do),
        then key the Observation built from it.
        Returns (to post, (seq, Datastream ref) refused with their Datastream, blocked count)."""
        ready: list[Prepared] = []
        refused: list[tuple[int, str]] = []
        blocked = 0
        for row in rows:
            obs = self.guard.clear_record(row.body)  # counts what it blocks, per reason
            if obs is None:
                blocked += 1
                continue
            doc: Json = obs.sensorthings()  # built from cleared parts only: no second scan
            payload = compact_json(doc)
            ref = f"Datastreams/{obs.datastream_id}"
            if ref not in self.by_ref:  # not in this config: the guard's unknown_datastream
                self.guard.count_blocked("unknown_datastream")
                blocked += 1
                continue
            if ref in self.refused or ref not in self.map.ids:
                refused.append((row.seq, ref))
                continue
            key = observation_key(payload)
            if key in self.parked.items:  # parked while this batch was retried: it waits there
                continue
            doc["parameters"] = {**dict(doc.get("parameters") or {}), KEY: key}
            record = row.body.decode() if isinstance(row.body, bytes) else str(row.body)
            ready.append(Prepared(row.seq, obs, doc, key, record))
        return ready, refused, blocked

    def _server_body(self, p: Prepared) -> Json:
        return {**p.body, "Datastream": {"@iot.id": self.map.ids[f"Datastreams/{p.obs.datastream_id}"]}}

    async def _present(self, batch: list[Prepared]) -> set[int]:
        """Keys of this batch the server already holds, read per Datastream over the batch's
        resultTime range (±1 s: servers may keep whole seconds only)."""
        by_ds: dict[int, list[Prepared]] = {}
        for p in batch:
            by_ds.setdefault(p.obs.datastream_id, []).append(p)
        found: set[int] = set()
        for ds, items in by_ds.items():
            sid = self.map.ids[f"Datastreams/{ds}"]
            lo = iso(min(p.obs.result_time for p in items) - 1.0)
            hi = iso(max(p.obs.result_time for p in items) + 1.0)
            flt = quote(f"resultTime ge {lo} and resultTime le {hi}", safe="")
            path = f"/Datastreams{id_segment(sid)}/Observations?$filter={flt}&$select=id,parameters"
            for v in await self._pages(path):
                params = v.get("parameters")
                if isinstance(params, dict) and isinstance(params.get(KEY), int):
                    found.add(params[KEY])
        return found

    async def write(self, rows: Sequence[Row]) -> WriteResult:
        try:
            return await self._write(rows)
        except (ValueError, KeyError, TypeError, AttributeError) as e:  # an answer we cannot read
            self._suspect = True
            raise RetryableError(f"unexpected answer from the SensorThings server: {type(e).__name__}: {e}") from e

    async def _write(self, rows: Sequence[Row]) -> WriteResult:
        if self._data_array is None or self._suspect:
            if self._data_array is None:
                await self._capabilities()
            await self._sync()
        ready, refused, blocked = self._prepare(rows)
        out = Outcome(rejected=[seq for seq, _ in refused])
        for _, ref in refused:
            self._refuse(self.by_ref[ref], self.refused.get(ref, "not on the server"))
        if ready and self._suspect:
            present = await self._present(ready)
            there = [p for p in ready if p.key in present]
            if there:
                self.already_there += len(there)
                out.written += len(there)
                log.info("observations already on the server were not posted again",
                         extra={"sink": self.name, "rows": len(there)})  # fmt: skip
                ready = [p for p in ready if p.key not in present]
        if ready:
            if self._data_array:
                await self._post_data_array(ready, out)
            else:
                await self._post_each(ready, out)
        self._suspect = False
        if self.parked.items and time.monotonic() >= self._next_parked_try:
            try:
                await self._try_parked()
            except (RetryableError, BlockedError, ValueError, KeyError, TypeError, AttributeError) as e:
                log.warning("parked observations not tried", extra={"sink": self.name, "reason": str(e)})
        return WriteResult(out.written, sorted(out.rejected), blocked)

    async def _post_data_array(self, batch: list[Prepared], out: Outcome) -> None:
        groups: dict[int, list[Prepared]] = {}
        for p in batch:
            groups.setdefault(p.obs.datastream_id, []).append(p)
        order = [p for items in groups.values() for p in items]
        body = [{"Datastream": {"@iot.id": self.map.ids[f"Datastreams/{ds}"]},
                 "components": COMPONENTS,
                 "dataArray": [[p.body.get(c) for c in COMPONENTS] for p in items]}
                for ds, items in groups.items()]  # fmt: skip
        resp = await self._call("POST", "/CreateObservations", body)
        if resp.status == 404 and self.settings.data_array == "auto":
            log.warning("the server has no CreateObservations; posting one by one", extra={"sink": self.name})
            self._data_array = False
            await self._post_each(batch, out)
            return
        if resp.status in RETRY_STATUS:
            raise self._retry("posting Observations (dataArray)", resp)
        if resp.status >= 500 and not await self._server_writes():
            raise self._retry("posting Observations (dataArray)", resp)
        if resp.status not in (200, 201):  # refused as a whole, or a 5xx: each row's own verdict
            await self._post_each(batch, out)
            return
        try:
            links = resp.json()
        except ValueError:
            links = None
        if not isinstance(links, list) or len(links) != len(order):
            raise self._retry("posting Observations (dataArray): the answer does not match the request", resp)
        failed = [p for p, link in zip(order, links, strict=True) if not isinstance(link, str) or link == "error"]
        out.written += len(order) - len(failed)
        self.posted += len(order) - len(failed)
        if failed:  # 18-088 answers "error" per row without a reason: the single POST gives it
            await self._post_each(failed, out)

    async def _post_each(self, batch: list[Prepared], out: Outcome) -> None:
        async def one(p: Prepared) -> Response:
            async with self._sem:
                return await self._call("POST", "/Observations", self._server_body(p))

        results = await asyncio.gather(*(one(p) for p in batch), return_exceptions=True)
        verdicts: list[tuple[Prepared, Response]] = []
        failing: list[tuple[Prepared, Response]] = []
        retry: BaseException | None = None
        for p, r in zip(batch, results, strict=True):
            if isinstance(r, BaseException):
                retry = retry or r
            elif r.status in (200, 201):
                out.written += 1
                self.posted += 1
                self._strikes.pop(p.key, None)
            elif r.status in RETRY_STATUS:
                retry = retry or self._retry("posting an Observation", r)
            elif r.status >= 500:
                failing.append((p, r))
            else:
                verdicts.append((p, r))
        if retry is not None:  # rows that did land are found by key on the retry
            raise retry if isinstance(retry, RetryableError) else RetryableError(str(retry))
        if failing:
            await self._server_errors(failing, out)
        if verdicts:
            # a verdict counts only if the Datastream is really there (not a reset server)
            await self._validate_map()
            stale = [p for p, _ in verdicts if f"Datastreams/{p.obs.datastream_id}" not in self.map.ids]
            if stale:
                self._suspect = True
                raise RetryableError("SensorThings server no longer has a Datastream of ours; re-creating")
            for p, r in verdicts:
                out.rejected.append(p.seq)
                self._strikes.pop(p.key, None)
                log.error("SensorThings server refused an observation; quarantined",
                          extra={"sink": self.name, "datastream": p.obs.datastream_id,
                                 "status": r.status, "reason": r.detail()[:200]})  # fmt: skip

    async def _server_errors(self, failing: list[tuple[Prepared, Response]], out: Outcome) -> None:
        """5xx means "try later", so the rows are kept — unless the same Observations keep
        failing while the server takes writes: then they are parked, and the rest moves on."""
        if len(self._strikes) > 100_000:
            self._strikes.clear()
        for p, _ in failing:
            self._strikes[p.key] = self._strikes.get(p.key, 0) + 1
        first = failing[0][1]
        if any(self._strikes[p.key] < PARK_AFTER for p, _ in failing) or not await self._server_writes():
            raise self._retry("posting an Observation", first)
        self.parked.add([(p.key, p.record, f"HTTP {r.status}: {r.detail()[:200]}") for p, r in failing], time.time())
        for p, _ in failing:
            self._strikes.pop(p.key, None)
        out.parked += len(failing)
        for ds in sorted({p.obs.datastream_id for p, _ in failing}):
            log.error("SensorThings server cannot take these observations although it takes others; "
                      "parked, tried again later", extra={"sink": self.name, "datastream": ds,
                      "rows": sum(1 for p, _ in failing if p.obs.datastream_id == ds),
                      "status": first.status, "reason": first.detail()[:200]})  # fmt: skip
        self._next_parked_try = time.monotonic() + self.settings.park_retry

    async def _server_writes(self) -> bool:
        """Does the server take writes at all? A PATCH of our Thing with the properties it has:
        a write that changes nothing. A server whose database is gone fails it; one that cannot
        hold particular Observations passes it."""
        thing = next((e for e in self.entities if e.collection == "Things"), None)
        if thing is None or thing.ref not in self.map.ids:
            return False
        try:
            resp = await self._call("PATCH", f"/Things{id_segment(self.map.ids[thing.ref])}",
                                    {"properties": thing.body["properties"]})  # fmt: skip
        except RetryableError:
            return False
        return resp.status in (200, 204)

    async def _try_parked(self) -> None:
        """Parked Observations, oldest first, a batch at a time: found on the server or taken now
        leave the store; a 4xx verdict quarantines them; a 5xx keeps them (at the back) for the
        next try. While a whole batch goes, the next batch follows at the next write."""
        self._next_parked_try = time.monotonic() + self.settings.park_retry
        batch: list[Prepared] = []
        gone: list[int] = []
        for key, item in list(self.parked.items.items())[: self.batch_size]:
            # parked rows leave later, maybe under another config: the egress guard clears them
            # again, as every row from the outbox (a refused one is gone, counted as blocked)
            cleared = self.guard.clear_record(str(item["record"]).encode(), outbox_row=False)
            if cleared is None:
                gone.append(key)
                continue
            obs = cleared
            ref = f"Datastreams/{obs.datastream_id}"
            if ref not in self.by_ref or ref in self.refused or ref not in self.map.ids:
                gone.append(key)  # no longer in the config, or its Datastream refused
                continue
            doc: Json = obs.sensorthings()
            doc["parameters"] = {**dict(doc.get("parameters") or {}), KEY: key}
            batch.append(Prepared(0, obs, doc, key, str(item["record"])))
        present = await self._present(batch) if batch else set()
        todo = [p for p in batch if p.key not in present]
        gone += [p.key for p in batch if p.key in present]
        results = await asyncio.gather(*(self._post_parked(p) for p in todo))
        taken = kept = 0
        for p, verdict in zip(todo, results, strict=True):
            if verdict == "kept":  # to the back of the queue: the next try starts with others
                item = self.parked.items.pop(p.key)
                self.parked.items[p.key] = {**item, "attempts": int(item["attempts"]) + 1}
                kept += 1
            else:
                gone.append(p.key)
                taken += verdict == "taken"
        for key in gone:
            self.parked.items.pop(key, None)
        self.parked.save()
        if not kept and self.parked.items:  # the server takes them again: the next batch at the next write
            self._next_parked_try = time.monotonic()
        log.info("parked observations tried again", extra={"sink": self.name, "taken": taken,
                 "left": len(self.parked.items)})  # fmt: skip

    async def _post_parked(self, p: Prepared) -> str:
        """taken, refused (quarantined: a 4xx verdict), or kept."""
        async with self._sem:
            try:
                r = await self._call("POST", "/Observations", self._server_body(p))
            except RetryableError:
                return "kept"
        if r.status in (200, 201):
            self.posted += 1
            return "taken"
        if 400 <= r.status < 500 and r.status not in RETRY_STATUS:
            log.error("SensorThings server refused a parked observation; quarantined",
                      extra={"sink": self.name, "datastream": p.obs.datastream_id,
                             "status": r.status, "reason": r.detail()[:200]})  # fmt: skip
            return "refused"
        return "kept"


def describe(name: str, settings: SensorThingsSettings, data_dir: Path) -> Destination:
    u = urlsplit(settings.url)
    secure = "HTTPS" if u.scheme == "https" else "plain HTTP (unencrypted)"
    auth = "Bearer token" if settings.token else "HTTP Basic" if settings.username else "no credentials"
    return Destination(
        name, "sensorthings", public_root(settings.url),
        f"SensorThings API 1.1 server, {secure}, {auth}: Location, Thing, Sensors, "
        "ObservedProperties and Datastreams (created once, found again by properties."
        f"{KEY}), Observations keyed in parameters.{KEY}",
        on_device=(f"{data_dir / f'sensorthings-{name}.json'}: the server's ids for our entities; "
                   f"{data_dir / f'sensorthings-{name}-parked.jsonl'}: Observations the server cannot "
                   f"take yet (at most {settings.park_max}, retried every {settings.park_retry:g} s)"),
    )  # fmt: skip


def public_root(url: str) -> str:
    """The service root without credentials or query, for reports and catalogues."""
    u = urlsplit(url)
    netloc = (u.hostname or "") + (f":{u.port}" if u.port else "")
    return f"{u.scheme}://{netloc}{u.path.rstrip('/')}"


def check(settings: SensorThingsSettings) -> list[tuple[Loc, str]]:
    u = urlsplit(settings.url)
    problems: list[tuple[Loc, str]] = []
    if u.username or u.password:
        problems.append((("url",), "must not carry credentials: give username and password_file, or token_file"))
    if u.query or u.fragment:
        problems.append((("url",), "must be the service root (…/v1.1) without a query or fragment"))
    secret = settings.password is not None or settings.token is not None
    if secret and u.scheme == "http" and not is_loopback_host(u.hostname or ""):
        problems.append((("url",), "credentials would cross the network in clear: use https"))
    if secret and not settings.verify_tls:
        problems.append((("verify_tls",), "credentials would go to whoever answers: keep verify_tls on (give ca_file for a private CA)"))
    return problems


def offers(name: str, settings: SensorThingsSettings, plan: SitePlan) -> list[Offer]:
    """Per sensor: its Datastreams on the server, found by the key they carry (the server
    assigns the ids, so a catalogue written from the config can only name the key)."""
    root = public_root(settings.url)
    out = []
    for sp in plan.sensors.values():
        if not sp.datastreams:
            continue
        urls = tuple(f"{root}/Datastreams?$filter=properties/{KEY}%20eq%20{ds.id}" for ds in sp.datastreams.values())
        keys = ", ".join(f"{p} {ds.id}" for p, ds in sp.datastreams.items())
        out.append(Offer(sp.id, "sensorthings", urls, f"{sp.id}: SensorThings API server ({name})",
                         f"SensorThings API 1.1 service {root}: one Datastream per property, "
                         f"found by properties.{KEY} ({keys}); Observations under "
                         "Datastreams(<id>)/Observations"))  # fmt: skip
    return out


SPEC: SinkSpec = SinkSpec("sensorthings", SensorThingsSettings, build, describe, check,
                          doc="docs/sinks/sensorthings.md", offers=offers)  # fmt: skip

