"""Keeping secrets out of reprs, errors and logs.

Secrets are routing keys, passwords and tokens (pydantic SecretStr) and URLs whose path or query is
the credential, like a Slack webhook (SecretUrl here). Their repr/str/model_dump show them masked;
`redact()` scrubs any text built from a response or an exception before it leaves a channel.
"""
from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator
from typing import Annotated, Any
from urllib.parse import quote, urlsplit, urlunsplit

from pydantic import AfterValidator, BaseModel, GetCoreSchemaHandler, SecretStr
from pydantic_core import core_schema

REDACTED = "<redacted>"


def redact(text: str, secrets: Iterable[str]) -> str:
    """`text` with each secret, raw or URL-encoded, replaced by <redacted> (longest first, so a URL
    goes whole before its token does)."""
    variants = {v for s in secrets if s for v in (s, quote(s, safe=""))}
    for s in sorted(variants, key=len, reverse=True):
        text = text.replace(s, REDACTED)
    return text


# Credentials as they show up in a job's output or stack trace: key=value / key: value pairs, URL user
# info, bearer tokens, AWS access key ids, Slack webhook paths. Keys are matched loosely (db_password,
# SNOWFLAKE_TOKEN); the value is cut at whitespace, a quote or a separator.
_CREDENTIAL_PAIR = re.compile(
    r"(?i)\b([\w.-]*(?:password|passwd|pwd|secret|token|api[_-]?key|access[_-]?key|private[_-]?key|"
    r"credentials?|authorization)[\w.-]*[\"']?\s*[:=]\s*[\"']?)(?!<redacted>|(?i:bearer|basic)\s)([^\s\"',;&]+)")
_BEARER = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}")
_URL_USERINFO = re.compile(r"(\b[a-z][a-z0-9+.-]*://[^\s:/@]+):[^\s@/]+@", re.IGNORECASE)
_AWS_KEY = re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b")
_SLACK_HOOK = re.compile(r"https://hooks\.slack\.com/\S+")


def redact_output(text: str) -> str:
    """A command's output or a stack trace with the credentials it may print masked, before it is stored
    or shown in a notification."""
    text = _SLACK_HOOK.sub(lambda m: redact_url(m.group()), text)
    text = _URL_USERINFO.sub(rf"\1:{REDACTED}@", text)
    text = _BEARER.sub(lambda m: f"{m.group(1)} {REDACTED}", text)
    text = _AWS_KEY.sub(REDACTED, text)
    return _CREDENTIAL_PAIR.sub(lambda m: m.group(1) + REDACTED, text)


def redact_url(url: str) -> str:
    """scheme://host[:port] and nothing else: credentials, path and query may all hold tokens."""
    try:
        p = urlsplit(url)
        host = p.hostname or ""
        port = p.port
    except ValueError:
        return REDACTED
    netloc = (f"[{host}]" if ":" in host else host) + (f":{port}" if port else "")
    path = "/" + REDACTED if p.path.strip("/") or p.query or p.fragment else p.path
    return urlunsplit((p.scheme, netloc, path, "", ""))


def url_secrets(url: str) -> list[str]:
    """What of a secret URL must not appear anywhere: the URL, its path and query, its password, and
    its long path segments and query values (the tokens)."""
    p = urlsplit(url)
    out = [url]
    if p.path.strip("/") or p.query:
        out.append(p.path + (f"?{p.query}" if p.query else ""))
    if p.password:
        out.append(p.password)
    out += [s for s in re.split(r"[/?&=]", f"{p.path}?{p.query}") if len(s) >= 16]
    return out


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
