"""Fleet scale in one process (issue 16): a scrape of /metrics does not stall ingest, reads are fresh with
no later traffic, and the in-memory caches stay within their byte budgets."""
from __future__ import annotations

import gc
import gzip
import threading

import httpx
import msgspec
import pytest
from prometheus_client.parser import text_string_to_metric_families

from pipemon.api.metrics import FleetText, GcPauses, accepts_gzip
from pipemon.config import Settings, loads
from pipemon.engine.health import HealthState, PipelineHealth
from pipemon.ingest import native
from pipemon.store import reads
from tests.conftest import T0, LiveServer

EVENTS = "/api/v1/events"


def ev(pipeline, run_id, type_, t, **kw):
    return {"pipeline": pipeline, "run_id": run_id, "type": type_, "event_time": t, **kw}


# --- reads are fresh ---------------------------------------------------------------------------------------

def test_last_event_time_is_current_after_a_tick_with_no_later_traffic(client, pm):
    """A second event moves last_event_at in memory; with no traffic after it, the writer's clock tick
    (every second in a live server) writes it, so a read is current within one tick, not at the next
    event."""
    assert client.post(EVENTS, json=ev("etl/fresh", "r1", "START", T0)).status_code == 200
    assert client.post(EVENTS, json=ev("etl/fresh", "r1", "COMPLETE", T0 + 600)).status_code == 200
    pm.writer.tick()
    p = client.get("/api/v1/pipelines/etl%2Ffresh").json()
    assert p["last_event_at"] == "2026-09-21T14:23:20Z"   # T0 + 600
    assert p["last_run"]["status"] == "succeeded"


# --- memory has a bound ------------------------------------------------------------------------------------

def test_the_run_cache_stays_within_its_bytes_and_an_evicted_run_still_folds(db_url, clock):
    """A run cache of 20 KiB holds ~50 runs: 300 runs are started; the cache keeps its bound, and the
    oldest run, long evicted, still ends correctly (read back from the store)."""
    from pipemon.app import build
    settings = loads("cache:\n  runs: 20KiB\n")
    p = build(db_url, settings, clock=clock)
    try:
        w = p.writer
        w.ingest([])  # loads
        starts = [ev(f"etl/p{i % 30}", f"run-{i}", "START", T0 + i) for i in range(300)]
        w.ingest(native.parse(msgspec.json.encode(starts), T0 + 300))
        assert 0 < w._runs_bytes <= 20 * 1024
        assert len(w._runs) < 300
        assert (w.pipelines["etl/p0"].id, "run-0") not in w._runs
        w.ingest(native.parse(msgspec.json.encode([ev("etl/p0", "run-0", "COMPLETE", T0 + 400)]), T0 + 400))
        with p.db.connect() as conn:
            run, _ = reads.find_run(conn, "run-0", "etl/p0")
        assert run.status.value == "succeeded" and run.duration == 400
        assert w._runs_bytes <= 20 * 1024
    finally:
        p.close()


def test_cache_sizes_are_configured_in_bytes():
    assert Settings().cache.runs == 64 << 20 and Settings().cache.metrics == 64 << 20
    assert loads("cache:\n  runs: 1.5GiB\n  metrics: 500MB\n").cache.runs == 3 << 29
    assert loads("cache:\n  metrics: 500MB\n").cache.metrics == 500_000_000
    with pytest.raises(Exception, match=r"<config>:2: cache.runs: expected a size such as 64MiB"):
        loads("cache:\n  runs: plenty\n")


# --- /metrics: rendered when a pipeline changes, concatenated on scrape ------------------------------------

def _fleet(n: int) -> list[tuple[str, PipelineHealth]]:
    out = []
    for i in range(n):
        h = PipelineHealth(first_seen=T0)
        h.state = HealthState.HEALTHY if i % 3 else HealthState.FAILING
        h.last_success = T0 + i
        h.last_run = {"duration": 1.5 * i, "rows": i * 10}
        h.consecutive_failures = 0 if i % 3 else 2
        out.append((f'ns/p{i}"\\x', h))  # a quote and a backslash to escape
    return out


def test_fleet_text_renders_a_pipeline_only_when_it_changes():
    fleet = _fleet(50)
    teams = {k: "t" for k, _ in fleet}
    text = FleetText()
    first = text.render(fleet, teams)
    assert text.renders == 50
    assert text.render(fleet, teams) == first and text.renders == 50      # nothing moved: nothing rendered
    fleet[7][1].consecutive_failures = 9
    changed = text.render(fleet, teams)
    assert text.renders == 51 and changed != first
    fams = {f.name: f for f in text_string_to_metric_families(changed.decode())}
    fails = {s.labels["pipeline"]: s.value for s in fams["pipemon_pipeline_consecutive_failures"].samples}
    assert fails['ns/p7"\\x'] == 9 and len(fails) == 50
    assert {s.labels["state"]: s.value for s in fams["pipemon_pipelines"].samples}["failing"] == 17
    # a budget too small for all: the same text, the cache within its budget
    small = FleetText(max_bytes=5_000)
    assert small.render(fleet, teams) == changed and 0 < small.bytes <= 5_000
    assert small.render(fleet, teams) == changed
    # a pipeline gone from the engine leaves the cache
    text.render(fleet[:10], teams)
    assert len(text._rows) == 10


def test_gc_pauses_are_recorded_and_reset_by_each_take():
    pauses = GcPauses()
    pauses.start()
    try:
        garbage = [[i] for i in range(10_000)]
        del garbage
        gc.collect()
        assert pauses.take() > 0
        assert pauses.take() == 0
    finally:
        pauses.stop()
    assert pauses._callback not in gc.callbacks


@pytest.mark.parametrize("header, gz", [("gzip", True), ("gzip, deflate, br", True), ("*", True),
                                        ("br;q=1.0, gzip;q=0.5", True), ("gzip;q=0", False),
                                        ("identity", False), ("", False), ("gzip;q=x", False)])
def test_accept_encoding(header, gz):
    assert accepts_gzip(header) is gz


# --- a scrape at 5,000 pipelines while ingest goes on -----------------------------------------------------

@pytest.mark.slow
def test_scraping_5000_pipelines_while_single_events_arrive(tmp_path):
    """Single events sent one after the other while /metrics (gzip) is scraped six times: every event is
    acknowledged and stored, and every scrape is a whole, correct exposition of the fleet. How long a scrape
    holds the event loop is a speed figure, measured by `benchmarks/scale.py` (its `metrics` phase prints
    the worst event-loop lag seen during the scrapes), not asserted here."""
    db = f"sqlite:///{tmp_path / 'scale.db'}"
    n = 5000
    first = LiveServer(db, tmp_path).start()
    try:
        fleet = [ev(f"fleet/p{i:04d}", f"r{i}", "START", T0 + i, team=f"team{i % 20}") for i in range(n)]
        fleet += [ev(f"fleet/p{i:04d}", f"r{i}", "COMPLETE" if i % 10 else "FAIL", T0 + i + 60, error="x",
                     metrics={"rows": i}) for i in range(n)]
        r = httpx.post(first.url + EVENTS, json=fleet, timeout=60)
        assert r.json() == {"accepted": 2 * n, "duplicates": 0}, r.text
    finally:
        first.stop()
    # A server that starts on its fleet, as in production.
    server = LiveServer(db, tmp_path).start()
    try:
        with httpx.Client(base_url=server.url, timeout=60) as c:

            scrapes: list[tuple[dict, bytes]] = []

            def scrape(times: int) -> None:
                with httpx.Client(base_url=server.url, timeout=60) as s:
                    for _ in range(times):
                        with s.stream("GET", "/metrics", headers={"Accept-Encoding": "gzip"}) as resp:
                            raw = b"".join(resp.iter_raw())  # the compressed bytes, as Prometheus reads them
                        scrapes.append((dict(resp.headers), raw))

            scrape(1)  # the first scrape renders every pipeline; later ones reuse the cached text
            sent = 0
            scraper = threading.Thread(target=scrape, args=(6,))
            scraper.start()
            while scraper.is_alive() or sent < 100:
                r = c.post(EVENTS, json=ev(f"fleet/p{sent % n:04d}", f"s{sent}", "START", T0 + 100 + sent))
                assert r.status_code == 200 and r.json() == {"accepted": 1, "duplicates": 0}, r.text
                sent += 1
            scraper.join()
            assert len(scrapes) == 7
            runs = c.get("/api/v1/pipelines/fleet%2Fp0000").json()
            assert runs["last_event_at"] is not None

        headers, raw = scrapes[-1]
        assert headers["content-encoding"] == "gzip"
        text = gzip.decompress(raw).decode()
        fams = {f.name: f for f in text_string_to_metric_families(text)}
        assert len(fams["pipemon_pipeline_state"].samples) == n
        assert sum(s.value for s in fams["pipemon_pipelines"].samples) == n
        failing = [s for s in fams["pipemon_pipeline_state"].samples if s.labels["state"] == "failing"]
        assert len(failing) == n // 10
        [lag] = fams["pipemon_event_loop_lag_seconds"].samples
        assert lag.value >= 0
        assert len(raw) * 4 < len(text)  # compressed
    finally:
        server.stop()
