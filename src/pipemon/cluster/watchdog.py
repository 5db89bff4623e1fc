"""The watchdog: a dead man's switch, as Alertmanager's always-firing Watchdog alert. While the cluster is
healthy, the leading dispatcher sends a configured receiver a heartbeat every N seconds; an outside pager
(healthchecks.io, PagerDuty's heartbeat monitoring, Dead Man's Snitch) raises the alarm when the beats
stop, that is when pipemon itself stops watching. What "healthy" means is decided here, in pure code."""
from __future__ import annotations

from pipemon.model import AlertKind, AlertState, AlertView, Notification, NotifyAction, Severity

MAX_OUTBOX_AGE_S = 300.0  # a notification undelivered for longer: the dispatch path is stuck
FINGERPRINT = "pipemon-watchdog"


def unhealthy(event_log: str | None, database: str | None, live_workers: int,
              oldest_undelivered_s: float | None) -> str | None:
    """Why the cluster is not healthy (no heartbeat then), or None."""
    if event_log:
        return f"event log: {event_log}"
    if database:
        return f"database: {database}"
    if live_workers < 1:
        return "no live worker"
    if oldest_undelivered_s is not None and oldest_undelivered_s > MAX_OUTBOX_AGE_S:
        return f"a notification has waited {oldest_undelivered_s:.0f} s for delivery"
    return None


def heartbeat(receiver: str, now: float, node: str) -> Notification:
    """A firing info alert with one fingerprint for every beat (the same incident to a pager); each beat
    its own idempotency key."""
    alert = AlertView(fingerprint=FINGERPRINT, pipeline="pipemon/watchdog", team="pipemon",
                      kind=AlertKind.WATCHDOG,
                      severity=Severity.INFO, state=AlertState.FIRING,
                      summary="pipemon is watching (heartbeat)",
                      description="The cluster is healthy: this heartbeat comes every few minutes. When it "
                                  "stops, pipemon itself has stopped watching.",
                      labels={"team": "pipemon", "pipeline": "pipemon/watchdog", "kind": "watchdog",
                              "severity": "info", "node": node},
                      started_at=now, last_seen=now)
    return Notification(id=0, receiver=receiver, action=NotifyAction.REPEAT, group_key=FINGERPRINT,
                        group_labels={"alertname": "Watchdog"}, alerts=(alert,), time=now,
                        key=f"watchdog-{int(now)}")
