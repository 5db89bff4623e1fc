"""The front doors over HTTP, on SQLite and PostgreSQL."""
import gzip
import json

import pytest

from tests.conftest import T0


def native(pipeline="team/job", run_id="r1", type_="START", t=T0, **kw):
    return {"pipeline": pipeline, "run_id": run_id, "type": type_, "event_time": t, **kw}


def runs_of(client, pipeline):
    r = client.get(f"/api/v1/pipelines/{pipeline.replace('/', '%2F')}/runs")
    assert r.status_code == 200, r.text
    return r.json()["items"]


def test_native_batch_makes_runs(client):
    r = client.post("/api/v1/events", json=[
        native(), native(type_="COMPLETE", t=T0 + 60, metrics={"rows": 7, "bytes": 70, "files": 2}),
        native(run_id="r2", t=T0 + 100), native(run_id="r2", type_="FAIL", t=T0 + 130, error={"message": "boom", "type": "E"}),
    ])
    assert r.status_code == 200 and r.json() == {"accepted": 4, "duplicates": 0}
    latest, first = runs_of(client, "team/job")
    assert (first["run_id"], first["status"], first["duration_s"], first["rows"], first["bytes"], first["metrics"]) == \
        ("r1", "succeeded", 60, 7, 70, {"files": 2})
    assert (latest["status"], latest["error"]) == ("failed", {"message": "boom", "type": "E"})


def test_retries_are_stored_once(client):
    batch = [native(event_id="a"), native(type_="COMPLETE", t=T0 + 5, event_id="b")]
    assert client.post("/api/v1/events", json=batch).json() == {"accepted": 2, "duplicates": 0}
    assert client.post("/api/v1/events", json=batch).json() == {"accepted": 0, "duplicates": 2}
    assert client.post("/api/v1/events", json=batch + batch).json() == {"accepted": 0, "duplicates": 4}
    assert len(runs_of(client, "team/job")) == 1


def test_out_of_order_events_give_the_right_run(client):
    client.post("/api/v1/events", json=native(type_="COMPLETE", t=T0 + 300, metrics={"rows": 3}))
    client.post("/api/v1/events", json=native(type_="RUNNING", t=T0 + 100))
    client.post("/api/v1/events", json=native(type_="START", t=T0))
    [run] = runs_of(client, "team/job")
    assert (run["status"], run["duration_s"], run["rows"]) == ("succeeded", 300, 3)


def test_a_bad_batch_stores_nothing(client):
    r = client.post("/api/v1/events", json=[native(), native(type_="NOPE"), native(run_id="x", metrics={"rows": "a"})])
    assert r.status_code == 422
    body = r.json()
    assert body["error"] == "invalid_event"
    assert {p["loc"] for p in body["problems"]} == {"$[1].type", "$[2].metrics.rows"}
    assert client.get("/api/v1/pipelines").json()["items"] == []


@pytest.mark.parametrize("path", ["/api/v1/events", "/api/v1/lineage"])
@pytest.mark.parametrize("body,status,code", [
    (b"{not json", 400, "malformed_json"),
    (b"[1, 2", 400, "malformed_json"),
    (b"\xff\xfe", 400, "malformed_json"),
    (b"", 400, "malformed_json"),
    (b"17", 422, "invalid_event"),
    (b'{"eventType": "START"}', 422, "invalid_event"),
])
def test_bad_bodies_get_clear_errors(client, path, body, status, code):
    r = client.post(path, content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == status, r.text
    assert r.json()["error"] == code and r.json()["message"]


def test_oversized_body_is_413(client, pm):
    big = json.dumps(native(log="x" * (pm.settings.limits.max_body + 10))).encode()
    r = client.post("/api/v1/events", content=big)
    assert r.status_code == 413 and r.json()["error"] == "body_too_large"
    r = client.post("/api/v1/lineage", content=big)
    assert r.status_code == 413


def test_gzip_bodies_and_gzip_bombs(client, pm):
    r = client.post("/api/v1/events", content=gzip.compress(json.dumps(native()).encode()),
                    headers={"Content-Encoding": "gzip", "Content-Type": "application/json"})
    assert r.status_code == 200 and r.json()["accepted"] == 1
    bomb = gzip.compress(b"[" + b" " * (pm.settings.limits.max_batch_body + 100) + b"]")
    r = client.post("/api/v1/events", content=bomb, headers={"Content-Encoding": "gzip"})
    assert r.status_code == 413
    r = client.post("/api/v1/events", content=b"not gzip", headers={"Content-Encoding": "gzip"})
    assert r.status_code == 400
    r = client.post("/api/v1/events", content=b"{}", headers={"Content-Encoding": "br"})
    assert r.status_code == 415


def test_ping_lifecycle(client, clock):
    assert client.get("/ping/cron/backup/start").status_code == 200
    clock.advance(42)
    r = client.post("/ping/cron/backup", content=b"backed up 12 files\n")
    assert r.status_code == 200 and r.text == "OK\n"
    clock.advance(100)
    client.get("/ping/cron/backup/3")
    failed, ok = runs_of(client, "cron/backup")
    assert (ok["status"], ok["duration_s"], ok["log_excerpt"]) == ("succeeded", 42, "backed up 12 files\n")
    assert (failed["status"], failed["error"]["message"], failed["duration_s"]) == ("failed", "exit code 3", None)


def test_ping_with_run_ids_keeps_overlapping_runs_apart(client, clock):
    client.get("/ping/cron/sync/start?rid=a")
    clock.advance(10)
    client.get("/ping/cron/sync/start?rid=b")
    clock.advance(10)
    client.get("/ping/cron/sync/0?rid=a")
    client.get("/ping/cron/sync/fail?rid=b")
    by_id = {r["run_id"]: r for r in runs_of(client, "cron/sync")}
    assert (by_id["a"]["status"], by_id["a"]["duration_s"]) == ("succeeded", 20)
    assert (by_id["b"]["status"], by_id["b"]["duration_s"]) == ("failed", 10)


def test_ping_log_keeps_the_last_8kb_with_credentials_masked(client):
    """The body is the job's output: its end says what broke, so the tail is kept (it was the head)."""
    body = b"x" * 50_000 + b"\nconnecting with DB_PASSWORD=hunter2\nFATAL: disk full\n"
    client.post("/ping/cron/big/1", content=body)
    [run] = runs_of(client, "cron/big")
    assert len(run["log_excerpt"]) <= 8192 and run["log_excerpt"].endswith("FATAL: disk full\n")
    assert "hunter2" not in run["log_excerpt"] and "DB_PASSWORD=<redacted>" in run["log_excerpt"]


@pytest.mark.parametrize("signal", ["256", "explode", "-1"])
def test_bad_ping_signal(client, signal):
    r = client.get(f"/ping/cron/job/{signal}")
    assert r.status_code == 422 and "signal" in r.json()["problems"][0]["msg"]


def test_namespaces_with_slashes_work_in_ids(client):
    client.post("/api/v1/events", json=native(pipeline="airflow://prod/daily_sales"))
    r = client.get("/api/v1/pipelines/airflow%3A%2F%2Fprod%2Fdaily_sales")
    assert r.status_code == 200 and r.json()["namespace"] == "airflow://prod"
    assert runs_of(client, "airflow://prod/daily_sales")[0]["run_id"] == "r1"
    assert client.get("/api/v1/runs/r1").json()["pipeline"] == "airflow://prod/daily_sales"


def test_unknown_things_are_404_and_bad_params_422(client):
    assert client.get("/api/v1/pipelines/nope%2Fnope").status_code == 404
    assert client.get("/api/v1/runs/nope").status_code == 404
    client.post("/api/v1/events", json=native())
    assert client.get("/api/v1/pipelines/team%2Fjob/runs?limit=0").status_code == 422
    assert client.get("/api/v1/pipelines/team%2Fjob/runs?cursor=zzz").status_code == 400


def test_shared_run_id_needs_the_pipeline(client):
    client.post("/api/v1/events", json=[native(pipeline="a/one", run_id="2026-01-01"),
                                        native(pipeline="a/two", run_id="2026-01-01")])
    r = client.get("/api/v1/runs/2026-01-01")
    assert r.status_code == 409 and "a/one" in r.json()["message"]
    assert client.get("/api/v1/runs/2026-01-01?pipeline=a/two").json()["pipeline"] == "a/two"


def test_run_pages_follow_the_cursor(client):
    client.post("/api/v1/events", json=[native(run_id=f"r{i}", t=T0 + i) for i in range(7)])
    seen, cursor = [], None
    while True:
        page = client.get("/api/v1/pipelines/team%2Fjob/runs", params={"limit": 3, **({"cursor": cursor} if cursor else {})}).json()
        seen += [r["run_id"] for r in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == [f"r{i}" for i in range(6, -1, -1)]


@pytest.mark.parametrize("path", ["/api/v1/events", "/api/v1/lineage"])
def test_the_ingest_fast_path_answers_as_the_middleware_stack_would(client, pm, path, monkeypatch):
    """The two doors' POSTs skip the middleware stack (api/ingest.IngestFastPath): what the stack does for
    every route still holds for them."""
    r = client.post(path + "?x=%00", json=native())
    assert (r.status_code, r.json()["error"]) == (400, "bad_request")  # RejectNul, not an ingest answer
    r = client.post(path, content=b"{nope")
    assert (r.status_code, r.json()["error"], r.headers["content-type"]) == (400, "malformed_json",
                                                                          "application/json")

    async def broken(events, caller=None):
        raise RuntimeError("a bug")
    monkeypatch.setattr(pm.log, "append", broken)
    r = client.post("/api/v1/events", json=native())
    assert (r.status_code, r.text) == (500, "Internal Server Error")  # as Starlette's ServerErrorMiddleware
    metrics = client.get("/metrics").text
    assert f'pipemon_http_request_duration_seconds_count{{method="POST",route="{path}",status="400"}}' \
        in metrics
    assert 'route="/api/v1/events",status="500"' in metrics
