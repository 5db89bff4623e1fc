"""Ingest throughput of a real `pipemon serve`: events/s acknowledged (2xx = committed), per backend.

    python benchmarks/ingest.py --quick                      # smoke run, small sizes
    python benchmarks/ingest.py --out ingest.json            # SQLite FULL, SQLite NORMAL, PostgreSQL
    python benchmarks/ingest.py --uuid4 --skip-pg            # random run ids instead of time-ordered ones

Scenarios, each an untimed warm-up then --rounds timed rounds (median reported):
  ol-single    one OpenLineage COMPLETE (~1.3 KB: tags run facet, jobType job facet, an output with
               outputStatistics) per POST /api/v1/lineage, 32 concurrent, from --single-procs load processes
  native-100   POST /api/v1/events, arrays of 100 native COMPLETE events, 8 concurrent
  native-1000  the same with arrays of 1,000, 4 concurrent
Every event has a new run id, over 200 pipelines per scenario. Run ids (and native event ids) are UUIDv7
(time-ordered, as openlineage-python and modern Airflow make them) unless --uuid4.

The server is `--pipemon serve` in a subprocess on a fresh SQLite file (FULL, then NORMAL) and on a fresh
PostgreSQL schema (--pg; dropped afterwards; --pg-analyze ANALYZEs it after each warm-up, which matters on a
server with autovacuum off, where a never-analyzed table gets sequential scans). The load runs in separate
processes (benchmarks/_load.py: aiohttp, bodies JSON-encoded before the clock starts). CPU comes from /proc:
the server's utime+stime per 1,000 events (and on PostgreSQL its backends') tells where the time goes; the
load generators' own CPU, and what the rest of the machine used meanwhile ("others", from /proc/stat), tell
whether the measurement was fair. After each scenario a sample is read back through the API. Every loop is
bounded in count and time; subprocesses and temp files are cleaned up on exit, Ctrl-C included.
"""
from __future__ import annotations

import argparse
import asyncio
import hashlib
import importlib.util
import json
import os
import platform
import secrets
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import quote

import aiohttp

HOST = "127.0.0.1"
CLK_TCK = os.sysconf("SC_CLK_TCK")
LOAD_SCRIPT = Path(__file__).with_name("_load.py")
DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
GOALS = {"ol-single": 3_000, "native-100": 50_000, "native-1000": 50_000}  # events/s into SQLite


@dataclass(frozen=True)
class Scenario:
    key: str
    kind: str          # "ol" | "native"
    path: str
    per_post: int
    conc: int
    procs: int
    requests: int
    namespace: str


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def loadavg() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def source_fingerprint() -> str | None:
    """sha1 of pipemon's .py sources as importable here (the checkout is shared and edited while we measure):
    two reports with the same fingerprint measured the same code."""
    spec = importlib.util.find_spec("pipemon")
    if spec is None or not spec.origin:
        return None
    root = Path(spec.origin).parent
    h = hashlib.sha1()
    for f in sorted(root.rglob("*.py"))[:5000]:
        h.update(str(f.relative_to(root)).encode())
        try:
            h.update(f.read_bytes())
        except OSError:
            pass
    return h.hexdigest()[:12]


# ------------------------------------------------------------------------------------------------------------
# processes: started here, observed through /proc, stopped by PID

STARTED: list[subprocess.Popen] = []  # servers; load processes are stopped by run_once


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM it when this harness dies, even by SIGKILL (Linux prctl)."""
    try:
        import ctypes
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def proc_ticks(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
    except OSError:
        return None
    fields = data[data.rindex(")") + 2:].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def tree_cpu_s(pid: int) -> float:
    """utime+stime of a process and its live descendants (uvicorn serves from one process today)."""
    total, todo, seen = 0, [pid], 0
    while todo and seen < 1000:
        p = todo.pop()
        seen += 1
        total += proc_ticks(p) or 0
        todo.extend(children(p))
    return total / CLK_TCK


def machine_busy_s() -> float:
    """CPU seconds all cores spent busy since boot (/proc/stat: everything but idle and iowait)."""
    with open("/proc/stat") as f:
        vals = [int(x) for x in f.readline().split()[1:]]
    return (sum(vals[:8]) - vals[3] - vals[4]) / CLK_TCK


def stop(popen: subprocess.Popen, grace: float = 10.0) -> None:
    """SIGTERM, then SIGKILL, a process we started (by its PID)."""
    if popen.poll() is not None:
        return
    popen.terminate()
    try:
        popen.wait(grace)
    except subprocess.TimeoutExpired:
        popen.kill()
        popen.wait(5)


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


class Server:
    """One `pipemon serve` started by this harness."""

    def __init__(self, prefix: list[str], db_url: str, extra: list[str], workdir: Path, name: str) -> None:
        self.port = free_port()
        self.argv = prefix + ["serve", "--db", db_url, "--port", str(self.port), *extra]
        self.log_path = workdir / f"{name}.log"
        self.workdir = workdir
        self.popen: subprocess.Popen | None = None

    @property
    def base(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self) -> None:
        with open(self.log_path, "wb") as out:
            self.popen = subprocess.Popen(self.argv, stdout=out, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL, cwd=self.workdir,
                                          preexec_fn=_die_with_parent)
        STARTED.append(self.popen)

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def cpu_s(self) -> float:
        return tree_cpu_s(self.popen.pid) if self.alive() else 0.0

    def log_tail(self, n: int = 600) -> str:
        try:
            data = self.log_path.read_bytes()[-n:]
        except OSError:
            return ""
        return " ".join(data.decode("utf-8", "replace").split())

    async def wait_ready(self, timeout_s: float) -> str | None:
        """None once GET /healthz answers 200, else why not."""
        deadline = time.monotonic() + timeout_s
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as s:
            while time.monotonic() < deadline:
                if not self.alive():
                    return f"pipemon exited with code {self.popen.returncode}: {self.log_tail()}"
                try:
                    async with s.get(self.base + "/healthz") as r:
                        await r.read()
                        if r.status == 200:
                            return None
                except (aiohttp.ClientError, asyncio.TimeoutError, OSError):
                    pass
                await asyncio.sleep(0.1)
        return f"pipemon not answering /healthz after {timeout_s:.0f}s: {self.log_tail()}"

    async def wait_idle(self, max_s: float = 10.0, window: float = 0.25, threshold: float = 0.05) -> bool:
        """Wait until the server uses < threshold of a core over `window` (at most max_s)."""
        deadline = time.monotonic() + max_s
        while self.alive() and time.monotonic() < deadline:
            c0 = self.cpu_s()
            await asyncio.sleep(window)
            if (self.cpu_s() - c0) / window < threshold:
                return True
        return False


# ------------------------------------------------------------------------------------------------------------
# one run: N load processes, started, fed a spec, released together


class LoadProc:
    """One load-generator process (benchmarks/_load.py), talked to over pipes. Plain subprocess.Popen with
    blocking reads in a thread: no asyncio child watcher to race with the servers' Popen.wait()."""

    def __init__(self, workdir: Path, spec: dict) -> None:
        self.err_path = workdir / f"load-{secrets.token_hex(3)}.err"
        with open(self.err_path, "wb") as err:
            self.popen = subprocess.Popen([sys.executable, str(LOAD_SCRIPT)], stdin=subprocess.PIPE,
                                          stdout=subprocess.PIPE, stderr=err, preexec_fn=_die_with_parent)
        self.send(json.dumps(spec))

    def send(self, line: str) -> None:
        self.popen.stdin.write((line + "\n").encode())
        self.popen.stdin.flush()

    async def read(self, timeout_s: float, what: str) -> dict:
        try:
            line = await asyncio.wait_for(asyncio.to_thread(self.popen.stdout.readline), timeout_s)
        except asyncio.TimeoutError:
            raise RuntimeError(f"load process {self.popen.pid}: no {what} within {timeout_s:.0f}s") from None
        if not line:
            err = self.err_path.read_bytes()[-800:] if self.err_path.exists() else b""
            err = err.decode("utf-8", "replace")
            raise RuntimeError(f"load process {self.popen.pid} ended before {what}: {' '.join(err.split())}")
        return json.loads(line)

    def stop(self) -> None:
        stop(self.popen, grace=2)  # its blocked reader thread gets EOF and ends
        for f in (self.popen.stdin, self.popen.stdout):
            try:
                f.close()
            except OSError:
                pass
        self.err_path.unlink(missing_ok=True)


async def run_once(server: Server, sc: Scenario, n_requests: int, args: argparse.Namespace,
                   db: PgBackends | None = None) -> dict:
    """One run of a scenario: bodies built in the load processes, then the clock."""
    procs: list[LoadProc] = []
    try:
        share = [n_requests // sc.procs + (1 if i < n_requests % sc.procs else 0) for i in range(sc.procs)]
        offset = 0
        for i in range(sc.procs):
            conc = sc.conc // sc.procs + (1 if i < sc.conc % sc.procs else 0)
            spec = {"url": server.base + sc.path, "kind": sc.kind, "n": share[i], "offset": offset,
                    "per_post": sc.per_post, "conc": conc, "pipelines": args.pipelines,
                    "namespace": sc.namespace, "uuid": "v4" if args.uuid4 else "v7", "cap_s": args.run_cap_s,
                    "timeout_s": args.request_timeout_s}
            offset += share[i]
            procs.append(LoadProc(server.workdir, spec))
        ready = [await p.read(args.build_timeout_s, "bodies") for p in procs]
        idle = await server.wait_idle()
        load0 = loadavg()
        db0 = db.ticks() if db else None
        srv0, busy0 = server.cpu_s(), machine_busy_s()
        for p in procs:
            p.send("go")
        result_timeout = args.run_cap_s + args.request_timeout_s + 30
        parts = await asyncio.gather(*(p.read(result_timeout, "result") for p in procs))
        srv1, busy1 = server.cpu_s(), machine_busy_s()
        srv_alive = server.alive()
        db_cpu = PgBackends.cpu_s(db0, db.ticks()) if db else None
    finally:
        for p in procs:
            p.stop()
    wall = max(x["t1"] for x in parts) - min(x["t0"] for x in parts)
    ok_events = sum(x["events_acked"] for x in parts)
    srv_cpu = srv1 - srv0 if srv_alive else None
    load_cpu = sum(x["cpu_s"] for x in parts)
    known = (srv_cpu or 0) + load_cpu + (db_cpu or 0)
    return {
        "requests_planned": n_requests, "requests_sent": sum(x["sent"] for x in parts),
        "requests_2xx": sum(x["ok"] for x in parts), "errors": sum(x["errors"] for x in parts),
        "events_acked": ok_events, "accepted": sum(x["accepted"] for x in parts),
        "duplicates": sum(x["duplicates"] for x in parts),
        "unparsed_answers": sum(x["unparsed_answers"] for x in parts),
        "seconds": round(wall, 3), "events_per_s": round(ok_events / wall, 1) if wall > 0 else None,
        "server_cpu_s": None if srv_cpu is None else round(srv_cpu, 3),
        "server_cpu_pct": None if srv_cpu is None else round(100 * srv_cpu / wall, 1),
        "server_cpu_ms_per_1k_events": round(srv_cpu * 1e6 / ok_events, 1) if ok_events and srv_cpu else None,
        "db_cpu_ms_per_1k_events": round(db_cpu * 1e6 / ok_events, 1) if ok_events and db_cpu else None,
        "db_cpu_pct": round(100 * db_cpu / wall, 1) if db_cpu is not None and wall > 0 else None,
        "loadgen_cpu_pct": round(100 * load_cpu / wall, 1) if wall > 0 else None,
        "others_cpu_pct": round(100 * max(0.0, (busy1 - busy0) - known) / wall, 1) if wall > 0 else None,
        "request_ms_p50": max(x["request_ms_p50"] or 0 for x in parts),
        "request_ms_p99": max(x["request_ms_p99"] or 0 for x in parts),
        "capped": any(x["capped"] for x in parts), "server_idle_before": idle, "loadavg_before": load0,
        "body_bytes": sum(x["body_bytes"] for x in ready), "loop": parts[0]["loop"],
        "statuses": merge_counts(x["statuses"] for x in parts),
        "error_samples": [e for x in parts for e in x["error_samples"]][:3],
        "samples": [s for x in parts for s in x["samples"]],
    }


def merge_counts(dicts) -> dict:
    out: dict[str, int] = {}
    for d in dicts:
        for k, v in d.items():
            out[k] = out.get(k, 0) + v
    return out


# ------------------------------------------------------------------------------------------------------------
# correctness on a sample, through the API


async def verify(server: Server, samples: list[dict]) -> dict:
    """The newest 5 runs of a pipeline written in the last round are succeeded, and the last round's sampled
    runs are there, succeeded, with their rows."""
    problems: list[str] = []
    checked = 0
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as s:
        if samples:
            ns, name = samples[-1]["pipeline"].split("/", 1)
            url = f"{server.base}/api/v1/pipelines/{quote(ns, safe='')}%2F{quote(name, safe='')}/runs?limit=5"
            async with s.get(url) as r:
                body = await r.json(content_type=None) if r.status == 200 else await r.text()
            if r.status != 200:
                problems.append(f"GET runs of {ns}/{name}: {r.status} {str(body)[:120]}")
            else:
                items = body.get("items", [])
                bad = [i["status"] for i in items if i.get("status") != "succeeded"]
                if len(items) != 5 or bad:
                    problems.append(f"{ns}/{name}: {len(items)} runs, statuses not succeeded: {bad}")
                checked += len(items)
        for smp in samples[-3:]:
            url = f"{server.base}/api/v1/runs/{quote(smp['run_id'], safe='')}"
            async with s.get(url, params={"pipeline": smp["pipeline"]}) as r:
                body = await r.json(content_type=None) if r.status == 200 else await r.text()
            if r.status != 200:
                problems.append(f"GET run {smp['run_id']}: {r.status} {str(body)[:120]}")
            elif body.get("status") != "succeeded" or body.get("rows") != smp["rows"]:
                problems.append(f"run {smp['run_id']}: status {body.get('status')}, rows {body.get('rows')} "
                                f"(sent {smp['rows']})")
            else:
                checked += 1
    return {"ok": not problems, "checked": checked, "problems": problems}


# ------------------------------------------------------------------------------------------------------------
# backends


class PgSchema:
    """A fresh schema on the PostgreSQL server, dropped on exit."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.name = f"bench_{secrets.token_hex(4)}"
        self.engine = None

    def create(self) -> str | None:
        """None when the schema exists, else why PostgreSQL is skipped."""
        try:
            import sqlalchemy as sa
        except ImportError:
            return "sqlalchemy is not importable here (run with the pipemon venv's python)"
        try:
            self.engine = sa.create_engine(self.url, connect_args={"connect_timeout": 5},
                                           poolclass=sa.pool.NullPool)
            with self.engine.begin() as conn:
                conn.execute(sa.text(f'CREATE SCHEMA "{self.name}"'))
        except Exception as e:  # unreachable, auth, no driver: say which and skip
            self.engine = None
            return f"{type(e).__name__}: {' '.join(str(e).split())[:200]}"
        return None

    @property
    def port(self) -> int:
        from sqlalchemy.engine import make_url
        return make_url(self.url).port or 5432

    @property
    def server_url(self) -> str:
        sep = "&" if "?" in self.url else "?"
        return f"{self.url}{sep}options=-csearch_path%3D{self.name}"

    def setting(self, name: str) -> str | None:
        import sqlalchemy as sa
        try:
            with self.engine.connect() as conn:
                return conn.execute(sa.text("SELECT current_setting(:n)"), {"n": name}).scalar()
        except Exception:
            return None

    def analyze(self) -> None:
        """ANALYZE the schema's tables, as autovacuum would once they have grown."""
        import sqlalchemy as sa
        with self.engine.begin() as conn:
            tables = conn.execute(sa.text("SELECT tablename FROM pg_tables WHERE schemaname = :s"),
                                  {"s": self.name}).scalars().all()
            for t in tables:
                conn.execute(sa.text(f'ANALYZE "{self.name}"."{t}"'))

    def table_stats(self) -> dict:
        """Per table of the schema: rows, and how they were read (seq vs index scans): a write path whose
        cost grows with the table shows up as seq_tup_read."""
        import sqlalchemy as sa
        q = sa.text("SELECT relname, n_live_tup, seq_scan, seq_tup_read, idx_scan, n_tup_ins, n_tup_upd, "
                    "autoanalyze_count FROM pg_stat_user_tables WHERE schemaname = :s ORDER BY relname")
        try:
            with self.engine.connect() as conn:
                rows = list(conn.execute(q, {"s": self.name}))
            keys = ("rows", "seq_scan", "seq_tup_read", "idx_scan", "inserted", "updated", "autoanalyzed")
            return {r[0]: dict(zip(keys, r[1:])) for r in rows}
        except Exception as e:
            return {"error": str(e)[:200]}

    def drop(self) -> None:
        if self.engine is None:
            return
        import sqlalchemy as sa
        try:
            with self.engine.begin() as conn:
                conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{self.name}" CASCADE'))
        except Exception as e:
            log(f"could not drop schema {self.name}: {e}")
        self.engine.dispose()
        self.engine = None


def server_ports_to(pid: int, remote_port: int) -> list[int]:
    """Local TCP ports of `pid`'s connections to remote_port (its socket inodes, found in /proc/net/tcp)."""
    inodes = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    except OSError:
        return []
    ports = []
    for table in ("tcp", "tcp6"):
        try:
            with open(f"/proc/{pid}/net/{table}") as f:
                next(f)
                for line in f:
                    cols = line.split()
                    if cols[9] in inodes and int(cols[2].rsplit(":", 1)[1], 16) == remote_port:
                        ports.append(int(cols[1].rsplit(":", 1)[1], 16))
        except OSError:
            continue
    return ports


class PgBackends:
    """CPU of the PostgreSQL backend processes serving pipemon's connections: the database's share of the
    work, which the server's own /proc/PID/stat does not include (needs PostgreSQL on this host)."""

    def __init__(self, schema: PgSchema, server: Server, port: int) -> None:
        self.schema, self.server, self.port = schema, server, port

    def ticks(self) -> dict[int, int]:
        import sqlalchemy as sa
        ports = server_ports_to(self.server.popen.pid, self.port)
        if not ports or self.schema.engine is None:
            return {}
        try:
            with self.schema.engine.connect() as conn:
                q = sa.text("SELECT pid FROM pg_stat_activity WHERE client_port = ANY(:ports)")
                pids = [r[0] for r in conn.execute(q, {"ports": ports})]
        except Exception as e:
            log(f"pg_stat_activity: {e}")
            return {}
        return {p: t for p in pids if (t := proc_ticks(p)) is not None}

    @staticmethod
    def cpu_s(before: dict[int, int], after: dict[int, int]) -> float:
        """CPU used between two readings: backends that started meanwhile count whole; ones gone are lost."""
        return sum(t - before.get(p, 0) for p, t in after.items()) / CLK_TCK


def scenarios(args: argparse.Namespace) -> list[Scenario]:
    return [
        Scenario("ol-single", "ol", "/api/v1/lineage", 1, args.single_conc, args.single_procs,
                 args.single_requests, "bench-ol"),
        Scenario("native-100", "native", "/api/v1/events", 100, 8, 1, args.batch_requests, "bench-n100"),
        Scenario("native-1000", "native", "/api/v1/events", 1000, 4, 1, args.batch_requests, "bench-n1000"),
    ]


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


async def bench_backend(label: str, db_url: str, extra: list[str], args, workdir: Path,
                        schema: PgSchema | None = None) -> dict:
    out: dict = {"backend": label, "scenarios": {}}
    server = Server(args.prefix, db_url, extra, workdir, label.replace(" ", "_"))
    out["argv"] = " ".join(shlex.quote(a) for a in server.argv)
    out["pipemon_source"] = source_fingerprint()
    server.start()
    try:
        why = await server.wait_ready(args.start_timeout_s)
        if why:
            out["na"] = why
            return out
        c0 = server.cpu_s()
        await asyncio.sleep(1.0)
        out["server_idle_cpu_pct"] = round(100 * (server.cpu_s() - c0), 1)
        db = PgBackends(schema, server, schema.port) if schema else None
        for sc in scenarios(args):
            if sc.key not in args.scenarios:
                continue
            res: dict = {"per_post": sc.per_post, "concurrency": sc.conc, "load_procs": sc.procs,
                         "requests_per_round": sc.requests, "rounds": []}
            out["scenarios"][sc.key] = res
            warm = max(sc.conc, round(sc.requests * args.warmup_frac))
            for r in range(-1, args.rounds):
                if not server.alive():
                    res["na"] = f"pipemon died: {server.log_tail()}"
                    break
                try:
                    x = await run_once(server, sc, warm if r < 0 else sc.requests, args, db)
                except (RuntimeError, ValueError) as e:
                    res["na"] = str(e)
                    log(f"{label} {sc.key}: {e}")
                    break
                tag = "warm-up" if r < 0 else f"round {r + 1}"
                pg = (f"postgres backends {x['db_cpu_ms_per_1k_events']} ms/1k ({x['db_cpu_pct']}%), "
                      if db else "")
                log(f"{label} {sc.key} {tag}: {x['events_per_s']:,.0f} events/s, {x['errors']} errors, "
                    f"server {x['server_cpu_ms_per_1k_events']} ms CPU/1k events "
                    f"({x['server_cpu_pct']}% of a core), "
                    f"{pg}load gen {x['loadgen_cpu_pct']}%, others {x['others_cpu_pct']}%, "
                    f"loadavg {x['loadavg_before']}" + (" CAPPED" if x["capped"] else ""))
                samples = x.pop("samples")
                if r < 0 and schema is not None and args.pg_analyze:
                    schema.analyze()
                    res["analyzed_after_warmup"] = True
                if r < 0:
                    res["warmup"] = {k: x[k] for k in ("requests_sent", "errors", "seconds", "events_per_s")}
                else:
                    x["round"] = r + 1
                    res["rounds"].append(x)
            if not res["rounds"]:
                continue
            res["verify"] = await verify(server, samples)
            if not res["verify"]["ok"]:
                log(f"{label} {sc.key} VERIFY FAILED: {res['verify']['problems']}")
            rounds = res["rounds"]
            for k in ("events_per_s", "server_cpu_ms_per_1k_events", "server_cpu_pct",
                      "db_cpu_ms_per_1k_events", "db_cpu_pct", "loadgen_cpu_pct", "others_cpu_pct",
                      "request_ms_p50", "request_ms_p99"):
                res[f"median_{k}"] = median([x[k] for x in rounds])
            res["errors_total"] = sum(x["errors"] for x in rounds)
            res["duplicates_total"] = sum(x["duplicates"] for x in rounds)
            res["accepted_mismatch"] = sum(x["events_acked"] - x["accepted"] - x["duplicates"]
                                           for x in rounds)
            res["capped_rounds"] = sum(1 for x in rounds if x["capped"])
    finally:
        if source_fingerprint() != out["pipemon_source"]:
            out["source_changed"] = True
            log(f"{label}: pipemon's source changed while this backend was measured (shared checkout)")
        out["server_alive_at_end"] = server.alive()
        stop(server.popen)
        if "sqlite" in db_url:
            db = Path(db_url.split("///", 1)[1])
            out["db_bytes"] = sum(p.stat().st_size for p in db.parent.glob(db.name + "*") if p.exists())
    return out


# ------------------------------------------------------------------------------------------------------------
# report


def fmt(x, nd: int = 0) -> str:
    if x is None:
        return "–"
    return f"{x:,.{nd}f}"


def render(report: dict) -> str:
    m = report["meta"]
    lines = [f"### pipemon ingest — {m['date']}, {m['cpus']} CPUs, Python {m['python']}, "
             f"run ids {m['run_ids']}, loadavg {m['loadavg_start']} → {m['loadavg_end']}, pipemon source "
             f"sha1 {m['pipemon_source']}" + ("" if m["pipemon_source_end"] == m["pipemon_source"] else
                                              f" → {m['pipemon_source_end']} (CHANGED during the run)"), "",
             "| backend | scenario | median events/s | rounds, events/s "
             "| server CPU ms/1k events (% of a core) | PG backends CPU ms/1k (%) | load gen CPU % "
             "| others CPU % | p50 / p99 ms per POST | errors | check |",
             "|---|---|---:|---|---:|---:|---:|---:|---|---:|---|"]
    blank = " | ".join([""] * 8)
    for b in report["backends"]:
        if b.get("na") or b.get("skipped"):
            why = " ".join(str(b.get("na") or b.get("skipped")).split())[:160].replace("|", "/")
            lines.append(f"| {b['backend']} | – | n/a: {why} | {blank} |")
            continue
        for key, s in b["scenarios"].items():
            if not s["rounds"]:
                lines.append(f"| {b['backend']} | {key} | n/a: {s.get('na', 'no rounds')} | {blank} |")
                continue
            procs = f", {s['load_procs']} load procs" if s["load_procs"] > 1 else ""
            label = f"{key} ({s['per_post']:,}/POST × {s['concurrency']}{procs})"
            rounds = " / ".join(fmt(x["events_per_s"]) + (" (capped)" if x["capped"] else "")
                                for x in s["rounds"])
            v = s.get("verify", {})
            problems = "; ".join(v.get("problems", []))[:120].replace("|", "/")
            check = "ok" if v.get("ok") else f"FAILED: {problems}"
            if s["duplicates_total"] or s["accepted_mismatch"]:
                check += f" (duplicates {s['duplicates_total']}, ack mismatch {s['accepted_mismatch']})"
            db = (f"{fmt(s['median_db_cpu_ms_per_1k_events'], 1)} ({fmt(s['median_db_cpu_pct'])}%)"
                  if s.get("median_db_cpu_pct") is not None else "in-process")
            lines.append(
                f"| {b['backend']} | {label} | **{fmt(s['median_events_per_s'])}** | {rounds} | "
                f"{fmt(s['median_server_cpu_ms_per_1k_events'], 1)} ({fmt(s['median_server_cpu_pct'])}%) | "
                f"{db} | "
                f"{fmt(s['median_loadgen_cpu_pct'])} | {fmt(s['median_others_cpu_pct'])} | "
                f"{fmt(s['median_request_ms_p50'], 1)} / {fmt(s['median_request_ms_p99'], 1)} | "
                f"{s['errors_total']:,} | {check} |")
    lines.append("")
    for b in report["backends"]:
        if b.get("pg_autovacuum") == "off" and not b.get("pg_analyzed_after_warmup"):
            lines.append("PostgreSQL: autovacuum is off on this server and the fresh tables were never "
                         "ANALYZEd: the planner had no statistics (JSON: pg_table_stats; --pg-analyze).")
    goals = []
    for b in report["backends"]:
        if not b["backend"].startswith("sqlite") or b.get("na"):
            continue
        for key, s in b["scenarios"].items():
            med = s.get("median_events_per_s")
            if med is not None and key in GOALS:
                goals.append(f"{b['backend']} {key}: {fmt(med)} vs {GOALS[key]:,} "
                             f"({'met' if med >= GOALS[key] else 'NOT met'})")
    if goals:
        lines.append("Goals (SQLite): " + "; ".join(goals) + ".")
    lines.append("Medians over the rounds; events count only when their POST got a 2xx. CPU from /proc "
                 "(utime+stime) in % of one core; 'others' is what the rest of the machine "
                 f"({m['cpus']} cores) used meanwhile.")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------------------


async def main_async(args: argparse.Namespace, workdir: Path) -> dict:
    report: dict = {"meta": {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                             "cpus": os.cpu_count(), "kernel": platform.release(),
                             "python": platform.python_version(), "aiohttp": aiohttp.__version__,
                             "pipemon": " ".join(args.prefix), "run_ids": "UUIDv4 (random)" if args.uuid4
                             else "UUIDv7 (time-ordered)", "loadavg_start": loadavg(),
                             "pipemon_source": source_fingerprint()},
                    "params": {k: v for k, v in vars(args).items() if k not in ("prefix", "pg")},
                    "backends": []}
    t0 = time.monotonic()
    for sync in ("FULL", "NORMAL"):
        if sync.lower() not in args.sqlite:
            continue
        d = workdir / f"sqlite-{sync.lower()}"
        d.mkdir()
        label = f"sqlite {sync}"
        log(f"{label}: starting pipemon on {d}/pipemon.db")
        report["backends"].append(await bench_backend(label, f"sqlite:///{d}/pipemon.db",
                                                      ["--sqlite-synchronous", sync], args, d))
        shutil.rmtree(d, ignore_errors=True)
    if args.skip_pg:
        report["backends"].append({"backend": "postgresql", "skipped": "--skip-pg", "scenarios": {}})
    else:
        schema = PgSchema(args.pg)
        why = schema.create()
        if why:
            log(f"postgresql skipped: {why}")
            report["backends"].append({"backend": "postgresql", "skipped": f"unreachable: {why}",
                                       "scenarios": {}})
        else:
            try:
                d = workdir / "pg"
                d.mkdir()
                autovacuum = schema.setting("autovacuum")
                log(f"postgresql: schema {schema.name}, autovacuum {autovacuum}"
                    + (", ANALYZE after each warm-up (--pg-analyze)" if args.pg_analyze else ""))
                b = await bench_backend("postgresql", schema.server_url, [], args, d, schema)
                b["schema"] = schema.name
                b["pg_autovacuum"] = autovacuum
                b["pg_analyzed_after_warmup"] = args.pg_analyze
                b["pg_table_stats"] = schema.table_stats()
                for table, st in b["pg_table_stats"].items():
                    if isinstance(st, dict) and st.get("seq_tup_read"):
                        log(f"postgresql {table}: {st}")
                report["backends"].append(b)
            finally:
                schema.drop()
    report["meta"]["loadavg_end"] = loadavg()
    report["meta"]["pipemon_source_end"] = source_fingerprint()
    report["meta"]["runtime_s"] = round(time.monotonic() - t0, 1)
    return report


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--out", help="write the JSON report here")
    ap.add_argument("--rounds", type=int, default=3, help="timed rounds per scenario, after a warm-up")
    ap.add_argument("--single-requests", type=int, default=20_000, help="ol-single: POSTs per round")
    ap.add_argument("--batch-requests", type=int, default=400,
                    help="native-100 and native-1000: POSTs per round")
    ap.add_argument("--single-conc", type=int, default=32)
    ap.add_argument("--single-procs", type=int, default=2, help="load processes for ol-single")
    ap.add_argument("--pipelines", type=int, default=200, help="distinct pipelines per scenario")
    ap.add_argument("--warmup-frac", type=float, default=0.1, help="warm-up size, as a fraction of a round")
    ap.add_argument("--scenarios", default="ol-single,native-100,native-1000")
    ap.add_argument("--sqlite", default="full,normal", help="SQLite synchronous modes to run, or ''")
    ap.add_argument("--uuid4", action="store_true", help="random UUIDv4 run ids, not UUIDv7")
    ap.add_argument("--pg", default=os.environ.get("PIPEMON_TEST_POSTGRES_URL") or DEFAULT_PG,
                    help="PostgreSQL URL (default: $PIPEMON_TEST_POSTGRES_URL); runs in a fresh schema")
    ap.add_argument("--skip-pg", action="store_true")
    ap.add_argument("--pg-analyze", action="store_true",
                    help="ANALYZE the PostgreSQL tables after each warm-up (as autovacuum would, when on)")
    ap.add_argument("--quick", action="store_true", help="smoke run: 1,000 single / 20 batch POSTs a round")
    ap.add_argument("--pipemon", default=None,
                    help="command prefix to run pipemon (default: sys.executable -m pipemon)")
    ap.add_argument("--run-cap-s", type=float, default=120.0, help="time cap of one run (flagged when hit)")
    ap.add_argument("--request-timeout-s", type=float, default=60.0)
    ap.add_argument("--build-timeout-s", type=float, default=300.0, help="cap on building one run's bodies")
    ap.add_argument("--start-timeout-s", type=float, default=60.0)
    ap.add_argument("--keep-workdir", action="store_true")
    args = ap.parse_args(argv)
    if args.quick:
        args.single_requests = min(args.single_requests, 1_000)
        args.batch_requests = min(args.batch_requests, 20)
    for name in ("rounds", "single_requests", "batch_requests", "single_conc", "single_procs", "pipelines"):
        if not 0 < getattr(args, name) <= 1_000_000:
            ap.error(f"--{name.replace('_', '-')} must be in 1..1,000,000")
    if args.single_procs > args.single_conc:
        ap.error("--single-procs must not exceed --single-conc")
    args.prefix = shlex.split(args.pipemon) if args.pipemon else [sys.executable, "-m", "pipemon"]
    args.scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    known = {"ol-single", "native-100", "native-1000"}
    if not args.scenarios or set(args.scenarios) - known:
        ap.error(f"--scenarios: choose from {', '.join(sorted(known))}")
    args.sqlite = [s.strip().lower() for s in args.sqlite.split(",") if s.strip()]
    if set(args.sqlite) - {"full", "normal"}:
        ap.error("--sqlite: full and/or normal")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="pipemon-ingest-"))
    ids = "UUIDv4 (random, --uuid4)" if args.uuid4 else "UUIDv7 (time-ordered; --uuid4 for random)"
    print(f"run ids: {ids}", flush=True)
    loop = asyncio.new_event_loop()
    task = loop.create_task(main_async(args, workdir))
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, task.cancel)
    try:
        report = loop.run_until_complete(task)
    except asyncio.CancelledError:
        log("interrupted")
        return 130
    finally:
        for p in STARTED:  # nothing started here outlives the harness
            stop(p, grace=5)
        loop.close()
        if args.keep_workdir:
            log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    table = render(report)
    report["markdown"] = table
    if args.out:
        with open(args.out, "w") as f:
            json.dump(report, f, indent=2)
    print(table)
    if args.out:
        print(f"\nJSON: {os.path.abspath(args.out)}  (runtime {report['meta']['runtime_s']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
