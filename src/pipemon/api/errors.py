"""Every error a client can cause becomes a clear JSON answer; nothing a client sends yields a 500."""
from __future__ import annotations

import logging
import math

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from starlette.exceptions import HTTPException

from pipemon.api.owner import Relayed
from pipemon.errors import (BadRequest, Conflict, Forbidden, IngestError, NotFound, Rejected, TooMany,
                            Unauthorized, Unavailable)

log = logging.getLogger(__name__)


def _loc(parts) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else f".{p}"
    return out.lstrip(".")


def ingest_error(e: IngestError, metrics=None) -> JSONResponse:
    if metrics is not None:
        metrics.rejected.labels(e.code).inc()
    return JSONResponse(e.body(), status_code=e.status)


def storage_error(e: SQLAlchemyError) -> JSONResponse:
    log.error("storage error: %s", e.__class__.__name__, exc_info=not isinstance(e, OperationalError))
    return JSONResponse({"error": "storage_unavailable", "message": "storage is unavailable; retry"},
                        status_code=503, headers={"Retry-After": "1"})


def unavailable(e: Unavailable) -> JSONResponse:
    """The writer could not take or finish the request: nothing of it is stored unless it is already
    (idempotency keys make the retry a duplicate). Retry-After is whole seconds, at least 1."""
    return JSONResponse({"error": "storage_unavailable", "message": str(e)}, status_code=503,
                        headers={"Retry-After": str(max(1, round(e.retry_after)))})


def rejected(e: Rejected) -> JSONResponse:
    return JSONResponse({"error": "rejected_by_storage", "message": str(e)}, status_code=422)


def denied(e: Unauthorized | Forbidden | TooMany) -> JSONResponse:
    """401 (no valid token), 403 (the role or team may not), 429 (a per-token limit)."""
    if isinstance(e, Unauthorized):
        return JSONResponse({"error": "unauthorized", "message": str(e)}, status_code=401,
                            headers={"WWW-Authenticate": "Bearer"})
    if isinstance(e, TooMany):
        return JSONResponse({"error": "too_many_requests", "message": str(e)}, status_code=429,
                            headers={"Retry-After": str(max(1, math.ceil(e.retry_after)))})
    return JSONResponse({"error": "forbidden", "message": str(e)}, status_code=403)


def install(app: FastAPI, metrics=None) -> None:
    @app.exception_handler(Relayed)
    async def _relayed(_: Request, e: Relayed) -> Response:
        return e.response  # the answer of the worker that keeps what the request changed (api/owner.py)

    @app.exception_handler(Unavailable)
    async def _unavailable(_: Request, e: Unavailable) -> JSONResponse:
        return unavailable(e)

    @app.exception_handler(Rejected)
    async def _rejected(_: Request, e: Rejected) -> JSONResponse:
        return rejected(e)

    @app.exception_handler(IngestError)
    async def _ingest(_: Request, e: IngestError) -> JSONResponse:
        return ingest_error(e, metrics)

    @app.exception_handler(RequestValidationError)
    async def _params(_: Request, e: RequestValidationError) -> JSONResponse:
        problems = [{"loc": _loc(err.get("loc", ())), "msg": err.get("msg", "invalid")} for err in e.errors()]
        return JSONResponse({"error": "invalid_request", "message": "invalid request parameters",
                             "problems": problems}, status_code=422)

    @app.exception_handler(NotFound)
    async def _nf(_: Request, e: NotFound) -> JSONResponse:
        return JSONResponse({"error": "not_found", "message": str(e)}, status_code=404)

    @app.exception_handler(Unauthorized)
    @app.exception_handler(Forbidden)
    @app.exception_handler(TooMany)
    async def _denied(_: Request, e: Unauthorized | Forbidden | TooMany) -> JSONResponse:
        return denied(e)

    @app.exception_handler(Conflict)
    async def _conflict(_: Request, e: Conflict) -> JSONResponse:
        return JSONResponse({"error": "conflict", "message": str(e)}, status_code=409)

    @app.exception_handler(BadRequest)
    async def _bad(_: Request, e: BadRequest) -> JSONResponse:
        return JSONResponse({"error": "bad_request", "message": str(e)}, status_code=400)

    @app.exception_handler(SQLAlchemyError)
    async def _db(_: Request, e: SQLAlchemyError) -> JSONResponse:
        return storage_error(e)

    @app.exception_handler(HTTPException)
    async def _http(_: Request, e: HTTPException) -> JSONResponse:
        return JSONResponse({"error": "http_error", "message": str(e.detail)}, status_code=e.status_code,
                            headers=getattr(e, "headers", None))
