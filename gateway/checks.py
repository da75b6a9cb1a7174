"""Security checks on parsed config values, as pure functions: `check` and the sources call them.

Each function takes plain values (strings, numbers, booleans) and returns findings; nothing here
reads a file, a socket or the environment, so the config loader can wire them in wherever its
models end up. A `Finding` is `error` (refuse the config) or `warning` (print, carry on).
"""

from __future__ import annotations

import ipaddress
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

Severity = Literal["error", "warning"]


@dataclass(frozen=True, slots=True)
class Finding:
    severity: Severity
    message: str


# --------------------------------------------------------------------------- MQTT topic filters


def filters_overlap(a: str, b: str) -> bool:
    """True when some topic matches both MQTT topic filters (`+` one level, `#` the rest,
    including the parent level: `a/#` matches `a`). Errs towards True for `$` topics."""
    la, lb = a.split("/"), b.split("/")
    for i in range(max(len(la), len(lb))):
        x = la[i] if i < len(la) else None
        y = lb[i] if i < len(lb) else None
        if x == "#" or y == "#":
            return True
        if x is None or y is None:
            return False
        if x != y and "+" not in (x, y):
            return False
    return True


# --------------------------------------------------------------------------- hosts and URLs


def is_loopback_host(host: str) -> bool:
    """127.0.0.0/8, ::1 and `localhost`: the only addresses nobody else on a network can reach."""
    h = host.strip().strip("[]").lower()
    if h in ("localhost", "localhost.", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        return False


def split_host_port(value: str) -> tuple[str, int]:
    """'127.0.0.1:9108', '[::1]:9108' or 'host:9108' -> (host, port). ValueError otherwise."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError("must be host:port, e.g. 127.0.0.1:9108")
    return host.strip("[]"), int(port)


def ops_http_findings(http: str | None, has_token: bool) -> list[Finding]:
    """The ops page serves metrics and the status of every sensor: beyond loopback only with a
    bearer token, and never on a wildcard address without one."""
    if http is None:
        return []
    try:
        host, _ = split_host_port(http)
    except ValueError as e:
        return [Finding("error", str(e))]
    if is_loopback_host(host) or has_token:
        return []
    return [
        Finding(
            "error",
            f"{host} is reachable from the network: give ops.token_file (a bearer token, "
            "sent as `Authorization: Bearer …`) or bind 127.0.0.1 and use an SSH tunnel",
        )
    ]


def url_credential_findings(url: str) -> list[Finding]:
    """`https://user:secret@host/` copies the secret into every place the URL is shown (the
    catalogue, logs, the privacy report): credentials go in token/password keys instead."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return [Finding("error", "is not a valid URL")]
    found: list[Finding] = []
    if parts.username is not None or parts.password is not None:
        found.append(Finding("error", "credentials in the URL: put them in `token`/`token_file` "
                                      "(they would be copied into the catalogue and logs)"))  # fmt: skip
    query = urllib.parse.parse_qs(parts.query, keep_blank_values=True)
    secretish = sorted(k for k in query if k.lower() in _SECRET_QUERY_KEYS)
    if secretish:
        found.append(Finding("error", f"secret in the URL query ({', '.join(secretish)}): use `token`"))
    return found


_SECRET_QUERY_KEYS = frozenset(
    {"token", "access_token", "api_key", "apikey", "key", "password", "pass", "secret", "auth", "u", "p"}
)


def cleartext_secret_findings(
    what: str, host: str, encrypted: bool, has_secret: bool, allow_plaintext: bool
) -> list[Finding]:
    """A token or password sent unencrypted to another machine can be read by anyone on the
    path. Loopback is fine. `allow_plaintext: true` turns the refusal into a warning (a lab,
    a VPN the borough runs), so it is a decision somebody wrote down."""
    if encrypted or not has_secret or is_loopback_host(host):
        return []
    msg = f"{what} is sent in clear to {host}"
    if allow_plaintext:
        return [Finding("warning", msg + " (allow_plaintext: true)")]
    return [Finding("error", msg + ": use TLS (https://, tls: true), or set allow_plaintext: true "
                                   "if the network path is protected otherwise")]  # fmt: skip


def influx_url_findings(url: str, has_token: bool, allow_plaintext: bool) -> list[Finding]:
    found = url_credential_findings(url)
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https"):
        return [*found, Finding("error", "must start with http:// or https://")]
    found += cleartext_secret_findings(
        "the InfluxDB token", parts.hostname or "", parts.scheme == "https", has_token, allow_plaintext
    )
    return found


def mqtt_broker_findings(
    what: str, host: str, tls: bool, has_password: bool, allow_plaintext: bool
) -> list[Finding]:
    return cleartext_secret_findings(f"the {what} password", host, tls, has_password, allow_plaintext)


# --------------------------------------------------------------------------- published site keys


ADDRESS_KEYS = ("uprn", "usrn")


def address_key_findings(present: Iterable[str], publish_opt_in: bool) -> list[Finding]:
    """A UPRN is one address, a USRN one street: published next to a coarsened location they
    undo the coarsening. They stay off public feeds unless the site opts in explicitly."""
    keys = sorted(k for k in present if k in ADDRESS_KEYS)
    if not keys or publish_opt_in:
        return []
    return [
        Finding(
            "warning",
            f"{', '.join(keys)} kept off the published Thing, catalogue and reports "
            "(address-level location); set gateway.publish_address_keys: true to publish",
        )
    ]


def publishable_site_keys(values: dict[str, str | None], publish_opt_in: bool) -> dict[str, str]:
    """The site keys that may appear in a public feed: address-level keys only when opted in."""
    return {
        k: v for k, v in values.items()
        if v is not None and (publish_opt_in or k not in ADDRESS_KEYS)
    }  # fmt: skip
