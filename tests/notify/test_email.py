"""Email against a real SMTP server (aiosmtpd on a free port) and, for failures that a local server
cannot produce, a stand-in SMTP class passed as smtp_factory."""
from __future__ import annotations

import email
import email.policy
import logging
import smtplib
from collections.abc import Iterator
from typing import Any, Self

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from pipemon.model import NotifyAction
from pipemon.notify import EmailChannel, EmailConfig, TransportError
from tests.notify.conftest import LATE, PASSWORD, alert, assert_no_secret, free_port, notification

A = NotifyAction


class Inbox:
    def __init__(self) -> None:
        self.envelopes: list[Any] = []

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.startswith("nobody@"):
            return "550 5.1.1 no such user"
        if address.startswith("busy@"):
            return "451 4.3.0 try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.envelopes.append(envelope)
        return "250 OK"


def _auth(server, session, envelope, mechanism, auth_data) -> AuthResult:
    ok = auth_data.login == b"pipemon" and auth_data.password == PASSWORD.encode()
    return AuthResult(success=ok, handled=False)


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    inbox, port = Inbox(), free_port()
    ctl = Controller(inbox, hostname="127.0.0.1", port=port, authenticator=_auth, auth_require_tls=False)
    ctl.start()
    try:
        yield inbox, port
    finally:
        ctl.stop()


def channel(port: int, **smtp: Any) -> EmailChannel:
    cfg = {"to": ["oncall@example.com", "data@example.com"], "from": "pipemon@example.com",
           "smtp": {"host": "127.0.0.1", "port": port, "starttls": False, **smtp}}
    return EmailChannel(EmailConfig.model_validate(cfg), name="payments/email[0]")


def parse(envelope: Any) -> email.message.EmailMessage:
    return email.message_from_bytes(envelope.content, policy=email.policy.default)


@pytest.mark.parametrize("action, subject", [
    (A.TRIGGER, "[FIRING:2] payments: pipeline failures, late pipelines"),
    (A.REPEAT, "[STILL FIRING:2] payments: pipeline failures, late pipelines"),
    (A.ESCALATE, "[ESCALATED:2] payments: pipeline failures, late pipelines"),
    (A.ACKNOWLEDGE, "[ACKNOWLEDGED:2] payments: pipeline failures, late pipelines"),
    (A.RESOLVE, "[RESOLVED:2] payments: pipeline failures, late pipelines"),
    (A.TEST, "[TEST:2] payments: pipeline failures, late pipelines"),
])
def test_subject_per_action(action, subject):
    [msg] = channel(25).build(notification(action, alerts=(alert(), alert(**LATE))))
    assert msg["Subject"] == subject


def test_a_real_smtp_server_receives_the_message(smtp):
    inbox, port = smtp
    channel(port).send(notification(A.TRIGGER, alerts=(alert(), alert(**LATE))))
    [env] = inbox.envelopes
    assert env.mail_from == "pipemon@example.com"
    assert env.rcpt_tos == ["oncall@example.com", "data@example.com"]
    msg = parse(env)
    assert msg["Subject"] == "[FIRING:2] payments: pipeline failures, late pipelines"
    assert (msg["From"], msg["To"]) == ("pipemon@example.com", "oncall@example.com, data@example.com")
    assert msg["Date"] == "Mon, 21 Sep 2026 14:15:20 +0000"
    assert msg["Message-ID"] == "<n7-trigger@pipemon>"
    text = msg.get_body(("plain",)).get_content()
    assert text.splitlines()[:10] == [
        "[FIRING:2] payments: pipeline failures, late pipelines",
        "",
        'payments-airflow/invoices failed: relation "invoices_stg" does not exist',
        "  pipeline: payments-airflow/invoices",
        "  team: payments",
        "  kind: failure",
        "  severity: critical",
        "  state: firing",
        "  since: 2026-09-21T14:13:20Z",
        "  occurrences: 3",
    ]
    assert "  dashboard: https://pipemon.example.com/pipelines/payments-airflow/invoices" in text
    assert "payments-dbt/ledger is late: expected by 14:00" in text
    html = msg.get_body(("html",)).get_content()
    assert '<a href="https://pipemon.example.com/pipelines/payments-airflow/invoices">' in html
    assert "relation &quot;invoices_stg&quot; does not exist" in html


def test_login_when_username_given(smtp, caplog):
    caplog.set_level(logging.DEBUG)
    inbox, port = smtp
    channel(port, username="pipemon", password=PASSWORD).send(notification(A.RESOLVE))
    assert parse(inbox.envelopes[0])["Subject"].startswith("[RESOLVED:1]")
    # The records of pipemon, smtplib and the rest; not those of the test's own server.
    ours = "\n".join(r.getMessage() for r in caplog.records if not r.name.startswith("mail.log"))
    assert_no_secret(ours)


def test_wrong_password_is_permanent_and_not_in_the_error(smtp):
    _, port = smtp
    wrong = PASSWORD[::-1]
    with pytest.raises(TransportError) as e:
        channel(port, username="pipemon", password=wrong).send(notification())
    assert e.value.permanent and e.value.status == 535
    assert wrong not in str(e.value) and wrong not in repr(e.value)


@pytest.mark.parametrize("to, permanent", [(["nobody@example.com"], True), (["busy@example.com"], False)])
def test_refused_recipients(smtp, to, permanent):
    _, port = smtp
    ch = EmailChannel(EmailConfig.model_validate(
        {"to": to, "smtp": {"host": "127.0.0.1", "port": port, "starttls": False}}))
    with pytest.raises(TransportError) as e:
        ch.send(notification())
    assert e.value.permanent is permanent


def test_some_recipients_refused_still_delivers_to_the_rest(smtp, caplog):
    inbox, port = smtp
    ch = EmailChannel(EmailConfig.model_validate(
        {"to": ["oncall@example.com", "nobody@example.com"], "smtp": {"host": "127.0.0.1", "port": port,
                                                                      "starttls": False}}))
    ch.send(notification())
    assert inbox.envelopes[0].rcpt_tos == ["oncall@example.com"]
    assert "nobody@example.com" in caplog.text


def test_starttls_required_but_not_offered_is_permanent(smtp):
    _, port = smtp
    with pytest.raises(TransportError) as e:
        channel(port, starttls=True).send(notification())
    assert e.value.permanent and "STARTTLS" in e.value.message


def test_connection_refused_is_transient():
    with pytest.raises(TransportError) as e:
        channel(free_port(), timeout=2).send(notification())
    assert not e.value.permanent and "ConnectionRefusedError" in e.value.message


class FakeSMTP:
    """Fails the way a remote server would; the factory gets the SMTP config."""

    def __init__(self, fail: BaseException) -> None:
        self.fail = fail

    def __call__(self, cfg: Any) -> FakeSMTP:
        return self

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def login(self, user: str, password: str) -> None:
        pass

    def send_message(self, *args: Any, **kw: Any) -> dict:
        raise self.fail


@pytest.mark.parametrize("fail, permanent", [
    (smtplib.SMTPDataError(554, b"5.7.1 message rejected as spam"), True),
    (smtplib.SMTPSenderRefused(553, b"sender not allowed", "pipemon@example.com"), True),
    (smtplib.SMTPDataError(452, b"4.3.1 insufficient storage"), False),
    (smtplib.SMTPServerDisconnected("Connection unexpectedly closed"), False),
    (TimeoutError("timed out"), False),
])
def test_error_classification(fail, permanent):
    with pytest.raises(TransportError) as e:
        channel(25, username="pipemon", password=PASSWORD).send(notification(), smtp_factory=FakeSMTP(fail))
    assert e.value.permanent is permanent
    assert_no_secret(str(e.value))
