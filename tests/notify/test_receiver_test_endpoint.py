"""POST /api/v1/receivers/{name}/test goes through the receiver's rate limit: with no room, 429 and
Retry-After and nothing sent; with room for the trigger now and the resolve soon, both go, paced."""
from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from pipemon.api.app import create_app
from pipemon.app import build
from pipemon.config import loads


@pytest.fixture
def api(tmp_path, http_receiver):
    cfg = loads(f"""
receivers:
  - name: slow
    rate_limit: {{per_second: 0.2, burst: 2}}
    webhook: {{url: "{http_receiver.url}/slow"}}
  - name: paced
    rate_limit: {{per_second: 2, burst: 1}}
    webhook: {{url: "{http_receiver.url}/paced"}}
""")
    pm = build(f"sqlite:///{tmp_path / 'pm.db'}", cfg)
    with TestClient(create_app(pm), raise_server_exceptions=False) as c:
        yield c


def paths(rec) -> list[str]:
    return [r.path for r in rec.requests]


def test_a_receiver_test_with_no_room_in_the_rate_limit_is_429_with_retry_after(api, http_receiver):
    first = api.post("/api/v1/receivers/slow/test")
    assert first.status_code == 200 and first.json() == {"receiver": "slow", "ok": True, "error": None}
    assert paths(http_receiver) == ["/slow", "/slow"]  # trigger and resolve took the burst
    again = api.post("/api/v1/receivers/slow/test")
    assert again.status_code == 429
    assert int(again.headers["Retry-After"]) >= 1
    assert again.json()["error"] == "rate_limited" and "'slow'" in again.json()["message"]
    assert paths(http_receiver) == ["/slow", "/slow"]  # nothing more was sent


def test_a_receiver_test_waits_a_bounded_time_for_its_resolve_token(api, http_receiver):
    r = api.post("/api/v1/receivers/paced/test")  # burst 1: the resolve waits half a second for its token
    assert r.status_code == 200 and r.json()["ok"] is True
    bodies = [req.json()["pipemon"]["action"] for req in http_receiver.requests]
    assert bodies == ["test", "resolve"]


def test_an_unknown_receiver_is_404(api):
    r = api.post("/api/v1/receivers/nobody/test")
    assert r.status_code == 404 and "nobody" in r.json()["message"]


def test_the_endpoint_documents_its_rate_limit(api):
    op = api.get("/openapi.json").json()["paths"]["/api/v1/receivers/{name}/test"]["post"]
    assert "rate limit" in op["description"] and "429" in op["responses"]
