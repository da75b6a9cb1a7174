"""street-gateway run | check | datastreams | demo | simulate | privacy-report | catalogue | schema

Exit codes: 0 ok, 1 runtime failure, 2 bad config or usage. Problems go to stderr, one line each.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gateway._pydantic_plugins  # noqa: F401  (first: before anything builds a pydantic model)
from gateway.checks import Finding

if TYPE_CHECKING:  # imported where used: `run` must reach cmd_run before anything loads pydantic
    from gateway.config import Config, Problem
    from gateway.plan import SensorPlan, SitePlan

EXIT_OK, EXIT_RUNTIME, EXIT_CONFIG = 0, 1, 2


def read_env_file(path: str) -> dict[str, str]:
    """KEY=VALUE lines, as systemd's EnvironmentFile= reads them (comments and blanks skipped,
    optional quotes), so `check --env-file /etc/street-gateway/secrets.env` sees what the
    service sees."""
    env: dict[str, str] = {}
    for line in Path(path).read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")) or "=" not in line:
            continue
        key, _, value = line.partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        env[key.strip().removeprefix("export ").strip()] = value
    return env


def _load(path: str, env_file: str | None = None, *, secrets: bool = True) -> tuple[Config, SitePlan] | int:
    """Config and plan, or the exit code after printing every problem. `secrets=False` for the
    commands that describe a gateway (report, catalogue, datastreams): they need no secret, and
    the config they get cannot run."""
    from gateway.config import ConfigError, load_config
    from gateway.plan import PlanError, build_plan

    env = dict(os.environ)
    if env_file:
        try:
            env.update(read_env_file(env_file))
        except OSError as e:
            print(f"{env_file}: cannot read: {e.strerror}", file=sys.stderr)
            return EXIT_CONFIG
    try:
        cfg = load_config(path, env, secrets=secrets)
        plan = build_plan(cfg)
    except (ConfigError, PlanError) as e:
        for p in e.problems:
            print(p, file=sys.stderr)
        return EXIT_CONFIG
    return cfg, plan


def data_dir_problem(data_dir: Path) -> str | None:
    """Why the gateway could not keep its outbox in `data_dir` on this machine, or None."""
    import pwd

    user = pwd.getpwuid(os.geteuid()).pw_name  # whose rights count, whatever $USER says
    try:
        data_dir.stat()
    except FileNotFoundError:
        pass
    except OSError as e:
        return f"{data_dir} cannot be reached by user {user}: {e.strerror}"
    if data_dir.exists():
        if not data_dir.is_dir():
            return f"{data_dir} is not a folder"
        if not os.access(data_dir, os.W_OK | os.X_OK):
            return f"{data_dir} is not writable by user {user}"
        return None
    parent = data_dir.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"{data_dir} does not exist and user {user} cannot create it ({parent} is not writable)"
    return None


def semantic_problems(cfg: Config, plan: SitePlan, *, devices: bool = True) -> list[Problem]:
    """What `check` verifies beyond the schema: what each source and sink checks on this machine
    (ports exist, the data dir is writable), and that names cannot trip the egress guard.
    `devices=False` checks a config for another machine: no ports, no data dir."""
    from gateway.config import problem_at
    from gateway.privacy.guard import find_identifier
    from gateway.sinks import SINKS
    from gateway.sources import SOURCES

    problems: list[Problem] = []
    if devices and (why := data_dir_problem(cfg.gateway.data_dir)):
        problems.append(problem_at(cfg, ("gateway", "data_dir"), why))
    for i, s in enumerate(cfg.sensors):
        sp = plan.sensors.get(s.id)
        if devices and sp is not None:
            for loc, msg in SOURCES[sp.transport].check(sp):
                problems.append(problem_at(cfg, ("sensors", i, *loc), msg))
        for f, word, shape in _identifier_words(sp):
            problems.append(problem_at(cfg, ("sensors", i, "options"),
                                       f"{f}: the word {word!r} looks like a {shape.replace('_', ' ')}; the egress guard would block it"))  # fmt: skip
        kind = find_identifier(s.id)
        if kind:
            problems.append(problem_at(cfg, ("sensors", i, "id"),
                                       f"looks like a {kind.replace('_', ' ')}; the egress guard would block it: choose a descriptive id"))  # fmt: skip
    for loc, value in ((("gateway", "id"), cfg.gateway.id), (("gateway", "borough"), cfg.gateway.borough)):
        kind = find_identifier(value)
        if kind:
            problems.append(problem_at(cfg, loc, f"looks like a {kind.replace('_', ' ')}; the egress guard would block it"))  # fmt: skip
    if not cfg.sinks:
        problems.append(problem_at(cfg, ("sinks",), "no sink configured: observations would only pile up in the outbox"))  # fmt: skip
    for name, settings in cfg.sinks.items():
        for loc, msg in SINKS[settings.type].check(settings):
            problems.append(problem_at(cfg, ("sinks", name, *loc), msg))
    for where, finding in security_findings(cfg):
        if finding.severity == "error":
            problems.append(problem_at(cfg, where, finding.message))
    return problems


def _identifier_words(sp: SensorPlan | None) -> list[tuple[str, str, str]]:
    """(field, word, kind) for vocabulary words that are shaped like an identifier."""
    from gateway.privacy.guard import find_identifier

    out: list[tuple[str, str, str]] = []
    for f in (*sp.published, *sp.aggregates) if sp is not None else ():
        for word in sorted(f.vocabulary or ()):
            if kind := find_identifier(word):
                out.append((f.key, word, kind))
    return out


def vocabulary_warnings(cfg: Config, plan: SitePlan) -> list[Problem]:
    """A published text field without a vocabulary lets nothing out (default deny for free
    text): say so at `check`, since its Datastream will stay empty."""
    from firmware_bridge.base import ObservationType
    from gateway.config import problem_at

    out: list[Problem] = []
    for i, s in enumerate(cfg.sensors):
        sp = plan.sensors.get(s.id)
        for f in (*sp.published, *sp.aggregates) if sp is not None else ():
            if f.observation_type is ObservationType.CATEGORY and f.vocabulary is None:
                out.append(problem_at(cfg, ("sensors", i, "driver"),
                                      f"{s.driver} declares no vocabulary for {f.key}: its text values are blocked "
                                      "(counted as not_in_vocabulary); leave it out with privacy.publish"))  # fmt: skip
    return out


def security_findings(cfg: Config) -> list[tuple[tuple[str | int, ...], Finding]]:
    """gateway/checks.py applied to the sections no plugin owns: an open ops port, a password in
    clear to a local broker (any `inputs.*` that is an MQTT broker), address-level keys; and the
    sinks' own warnings (their errors come from their `check`). Errors fail `check`; warnings
    are printed."""
    from gateway.checks import address_key_findings, mqtt_broker_findings, ops_http_findings
    from gateway.configtypes import MqttBroker
    from gateway.sinks import SINKS

    out: list[tuple[tuple[str | int, ...], Finding]] = []
    out += [(("ops", "http"), f) for f in ops_http_findings(cfg.ops.http, cfg.ops.token is not None)]
    for name in type(cfg.inputs).model_fields:
        broker = getattr(cfg.inputs, name)
        if isinstance(broker, MqttBroker):
            out += [(("inputs", name, "tls"), f) for f in mqtt_broker_findings(
                "local broker", broker.host, broker.tls, broker.password is not None, broker.allow_plaintext)]  # fmt: skip
    for name, settings in cfg.sinks.items():
        out += [(("sinks", name, *loc), Finding("warning", msg)) for loc, msg in SINKS[settings.type].warn(settings)]
    g = cfg.gateway
    present = [k for k, v in (("usrn", g.usrn), ("uprn", g.uprn)) if v]
    out += [(("gateway", "publish_address_keys"), f) for f in address_key_findings(present, g.publish_address_keys)]
    return out


def cmd_check(args: argparse.Namespace) -> int:
    from gateway.config import problem_at

    loaded = _load(args.config, getattr(args, "env_file", None))
    if isinstance(loaded, int):
        return loaded
    cfg, plan = loaded
    problems = semantic_problems(cfg, plan, devices=not args.no_devices)
    for p in problems:
        print(p, file=sys.stderr)
    if problems:
        return EXIT_CONFIG
    from gateway.standards.catalogue import gaps

    for loc, msg in gaps(cfg):  # what the catalogue record lacks: said, not refused
        print(f"warning: {problem_at(cfg, loc, msg)}", file=sys.stderr)
    for loc, finding in security_findings(cfg):
        if finding.severity == "warning":
            print(f"warning: {problem_at(cfg, loc, finding.message)}", file=sys.stderr)
    for p in vocabulary_warnings(cfg, plan):
        print(f"warning: {p}", file=sys.stderr)
    sinks = [n if n == s.type else f"{n} ({s.type})" for n, s in cfg.sinks.items()]
    n_ds = len(plan.datastreams)
    print(f"{args.config}: OK — gateway {cfg.gateway.id}, {len(plan.sensors)} sensors, "
          f"{n_ds} datastreams, sinks: {', '.join(sinks)}")  # fmt: skip
    from gateway.sources import SOURCES

    for sp in plan.sensors.values():
        where = SOURCES[sp.transport].describe(sp.section)
        out = ", ".join(sorted(sp.datastreams)) or "nothing"
        print(f"  {sp.id:<16} {sp.driver.name:<22} {where}  publishes: {out}")
    return EXIT_OK


def cmd_privacy_report(args: argparse.Namespace) -> int:
    """Write privacy-report.md and privacy-report.json from the plan the gateway enforces."""
    import time

    from gateway.privacy.report import render

    loaded = _load(args.config, getattr(args, "env_file", None), secrets=False)
    if isinstance(loaded, int):
        return loaded
    cfg, plan = loaded
    md, data = render(cfg, plan, generated_at=time.time(), source=args.config)
    out = _out_dir(args.out, cfg)
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / "privacy-report.md").write_text(md, encoding="utf-8")
        (out / "privacy-report.json").write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    except OSError as e:
        print(f"street-gateway: cannot write to {out}: {e.strerror or e}", file=sys.stderr)
        return EXIT_RUNTIME
    print(f"wrote {out / 'privacy-report.md'} and {out / 'privacy-report.json'}")
    return EXIT_OK


def _out_dir(out: str | None, cfg: Config) -> Path:
    """`--out`, or a folder named after the gateway in the current one (never loose files)."""
    return Path(out) if out else Path(cfg.gateway.id)


def cmd_datastreams(args: argparse.Namespace) -> int:
    """Which sensor, property, unit and aggregation each Datastream id stands for."""
    from gateway.datastreams import as_json, as_table, legend

    loaded = _load(args.config, getattr(args, "env_file", None), secrets=False)
    if isinstance(loaded, int):
        return loaded
    cfg, plan = loaded
    rows = legend(cfg, plan)
    sys.stdout.write(as_json(rows) if args.json else as_table(rows))
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    from gateway.ops.memory import prepare_service

    prepare_service()  # first: before the service's own imports and allocations
    env_file = getattr(args, "env_file", None)
    if "pydantic" not in sys.modules:  # the service's own process: validated in a child
        from gateway import pydantic_stand_in, validated_config

        pydantic_stand_in.install()

        def load() -> Config | int:
            try:
                return validated_config.load(args.config, env_file)
            except validated_config.ConfigTransferError as e:
                print(f"street-gateway: {args.config}: {e}", file=sys.stderr)
                return EXIT_RUNTIME
    else:  # pydantic is here already (a test calling main()): validated in this process

        def load() -> Config | int:
            r = _load(args.config, env_file)
            return r if isinstance(r, int) else r[0]  # the plan proved it; the pipeline makes its own

    from gateway.config import iter_secret_values
    from gateway.ops.logs import setup_logging
    from gateway.service import serve

    loaded = load()
    if isinstance(loaded, int):
        return loaded
    cfg = loaded
    setup_logging(args.log_level or cfg.ops.log_level, secrets=tuple(iter_secret_values(cfg)))

    def reload() -> Config | None:
        r = load()
        return None if isinstance(r, int) else r

    try:
        return asyncio.run(serve(cfg, reload=reload))
    except KeyboardInterrupt:
        return EXIT_OK
    except OSError as e:
        where = f"{e.filename}: " if e.filename else ""
        print(f"street-gateway: {where}{e.strerror or e}", file=sys.stderr)
        return EXIT_RUNTIME


def cmd_schema(args: argparse.Namespace) -> int:
    from gateway.config import json_schema

    print(json.dumps(json_schema(), indent=2))
    return EXIT_OK


def cmd_catalogue(args: argparse.Namespace) -> int:
    """Write catalogue.jsonld (DCAT-AP) and ckan_package.json for the config's feeds."""
    from gateway.standards.catalogue import ckan_package, dcat_catalogue

    loaded = _load(args.config, getattr(args, "env_file", None), secrets=False)
    if isinstance(loaded, int):
        return loaded
    cfg, plan = loaded
    out = _out_dir(args.out, cfg)
    docs = {"catalogue.jsonld": dcat_catalogue(cfg, plan, licence=args.licence, title=args.title),
            "ckan_package.json": ckan_package(cfg, plan, licence=args.licence, title=args.title)}
    try:
        out.mkdir(parents=True, exist_ok=True)
        for name, doc in docs.items():
            (out / name).write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    except OSError as e:
        print(f"street-gateway: cannot write to {out}: {e.strerror or e}", file=sys.stderr)
        return EXIT_RUNTIME
    print(f"wrote {out / 'catalogue.jsonld'} and {out / 'ckan_package.json'}")
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from gateway.simulate.demo import run_demo

    return run_demo(duration=args.duration, data_dir=Path(args.data_dir) if args.data_dir else None,
                    sensors=args.sensors, quiet=args.quiet, keep=args.keep, reuse=args.reuse)  # fmt: skip


def cmd_simulate(args: argparse.Namespace) -> int:
    from gateway.simulate.simulate import run_simulators

    if not args.serial and not args.mqtt:
        args.parser.print_usage(sys.stderr)
        print("street-gateway simulate: nothing to simulate: give --serial DRIVER:LINK and/or "
              "--mqtt DRIVER:TOPIC", file=sys.stderr)  # fmt: skip
        return EXIT_CONFIG
    return run_simulators(args.serial, args.mqtt, broker=args.broker, duration=args.duration,
                          noise=args.noise, period=args.period)  # fmt: skip


def _terminal_columns() -> int:
    """shutil.get_terminal_size().columns, without importing shutil (below)."""
    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        columns = 0
    if columns > 0:
        return columns
    try:
        return os.get_terminal_size(sys.__stdout__.fileno()).columns or 80  # type: ignore[union-attr]
    except (AttributeError, ValueError, OSError):
        return 80


class _HelpFormatter(argparse.HelpFormatter):
    """argparse's, as wide as the terminal as argparse makes it, but measured without shutil:
    argparse builds a formatter for every add_argument and imports shutil to size it, which
    brings bz2 and lzma with their libraries into every `run` (0.3 MiB resident; issue 19)."""

    def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 24,
                 width: int | None = None) -> None:  # fmt: skip
        super().__init__(prog, indent_increment, max_help_position,
                         _terminal_columns() - 2 if width is None else width)  # fmt: skip


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)


def main(argv: list[str] | None = None) -> int:
    ap = _Parser(prog="street-gateway", description=__doc__.splitlines()[0] if __doc__ else None)
    sub = ap.add_subparsers(dest="command", required=True, parser_class=_Parser)
    p = sub.add_parser("run", help="run the gateway service")
    p.add_argument("-c", "--config", required=True)
    p.add_argument("--env-file", help="read ${VAR} secrets from this KEY=VALUE file too (e.g. secrets.env)")
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    p.set_defaults(fn=cmd_run)
    p = sub.add_parser("check", help="validate a config without starting anything")
    p.add_argument("-c", "--config", required=True)
    p.add_argument("--env-file", help="read ${VAR} secrets from this KEY=VALUE file too (e.g. secrets.env)")
    p.add_argument("--no-devices", action="store_true",
                   help="checking a config for another machine: do not require its serial ports or data dir here")  # fmt: skip
    p.set_defaults(fn=cmd_check)
    p = sub.add_parser("privacy-report", help="write the privacy report (Markdown and JSON) for a config")
    p.add_argument("-c", "--config", required=True)
    p.add_argument("--env-file", help="read ${VAR} from this KEY=VALUE file too (no secret is needed)")
    p.add_argument("--out", help="directory for privacy-report.md and .json (default: ./<gateway id>)")
    p.set_defaults(fn=cmd_privacy_report)
    p = sub.add_parser("datastreams", help="list each Datastream id with its sensor, property, unit, destinations")
    p.add_argument("-c", "--config", required=True)
    p.add_argument("--env-file", help="read ${VAR} from this KEY=VALUE file too (no secret is needed)")
    p.add_argument("--json", action="store_true", help="JSON instead of a table")
    p.set_defaults(fn=cmd_datastreams)
    p = sub.add_parser("demo", help="simulated devices end to end into a local file store")
    p.add_argument("--duration", type=float, default=30.0, help="seconds to run (default 30)")
    p.add_argument("--data-dir", help="where to keep the outbox and observations (default: a new temp folder)")
    p.add_argument("--reuse", action="store_true", help="keep what an earlier demo left in --data-dir (default: start empty)")
    p.add_argument("--sensors", type=int, help="simulated serial sensors (default: one of each serial driver)")
    p.add_argument("--keep", action="store_true", help="after the summary, keep the gateway and devices running until Ctrl-C")
    p.add_argument("--quiet", action="store_true", help="no live summary, final summary only")
    p.set_defaults(fn=cmd_demo)
    p = sub.add_parser("simulate", help="simulated serial devices on pseudo-terminals and MQTT devices on a broker")
    p.add_argument("--serial", action="append", default=[], metavar="DRIVER:LINK",
                   help="e.g. pms5003:/tmp/pm-north (the link points at the pty; removed at exit)")  # fmt: skip
    p.add_argument("--mqtt", action="append", default=[], metavar="DRIVER:TOPIC",
                   help="e.g. openevse:openevse/bay-1/+ (the driver's default topic if TOPIC is empty)")  # fmt: skip
    p.add_argument("--broker", metavar="HOST:PORT",
                   help="MQTT broker for --mqtt devices (default: start a local one and print its port)")  # fmt: skip
    p.add_argument("--period", type=float, default=2.0, help="seconds between MQTT device reports (default 2)")
    p.add_argument("--duration", type=float, default=0, help="seconds; 0 = until interrupted")
    p.add_argument("--noise", type=float, default=0.0, help="probability of garbage per serial frame")
    p.set_defaults(fn=cmd_simulate, parser=p)
    p = sub.add_parser("schema", help="print the config JSON Schema")
    p.set_defaults(fn=cmd_schema)
    p = sub.add_parser("catalogue", help="write DCAT-AP and CKAN catalogue records for the feeds")
    p.add_argument("-c", "--config", required=True)
    p.add_argument("--env-file", help="read ${VAR} from this KEY=VALUE file too (no secret is needed)")
    p.add_argument("--out", help="directory for catalogue.jsonld and ckan_package.json (default: ./<gateway id>)")
    p.add_argument("--licence", default=None,
                   help="licence URL (default: catalogue.licence, else Open Government Licence v3.0)")  # fmt: skip
    p.add_argument("--title", help="catalogue title (default: from gateway.name or id)")
    p.set_defaults(fn=cmd_catalogue)
    try:
        args = ap.parse_args(argv)
    except SystemExit as e:
        return EXIT_CONFIG if e.code not in (0, None) else EXIT_OK
    rc: int = args.fn(args)
    return rc


if __name__ == "__main__":
    sys.exit(main())
