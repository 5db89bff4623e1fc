"""Load-generator process for benchmarks/ingest.py (not run by hand).

Protocol on stdin/stdout, one JSON line each way:
  in:  a spec {"url", "kind": "ol"|"native", "n", "offset", "per_post", "conc", "pipelines", "namespace",
       "uuid": "v7"|"v4", "cap_s", "timeout_s"}
  out: {"ready": true, "bodies": n, "body_bytes": b}     once every body is encoded
  in:  "go"
  out: the result of the run (see `run`)
The bodies are built and JSON-encoded before "go", so the timed part only sends bytes. Timestamps are
time.perf_counter(), i.e. CLOCK_MONOTONIC, which is the same clock in every process on Linux: the
orchestrator takes the wall time of a run as max(t1) - min(t0) over its load processes.
"""
from __future__ import annotations

import asyncio
import collections
import json
import math
import os
import resource
import signal
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone

import aiohttp

OL_PRODUCER = "https://github.com/OpenLineage/OpenLineage/tree/1.54.0/client/python"
OL_SCHEMA = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent"
OL_FACET = "https://openlineage.io/spec/facets/"
HEADERS = {"Content-Type": "application/json"}


def uuid7(ms: int) -> str:
    """RFC 9562 UUIDv7 for a unix time in ms: 48-bit time, then 74 random bits (as openlineage-python's
    generate_new_uuid(instant) does: time-ordered across milliseconds, random within one)."""
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms << 80) | (0x7 << 76) | ((rand >> 68) << 64) | (0b10 << 62) | (rand & ((1 << 62) - 1))
    return str(uuid.UUID(int=value))


def new_id(flavor: str, when: datetime) -> str:
    return uuid7(int(when.timestamp() * 1000)) if flavor == "v7" else str(uuid.uuid4())


def ol_event(ns: str, name: str, run_id: str, when: datetime, rows: int) -> dict:
    """An OpenLineage COMPLETE as openlineage-python 1.54 sends it (~1.3 KB, like side_by_side.py's)."""
    job_type = {"_producer": OL_PRODUCER,
                "_schemaURL": OL_FACET + "2-0-4/JobTypeJobFacet.json#/$defs/JobTypeJobFacet",
                "integration": "AIRFLOW", "jobType": "DAG", "processingType": "BATCH"}
    stats = {"_producer": OL_PRODUCER,
             "_schemaURL": OL_FACET + "1-0-2/OutputStatisticsOutputDatasetFacet.json"
                                      "#/$defs/OutputStatisticsOutputDatasetFacet",
             "rowCount": rows, "size": rows * 64}
    tags = {"_producer": OL_PRODUCER,
            "_schemaURL": OL_FACET + "1-0-0/TagsRunFacet.json#/$defs/TagsRunFacet",
            "tags": [{"key": "openlineage_client_version", "value": "1.54.0",
                      "source": "OPENLINEAGE_CLIENT"}]}
    return {"eventTime": when.isoformat(), "eventType": "COMPLETE", "inputs": [],
            "job": {"facets": {"jobType": job_type}, "name": name, "namespace": ns},
            "outputs": [{"namespace": "s3://bench", "name": f"{ns}/{name}/out", "facets": {},
                         "outputFacets": {"outputStatistics": stats}}],
            "producer": OL_PRODUCER, "run": {"facets": {"tags": tags}, "runId": run_id},
            "schemaURL": OL_SCHEMA}


def native_event(ns: str, name: str, run_id: str, event_id: str, when: datetime, rows: int) -> dict:
    return {"namespace": ns, "name": name, "run_id": run_id, "type": "COMPLETE",
            "event_time": when.isoformat().replace("+00:00", "Z"), "event_id": event_id,
            "metrics": {"rows": rows}}


def build(spec: dict) -> tuple[list[bytes], list[dict]]:
    """The bodies of this process's share of the run, and for each its last event (pipeline, run id, rows),
    to read back afterwards.
    Event i (global over the run's processes) is of pipeline i % pipelines; times step 1 µs, ending now."""
    n, per, off = spec["n"], spec["per_post"], spec["offset"]
    ns, pipelines, flavor = spec["namespace"], spec["pipelines"], spec["uuid"]
    total = n * per
    end = datetime.now(timezone.utc)
    bodies, lasts = [], []
    for p in range(n):
        items = []
        for j in range(per):
            k = p * per + j
            i = off * per + k
            when = end - timedelta(microseconds=total - k)
            name, rows = f"pipeline_{i % pipelines:04d}", 1000 + i % 97
            run_id = new_id(flavor, when)
            if spec["kind"] == "ol":
                items.append(ol_event(ns, name, run_id, when, rows))
            else:
                items.append(native_event(ns, name, run_id, new_id(flavor, when), when, rows))
        lasts.append({"pipeline": f"{ns}/{name}", "run_id": run_id, "rows": rows})
        bodies.append(json.dumps(items[0] if spec["kind"] == "ol" else items, separators=(",", ":")).encode())
    return bodies, lasts


def cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def pct(xs: list[float], q: float) -> float | None:
    return xs[max(1, math.ceil(q * len(xs))) - 1] if xs else None


async def run(spec: dict, bodies: list[bytes], lasts: list[dict]) -> dict:
    """`conc` workers share one keep-alive pool and take bodies from one list until it is empty or cap_s has
    passed. Events count only when their POST got a 2xx; everything else is an error (with a few samples)."""
    url, per = spec["url"], spec["per_post"]
    statuses: collections.Counter = collections.Counter()
    errors: list[str] = []
    lat: list[float] = []
    acked = {"accepted": 0, "duplicates": 0, "unparsed": 0}
    acked_bodies: list[int] = []
    nxt = 0
    deadline = math.inf

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal nxt
        while nxt < len(bodies) and time.perf_counter() < deadline:
            k = nxt
            nxt += 1
            body = bodies[k]
            t = time.perf_counter()
            try:
                async with session.post(url, data=body, headers=HEADERS) as r:
                    text = await r.read()
                    statuses[r.status] += 1
                    if 200 <= r.status < 300:
                        acked_bodies.append(k)
                        try:
                            answer = json.loads(text)
                            acked["accepted"] += answer["accepted"]
                            acked["duplicates"] += answer["duplicates"]
                        except (ValueError, KeyError, TypeError):
                            acked["unparsed"] += 1
                    elif len(errors) < 3:
                        errors.append(f"{r.status}: {text[:160].decode('utf-8', 'replace')}")
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as e:
                statuses[type(e).__name__] += 1
                if len(errors) < 3:
                    errors.append(f"{type(e).__name__}: {e}"[:200])
            lat.append(time.perf_counter() - t)

    connector = aiohttp.TCPConnector(limit=spec["conc"], force_close=False)
    timeout = aiohttp.ClientTimeout(total=spec["timeout_s"])
    async with aiohttp.ClientSession(connector=connector, timeout=timeout,
                                     skip_auto_headers=("User-Agent",)) as session:
        c0 = cpu_s()
        t0 = time.perf_counter()
        deadline = t0 + spec["cap_s"]
        await asyncio.gather(*(worker(session) for _ in range(spec["conc"])))
        t1 = time.perf_counter()
        c1 = cpu_s()
    ok = sum(v for k, v in statuses.items() if isinstance(k, int) and 200 <= k < 300)
    sent = sum(statuses.values())
    lat.sort()
    return {"t0": t0, "t1": t1, "cpu_s": c1 - c0, "planned": len(bodies), "sent": sent, "ok": ok,
            "errors": sent - ok, "events_acked": ok * per, "accepted": acked["accepted"],
            "duplicates": acked["duplicates"], "unparsed_answers": acked["unparsed"],
            "capped": sent < len(bodies), "statuses": {str(k): v for k, v in statuses.items()},
            "error_samples": errors, "samples": [lasts[k] for k in sorted(acked_bodies)[-3:]],
            "request_ms_p50": round(pct(lat, 0.5) * 1000, 2) if lat else None,
            "request_ms_p99": round(pct(lat, 0.99) * 1000, 2) if lat else None}


def main() -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the orchestrator's to handle; it stops us by PID
    line = sys.stdin.readline()
    if not line:
        return 1
    spec = json.loads(line)
    bodies, lasts = build(spec)
    try:
        import uvloop
        runner, loop_name = uvloop.run, "uvloop"
    except ImportError:
        runner, loop_name = asyncio.run, "asyncio"
    print(json.dumps({"ready": True, "bodies": len(bodies), "body_bytes": sum(map(len, bodies))}), flush=True)
    if sys.stdin.readline().strip() != "go":  # EOF: the orchestrator is gone or gave up
        return 1
    result = runner(run(spec, bodies, lasts))
    result.update(loop=loop_name, pid=os.getpid())
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
