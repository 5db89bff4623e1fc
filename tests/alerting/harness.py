"""Driving a pipemon through time in a test: a fake clock, the real writer and deliverer threads, real HTTP
to a local receiver."""
from __future__ import annotations

import time
from datetime import datetime, timezone

from fastapi.testclient import TestClient

from pipemon.api.app import create_app
from pipemon.app import build
from pipemon.clock import FakeClock
from pipemon.config import loads

DAY0 = datetime(2026, 11, 2, tzinfo=timezone.utc).timestamp()  # a Monday


def at(hh: int, mm: int = 0, ss: int = 0, day: int = 0) -> float:
    return DAY0 + day * 86400 + hh * 3600 + mm * 60 + ss


class Harness:
    def __init__(self, db_url: str, config: str, start: float) -> None:
        self.clock = FakeClock(start)
        self.pm = build(db_url, loads(config), clock=self.clock)
        self.client = TestClient(create_app(self.pm))
        self.client.__enter__()

    def close(self) -> None:
        self.client.__exit__(None, None, None)
        self.pm.close()

    def post(self, events: list[dict]) -> None:
        r = self.client.post("/api/v1/events", json=events)
        assert r.status_code == 200, r.text

    def run(self, pipeline: str, run_id: str, start: float, end: float, ok: bool = True, error: str = "boom",
            rows: float | None = None) -> None:
        """A whole run; the clock moves to its end first."""
        self.clock.set(end)
        done = {"pipeline": pipeline, "run_id": run_id, "type": "COMPLETE" if ok else "FAIL", "event_time": end}
        if not ok:
            done["error"] = {"message": error, "type": "RuntimeError"}
        if rows is not None:
            done["metrics"] = {"rows": rows}
        self.post([{"pipeline": pipeline, "run_id": run_id, "type": "START", "event_time": start}, done])

    def advance(self, to: float, step: float = 60.0) -> None:
        """Move the clock to `to`, ticking the writer every `step` seconds on the way (timers fire)."""
        t = self.clock.now()
        while t < to:
            t = min(to, t + step)
            self.clock.set(t)
            self.pm.writer.tick()

    def alerts(self, **params) -> list[dict]:
        return self.client.get("/api/v1/alerts", params={"state": "firing,acknowledged,resolved", **params}).json()["items"]

    def settle(self, seconds: float = 0.5) -> None:
        """Let the deliverer finish what the writer handed it (real HTTP, real threads)."""
        deadline = time.monotonic() + 10
        time.sleep(0.05)
        while time.monotonic() < deadline:
            items = self.client.get("/api/v1/notifications", params={"status": "pending"}).json()["items"]
            if not items and not self.pm.deliverer._inflight:
                time.sleep(0.05)
                return
            time.sleep(0.05)
