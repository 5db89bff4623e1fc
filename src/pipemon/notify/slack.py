"""Slack incoming webhooks: a Block Kit message with a plain `text` fallback (what push
notifications and screen readers show).

Slack answers 200 "ok"; its errors are 4xx with a short code in the body (400 invalid_payload,
403 action_prohibited, 404 no_service, 410 channel_is_archived): permanent, except 429 (rate limited,
with Retry-After).
"""
from __future__ import annotations

from typing import Any

from pipemon.model import AlertView, Notification
from pipemon.notify.base import HttpChannel, HttpChannelConfig, HttpRequest, SecretUrl
from pipemon.notify.render import emoji, label, oneline, title, truncate

MAX_ALERTS = 10       # a message holds at most 50 blocks; each alert takes up to 3
HEADER_LIMIT = 150    # Slack's cap on a header block's text
ERROR_EXCERPT = 500


class SlackConfig(HttpChannelConfig):
    webhook_url: SecretUrl
    send_resolved: bool = False


def esc(s: str) -> str:
    """Slack mrkdwn treats <…> as links and mentions: escape the three control characters."""
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _field(name: str, value: str) -> dict[str, str]:
    return {"type": "mrkdwn", "text": f"*{name}*\n{value}"}


def alert_blocks(a: AlertView) -> list[dict[str, Any]]:
    text = f"*{esc(truncate(oneline(a.summary), 300))}*"
    if a.description:
        text += "\n" + esc(truncate(a.description, 2500))
    fields = [_field("Pipeline", f"`{esc(a.pipeline)}`"), _field("Team", esc(a.team)),
              _field("Kind", esc(a.kind)), _field("Severity", a.severity.value)]
    if a.run_id:
        fields.append(_field("Run", f"`{esc(a.run_id)}`"))
    if a.failed_task:
        fields.append(_field("Failed task", f"`{esc(a.failed_task)}`"))
    if a.root_cause:
        fields.append(_field("Root cause", f"`{esc(a.root_cause)}`"))
    section: dict[str, Any] = {"type": "section", "text": {"type": "mrkdwn", "text": text}, "fields": fields}
    if a.url:
        section["accessory"] = {"type": "button", "text": {"type": "plain_text", "text": "Open in pipemon"},
                                "url": a.url}
    blocks = [section]
    if a.error:
        excerpt = esc(truncate(a.error.strip(), ERROR_EXCERPT)).replace("```", "'''")
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": f"```{excerpt}```"}})
    return blocks


def message(n: Notification) -> dict[str, Any]:
    head = f"{emoji(n)} {label(n)}: {oneline(title(n))}"
    blocks: list[dict[str, Any]] = [
        {"type": "header",
         "text": {"type": "plain_text", "text": truncate(head, HEADER_LIMIT), "emoji": True}}]
    for i, a in enumerate(n.alerts[:MAX_ALERTS]):
        if i:
            blocks.append({"type": "divider"})
        blocks += alert_blocks(a)
    if len(n.alerts) > MAX_ALERTS:
        more = len(n.alerts) - MAX_ALERTS
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": f"…and {more} more"}]})
    return {"text": truncate(head, 3000), "blocks": blocks}


class SlackChannel(HttpChannel[SlackConfig]):
    kind = "slack"
    config_model = SlackConfig
    default_rate = (1.0, 10)  # incoming webhooks: one message a second, short bursts allowed

    def build(self, n: Notification) -> list[HttpRequest]:
        return [HttpRequest("POST", self.config.webhook_url.get_secret_value(), message(n))]
