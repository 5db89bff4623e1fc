"""For the delivery tests: a local HTTP receiver whose behaviour the test switches, and the app served by a
real uvicorn in a thread with a deliverer of shorter backoff."""
from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import uvicorn

from pipemon.api.app import create_app
from pipemon.app import build
from pipemon.config import loads
from pipemon.notify import build_receivers
from pipemon.notify.delivery import Deliverer
from tests.conftest import free_port


class FlakyReceiver:
    """`ok` (records and answers 200, after `delay`), `down` (503 at once), `stall` (holds the request for
    `stall` seconds, then 503: to the sender, a timeout). Only requests answered 200 count as received."""

    def __init__(self, mode: str = "ok", stall: float = 1.5) -> None:
        self.mode = mode
        self.stall = stall
        self.delay = 0.0
        self.received: list[dict] = []      # answered 200, in order
        self.refused = 0                    # answered 503 (at once or after stalling)
        self._cond = threading.Condition()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                mode = outer.mode
                if mode == "stall":
                    time.sleep(outer.stall)
                elif mode == "ok" and outer.delay:
                    time.sleep(outer.delay)
                with outer._cond:
                    if mode == "ok":
                        outer.received.append({"path": self.path, "headers": dict(self.headers),
                                               "body": json.loads(raw), "at": time.monotonic()})
                    else:
                        outer.refused += 1
                    outer._cond.notify_all()
                status, body = (200, b"ok") if mode == "ok" else (503, b"unavailable")
                try:
                    self.send_response(status)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:  # the sender gave up waiting
                    pass

            def log_message(self, *a: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()

    def on(self, path: str) -> list[dict]:
        with self._cond:
            return [r for r in self.received if r["path"] == path]

    def wait_for(self, predicate, timeout: float = 20.0) -> bool:
        """Wait until predicate(self) holds (re-checked on every request and every 0.1 s)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate(self):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.1))
            return True

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Served:
    """build() as `pipemon serve` does, with a deliverer of shorter backoff, under a real uvicorn."""

    def __init__(self, db_url: str, cfg: str, deliver: bool = True, **deliverer: Any) -> None:
        self.pm = build(db_url, loads(cfg), deliver=False)
        if deliver:  # else notifications are decided and stay pending in the outbox
            d = Deliverer(self.pm, build_receivers(self.pm.settings.receivers),
                          **{"threshold": 3, "backoff_base": 0.2, "backoff_cap": 1.0, **deliverer})
            self.pm.deliverer = d
            self.pm.alerts.on_notifications.append(d.enqueue)
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.server = uvicorn.Server(uvicorn.Config(create_app(self.pm), host="127.0.0.1", port=port,
                                                    log_level="warning", access_log=False))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)
        self.http = httpx.Client(base_url=self.url, timeout=10)

    def run(self, pipeline: str, run_id: str, ok: bool) -> None:
        now = time.time()
        r = self.http.post("/api/v1/events", json=[
            {"pipeline": pipeline, "run_id": run_id, "type": "START", "event_time": now - 30},
            {"pipeline": pipeline, "run_id": run_id, "type": "COMPLETE" if ok else "FAIL", "event_time": now,
             **({} if ok else {"error": "boom"})}])
        assert r.status_code == 200, r.text

    def outbox(self, receiver: str) -> list[dict]:
        return self.http.get("/api/v1/notifications", params={"receiver": receiver, "limit": 1000}).json()["items"]

    def close(self) -> None:
        self.http.close()
        self.server.should_exit = True
        self.thread.join(15)
        self.pm.db.dispose()


# One webhook receiver for the pay/* pipelines, a group per pipeline, flushed at once ({url}: a receiver).
ONE_HOOK_CONFIG = """
pipelines:
  - match: "pay/*"
    team: pay
receivers:
  - name: hook
    webhook: {{url: "{url}/hook"}}
route:
  receiver: hook
  group_by: [pipeline]
  group_wait: 0s
  group_interval: 1s
  repeat_interval: 4h
"""
