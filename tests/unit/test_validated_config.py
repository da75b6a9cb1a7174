"""`run` validates its config in a child process with pydantic and runs on
gateway/pydantic_stand_in.py (issue 19: pydantic is ~9 MiB of the service's memory). Held here to
pydantic itself: every model, field, private value, secret and `model_dump()` of a config with
every driver, codec, source and sink, and the plan the service builds from it, are the same
both ways; the stand-in's own behaviour against the real models'; the pipe refuses what it
should; and a real `run` process never maps pydantic-core."""

from __future__ import annotations

import collections
import dataclasses
import enum
import json
import os
import pickle
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, ClassVar
from unittest import mock

import pytest

ROOT = Path(__file__).resolve().parents[2]
TAG = "04A2B3C4D5E6F7"


def kitchen_sink(tmp: Path) -> tuple[Path, Path]:
    """A config with every registered driver (MQTT ones with their example options), every
    codec on a LoRaWAN port, every source's `inputs`, every sink type, secrets from the
    environment and from files, and private values (an OCPP local list): (config, env file)."""
    from firmware_bridge.codecs import CODECS
    from firmware_bridge.driver import MessageDriver
    from firmware_bridge.drivers import REGISTERED

    (tmp / "cb.pw").write_text("a-long-charger-password\n")
    (tmp / "tags").write_text(f"{TAG}\n")
    (tmp / "secrets.env").write_text("INFLUX_TOKEN=an-influx-token-value\nCITY_PW='a city password'\n")
    sensors: list[dict[str, Any]] = []
    for i, d in enumerate(REGISTERED):
        entry: dict[str, Any] = {"id": f"s{i}-{d.name.replace('_', '-')}", "driver": d.name}
        if d.transports == ("serial",):
            entry["serial"] = {"port": f"/dev/ttyUSB{i}"}
        else:
            entry["mqtt"] = {"topic": f"dev/{i}/#"}
            if isinstance(d, MessageDriver) and d.example_options:
                entry["options"] = json.loads(json.dumps(d.example_options))
        sensors.append(entry)
    lorawan = next(s for s in sensors if s["driver"] == "chirpstack")
    lorawan["options"] = {**lorawan.get("options", {}), "ports": {
        10 + n: {"codec": name, "options": dict(spec.example_options)} for n, (name, spec) in enumerate(CODECS.items())}}  # fmt: skip
    sensors += [
        {"id": "ev-cp-42", "driver": "ocpp16j", "privacy": {"publish": ["connector_status"], "window": "1d"},
         "ocpp": {"charge_box_id": "CB-0042", "upstream": "wss://csms.operator.example/ocpp",
                  "auth": {"password_file": str(tmp / "cb.pw")}}},
        {"id": "ev-borough-7", "driver": "ocpp201j",
         "ocpp": {"charge_box_id": "LBC-EV-007", "mode": "standalone", "authorize": "local_list",
                  "local_list_file": str(tmp / "tags")}},
    ]  # fmt: skip
    doc = {
        "gateway": {"id": "kitchen-sink", "borough": "camden", "location": {"lat": 51.539, "lon": -0.1426},
                    "data_dir": str(tmp / "data"), "name": "every plugin"},
        "sensors": sensors,
        "inputs": {"mqtt": {"host": "127.0.0.1", "port": 1883, "personal_port": 1884, "username": "gw",
                            "password": "a local password"},
                   "ocpp": {"port": 8180}},
        "privacy": {"window": "15m", "min_count": 10, "governance": {"controller": "LB Camden"}},
        "sinks": {
            "influxdb": {"url": "https://tsdb.example.london", "org": "london", "bucket": "street",
                         "token": "${INFLUX_TOKEN}"},
            "mqtt": {"host": "broker.example.london", "port": 8883, "tls": True, "username": "u",
                     "password": "${CITY_PW}"},
            "ngsi": {"type": "mqtt", "format": "ngsi-ld", "host": "broker.example.london", "port": 8883,
                     "tls": True, "username": "u", "password": "${CITY_PW}"},
            "file": {"path": "observations.jsonl", "max_bytes": "64MiB", "keep": 5},
            "sta": {"type": "sensorthings", "url": "https://sta.example/v1.1"},
        },
        "outbox": {"max_bytes": "1GiB", "max_age": "30d"},
        "ops": {"http": "127.0.0.1:9108"},
    }  # fmt: skip
    path = tmp / "kitchen-sink.yaml"
    path.write_text(json.dumps(doc, indent=1))  # JSON is YAML
    return path, tmp / "secrets.env"


def describe(value: Any) -> Any:
    """A JSON description of a config or plan, the same for the same content whichever
    `pydantic` this process has (the real one, or the stand-in once installed)."""
    import pydantic

    if isinstance(value, pydantic.BaseModel):
        cls = type(value)
        own = [c.__qualname__ for c in cls.__mro__
               if c.__module__.split(".")[0] in ("gateway", "firmware_bridge") and c is not pydantic.BaseModel]
        private = {k: describe(getattr(value, k, "<unset>")) for k in sorted(cls.__private_attributes__)}
        return {"model": cls.__name__, "classes": own,
                "fields": {f: describe(getattr(value, f)) for f in cls.model_fields},
                "private": private, "dump": describe(value.model_dump())}  # fmt: skip
    if isinstance(value, pydantic.SecretStr):
        return {"secret": value.get_secret_value(), "str": str(value), "repr": repr(value)}
    if isinstance(value, type):
        return {"class": f"{value.__module__}.{value.__qualname__}"}
    if dataclasses.is_dataclass(value):
        return {"dataclass": type(value).__qualname__,
                "fields": {f.name: describe(getattr(value, f.name)) for f in dataclasses.fields(value)}}  # fmt: skip
    if isinstance(value, dict):
        return {"dict": [[describe(k), describe(v)] for k, v in value.items()]}
    if isinstance(value, list | tuple):
        return {type(value).__name__: [describe(v) for v in value]}
    if isinstance(value, set | frozenset):
        return {type(value).__name__: sorted(json.dumps(describe(v), sort_keys=True) for v in value)}
    if isinstance(value, enum.Enum):
        return {"enum": f"{type(value).__qualname__}.{value.name}"}
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return {"type": f"{type(value).__module__}.{type(value).__qualname__}",
            "repr": re.sub(r" at 0x[0-9a-f]+", "", repr(value))}  # fmt: skip


def light_description(config: str, env_file: str) -> dict[str, Any]:
    """In a process with the stand-in installed: what `run` gets, described."""
    from gateway import validated_config
    from gateway.config import iter_secret_values
    from gateway.plan import build_plan

    cfg = validated_config.load(config, env_file)
    assert not isinstance(cfg, int)
    return {"config": describe(cfg), "plan": describe(build_plan(cfg)), "secrets": sorted(iter_secret_values(cfg)),
            "pydantic_core": "pydantic_core" in sys.modules}  # fmt: skip


def run_light(*lines: str, cwd: Path | None = None, safe_path: bool = True) -> subprocess.CompletedProcess[str]:
    """Python `lines` in a fresh process on the stand-in (`-P`: nothing from `cwd` imported)."""
    code = "\n".join(["import sys", f"sys.path.insert(0, {str(ROOT)!r})", "from gateway import pydantic_stand_in",
                      "pydantic_stand_in.install()", *lines])  # fmt: skip
    return subprocess.run([sys.executable, *(["-P"] if safe_path else []), "-c", code], capture_output=True, text=True, timeout=120,
                          check=False, cwd=cwd)  # fmt: skip


CONFIGS = sorted((ROOT / "config").glob("*.yaml"))


@pytest.mark.parametrize("which", ["kitchen-sink", *(p.name for p in CONFIGS)])
def test_run_gets_what_pydantic_validated_model_by_model(tmp_path: Path, which: str) -> None:
    from gateway.cli import _load
    from gateway.config import iter_secret_values

    if which == "kitchen-sink":
        config, env_file = kitchen_sink(tmp_path)
    else:
        config, env_file = ROOT / "config" / which, ROOT / "config" / "example.env"
    loaded = _load(str(config), str(env_file))
    assert not isinstance(loaded, int), which
    cfg, plan = loaded
    real = {"config": describe(cfg), "plan": describe(plan), "secrets": sorted(iter_secret_values(cfg)),
            "pydantic_core": False}  # fmt: skip
    done = run_light("import json",
                     "from tests.unit.test_validated_config import light_description",
                     f"print(json.dumps(light_description({str(config)!r}, {str(env_file)!r})))")  # fmt: skip
    assert done.returncode == 0, done.stderr
    light = json.loads(done.stdout)
    assert light == json.loads(json.dumps(real))
    assert real["secrets"]  # the comparison covered secrets


def test_the_kitchen_sink_has_every_plugin(tmp_path: Path) -> None:
    from firmware_bridge.codecs import CODECS
    from firmware_bridge.drivers import REGISTERED
    from gateway.cli import _load
    from gateway.sinks import SINKS
    from gateway.sources import SOURCES

    loaded = _load(*map(str, kitchen_sink(tmp_path)))
    assert not isinstance(loaded, int)
    cfg, plan = loaded
    assert {s.driver for s in cfg.sensors} == {d.name for d in REGISTERED}
    assert {s.type for s in cfg.sinks.values()} == set(SINKS)
    assert {sp.transport for sp in plan.sensors.values()} == set(SOURCES)
    codecs = {p.codec for s in cfg.sensors if s.driver == "chirpstack" for p in s.options.ports.values()}  # type: ignore[attr-defined]
    assert codecs == set(CODECS)


def test_a_bad_config_reads_the_same_through_the_child(tmp_path: Path) -> None:
    """The child prints the problems as `check` does; the parent gets exit 2, no config."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("gateway: {id: g, borough: camden, location: {lat: 95, lon: 0}}\nsinks: {file: {}}\n")
    done = run_light("from gateway import validated_config",
                     f"print(validated_config.load({str(bad)!r}, None))")  # fmt: skip
    assert (done.returncode, done.stdout.strip()) == (0, "2"), done.stderr
    assert f"{bad}:1 gateway.location.lat: " in done.stderr
    check = subprocess.run([sys.executable, "-m", "gateway.cli", "check", "-c", str(bad)], capture_output=True,
                           text=True, cwd=ROOT, check=False)  # fmt: skip
    assert check.returncode == 2 and check.stderr.splitlines()[0] in done.stderr.splitlines()


# ---------------------------------------------------------------- the pipe


def test_the_pipe_refuses_anything_but_settings() -> None:
    from gateway.validated_config import ConfigTransferError, loads

    for foreign in (os.system, subprocess.Popen, eval):
        with pytest.raises(ConfigTransferError, match="does not take"):
            loads(pickle.dumps(foreign))
    with pytest.raises(ConfigTransferError, match="does not take"):
        loads(pickle.dumps(collections.OrderedDict(a=1)))  # a class from anywhere else
    with pytest.raises(ConfigTransferError, match="cannot read"):
        loads(b"\x80\x05garbage")
    with pytest.raises(ConfigTransferError, match="cannot read"):
        loads(b"")


def test_a_model_crosses_only_as_its_class_values_and_private_values(tmp_path: Path) -> None:
    from gateway.cli import _load
    from gateway.validated_config import dumps

    loaded = _load(*map(str, kitchen_sink(tmp_path)))
    assert not isinstance(loaded, int)
    names = {arg for _, arg, _ in _ops(dumps(loaded[0])) if isinstance(arg, str)}
    assert "gateway.validated_config" in names and "_model" in names  # the reader sees what pickle names
    # no pydantic object; no path by class either (pathlib's module is `pathlib._local` from 3.13)
    assert not {n for n in names if n.startswith(("pydantic", "pathlib"))}


def test_paths_cross_by_their_text() -> None:
    from pathlib import PosixPath, PurePosixPath

    from gateway.validated_config import dumps, loads

    for p in (PosixPath("/var/lib/street-gateway"), PurePosixPath("relative/observations.jsonl")):
        back = loads(dumps(p))  # type: ignore[arg-type]
        assert (type(back), back) == (type(p), p)


def test_a_class_that_would_lose_its_methods_on_the_way_is_refused() -> None:
    """A model class not importable by its name crosses as its importable base with its fields
    (what `create_model` makes); one that defines a method or property would arrive without
    it: refused, by name."""
    from gateway.configtypes import MqttBroker
    from gateway.validated_config import ConfigTransferError, dumps

    class Special(MqttBroker):
        @property
        def url(self) -> str:
            return f"mqtt://{self.host}"

    with pytest.raises(ConfigTransferError, match="Special is not importable by its name and defines url"):
        dumps(Special())  # type: ignore[arg-type]


def test_the_child_imports_nothing_from_the_working_directory(tmp_path: Path) -> None:
    """The service's working directory is its writable data dir: a `yaml.py` or `pydantic.py`
    there must not run in the child that holds the secrets."""
    config = tmp_path / "gw.yaml"
    config.write_text("gateway: {id: g, borough: camden, location: {lat: 51.5, lon: -0.1}}\nsinks: {file: {}}\n")
    # what the child imports first; the parent (started here as the console script starts it,
    # with its working directory importable) never imports them: PyYAML it has no use for, and
    # `pydantic` is the stand-in in its sys.modules
    for name in ("yaml", "pydantic", "pydantic_core"):
        (tmp_path / f"{name}.py").write_text("import sys; sys.stderr.write('TRAP\\n'); sys.exit(7)\n")
    done = run_light("from gateway import validated_config",
                     f"print(type(validated_config.load({str(config)!r}, None)).__name__)", cwd=tmp_path,
                     safe_path=False)  # fmt: skip
    assert (done.returncode, done.stdout.strip()) == (0, "Config"), done.stderr
    assert "TRAP" not in done.stderr


def _ops(data: bytes) -> list[Any]:
    import pickletools

    return list(pickletools.genops(data))


# ---------------------------------------------------------------- the stand-in against pydantic


def test_the_stand_in_behaves_as_pydantic_where_the_gateway_relies_on_it() -> None:
    """Defaults and factories, private defaults, frozen models' hash and refusal, create_model,
    model_copy(update=), model_dump, secrets: the same observable result with either."""
    import pydantic

    from gateway import pydantic_stand_in

    def exercise(p: Any) -> Any:
        class Inner(p.BaseModel):
            model_config = p.ConfigDict(extra="forbid", frozen=True)
            a: int = p.Field(3, ge=0)
            tags: tuple[str, ...] = p.Field(default_factory=tuple)

        class Outer(p.BaseModel):
            inner: Inner = Inner()
            name: str = "x"
            secret: p.SecretStr | None = None
            _cache: dict[str, int] = p.PrivateAttr(default_factory=dict)
            _flag: bool = p.PrivateAttr(default=True)
            LIMIT: ClassVar[int] = 5

            @p.field_validator("name")
            @classmethod
            def _name(cls, v: str) -> str:
                return v

            @property
            def shout(self) -> str:
                return self.name.upper()

        Made = p.create_model("Made", __base__=Outer, extra=(int, p.Field(7)), needed=(str, ...))
        o = Outer(name="n", secret=p.SecretStr("s3cret"))
        m = Made(needed="y")
        c = o.model_copy(update={"name": "m"})
        out: dict[str, Any] = {
            "fields": list(Made.model_fields), "required": [n for n, f in Made.model_fields.items() if f.is_required()],
            "dump": repr(m.model_dump()), "o": repr(o.model_dump()), "copy": (c.name, c.inner == o.inner, c.shout),
            "private": (o._cache, o._flag, sorted(Outer.__private_attributes__)),
            "secret": (str(o.secret), repr(o.secret), o.secret.get_secret_value() if o.secret else None),
            "hash": hash(Inner(a=1)) == hash(Inner(a=1)), "eq": (Inner(a=1) == Inner(a=1), Inner(a=1) == Inner(a=2)),
            "not a model": (o == 1, o != "x", o == mock.ANY), "class var": (Outer.LIMIT, "LIMIT" in Outer.model_fields),
        }  # fmt: skip
        try:
            Inner().a = 5  # type: ignore[misc]
            out["frozen"] = "set"
        except (TypeError, pydantic.ValidationError):
            out["frozen"] = "refused"
        try:
            hash(o)
            out["unhashable"] = False
        except TypeError:
            out["unhashable"] = True
        return out

    assert exercise(pydantic_stand_in) == exercise(pydantic)


def test_what_the_stand_in_lacks_fails_loudly() -> None:
    from gateway import pydantic_stand_in as p

    class M(p.BaseModel):
        a: int

    with pytest.raises(TypeError, match="a is required"):
        M()
    with pytest.raises(AttributeError):
        M.model_validate({"a": 1})  # type: ignore[attr-defined]
    done = run_light("from pydantic import TypeAdapter")
    assert "cannot import name 'TypeAdapter'" in done.stderr
    done = run_light("import pydantic.fields")
    assert "pydantic.fields" in done.stderr and done.returncode != 0


def test_install_refuses_once_pydantic_is_loaded() -> None:
    import pydantic  # noqa: F401

    from gateway import pydantic_stand_in

    with pytest.raises(RuntimeError, match="loaded already"):
        pydantic_stand_in.install()
    assert not pydantic_stand_in.installed()


# ---------------------------------------------------------------- a real run


def test_a_running_gateway_never_loads_pydantic(tmp_path: Path) -> None:
    """`street-gateway run` as the service runs it: up, serving, and neither pydantic-core nor
    libyaml mapped."""
    config = tmp_path / "gw.yaml"
    config.write_text(f"gateway: {{id: g, borough: camden, location: {{lat: 51.5, lon: -0.1}}, data_dir: '{tmp_path}'}}\n"
                      "sinks: {file: {}}\nops: {http: '127.0.0.1:0'}\n")  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-m", "gateway.cli", "run", "-c", str(config)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        maps = ""
        while time.monotonic() < deadline and proc.poll() is None:
            maps = Path(f"/proc/{proc.pid}/maps").read_text()
            if (tmp_path / "outbox.sqlite").exists() and "libsqlite3" in maps:
                break
            time.sleep(0.1)
        assert proc.poll() is None, proc.communicate()[1]
        time.sleep(0.5)  # serving: whatever it imports on the way has been imported
        maps = Path(f"/proc/{proc.pid}/maps").read_text()
        assert "_pydantic_core" not in maps
        assert "yaml/_yaml" not in maps  # nor PyYAML: the child parsed the file
        assert "libsqlite3" in maps  # the reading was of the right process
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err


def test_a_child_that_fails_or_sends_garbage_is_an_error_not_a_config(monkeypatch: pytest.MonkeyPatch) -> None:
    from gateway import validated_config
    from gateway.validated_config import ConfigTransferError, load

    def child(code: str) -> Any:
        return lambda config, env_file: [sys.executable, "-c", code]

    monkeypatch.setattr(validated_config, "child_command", child("import sys; sys.exit(3)"))
    with pytest.raises(ConfigTransferError, match="exited with 3"):
        load("gw.yaml", None)
    monkeypatch.setattr(validated_config, "child_command", child("import sys; sys.stdout.write('not a pickle')"))
    with pytest.raises(ConfigTransferError, match="cannot read the validated config"):
        load("gw.yaml", None)
    monkeypatch.setattr(validated_config, "child_command", child("import sys; sys.exit(2)"))
    assert load("gw.yaml", None) == 2  # a bad config: the child printed why
    monkeypatch.setattr(validated_config, "child_command", lambda c, e: ["/nonexistent/python"])
    with pytest.raises(ConfigTransferError, match="cannot start the config check"):
        load("gw.yaml", None)
