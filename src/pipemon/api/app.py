"""The HTTP application: front doors, query API, and (later) the dashboard."""
from __future__ import annotations

from contextlib import asynccontextmanager
from typing import Any

import sqlalchemy as sa
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from pipemon import __version__
from pipemon.api import alerts, errors, findings, ingest, pipelines, runs
from pipemon.api.metrics import Metrics, TimingMiddleware, metrics_endpoint
from pipemon.app import Pipemon
from pipemon.web import router as web_router


class RejectNul:
    """NUL cannot be stored in PostgreSQL text: a path or query holding %00 is a 400, not a storage error."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and (b"%00" in scope.get("query_string", b"") or
                                        b"%00" in (scope.get("raw_path") or b"") or "\x00" in scope.get("path", "")):
            response = JSONResponse({"error": "bad_request", "message": "NUL characters are not allowed in URLs"},
                                    status_code=400)
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


def create_app(pm: Pipemon) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_: FastAPI):
        pm.start()
        try:
            yield
        finally:
            pm.stop()

    app = FastAPI(title="pipemon", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Monitoring and alerting for data pipelines.")  # docs: served by web, offline
    app.state.pm = pm
    app.state.metrics = Metrics(pm)
    errors.install(app, app.state.metrics)
    app.include_router(ingest.router)
    app.include_router(runs.router)        # before pipelines: `/pipelines/{id}/runs` must win over `/pipelines/{id}`
    app.include_router(findings.router)
    app.include_router(alerts.router)
    app.include_router(pipelines.router)
    app.include_router(web_router)         # the dashboard (/, /pipelines/{id} …) and /docs, /redoc, offline
    app.add_api_route("/metrics", metrics_endpoint, include_in_schema=False)  # a FastAPI route: labelled by template
    app.add_middleware(ingest.IngestFastPath, pm=pm, metrics=app.state.metrics)
    app.add_middleware(TimingMiddleware, metrics=app.state.metrics)
    app.add_middleware(RejectNul)

    def openapi() -> dict[str, Any]:
        """FastAPI's document, plus the native event's schema (msgspec's, referenced by /api/v1/events)."""
        if app.openapi_schema is None:
            from fastapi.openapi.utils import get_openapi

            from pipemon.ingest import native
            doc = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            doc.setdefault("components", {}).setdefault("schemas", {}).update(native.schema_components())
            app.openapi_schema = doc
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    @app.get("/api/v1", include_in_schema=False)  # `/` is the dashboard
    def root() -> dict[str, Any]:
        return {"service": "pipemon", "version": __version__, "api": "/docs", "dashboard": "/"}

    @app.get("/healthz", tags=["service"], summary="Liveness")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["service"], summary="Readiness: the database answers and the writer runs")
    def readyz(request: Request) -> JSONResponse:
        try:
            with pm.engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
        except sa.exc.SQLAlchemyError:
            return JSONResponse({"status": "database unavailable"}, status_code=503)
        return JSONResponse({"status": "ready"})

    return app
