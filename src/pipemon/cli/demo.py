"""`pipemon demo`: the service on the embedded default with a simulated fleet, in accelerated time."""
from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import msgspec
import typer

from pipemon.cli import app
from pipemon.cli.progress import progress

log = logging.getLogger(__name__)
DAY = 86400.0


@app.command()
def demo(host: str = typer.Option("127.0.0.1", help="Interface to listen on."),
         port: int = typer.Option(8787, help="Port to listen on."),
         db: str = typer.Option("sqlite:///pipemon-demo.db", "--db", help="Database (a fresh file is best)."),
         speed: float = typer.Option(60.0, help="Simulated seconds per real second."),
         history_days: float = typer.Option(9.0, "--history-days", help="Days of history replayed at start "
                                            "(learned schedules need 8 days of runs)."),
         pipelines: int = typer.Option(240, help="Pipelines in the simulated fleet (>= 200)."),
         seed: int = typer.Option(0, help="Seed of the simulation (same seed, same fleet and incidents)."),
         export: Path | None = typer.Option(None, "--export",
                                            help="Write the event stream as JSON lines and exit."),
         days: float = typer.Option(30.0, help="With --export: days of events."),
         fmt: str = typer.Option("openlineage", "--format", help="With --export: openlineage or native."),
         config_out: Path = typer.Option(Path("pipemon-demo.yaml"), "--config-out",
                                         help="Where the demo's pipemon.yaml is written, "
                                              "to read and reuse.")) -> None:
    """Run pipemon with a simulated fleet: ≥ 200 pipelines of 7 teams, their lineage and incidents,
    fed live in accelerated time. With --export, write the same events as JSON lines instead."""
    from pipemon import sim

    if export is not None:
        t0 = time.monotonic()
        with progress() as bars:
            meter = bars.add("simulating", days, "days")
            summary = sim.export(export, days=days, seed=seed, pipelines=pipelines, fmt=fmt,
                                 on_progress=lambda s: meter.set(s / DAY))
            meter.set(days)
        typer.echo(f"wrote {summary.events:,} events ({days:g} days, {pipelines} pipelines) "
                   f"to {summary.events_path} and {summary.incidents} incidents to {summary.incidents_path} "
                   f"in {time.monotonic() - t0:.1f}s")
        return

    from pipemon.app import build
    from pipemon.cli.serve import run_server
    from pipemon.clock import DemoClock
    from pipemon.config import loads

    fleet = sim.build_fleet(seed, pipelines)
    text = sim.demo_config(fleet, path=config_out)
    settings = loads(text, str(config_out))
    now = time.time()
    start = now // 3600 * 3600 - history_days * DAY  # history ends at the current hour of the real day
    clock = DemoClock(start, speed)
    pm = build(db, settings, clock=clock)
    feeder = sim.Feeder(fleet, start)
    url = f"http://{host}:{port}"
    threading.Thread(target=_feed, args=(pm, clock, feeder, start + history_days * DAY), daemon=True,
                     name="pipemon-demo-feed").start()
    run_server(pm, host, port, (
        f"pipemon demo: {len(fleet.pipelines)} pipelines, {len(fleet.teams)} teams, "
        f"{history_days:g} days of history, then {speed:g}x real time\n"
        f"  {url}/ (dashboard)   {url}/docs (API)   pipemon status --url {url}\n"
        f"  config: {config_out}   database: {pm.safe_db_url}\n"
        f"  notifications: one line each below (receiver `terminal`, type `log`), also at {url}/alerts"))


def _feed(pm, clock, feeder, history_end: float) -> None:
    """Replay history with the clock following the events, then feed live on the accelerated clock."""
    from pipemon.ingest import openlineage

    enc = msgspec.json.Encoder()
    while not pm.started:  # the server's start-up starts the writer
        time.sleep(0.05)
    t0 = time.monotonic()
    batch: list = []
    begin = clock.now()
    next_tick = begin + 300
    with progress() as bars:
        meter = bars.add("replaying history", (history_end - begin) / DAY, "days")
        for ev in feeder.history(feeder.position, history_end):
            t = ev_time(ev)
            if t >= next_tick:
                _flush(pm, batch)
                clock.set(t)
                pm.writer.tick()
                next_tick = t + 300
                meter.set((t - begin) / DAY)
            batch += openlineage.parse(enc.encode(ev), t)
        _flush(pm, batch)
        meter.set((history_end - begin) / DAY)
    clock.set(history_end)
    pm.writer.tick()
    clock.go()
    typer.echo(f"  history replayed in {time.monotonic() - t0:.1f}s; the fleet now runs live")
    while pm.started:
        events = feeder.due(clock.now())
        batch = []
        for ev in events:
            batch += openlineage.parse(enc.encode(ev), clock.now())
        _flush(pm, batch)
        time.sleep(0.25)


def _flush(pm, batch: list) -> None:
    if batch:
        pm.writer.ingest(list(batch))
        batch.clear()


def ev_time(ev: dict) -> float:
    from datetime import datetime
    return datetime.fromisoformat(ev["eventTime"]).timestamp()
