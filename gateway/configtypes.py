"""Value types and base models every config section uses: plugins (sources, sinks) import these,
never `gateway.config`, which assembles the whole file from the registries.

`Duration` and `Size` accept `15m`, `24h`, `64MiB`; `Strict` forbids unknown keys, so a typo is a
`check` error with its line rather than a silently ignored setting.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, SecretStr, field_validator

from firmware_bridge.options import parse_duration
from gateway.checks import is_loopback_host  # one definition: `127.evil.example` is not loopback

__all__ = [
    "Duration",
    "Ident",
    "MqttBroker",
    "PositiveDuration",
    "SecretStr",
    "Size",
    "Strict",
    "is_loopback_host",
    "parse_duration",
    "parse_size",
]

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B|B)?\s*$", re.IGNORECASE)
_SIZE_FACTOR = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
                "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}  # fmt: skip


def parse_size(v: Any) -> int:
    """'1GiB', '64MiB', '500MB' or a number of bytes."""
    if isinstance(v, bool):
        raise ValueError("must be a size like 64MiB or 1GiB")
    if isinstance(v, int):
        return v
    m = _SIZE.match(str(v))
    if not m:
        raise ValueError(f"must be a size like 64MiB or 1GiB, not {v!r}")
    return int(float(m.group(1)) * _SIZE_FACTOR[(m.group(2) or "B").lower()])


Duration = Annotated[float, BeforeValidator(parse_duration), Field(ge=0)]
PositiveDuration = Annotated[float, BeforeValidator(parse_duration), Field(gt=0)]
Size = Annotated[int, BeforeValidator(parse_size), Field(ge=0)]
Ident = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,62}$")]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


class MqttBroker(Strict):
    """Connection settings for an MQTT broker (the local one for devices, the city's for feeds)."""

    host: str = "127.0.0.1"
    port: int = Field(1883, ge=1, le=65535)
    username: str | None = None
    password: SecretStr | None = None
    tls: bool = False
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    client_id: str | None = None
    keepalive_s: int = Field(30, ge=5, le=3600)
    allow_plaintext: bool = Field(
        False, description="Allow a password over plain MQTT to a non-loopback host (warned)."
    )

    @field_validator("password")
    @classmethod
    def _not_empty(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None and not v.get_secret_value():
            raise ValueError("is empty (an unset ${VAR} or an empty secret file?)")
        return v
