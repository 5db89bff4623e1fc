"""`pipemon status` and `pipemon show`: the fleet at a glance and one pipeline in depth, from the API."""
from __future__ import annotations

from datetime import datetime, timezone
from urllib.parse import quote

import httpx
import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from pipemon.cli import TokenOption, UrlOption, app
from pipemon.cli.output import Column, Output, OutputOption, emit
from pipemon.cli.text import console as make_console
from pipemon.cli.text import echo_error, plain, safe
from pipemon.engine.runs import last_lines

STATE_STYLE = {"failing": "bold red", "running_long": "magenta", "late": "yellow", "degraded": "dark_orange",
               "unknown": "dim", "healthy": "green"}
WORST_FIRST = ["failing", "running_long", "late", "degraded", "unknown", "healthy"]
RUN_STYLE = {"succeeded": "green", "failed": "bold red", "aborted": "red", "running": "cyan",
             "skipped": "dim"}
SPARK = "▁▂▃▄▅▆▇█"


def api_get(url: str, token: str | None, path: str, params: dict | None = None) -> dict:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        r = httpx.get(url.rstrip("/") + path,
                      params={k: v for k, v in (params or {}).items() if v is not None},
                      headers=headers, timeout=30)
    except httpx.HTTPError as e:
        echo_error(f"cannot reach pipemon at {url}: {e}")
        raise typer.Exit(1) from None
    if r.status_code >= 400:
        try:
            msg = r.json().get("message", r.text)
        except ValueError:
            msg = r.text
        echo_error(f"pipemon answered {r.status_code}: {msg}")
        raise typer.Exit(1)
    return r.json()


def _ago(iso: str | None) -> str:
    if not iso:
        return "-"
    s = (datetime.now(timezone.utc) - datetime.fromisoformat(iso)).total_seconds()
    return _span(s) + (" ago" if s >= 0 else " ahead")


def _span(s: float | None) -> str:
    if s is None:
        return "-"
    s = abs(s)
    for unit, n in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= n:
            return f"{s / n:.1f}{unit}" if s < 10 * n else f"{s / n:.0f}{unit}"
    return f"{s:.0f}s"


def _num(v: float | None) -> str:
    if v is None:
        return "-"
    for unit, n in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(v) >= n:
            return f"{v / n:.1f}{unit}"
    return f"{v:.0f}" if float(v).is_integer() else f"{v:.2f}"


def sparkline(values: list[float]) -> str:
    if not values:
        return ""
    lo, hi = min(values), max(values)
    if hi == lo:
        return SPARK[3] * len(values)
    return "".join(SPARK[int((v - lo) / (hi - lo) * (len(SPARK) - 1))] for v in values)


def _muted(p: dict) -> str:
    """` (muted until 14:00)`: a silence or maintenance window mutes notifications, not the state."""
    m = p.get("muted")
    if not m:
        return ""
    until = (m.get("until") or "")[:16].replace("T", " ")
    return f" (muted{' until ' + until if until else ''})"


def _last(p: dict) -> dict:
    return p.get("last_run") or {}


def _run_cell(p: dict) -> Text:
    rs = _last(p).get("status") or "-"
    return Text.assemble(safe(rs, style=RUN_STYLE.get(rs, "")), " ", _ago(_last(p).get("started_at")))


STATUS_COLUMNS = (
    Column("pipeline", lambda p: p["id"]),
    Column("team", lambda p: p.get("team") or "-"),
    Column("state", lambda p: p["state"] + _muted(p),
           lambda p: Text.assemble(safe(p["state"], style=STATE_STYLE.get(p["state"], "")),
                                   (_muted(p), "blue"))),
    Column("since", lambda p: p.get("state_since"), lambda p: _ago(p.get("state_since"))),
    Column("reason", lambda p: p.get("reason") or ""),
    Column("last run", lambda p: " ".join(filter(None, (_last(p).get("status"), _last(p).get("started_at")))),
           _run_cell),
    Column("duration", lambda p: _last(p).get("duration_s"), lambda p: _span(_last(p).get("duration_s"))),
    Column("rows", lambda p: _last(p).get("rows"), lambda p: _num(_last(p).get("rows"))),
)


@app.command()
def status(team: str | None = typer.Option(None, help="Only this team's pipelines."),
           state: str | None = typer.Option(None, help="Only these states, comma-separated "
                                                        "(e.g. late,failing)."),
           url: str = UrlOption, token: str | None = TokenOption,
           limit: int = typer.Option(200, min=1, help="At most this many pipelines."),
           all_: bool = typer.Option(False, "--all", help="Every pipeline, however many."),
           output: Output = OutputOption) -> None:
    """Pipelines, worst first: state, since when, why, and the last run."""
    wanted = [s.strip() for s in state.split(",")] if state else WORST_FIRST
    bad = [s for s in wanted if s not in WORST_FIRST]
    if bad:
        raise typer.BadParameter(f"unknown state {bad[0]!r}; expected some of {', '.join(WORST_FIRST)}",
                                 param_hint="--state")
    cap = None if all_ else limit
    items: list[dict] = []
    for st in [s for s in WORST_FIRST if s in wanted]:  # one state at a time: the table is worst first
        cursor = None
        while cap is None or len(items) < cap:
            page = api_get(url, token, "/api/v1/pipelines", {
                "team": team, "state": st, "cursor": cursor,
                "limit": 1000 if cap is None else min(1000, cap - len(items))})
            items += page["items"]
            cursor = page["next_cursor"]
            if not cursor:
                break
    total = _matching(url, token, team, wanted) if cap is not None and len(items) >= cap else len(items)
    emit(output, f"pipelines{f' of {team}' if team else ''}", STATUS_COLUMNS, items)
    if output is not Output.TABLE:
        if total > len(items):  # said on stderr: the data stays clean
            echo_error(f"{len(items)} of {total} pipelines; --limit N or --all")
        return
    if not items:
        typer.echo("no pipelines match")
    elif total > len(items):
        typer.echo(f"{len(items)} of {total} pipelines; --limit N or --all")


def _matching(url: str, token: str | None, team: str | None, states: list[str]) -> int:
    """How many pipelines the filters match, from the fleet summary."""
    summary = api_get(url, token, "/api/v1/summary")
    if team is not None:
        summary = summary["teams"].get(team, {"by_state": {}})
    return sum(n for st, n in summary["by_state"].items() if st in states)


@app.command()
def show(pipeline: str = typer.Argument(..., help="namespace/name"), url: str = UrlOption,
         token: str | None = TokenOption, runs: int = typer.Option(10, help="Recent runs to list.")) -> None:
    """One pipeline: state and reason, schedule, metrics, open conditions, lineage and recent runs."""
    pid = quote(pipeline, safe="")
    p = api_get(url, token, f"/api/v1/pipelines/{pid}")
    recent = api_get(url, token, f"/api/v1/pipelines/{pid}/runs", {"limit": max(runs, 30)})["items"]
    console = make_console()
    st = p["state"]
    console.print(Text.assemble(
        safe(p["id"], None, "bold"), "  team ", safe(p.get("team") or "-", None, "bold"),
        "  tier ", safe(p.get("tier") or "-"), "  ", safe(st, style=STATE_STYLE.get(st, "")),
        (_muted(p), "blue"), f" since {_ago(p.get('state_since'))}"))
    console.print(Text.assemble("  ", safe(p.get("reason"), None)))
    if p.get("muted"):
        console.print(Text.assemble("  notifications muted: ", safe(p["muted"]["reason"], None)))
    sched = p.get("schedule")
    if sched:
        console.print(Text.assemble(f"  schedule ({sched['source']}): ", safe(sched["description"]),
                                    f"; next expected {sched.get('next_expected') or '-'}, "
                                    f"deadline {sched.get('deadline') or '-'}"))
    for c in p.get("conditions", []):
        console.print(Text.assemble("  ", ("open", "yellow"), f" {c['kind']}: ", safe(c["text"], None),
                                    f" (since {_ago(c['since'])})"))
    m = p.get("metrics", {})
    pct = lambda v: "-" if v is None else f"{v * 100:.0f}%"  # noqa: E731
    table = Table(show_header=False, box=None, padding=(0, 2))
    for k, v in (("success 24h / 7d / last 20",
                  f"{pct(m.get('success_rate_24h'))} / {pct(m.get('success_rate_7d'))} / "
                  f"{pct(m.get('success_rate_last_20'))}"),
                 ("consecutive failures", str(m.get("consecutive_failures", 0))),
                 ("duration last / p50 / p95 / p99", " / ".join(_span(m.get(k)) for k in (
                     "duration_last_s", "duration_p50_s", "duration_p95_s", "duration_p99_s"))),
                 ("rows last / typical", f"{_num(m.get('rows_last'))} / {_num(m.get('rows_typical'))}"),
                 ("bytes last / typical", f"{_num(m.get('bytes_last'))} / {_num(m.get('bytes_typical'))}"),
                 ("freshness", _span(m.get("freshness_s"))),
                 ("SLA compliance 30d", pct(m.get("sla_compliance_30d"))),
                 ("MTTR / MTBF 30d", f"{_span(m.get('mttr_30d_s'))} / {_span(m.get('mtbf_30d_s'))}"),
                 ("throughput", f"{_num(m.get('throughput_rows_per_s'))} rows/s"),
                 ("upstream", ", ".join(p.get("upstream", [])) or "-"),
                 ("downstream", ", ".join(p.get("downstream", [])) or "-")):
        table.add_row(k, safe(v, None))
    console.print(table)
    durations = [r["duration_s"] for r in reversed(recent) if r.get("duration_s") is not None]
    if durations:
        console.print(f"  durations (oldest → newest): {sparkline(durations)}")
    rt = Table(title="recent runs", header_style="bold")
    for col in ("run", "status", "started", "duration", "rows", "error"):
        rt.add_column(col, overflow="fold")
    for r in recent[:runs]:
        broke = r.get("what_broke") or {}
        err = broke.get("headline") or (r.get("error") or {}).get("message") or ""
        status = "pending" if r.get("pending") else r["status"]
        rt.add_row(safe(r["run_id"]), safe(status, style=RUN_STYLE.get(r["status"], "")),
                   (r.get("started_at") or "-")[:19],
                   _span(r.get("duration_s")) if r.get("duration_s") is not None else "-",
                   _num(r.get("rows")), safe(err, 110))
    console.print(rt)
    if recent:
        _show_tasks(console, url, token, pipeline, recent[0]["run_id"])
        last = recent[0]
        output = last_lines(last.get("log_excerpt"))
        if last["status"] in ("failed", "aborted") and output and not last.get("what_broke"):
            console.print(Text.assemble("  ", (f"output of run {plain(last['run_id'])}", "bold red"),
                                        " (last lines):"))
            for line in output.splitlines():
                console.print(Text.assemble("    ", safe(line, None)))


def _show_tasks(console: Console, url: str, token: str | None, pipeline: str, run_id: str) -> None:
    """The latest run's tasks, failing first, those that never ran included (skipped, upstream_failed), and
    what broke."""
    run = api_get(url, token, f"/api/v1/runs/{quote(run_id, safe='')}", {"pipeline": pipeline})
    if not run.get("tasks") and not run.get("not_run"):
        return
    tt = Table(title=Text(f"tasks of run {plain(run_id)}"), header_style="bold")
    for col in ("task", "state", "started", "duration", "error"):
        tt.add_column(col, overflow="fold")
    def broke_first(t: dict) -> tuple[float, str]:  # the API ranks what broke (broke_rank 0: the headline)
        rank = t.get("broke_rank")
        return (rank if rank is not None else float("inf")), t.get("started_at") or ""
    for t in sorted(run.get("tasks", []), key=broke_first):
        err = (t.get("error") or {}).get("message") or ""
        tt.add_row(safe(t.get("task") or t.get("job") or t["run_id"]),
                   safe(t["status"], style=RUN_STYLE.get(t["status"], "")),
                   (t.get("started_at") or "-")[:19],
                   _span(t.get("duration_s")) if t.get("duration_s") is not None else "-", safe(err, 80))
    for nr in run.get("not_run", []):
        tt.add_row(safe(nr["task"]), safe(nr["state"], style="dim"), "-", "-", "never ran")
    console.print(tt)
    broke = run.get("what_broke")
    if broke:
        console.print(Text.assemble("  ", ("what broke:", "bold red"), " ", safe(broke["headline"], None)))
        for line in (broke.get("trace") or "").splitlines():
            console.print(Text.assemble("    ", safe(line, None)))
