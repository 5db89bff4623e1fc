"""A local HTTP receiver standing in for Slack, PagerDuty and webhooks: it records what it got, and can be
told to fail (down, 500s) to test retries."""
from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Receiver:
    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.status = 200
        self.body = b"ok"
        self.delay = 0.0
        self.failing: set[str] = set()  # paths that answer 503 while the rest work
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                n = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(n)
                with outer._cond:
                    status = 503 if self.path in outer.failing else outer.status
                    if status < 300:
                        try:
                            body = json.loads(raw)
                        except ValueError:
                            body = raw.decode(errors="replace")
                        outer.requests.append({"path": self.path, "headers": dict(self.headers), "body": body,
                                               "at": time.perf_counter()})
                        outer._cond.notify_all()
                if outer.delay:
                    time.sleep(outer.delay)
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                self.wfile.write(outer.body if status < 300 else b"unavailable")

            def log_message(self, *a):  # quiet
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def actions(self, path: str) -> list[str]:
        """The pipemon action of each webhook notification received on a path."""
        return [r["body"]["pipemon"]["action"] for r in self.on(path)]

    def on(self, path: str) -> list[dict]:
        with self._lock:
            return [r for r in self.requests if r["path"] == path]

    def wait(self, path: str, n: int, timeout: float = 10.0) -> list[dict]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while len([r for r in self.requests if r["path"] == path]) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            return [r for r in self.requests if r["path"] == path]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
