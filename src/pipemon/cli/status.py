"""`pipemon status`: the fleet at a glance, from the service's API."""
from __future__ import annotations

import httpx
import typer
from rich.console import Console
from rich.table import Table

from pipemon.cli import TokenOption, UrlOption, app


def api_get(url: str, token: str | None, path: str, params: dict | None = None) -> dict:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        r = httpx.get(url.rstrip("/") + path, params={k: v for k, v in (params or {}).items() if v is not None},
                      headers=headers, timeout=10)
    except httpx.HTTPError as e:
        typer.secho(f"cannot reach pipemon at {url}: {e}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None
    if r.status_code >= 400:
        try:
            msg = r.json().get("message", r.text)
        except ValueError:
            msg = r.text
        typer.secho(f"pipemon answered {r.status_code}: {msg}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1)
    return r.json()


_STATUS_STYLE = {"succeeded": "green", "failed": "bold red", "aborted": "red", "running": "cyan"}


@app.command()
def status(team: str | None = typer.Option(None, help="Only this team's pipelines."),
           url: str = UrlOption, token: str | None = TokenOption,
           limit: int = typer.Option(200, help="At most this many pipelines.")) -> None:
    """A table of pipelines and their last run."""
    data = api_get(url, token, "/api/v1/pipelines", {"team": team, "limit": min(limit, 1000)})
    table = Table(title="pipelines", header_style="bold")
    for col in ("pipeline", "team", "last run", "started", "duration", "rows", "error"):
        table.add_column(col)
    for p in data["items"]:
        r = p.get("last_run") or {}
        st = r.get("status", "-")
        err = (r.get("error") or {}).get("message") or ""
        dur = r.get("duration_s")
        table.add_row(p["id"], p.get("team") or "-", f"[{_STATUS_STYLE.get(st, '')}]{st}[/]",
                      (r.get("started_at") or "-")[:19], f"{dur:.1f}s" if dur is not None else "-",
                      f"{r['rows']:,.0f}" if r.get("rows") is not None else "-", err[:60])
    Console().print(table)
