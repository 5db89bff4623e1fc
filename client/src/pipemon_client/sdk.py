"""The Python SDK: report runs from your own code.

    client = pipemon_client.Client("http://pipemon:8787", token=None)   # or pipemon.Client (the same)
    with client.run("billing/nightly_invoices") as run:
        ...
        run.metric(rows=120_000, bytes=5.2e7)

    @client.monitor("billing/hourly_sync")
    def sync(): ...

A monitor that is down never breaks the pipeline it watches: each report is tried a bounded number
of times with exponential backoff, then dropped with a logged warning. No exception from pipemon
escapes, and the worst-case wait per report is bounded (attempts x timeout + backoff).

Without `url` or `token`, the client reads PIPEMON_URL and PIPEMON_TOKEN (the token is sent as
`Authorization: Bearer …`).
"""
from __future__ import annotations

import functools
import logging
import os
import random
import time
import traceback
import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from types import TracebackType
from typing import Any, Literal, TypeVar

import httpx

from pipemon_client.redact import env_secrets, scrub_output

log = logging.getLogger("pipemon.client")
DEFAULT_URL = "http://127.0.0.1:8787"
TRACE_TAIL = 4096  # characters of a failing run's traceback sent as its log
F = TypeVar("F", bound=Callable[..., Any])


def _now_iso() -> str:
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


def split_pipeline(pipeline: str) -> tuple[str, str]:
    ns, sep, name = pipeline.rpartition("/")
    if not sep or not ns or not name:
        raise ValueError(f"pipeline {pipeline!r} must be namespace/name")
    return ns, name


_split = split_pipeline  # the name the server's CLI imported before the client was its own package


def check_url(url: str) -> str:
    """`url` if it is an http(s) URL with a host; else ValueError saying what is wrong."""
    try:
        u = httpx.URL(url)
    except httpx.InvalidURL as e:
        raise ValueError(f"pipemon URL {url!r} is not a valid URL ({e})") from None
    if u.scheme not in ("http", "https") or not u.host:
        raise ValueError(f"pipemon URL {url!r} must be http:// or https:// with a host")
    return url


class Client:
    def __init__(self, url: str | None = None, token: str | None = None, *,
                 timeout: float = 2.0, attempts: int = 3, backoff: float = 0.25,
                 transport: httpx.BaseTransport | None = None) -> None:
        url = check_url(url or os.environ.get("PIPEMON_URL") or DEFAULT_URL)  # a bad URL: the caller's bug
        token = token or os.environ.get("PIPEMON_TOKEN") or None
        self.url = url.rstrip("/")
        self.token = token
        self.attempts = max(1, attempts)
        self.backoff = backoff
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=self.url, timeout=timeout, headers=headers, transport=transport)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- sending ---------------------------------------------------------------------------------
    def send(self, events: dict[str, Any] | list[dict[str, Any]]) -> bool:
        """POST native events; True once pipemon committed them. Never raises."""
        for attempt in range(self.attempts):
            try:
                r = self._http.post("/api/v1/events", json=events)
            except httpx.HTTPError as e:
                why = f"{type(e).__name__}: {e}"
            else:
                if r.status_code < 300:
                    return True
                why = f"HTTP {r.status_code}: {r.text[:300]}"
                if 400 <= r.status_code < 500 and r.status_code != 429:
                    log.warning("pipemon rejected a report (%s); not retrying", why)
                    return False
            if attempt + 1 < self.attempts:
                time.sleep(self.backoff * (2 ** attempt) * (0.5 + random.random() / 2))
        log.warning("pipemon at %s unreachable after %d attempts (%s); report dropped",
                    self.url, self.attempts, why)
        return False

    def event(self, pipeline: str, type: str, run_id: str | None = None, **fields: Any) -> bool:
        ns, name = split_pipeline(pipeline)
        ev: dict[str, Any] = {"namespace": ns, "name": name, "type": type, "event_time": _now_iso(),
                              "event_id": str(uuid.uuid4())}
        if run_id is not None:
            ev["run_id"] = run_id
        ev.update({k: v for k, v in fields.items() if v is not None})
        return self.send(ev)

    # --- runs ------------------------------------------------------------------------------------
    def run(self, pipeline: str, run_id: str | None = None, *, team: str | None = None,
            nominal_time: str | None = None) -> RunContext:
        split_pipeline(pipeline)  # a malformed id is the caller's bug: say so before the work starts
        return RunContext(self, pipeline, run_id or str(uuid.uuid4()), team, nominal_time)

    def monitor(self, pipeline: str, **kw: Any) -> Callable[[F], F]:
        def wrap(fn: F) -> F:
            @functools.wraps(fn)
            def inner(*args: Any, **kwargs: Any) -> Any:
                with self.run(pipeline, **kw):
                    return fn(*args, **kwargs)
            return inner  # type: ignore[return-value]
        return wrap


class RunContext:
    """One run: START on enter; COMPLETE, or FAIL with the exception, on exit. The exception propagates."""

    def __init__(self, client: Client, pipeline: str, run_id: str, team: str | None,
                 nominal_time: str | None):
        self.client, self.pipeline, self.run_id = client, pipeline, run_id
        self.team, self.nominal_time = team, nominal_time
        self.metrics: dict[str, float] = {}
        self.log: str | None = None

    def metric(self, **values: float) -> None:
        for k, v in values.items():
            self.metrics[k] = float(v)

    def __enter__(self) -> RunContext:
        self.client.event(self.pipeline, "START", self.run_id, team=self.team, nominal_time=self.nominal_time)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> Literal[False]:
        fields: dict[str, Any] = {"metrics": self.metrics or None, "team": self.team, "log": self.log}
        if exc_type is None:
            self.client.event(self.pipeline, "COMPLETE", self.run_id, **fields)
        else:
            secrets = [*env_secrets(os.environ), self.client.token or ""]
            trace = "".join(traceback.format_exception(exc_type, exc, tb))
            tail = scrub_output(trace, secrets)[-TRACE_TAIL:]
            message = scrub_output(str(exc), secrets) or exc_type.__name__
            self.client.event(self.pipeline, "FAIL", self.run_id,
                              error={"message": message, "type": exc_type.__name__},
                              **{**fields, "log": self.log or tail})
        return False
