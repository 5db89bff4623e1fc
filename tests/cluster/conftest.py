"""A real cluster: `pipemon serve --role …` subprocesses on the shared PostgreSQL (a schema of their own,
reached through a proxy the test can cut) and the shared NATS (a stream of their own: a unique
--bus-prefix, deleted after the test)."""
from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from tests.conftest import NATS_URL, PG_URL, LiveServer
from tests.robustness.conftest import owned_db  # noqa: F401 - the fixture, shared
from tests.robustness.proxy import FaultProxy

pytestmark = pytest.mark.slow


def _delete_stream(prefix: str) -> None:
    import nats

    async def go() -> None:
        nc = await nats.connect(NATS_URL, connect_timeout=2)
        try:
            await nc.jetstream().delete_stream(f"{prefix}_events")
        except Exception:  # noqa: BLE001 - never created
            pass
        await nc.close()
    asyncio.run(go())


@pytest.fixture
def prefix() -> Iterator[str]:
    if not (PG_URL and NATS_URL):
        pytest.skip("needs PIPEMON_TEST_POSTGRES_URL and PIPEMON_TEST_NATS_URL")
    p = "t" + uuid.uuid4().hex[:10]
    yield p
    _delete_stream(p)


@pytest.fixture
def nats_proxy() -> Iterator[FaultProxy]:
    url = httpx.URL(NATS_URL or "nats://127.0.0.1:4222")
    proxy = FaultProxy((url.host, url.port or 4222))
    yield proxy
    proxy.close()


class Cluster:
    """Starts nodes; stops them all at the end."""

    def __init__(self, db: str, tmp: Path, prefix: str, config: str | None) -> None:
        self.db, self.tmp, self.prefix, self.config = db, tmp, prefix, config
        self.nodes: list[LiveServer] = []
        self.worker_mode = "leader"  # or "partitioned": every worker active on its share of the partitions

    def start(self, role: str, bus: str | None = None, db: str | None = None) -> LiveServer:
        extra = ["--role", role, "--bus", bus or NATS_URL or "", "--bus-prefix", self.prefix]
        if role in ("worker", "all"):
            extra += ["--worker-mode", self.worker_mode]
        node = LiveServer(db or self.db, self.tmp, self.config, extra).start(timeout=30)
        node.role = role  # type: ignore[attr-defined]
        self.nodes.append(node)
        return node

    def start_with(self, role: str, extra: list[str]) -> LiveServer:
        args = ["--role", role, "--bus", NATS_URL or "", "--bus-prefix", self.prefix, *extra]
        node = LiveServer(self.db, self.tmp, self.config, args).start(timeout=30)
        self.nodes.append(node)
        return node

    def stop(self) -> None:
        for n in self.nodes:
            n.stop()


def ready(node: LiveServer) -> dict:
    try:
        return httpx.get(node.url + "/readyz", timeout=2).json()
    except (httpx.HTTPError, ValueError):
        return {}


def wait_until(cond, what: str, limit: float = 60.0, every: float = 0.25):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        got = cond()
        if got:
            return got
        time.sleep(every)
    raise AssertionError(f"timed out after {limit:.0f} s waiting for {what}")


def leader(nodes: list[LiveServer], part: str) -> LiveServer:
    """The node whose /readyz says it leads `part` (worker or dispatcher)."""
    def find():
        for n in nodes:
            if n.proc and n.proc.poll() is None and \
                    ready(n).get("components", {}).get(part, "").startswith("leading"):
                return n
        return None
    return wait_until(find, f"a leading {part}", 30)


def count(db: str, sql: str) -> int:
    eng = sa.create_engine(db)
    try:
        with eng.connect() as c:
            return int(c.execute(sa.text(sql)).scalar() or 0)
    finally:
        eng.dispose()


class Poster:
    """Posts native batches round-robin to the api nodes from one thread; a 503 (or a connection error) is
    retried, as a client does; `acked` counts the events of every 2xx."""

    def __init__(self, urls: list[str], batches: list[bytes], hold_after: int | None = None) -> None:
        self.urls, self.batches = urls, batches
        # With hold_after, the poster stops once that many events are acknowledged until `go` is set, so a
        # test can cut something at a known point with the rest still to send (however fast the machine).
        self.hold_after = hold_after
        self.holding = threading.Event()
        self.go = threading.Event()
        self.acked = 0
        self.refused = 0          # 503 answers seen
        self.retry_after: set[str] = set()
        self.statuses: dict[int, int] = {}
        self.sent_batches = 0
        self.unexpected: str | None = None  # an answer neither 200 nor 503: the poster stops there
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        with httpx.Client(timeout=15) as http:
            for i, body in enumerate(self.batches):
                if self.hold_after is not None and self.acked >= self.hold_after and not self.go.is_set():
                    self.holding.set()
                    self.go.wait()
                while True:
                    url = self.urls[(i + self.refused) % len(self.urls)]
                    try:
                        r = http.post(url + "/api/v1/events", content=body,
                                      headers={"Content-Type": "application/json"})
                    except httpx.HTTPError:
                        self.refused += 1
                        time.sleep(0.2)
                        continue
                    self.statuses[r.status_code] = self.statuses.get(r.status_code, 0) + 1
                    if r.status_code == 503:
                        self.refused += 1
                        self.retry_after.add(r.headers.get("retry-after", ""))
                        time.sleep(0.2)
                        continue
                    if r.status_code != 200:  # the test fails on it (this thread cannot raise to it)
                        self.unexpected = f"{r.status_code}: {r.text[:500]}"
                        return
                    self.acked += r.json()["accepted"] + r.json()["duplicates"]
                    self.sent_batches += 1
                    break
