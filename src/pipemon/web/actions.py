"""What an operator does from the alerts page: acknowledge, resolve, silence, expire a silence.

Plain HTML forms (they work without script). Each change runs in the writer thread, exactly as the JSON
API's (`api/alerts.py`), awaited without blocking the event loop; then a redirect back (POST/redirect/GET).
There is no login yet (the teams issue): a cross-site form post is refused by its Origin header.
"""
from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import msgspec
from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from pipemon.config import parse_duration
from pipemon.errors import BadRequest, NotFound
from pipemon.store import alerting as alert_store
from pipemon.web.render import error_page

router = APIRouter(include_in_schema=False)
MAX_FORM = 16 * 1024
DURATIONS = ("1h", "4h", "1d", "1w")


async def _form(request: Request) -> dict[str, str]:
    body = await request.body()
    if len(body) > MAX_FORM:
        raise BadRequest("form too large")
    try:
        parsed = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=20)
    except (UnicodeDecodeError, ValueError):
        raise BadRequest("the form is not valid url-encoded UTF-8") from None
    return {k: v[-1] for k, v in parsed.items()}


def _same_origin(request: Request) -> bool:
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return request.headers.get("sec-fetch-site", "same-origin") in ("same-origin", "none")
    return urlsplit(origin).netloc == request.headers.get("host")


def _back(form: dict[str, str], notice: str) -> RedirectResponse:
    nxt = form.get("next") or "/alerts"
    if not nxt.startswith("/") or nxt.startswith("//") or "\\" in nxt:
        nxt = "/alerts"
    sep = "&" if "?" in nxt else "?"
    return RedirectResponse(f"{nxt}{sep}notice={quote(notice)}", status_code=303)


def _who(form: dict[str, str]) -> str:
    who = " ".join(form.get("by", "").split())[:200]
    return who or "dashboard"


async def _act(request: Request, fn) -> Response:
    if not _same_origin(request):
        return error_page(request, 403, "cross-site form posts are refused")
    try:
        form = await _form(request)
        notice = await fn(request.app.state.pm, form)
        return _back(form, notice)
    except NotFound as e:
        return error_page(request, 404, str(e))
    except BadRequest as e:
        return error_page(request, 400, str(e))


def _alert_id(raw: str) -> int:
    if not raw.isdigit() or not 1 <= int(raw) < 2**31:
        raise NotFound(f"no alert {raw!r}")
    return int(raw)


def _submit(pm, fn) -> Any:
    return asyncio.wrap_future(pm.worker.submit_call(fn))


@router.post("/alerts/{alert_id}/ack")
async def ack(request: Request, alert_id: str) -> Response:
    async def do(pm, form):
        aid, who = _alert_id(alert_id), _who(form)
        await _submit(pm, lambda conn, now: pm.alerting.acknowledge(conn, aid, who, now))
        return f"alert {aid} acknowledged by {who}"
    return await _act(request, do)


@router.post("/alerts/{alert_id}/resolve")
async def resolve(request: Request, alert_id: str) -> Response:
    async def do(pm, form):
        aid, who = _alert_id(alert_id), _who(form)
        await _submit(pm, lambda conn, now: pm.alerting.resolve(conn, aid, who, now))
        return f"alert {aid} resolved by {who}"
    return await _act(request, do)


def quote_matcher(name: str, value: str) -> str:
    return name + '="' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


@router.post("/alerts/{alert_id}/silence")
async def silence(request: Request, alert_id: str) -> Response:
    """Silence this alert's pipeline and kind for a while (matchers `pipeline="…"`, `kind="…"`)."""
    async def do(pm, form):
        aid, who = _alert_id(alert_id), _who(form)
        length = form.get("duration", "4h")
        if length not in DURATIONS:
            raise BadRequest(f"duration must be one of {', '.join(DURATIONS)}")
        scope = form.get("scope", "kind")
        comment = form.get("comment", "")[:2000] or "silenced from the dashboard"

        def add(conn, now):
            body = msgspec.json.decode(alert_store.get_alert(conn, aid).body)
            matchers = [quote_matcher("pipeline", body["pipeline"])]
            if scope != "pipeline":
                matchers.append(quote_matcher("kind", body["kind"]))
            end = now + parse_duration(length)
            return pm.alerting.add_silence(conn, matchers, now, end, who, comment, now)

        s = await _submit(pm, add)
        return f"silence {s.id} added by {who} for {length}"
    return await _act(request, do)


@router.post("/silences/{silence_id}/expire")
async def expire(request: Request, silence_id: str) -> Response:
    async def do(pm, form):
        if not silence_id.isdigit() or not 1 <= int(silence_id) < 2**31:
            raise NotFound(f"no silence {silence_id!r}")
        sid = int(silence_id)
        await _submit(pm, lambda conn, now: pm.alerting.expire_silence(conn, sid, now))
        return f"silence {sid} expired"
    return await _act(request, do)
