"""Keeping secrets out of reprs, errors and logs.

Secrets are routing keys, passwords and tokens (pydantic SecretStr) and URLs whose path or query is
the credential, like a Slack webhook (SecretUrl here). Their repr/str/model_dump show them masked;
`redact()` scrubs any text built from a response or an exception before it leaves a channel. The
string rules themselves live in `pipemon_client.redact`, shared with the light client.
"""
from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from typing import Annotated, Any
from urllib.parse import urlsplit

from pipemon_client.redact import REDACTED, redact, redact_url, url_secrets
from pydantic import AfterValidator, BaseModel, GetCoreSchemaHandler, SecretStr
from pydantic_core import core_schema

__all__ = ["REDACTED", "HttpUrl", "RedactUrls", "SecretUrl", "check_http_url", "redact", "redact_httpx_logs",
           "redact_url", "secrets_of", "url_secrets"]


def check_http_url(url: str) -> str:
    # The message never echoes the value: it may be a secret URL.
    try:
        p = urlsplit(url)
        ok = p.scheme in ("http", "https") and bool(p.hostname) and not any(c.isspace() for c in url)
        p.port  # noqa: B018 -- raises ValueError on a bad port
    except ValueError:
        ok = False
    if not ok:
        raise ValueError("expected an http:// or https:// URL with a host")
    return url


HttpUrl = Annotated[str, AfterValidator(check_http_url)]


class SecretUrl:
    """An http(s) URL whose credentials, path and query are secret. Shows as scheme://host/<redacted>;
    `get_secret_value()` gives the real one."""

    __slots__ = ("_url",)

    def __init__(self, url: str) -> None:
        self._url = check_http_url(url)

    def get_secret_value(self) -> str:
        return self._url

    def __str__(self) -> str:
        return redact_url(self._url)

    def __repr__(self) -> str:
        return f"SecretUrl({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SecretUrl) and other._url == self._url

    def __hash__(self) -> int:
        return hash(self._url)

    @classmethod
    def _coerce(cls, v: Any) -> SecretUrl:
        if isinstance(v, SecretUrl):
            return v
        if not isinstance(v, str):  # ValueError: pydantic turns only that into a validation error
            raise ValueError("expected an http:// or https:// URL with a host")  # noqa: TRY004
        return cls(v.strip())

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any,
                                     handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        return core_schema.no_info_plain_validator_function(
            cls._coerce, serialization=core_schema.plain_serializer_function_ser_schema(str))


def secrets_of(value: Any) -> Iterator[str]:
    """Every secret string inside a config model, found by type: no per-integration list to forget."""
    if isinstance(value, SecretStr):
        yield value.get_secret_value()
    elif isinstance(value, SecretUrl):
        yield from url_secrets(value.get_secret_value())
    elif isinstance(value, BaseModel):
        for name in type(value).model_fields:
            yield from secrets_of(getattr(value, name))
    elif isinstance(value, (tuple, list)):
        for v in value:
            yield from secrets_of(v)


_URL = re.compile(r"\bhttps?://[^\s\"'<>]+")


class RedactUrls(logging.Filter):
    """Masks URL paths in a logger's records. httpx logs every request's full URL at INFO, which for
    Slack is the credential: the composition root installs this on the "httpx" logger."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = _URL.sub(lambda m: redact_url(m.group()), record.getMessage())
        record.args = None
        return True


def redact_httpx_logs() -> None:
    """Install RedactUrls on httpx's logger (once)."""
    logger = logging.getLogger("httpx")
    if not any(isinstance(f, RedactUrls) for f in logger.filters):
        logger.addFilter(RedactUrls())
