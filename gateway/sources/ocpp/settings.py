"""Settings of the OCPP tap: the gateway-wide `inputs.ocpp` section and each sensor's `ocpp:` key.

Secrets never sit in the file: `password_file:` names a file whose content is the password (the
config loader turns it into `password` when it reads the YAML; these models do the same when they
are built directly). Held as `SecretStr`, so they never print.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import ConfigDict, Field, PrivateAttr, SecretStr, field_validator, model_validator

from gateway.configtypes import Duration, PositiveDuration, Size, Strict

Subprotocol = Literal["ocpp1.6", "ocpp2.0.1"]
SUBPROTOCOLS: tuple[Subprotocol, ...] = ("ocpp1.6", "ocpp2.0.1")
# OCPP 2.0.1 part 4 (2.2) identity: identifierString without ':' (the basic-auth separator).
# 1.6 chargeBoxIds seen in the field fit it too; 48 characters is 2.0.1's maximum.
ChargeBoxId = Annotated[str, Field(pattern=r"^[A-Za-z0-9*_=+|@.\-]{1,48}$")]
MAX_LOCAL_LIST = 100_000  # idTags in a standalone local list


class _Secretive(Strict):
    """Validation errors never repeat the input: it may hold a password or an idTag."""

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)


def _read_secret(data: Any) -> Any:
    """`password_file: PATH` -> `password: <content>`, as the config loader does for YAML."""
    if isinstance(data, dict) and "password_file" in data:
        data = dict(data)
        if "password" in data:
            raise ValueError("give either password or password_file, not both")
        path = data.pop("password_file")
        try:
            data["password"] = Path(path).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError, TypeError) as e:
            raise ValueError(f"password_file: cannot read secret file: {_why(e)}") from None
    return data


def _why(e: Exception) -> str:
    return getattr(e, "strerror", None) or type(e).__name__


class ChargerAuth(_Secretive):
    """HTTP basic auth the charger must present (OCPP security profile 1, or 2 with TLS):
    username = its chargeBoxId, password = the AuthorizationKey / BasicAuthPassword set on it."""

    password: SecretStr = Field(description="Write `password_file:`; never the password itself.")

    _from_file = model_validator(mode="before")(_read_secret)

    @field_validator("password")
    @classmethod
    def _length(cls, v: SecretStr) -> SecretStr:
        if not 8 <= len(v.get_secret_value()) <= 64:
            raise ValueError("must be 8 to 64 characters (OCPP 2.0.1: 16 to 40 recommended)")
        return v


class UpstreamCredentials(_Secretive):
    """Basic auth the tap presents to the operator instead of the charger's own."""

    username: str | None = Field(None, description="Defaults to the chargeBoxId.")
    password: SecretStr = Field(description="Write `password_file:`; never the password itself.")

    _from_file = model_validator(mode="before")(_read_secret)

    @field_validator("username")
    @classmethod
    def _no_colon(cls, v: str | None) -> str | None:
        if v is not None and (":" in v or not v):
            raise ValueError("must be non-empty and contain no ':'")
        return v


class OcppSensor(_Secretive):
    """A sensor's `ocpp:` key: one charger, seen by the tap under its chargeBoxId."""

    charge_box_id: ChargeBoxId = Field(
        description="The identity the charger puts at the end of its URL: ws(s)://gateway:PORT/<id>."
    )
    mode: Literal["proxy", "standalone"] = Field(
        "proxy",
        description="proxy: relay to the operator's CSMS at `upstream`; standalone: the gateway "
        "is a minimal CSMS for a borough-owned charger with no operator.",
    )
    upstream: str | None = Field(
        None, description="The operator's CSMS URL (ws:// or wss://); the chargeBoxId is appended."
    )
    upstream_ca_file: Path | None = Field(
        None, description="CA bundle to verify a wss:// upstream; the system's CAs if unset."
    )
    insecure_upstream: bool = Field(
        False, description="Allow credentials to go to a ws:// (cleartext) upstream."
    )
    auth: ChargerAuth | None = Field(
        None, description="Basic auth the charger must present; unset: none (security profile 0)."
    )
    upstream_auth: Literal["passthrough", "none"] | UpstreamCredentials = Field(
        "passthrough",
        description="passthrough: the charger's own Authorization header; none; or "
        "{username, password_file} to replace it.",
    )
    subprotocols: tuple[Subprotocol, ...] = Field(
        SUBPROTOCOLS, min_length=1, description="OCPP versions accepted from this charger."
    )
    authorize: Literal["accept_all", "local_list"] = Field(
        "accept_all",
        description="standalone: Authorize everyone, or only idTags in local_list_file.",
    )
    local_list_file: Path | None = Field(
        None, description="standalone: one idTag/idToken per line; # starts a comment."
    )
    heartbeat_interval: Duration = Field(
        300, ge=10, le=86400, description="standalone: the interval BootNotification asks for."
    )

    _local_list: frozenset[str] = PrivateAttr(default=frozenset())

    @field_validator("upstream")
    @classmethod
    def _ws_url(cls, v: str | None) -> str | None:
        if v is None:
            return v
        parts = urlsplit(v)
        if parts.scheme not in ("ws", "wss") or not parts.hostname:
            raise ValueError("must be a ws:// or wss:// URL with a host")
        if parts.query or parts.fragment or parts.username or parts.password:
            raise ValueError("must not carry a query, fragment or credentials")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> OcppSensor:
        if self.mode == "proxy":
            if self.upstream is None:
                raise ValueError("proxy mode needs `upstream:`, the operator's CSMS URL")
            if self.authorize != "accept_all" or self.local_list_file is not None:
                raise ValueError("authorize and local_list_file apply to standalone mode only")
            sends_credentials = self.upstream_auth != "none"
            if (
                self.upstream.startswith("ws://")
                and sends_credentials
                and not self.insecure_upstream
            ):
                raise ValueError(
                    "upstream is ws:// (cleartext) and credentials would be sent: use wss://, "
                    "set upstream_auth: none, or insecure_upstream: true"
                )
        else:
            if self.upstream is not None:
                raise ValueError("standalone mode has no upstream: the gateway is the CSMS")
            if (self.authorize == "local_list") != (self.local_list_file is not None):
                raise ValueError("authorize: local_list needs local_list_file, and only then")
        if self.local_list_file is not None:
            self._local_list = _load_local_list(self.local_list_file)
        return self

    @property
    def local_list(self) -> frozenset[str]:
        """The standalone allow-list, case-folded (idTag and idToken are case-insensitive)."""
        return self._local_list

    def upstream_url(self) -> str:
        if self.upstream is None:
            raise AssertionError("self.upstream is not None")
        return f"{self.upstream.rstrip('/')}/{self.charge_box_id}"


def _load_local_list(path: Path) -> frozenset[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"local_list_file: cannot read: {_why(e)}") from None
    tags = [line.split("#", 1)[0].strip() for line in text.splitlines()]
    tags = [t for t in tags if t]
    if len(tags) > MAX_LOCAL_LIST:
        raise ValueError(f"local_list_file: more than {MAX_LOCAL_LIST} entries")
    if any(len(t) > 36 for t in tags):  # never echo a tag: they identify people
        raise ValueError("local_list_file: an entry is longer than 36 characters")
    return frozenset(t.casefold() for t in tags)


class ServerTls(Strict):
    """The certificate chargers see (OCPP security profile 2): TLS 1.2 or newer."""

    cert_file: Path = Field(description="PEM certificate chain of the gateway's OCPP endpoint.")
    key_file: Path = Field(description="PEM private key.")

    def context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(self.cert_file, self.key_file)
        return ctx

    @model_validator(mode="after")
    def _loadable(self) -> ServerTls:
        try:
            self.context()
        except (OSError, ssl.SSLError) as e:
            raise ValueError(f"cannot load the certificate and key: {_why(e)}") from None
        return self


class InputsOcpp(Strict):
    """`inputs.ocpp`: where chargers connect and what the tap tolerates."""

    host: str = Field("0.0.0.0", description="Listen address for chargers.")
    port: int = Field(8180, ge=0, le=65535, description="Listen port (0: any free port).")
    tls: ServerTls | None = Field(None, description="wss:// for chargers; unset: plain ws://.")
    max_frame_bytes: Size = Field(
        65536, ge=256, le=16 * 2**20, description="Largest frame a charger may send."
    )
    max_upstream_frame_bytes: Size = Field(
        2**20, ge=256, le=64 * 2**20, description="Largest frame the operator may send."
    )
    max_frames_per_s: float = Field(
        50, gt=0, description="Sustained frames per second a charger may send (token bucket)."
    )
    burst: int = Field(500, ge=1, description="Frames a charger may send at once above the rate.")
    max_connections: int = Field(256, ge=1, description="Open or opening charger connections.")
    handshake_timeout: Duration = Field(
        15, gt=0, le=300, description="A charger's opening handshake, upstream included."
    )
    upstream_connect_timeout: Duration = Field(
        10, gt=0, le=300, description="How long a charger's handshake waits for the upstream."
    )
    upstream_backoff_max: Duration = Field(
        60, gt=0, description="Longest pause between upstream attempts for one charger."
    )
    ping_interval: PositiveDuration | None = Field(
        20, description="WebSocket ping to each peer, to find dead links; null: none."
    )

    @model_validator(mode="after")
    def _timeouts(self) -> InputsOcpp:
        if self.upstream_connect_timeout >= self.handshake_timeout:
            raise ValueError("upstream_connect_timeout must be shorter than handshake_timeout")
        return self
