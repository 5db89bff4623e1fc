"""The test notification of `pipemon receivers test NAME`: a throwaway alert with a fingerprint of its own,
triggered and then resolved, so a test never leaves an incident open in PagerDuty."""
from __future__ import annotations

import uuid

from pipemon.model import AlertKind, AlertState, AlertView, Notification, NotifyAction, Severity


def test_notifications(receiver: str, now: float, external_url: str | None) -> list[Notification]:
    fp = "test-" + uuid.uuid4().hex[:16]
    alert = AlertView(fingerprint=fp, pipeline="pipemon/test", team="pipemon", kind=AlertKind.TEST,
                      severity=Severity.INFO, state=AlertState.FIRING,
                      summary=f"pipemon test notification for receiver {receiver}",
                      description="If you can read this, pipemon can reach this receiver. Nothing is broken.",
                      labels={"team": "pipemon", "pipeline": "pipemon/test", "kind": "test",
                              "severity": "info"},
                      started_at=now, last_seen=now)
    trigger = Notification(id=0, receiver=receiver, action=NotifyAction.TEST, group_key=f"test:{fp}",
                           group_labels={"pipeline": "pipemon/test"}, alerts=(alert,), time=now,
                           key=fp + "-t", external_url=external_url)
    resolved = AlertView(**{**{f: getattr(alert, f) for f in alert.__struct_fields__},
                            "state": AlertState.RESOLVED, "resolved_at": now})
    resolve = Notification(id=0, receiver=receiver, action=NotifyAction.RESOLVE, group_key=f"test:{fp}",
                           group_labels={"pipeline": "pipemon/test"}, alerts=(resolved,), time=now,
                           key=fp + "-r", external_url=external_url)
    return [trigger, resolve]
