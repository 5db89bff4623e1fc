"""An acknowledged event survives a SIGKILL of the server: 2xx means committed."""
from __future__ import annotations

import concurrent.futures
import uuid

import httpx

from tests.conftest import LiveServer


def test_every_acknowledged_event_survives_sigkill(db_url, tmp_path):
    server = LiveServer(db_url, tmp_path).start()
    acked: list[str] = []
    try:
        def post(i: int) -> list[str]:
            ids = [f"b{i}-{j}-{uuid.uuid4().hex[:6]}" for j in range(500)]
            body = [{"pipeline": f"kill/p{j % 7}", "run_id": rid, "type": "COMPLETE", "duration_s": 5,
                     "event_time": 1_790_000_000 + j} for j, rid in enumerate(ids)]
            r = httpx.post(server.url + "/api/v1/events", json=body, timeout=30)
            return ids if r.status_code == 200 else []

        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            for ids in pool.map(post, range(12)):
                acked.extend(ids)
        server.kill()  # SIGKILL right after the last acknowledgement: no graceful shutdown, no flush
    finally:
        server.kill()
    assert len(acked) == 6000

    again = LiveServer(db_url, tmp_path).start()
    try:
        found = set()
        for p in range(7):
            cursor = None
            while True:
                params = {"limit": 1000, **({"cursor": cursor} if cursor else {})}
                page = httpx.get(f"{again.url}/api/v1/pipelines/kill%2Fp{p}/runs", params=params, timeout=30).json()
                found.update(r["run_id"] for r in page["items"] if r["status"] == "succeeded")
                cursor = page["next_cursor"]
                if not cursor:
                    break
        assert set(acked) <= found
        # and a retry of an acknowledged batch after the restart is recognised as a duplicate
        r = httpx.post(again.url + "/api/v1/events", json={"pipeline": "kill/p0", "run_id": acked[0], "type": "COMPLETE",
                                                          "duration_s": 5, "event_time": 1_790_000_000}, timeout=30)
        assert r.json() == {"accepted": 0, "duplicates": 2}
    finally:
        again.stop()
