"""Builders for notifications, the secrets every test checks for, and local receivers (HTTP, SMTP)."""
from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import msgspec
import pytest

from pipemon.model import AlertState, AlertView, Notification, NotifyAction, Severity

T0 = 1_790_000_000.0  # 2026-09-21T14:13:20Z

ROUTING_KEY = "R0uT1nGkEy0123456789abcdefABCDEF"
SLACK_TOKEN = "xXsLaCkToKeNxX0123456789"
SLACK_URL = f"https://hooks.slack.com/services/T0AAAA/B0BBBB/{SLACK_TOKEN}"
HOOK_TOKEN = "hOoKtOkEn0123456789zz"
HOOK_URL = f"https://hooks.example.com/pipemon/{HOOK_TOKEN}"
BEARER = "bEaReRtOkEn-s3cr3t-99"
PASSWORD = "pAsSw0rD-s3cr3t-77"
SECRETS = (ROUTING_KEY, SLACK_TOKEN, SLACK_URL, HOOK_TOKEN, HOOK_URL, BEARER, PASSWORD)

DASHBOARD = "https://pipemon.example.com/pipelines/payments-airflow/invoices"


def assert_no_secret(text: str) -> None:
    for s in SECRETS:
        assert s not in text, f"secret {s[:4]}… leaked into: {text[:300]}"


def alert(**kw: Any) -> AlertView:
    base: dict[str, Any] = {
        "fingerprint": "fp-invoices-failure",
        "pipeline": "payments-airflow/invoices",
        "team": "payments",
        "kind": "failure",
        "severity": Severity.CRITICAL,
        "state": AlertState.FIRING,
        "summary": 'payments-airflow/invoices failed: relation "invoices_stg" does not exist',
        "description": "The last 3 runs failed with the same error.",
        "labels": {"team": "payments", "namespace": "payments-airflow",
                   "pipeline": "payments-airflow/invoices", "kind": "failure", "severity": "critical",
                   "tier": "1"},
        "started_at": T0,
        "last_seen": T0 + 60,
        "occurrences": 3,
        "run_id": "run-42",
        "error": 'psycopg.errors.UndefinedTable: relation "invoices_stg" does not exist',
        "failed_task": "load_invoices",
        "url": DASHBOARD,
    }
    base.update(kw)
    return AlertView(**base)


LATE = {"fingerprint": "fp-ledger-late", "pipeline": "payments-dbt/ledger", "kind": "late",
            "severity": Severity.WARNING, "summary": "payments-dbt/ledger is late: expected by 14:00",
            "description": "No run started since 13:00.",
            "labels": {"team": "payments", "namespace": "payments-dbt", "pipeline": "payments-dbt/ledger",
                    "kind": "late", "severity": "warning", "tier": "1"},
            "occurrences": 1, "run_id": None, "error": None, "failed_task": None, "url": None}

STATE_FOR = {NotifyAction.RESOLVE: AlertState.RESOLVED, NotifyAction.ACKNOWLEDGE: AlertState.ACKNOWLEDGED}


def notification(action: NotifyAction = NotifyAction.TRIGGER, alerts: tuple[AlertView, ...] | None = None,
                 **kw: Any) -> Notification:
    """A notification to receiver "payments"; its alerts take the state the action implies."""
    if alerts is None:
        alerts = (alert(),)
    state = STATE_FOR.get(action, AlertState.FIRING)
    resolved_at = T0 + 300 if state is AlertState.RESOLVED else None
    alerts = tuple(msgspec.structs.replace(a, state=state, resolved_at=resolved_at) for a in alerts)
    base: dict[str, Any] = {"id": 7, "receiver": "payments", "action": action,
                            "group_key": '{}:{team="payments"}', "group_labels": {"team": "payments"},
                            "alerts": alerts, "time": T0 + 120, "key": f"n7-{action.value}",
                            "external_url": "https://pipemon.example.com"}
    base.update(kw)
    return Notification(**base)


def with_resolved_late(n: Notification, resolved_at: float) -> Notification:
    """`n` plus the LATE alert, already resolved: a group where one alert resolved and one fires."""
    late = alert(**LATE, state=AlertState.RESOLVED, resolved_at=resolved_at)
    return msgspec.structs.replace(n, alerts=(*n.alerts, late))


# --- a real local HTTP receiver ---------------------------------------------------------------------------

@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class LocalReceiver:
    url: str
    requests: list[Recorded] = field(default_factory=list)
    replies: list[tuple[int, dict[str, str], bytes]] = field(default_factory=list)  # popped in order


@pytest.fixture
def http_receiver() -> Iterator[LocalReceiver]:
    """An http.server on a free port that records requests and answers 200 "ok" unless told otherwise."""
    rec = LocalReceiver(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            headers = {k.lower(): v for k, v in self.headers.items()}
            rec.requests.append(Recorded("POST", self.path, headers, body))
            status, headers, reply = rec.replies.pop(0) if rec.replies else (200, {}, b"ok")
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, *args: Any) -> None:  # keep test output quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    rec.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield rec
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
