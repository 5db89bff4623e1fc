"""The writer survives its database going away (cut for 1, 5 and 30 s) and going silent (frozen for 20 s),
with a real `pipemon serve` under a steady load of events, on a PostgreSQL it owns: a schema of its own on
the shared server, reached through a TCP proxy (tests/robustness/proxy.py) that this test cuts and freezes.
The shared server itself is never touched.

Afterwards: every acknowledged event is stored, exactly once; after each outage the service takes events
again within 10 s of the database's return, with no restart; the clock still finds lateness; and while
the database was frozen, requests were answered 503, none hung.
"""
from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime

import httpx
import msgspec
import pytest
import sqlalchemy as sa

from pipemon.store.bodies import read_bodies
from tests.conftest import LiveServer

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

BACK_WITHIN_S = 10.0   # the bound: new events accepted this soon after the database returns
CLIENT_TIMEOUT_S = 15.0  # above the writer's request timeout (10 s): a client timeout means a hang
LATE = "robust/minutely"


@dataclass
class Loader:
    """Sends batches of uniquely identified events and retries each until it is acknowledged."""

    url: str
    acked: set[str] = field(default_factory=set)
    statuses: list[tuple[float, float, int | str]] = field(default_factory=list)  # (start, end, status)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        n = 0
        with httpx.Client(timeout=CLIENT_TIMEOUT_S) as http:
            while not self.stop.is_set():
                n += 1
                now = time.time()
                batch = [{"namespace": "robust", "name": "load", "type": "HEARTBEAT", "event_id": f"b{n}-{i}",
                          "event_time": now} for i in range(10)]
                while not self.stop.is_set():
                    t0 = time.monotonic()
                    try:
                        r = http.post(self.url + "/api/v1/events", json=batch)
                        status: int | str = r.status_code
                    except httpx.TimeoutException:
                        status = "timeout"
                    except httpx.HTTPError as e:
                        status = type(e).__name__
                    self.statuses.append((t0, time.monotonic(), status))
                    if status == 200:
                        self.acked.update(e["event_id"] for e in batch)
                        break
                    time.sleep(0.2)  # a client's retry, with the same event ids
                time.sleep(0.05)


def watch_ready(url: str, stop: threading.Event, seen: list[tuple[float, int | str]]) -> None:
    """What a load balancer sees: /readyz every half second (it must answer at once, also while frozen)."""
    with httpx.Client(timeout=5) as http:
        while not stop.is_set():
            t = time.monotonic()
            try:
                seen.append((t, http.get(url + "/readyz").status_code))
            except httpx.HTTPError as e:
                seen.append((t, type(e).__name__))
            stop.wait(0.5)


def wait_accepting(url: str, since: float) -> float:
    """Seconds from `since` until the service acknowledges a new event; fails past BACK_WITHIN_S."""
    with httpx.Client(timeout=CLIENT_TIMEOUT_S) as http:
        while True:
            ev = {"namespace": "robust", "name": "probe", "type": "HEARTBEAT", "event_id": uuid.uuid4().hex}
            try:
                if http.post(url + "/api/v1/events", json=ev).status_code == 200:
                    return time.monotonic() - since
            except httpx.HTTPError:
                pass
            assert time.monotonic() - since < BACK_WITHIN_S, \
                f"no event accepted within {BACK_WITHIN_S:.0f} s of the database's return"
            time.sleep(0.1)


def test_outages_and_freeze_lose_nothing_and_recover(owned_db, tmp_path):
    url, proxy, direct = owned_db
    cfg = tmp_path / "pipemon.yaml"
    cfg.write_text(f'pipelines:\n  - match: "{LATE}"\n    schedule: "* * * * *"\n    grace: 2s\n')
    server = LiveServer(url, tmp_path, str(cfg)).start()
    loader = Loader(server.url)
    feeding = threading.Thread(target=loader.run, daemon=True)
    ready: list[tuple[float, int | str]] = []
    probing = threading.Thread(target=watch_ready, args=(server.url, loader.stop, ready), daemon=True)
    windows: dict[str, tuple[float, float]] = {}
    try:
        feeding.start()
        probing.start()
        time.sleep(2)
        back: dict[str, float] = {}
        for outage in (1, 5, 30):
            if outage == 30:  # a run now: the next slot's deadline passes during or after the long outage
                served = time.time()
                ok = httpx.post(server.url + "/api/v1/events", json=[
                    {"namespace": "robust", "name": "minutely", "run_id": "r1", "type": t,
                     "event_time": served} for t in ("START", "COMPLETE")], timeout=CLIENT_TIMEOUT_S)
                assert ok.status_code == 200, ok.text
            t0 = time.monotonic()
            proxy.cut()
            time.sleep(outage)
            proxy.restore()
            windows[f"cut {outage} s"] = (t0, time.monotonic())
            back[f"cut {outage} s"] = wait_accepting(server.url, time.monotonic())
        frozen_at = time.monotonic()
        proxy.freeze()
        time.sleep(20)
        proxy.restore()
        thawed_at = time.monotonic()
        windows["frozen 20 s"] = (frozen_at, thawed_at)
        back["frozen 20 s"] = wait_accepting(server.url, thawed_at)
        time.sleep(1)
        loader.stop.set()
        feeding.join(CLIENT_TIMEOUT_S + 5)
        probing.join(10)

        # While frozen, requests were answered 503 (with Retry-After), and none hung until the client gave up.
        during = [s for (t0, _, s) in loader.statuses if frozen_at <= t0 < thawed_at]
        assert 503 in during, f"no 503 while the database was frozen: {during}"
        hung = [s for (_, _, s) in loader.statuses if s == "timeout"]
        assert not hung, f"{len(hung)} requests hung until the client's {CLIENT_TIMEOUT_S:.0f} s timeout"
        assert {s for (_, _, s) in loader.statuses} <= {200, 503}, "only 200 or 503, never a 500 or a reset"

        # /readyz said so while the database was away or silent, always at once.
        for name in ("cut 30 s", "frozen 20 s"):
            lo, hi = windows[name]
            assert 503 in [st for t, st in ready if lo <= t < hi], f"/readyz never 503 during {name}: {ready}"
        assert {st for _, st in ready} <= {200, 503}, f"/readyz did not answer: {ready}"

        # The clock still finds lateness after the outages (a tick, no event): the slot after the run is late.
        deadline = time.monotonic() + 70
        while True:
            view = httpx.get(server.url + f"/api/v1/pipelines/{LATE}", timeout=CLIENT_TIMEOUT_S).json()
            since = view.get("state_since")
            since_ts = datetime.fromisoformat(since).timestamp() if since else 0.0
            if view["state"] == "late" and since_ts > served:
                break
            assert time.monotonic() < deadline, f"lateness not detected after the outages: {view}"
            time.sleep(1)
        ready = httpx.get(server.url + "/readyz", timeout=CLIENT_TIMEOUT_S)
        assert ready.status_code == 200, ready.text
    finally:
        loader.stop.set()
        server.stop()

    log = (tmp_path / f"server-{server.port}.log").read_text()
    assert "ERROR pipemon.writer.writer: lost the database" in log and "the database is back after" in log
    assert "has not answered for" in log, "the frozen connection was not closed by the stall guard"

    # Every acknowledged event is stored, exactly once.
    engine = sa.create_engine(direct)
    with engine.connect() as c:
        bodies = read_bodies(c, "e.pipeline_id = (SELECT id FROM pipelines WHERE key = 'robust/load')")
    engine.dispose()
    ids = [msgspec.json.decode(b)["event_id"] for b in bodies]
    assert len(ids) == len(set(ids)), "an event was stored twice"
    assert loader.acked, "the loader never got an acknowledgement"
    lost = loader.acked - set(ids)
    assert not lost, f"{len(lost)} acknowledged events are missing, e.g. {sorted(lost)[:5]}"
    answers: dict[int | str, int] = {}
    for *_, status in loader.statuses:
        answers[status] = answers.get(status, 0) + 1
    print(f"\nacknowledged {len(loader.acked)} events, stored {len(ids)}; accepting again after: "
          + ", ".join(f"{k}: {v:.1f} s" for k, v in back.items()) + f"; responses: {answers}")
