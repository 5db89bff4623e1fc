"""Email over SMTP with the standard library: one message (text + HTML) to all recipients.

SMTP 5xx replies are permanent (bad recipient, auth refused); 4xx replies, timeouts and connection
errors are transient. The Message-ID derives from the notification key, so a message re-sent after a
lost reply threads and deduplicates as the same message in mail clients.
"""
from __future__ import annotations

import html
import logging
import re
import smtplib
import ssl
from collections.abc import Callable
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr

import httpx
from pydantic import Field, SecretStr, field_validator, model_validator

from pipemon.model import AlertView, Notification
from pipemon.notify.base import Channel, ChannelConfig, Strict, Timeout
from pipemon.notify.render import emoji, is_resolved, iso, label, oneline, title, truncate

log = logging.getLogger(__name__)


class SmtpConfig(Strict):
    host: str = Field(min_length=1)
    port: int | None = Field(default=None, ge=1, le=65535)  # 465 with ssl, 587 with starttls, else 25
    username: str | None = None
    password: SecretStr | None = None
    starttls: bool | None = None  # default: on, unless ssl
    ssl: bool = False             # implicit TLS (SMTPS)
    timeout: Timeout = 10.0

    @model_validator(mode="after")
    def _check(self) -> SmtpConfig:
        if self.ssl and self.starttls:
            raise ValueError("starttls and ssl are exclusive: ssl is TLS from the start")
        if self.password is not None and not self.username:
            raise ValueError("password without username")
        return self

    @property
    def use_starttls(self) -> bool:
        return self.starttls if self.starttls is not None else not self.ssl

    @property
    def effective_port(self) -> int:
        return self.port or (465 if self.ssl else 587 if self.use_starttls else 25)


def _address(v: str) -> str:
    if "\r" in v or "\n" in v or "@" not in parseaddr(v)[1]:
        raise ValueError(f"not an email address: {v!r}")
    return v


class EmailConfig(ChannelConfig):
    to: tuple[str, ...] = Field(min_length=1)
    from_: str = Field(default="pipemon@localhost", alias="from")
    smtp: SmtpConfig
    send_resolved: bool = False

    @field_validator("to")
    @classmethod
    def _to(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(_address(a) for a in v)

    @field_validator("from_")
    @classmethod
    def _from(cls, v: str) -> str:
        return _address(v)


SmtpFactory = Callable[[SmtpConfig], smtplib.SMTP]


def connect(cfg: SmtpConfig) -> smtplib.SMTP:
    if cfg.ssl:
        return smtplib.SMTP_SSL(cfg.host, cfg.effective_port, timeout=cfg.timeout,
                                context=ssl.create_default_context())
    return smtplib.SMTP(cfg.host, cfg.effective_port, timeout=cfg.timeout)


def subject(n: Notification) -> str:
    return truncate(oneline(f"[{label(n)}:{len(n.alerts)}] {title(n)}"), 200)


def _facts(a: AlertView) -> list[tuple[str, str]]:
    facts = [("pipeline", a.pipeline), ("team", a.team), ("kind", a.kind), ("severity", a.severity.value),
             ("state", a.state.value), ("since", iso(a.started_at))]
    if a.occurrences > 1:
        facts.append(("occurrences", str(a.occurrences)))
    for k in ("run_id", "failed_task", "root_cause"):
        if (v := getattr(a, k)) is not None:
            facts.append((k.replace("_", " "), v))
    return facts


def text_body(n: Notification) -> str:
    out = [subject(n), ""]
    for a in n.alerts:
        out.append(("[resolved] " if is_resolved(n, a) else "") + a.summary)
        out += [f"  {k}: {v}" for k, v in _facts(a)]
        if a.error:
            out += ["  error:", *("    " + line for line in truncate(a.error.strip(), 2000).splitlines())]
        if a.description:
            out += ["", *("  " + line for line in a.description.splitlines())]
        if a.url:
            out.append(f"  dashboard: {a.url}")
        out.append("")
    if n.external_url:
        out.append(f"pipemon: {n.external_url}")
    return "\n".join(out) + "\n"


def html_body(n: Notification) -> str:
    e = html.escape
    parts = [f"<h2>{e(emoji(n))} {e(label(n))}: {e(title(n))}</h2>"]
    for a in n.alerts:
        head = e(a.summary)
        if a.url:
            head = f'<a href="{e(a.url)}">{head}</a>'
        rows = "".join(f"<tr><th align=left>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in _facts(a))
        parts.append(f"<h3>{head}</h3><table>{rows}</table>")
        if a.error:
            parts.append(f"<pre>{e(truncate(a.error.strip(), 2000))}</pre>")
        if a.description:
            parts.append(f"<p>{e(a.description)}</p>")
    if n.external_url:
        parts.append(f'<p><a href="{e(n.external_url)}">pipemon</a></p>')
    return "<html><body>" + "\n".join(parts) + "</body></html>\n"


def message(n: Notification, cfg: EmailConfig) -> EmailMessage:
    msg = EmailMessage()
    msg["Subject"] = subject(n)
    msg["From"] = cfg.from_
    msg["To"] = ", ".join(cfg.to)
    msg["Date"] = format_datetime(datetime.fromtimestamp(n.time, UTC))
    msg["Message-ID"] = f"<{re.sub(r'[^A-Za-z0-9._-]', '-', n.key)}@pipemon>"
    msg.set_content(text_body(n))
    msg.add_alternative(html_body(n), subtype="html")
    return msg


class EmailChannel(Channel[EmailConfig]):
    kind = "email"
    config_model = EmailConfig

    def build(self, n: Notification) -> list[EmailMessage]:
        return [message(n, self.config)]

    def send(self, n: Notification, http: httpx.Client | None = None, *,
             smtp_factory: SmtpFactory | None = None) -> None:
        """`http` is unused (the Channel signature); `smtp_factory` replaces smtplib's connect."""
        cfg = self.config.smtp
        where = f"SMTP {cfg.host}:{cfg.effective_port}"
        try:
            with (smtp_factory or connect)(cfg) as smtp:
                if cfg.use_starttls:
                    smtp.starttls(context=ssl.create_default_context())
                if cfg.username:
                    smtp.login(cfg.username, cfg.password.get_secret_value() if cfg.password else "")
                for msg in self.build(n):
                    refused = smtp.send_message(msg, from_addr=self.config.from_,
                                                to_addrs=list(self.config.to))
                    if refused:  # some recipients took it: not worth re-sending to all
                        log.warning("%s: %s refused %s", self.name, where, ", ".join(sorted(refused)))
        except smtplib.SMTPRecipientsRefused as e:
            codes = [code for code, _ in e.recipients.values()]
            raise self.error(f"{where}: all recipients refused ({', '.join(map(str, codes))})",
                             permanent=all(500 <= c < 600 for c in codes)) from None
        except smtplib.SMTPNotSupportedError:
            raise self.error(f"{where}: the server does not offer STARTTLS (or AUTH)",
                             permanent=True) from None
        except smtplib.SMTPResponseException as e:
            reply = e.smtp_error if isinstance(e.smtp_error, str) else e.smtp_error.decode(errors="replace")
            raise self.error(f"{where}: {e.smtp_code} {oneline(reply)[:200]}",
                             permanent=500 <= e.smtp_code < 600, status=e.smtp_code) from None
        except ssl.SSLCertVerificationError as e:
            raise self.error(f"{where}: TLS certificate: {e.verify_message}", permanent=True) from None
        except (smtplib.SMTPException, OSError) as e:  # refused, reset, timed out, disconnected
            raise self.error(f"{where}: {type(e).__name__}: {e}", permanent=False) from None
