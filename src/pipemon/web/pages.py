"""The dashboard's pages. Plain `def` handlers: they run in the threadpool, never on the event loop.

Every page reads through the JSON API's query functions (`store/reads.py`, `store/alerting.py`) and view
functions (`api/pipelines.py: pipeline_view`, `api/alerts.py: alert_view`), plus the few reads in
`web/queries.py`, each scoped by the caller's team in its query (`Caller.scope()`), as the API's are.
"""
from __future__ import annotations

import collections
import math
from typing import Annotated, Any
from urllib.parse import urlencode

import msgspec
from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from pipemon.access import Action, Caller
from pipemon.api.alerts import alert_view, silence_view
from pipemon.api.pipelines import pipeline_view
from pipemon.engine.runs import failed_first
from pipemon.errors import BadRequest, Conflict, NotFound
from pipemon.model import Severity
from pipemon.store import alerting as alert_store
from pipemon.store import reads
from pipemon.web import charts, lineage, queries
from pipemon.web.render import STATES, error_page, page
from pipemon.web.session import viewer

router = APIRouter()
READ = {"x-pipemon-action": Action.READ.value}
Reader = Annotated[Caller, Depends(viewer(Action.READ))]
PAGE_SIZE = 100
MAX_PAGE = 10_000
OPEN = ["firing", "acknowledged"]


def _states(state: str | None) -> list[str] | None:
    if not state:
        return None
    out = [s.strip() for s in state.split(",") if s.strip()]
    bad = [s for s in out if s not in STATES]
    if bad:
        raise BadRequest(f"unknown state {bad[0]!r}; expected one of {', '.join(STATES)}")
    return out or None


def _page_no(page_s: str | None) -> int:
    try:
        n = int(page_s or "1")
    except ValueError:
        raise BadRequest(f"page must be a number, not {page_s!r}") from None
    if not 1 <= n <= MAX_PAGE:
        raise BadRequest(f"page must be between 1 and {MAX_PAGE}")
    return n


def _guard(request: Request, fn) -> Response:
    """Client errors become a readable page with the right status, never a 500 or a JSON body."""
    try:
        return fn()
    except NotFound as e:
        return error_page(request, 404, str(e))
    except BadRequest as e:
        return error_page(request, 400, str(e))
    except Conflict as e:
        return error_page(request, 409, str(e))


# --- fleet overview ---------------------------------------------------------------------------------------

@router.get("/", response_class=HTMLResponse, summary="Fleet overview (page)", openapi_extra=READ)
def overview(request: Request, who: Reader, team: str | None = None, state: str | None = None,
             q: str | None = None, page: str | None = None, fragment: str | None = None) -> Response:
    return _guard(request, lambda: _overview(request, who, team or None, state, q, page, fragment))


def _overview(request: Request, who: Caller, team: str | None, state: str | None, q: str | None,
              page_s: str | None, fragment: str | None) -> Response:
    states = _states(state)
    n = _page_no(page_s)
    pm = request.app.state.pm
    with pm.db.connect() as conn:
        counts = reads.state_counts(conn, scope=who.scope())
        fleet = queries.fleet_page(conn, counts, team=team, states=states, q=(q or "").strip() or None,
                                   offset=(n - 1) * PAGE_SIZE, limit=PAGE_SIZE, scope=who.scope())
    by_state = dict.fromkeys(STATES, 0)
    teams: dict[str, dict[str, int]] = {}
    for t, s, k in counts:
        by_state[s] = by_state.get(s, 0) + k
        row = teams.setdefault(t or "unassigned", dict.fromkeys(STATES, 0))
        row[s] = row.get(s, 0) + k
    order = queries.team_order([(t or "unassigned", s, k) for t, s, k in counts])
    team_list = sorted(teams.items(), key=lambda kv: order.get(kv[0], len(order)))
    pages = max(1, math.ceil(fleet.total / PAGE_SIZE))
    # muted (a silence or maintenance window), from the engine's state as /metrics reads it: a marker beside
    # the state, never instead of it
    health = pm.health.judge.health
    muted = {r.key for r in fleet.rows if (h := health.get(r.key)) is not None and h.muted}
    ctx: dict[str, Any] = dict(muted=muted,
        title="Fleet", by_state=by_state, total=sum(by_state.values()), teams=team_list, rows=fleet.rows,
        matching=fleet.total, page_no=n, pages=pages, team=team, state=state or "", q=q or "",
        bar=charts.stacked_bar, now=pm.clock.now(),
        query=lambda **kw: _query({"team": team, "state": state, "q": q, "page": None}, **kw))
    return page(request, "overview_live.html" if fragment == "live" else "overview.html", **ctx)


def _query(base: dict[str, Any], **changes: Any) -> str:
    merged = {**base, **changes}
    qs = urlencode({k: v for k, v in merged.items() if v not in (None, "", 1)})
    return "/?" + qs if qs else "/"


# --- one pipeline -----------------------------------------------------------------------------------------

@router.get("/pipelines", response_class=HTMLResponse, summary="To the fleet overview",
            openapi_extra={"x-pipemon-action": "public"})
def pipelines_index() -> Response:
    return RedirectResponse("/", status_code=307)


@router.get("/pipelines/{pipeline_id:path}", response_class=HTMLResponse, summary="One pipeline (page)",
            openapi_extra=READ)
def pipeline_page(request: Request, who: Reader, pipeline_id: str) -> Response:
    """Answers the URL notifications carry (`/pipelines/ns%2Fname`) and the plain `/pipelines/ns/name`."""
    return _guard(request, lambda: _pipeline(request, who, pipeline_id))


def _pipeline(request: Request, who: Caller, key: str) -> Response:
    pm = request.app.state.pm
    lineage = pm.alerts.lineage
    with pm.db.connect() as conn:
        row = reads.pipeline_with_state(conn, key, who.scope())
        runs = reads.list_runs(conn, row.id, row.key, limit=120).items
        found = reads.recent_findings(conn, row.id, limit=100)
        detect = queries.detect_state(conn, row.id)
        alerts = queries.open_alerts_of(conn, row.key, row.team)
        datasets = reads.datasets(conn, row.id)
        up, down = sorted(lineage.upstream(row.key)), sorted(lineage.downstream(row.key))
        states = queries.states_of(conn, up + down)
    p = pipeline_view(pm, row, full=True)
    view = msgspec.json.decode(row.view) if row.view else {}
    anomalous = {(f.run_id, f.metric) for f in found if f.run_id}

    def chart(metric: str, attr: str, title: str, unit: str):
        pts = []
        for r in runs:
            v = getattr(r, attr)
            if v is None:
                continue
            t = r.nominal_time if r.nominal_time is not None else r.started_at
            pts.append(charts.Point(t, float(v), r.status.value, f"{r.run_id} ({r.status.value})",
                                    (r.run_id, metric) in anomalous))
        band = charts.band_of(detect, metric, [pt.t for pt in pts])
        return charts.series(pts, band, title, unit)

    return page(request, "pipeline.html", title=row.key, p=p, row=row, schedule=view.get("schedule"),
                m=collections.defaultdict(lambda: None, view.get("metrics") or {}),
                conditions=view.get("conditions") or [], runs=runs[:25],
                findings=found[:10], alerts=[alert_view(a) for a in alerts], datasets=datasets,
                upstream=[(k, states.get(k, "unknown")) for k in up],
                downstream=[(k, states.get(k, "unknown")) for k in down],
                duration_chart=chart("duration_s", "duration", "duration", "s"),
                rows_chart=chart("rows", "rows", "rows", ""), now=pm.clock.now())


# --- one run ------------------------------------------------------------------------------------------------

@router.get("/runs/{run_id}", response_class=HTMLResponse, summary="One run (page)", openapi_extra=READ)
def run_page(request: Request, who: Reader, run_id: str, pipeline: str | None = None) -> Response:
    return _guard(request, lambda: _run(request, who, run_id, pipeline or None))


_TASK_ORDER = {"running": 0, "skipped": 1, "succeeded": 2}


def _run(request: Request, who: Caller, run_id: str, pipeline: str | None) -> Response:
    pm = request.app.state.pm
    with pm.db.connect() as conn:
        run, tasks = reads.find_run(conn, run_id, pipeline, who.scope())
    # what broke first (engine.runs.failed_first: the root error), then running, skipped, the rest in order
    broke = failed_first(tasks)
    rest = sorted((t for t in tasks if not any(t is b for b in broke)),
                  key=lambda t: (_TASK_ORDER.get(t.status.value, 9), t.started_at))
    ordered = broke + rest
    return page(request, "run.html", title=f"run {run.run_id}", run=run, tasks=ordered)


# --- alerts -------------------------------------------------------------------------------------------------

@router.get("/alerts", response_class=HTMLResponse, summary="Open alerts and silences (page)",
            openapi_extra=READ)
def alerts_page(request: Request, who: Reader, team: str | None = None,
                notice: str | None = None) -> Response:
    return _guard(request, lambda: _alerts(request, who, team or None, notice))


def _alerts(request: Request, who: Caller, team: str | None, notice: str | None) -> Response:
    pm = request.app.state.pm
    now = pm.clock.now()
    with pm.db.connect() as conn:
        rows = alert_store.list_alerts(conn, team=team, states=OPEN, limit=500, scope=who.scope()).items
        sils = alert_store.load_silences(conn, since=now, scope=who.scope())
    items = [alert_view(r) for r in rows]
    for a, r in zip(items, rows):
        a["age_s"], a["started_ts"] = now - r.started_at, r.started_at
    # grouped by root cause: an upstream failure and the downstream alerts attached to it
    groups: dict[str, dict[str, Any]] = {}
    for a in items:
        root = a["root_cause"]["pipeline"] if a["root_cause"] else a["pipeline"]
        g = groups.setdefault(root, {"root": root, "alerts": [], "level": -1, "started": a["started_at"]})
        g["alerts"].append(a)
        g["level"] = max(g["level"], Severity(a["severity"]).level)
    for g in groups.values():
        g["alerts"].sort(key=lambda a: (a["pipeline"] != g["root"], -Severity(a["severity"]).level,
                                        a["started_at"]))
    ordered = sorted(groups.values(), key=lambda g: (-g["level"], -len(g["alerts"]), g["root"]))
    windows = [{"name": w.name, "schedule": w.schedule, "duration": w.duration, "timezone": w.timezone,
                "matchers": [str(m) for m in w.matchers]} for w in pm.settings.maintenance_windows]
    return page(request, "alerts.html", title="Alerts", groups=ordered, count=len(items), team=team,
                silences=[{**silence_view(s, now), "ends_ts": s.ends_at} for s in sils], windows=windows,
                notice=notice, can_operate=who.can(Action.OPERATE),
                truncated=len(rows) >= 500)


@router.get("/alerts/{alert_id}/deliveries", response_class=HTMLResponse,
            summary="An alert's delivery log (page fragment)", openapi_extra=READ)
def deliveries(request: Request, who: Reader, alert_id: str) -> Response:
    """The delivery log of one alert (a fragment, loaded when its row is opened)."""
    def build() -> Response:
        if not alert_id.isdigit() or not 1 <= int(alert_id) < 2**31:
            raise NotFound(f"no alert {alert_id!r}")
        pm = request.app.state.pm
        with pm.db.connect() as conn:
            a = alert_store.get_alert(conn, int(alert_id), who.scope())
            notes = alert_store.list_notifications(conn, fingerprint=a.fingerprint, limit=50,
                                                   scope=who.scope()).items
        return page(request, "deliveries.html", notes=notes)
    return _guard(request, build)


# --- lineage ------------------------------------------------------------------------------------------------

@router.get("/lineage", response_class=HTMLResponse, summary="A team's lineage (page)", openapi_extra=READ)
def team_lineage(request: Request, who: Reader, team: str | None = None) -> Response:
    return _guard(request, lambda: lineage.team_page(request, team or who.team, who.scope()))


@router.get("/lineage/{pipeline_id:path}", response_class=HTMLResponse, summary="A pipeline's lineage (page)",
            openapi_extra=READ)
def pipeline_lineage(request: Request, who: Reader, pipeline_id: str) -> Response:
    return _guard(request, lambda: lineage.pipeline_page(request, pipeline_id, who.scope()))
