"""Django settings for the SensorThings test server (django-ogc-sensorthings from PyPI).

Read from the environment by the `sta_server` fixture's child process: STA_DB (SQLite file),
STA_PORT, and STA_AUTH (`none`, `basic:<user>:<password>` or `bearer:<token>`). Configured as
close to OGC 18-088 as the package allows: integer-free UUID ids quoted in paths, the dataArray
extension on, and nothing else changed. Test only: never a deployment recipe.
"""

from __future__ import annotations

import os
from uuid import UUID

SECRET_KEY = "street-gateway-tests-only"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
USE_TZ = True
TIME_ZONE = "UTC"
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "sensorthings.versions.v1_1",
    "sensorthings.versions.v1_1.backends.django",
    "sensorthings.versions.v1_1.extensions.dataarray",
]
MIDDLEWARE: list[str] = []
ROOT_URLCONF = "tests.integration.sta_server.urls"
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ["STA_DB"],
        # runserver serves requests on threads: wait for SQLite's lock rather than fail
        "OPTIONS": {"timeout": 30, "transaction_mode": "IMMEDIATE",
                    "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"},
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
LOGGING = {"version": 1, "disable_existing_loggers": False,
           "handlers": {"stderr": {"class": "logging.StreamHandler"}},
           "root": {"handlers": ["stderr"], "level": "WARNING"}}

SENSORTHINGS_V1_1_SERVICE_URL = f"http://127.0.0.1:{os.environ['STA_PORT']}/sensorthings"
SENSORTHINGS_V1_1_BACKEND_ADAPTER = (
    "sensorthings.versions.v1_1.backends.django.adapter.DjangoBackendAdapter"
)
SENSORTHINGS_V1_1_ID_TYPE = UUID
SENSORTHINGS_V1_1_ID_DELIMITER = "'"
SENSORTHINGS_V1_1_DOCS_ENABLED = False

_auth = os.environ.get("STA_AUTH", "none")
if _auth != "none":
    SENSORTHINGS_V1_1_DEFAULT_AUTH_HANDLER = ["tests.integration.sta_server.auth.handler"]
