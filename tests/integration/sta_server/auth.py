"""HTTP Basic or Bearer authentication for the test server, from django-ninja's own classes.

The credential comes from STA_AUTH in the environment (`basic:<user>:<password>` or
`bearer:<token>`); a request without it gets the package's 401.
"""

from __future__ import annotations

import hmac
import os
from typing import Any

from ninja.security import HttpBasicAuth, HttpBearer

_kind, _, _secret = os.environ.get("STA_AUTH", "none").partition(":")


class _Basic(HttpBasicAuth):
    def authenticate(self, request: Any, username: str, password: str) -> str | None:
        ok = hmac.compare_digest(f"{username}:{password}", _secret)
        return username if ok else None


class _Bearer(HttpBearer):
    def authenticate(self, request: Any, token: str) -> str | None:
        return token if hmac.compare_digest(token, _secret) else None


handler = _Basic() if _kind == "basic" else _Bearer()
