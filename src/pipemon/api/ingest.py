"""The front doors over HTTP: OpenLineage, native events and pings. Each parses (pure), hands the
events to the single writer and answers 2xx only once they are committed."""
from __future__ import annotations

import asyncio
import time
from typing import Any
from urllib.parse import unquote

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse, Response

from pipemon.api.body import read_body
from sqlalchemy.exc import SQLAlchemyError

from pipemon.access import Action, Caller
from pipemon.api import auth
from pipemon.api.errors import denied, ingest_error, rejected, storage_error, unavailable
from pipemon.errors import (BodyTooLarge, Forbidden, IngestError, InvalidEvent, Problem, Rejected, TooMany,
                            Unauthorized, Unavailable)
from pipemon.ingest import native, openlineage, ping
from pipemon.ingest.limits import MAX_FUTURE_S
from pipemon.model import Event

router = APIRouter(tags=["ingest"])
INGEST = {"x-pipemon-action": Action.INGEST.value}  # the right each door needs (the access-matrix test)
_require_ingest = auth.require(Action.INGEST)


def may_ingest(request: Request) -> Caller:
    """auth.require(Action.INGEST), called by hand (the fast path has no dependencies), without the
    request.state cache the two doors never read: its miss costs an AttributeError per request."""
    resolve = getattr(request.app.state, "resolve_caller", None)
    if resolve is None:
        return _require_ingest(request)
    who = resolve(request)
    if not who.can(Action.INGEST):
        return _require_ingest(request)  # raises Forbidden, worded as for every other route
    return who

_ACCEPTED: dict[int | str, dict[str, Any]] = {
    "200": {"description": "Committed (a retried event counts as a duplicate and is stored once).",
            "content": {"application/json": {"schema": {"type": "object", "properties": {
                "accepted": {"type": "integer"}, "duplicates": {"type": "integer"}}}}}},
    "400": {"description": "Malformed JSON or compressed data"},
    "413": {"description": "Body over the configured limit"},
    "415": {"description": "Unsupported Content-Encoding"},
    "422": {"description": "Schema violations, each with its JSON path"},
    "401": {"description": "No valid token (auth on)"},
    "403": {"description": "The token may not ingest, or names a pipeline of another team"},
    "429": {"description": "The token created too many new pipelines this minute; see Retry-After"},
    "503": {"description": "Storage unavailable; retry"},
}


def _body_doc(schema: dict[str, Any]) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}},
            **INGEST}


_JSON_HEADERS = [(b"content-type", b"application/json")]


async def _commit(pm, events: list[Event], who: Caller) -> bytes:
    # The log answers 2xx only once the events are durable (committed, or every PubAck in), else 503; the
    # caller's team is checked against each pipeline's owner where owners are known (admission.py)
    result = await pm.log.append(events, who)
    return b'{"accepted":%d,"duplicates":%d}' % (result.accepted, result.duplicates)


OFF_LOOP_BODY = 64 << 10  # bodies past this are parsed in the threadpool: a 16 MB batch takes ~0.1 s of CPU


async def _parse(parse, body: bytes, now: float) -> list[Event]:
    """Parse a small body on the loop (tens of µs), a large one in the threadpool, so a big batch never
    stalls the other requests."""
    if len(body) <= OFF_LOOP_BODY:
        return parse(body, now, horizon=MAX_FUTURE_S)
    return await asyncio.to_thread(parse, body, now, horizon=MAX_FUTURE_S)


async def ingest_lineage(pm, request: Request) -> bytes:
    who = may_ingest(request)  # before the body is read: a stranger's 16 MB costs nothing
    body = await read_body(request, pm.settings.limits.max_body)
    return await _commit(pm, await _parse(openlineage.parse, body, pm.clock.now()), who)


async def ingest_events(pm, request: Request) -> bytes:
    who = may_ingest(request)
    limits = pm.settings.limits
    body = await read_body(request, limits.max_batch_body)
    if len(body) > limits.max_body and not body.lstrip().startswith(b"["):
        raise BodyTooLarge(f"an event of {len(body):,} bytes is over the limit of {limits.max_body:,} bytes")
    return await _commit(pm, await _parse(native.parse, body, pm.clock.now()), who)


_FAST = {"/api/v1/lineage": ingest_lineage, "/api/v1/events": ingest_events}


def fast_handler(scope):
    """The fast path's handler for a request, or None: POSTs to the two ingest doors (a query holding %00
    goes the long way, to RejectNul's 400)."""
    if scope["type"] != "http" or scope["method"] != "POST" or b"%00" in scope.get("query_string", b""):
        return None
    return _FAST.get(scope["path"])


class IngestFastPath:
    """POSTs to the two ingest doors go straight to their handlers, past FastAPI's and Starlette's
    middleware, routing and dependency machinery (api/app.py calls it before them): measured, the stack
    cost about a third of a single event's CPU on an api node. So it does here what that stack would do
    for these two paths: the app in the scope, the latency histogram (TimingMiddleware), the error answers
    (errors.install) and a bare 500 for anything unexpected (Starlette's ServerErrorMiddleware). The same
    handlers serve the FastAPI routes, which describe these paths in the OpenAPI document."""

    def __init__(self, app, pm, metrics=None) -> None:
        self.app, self.pm, self.metrics = app, pm, metrics
        self.routes = {getattr(r, "path", None): r
                       for r in router.routes if getattr(r, "path", None) in _FAST}
        self._observe: dict[tuple[str, int], Any] = {}  # the histogram's children, looked up once

    async def __call__(self, scope, receive, send, handler) -> None:
        t0 = time.perf_counter()
        scope["app"] = self.app  # Request.app: auth reads the keyring from app.state
        path = scope["path"]
        scope["route"] = self.routes.get(path)
        status = 500
        try:
            try:
                body = await handler(self.pm, Request(scope, receive))
            except IngestError as e:
                response = ingest_error(e, self.metrics)
            except (Unauthorized, Forbidden, TooMany) as e:
                response = denied(e)
            except Unavailable as e:
                response = unavailable(e)
            except Rejected as e:
                response = rejected(e)
            except SQLAlchemyError as e:
                response = storage_error(e)
            except Exception:
                await PlainTextResponse("Internal Server Error", status_code=500)(scope, receive, send)
                raise  # uvicorn logs it, as after ServerErrorMiddleware
            else:
                await send({"type": "http.response.start", "status": 200, "headers": _JSON_HEADERS + [
                    (b"content-length", b"%d" % len(body))]})
                await send({"type": "http.response.body", "body": body})
                status = 200
                return
            status = response.status_code
            await response(scope, receive, send)
        finally:
            if self.metrics is not None:
                self._observed(path, status).observe(time.perf_counter() - t0)

    def _observed(self, path: str, status: int):
        child = self._observe.get((path, status))
        if child is None:
            child = self._observe[(path, status)] = self.metrics.latency.labels("POST", path, str(status))
        return child


_OL_SCHEMA = {
    "description": "An OpenLineage 2.x RunEvent (JobEvent and DatasetEvent accepted too), or an array of "
                   "them. See https://openlineage.io/spec/2-0-2/OpenLineage.json",
    "type": "object",
    "required": ["eventTime", "run", "job"],
    "properties": {
        "eventTime": {"type": "string", "format": "date-time"},
        "eventType": {"type": "string", "enum": ["START", "RUNNING", "COMPLETE", "ABORT", "FAIL", "OTHER"]},
        "producer": {"type": "string"}, "schemaURL": {"type": "string"},
        "run": {"type": "object", "required": ["runId"],
                "properties": {"runId": {"type": "string"}, "facets": {"type": "object"}}},
        "job": {"type": "object", "required": ["namespace", "name"],
                "properties": {"namespace": {"type": "string"}, "name": {"type": "string"},
                               "facets": {"type": "object"}}},
        "inputs": {"type": "array", "items": {"type": "object"}},
        "outputs": {"type": "array", "items": {"type": "object"}},
    },
}


@router.post("/api/v1/lineage", responses=_ACCEPTED, openapi_extra=_body_doc(_OL_SCHEMA),
             summary="Ingest OpenLineage events (the openlineage-python HTTP transport's default path)")
async def post_lineage(request: Request) -> Response:
    return Response(await ingest_lineage(request.app.state.pm, request), media_type="application/json")


@router.post("/api/v1/events", responses=_ACCEPTED,
             summary="Ingest native events (one, or a batch of up to 10,000)",
             openapi_extra=_body_doc({"oneOf": [{"$ref": "#/components/schemas/NativeEvent"},
                                                {"type": "array", "maxItems": native.MAX_BATCH,
                                                 "items": {"$ref": "#/components/schemas/NativeEvent"}}]}))
async def post_events(request: Request) -> Response:
    return Response(await ingest_events(request.app.state.pm, request), media_type="application/json")


def _ping_parts(request: Request) -> tuple[str, str, str | None]:
    # The raw path keeps %2F inside a segment apart from the separators.
    raw = request.scope.get("raw_path") or request.url.path.encode()
    parts = [unquote(p) for p in raw.decode("latin-1").split("?")[0].split("/")[2:]]
    if len(parts) == 2:
        return parts[0], parts[1], None
    if len(parts) == 3:
        return parts[0], parts[1], parts[2]
    raise InvalidEvent("invalid ping", [Problem("path", "expected /ping/{namespace}/{name}"
                                                "[/start|/fail|/{exit_code}]")])


async def _ping(request: Request) -> Response:
    pm = request.app.state.pm
    who = may_ingest(request)  # the token may also come as ?key=, for a crontab's bare curl
    ns, name, signal = _ping_parts(request)
    body = b""
    if request.method == "POST":
        body = await read_body(request, pm.settings.limits.max_body)
    events = ping.parse(ns, name, signal, body, request.query_params.get("rid"), pm.clock.now())
    await pm.log.append(events, who)
    return Response("OK\n", media_type="text/plain")


_PING_RESPONSES: dict[int | str, dict[str, Any]] = {
    "200": {"description": "OK"}, "422": {"description": "Unknown signal"},
    "401": {"description": "No valid token (auth on): send `Authorization: Bearer TOKEN` or `?key=TOKEN`"},
    "403": {"description": "The token may not ingest, or the pipeline is another team's"}}


async def ping_success(request: Request, namespace: str, name: str) -> Response:
    return await _ping(request)


async def ping_signal(request: Request, namespace: str, name: str, signal: str) -> Response:
    return await _ping(request)


for _method in ("GET", "POST"):
    router.add_api_route("/ping/{namespace}/{name}", ping_success, methods=[_method], response_class=Response,
                         responses=_PING_RESPONSES, operation_id=f"ping_success_{_method.lower()}",
                         summary="Ping: success (healthchecks.io style)", openapi_extra=INGEST)
    router.add_api_route("/ping/{namespace}/{name}/{signal}", ping_signal, methods=[_method],
                         response_class=Response, responses=_PING_RESPONSES,
                         operation_id=f"ping_signal_{_method.lower()}", openapi_extra=INGEST,
                         summary="Ping: start, fail or an exit code 0-255")


@router.api_route("/ping/{rest:path}", include_in_schema=False, methods=["GET", "POST"], openapi_extra=INGEST)
async def ping_encoded(request: Request, rest: str) -> Response:
    return await _ping(request)  # a namespace holding an encoded slash
