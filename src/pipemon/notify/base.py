"""What every channel shares: its config base, secrets and redaction, the error a send raises, the
HTTP send loop, and the registry that maps a YAML key (`slack:`) to a channel class.

    Channel                 kind, config, send_resolved; build() is pure, send() does the I/O
    ├── HttpChannel         build() -> [HttpRequest], sent through an injected httpx.Client
    │   └── PagerDutyChannel, SlackChannel, WebhookChannel
    └── EmailChannel        build() -> [EmailMessage], sent over smtplib

    TransportError          permanent=True stops retries; otherwise retry (after retry_after when known)
    └── DeliveryError       a receiver's channels failed (see notify/__init__.py)

Secrets (routing keys, webhook URLs, passwords, tokens) live in SecretStr / SecretUrl fields, so the
configs' repr, str and model_dump show them masked; every error message is scrubbed of them too.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from types import MappingProxyType
from typing import Annotated, Any, ClassVar, Generic, TypeVar

import httpx
import msgspec
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    WrapValidator,
    create_model,
)

from pipemon.errors import PipemonError, Problem
from pipemon.model import AlertState, Notification, NotifyAction
from pipemon.notify.redact import REDACTED, HttpUrl, SecretUrl, redact, redact_url, secrets_of, url_secrets

__all__ = ["REDACTED", "Channel", "ChannelConfig", "HttpChannel", "HttpChannelConfig", "HttpRequest",
           "HttpUrl", "ReceiverConfigBase", "Registry", "SecretUrl", "Strict", "Timeout", "TransportError",
           "is_permanent_status", "make_registry", "problems", "receiver_config_model", "redact",
           "redact_url", "retry_after", "url_secrets"]

# --- config -----------------------------------------------------------------------------------------------

def _duration(v: Any) -> Any:
    # Imported late: config.py will import this package for its `receivers:` section.
    from pipemon.config import parse_duration
    return parse_duration(v)


Timeout = Annotated[float, BeforeValidator(_duration), Field(gt=0, le=300)]


class Strict(BaseModel):
    """Unknown keys are errors; inputs are never echoed in errors (they may be secrets)."""

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True, populate_by_name=True)


class ChannelConfig(Strict):
    send_resolved: bool = True  # each integration sets its own default, as Alertmanager does

    def secrets(self) -> list[str]:
        return [s for s in secrets_of(self) if s]


class HttpChannelConfig(ChannelConfig):
    timeout: Timeout = 10.0


# --- errors -----------------------------------------------------------------------------------------------

class TransportError(PipemonError):
    """A delivery failed. permanent: retrying cannot help (bad config, rejected payload).
    retry_after: seconds the far end asked us to wait (429 / 503 Retry-After)."""

    def __init__(self, message: str, permanent: bool = False, retry_after: float | None = None,
                 *, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.permanent = permanent
        self.retry_after = retry_after
        self.status = status

    def redacted(self, secrets: Iterable[str]) -> TransportError:
        return TransportError(redact(self.message, secrets), self.permanent, self.retry_after,
                              status=self.status)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.message!r}, permanent={self.permanent}, "
                f"retry_after={self.retry_after})")


def retry_after(resp: httpx.Response) -> float | None:
    """Retry-After as seconds or an HTTP date (measured against the response's own Date: no clock)."""
    v = resp.headers.get("retry-after")
    if v is None:
        return None
    try:
        return max(0.0, float(v))
    except ValueError:
        pass
    try:
        wait = parsedate_to_datetime(v) - parsedate_to_datetime(resp.headers["date"])
        return max(0.0, wait.total_seconds())
    except (KeyError, TypeError, ValueError):
        return None


def is_permanent_status(status: int) -> bool:
    # 3xx too: we do not follow redirects, so the URL needs fixing. 408 and 429 are worth retrying.
    return 300 <= status < 500 and status not in (408, 429)


# --- channels ---------------------------------------------------------------------------------------------

C = TypeVar("C", bound=ChannelConfig)


class Channel(ABC, Generic[C]):
    kind: ClassVar[str]
    config_model: ClassVar[type[ChannelConfig]]
    # what the far end tolerates, as (messages a second, burst), when the receiver sets no rate_limit
    default_rate: ClassVar[tuple[float, int]] = (20.0, 50)

    def __init__(self, config: C, *, name: str | None = None) -> None:
        self.config = config
        self.name = name or self.kind  # receiver/kind[i] when built from a receiver

    @property
    def send_resolved(self) -> bool:
        return self.config.send_resolved

    def select(self, n: Notification) -> Notification | None:
        """What this channel should get of `n`: without send_resolved, resolved alerts are dropped
        (and a notification left with none is not sent), as in Alertmanager."""
        if self.send_resolved:
            return n
        alerts = tuple(a for a in n.alerts if a.state is not AlertState.RESOLVED)
        if n.action is NotifyAction.RESOLVE or (n.alerts and not alerts):
            return None
        return n if len(alerts) == len(n.alerts) else msgspec.structs.replace(n, alerts=alerts)

    @abstractmethod
    def build(self, n: Notification) -> Sequence[Any]:
        """The request(s) for `n`: pure, deterministic, no clock."""

    @abstractmethod
    def send(self, n: Notification, http: httpx.Client) -> None:
        """Deliver `n` or raise TransportError."""

    def error(self, message: str, permanent: bool, retry_after: float | None = None,
              status: int | None = None) -> TransportError:
        return TransportError(redact(f"{self.name}: {message}", self.config.secrets()), permanent,
                              retry_after, status=status)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, {self.config!r})"


@dataclass(frozen=True, repr=False)
class HttpRequest:
    method: str
    url: str
    json: Any
    headers: Mapping[str, str] = field(default_factory=dict)

    def __repr__(self) -> str:  # the URL, headers and body may all hold secrets
        return f"HttpRequest({self.method} {redact_url(self.url)})"


H = TypeVar("H", bound=HttpChannelConfig)


class HttpChannel(Channel[H]):
    """build() returns HttpRequests; send() posts them in order and classifies the outcome."""

    def send(self, n: Notification, http: httpx.Client) -> None:
        for req in self.build(n):
            self.post(req, http)

    def post(self, req: HttpRequest, http: httpx.Client) -> httpx.Response:
        where = f"{req.method} {redact_url(req.url)}"
        try:
            resp = http.request(req.method, req.url, json=req.json, headers=dict(req.headers),
                                timeout=self.config.timeout)
        except httpx.TimeoutException:
            raise self.error(f"{where}: timed out", permanent=False) from None
        except httpx.UnsupportedProtocol:
            raise self.error(f"{where}: unsupported protocol", permanent=True) from None
        except httpx.HTTPError as e:  # connection refused, reset, DNS, protocol errors
            raise self.error(f"{where}: {type(e).__name__}: {e}", permanent=False) from None
        if resp.is_success:
            return resp
        # Scrub before cutting: a cut could leave half a secret that redact() no longer recognises.
        excerpt = redact(" ".join(resp.text.split()), self.config.secrets())[:200]
        raise self.error(f"{where}: HTTP {resp.status_code} {resp.reason_phrase}"
                         + (f": {excerpt}" if excerpt else ""),
                         permanent=is_permanent_status(resp.status_code),
                         retry_after=retry_after(resp), status=resp.status_code)


# --- registry and receiver config -------------------------------------------------------------------------

Registry = Mapping[str, type[Channel[Any]]]


def make_registry(*channels: type[Channel[Any]]) -> Registry:
    reg: dict[str, type[Channel[Any]]] = {}
    for c in channels:
        if c.kind in reg or not c.kind.isidentifier() or c.kind == "name":
            raise ValueError(f"channel kind {c.kind!r} is taken or not a valid YAML key")
        reg[c.kind] = c
    return MappingProxyType(reg)


class RateLimit(Strict):
    """At most `per_second` messages a second to a receiver, after a burst of `burst`."""

    per_second: float = Field(gt=0)
    burst: int = Field(default=1, ge=1)


class ReceiverConfigBase(Strict):
    """A receiver: a name, an optional rate limit and any number of integrations, each key holding one
    mapping or a list."""

    name: str = Field(min_length=1)
    rate_limit: RateLimit | None = None

    def integrations(self) -> list[tuple[str, int, ChannelConfig]]:
        return [(kind, i, c) for kind in type(self).model_fields if kind not in ("name", "rate_limit")
                for i, c in enumerate(getattr(self, kind))]


def _one_or_many(model: type[ChannelConfig]) -> Any:
    def validate(v: Any, handler: Any) -> Any:
        if isinstance(v, (dict, ChannelConfig)):
            return (model.model_validate(v),)  # errors then read slack.webhook_url, not slack[0]…
        if isinstance(v, (list, tuple)):
            return handler(v)
        raise ValueError("expected a mapping, or a list of mappings")
    return WrapValidator(validate)


def _field_type(model: type[ChannelConfig]) -> Any:
    return Annotated[tuple[model, ...], _one_or_many(model)]  # type: ignore[valid-type]


def receiver_config_model(registry: Registry) -> type[ReceiverConfigBase]:
    """The pydantic model of one `receivers:` item, with a key per registered integration, so that
    config.py can embed it and get file:line errors like any other section."""
    fields: dict[str, Any] = {kind: (_field_type(cls.config_model), ()) for kind, cls in registry.items()}
    return create_model("ReceiverConfig", __base__=ReceiverConfigBase, **fields)


def problems(e: ValidationError, prefix: tuple[str | int, ...] = (),
             kinds: Iterable[str] = ()) -> list[Problem]:
    """pydantic errors as Problems whose loc is the key path: `receivers[0].slack.webhok_url`."""
    out = []
    for err in e.errors():
        loc = prefix + tuple(err["loc"])
        path = "".join(f"[{k}]" if isinstance(k, int) else (f".{k}" if i else str(k))
                       for i, k in enumerate(loc))
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
            if len(err["loc"]) == 1 and kinds:
                msg += f" (integrations: {', '.join(sorted(kinds))})"
        else:
            msg = err["msg"].removeprefix("Value error, ")
        out.append(Problem(path, msg))
    return out
