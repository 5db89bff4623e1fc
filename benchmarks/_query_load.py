"""Building the database that benchmarks/query.py measures (imported by it; not run by hand).

    fleet = sim.build_fleet(size=n)                       # pipelines, teams, lineage
    plan = Plan.for_fleet(fleet, n_runs, feed_runs)       # sim start so that the data ends about now
    stats = load(url, fleet, plan, demo_config_text, log) # migrate, pipelines, bulk runs, engine feed

The runs come from the simulator's fast path (`sim.run_records`), one 8-day window at a time, each
sorted by start time, so rows land in roughly the order live ingestion would write them. Each pipeline's last
`feed_runs` runs are held back; every earlier run is bulk-inserted as a finished run row with the
columns of `writes.run_values` (SQLite: raw sqlite3 executemany, ~1M rows per transaction; PostgreSQL:
psycopg COPY). `check_row_shape` proves on a sample that a bulk row equals what the real write path
stores for the same run.

The held-back runs then go through the real service code: as native JSON events (START, then COMPLETE
/ FAIL / ABORT with rows, bytes, error, nominal time, team, inputs and outputs), parsed by the native
front door (`pipemon.ingest.native.parse`) and ingested by the real writer (`pm.writer.ingest`) of a
`pipemon.app.build(url, demo settings)`, in time order, with a FakeClock following the events and
the writer's clock tick (`pm.writer.tick`) every `tick_s` of simulated time. So the run rows, events,
lineage edges, health views (`pipeline_state`), findings, rollups and engine checkpoints of those runs
are the engine's own; nothing is hand-written.
"""
from __future__ import annotations

import collections
import itertools
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from operator import attrgetter
from pathlib import Path

import msgspec
import sqlalchemy as sa

from pipemon import sim
from pipemon.clock import FakeClock
from pipemon.config import Settings, loads
from pipemon.engine import runs as runfold
from pipemon.ingest import native
from pipemon.model import RunStatus
from pipemon.store import db, writes
from pipemon.store.schema import pipelines

DAY = 86400.0
HOUR = 3600.0
_STATUS = {sim.RunStatus.SUCCESS: RunStatus.SUCCEEDED.value, sim.RunStatus.FAILED: RunStatus.FAILED.value,
           sim.RunStatus.ABORTED: RunStatus.ABORTED.value}
_TERMINAL = {sim.RunStatus.SUCCESS: "COMPLETE", sim.RunStatus.FAILED: "FAIL", sim.RunStatus.ABORTED: "ABORT"}
_ERROR = {sim.RunStatus.FAILED: ("task failed (simulated by benchmarks/query.py)", "SimulatedFailure"),
          sim.RunStatus.ABORTED: ("run killed after hanging (simulated by benchmarks/query.py)", "SimulatedAbort")}
WINDOW_DAYS = 8  # simulated days per sim.run_records window: one sort each, ~1M runs at 10,000 pipelines
_start_of = attrgetter("start")
_COPY_COLS = ("pipeline_id", "run_id", *writes._RUN_COLS)
Log = Callable[[str], None]


# ------------------------------------------------------------------------------------------------------------
# the plan: which simulated time range gives the wanted number of runs

@dataclass(frozen=True)
class Plan:
    seed: int
    pipelines: int
    runs: int            # runs in the database after the load (bulk + fed)
    feed_runs: int       # per pipeline, the last ones go through the engine
    start: float         # simulated time of the first slot (unix s)
    days: float          # simulated days generated at most
    tick_s: float = 900.0

    @staticmethod
    def for_fleet(fleet: sim.Fleet, runs: int, feed_runs: int, tick_s: float = 900.0,
                  now: float | None = None) -> Plan:
        """Start so that `runs` runs end about now (2 h margin): the served database then looks live.
        The share of slots that really run (missing and skipped ones don't) is measured on one day."""
        now = time.time() if now is None else now
        probe_start = now // HOUR * HOUR - 30 * DAY
        happened = sum(1 for _ in sim.run_records(fleet, probe_start, probe_start + DAY, window_days=1))
        per_day = max(1.0, happened)
        days = runs / per_day * 1.002 + 2 * HOUR / DAY
        start = float(round(now // HOUR * HOUR - days * DAY))  # whole seconds: exact window bounds
        return Plan(fleet.seed, len(fleet), runs, feed_runs, start, days + 2.0, tick_s)


# ------------------------------------------------------------------------------------------------------------
# rows

def run_row(pid: int, r: sim.RunRecord) -> tuple:
    """(pipeline_id, run_id, *writes._RUN_COLS) of a finished run, as the writer stores it when the run's
    START and terminal event arrive (see check_row_shape)."""
    ok = r.status is sim.RunStatus.SUCCESS
    err_msg, err_type = _ERROR.get(r.status, (None, None))
    has_metrics = r.rows is not None or r.bytes is not None
    return (pid, r.run_id,
            None, None, _STATUS[r.status], r.start, r.end, max(0.0, r.end - r.start), True, True,
            r.end, r.end,
            float(r.rows) if ok and r.rows is not None else None,
            float(r.bytes) if ok and r.bytes is not None else None,
            r.end if has_metrics else None, None, err_msg, err_type, None, r.nominal_time,
            None, None)  # task_states, cause: a run without tasks has neither


def native_events(p: sim.Pipeline, r: sim.RunRecord) -> tuple[dict, dict]:
    """The run as two native JSON events (the documented `POST /api/v1/events` schema)."""
    common = {"namespace": p.namespace, "name": p.name, "run_id": r.run_id, "team": p.team,
              "nominal_time": r.nominal_time,
              "inputs": [f"{d.namespace}/{d.name}" for d in p.inputs],
              "outputs": [f"{d.namespace}/{d.name}" for d in p.outputs]}
    start = {**common, "type": "START", "event_time": r.start, "event_id": f"{r.run_id}:start"}
    end = {**common, "type": _TERMINAL[r.status], "event_time": r.end, "event_id": f"{r.run_id}:end"}
    if r.status is sim.RunStatus.SUCCESS and r.rows is not None:
        end["metrics"] = {"rows": r.rows, "bytes": r.bytes}
    if r.status in _ERROR:
        end["error"] = {"message": _ERROR[r.status][0], "type": _ERROR[r.status][1]}
    return start, end


def check_row_shape(fleet: sim.Fleet, sample: Iterable[sim.RunRecord]) -> int:
    """Bulk rows must equal what the real path stores: native parse -> run fold -> writes.run_values."""
    enc = msgspec.json.Encoder()
    by_id = fleet.by_id
    n = 0
    for r in sample:
        p = by_id[r.pipeline]
        run = None
        for ev in native.parse(enc.encode(list(native_events(p, r))), r.end):
            run = runfold.apply(run, ev, p.id, ev.run_id)
        want = (1, r.run_id, *writes.run_values(run))
        got = run_row(1, r)
        if want != got:
            diff = [(c, w, g) for c, w, g in zip(_COPY_COLS, want, got) if w != g]
            raise AssertionError(f"bulk row differs from the write path for {r}: {diff}")
        n += 1
    return n


# ------------------------------------------------------------------------------------------------------------
# generation: time-ordered bulk runs, and each pipeline's tail held back for the engine

@dataclass
class Generated:
    bulk: int = 0
    tails: dict[str, collections.deque] = field(default_factory=dict)
    first_start: dict[str, float] = field(default_factory=dict)
    last_bulk_end: dict[str, float] = field(default_factory=dict)
    cut: float = 0.0          # start time of the last run generated
    gen_s: float = 0.0        # seconds spent in the simulator and sorting


def generate(fleet: sim.Fleet, plan: Plan, g: Generated) -> Iterator[sim.RunRecord]:
    """The runs to bulk-insert, in start order within each simulated window of WINDOW_DAYS (the windows
    of sim.run_records); `g` collects the held-back tails. Stops at exactly plan.runs runs in all."""
    tails = g.tails = {p.id: collections.deque(maxlen=plan.feed_runs) for p in fleet.pipelines}
    width = WINDOW_DAYS * DAY
    stream = sim.run_records(fleet, plan.start, plan.start + plan.days * DAY, window_days=WINDOW_DAYS)
    total = 0
    t0 = time.perf_counter()
    for _, group in itertools.groupby(stream, key=lambda r: (r.nominal_time - plan.start) // width):
        window = sorted(group, key=_start_of)
        room = plan.runs - total
        for out in _take(window[:room], tails, g.first_start, g.last_bulk_end):
            g.bulk += 1
            g.gen_s += time.perf_counter() - t0
            yield out
            t0 = time.perf_counter()
        total += min(len(window), room)
        if total >= plan.runs:
            break
    g.gen_s += time.perf_counter() - t0
    if total < plan.runs:
        raise RuntimeError(f"the simulator gave {total:,} runs in {plan.days:.1f} days, fewer than {plan.runs:,}")


def _take(window: list[sim.RunRecord], tails: dict, first: dict, last_end: dict) -> Iterator[sim.RunRecord]:
    for rec in window:
        pid = rec.pipeline
        if pid not in first:
            first[pid] = rec.start
        tail = tails[pid]
        if len(tail) == tail.maxlen:
            old = tail[0]
            last_end[pid] = old.end
            yield old  # the deque drops it on append
        tail.append(rec)


# ------------------------------------------------------------------------------------------------------------
# backends: migrations, pipelines, bulk runs

def create_pipelines(engine: sa.Engine, fleet: sim.Fleet, settings: Settings, t0: float) -> None:
    rows = []
    for p in fleet.pipelines:
        rule = settings.rule_for(p.id)
        rows.append({"id": p.index + 1, "key": p.id, "namespace": p.namespace, "name": p.name,
                     "team": rule.team if rule and rule.team else p.team, "event_team": p.team,
                     "integration": p.integration.value, "first_seen": t0, "last_event_at": t0})
    with engine.begin() as conn:
        conn.execute(pipelines.insert(), rows)
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text("SELECT setval(pg_get_serial_sequence('pipelines', 'id'), "
                                 "(SELECT max(id) FROM pipelines))"))


def fix_pipeline_times(engine: sa.Engine, fleet: sim.Fleet, g: Generated) -> None:
    """first_seen = the first run's start; last_event_at = the last bulk run's end (the feed moves it on)."""
    rows = []
    for p in fleet.pipelines:
        first = g.first_start.get(p.id)
        if first is not None:
            rows.append({"b_id": p.index + 1, "first_seen": first,
                         "last_event_at": g.last_bulk_end.get(p.id, first)})
    with engine.begin() as conn:
        conn.execute(pipelines.update().where(pipelines.c.id == sa.bindparam("b_id"))
                     .values(first_seen=sa.bindparam("first_seen"), last_event_at=sa.bindparam("last_event_at")),
                     rows)


def bulk_sqlite(engine: sa.Engine, rows: Iterator[tuple], log: Log, per_tx: int = 1_000_000,
                chunk: int = 50_000) -> float:
    """Raw sqlite3 executemany of writes._INSERT_RUNS, `per_tx` rows a transaction. Returns seconds spent
    in the driver (generation not included)."""
    raw = engine.raw_connection()
    spent = 0.0
    try:
        con = raw.driver_connection
        con.execute("PRAGMA cache_size=-1048576")  # 1 GiB for this loader connection: index pages stay cached
        sql = writes._INSERT_RUNS
        n = in_tx = 0
        buf: list[tuple] = []
        last = time.monotonic()
        for row in rows:
            buf.append(row)
            if len(buf) >= chunk:
                t = time.perf_counter()
                con.executemany(sql, buf)
                in_tx += len(buf)
                n += len(buf)
                buf.clear()
                if in_tx >= per_tx:
                    con.commit()
                    in_tx = 0
                spent += time.perf_counter() - t
                if time.monotonic() - last > 30:
                    log(f"    {n:,} runs inserted")
                    last = time.monotonic()
        t = time.perf_counter()
        if buf:
            con.executemany(sql, buf)
        con.commit()
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        spent += time.perf_counter() - t
    finally:
        raw.close()
    return spent


def bulk_pg(engine: sa.Engine, rows: Iterator[tuple], log: Log, per_tx: int = 1_000_000) -> float:
    """psycopg COPY into runs, one COPY and transaction per `per_tx` rows. Returns seconds in COPY."""
    raw = engine.raw_connection()
    spent = 0.0
    try:
        con = raw.driver_connection
        stmt = f"COPY runs ({', '.join(_COPY_COLS)}) FROM STDIN"
        n = 0
        last = time.monotonic()
        more = True
        while more:
            more = False
            t = time.perf_counter()
            with con.cursor() as cur, cur.copy(stmt) as cp:
                k = 0
                for row in rows:
                    cp.write_row(row)
                    k += 1
                    if k >= per_tx:
                        more = True
                        break
            con.commit()
            spent += time.perf_counter() - t
            n += k
            if time.monotonic() - last > 30:
                log(f"    {n:,} runs copied")
                last = time.monotonic()
    finally:
        raw.close()
    return spent


# ------------------------------------------------------------------------------------------------------------
# the engine feed

@dataclass
class FeedStats:
    runs: int = 0
    events: int = 0
    batches: int = 0
    ticks: int = 0
    seconds: float = 0.0
    sim_start: float = 0.0
    sim_end: float = 0.0


def feed(url: str, fleet: sim.Fleet, settings: Settings, tails: dict[str, collections.deque], plan: Plan,
         log: Log, synchronous: str = "OFF", batch: int = 5_000) -> FeedStats:
    """Each pipeline's held-back runs through the native front door and the real writer + engine."""
    from pipemon.app import build

    by_id = fleet.by_id
    timeline: list[tuple[float, int, sim.RunRecord]] = []
    for recs in tails.values():
        for r in recs:
            timeline.append((r.start, 0, r))
            timeline.append((r.end, 1, r))
    timeline.sort(key=lambda x: (x[0], x[1]))
    st = FeedStats(runs=sum(len(t) for t in tails.values()), events=len(timeline))
    if not timeline:
        return st
    st.sim_start = timeline[0][0]
    clock = FakeClock(st.sim_start - 1.0)
    pm = build(url, settings, clock=clock, synchronous=synchronous)
    enc = msgspec.json.Encoder()
    t0 = time.perf_counter()
    last_log = time.monotonic()
    try:
        pending: list[dict] = []
        next_tick = st.sim_start + plan.tick_s

        def flush(at: float) -> None:
            if pending:
                clock.set(at)
                pm.writer.ingest(native.parse(enc.encode(pending), clock.now()))
                st.batches += 1
                pending.clear()

        for i, (t, which, r) in enumerate(timeline):
            if t >= next_tick:
                flush(timeline[i - 1][0])
                clock.set(t)
                pm.writer.tick()
                st.ticks += 1
                next_tick = t + plan.tick_s
            pending.append(native_events(by_id[r.pipeline], r)[which])
            if len(pending) >= batch:
                flush(t)
            if time.monotonic() - last_log > 30:
                log(f"    engine feed: {i + 1:,}/{len(timeline):,} events, simulated "
                    f"{(t - st.sim_start) / DAY:.1f} of {(timeline[-1][0] - st.sim_start) / DAY:.1f} days")
                last_log = time.monotonic()
        flush(timeline[-1][0])
        # The end of the history: the wall clock now (or the last event, if later); tick, then checkpoint
        # the engine state as the writer does every few seconds.
        st.sim_end = max(timeline[-1][0], time.time())
        clock.set(st.sim_end)
        pm.writer.tick()
        st.ticks += 1
        pm.writer.call(lambda conn, now: pm.health.checkpoint(conn, now))
    finally:
        pm.writer.stop()  # closes the writer's connection (the writer thread was never started)
        pm.close()
    st.seconds = time.perf_counter() - t0
    return st


# ------------------------------------------------------------------------------------------------------------
# the whole load

@dataclass
class LoadStats:
    backend: str
    plan: dict
    runs_bulk: int = 0
    runs_total: int = 0
    migrate_s: float = 0.0
    pipelines_s: float = 0.0
    gen_s: float = 0.0          # simulator + sorting, inside the bulk phase
    bulk_s: float = 0.0         # wall time of the bulk phase (generation included)
    bulk_driver_s: float = 0.0  # of which inside executemany / COPY
    analyze_s: float = 0.0      # PostgreSQL: VACUUM ANALYZE between the bulk load and the feed
    autovacuum: str | None = None
    feed: dict = field(default_factory=dict)
    finalize_s: float = 0.0
    total_s: float = 0.0
    row_shape_checked: int = 0
    counts: dict = field(default_factory=dict)
    states: dict = field(default_factory=dict)
    data_end_lag_h: float = 0.0  # hours between the last simulated run start and the end of the feed

    def summary(self) -> dict:
        d = asdict(self)
        d["bulk_runs_per_s"] = self.runs_bulk / self.bulk_s if self.bulk_s else None
        d["bulk_driver_runs_per_s"] = self.runs_bulk / self.bulk_driver_s if self.bulk_driver_s else None
        f = self.feed
        d["feed_events_per_s"] = f["events"] / f["seconds"] if f.get("seconds") else None
        d["feed_runs_per_s"] = f["runs"] / f["seconds"] if f.get("seconds") else None
        return d


def load(url: str, fleet: sim.Fleet, plan: Plan, settings_text: str, log: Log) -> LoadStats:
    """Migrate a fresh database at `url`, then pipelines, bulk runs, and the engine feed."""
    backend = "sqlite" if db.is_sqlite(url) else "postgresql"
    st = LoadStats(backend, asdict(plan))
    settings = loads(settings_text, "pipemon-demo.yaml")
    t_all = time.perf_counter()

    t = time.perf_counter()
    engine = db.open_engine(url, synchronous="OFF")
    try:
        db.upgrade(engine)
        st.migrate_s = time.perf_counter() - t

        sample = [r for _, r in zip(range(20_000), sim.run_records(fleet, plan.start, plan.start + DAY))]
        odd = [r for r in sample if r.status is not sim.RunStatus.SUCCESS][:50]
        st.row_shape_checked = check_row_shape(fleet, sample[:200] + odd)

        t = time.perf_counter()
        create_pipelines(engine, fleet, settings, plan.start)
        st.pipelines_s = time.perf_counter() - t

        g = Generated()
        pid_of = {p.id: p.index + 1 for p in fleet.pipelines}
        rows = (run_row(pid_of[r.pipeline], r) for r in generate(fleet, plan, g))
        log(f"  bulk-loading {plan.runs - plan.pipelines * plan.feed_runs:,}~ runs "
            f"({'executemany' if backend == 'sqlite' else 'COPY'}) ...")
        t = time.perf_counter()
        st.bulk_driver_s = (bulk_sqlite if backend == "sqlite" else bulk_pg)(engine, rows, log)
        st.bulk_s = time.perf_counter() - t
        st.gen_s = g.gen_s
        if backend == "postgresql":  # COPY pulls the rows from the simulator as it goes: take its share out
            st.bulk_driver_s = max(0.0, st.bulk_driver_s - g.gen_s)
        st.runs_bulk = g.bulk
        fix_pipeline_times(engine, fleet, g)
        fed_runs = sum(len(x) for x in g.tails.values())
        g.cut = max((x[-1].start for x in g.tails.values() if x), default=plan.start)
        log(f"  bulk: {g.bulk:,} runs in {st.bulk_s:.0f}s ({g.bulk / max(st.bulk_s, 1e-9):,.0f} runs/s; "
            f"simulator {g.gen_s:.0f}s, driver {st.bulk_driver_s:.0f}s); feeding {fed_runs:,} runs "
            f"through the engine ...")
        if backend == "postgresql":
            # Planner statistics before the writer runs: without them `run_id IN (...)` lookups plan as
            # sequential scans of the whole runs table (~0.5 s each). Autovacuum would analyze a freshly
            # loaded table within a minute or so, but it may be off (it is on the test server).
            t = time.perf_counter()
            st.autovacuum = vacuum_analyze(engine, ("pipelines", "runs"))
            st.analyze_s = time.perf_counter() - t
            log(f"  VACUUM ANALYZE after the bulk load: {st.analyze_s:.0f}s (autovacuum is {st.autovacuum})")
    finally:
        engine.dispose()

    fs = feed(url, fleet, settings, g.tails, plan, log)
    st.feed = asdict(fs)
    st.data_end_lag_h = (fs.sim_end - g.cut) / HOUR
    log(f"  feed: {fs.runs:,} runs / {fs.events:,} events in {fs.seconds:.0f}s "
        f"({fs.events / max(fs.seconds, 1e-9):,.0f} events/s, {fs.ticks:,} clock ticks)")

    t = time.perf_counter()
    engine = db.open_engine(url)
    try:
        if backend == "postgresql":
            # What autovacuum does soon after a load (visibility map, statistics), done now so that the
            # measurement does not depend on when it happens to run.
            vacuum_analyze(engine, ("pipelines", "runs", "pipeline_state", "lineage", "events", "findings", "rollups"))
        else:
            raw = engine.raw_connection()
            try:
                raw.driver_connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            finally:
                raw.close()
        with engine.connect() as conn:
            for table in ("pipelines", "runs", "events", "lineage", "pipeline_state", "findings", "rollups"):
                st.counts[table] = conn.exec_driver_sql(f"SELECT count(*) FROM {table}").scalar_one()
            st.states = dict(conn.exec_driver_sql(
                "SELECT state, count(*) FROM pipeline_state GROUP BY state ORDER BY 2 DESC").all())
    finally:
        engine.dispose()
    st.finalize_s = time.perf_counter() - t
    st.runs_total = st.counts["runs"]
    st.total_s = time.perf_counter() - t_all
    if st.counts["pipeline_state"] != plan.pipelines:
        raise RuntimeError(f"pipeline_state has {st.counts['pipeline_state']} rows, not {plan.pipelines}")
    return st


def vacuum_analyze(engine: sa.Engine, tables: Iterable[str]) -> str:
    """VACUUM (ANALYZE) each table (outside a transaction); returns the server's autovacuum setting."""
    raw = engine.raw_connection()
    try:
        con = raw.driver_connection
        con.commit()
        con.autocommit = True
        try:
            for table in tables:
                con.execute(f"VACUUM (ANALYZE) {table}")
            return con.execute("SHOW autovacuum").fetchone()[0]
        finally:
            con.autocommit = False
    finally:
        raw.close()


def sqlite_size(path: Path) -> int:
    return sum(os.path.getsize(p) for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")) if p.exists())


def human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024
    return str(n)
