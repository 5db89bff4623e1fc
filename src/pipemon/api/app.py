"""The HTTP application: front doors, query API, and (later) the dashboard."""
from __future__ import annotations

import asyncio
import gc
import logging
import signal
import threading
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.responses import JSONResponse

from pipemon import __version__
from pipemon.access import Action
from pipemon.api import admin, alerts, configapi, errors, findings, ingest, lineage, pipelines, runs
from pipemon.api import auth as api_auth
from pipemon.api.keyring import AuthMode, Keyring
from pipemon.api.metrics import Metrics, TimingMiddleware, metrics_endpoint
from pipemon.app import Pipemon
from pipemon.web import install as install_web
from pipemon.web import router as web_router

PUBLIC = {"x-pipemon-action": "public"}  # no token needed: the probes, the docs, the login page
log = logging.getLogger(__name__)


class RejectNul:
    """NUL cannot be stored in PostgreSQL text: a path or query holding %00 is a 400, not a storage error."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and (b"%00" in scope.get("query_string", b"") or
                                        b"%00" in (scope.get("raw_path") or b"") or
                                        "\x00" in scope.get("path", "")):
            response = JSONResponse({"error": "bad_request",
                                     "message": "NUL characters are not allowed in URLs"}, status_code=400)
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


class PipemonAPI(FastAPI):
    """FastAPI, with the ingest doors' POSTs handed to their fast path before any middleware runs
    (ingest.IngestFastPath: it does itself what the stack would for them)."""

    fast_ingest: ingest.IngestFastPath | None = None

    async def __call__(self, scope, receive, send) -> None:
        fast = self.fast_ingest
        handler = ingest.fast_handler(scope) if fast is not None else None
        if fast is not None and handler is not None:
            await fast(scope, receive, send, handler)
        else:
            await super().__call__(scope, receive, send)


def create_app(pm: Pipemon, freeze_gc: bool = False, auth: AuthMode | str = AuthMode.AUTO,
               loopback: bool = True) -> FastAPI:
    """freeze_gc (`pipemon serve`): once started, move everything alive (imports, the state just loaded) out
    of the garbage collector's scans, so its full collections, which stop every thread, walk only what came
    later (ARCHITECTURE.md, Large Scale). Not for tests, which build many apps in one process.
    auth, loopback: when auth is on (api/keyring.py); `loopback`: the server listens on loopback only."""
    @asynccontextmanager
    async def lifespan(_: FastAPI):
        keyring.start()
        if pm.node is not None:  # a cluster role: the node starts what its role leads (cluster/node.py)
            pm.node.relay.app = app  # relayed operator changes are answered by this app (cluster/relay.py)
            await pm.node.start()
        else:
            pm.start()
        if freeze_gc:
            gc.collect()
            gc.freeze()
        hup = _reload_on_sighup(pm)
        app.state.metrics.lag.start()  # the event-loop lag probe (pipemon_event_loop_lag_seconds)
        app.state.metrics.gc.start()   # and the garbage collector's pauses (pipemon_gc_pause_seconds)
        try:
            yield
        finally:
            app.state.metrics.gc.stop()
            await app.state.metrics.lag.stop()
            if hup:
                asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
            if pm.node is not None:
                await pm.node.stop()
            else:
                pm.stop()
            keyring.stop()

    app = PipemonAPI(title="pipemon", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Monitoring and alerting for data pipelines.")  # docs: served by web, offline
    app.state.pm = pm
    keyring = Keyring(pm.db, pm.clock, AuthMode(auth), loopback)
    app.state.keyring = keyring
    app.state.resolve_caller = keyring.resolve
    app.state.metrics = Metrics(pm)
    errors.install(app, app.state.metrics)
    install_web(app)  # the dashboard answers a missing login with the login page, not JSON
    app.include_router(ingest.router)
    app.include_router(runs.router)  # before pipelines: `/pipelines/{id}/runs` wins over `/pipelines/{id}`
    app.include_router(lineage.router)  # likewise `/pipelines/{id}/lineage`
    app.include_router(configapi.router)
    app.include_router(findings.router)
    app.include_router(alerts.router)
    app.include_router(pipelines.router)
    app.include_router(admin.router)
    app.include_router(web_router)  # the dashboard (/, /pipelines/{id} …) and /docs, /redoc, offline
    # a FastAPI route, so it is labelled by its template
    app.add_api_route("/metrics", metrics_endpoint, tags=["service"], summary="Prometheus metrics",
                      dependencies=[Depends(api_auth.require(Action.SCRAPE))],
                      openapi_extra={"x-pipemon-action": Action.SCRAPE.value})
    app.fast_ingest = ingest.IngestFastPath(app, pm, app.state.metrics)
    app.add_middleware(TimingMiddleware, metrics=app.state.metrics)
    app.add_middleware(RejectNul)

    def openapi() -> dict[str, Any]:
        """FastAPI's document, plus the native event's schema (msgspec's, referenced by /api/v1/events)."""
        if app.openapi_schema is None:
            from fastapi.openapi.utils import get_openapi

            from pipemon.ingest import native
            doc = get_openapi(title=app.title, version=app.version, description=app.description,
                              routes=app.routes)
            doc.setdefault("components", {}).setdefault("schemas", {}).update(native.schema_components())
            app.openapi_schema = doc
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    @app.get("/api/v1", tags=["service"], summary="Where the API, its docs and the dashboard are",
             openapi_extra=PUBLIC)  # `/` is the dashboard
    def root() -> dict[str, Any]:
        return {"service": "pipemon", "version": __version__, "api": "/docs", "dashboard": "/"}

    # Both probes are `async`: they run on the event loop, so a thread pool full of requests waiting for a
    # silent database cannot hold them up; they read in-memory state only.
    @app.get("/healthz", tags=["service"], summary="Liveness", openapi_extra=PUBLIC)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["service"],
             summary="Readiness: the writer and the deliverer run and the database takes writes",
             responses={503: {"description": "Not ready; `failing` names the parts"}}, openapi_extra=PUBLIC)
    async def readyz() -> JSONResponse:
        extra: dict[str, Any] = {}
        if pm.node is not None:  # a cluster role: each dependency and role part, by name
            components, failing = pm.node.readiness()
            extra = {"role": pm.node.role.value, "node": pm.node.node_id, "components": components}
        else:
            failing = readiness(pm)
        if failing:
            return JSONResponse({"status": "not ready", "failing": failing, **extra}, status_code=503,
                                headers={"Retry-After": "5"})
        return JSONResponse({"status": "ready", **extra})

    return app


def _reload_on_sighup(pm: Pipemon) -> bool:
    """`kill -HUP` re-reads the config files (pipemon serve, on the main thread's loop only). The reload
    runs on a thread of its own: it reads files and waits for the writer, which the loop must not."""
    if pm.reloader is None or not hasattr(signal, "SIGHUP") or \
            threading.current_thread() is not threading.main_thread():
        return False
    reloader = pm.reloader

    def reload() -> None:
        try:
            reloader.reload(pm)
        except Exception:  # reported, never the end of the server
            log.exception("config reload on SIGHUP failed")

    asyncio.get_running_loop().add_signal_handler(
        signal.SIGHUP, lambda: threading.Thread(target=reload, name="pipemon-reload", daemon=True).start())
    return True


READY_STALE_S = 10.0  # the writer commits a heartbeat every second; older than this: not writable


def readiness(pm: Pipemon) -> dict[str, str]:
    """What keeps this process from doing its job, by component (empty when ready). Reads in-memory state
    only, so it answers at once even while the database hangs."""
    failing: dict[str, str] = {}
    if not pm.started:
        failing["service"] = "not started"
        return failing
    w = pm.writer.health()
    if not w.alive:
        failing["writer"] = f"the writer thread has stopped: {w.died or 'not running'}"
    elif w.down_for is not None:
        failing["database"] = f"unavailable for {w.down_for:.0f} s; reconnecting ({w.last_error})"
    elif w.last_write_age is None or w.last_write_age > READY_STALE_S:
        age = "never" if w.last_write_age is None else f"{w.last_write_age:.0f} s ago"
        failing["database"] = f"not writable: the writer's last committed write was {age}"
    alive = getattr(pm.deliverer, "alive", None)
    if callable(alive) and not alive():
        failing["deliverer"] = "the deliverer has stopped: notifications are not being sent"
    return failing
