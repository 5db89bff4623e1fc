"""The built-in `log` receiver: one safe line per notification on stderr, delivered and recorded like any
other channel (the notifications API shows it)."""
from __future__ import annotations

import io

import pytest

from pipemon.config import ConfigError
from pipemon.model import AlertState, NotifyAction, Severity
from pipemon.notify import build_receivers
from pipemon.notify.log import LogChannel, LogConfig
from tests.alerting.harness import Harness, at
from tests.notify.conftest import alert, notification


def line(n) -> str:
    out = io.StringIO()
    LogChannel(LogConfig()).send(n, http=None, stream=out)  # type: ignore[arg-type]
    text = out.getvalue()
    assert text.endswith("\n") and text.count("\n") == 1  # exactly one line
    return text[:-1]


def test_one_line_with_action_severity_receiver_and_headline():
    n = notification(alerts=(alert(),))
    assert line(n) == ("pipemon 2026-09-21T14:15:20Z FIRING [critical] payments: "
                       'payments-airflow/invoices failed: relation "invoices_stg" does not exist')


def test_a_group_says_how_many_and_leads_with_its_worst_alert():
    worst = alert(fingerprint="b", summary="p/b failed: disk full")
    n = notification(alerts=(alert(fingerprint="a", severity=Severity.WARNING, summary="p/a is late"), worst))
    assert line(n).endswith("(2 alerts): p/b failed: disk full")


def test_a_resolve_carries_no_severity():
    n = notification(action=NotifyAction.RESOLVE, alerts=(alert(state=AlertState.RESOLVED),))
    assert " RESOLVED payments: " in line(n)


@pytest.mark.parametrize("hostile", ["\x1b[31mred\x1b[0m", "a\rb", "two\nlines", "nul\x00", "rtl\u202eevil",
                                     "[bold]markup[/]", "x" * 10_000])
def test_client_text_cannot_move_the_cursor_or_flood_the_terminal(hostile):
    text = line(notification(alerts=(alert(summary=f"ns/p failed: {hostile}"),)))
    assert all(c.isprintable() for c in text) and len(text) < 500
    if "markup" in hostile:
        assert "[bold]markup[/]" in text  # printed literally: the line is no markup


def test_config_takes_an_empty_mapping_and_refuses_unknown_keys():
    [ch] = build_receivers([{"name": "t", "log": {}}])["t"].channels
    assert ch.kind == "log" and ch.send_resolved
    with pytest.raises(ConfigError, match=r"receivers\[0\]\.log\.colour: unknown key"):
        build_receivers([{"name": "t", "log": {"colour": True}}])


def test_delivered_and_recorded_like_any_receiver(tmp_path, capfd):
    cfg = "receivers:\n  - name: terminal\n    log: {}\nroute:\n  receiver: terminal\n  group_wait: 0s\n"
    hs = Harness(f"sqlite:///{tmp_path}/l.db", cfg, at(1, 0))
    try:
        hs.run("pay/a", "1", at(1, 0), at(1, 1), ok=False, error="disk full")
        hs.advance(at(1, 2))
        hs.settle()
        hs.run("pay/a", "2", at(1, 3), at(1, 4))
        hs.advance(at(1, 10))
        hs.settle()
        err = capfd.readouterr().err
        lines = [x for x in err.splitlines() if x.startswith("pipemon ")]
        assert len(lines) == 2, err
        assert lines[0].endswith(" FIRING [error] terminal: pay/a failed: disk full")
        assert " RESOLVED terminal: pay/a failed" in lines[1]
        items = hs.client.get("/api/v1/notifications").json()["items"]
        assert sorted((i["receiver"], i["action"], i["status"]) for i in items) == [
            ("terminal", "resolve", "sent"), ("terminal", "trigger", "sent")]
    finally:
        hs.close()
