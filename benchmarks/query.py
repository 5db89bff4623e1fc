"""Query API latency on a big fleet: p50/p95 of the read endpoints of a real `pipemon serve`, per backend.

    python benchmarks/query.py --quick                          # smoke run: 1,000 pipelines, 200,000 runs
    python benchmarks/query.py --out query.json                 # 10,000 pipelines, 10,000,000 runs; SQLite + PG
    python benchmarks/query.py --skip-pg --reuse /tmp/qbench.db # keep the built SQLite file for the next run

The goal (issue "Query API: p95 under 50 ms on this 2-core machine"): p95 < 50 ms, sequential requests.

The database (fresh: a SQLite file, or a new schema qbench_<hex> on --pg, dropped unless --keep) is built
by benchmarks/_query_load.py: migrations, the simulator's fleet as pipelines, its runs bulk-loaded
(SQLite executemany / PostgreSQL COPY) in time order, and each pipeline's last --feed-runs runs sent
through the native front door and the real writer and engine, so health views, lineage, findings and
rollups are the engine's own (see that module's docstring). PostgreSQL gets VACUUM ANALYZE after the
bulk load and again at the end (what autovacuum would do; it is off on the test server, so tables that
the feed updates, pipeline_state above all, stay bloated as they would without autovacuum); SQLite is
left as pipemon leaves it (no ANALYZE).

Measured, against `python -m pipemon serve --db URL --config <demo config>` in a subprocess, with httpx
keep-alive clients on this machine (client time included: ~0.3 ms a request):
  summary      GET /api/v1/summary
  team         GET /api/v1/pipelines?team=T                 first page (limit 100), random team
  team-page    GET /api/v1/pipelines?team=T&cursor=C        (extra) a random later page of a random team
  detail       GET /api/v1/pipelines/{id}                   random pipeline, id URL-encoded
  runs         GET /api/v1/pipelines/{id}/runs              (extra) first page (limit 50), random pipeline
  page-overview GET /                                      the dashboard's fleet overview (HTML), first page
  page-pipeline GET /pipelines/{id}                         the dashboard's pipeline page (HTML), random one
The dashboard's pages have their own goal (issue 13): server time p95 < 100 ms.
Each: --warmup requests, the server left to go idle, then --requests sequential requests (p50/p95/p99/max),
then the same number from --concurrency clients at once (p95, requests/s). The server's CPU per request
comes from /proc; `cat /proc/loadavg` is recorded next to every figure, since other work may share the
machine. Then, per backend, every SQL statement the measured handlers run is timed in-process and
explained (EXPLAIN QUERY PLAN / EXPLAIN (ANALYZE, BUFFERS)); with --py-spy, an endpoint over the goal is
also profiled in the server. Every loop is bounded; the server is stopped on exit, Ctrl-C included.
"""
from __future__ import annotations

import argparse
import atexit
import collections
import json
import math
import os
import platform
import random
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import quote

import httpx

sys.path.insert(0, str(Path(__file__).parent))
import _query_load as ql  # noqa: E402

HOST = "127.0.0.1"
GOAL_MS = 50.0
CLK_TCK = os.sysconf("SC_CLK_TCK")
DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
PAGES = ("page-overview", "page-pipeline")  # the dashboard's HTML pages (issue 13)
PAGE_GOAL_MS = 100.0
ENDPOINTS = ("summary", "team", "team-page", "detail", "runs", *PAGES)
REQUIRED = ("summary", "team", "detail")  # the three; the others are extra
STARTED: list[subprocess.Popen] = []


def goal_of(endpoint: str) -> float:
    return PAGE_GOAL_MS if endpoint in PAGES else GOAL_MS


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def source_fingerprint() -> str:
    """A hash of pipemon's source files: other engineers edit the same checkout, so a run's figures are
    tied to the code they measured (and a cached database to the code that built it)."""
    import hashlib

    import pipemon
    h = hashlib.sha256()
    root = Path(pipemon.__file__).parent
    for p in sorted(root.rglob("*.py")):
        h.update(str(p.relative_to(root)).encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


def loadavg() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


# ------------------------------------------------------------------------------------------------------------
# processes

def _die_with_parent() -> None:
    try:
        import ctypes
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def proc_cpu_s(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
    except OSError:
        return 0.0
    fields = data[data.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def machine_busy_s() -> float:
    with open("/proc/stat") as f:
        vals = [int(x) for x in f.readline().split()[1:]]
    return (sum(vals[:8]) - vals[3] - vals[4]) / CLK_TCK


def stop(p: subprocess.Popen, grace: float = 15.0) -> None:
    if p.poll() is not None:
        return
    p.terminate()
    try:
        p.wait(grace)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait(5)


def _stop_all() -> None:
    while STARTED:
        stop(STARTED.pop())


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


class Server:
    """One `pipemon serve`, started by this script."""

    def __init__(self, db_url: str, config: Path, workdir: Path, name: str) -> None:
        self.port = free_port()
        self.argv = [sys.executable, "-m", "pipemon", "serve", "--db", db_url, "--port", str(self.port),
                     "--config", str(config)]
        self.log_path = workdir / f"{name}.log"
        self.popen: subprocess.Popen | None = None
        self.base = f"http://{HOST}:{self.port}"

    def start(self, timeout_s: float) -> float:
        """Start and wait for /readyz; returns the seconds it took."""
        t0 = time.monotonic()
        with open(self.log_path, "wb") as out:
            self.popen = subprocess.Popen(self.argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                          preexec_fn=_die_with_parent)
        STARTED.append(self.popen)
        with httpx.Client(timeout=2) as c:
            while time.monotonic() - t0 < timeout_s:
                if self.popen.poll() is not None:
                    raise RuntimeError(f"pipemon exited with {self.popen.returncode}: {self.log_tail()}")
                try:
                    if c.get(self.base + "/readyz").status_code == 200:
                        return time.monotonic() - t0
                except httpx.HTTPError:
                    pass
                time.sleep(0.2)
        raise RuntimeError(f"pipemon not ready after {timeout_s:.0f}s: {self.log_tail()}")

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def cpu_s(self) -> float:
        return proc_cpu_s(self.pid)

    def wait_idle(self, max_s: float = 120.0, window: float = 1.0, threshold: float = 0.05) -> float:
        """Wait until the server uses < threshold of a core over `window`; returns the seconds waited."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < max_s:
            c0 = self.cpu_s()
            time.sleep(window)
            if (self.cpu_s() - c0) / window < threshold:
                break
        return time.monotonic() - t0

    def log_tail(self, n: int = 800) -> str:
        try:
            return " ".join(self.log_path.read_bytes()[-n:].decode("utf-8", "replace").split())
        except OSError:
            return ""

    def stop(self) -> None:
        if self.popen is not None:
            stop(self.popen)
            if self.popen in STARTED:
                STARTED.remove(self.popen)


# ------------------------------------------------------------------------------------------------------------
# requests

@dataclass(frozen=True)
class Targets:
    """What the requests ask for: each team's pipeline ids (sorted, as pages list them), every pipeline."""

    teams: dict[str, list[str]]
    pipelines: list[str]

    @staticmethod
    def of(fleet, settings) -> Targets:
        teams: dict[str, list[str]] = collections.defaultdict(list)
        for p in fleet.pipelines:
            rule = settings.rule_for(p.id)
            teams[rule.team if rule and rule.team else p.team].append(p.id)
        return Targets({t: sorted(ids) for t, ids in sorted(teams.items())}, [p.id for p in fleet.pipelines])

    def paths(self, endpoint: str, n: int, rng: random.Random) -> list[str]:
        from pipemon.store.reads import encode_cursor
        out = []
        team_names = list(self.teams)
        for _ in range(n):
            if endpoint == "summary":
                out.append("/api/v1/summary")
            elif endpoint == "team":
                out.append(f"/api/v1/pipelines?team={quote(rng.choice(team_names))}")
            elif endpoint == "team-page":
                t = rng.choice(team_names)
                keys = self.teams[t]
                after = keys[rng.randrange(max(1, len(keys) - 100))]
                out.append(f"/api/v1/pipelines?team={quote(t)}&cursor={encode_cursor(after)}")
            elif endpoint == "detail":
                out.append(f"/api/v1/pipelines/{quote(rng.choice(self.pipelines), safe='')}")
            elif endpoint == "runs":
                out.append(f"/api/v1/pipelines/{quote(rng.choice(self.pipelines), safe='')}/runs")
            elif endpoint == "page-overview":
                out.append("/")
            elif endpoint == "page-pipeline":  # the URL notifications link to
                out.append(f"/pipelines/{quote(rng.choice(self.pipelines), safe='')}")
            else:
                raise ValueError(endpoint)
        return out


def check_response(endpoint: str, r: httpx.Response, n_pipelines: int) -> str | None:
    """A sanity check of the first answer of each endpoint: None when it looks right."""
    if r.status_code != 200:
        return f"HTTP {r.status_code}: {r.text[:200]}"
    if endpoint in PAGES:
        marker = 'class="pipelines"' if endpoint == "page-overview" else 'class="state-box'
        ok = r.headers.get("content-type", "").startswith("text/html") and marker in r.text
        return None if ok else f"not the dashboard page: {r.text[:200]}"
    body = r.json()
    if endpoint == "summary" and body.get("pipelines") != n_pipelines:
        return f"summary counts {body.get('pipelines')} pipelines, not {n_pipelines}"
    if endpoint in ("team", "team-page") and not body.get("items"):
        return "empty page"
    if endpoint in ("team", "team-page") and any(i.get("state") == "unknown" for i in body["items"]):
        return "a pipeline without a health view"
    if endpoint == "detail" and not body.get("metrics"):
        return "no metrics in the detail"
    if endpoint == "runs" and not body.get("items"):
        return "no runs"
    return None


def pct(xs: list[float], q: float) -> float | None:
    """Nearest-rank percentile."""
    if not xs:
        return None
    s = sorted(xs)
    return s[min(len(s), max(1, math.ceil(q / 100 * len(s)))) - 1]


def sequential(base: str, paths: list[str], timeout_s: float) -> tuple[list[float], int, int]:
    """Latencies (ms) of `paths` one after another on one keep-alive connection; errors; bytes."""
    lat, errors, size = [], 0, 0
    with httpx.Client(base_url=base, timeout=timeout_s) as c:
        for p in paths:
            t = time.perf_counter()
            r = c.get(p)
            lat.append((time.perf_counter() - t) * 1000)
            size += len(r.content)
            errors += r.status_code != 200
    return lat, errors, size


def concurrent(base: str, paths: list[str], clients: int, timeout_s: float) -> tuple[list[float], int, float]:
    """Latencies (ms) with `clients` keep-alive clients sending at once; errors; wall seconds."""
    local = threading.local()
    made: list[httpx.Client] = []
    lock = threading.Lock()

    def one(p: str) -> tuple[float, bool]:
        c = getattr(local, "c", None)
        if c is None:
            c = local.c = httpx.Client(base_url=base, timeout=timeout_s)
            with lock:
                made.append(c)
        t = time.perf_counter()
        r = c.get(p)
        _ = r.content
        return (time.perf_counter() - t) * 1000, r.status_code != 200

    t0 = time.perf_counter()
    try:
        with ThreadPoolExecutor(clients) as ex:
            res = list(ex.map(one, paths))
    finally:
        for c in made:
            c.close()
    wall = time.perf_counter() - t0
    return [x for x, _ in res], sum(e for _, e in res), wall


def measure(server: Server, targets: Targets, args, n_pipelines: int) -> dict:
    rng = random.Random(args.seed)
    out: dict = {}
    with httpx.Client(base_url=server.base, timeout=60) as c:
        for ep in ENDPOINTS:
            p = targets.paths(ep, 1, rng)[0]
            problem = check_response(ep, c.get(p), n_pipelines)
            if problem:
                raise RuntimeError(f"{ep} {p}: {problem}")
    for ep in ENDPOINTS:
        sequential(server.base, targets.paths(ep, args.warmup, rng), 60)
    idle_s = server.wait_idle()
    log(f"  warmed up ({args.warmup} requests per endpoint), server idle after {idle_s:.0f}s; load {loadavg()}")
    for ep in ENDPOINTS:
        paths = targets.paths(ep, args.requests, rng)
        la0, cpu0, busy0, t0 = loadavg(), server.cpu_s(), machine_busy_s(), time.perf_counter()
        me0 = proc_cpu_s(os.getpid())
        lat, errors, size = sequential(server.base, paths, 60)
        wall = time.perf_counter() - t0
        cpu = server.cpu_s() - cpu0
        mine = proc_cpu_s(os.getpid()) - me0
        others = max(0.0, machine_busy_s() - busy0 - cpu - mine)
        paths_c = targets.paths(ep, args.requests, rng)
        clat, cerr, cwall = concurrent(server.base, paths_c, args.concurrency, 60)
        r = {
            "n": len(lat), "errors": errors + cerr, "p50_ms": pct(lat, 50), "p95_ms": pct(lat, 95),
            "p99_ms": pct(lat, 99), "max_ms": max(lat), "mean_ms": statistics.fmean(lat),
            "bytes_per_response": size / len(lat), "server_cpu_ms_per_req": cpu / len(lat) * 1000,
            "client_cpu_ms_per_req": mine / len(lat) * 1000, "others_cores": others / wall,
            "conc_clients": args.concurrency, "conc_p50_ms": pct(clat, 50), "conc_p95_ms": pct(clat, 95),
            "conc_max_ms": max(clat), "conc_req_per_s": len(clat) / cwall,
            "loadavg_before": la0, "loadavg_after": loadavg(), "example": paths[0],
        }
        out[ep] = r
        log(f"  {ep:9s} p50 {r['p50_ms']:7.1f}  p95 {r['p95_ms']:7.1f}  p99 {r['p99_ms']:7.1f}  max {r['max_ms']:7.1f} ms"
            f" | {args.concurrency} clients p95 {r['conc_p95_ms']:7.1f} ms, {r['conc_req_per_s']:5.0f} req/s"
            f" | server CPU {r['server_cpu_ms_per_req']:.1f} ms/req | load {r['loadavg_after']}")
    return out


# ------------------------------------------------------------------------------------------------------------
# diagnosis: the SQL each handler runs, timed in-process and explained

def sql_profile(url: str, targets: Targets, reps: int, seed: int) -> dict:
    """Run the store reads each measured handler makes (same functions, same arguments) `reps` times,
    capturing every statement and its parameters; then time each statement again on its own (execute +
    fetch all rows, as the handlers do: a cursor event alone misses SQLite's lazy stepping) and explain it
    with the parameters of its slowest execution."""
    import sqlalchemy as sa

    from pipemon.store import db, reads

    rng = random.Random(seed + 1)
    engine = db.open_engine(url)
    captured: dict[str, dict] = {}
    current: list[str] = []

    @sa.event.listens_for(engine, "before_cursor_execute")
    def _capture(conn, cursor, statement, parameters, context, executemany):
        if current:
            captured.setdefault(statement, {"endpoint": current[0], "params": []})["params"].append(parameters)

    def summary(conn):
        reads.state_counts(conn)

    def team(conn):
        reads.list_pipelines(conn, team=rng.choice(list(targets.teams)), limit=100)

    def team_page(conn):
        t = rng.choice(list(targets.teams))
        keys = targets.teams[t]
        reads.list_pipelines(conn, team=t, limit=100, cursor=reads.encode_cursor(keys[rng.randrange(
            max(1, len(keys) - 100))]))

    def detail(conn):
        row = reads.pipeline_with_state(conn, rng.choice(targets.pipelines))
        reads.datasets(conn, row.id)  # upstream/downstream come from the engine's in-memory lineage

    def runs(conn):
        p = reads.pipeline_row(conn, rng.choice(targets.pipelines))
        reads.list_runs(conn, p.id, p.key, limit=50)

    def page_overview(conn):
        from pipemon.web import queries
        queries.fleet_page(conn, reads.state_counts(conn), team=None, states=None, q=None, offset=0, limit=100)

    def page_pipeline(conn):
        from pipemon.web import queries
        row = reads.pipeline_with_state(conn, rng.choice(targets.pipelines))
        reads.list_runs(conn, row.id, row.key, limit=120)
        reads.recent_findings(conn, row.id, limit=100)
        queries.detect_state(conn, row.id)
        queries.open_alerts_of(conn, row.key, row.team)
        reads.datasets(conn, row.id)

    calls = {"summary": summary, "team": team, "team-page": team_page, "detail": detail, "runs": runs,
             "page-overview": page_overview, "page-pipeline": page_pipeline}
    out: dict = {"endpoints": {}, "statements": []}
    try:
        with engine.connect() as conn:
            for ep, fn in calls.items():
                wall = []
                for _ in range(reps):
                    current[:] = [ep]
                    t = time.perf_counter()
                    fn(conn)
                    wall.append((time.perf_counter() - t) * 1000)
                    current.clear()
                    conn.rollback()
                out["endpoints"][ep] = {"reads_ms_median": statistics.median(wall), "reads_ms_max": max(wall)}
            sqlite = engine.dialect.name == "sqlite"
            for text, s in captured.items():
                ms = []
                for params in s["params"]:
                    t = time.perf_counter()
                    conn.exec_driver_sql(text, params).all()
                    ms.append((time.perf_counter() - t) * 1000)
                    conn.rollback()
                worst = s["params"][max(range(len(ms)), key=ms.__getitem__)]
                prefix = "EXPLAIN QUERY PLAN " if sqlite else "EXPLAIN (ANALYZE, BUFFERS) "
                try:
                    rows = conn.exec_driver_sql(prefix + text, worst).all()
                    plan = "\n".join(" | ".join(str(x) for x in r[-1:]) for r in rows) if sqlite else \
                        "\n".join(r[0] for r in rows)
                except Exception as e:  # an EXPLAIN that fails must not lose the timings
                    plan = f"(EXPLAIN failed: {type(e).__name__}: {e})"
                conn.rollback()
                out["statements"].append({
                    "endpoint": s["endpoint"], "sql": " ".join(text.split()), "params_slowest": repr(worst)[:300],
                    "n": len(ms), "median_ms": statistics.median(ms), "max_ms": max(ms), "plan": plan})
    finally:
        engine.dispose()
    return out


def py_spy(server: Server, targets: Targets, endpoint: str, seconds: float, workdir: Path, seed: int) -> dict:
    """Sample the server with py-spy while one client sends `endpoint` requests back to back."""
    exe = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if exe is None:
        return {"error": "py-spy not found"}
    raw = workdir / f"py-spy-{endpoint}-{server.port}.txt"
    spy = subprocess.Popen([exe, "record", "-p", str(server.pid), "-d", str(int(seconds)), "-r", "250",
                            "-f", "raw", "-o", str(raw)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                           preexec_fn=_die_with_parent)
    STARTED.append(spy)
    rng = random.Random(seed + 2)
    deadline = time.monotonic() + seconds + 1
    n = 0
    with httpx.Client(base_url=server.base, timeout=60) as c:
        time.sleep(0.5)
        while time.monotonic() < deadline and spy.poll() is None:
            c.get(targets.paths(endpoint, 1, rng)[0])
            n += 1
    try:
        spy.wait(seconds + 30)
    except subprocess.TimeoutExpired:
        stop(spy)
    STARTED.remove(spy)
    if not raw.exists():
        return {"error": (spy.stderr.read() or b"").decode()[-500:] if spy.stderr else "no output"}
    return {"requests": n, **summarize_py_spy(raw)}


def summarize_py_spy(raw: Path) -> dict:
    """Where request handling spent its samples, from py-spy's raw (collapsed stacks) output."""
    leaf: collections.Counter = collections.Counter()
    incl: collections.Counter = collections.Counter()
    total = handling = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        k = int(count)
        total += k
        raw_frames = stack.split(";")
        # Samples of request handling: the handler thread (pipemon/api, fastapi) or the event loop serving
        # HTTP (starlette, uvicorn); idle pool threads, the writer's loop and other background threads are not.
        if not any(m in f for f in raw_frames for m in ("pipemon/api/", "fastapi/", "starlette/", "uvicorn/protocols")):
            continue
        handling += k
        frames = [_short(f) for f in raw_frames]
        leaf[frames[-1]] += k
        for f in set(frames):
            incl[f] += k
    keep = ("(pipemon/", "(sqlalchemy/engine/", "(psycopg/", "(fastapi/routing.py", "(fastapi/encoders.py",
            "(msgspec", "(pydantic/")
    ranked = [(f, c) for f, c in incl.most_common(600) if any(m in f for m in keep)]
    pct_of = (lambda c: round(c / handling * 100, 1)) if handling else (lambda c: 0.0)
    return {"samples": total, "handling_samples": handling, "raw": str(raw),
            "top_self": [(f, pct_of(c)) for f, c in leaf.most_common(15)],
            "top_inclusive": [(f, pct_of(c)) for f, c in ranked[:30]]}


def _short(frame: str) -> str:
    """`func (/…/site-packages/pkg/mod.py:123)` -> `func (pkg/mod.py)`; `…/src/pipemon/x.py` -> `pipemon/x.py`."""
    func, sep, where = frame.partition(" (")
    if not sep:
        return frame
    path = where.rsplit(":", 1)[0].rstrip(")")
    for root in ("site-packages/", "/src/", "/lib/python3"):
        if root in path:
            path = path.split(root, 1)[1]
            break
    return f"{func} ({path})"


# ------------------------------------------------------------------------------------------------------------
# backends

class PgSchema:
    """A fresh schema qbench_<hex> in the --pg database, dropped at the end unless kept."""

    def __init__(self, url: str) -> None:
        from pipemon.store.db import normalize_url
        self.base_url = normalize_url(url)
        self.name = f"qbench_{secrets.token_hex(4)}"
        self.created = False

    @property
    def url(self) -> str:
        sep = "&" if "?" in self.base_url else "?"
        return f"{self.base_url}{sep}options=-csearch_path%3D{self.name}"

    def _engine(self):
        import sqlalchemy as sa
        return sa.create_engine(self.base_url, connect_args={"connect_timeout": 5}, poolclass=sa.pool.NullPool)

    def create(self) -> None:
        import sqlalchemy as sa
        e = self._engine()
        try:
            with e.begin() as conn:
                conn.execute(sa.text(f'CREATE SCHEMA "{self.name}"'))
        finally:
            e.dispose()
        self.created = True

    def sizes(self) -> dict:
        import sqlalchemy as sa
        e = self._engine()
        try:
            with e.connect() as conn:
                rows = conn.execute(sa.text(
                    "SELECT c.relname, pg_total_relation_size(c.oid), pg_relation_size(c.oid), "
                    "pg_indexes_size(c.oid) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "WHERE n.nspname = :s AND c.relkind = 'r' ORDER BY 2 DESC"), {"s": self.name}).all()
        finally:
            e.dispose()
        tables = {r[0]: {"total": r[1], "heap": r[2], "indexes": r[3]} for r in rows}
        return {"total_bytes": sum(t["total"] for t in tables.values()), "tables": tables}

    def drop(self) -> None:
        if not self.created:
            return
        import sqlalchemy as sa
        e = self._engine()
        try:
            with e.begin() as conn:
                conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{self.name}" CASCADE'))
            self.created = False
        except Exception as ex:
            log(f"could not drop schema {self.name}: {ex}")
        finally:
            e.dispose()


def sqlite_sizes(path: Path) -> dict:
    import sqlite3
    out: dict = {"total_bytes": ql.sqlite_size(path), "tables": {}}
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        try:
            rows = con.execute("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name ORDER BY 2 DESC").fetchall()
            out["objects"] = {n: s for n, s in rows}
        except sqlite3.Error:
            pass  # dbstat is not compiled in everywhere
    finally:
        con.close()
    return out


def reuse_meta(plan: ql.Plan) -> dict:
    from pipemon.store import db
    heads = sorted(p.name for p in (db.MIGRATIONS / "versions").glob("*.py"))
    return {"pipelines": plan.pipelines, "runs": plan.runs, "feed_runs": plan.feed_runs, "seed": plan.seed,
            "migrations": heads}


def prepare_sqlite(args, fleet, plan: ql.Plan, config_text: str, workdir: Path) -> tuple[Path, dict]:
    """A loaded SQLite file to serve: built fresh, or copied from --reuse when that one matches."""
    target = workdir / "qbench.db"
    if args.reuse:
        cache = Path(args.reuse)
        meta_path = Path(f"{cache}.json")
        if cache.exists() and meta_path.exists():
            meta = json.loads(meta_path.read_text())
            if meta.get("key") == reuse_meta(plan):
                log(f"sqlite: reusing {cache} (built {meta.get('built')}); copying it to {target}")
                if meta.get("source") != source_fingerprint():
                    log("  note: pipemon's source changed since it was built; if the server cannot load the stored "
                        f"engine state, delete {cache} to rebuild")
                shutil.copyfile(cache, target)
                return target, {**meta["load"], "reused_from": str(cache), "built": meta.get("built")}
            log(f"sqlite: {cache} was built for {meta.get('key')}; rebuilding")
    log(f"sqlite: loading {target}")
    stats = ql.load(f"sqlite:///{target}", fleet, plan, config_text, log).summary()
    if args.reuse:
        cache = Path(args.reuse)
        shutil.copyfile(target, cache)
        Path(f"{cache}.json").write_text(json.dumps({"key": reuse_meta(plan), "load": stats,
                                                      "source": source_fingerprint(),
                                                      "built": time.strftime("%Y-%m-%d %H:%M:%S")}, indent=1))
        log(f"sqlite: cached the built file as {cache}")
    return target, stats


def bench_backend(label: str, url: str, sizes: dict, load_stats: dict, args, fleet, settings, config: Path,
                  workdir: Path) -> dict:
    targets = Targets.of(fleet, settings)
    server = Server(url, config, workdir, f"serve-{label}")
    report: dict = {"backend": label, "load": load_stats, "sizes": sizes}
    try:
        report["startup_s"] = server.start(args.startup_timeout)
        log(f"{label}: pipemon serve ready on :{server.port} in {report['startup_s']:.1f}s; load {loadavg()}")
        report["endpoints"] = measure(server, targets, args, len(fleet))
        slow = [ep for ep, r in report["endpoints"].items() if r["p95_ms"] >= goal_of(ep)]
        if args.py_spy_endpoints:
            slow = [ep for ep in args.py_spy_endpoints.split(",") if ep in ENDPOINTS]
        if args.py_spy and slow:
            report["py_spy"] = {}
            for ep in slow:
                log(f"  py-spy: {ep} for {args.py_spy:g}s ...")
                report["py_spy"][ep] = py_spy(server, targets, ep, args.py_spy, workdir, args.seed)
    finally:
        server.stop()
    log(f"{label}: profiling the SQL of each handler ...")
    report["sql"] = sql_profile(url, targets, args.sql_reps, args.seed)
    return report


# ------------------------------------------------------------------------------------------------------------
# report

def fmt(x, nd: int = 1) -> str:
    return "—" if x is None else f"{x:,.{nd}f}"


def render(report: dict) -> str:
    lines = [f"# Query API latency — {report['pipelines']:,} pipelines, {report['runs']:,} runs",
             "", f"goal: p95 < {GOAL_MS:g} ms (sequential; HTML pages: {PAGE_GOAL_MS:g} ms). "
             f"{report['requests']} sequential requests per endpoint, "
             f"then {report['requests']} from {report['concurrency']} concurrent clients. "
             f"Machine: {report['machine']}. \"other procs\": CPU cores used by processes other than this "
             "script and the server during the sequential run (the machine is shared; on PostgreSQL this "
             "includes the database server itself).", ""]
    for b in report["backends"]:
        if "error" in b:
            lines += [f"## {b['backend']}: failed — {b['error']}", ""]
            continue
        ld = b["load"]
        lines += [f"## {b['backend']}", ""]
        lines.append("| endpoint | p50 ms | p95 ms | p99 ms | max ms | conc p95 ms | conc req/s | server CPU ms/req "
                     "| KB/resp | other procs (cores) | load avg (after) | goal |")
        lines.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|")
        for ep, r in b["endpoints"].items():
            ok = "ok" if r["p95_ms"] < goal_of(ep) else "**MISS**"
            name = ep if ep in REQUIRED else f"{ep} (HTML)" if ep in PAGES else f"{ep} (extra)"
            lines.append(f"| {name} | {fmt(r['p50_ms'])} | {fmt(r['p95_ms'])} | {fmt(r['p99_ms'])} | "
                         f"{fmt(r['max_ms'])} | {fmt(r['conc_p95_ms'])} | {fmt(r['conc_req_per_s'], 0)} | "
                         f"{fmt(r['server_cpu_ms_per_req'])} | {fmt(r['bytes_per_response'] / 1024)} | "
                         f"{fmt(r['others_cores'], 2)} | {r['loadavg_after']} | {ok} |")
        lines.append("")
        f = ld.get("feed", {})
        sizes = b["sizes"]
        lines.append(
            f"load: {ld.get('runs_total', 0):,} runs ({ld.get('runs_bulk', 0):,} bulk at "
            f"{fmt(ld.get('bulk_runs_per_s'), 0)} runs/s incl. simulation, {fmt(ld.get('bulk_driver_runs_per_s'), 0)} "
            f"runs/s in the driver; {f.get('runs', 0):,} runs = {f.get('events', 0):,} events through the engine at "
            f"{fmt(ld.get('feed_events_per_s'), 0)} events/s) in {fmt(ld.get('total_s'), 0)} s"
            + (f" (reused from {ld['reused_from']}, built {ld.get('built')})" if ld.get("reused_from") else "")
            + f"; database {ql.human(sizes.get('total_bytes', 0))}; server start {fmt(b.get('startup_s'))} s.")
        lines.append(f"health views: {ld.get('states')}; rows: {ld.get('counts')}")
        lines.append("")
        lines.append("SQL per handler (in-process, median ms): " + ", ".join(
            f"{ep} {fmt(v['reads_ms_median'], 2)}" for ep, v in b["sql"]["endpoints"].items()))
        lines.append("")
        for ep, spy in (b.get("py_spy") or {}).items():
            if spy.get("error"):
                lines += [f"py-spy {ep}: {spy['error']}", ""]
                continue
            lines.append(f"py-spy {ep} ({spy['requests']} requests; {spy['handling_samples']} of {spy['samples']} "
                         "samples handling requests), % of those in:")
            lines += [f"  {share:5.1f}%  {frame}" for frame, share in spy["top_inclusive"][:12]]
            lines.append("  leaf frames: " + "; ".join(f"{f} {share}%" for f, share in spy["top_self"][:6]))
            lines.append("")
    return "\n".join(lines)


def explain_text(report: dict) -> str:
    out = []
    for b in report["backends"]:
        for s in b.get("sql", {}).get("statements", []):
            out += [f"--- {b['backend']} / {s['endpoint']}: median {s['median_ms']:.2f} ms (n={s['n']})",
                    s["sql"], s["plan"], ""]
    return "\n".join(out)


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--pipelines", type=int, default=10_000)
    ap.add_argument("--runs", type=int, default=10_000_000, help="runs in the database in all")
    ap.add_argument("--feed-runs", type=int, default=60, help="last runs per pipeline sent through the engine")
    ap.add_argument("--quick", action="store_true", help="smoke run: 1,000 pipelines, 200,000 runs, 50 requests")
    ap.add_argument("--requests", type=int, default=200, help="sequential (and concurrent) requests per endpoint")
    ap.add_argument("--warmup", type=int, default=30, help="untimed requests per endpoint first")
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--skip-pg", action="store_true")
    ap.add_argument("--skip-sqlite", action="store_true")
    ap.add_argument("--pg", default=os.environ.get("PIPEMON_TEST_POSTGRES_URL") or DEFAULT_PG)
    ap.add_argument("--keep", action="store_true", help="keep the PostgreSQL schema and the work directory")
    ap.add_argument("--reuse", metavar="PATH", help="cache of the loaded SQLite file: used when it matches, "
                                                    "else built and saved there (e.g. /tmp/qbench-10k-10M.db)")
    ap.add_argument("--out", help="write the JSON report here (EXPLAIN output next to it, .explain.txt)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sql-reps", type=int, default=20, help="in-process executions per handler, SQL profile")
    ap.add_argument("--py-spy", type=float, default=0.0, metavar="SECONDS",
                    help="profile each endpoint over the goal with py-spy for this long (0: off)")
    ap.add_argument("--py-spy-endpoints", metavar="LIST",
                    help="with --py-spy: profile these endpoints (comma-separated) instead of those over the goal")
    ap.add_argument("--startup-timeout", type=float, default=900.0)
    args = ap.parse_args(argv)
    if args.quick:
        given = set(a.split("=")[0] for a in (argv if argv is not None else sys.argv[1:]))
        if "--pipelines" not in given:
            args.pipelines = 1_000
        if "--runs" not in given:
            args.runs = 200_000
        if "--requests" not in given:
            args.requests = 50
        if "--warmup" not in given:
            args.warmup = 10
        if "--sql-reps" not in given:
            args.sql_reps = 5
    for name in ("pipelines", "runs", "requests", "concurrency", "feed_runs"):
        if getattr(args, name) < 1:
            ap.error(f"--{name.replace('_', '-')} must be >= 1")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    from pipemon import sim
    from pipemon.config import loads

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    atexit.register(_stop_all)
    workdir = Path(tempfile.mkdtemp(prefix="pipemon-qbench-"))
    pg: PgSchema | None = None
    report: dict = {"pipelines": args.pipelines, "runs": args.runs, "requests": args.requests,
                    "concurrency": args.concurrency, "goal_p95_ms": GOAL_MS, "argv": sys.argv,
                    "machine": f"{platform.node()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
                    "started": time.strftime("%Y-%m-%d %H:%M:%S"), "loadavg_start": loadavg(),
                    "source_start": source_fingerprint(), "backends": []}
    try:
        t = time.perf_counter()
        fleet = sim.build_fleet(args.seed, args.pipelines)
        config_text = sim.demo_config(fleet)
        config = workdir / "pipemon-demo.yaml"
        config.write_text(config_text)
        settings = loads(config_text, str(config))
        plan = ql.Plan.for_fleet(fleet, args.runs, args.feed_runs)
        log(f"fleet of {len(fleet):,} pipelines ({len(fleet.teams)} teams), demo config, plan: {plan.days - 2:.1f} "
            f"simulated days from {time.strftime('%Y-%m-%d %H:%M', time.gmtime(plan.start))} UTC "
            f"({time.perf_counter() - t:.0f}s); work dir {workdir}; load {loadavg()}")
        report["plan"] = asdict(plan)

        if not args.skip_sqlite:
            try:
                path, stats = prepare_sqlite(args, fleet, plan, config_text, workdir)
                report["backends"].append(bench_backend("sqlite", f"sqlite:///{path}", sqlite_sizes(path), stats,
                                                        args, fleet, settings, config, workdir))
            except Exception as e:
                log(f"sqlite failed: {type(e).__name__}: {e}")
                report["backends"].append({"backend": "sqlite", "error": f"{type(e).__name__}: {e}"})
        if not args.skip_pg:
            pg = PgSchema(args.pg)
            try:
                pg.create()
                log(f"postgresql: loading schema {pg.name}")
                stats = ql.load(pg.url, fleet, plan, config_text, log).summary()
                report["backends"].append(bench_backend("postgresql", pg.url, pg.sizes(), stats, args, fleet,
                                                        settings, config, workdir))
            except Exception as e:
                log(f"postgresql failed: {type(e).__name__}: {e}")
                report["backends"].append({"backend": "postgresql", "error": f"{type(e).__name__}: {e}"})
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    finally:
        _stop_all()
        if pg is not None and not args.keep:
            pg.drop()
        elif pg is not None:
            log(f"kept schema {pg.name}: {pg.url}")
        report["loadavg_end"] = loadavg()
        report["source_end"] = source_fingerprint()
        if report["source_end"] != report["source_start"]:
            log("note: pipemon's source changed during the run (others edit this checkout); figures may mix versions")
        if args.out:
            Path(args.out).write_text(json.dumps(report, indent=1, default=str))
            Path(args.out).with_suffix(".explain.txt").write_text(explain_text(report))
        if args.keep:
            log(f"kept work dir {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print(render(report))
    return 0 if all("error" not in b for b in report["backends"]) else 1


if __name__ == "__main__":
    sys.exit(main())
