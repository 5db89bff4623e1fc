"""Alerts from the shell: `pipemon alerts`, `ack`, `resolve`, `silence …`, `receivers test`, `notifications`,
`replay`."""
from __future__ import annotations

import sys
from pathlib import Path

import httpx
import typer
from rich.console import Console
from rich.table import Table

from pipemon.cli import TokenOption, UrlOption, app
from pipemon.cli.status import _ago, api_get

SEVERITY_STYLE = {"critical": "bold red", "error": "red", "warning": "yellow", "info": "cyan"}
STATE_STYLE = {"firing": "bold red", "acknowledged": "yellow", "resolved": "green"}

silence_app = typer.Typer(no_args_is_help=True, help="Silence alerts by label matchers.")
app.add_typer(silence_app, name="silence")
receivers_app = typer.Typer(no_args_is_help=True, help="Notification receivers.")
app.add_typer(receivers_app, name="receivers")


def api_send(method: str, url: str, token: str | None, path: str, body: dict | None = None) -> dict:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        r = httpx.request(method, url.rstrip("/") + path, json=body, headers=headers, timeout=30)
    except httpx.HTTPError as e:
        typer.secho(f"cannot reach pipemon at {url}: {e}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None
    if r.status_code >= 400:
        try:
            data = r.json()
            msg = data.get("message", r.text)
            for p in data.get("problems", []):
                msg += f"\n  {p['loc']}: {p['msg']}"
        except ValueError:
            msg = r.text
        typer.secho(f"pipemon answered {r.status_code}: {msg}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1)
    return r.json()


@app.command()
def alerts(team: str | None = typer.Option(None, help="Only this team's alerts."),
           state: str = typer.Option("firing,acknowledged",
                                     help="States, comma-separated (firing, acknowledged, resolved)."),
           limit: int = typer.Option(100), url: str = UrlOption, token: str | None = TokenOption) -> None:
    """Alerts, newest first."""
    data = api_get(url, token, "/api/v1/alerts", {"team": team, "state": state, "limit": limit})
    t = Table(title="alerts", header_style="bold")
    for col in ("id", "severity", "state", "team", "pipeline", "kind", "since", "n", "summary"):
        t.add_column(col, overflow="fold")
    for a in data["items"]:
        note = " [dim](attached to upstream)[/]" if a.get("attached") else ""
        t.add_row(str(a["id"]), f"[{SEVERITY_STYLE.get(a['severity'], '')}]{a['severity']}[/]",
                  f"[{STATE_STYLE.get(a['state'], '')}]{a['state']}[/]", a["team"], a["pipeline"], a["kind"],
                  _ago(a["started_at"]), str(a["occurrences"]), a["summary"] + note)
    Console().print(t)
    if not data["items"]:
        typer.echo("no alerts")


@app.command()
def ack(alert_id: int = typer.Argument(..., help="Alert id (see `pipemon alerts`)."),
        by: str = typer.Option("cli", help="Ignored: the server records the token's name."),
        comment: str = typer.Option(""),
        url: str = UrlOption, token: str | None = TokenOption) -> None:
    """Acknowledge an alert: escalation stops."""
    a = api_send("POST", url, token, f"/api/v1/alerts/{alert_id}/ack", {"by": by, "comment": comment})
    typer.echo(f"alert {a['id']} {a['state']} by {a['acknowledged_by']}: {a['summary']}")


@app.command()
def resolve(alert_id: int = typer.Argument(...),
            by: str = typer.Option("cli", help="Ignored: the server records the token's name."),
            url: str = UrlOption, token: str | None = TokenOption) -> None:
    """Resolve an alert by hand."""
    a = api_send("POST", url, token, f"/api/v1/alerts/{alert_id}/resolve", {"by": by})
    typer.echo(f"alert {a['id']} {a['state']}: {a['summary']}")


@silence_app.command("add")
def silence_add(matcher: list[str] = typer.Option(..., "--matcher", "-m",
                                                  help='e.g. team="payments" (repeatable)'),
                for_: str = typer.Option("2h", "--for", help="How long: 30m, 2h, 1d."),
                comment: str = typer.Option("", help="Why."),
                author: str = typer.Option("cli", "--author",
                                           help="Ignored: the server records the token's name."),
                url: str = UrlOption, token: str | None = TokenOption) -> None:
    """Silence alerts matching every matcher, for a while. They are still recorded and visible."""
    s = api_send("POST", url, token, "/api/v1/silences", {"matchers": matcher, "duration": for_,
                                                          "created_by": author, "comment": comment})
    typer.echo(f"silence {s['id']} {s['state']} until {s['ends_at']}: {' '.join(s['matchers'])}")


@silence_app.command("list")
def silence_list(all_: bool = typer.Option(False, "--all", help="Include expired silences."),
                 url: str = UrlOption, token: str | None = TokenOption) -> None:
    """Silences."""
    data = api_get(url, token, "/api/v1/silences", {"expired": str(all_).lower()})
    t = Table(title="silences", header_style="bold")
    for col in ("id", "state", "matchers", "ends", "by", "comment"):
        t.add_column(col, overflow="fold")
    for s in data["items"]:
        t.add_row(str(s["id"]), s["state"], " ".join(s["matchers"]), s["ends_at"], s["created_by"],
                  s["comment"])
    Console().print(t)


@silence_app.command("expire")
def silence_expire(silence_id: int = typer.Argument(...), url: str = UrlOption,
                   token: str | None = TokenOption) -> None:
    """End a silence now."""
    s = api_send("DELETE", url, token, f"/api/v1/silences/{silence_id}")
    typer.echo(f"silence {s['id']} {s['state']}")


@receivers_app.command("test")
def receivers_test(name: str = typer.Argument(..., help="Receiver name from the config."),
                   url: str = UrlOption, token: str | None = TokenOption) -> None:
    """Send a test notification through a receiver now; exit 1 when it fails."""
    r = api_send("POST", url, token, f"/api/v1/receivers/{name}/test")
    if r["ok"]:
        typer.echo(f"receiver {name}: test notification delivered")
        return
    typer.secho(f"receiver {name}: {r['error']}", fg=typer.colors.RED, err=True)
    raise typer.Exit(1)


@app.command()
def notifications(receiver: str | None = typer.Option(None), status: str | None = typer.Option(None),
                  limit: int = typer.Option(50), url: str = UrlOption,
                  token: str | None = TokenOption) -> None:
    """The delivery log."""
    data = api_get(url, token, "/api/v1/notifications",
                   {"receiver": receiver, "status": status, "limit": limit})
    t = Table(title="notifications", header_style="bold")
    for col in ("id", "receiver", "action", "status", "attempts", "created", "alerts", "last error"):
        t.add_column(col, overflow="fold")
    for n in data["items"]:
        t.add_row(str(n["id"]), n["receiver"], n["action"], n["status"], str(n["attempts"]),
                  _ago(n["created_at"]), ", ".join(f"{a['pipeline']} {a['kind']}" for a in n["alerts"])[:80],
                  (n["last_error"] or "")[:80])
    Console().print(t)


@app.command()
def replay(config: Path = typer.Option(..., "--config", "-c", help="The pipemon.yaml to try."),
           input_: Path = typer.Option(..., "--input", "-i",
                                       help="Events as JSON lines (OpenLineage or native), "
                                            "in event-time order; - for stdin."),
           output: Path | None = typer.Option(None, "--output", "-o", help="Notifications as JSON lines."),
           until: str | None = typer.Option(None, help="ISO time to advance the clock to at the end."),
           tick: float = typer.Option(60.0, help="Clock step between events, seconds."),
           summary: bool = typer.Option(False, "--summary",
                                        help="Print pages per receiver and team per week.")
           ) -> None:
    """Run the engine over recorded events with this configuration; write the notifications it would send."""
    from datetime import datetime, timezone

    from pipemon.cli.serve import load_settings
    from pipemon.replay import replay as run_replay
    from pipemon.replay import summary_table

    settings = load_settings(str(config))
    until_ts = None
    if until:
        try:
            d = datetime.fromisoformat(until)
        except ValueError:
            raise typer.BadParameter(f"not an ISO time: {until!r}", param_hint="--until") from None
        until_ts = (d if d.tzinfo else d.replace(tzinfo=timezone.utc)).timestamp()
    src = sys.stdin.buffer if str(input_) == "-" else open(input_, "rb")
    out = open(output, "w") if output else None
    try:
        res = run_replay(settings, src, out, until=until_ts, tick=tick)
    finally:
        if out:
            out.close()
        if src is not sys.stdin.buffer:
            src.close()
    typer.echo(f"replayed {res.events:,} events ({res.rejected} rejected) in {res.seconds:.1f}s "
               f"({res.events / max(res.seconds, 1e-9):,.0f} events/s): {res.notifications} notifications"
               + (f" -> {output}" if output else ""), err=True)
    if summary:
        console = Console()
        t = Table(title="pages per team (a trigger, repeat or escalation with a critical or error alert) "
                        "vs a naive one-page-per-failed-or-late-run policy", header_style="bold")
        for col in ("team", "pages", "of which repeats", "warnings and notices", "naive pages"):
            t.add_column(col)
        for row in summary_table(res):
            t.add_row(*row)
        console.print(t)
        console.print(_weekly("pages per receiver per week", "receiver", res.pages_by_receiver_week))
        console.print(_weekly("pages per team per week", "team", res.pages_by_team_week))


def _weekly(title: str, key: str, counts: dict) -> Table:
    weeks = sorted({w for c in counts.values() for w in c})
    t = Table(title=title, header_style="bold")
    t.add_column(key)
    for w in weeks:
        t.add_column(w)
    for name, c in sorted(counts.items()):
        t.add_row(name, *(str(c.get(w, 0)) for w in weeks))
    return t


@app.command()
def findings(pipeline: str | None = typer.Option(None, help="namespace/name"),
             team: str | None = typer.Option(None), limit: int = typer.Option(50), url: str = UrlOption,
             token: str | None = TokenOption) -> None:
    """Anomaly findings, newest first, with their evidence."""
    data = api_get(url, token, "/api/v1/findings", {"pipeline": pipeline, "team": team, "limit": limit})
    t = Table(title="findings", header_style="bold")
    for col in ("id", "when", "pipeline", "kind", "metric", "score", "explanation", "verdict"):
        t.add_column(col, overflow="fold")
    for f in data["items"]:
        t.add_row(str(f["id"]), _ago(f["time"]), f["pipeline"], f["kind"], f["metric"], f"{f['score']:.1f}",
                  f["explanation"], f["verdict"] or "")
    Console().print(t)


@app.command()
def feedback(finding_id: int = typer.Argument(..., help="Finding id (see `pipemon findings`)."),
             verdict: str = typer.Argument(..., help="expected (the new normal: re-baseline now) or incident "
                                                     "(a real problem: keep it out of the baseline)"),
             url: str = UrlOption, token: str | None = TokenOption) -> None:
    """Tell the detectors what a finding was; honoured from the pipeline's next run."""
    if verdict not in ("expected", "incident"):
        raise typer.BadParameter("expected or incident", param_hint="VERDICT")
    f = api_send("POST", url, token, f"/api/v1/findings/{finding_id}/feedback", {"verdict": verdict})
    typer.echo(f"finding {f['id']} ({f['pipeline']} {f['metric']}) marked {f['verdict']}")
