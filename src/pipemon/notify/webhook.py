"""A generic webhook in Alertmanager's format (version 4), so anything that consumes Alertmanager's
webhook (Alerta, Karma's bridges, custom receivers) consumes pipemon's; plus a `pipemon` object
with what v4 cannot say (the action: acknowledge, escalate…).

Every request carries `Idempotency-Key: <notification key>`: a retry after a lost response has the
same key, so a receiver that deduplicates can.
"""
from __future__ import annotations

import base64
from typing import Any

from pydantic import Field, SecretStr, model_validator

from pipemon.model import AlertView, Notification, NotifyAction
from pipemon.notify.base import HttpChannel, HttpChannelConfig, HttpRequest, SecretUrl, Strict
from pipemon.notify.render import GO_ZERO_TIME, is_resolved, iso


class BasicAuth(Strict):
    username: str
    password: SecretStr


class HttpConfig(Strict):
    bearer_token: SecretStr | None = None
    basic_auth: BasicAuth | None = None

    @model_validator(mode="after")
    def _one_auth(self) -> HttpConfig:
        if self.bearer_token is not None and self.basic_auth is not None:
            raise ValueError("bearer_token and basic_auth are exclusive")
        return self

    def headers(self) -> dict[str, str]:
        if self.bearer_token is not None:
            return {"Authorization": f"Bearer {self.bearer_token.get_secret_value()}"}
        if self.basic_auth is not None:
            pair = f"{self.basic_auth.username}:{self.basic_auth.password.get_secret_value()}"
            return {"Authorization": "Basic " + base64.b64encode(pair.encode()).decode()}
        return {}


class WebhookConfig(HttpChannelConfig):
    url: SecretUrl
    send_resolved: bool = True
    max_alerts: int = Field(default=0, ge=0)  # 0: all
    http_config: HttpConfig = HttpConfig()

    def secrets(self) -> list[str]:
        # The encoded Basic credentials are as secret as the password they encode.
        auth = self.http_config.headers().get("Authorization", "").partition(" ")[2]
        return super().secrets() + ([auth] if auth else [])


def _alert(n: Notification, a: AlertView) -> dict[str, Any]:
    resolved = is_resolved(n, a)
    annotations = {"summary": a.summary, "description": a.description}
    for k in ("run_id", "error", "failed_task", "output", "root_cause", "root_cause_team"):
        if (v := getattr(a, k)) is not None:
            annotations[k] = v
    return {
        "status": "resolved" if resolved else "firing",
        # Alertmanager consumers key on alertname; the pipeline's own labels win if they set one.
        "labels": {"alertname": a.kind, **a.labels},
        "annotations": annotations,
        "startsAt": iso(a.started_at),
        "endsAt": iso(a.resolved_at if a.resolved_at is not None else n.time) if resolved else GO_ZERO_TIME,
        "generatorURL": a.url or "",
        "fingerprint": a.fingerprint,
    }


def _common(maps: list[dict[str, str]]) -> dict[str, str]:
    if not maps:
        return {}
    return {k: v for k, v in maps[0].items() if all(m.get(k) == v for m in maps[1:])}


def body(n: Notification, max_alerts: int = 0) -> dict[str, Any]:
    alerts = [_alert(n, a) for a in n.alerts]
    shown = alerts[:max_alerts] if max_alerts else alerts
    firing = any(a["status"] == "firing" for a in alerts) if alerts else n.action is not NotifyAction.RESOLVE
    return {
        "version": "4",
        "groupKey": n.group_key,
        "truncatedAlerts": len(alerts) - len(shown),
        "status": "firing" if firing else "resolved",
        "receiver": n.receiver,
        "groupLabels": dict(n.group_labels),
        # Over all alerts, truncated or not, as Alertmanager computes them.
        "commonLabels": _common([a["labels"] for a in alerts]),
        "commonAnnotations": _common([a["annotations"] for a in alerts]),
        "externalURL": n.external_url or "",
        "alerts": shown,
        "pipemon": {"action": n.action.value, "notification_key": n.key, "notification_id": n.id},
    }


class WebhookChannel(HttpChannel[WebhookConfig]):
    kind = "webhook"
    config_model = WebhookConfig

    def build(self, n: Notification) -> list[HttpRequest]:
        headers = {"Idempotency-Key": n.key, **self.config.http_config.headers()}
        url = self.config.url.get_secret_value()
        return [HttpRequest("POST", url, body(n, self.config.max_alerts), headers)]
