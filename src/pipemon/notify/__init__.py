"""Notification channels: a receiver's integrations and how to deliver a Notification through them.

    receivers = build_receivers(settings.receivers)        # validated once, at startup
    receivers[n.receiver].send(n, http)                    # -> names of the channels that delivered

A receiver sends through each of its channels that should get the notification (a resolve only to
those with send_resolved). If any channel fails it raises DeliveryError, a TransportError that is
permanent only when no failure is worth retrying; its `settled` names the channels not to send to
again, so the outbox can pass them as `skip=` on the retry and nobody gets the message twice.
"""
from __future__ import annotations

import logging
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
from pydantic import BaseModel, ValidationError

from pipemon.errors import ConfigError, Problem
from pipemon.model import Notification
from pipemon.notify.base import (
    Channel,
    ChannelConfig,
    HttpRequest,
    ReceiverConfigBase,
    Registry,
    TransportError,
    make_registry,
    problems,
    receiver_config_model,
    redact,
)
from pipemon.notify.email import EmailChannel, EmailConfig, SmtpConfig
from pipemon.notify.log import LogChannel, LogConfig
from pipemon.notify.pagerduty import PagerDutyChannel, PagerDutyConfig
from pipemon.notify.redact import RedactUrls, SecretUrl, redact_httpx_logs, redact_url
from pipemon.notify.slack import SlackChannel, SlackConfig
from pipemon.notify.webhook import WebhookChannel, WebhookConfig

__all__ = ["REGISTRY", "Channel", "ChannelConfig", "DeliveryError", "EmailChannel", "EmailConfig",
           "HttpRequest", "LogChannel", "LogConfig", "PagerDutyChannel", "PagerDutyConfig", "Receiver",
           "ReceiverConfig", "RedactUrls",
           "SecretUrl", "SlackChannel", "SlackConfig", "SmtpConfig", "TransportError", "WebhookChannel",
           "WebhookConfig", "build_receivers", "redact", "redact_httpx_logs", "redact_url"]

log = logging.getLogger(__name__)

# Adding an integration: write its module (config model, build, send) and list its class here.
REGISTRY: Registry = make_registry(PagerDutyChannel, SlackChannel, WebhookChannel, EmailChannel, LogChannel)

# One `receivers:` item; config.py embeds it so its errors get file:line like any other key.
ReceiverConfig = receiver_config_model(REGISTRY)


class DeliveryError(TransportError):
    """Some of a receiver's channels failed. `failures` maps channel name -> its TransportError."""

    def __init__(self, receiver: str, failures: Mapping[str, TransportError],
                 delivered: tuple[str, ...]) -> None:
        transient = [e for e in failures.values() if not e.permanent]
        wait = max((e.retry_after for e in transient if e.retry_after is not None), default=None)
        tried = len(failures) + len(delivered)
        super().__init__(f"{receiver}: {len(failures)} of {tried} channel(s) failed: "
                         + "; ".join(e.message for e in failures.values()),
                         permanent=not transient, retry_after=wait)
        self.receiver = receiver
        self.failures = dict(failures)
        self.delivered = delivered

    @property
    def settled(self) -> frozenset[str]:
        """Channels a retry must skip: delivered, or failed for good."""
        return frozenset(self.delivered) | {name for name, e in self.failures.items() if e.permanent}


@dataclass(frozen=True)
class Receiver:
    name: str
    channels: tuple[Channel[Any], ...]
    rate: tuple[float, int] | None = None  # (messages a second, burst); None: what its channels tolerate

    @property
    def rate_limit(self) -> tuple[float, int]:
        """The receiver's own rate limit, else the strictest of its channels' defaults."""
        if self.rate is not None:
            return self.rate
        return min((ch.default_rate for ch in self.channels), default=Channel.default_rate)

    def targets(self, n: Notification) -> list[tuple[Channel[Any], Notification]]:
        """Which channels get `n`, and what of it (pure)."""
        return [(ch, sub) for ch in self.channels if (sub := ch.select(n)) is not None]

    def send(self, n: Notification, http: httpx.Client, *, skip: Collection[str] = ()) -> tuple[str, ...]:
        """Deliver through every target channel not in `skip`; return the names that delivered.
        Raises DeliveryError if any failed (after trying all of them)."""
        if n.receiver != self.name:
            raise ValueError(f"notification {n.id} is for {n.receiver!r}, not {self.name!r}")
        delivered: list[str] = []
        failures: dict[str, TransportError] = {}
        # Each channel scrubs its own secrets; scrub with all of the receiver's, in case one echoes another's.
        secrets = [s for ch in self.channels for s in ch.config.secrets()]
        for ch, sub in self.targets(n):
            if ch.name in skip:
                continue
            try:
                ch.send(sub, http)
            except TransportError as e:
                failures[ch.name] = err = e.redacted(secrets)
                log.warning("notification %s (%s) via %s failed (%s): %s", n.id, n.action, ch.name,
                            "permanent" if err.permanent else "will retry", err.message)
            except Exception as e:  # a bug in one channel must not keep the others from delivering
                log.exception("notification %s via %s: unexpected %s", n.id, ch.name, type(e).__name__)
                failures[ch.name] = TransportError(f"{ch.name}: internal error: {type(e).__name__}: {e}",
                                                   permanent=False).redacted(secrets)
            else:
                delivered.append(ch.name)
                log.info("notification %s (%s) delivered via %s", n.id, n.action, ch.name)
        if failures:
            raise DeliveryError(self.name, failures, tuple(delivered))
        return tuple(delivered)


def build_receivers(configs: Iterable[Mapping[str, Any] | BaseModel],
                    registry: Registry = REGISTRY) -> dict[str, Receiver]:
    """Receivers by name from `receivers:` items: raw mappings (validated here), ReceiverConfig models,
    or other models that dump to the same shape. Raises ConfigError naming each bad key, all at once."""
    model = ReceiverConfig if registry is REGISTRY else receiver_config_model(registry)
    out: dict[str, Receiver] = {}
    errors: list[Problem] = []
    for i, raw in enumerate(configs):
        try:
            cfg = raw if isinstance(raw, ReceiverConfigBase) else model.model_validate(
                raw.model_dump(by_alias=True) if isinstance(raw, BaseModel) else raw)
        except ValidationError as e:
            errors += problems(e, ("receivers", i), registry.keys())
            continue
        if cfg.name in out:
            errors.append(Problem(f"receivers[{i}].name", f"duplicate receiver name {cfg.name!r}"))
            continue
        channels = tuple(registry[kind](c, name=f"{cfg.name}/{kind}[{j}]")
                         for kind, j, c in cfg.integrations())
        lim = cfg.rate_limit
        out[cfg.name] = Receiver(cfg.name, channels, None if lim is None else (lim.per_second, lim.burst))
    if errors:
        raise ConfigError(errors)
    return out
