"""Alerts from the shell: `pipemon alerts`, `ack`, `resolve`, `silence …`, `receivers test`, `notifications`,
`replay`."""
from __future__ import annotations

import sys
from pathlib import Path
from urllib.parse import quote

import httpx
import typer
from rich.table import Table
from rich.text import Text

from pipemon.cli import TokenOption, UrlOption, app
from pipemon.cli.progress import progress
from pipemon.cli.output import Column, Output, OutputOption, emit
from pipemon.cli.status import _ago, api_get
from pipemon.cli.text import console, echo_error, plain, safe
from pipemon.model import DeliveryStatus

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
        echo_error(f"cannot reach pipemon at {url}: {e}")
        raise typer.Exit(1) from None
    if r.status_code >= 400:
        try:
            data = r.json()
            msg = data.get("message", r.text)
            for p in data.get("problems", []):
                msg += f"\n  {p['loc']}: {p['msg']}"
        except ValueError:
            msg = r.text
        echo_error(f"pipemon answered {r.status_code}: {msg}")
        raise typer.Exit(1)
    return r.json()


@app.command()
def alerts(team: str | None = typer.Option(None, help="Only this team's alerts."),
           state: str = typer.Option("firing,acknowledged",
                                     help="States, comma-separated (firing, acknowledged, resolved)."),
           limit: int = typer.Option(100), url: str = UrlOption, token: str | None = TokenOption,
           output: Output = OutputOption) -> None:
    """Alerts, newest first."""
    data = api_get(url, token, "/api/v1/alerts", {"team": team, "state": state, "limit": limit})
    emit(output, "alerts", ALERT_COLUMNS, data["items"])
    if not data["items"] and output is Output.TABLE:
        typer.echo("no alerts")


def _summary_cell(a: dict) -> Text:
    cell = safe(a["summary"])
    if a.get("attached"):
        cell.append(" (attached to upstream)", style="dim")
    return cell


ALERT_COLUMNS = (
    Column("id", lambda a: a["id"]),
    Column("severity", lambda a: a["severity"],
           lambda a: safe(a["severity"], style=SEVERITY_STYLE.get(a["severity"], ""))),
    Column("state", lambda a: a["state"], lambda a: safe(a["state"], style=STATE_STYLE.get(a["state"], ""))),
    Column("team", lambda a: a["team"]),
    Column("pipeline", lambda a: a["pipeline"]),
    Column("kind", lambda a: a["kind"]),
    Column("since", lambda a: a["started_at"], lambda a: _ago(a["started_at"])),
    Column("n", lambda a: a["occurrences"]),
    Column("summary", lambda a: a["summary"], _summary_cell),
    Column("attached", lambda a: bool(a.get("attached")), lambda a: ""),
)


@app.command()
def ack(alert_id: int = typer.Argument(..., help="Alert id (see `pipemon alerts`)."),
        by: str = typer.Option("cli", help="Ignored: the server records the token's name."),
        comment: str = typer.Option(""),
        url: str = UrlOption, token: str | None = TokenOption) -> None:
    """Acknowledge an alert: escalation stops."""
    a = api_send("POST", url, token, f"/api/v1/alerts/{alert_id}/ack", {"by": by, "comment": comment})
    typer.echo(plain(f"alert {a['id']} {a['state']} by {a['acknowledged_by']}: {a['summary']}", None))


@app.command()
def resolve(alert_id: int = typer.Argument(...),
            by: str = typer.Option("cli", help="Ignored: the server records the token's name."),
            url: str = UrlOption, token: str | None = TokenOption) -> None:
    """Resolve an alert by hand."""
    a = api_send("POST", url, token, f"/api/v1/alerts/{alert_id}/resolve", {"by": by})
    typer.echo(plain(f"alert {a['id']} {a['state']}: {a['summary']}", None))


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
    typer.echo(plain(f"silence {s['id']} {s['state']} until {s['ends_at']}: {' '.join(s['matchers'])}", None))


@silence_app.command("list")
def silence_list(all_: bool = typer.Option(False, "--all", help="Include expired silences."),
                 url: str = UrlOption, token: str | None = TokenOption,
                 output: Output = OutputOption) -> None:
    """Silences."""
    data = api_get(url, token, "/api/v1/silences", {"expired": str(all_).lower()})
    emit(output, "silences", SILENCE_COLUMNS, data["items"])


SILENCE_COLUMNS = (
    Column("id", lambda s: s["id"]),
    Column("state", lambda s: s["state"]),
    Column("matchers", lambda s: " ".join(s["matchers"])),
    Column("ends", lambda s: s["ends_at"]),
    Column("by", lambda s: s["created_by"]),
    Column("comment", lambda s: s["comment"]),
)


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
    r = api_send("POST", url, token, f"/api/v1/receivers/{quote(name, safe='')}/test")
    if r["ok"]:
        typer.echo(plain(f"receiver {name}: test notification delivered", None))
        return
    echo_error(f"receiver {name}: {r['error']}")
    raise typer.Exit(1)


@app.command()
def notifications(receiver: str | None = typer.Option(None),
                  status: DeliveryStatus | None = typer.Option(None, case_sensitive=False),
                  limit: int = typer.Option(50), url: str = UrlOption,
                  token: str | None = TokenOption, output: Output = OutputOption) -> None:
    """The delivery log."""
    data = api_get(url, token, "/api/v1/notifications",
                   {"receiver": receiver, "status": status, "limit": limit})
    emit(output, "notifications", NOTIFICATION_COLUMNS, data["items"])


def _alerts_of(n: dict) -> str:
    return ", ".join(f"{a['pipeline']} {a['kind']}" for a in n["alerts"])


NOTIFICATION_COLUMNS = (
    Column("id", lambda n: n["id"]),
    Column("receiver", lambda n: n["receiver"]),
    Column("action", lambda n: n["action"]),
    Column("status", lambda n: n["status"]),
    Column("attempts", lambda n: n["attempts"]),
    Column("created", lambda n: n["created_at"], lambda n: _ago(n["created_at"])),
    Column("alerts", _alerts_of, lambda n: safe(_alerts_of(n), 80)),
    Column("last error", lambda n: n["last_error"] or "", lambda n: safe(n["last_error"] or "", 80)),
)


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
    size = None if src is sys.stdin.buffer else input_.stat().st_size
    out = open(output, "w") if output else None
    try:
        with progress() as bars:
            res = run_replay(settings, bars.lines(src, size, "replaying"), out, until=until_ts, tick=tick)
    finally:
        if out:
            out.close()
        if src is not sys.stdin.buffer:
            src.close()
    typer.echo(f"replayed {res.events:,} events ({res.rejected} rejected) in {res.seconds:.1f}s "
               f"({res.events / max(res.seconds, 1e-9):,.0f} events/s): {res.notifications} notifications"
               + (f" -> {output}" if output else ""), err=True)
    if summary:
        screen = console()
        t = Table(title="pages per team (a trigger, repeat or escalation with a critical or error alert) "
                        "vs a naive one-page-per-failed-or-late-run policy", header_style="bold")
        for col in ("team", "pages", "of which repeats", "warnings and notices", "naive pages"):
            t.add_column(col)
        for row in summary_table(res):
            t.add_row(*(safe(cell) for cell in row))
        screen.print(t)
        screen.print(_weekly("pages per receiver per week", "receiver", res.pages_by_receiver_week))
        screen.print(_weekly("pages per team per week", "team", res.pages_by_team_week))


def _weekly(title: str, key: str, counts: dict) -> Table:
    weeks = sorted({w for c in counts.values() for w in c})
    t = Table(title=title, header_style="bold")
    t.add_column(key)
    for w in weeks:
        t.add_column(w)
    for name, c in sorted(counts.items()):
        t.add_row(safe(name), *(str(c.get(w, 0)) for w in weeks))
    return t


@app.command()
def findings(pipeline: str | None = typer.Option(None, help="namespace/name"),
             team: str | None = typer.Option(None), limit: int = typer.Option(50), url: str = UrlOption,
             token: str | None = TokenOption, output: Output = OutputOption) -> None:
    """Anomaly findings, newest first, with their evidence."""
    data = api_get(url, token, "/api/v1/findings", {"pipeline": pipeline, "team": team, "limit": limit})
    emit(output, "findings", FINDING_COLUMNS, data["items"])


FINDING_COLUMNS = (
    Column("id", lambda f: f["id"]),
    Column("when", lambda f: f["time"], lambda f: _ago(f["time"])),
    Column("pipeline", lambda f: f["pipeline"]),
    Column("kind", lambda f: f["kind"]),
    Column("metric", lambda f: f["metric"]),
    Column("score", lambda f: f["score"], lambda f: f"{f['score']:.1f}"),
    Column("explanation", lambda f: f["explanation"]),
    Column("verdict", lambda f: f["verdict"] or ""),
)


@app.command()
def feedback(finding_id: int = typer.Argument(..., help="Finding id (see `pipemon findings`)."),
             verdict: str = typer.Argument(..., help="expected (the new normal: re-baseline now) or incident "
                                                     "(a real problem: keep it out of the baseline)"),
             url: str = UrlOption, token: str | None = TokenOption) -> None:
    """Tell the detectors what a finding was; honoured from the pipeline's next run."""
    if verdict not in ("expected", "incident"):
        raise typer.BadParameter("expected or incident", param_hint="VERDICT")
    f = api_send("POST", url, token, f"/api/v1/findings/{finding_id}/feedback", {"verdict": verdict})
    typer.echo(plain(f"finding {f['id']} ({f['pipeline']} {f['metric']}) marked {f['verdict']}", None))
