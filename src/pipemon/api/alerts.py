"""Alerts, silences, deliveries and the noise report over HTTP. Changes go through the writer thread."""
from __future__ import annotations

import asyncio
import collections
import math
from datetime import UTC, datetime
from typing import Annotated, Any

import msgspec
from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel, Field, model_validator

from pipemon.access import Action, Caller
from pipemon.api import auth
from pipemon.config import parse_duration
from pipemon.engine.route import receiver_teams
from pipemon.errors import BadRequest
from pipemon.ingest.common import iso
from pipemon.model import AlertState, DeliveryStatus
from pipemon.store import alerting as store
from pipemon.store import audit
from pipemon.api.owner import on_owner

router = APIRouter(tags=["alerts"])
Id = Annotated[int, Path(ge=1, le=2**31 - 1)]
_STATES = [s.value for s in AlertState]
READ = {"x-pipemon-action": Action.READ.value}
OPERATE = {"x-pipemon-action": Action.OPERATE.value}
Reader = Annotated[Caller, Depends(auth.require(Action.READ))]
Operator = Annotated[Caller, Depends(auth.require(Action.OPERATE))]


def alert_view(row) -> dict[str, Any]:
    b = msgspec.json.decode(row.body)
    return {"id": row.id, "fingerprint": b["fingerprint"], "pipeline": b["pipeline"], "team": b["team"],
            "kind": b["kind"], "severity": b["severity"], "severity_reasons": b.get("severity_why", []),
            "state": b["state"], "summary": b["summary"], "description": b["description"],
            "labels": b["labels"], "started_at": iso(b["started_at"]), "last_seen": iso(b["last_seen"]),
            "occurrences": b["occurrences"],
            "resolved_at": iso(b.get("resolved_at")), "resolved_by": b.get("resolved_by"),
            "acknowledged_at": iso(b.get("acked_at")), "acknowledged_by": b.get("acked_by"),
            "run_id": b.get("run_id"), "error": b.get("error"), "failed_task": b.get("failed_task"),
            "output": b.get("output"),
            "root_cause": ({"pipeline": b["root_pipeline"], "team": b.get("root_team")}
                           if b.get("root_pipeline") else None),
            "attached": b.get("root_cause") is not None, "notified": b.get("notified", {}),
            "evidence": [{"kind": e["kind"], "why": e["why"], "text": e["text"], "run_id": e.get("run_id"),
                          "count": e["count"], "since": iso(e["since"]), "last_seen": iso(e["last_seen"]),
                          "cleared_at": iso(e.get("cleared_at"))} for e in b.get("evidence", [])]}


def _live_alert(pm, a) -> dict[str, Any]:
    with pm.db.connect() as conn:
        row = store.get_alert(conn, a.id)
    out = alert_view(row)
    return out


@router.get("/api/v1/alerts", summary="Alerts, newest first; filter by team, state, kind, pipeline",
            openapi_extra=READ)
def list_alerts(request: Request, who: Reader, team: str | None = None,
                state: Annotated[str | None,
                                 Query(description="comma-separated: firing, acknowledged, resolved")] = None,
                kind: str | None = None, pipeline: str | None = None,
                limit: Annotated[int, Query(ge=1, le=1000)] = 100,
                cursor: str | None = None) -> dict[str, Any]:
    states = [s.strip() for s in state.split(",") if s.strip()] if state else None
    if states and any(s not in _STATES for s in states):
        raise BadRequest(f"unknown alert state in {state!r}; expected some of {', '.join(_STATES)}")
    pm = request.app.state.pm
    with pm.db.connect() as conn:
        page = store.list_alerts(conn, team=team, states=states, kind=kind, pipeline=pipeline, limit=limit,
                                 cursor=cursor, scope=who.scope())
    return {"items": [alert_view(r) for r in page.items], "next_cursor": page.next_cursor}


@router.get("/api/v1/alerts/{alert_id}", summary="One alert", openapi_extra=READ)
def get_alert(request: Request, who: Reader, alert_id: Id) -> dict[str, Any]:
    with request.app.state.pm.db.connect() as conn:
        return alert_view(store.get_alert(conn, alert_id, who.scope()))


IGNORED_ACTOR = "Ignored (kept so older clients still work): the actor recorded is the token's name."


class Who(BaseModel):
    by: str | None = Field(default=None, max_length=200, description=IGNORED_ACTOR)
    comment: str = Field(default="", max_length=2000)


@router.post("/api/v1/alerts/{alert_id}/ack", openapi_extra=OPERATE,
             summary="Acknowledge: stops escalation; receivers that were paged are told")
async def ack(request: Request, who: Operator, alert_id: Id, body: Who | None = None) -> dict[str, Any]:
    return await _by_hand(request, who, "acknowledge", alert_id, body)


@router.post("/api/v1/alerts/{alert_id}/resolve", openapi_extra=OPERATE,
             summary="Resolve by hand (the receivers that were paged get the resolve)")
async def resolve(request: Request, who: Operator, alert_id: Id, body: Who | None = None) -> dict[str, Any]:
    return await _by_hand(request, who, "resolve", alert_id, body)


async def _by_hand(request: Request, who: Caller, action: str, alert_id: int,
                   body: Who | None) -> dict[str, Any]:
    """An operator's acknowledge or resolve, in the writer (the single writer of the store). The actor is
    the caller's token name, never what the body says."""
    pm = request.app.state.pm
    act = getattr(pm.alerts, action)
    comment = body.comment if body else ""

    def change(conn, now):
        a = act(conn, alert_id, who.name, now, who.scope())
        audit.record(conn, actor=who, action=f"alert.{action}", target=str(alert_id), team=a.team, now=now,
                     detail={"pipeline": a.pipeline, "comment": comment} if comment else
                     {"pipeline": a.pipeline})
        return a

    a = await on_owner(request, change)
    return await asyncio.to_thread(_live_alert, pm, a)  # a database read: off the event loop


# --- silences -----------------------------------------------------------------------------------------------

class NewSilence(BaseModel):
    matchers: list[str] = Field(min_length=1, description='label matchers, e.g. '
                                '["team=\\"payments\\"", "kind=~\\"late|sla_miss\\""]')
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    duration: str | None = Field(default=None, description="instead of ends_at: 2h, 30m, 1d")
    created_by: str | None = Field(default=None, max_length=200, description=IGNORED_ACTOR)
    comment: str = Field(default="", max_length=2000)

    @model_validator(mode="after")
    def _end(self) -> NewSilence:
        if (self.ends_at is None) == (self.duration is None):
            raise ValueError("give exactly one of ends_at and duration")
        return self


def silence_view(row, now: float) -> dict[str, Any]:
    matchers = (msgspec.json.decode(row.matchers) if isinstance(row.matchers, str)
                else [str(m) for m in row.matchers])
    return {"id": row.id, "matchers": matchers, "starts_at": iso(row.starts_at), "ends_at": iso(row.ends_at),
            "created_by": row.created_by, "comment": row.comment, "team": row.team,
            "state": ("active" if row.starts_at <= now < row.ends_at
                      else ("pending" if now < row.starts_at else "expired"))}


@router.post("/api/v1/silences", summary="Silence matching alerts (still recorded and visible, not notified)",
             description="A silence created with a team's token mutes only that team's alerts, whatever its "
             "matchers say; `created_by` is the token's name.", openapi_extra=OPERATE)
async def add_silence(request: Request, who: Operator, body: NewSilence) -> dict[str, Any]:
    pm = request.app.state.pm

    def add(conn, now):
        start = body.starts_at.timestamp() if body.starts_at else now
        try:
            end = body.ends_at.timestamp() if body.ends_at else start + parse_duration(body.duration)
        except ValueError as e:
            raise BadRequest(f"duration: {e}") from None
        if end <= start:
            raise BadRequest("a silence must end after it starts")
        try:
            s = pm.alerts.add_silence(conn, body.matchers, start, end, who.name, body.comment, now,
                                        who.scope())
        except ValueError as e:
            raise BadRequest(f"matchers: {e}") from None
        audit.record(conn, actor=who, action="silence.add", target=str(s.id), team=who.team, now=now,
                     detail={"matchers": body.matchers, "starts_at": iso(start), "ends_at": iso(end),
                             "comment": body.comment})
        return silence_view(s, now)

    return await on_owner(request, add)


@router.get("/api/v1/silences", summary="Silences, newest first", openapi_extra=READ)
def list_silences(request: Request, who: Reader, expired: bool = False) -> dict[str, Any]:
    pm = request.app.state.pm
    now = pm.clock.now()
    with pm.db.connect() as conn:
        rows = store.load_silences(conn, since=None if expired else now, scope=who.scope())
    return {"items": [silence_view(r, now) for r in rows]}


@router.delete("/api/v1/silences/{silence_id}", summary="Expire a silence now", openapi_extra=OPERATE)
async def expire_silence(request: Request, who: Operator, silence_id: Id) -> dict[str, Any]:
    pm = request.app.state.pm

    def expire(conn, now):
        row = pm.alerts.expire_silence(conn, silence_id, now, who.scope())
        audit.record(conn, actor=who, action="silence.expire", target=str(silence_id), now=now,
                     team=getattr(row, "team", who.team))
        return silence_view(row, now)

    return await on_owner(request, expire)


# --- deliveries ---------------------------------------------------------------------------------------------

@router.get("/api/v1/notifications", summary="The delivery log: status, attempts, last error",
            openapi_extra=READ)
def list_notifications(request: Request, who: Reader, receiver: str | None = None,
                       status: DeliveryStatus | None = None,
                       alert: Annotated[str | None, Query(description="an alert fingerprint")] = None,
                       limit: Annotated[int, Query(ge=1, le=1000)] = 100,
                       cursor: str | None = None) -> dict[str, Any]:
    pm = request.app.state.pm
    with pm.db.connect() as conn:
        page = store.list_notifications(conn, receiver=receiver, status=status, fingerprint=alert,
                                        limit=limit, cursor=cursor, scope=who.scope())
    items = []
    for r in page.items:
        body = msgspec.json.decode(r.body)
        items.append({"id": r.id, "receiver": r.receiver, "action": r.action, "group_key": r.group_key,
                      "status": r.status, "attempts": r.attempts, "last_error": r.last_error,
                      "created_at": iso(r.created_at), "sent_at": iso(r.sent_at),
                      # a notification grouping several teams' alerts shows the caller its team's only
                      "alerts": [{"fingerprint": a["fingerprint"], "pipeline": a["pipeline"],
                                  "team": a["team"], "kind": a["kind"], "severity": a["severity"]}
                                 for a in body["alerts"] if who.sees(a["team"])]})
    return {"items": items, "next_cursor": page.next_cursor}


@router.post("/api/v1/receivers/{name}/test", summary="Send a test notification to a receiver, now",
             description="Sends a throwaway alert's trigger and then its resolve to every integration of "
             "the receiver, through the receiver's rate limit, so a test cannot push a real channel over its "
             "limit. When the limit has no room for the trigger now (or for the resolve within 10 s) nothing "
             "is sent and the answer is `429` with `Retry-After` (seconds): try again then. A failed send is "
             "not an HTTP error: the answer is 200 with `ok: false` and the receiver's error. A team's token "
             "may test only the receivers that only its team's routes use.",
             responses={429: {"description": "the receiver's rate limit has no room now; see Retry-After"}},
             openapi_extra=OPERATE)
async def test_receiver(request: Request, who: Operator, name: str) -> Any:
    pm = request.app.state.pm
    if (pm.deliverer is None or name not in pm.deliverer.receivers
            or not who.sees(receiver_teams(pm.alerts.dispatch.root).get(name))):
        from pipemon.errors import NotFound
        raise NotFound(f"no receiver named {name!r}")
    from fastapi.responses import JSONResponse

    from pipemon.notify import TransportError
    from pipemon.notify.delivery import RateLimited
    from pipemon.notify.testing import test_notifications
    try:
        await asyncio.to_thread(pm.deliverer.send_now,
                                test_notifications(name, pm.clock.now(), pm.alerts.external_url))
    except RateLimited as e:
        return JSONResponse({"error": "rate_limited", "message": str(e), "receiver": name}, status_code=429,
                            headers={"Retry-After": str(max(1, math.ceil(e.retry_after)))})
    except TransportError as e:  # reported to the caller: that is what the command is for
        return {"receiver": name, "ok": False, "error": str(e)}
    return {"receiver": name, "ok": True, "error": None}


# --- the noise report ---------------------------------------------------------------------------------------

@router.get("/api/v1/reports/noise", summary="On-call load: notifications per team and receiver per week, "
                                              "the noisiest pipelines, time to acknowledge and to resolve",
            openapi_extra=READ)
def noise(request: Request, who: Reader, weeks: Annotated[int, Query(ge=1, le=52)] = 4) -> dict[str, Any]:
    pm = request.app.state.pm
    now = pm.clock.now()
    since = now - weeks * 7 * 86400
    with pm.db.connect() as conn:
        notes = store.notification_stats(conn, since, who.scope())
        alerts = store.alerts_since(conn, since, who.scope())
    return noise_report(notes, alerts, who)


def week_of(t: float) -> str:
    y, w, _ = datetime.fromtimestamp(t, UTC).isocalendar()
    return f"{y}-W{w:02d}"


def noise_report(notes, alerts, who: Caller) -> dict[str, Any]:
    per_team: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    per_receiver: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for n in notes:
        if n.action not in ("trigger", "escalate", "repeat"):
            continue
        wk = week_of(n.created_at)
        per_receiver[n.receiver][wk] += 1
        for t in msgspec.json.decode(n.teams):
            if who.sees(t):  # a notification grouping several teams' alerts counts for the caller's only
                per_team[t][wk] += 1
    noisy = collections.Counter(a.pipeline for a in alerts)
    tta = [a.acked_at - a.started_at for a in alerts if a.acked_at]
    ttr = [a.resolved_at - a.started_at for a in alerts if a.resolved_at]

    def med(xs):
        return sorted(xs)[len(xs) // 2] if xs else None

    return {"notifications_per_team_per_week": {t: dict(sorted(c.items()))
                                                for t, c in sorted(per_team.items())},
            "notifications_per_receiver_per_week": {r: dict(sorted(c.items()))
                                                    for r, c in sorted(per_receiver.items())},
            "noisiest_pipelines": [{"pipeline": p, "alerts": n} for p, n in noisy.most_common(10)],
            "alerts": len(alerts),
            "median_time_to_acknowledge_s": med(tta), "median_time_to_resolve_s": med(ttr)}
