"""What an operator does from the alerts page: acknowledge, resolve, silence, expire a silence.

Plain HTML forms (they work without script). Each change runs in the writer thread, exactly as the JSON
API's (`api/alerts.py`), awaited without blocking the event loop; then a redirect back (POST/redirect/GET).
The caller needs the operate right, changes only its team's alerts and silences (another team's answers
as a missing one), and is recorded by its token's name; a cross-site form post is refused
(`session.same_origin`).
"""
from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

import msgspec
from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response

from pipemon.access import Action, Caller
from pipemon.api.owner import on_owner
from pipemon.config import parse_duration
from pipemon.errors import BadRequest, NotFound
from pipemon.store import alerting as alert_store
from pipemon.store import audit
from pipemon.web.render import error_page
from pipemon.web.session import form, local, same_origin, viewer

router = APIRouter()
DURATIONS = ("1h", "4h", "1d", "1w")
OPERATE = {"x-pipemon-action": Action.OPERATE.value}
Operator = Annotated[Caller, Depends(viewer(Action.OPERATE))]


def _back(fields: dict[str, str], notice: str) -> RedirectResponse:
    nxt = local(fields.get("next"), "/alerts")
    sep = "&" if "?" in nxt else "?"
    return RedirectResponse(f"{nxt}{sep}notice={quote(notice)}", status_code=303)


async def _act(request: Request, fn) -> Response:
    if not same_origin(request):
        return error_page(request, 403, "cross-site form posts are refused")
    try:
        fields = await form(request)
        notice = await fn(request.app.state.pm, fields)
        return _back(fields, notice)
    except NotFound as e:
        return error_page(request, 404, str(e))
    except BadRequest as e:
        return error_page(request, 400, str(e))


def _alert_id(raw: str) -> int:
    if not raw.isdigit() or not 1 <= int(raw) < 2**31:
        raise NotFound(f"no alert {raw!r}")
    return int(raw)


def _submit(request: Request, fn) -> Any:
    return on_owner(request, fn)  # in this node's writer, or relayed to the worker keeping it


@router.post("/alerts/{alert_id}/ack", summary="Acknowledge (form)", openapi_extra=OPERATE)
async def ack(request: Request, who: Operator, alert_id: str) -> Response:
    async def do(pm, fields):
        aid = _alert_id(alert_id)
        await _submit(request, lambda conn, now: _audited(conn, who, "alert.acknowledge", aid, now,
                                                     pm.alerts.acknowledge(conn, aid, who.name, now,
                                                                             who.scope())))
        return f"alert {aid} acknowledged by {who.name}"
    return await _act(request, do)


@router.post("/alerts/{alert_id}/resolve", summary="Resolve (form)", openapi_extra=OPERATE)
async def resolve(request: Request, who: Operator, alert_id: str) -> Response:
    async def do(pm, fields):
        aid = _alert_id(alert_id)
        await _submit(request, lambda conn, now: _audited(
            conn, who, "alert.resolve", aid, now, pm.alerts.resolve(conn, aid, who.name, now, who.scope())))
        return f"alert {aid} resolved by {who.name}"
    return await _act(request, do)


def _audited(conn, who: Caller, action: str, alert_id: int, now: float, alert):
    """An operator's change from the dashboard, in the audit log as the API records it."""
    audit.record(conn, actor=who, action=action, target=str(alert_id), team=alert.team, now=now,
                 detail={"pipeline": alert.pipeline, "from": "dashboard"})
    return alert


def quote_matcher(name: str, value: str) -> str:
    return name + '="' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


@router.post("/alerts/{alert_id}/silence", summary="Silence an alert's pipeline or kind (form)",
             openapi_extra=OPERATE)
async def silence(request: Request, who: Operator, alert_id: str) -> Response:
    """Silence this alert's pipeline and kind for a while (matchers `pipeline="…"`, `kind="…"`)."""
    async def do(pm, fields):
        aid = _alert_id(alert_id)
        length = fields.get("duration", "4h")
        if length not in DURATIONS:
            raise BadRequest(f"duration must be one of {', '.join(DURATIONS)}")
        scope = fields.get("scope", "kind")
        comment = fields.get("comment", "")[:2000] or "silenced from the dashboard"

        def add(conn, now):
            body = msgspec.json.decode(alert_store.get_alert(conn, aid, who.scope()).body)
            matchers = [quote_matcher("pipeline", body["pipeline"])]
            if scope != "pipeline":
                matchers.append(quote_matcher("kind", body["kind"]))
            end = now + parse_duration(length)
            s = pm.alerts.add_silence(conn, matchers, now, end, who.name, comment, now, who.scope())
            audit.record(conn, actor=who, action="silence.add", target=str(s.id), team=who.team, now=now,
                         detail={"matchers": matchers, "comment": comment, "from": "dashboard"})
            return s

        s = await _submit(request, add)
        return f"silence {s.id} added by {who.name} for {length}"
    return await _act(request, do)


@router.post("/silences/{silence_id}/expire", summary="Expire a silence (form)", openapi_extra=OPERATE)
async def expire(request: Request, who: Operator, silence_id: str) -> Response:
    async def do(pm, fields):
        if not silence_id.isdigit() or not 1 <= int(silence_id) < 2**31:
            raise NotFound(f"no silence {silence_id!r}")
        sid = int(silence_id)
        await _submit(request, lambda conn, now: audit.record(
            conn, actor=who, action="silence.expire", target=str(sid), now=now,
            team=getattr(pm.alerts.expire_silence(conn, sid, now, who.scope()), "team", who.team)))
        return f"silence {sid} expired"
    return await _act(request, do)
