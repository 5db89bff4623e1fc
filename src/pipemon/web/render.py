"""Templates (Jinja2, autoescaped) and the small helpers they use."""
from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import jinja2
from fastapi import Request
from fastapi.responses import HTMLResponse
from markupsafe import Markup, escape

from pipemon import __version__
from pipemon.engine.health import HealthState

HERE = Path(__file__).parent
STATES = [s.value for s in sorted(HealthState, key=lambda s: s.rank)]  # worst first
ICONS = {"failing": "✖", "running_long": "↻", "late": "◷", "degraded": "▲", "unknown": "?", "muted": "‖",
         "healthy": "✔", "firing": "⚠", "acknowledged": "◐", "resolved": "✔", "succeeded": "✔", "failed": "✖",
         "aborted": "⊘", "skipped": "↷", "running": "▶", "critical": "‼", "error": "✖", "warning": "▲",
         "info": "ℹ"}

env = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True,
                         trim_blocks=True, lstrip_blocks=True)


def pipeline_url(key: str) -> str:
    """The pipeline page, as notifications link to it (`AlertStage.url`): the id percent-encoded whole."""
    return "/pipelines/" + quote(key, safe="")


def run_url(pipeline: str, run_id: str) -> str:
    return "/runs/" + quote(run_id, safe="") + "?" + urlencode({"pipeline": pipeline})


def lineage_url(key: str) -> str:
    return "/lineage/" + quote(key, safe="")


def ts(t: float | None, fmt: str = "%Y-%m-%d %H:%M") -> Markup:
    """A time: UTC in the page; the browser shows it in the viewer's zone, UTC on hover."""
    if t is None:
        return Markup('<span class="muted">—</span>')
    d = _dt.datetime.fromtimestamp(t, _dt.timezone.utc)
    utc = d.strftime(fmt) + " UTC"
    return Markup(f'<time datetime="{d.isoformat().replace("+00:00", "Z")}" title="{utc}">{utc}</time>')


def ago(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    s = max(0.0, seconds)
    for div, unit in ((86400, "d"), (3600, "h"), (60, "min")):
        if s >= div:
            return f"{s / div:.0f} {unit}"
    return f"{s:.0f} s"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds:.1f} s"


def number(v: float | None) -> str:
    if v is None:
        return "—"
    return f"{v:,.0f}" if abs(v) >= 1 or v == 0 else f"{v:.3g}"


def badge(state: str | None, kind: str = "st") -> Markup:
    """A state as icon + text (never colour alone)."""
    s = state or "unknown"
    icon = ICONS.get(s, "•")
    return Markup(f'<span class="badge {kind}-{escape(s)}"><span aria-hidden="true">{icon}</span> '
                  f'{escape(s.replace("_", " "))}</span>')


def excerpt(text: str | None, n: int = 160) -> str:
    if not text:
        return ""
    line = " ".join(text.split())
    return line if len(line) <= n else line[: n - 1] + "…"


env.globals.update(version=__version__, pipeline_url=pipeline_url, run_url=run_url, lineage_url=lineage_url,
                   ts=ts, ago=ago, duration=duration, number=number, badge=badge, excerpt=excerpt,
                   STATES=STATES, ICONS=ICONS)


# Pages load only this server's files: a browser refuses anything else, and no page can be framed.
HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin",
           "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; "
                                      "script-src 'self'; frame-ancestors 'none'; form-action 'self'"}


def page(request: Request, template: str, status: int = 200, **ctx: Any) -> HTMLResponse:
    # who is logged in, for the header (set by the caller dependency; absent on public pages)
    caller = getattr(request.state, "caller", None)
    from pipemon.web.session import auth_on
    signed_in = caller if auth_on(request) else None
    html = env.get_template(template).render(request=request, path=request.url.path, signed_in=signed_in,
                                             **ctx)
    return HTMLResponse(html, status_code=status, headers=HEADERS)


def error_page(request: Request, status: int, message: str) -> HTMLResponse:
    titles = {400: "Bad request", 401: "Log in", 403: "Forbidden", 404: "Not found", 409: "Ambiguous",
              503: "Unavailable"}
    return page(request, "error.html", status=status, title=titles.get(status, "Error"), message=message)
