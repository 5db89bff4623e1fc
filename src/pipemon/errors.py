"""pipemon's exceptions, one tree.

    PipemonError
    ├── ConfigError            the YAML config is invalid (each problem names file:line and key)
    ├── IngestError            a client sent something we cannot accept; carries the HTTP status
    │   ├── BadJson            400: the body is not JSON (or not gzip when it says so)
    │   ├── InvalidEvent       422: schema violations, each with its JSON path
    │   ├── BodyTooLarge       413
    │   └── UnsupportedMedia   415: a Content-Encoding we do not speak
    ├── BadRequest             400 from the query API (e.g. an invalid cursor)
    ├── Unauthorized           401: no valid token (auth on)
    ├── Forbidden              403: the role lacks the right, or an ingest token writes for another team
    ├── TooMany                429 + Retry-After: a per-token limit (new pipelines a minute)
    ├── NotFound               404 from the query API (also: another team's record)
    ├── Conflict               409 (e.g. a run id shared by several pipelines)
    ├── Unavailable            503 + Retry-After: the database is away or the writer is behind; retry
    │   └── Elsewhere          this node's writer does not keep it (a cluster node relays it there)
    └── Rejected               422: the database refused this one input (a constraint); retrying cannot help

Third-party errors (msgspec, SQLAlchemy, httpx) are translated where they are caught, at the edges.
"""
from __future__ import annotations

from dataclasses import dataclass


class PipemonError(Exception):
    pass


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an input: where (a JSON path or file:line) and what."""

    loc: str
    msg: str

    def __str__(self) -> str:
        return f"{self.loc}: {self.msg}" if self.loc else self.msg


class ConfigError(PipemonError):
    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("invalid configuration:\n" + "\n".join(f"  {p}" for p in problems))


class IngestError(PipemonError):
    status = 400
    code = "bad_request"

    def __init__(self, message: str, problems: list[Problem] | None = None) -> None:
        self.message = message
        self.problems = problems or []
        super().__init__(message)

    def body(self) -> dict:
        out: dict = {"error": self.code, "message": self.message}
        if self.problems:
            out["problems"] = [{"loc": p.loc, "msg": p.msg} for p in self.problems]
        return out


class BadJson(IngestError):
    status = 400
    code = "malformed_json"


class InvalidEvent(IngestError):
    status = 422
    code = "invalid_event"


class BodyTooLarge(IngestError):
    status = 413
    code = "body_too_large"


class UnsupportedMedia(IngestError):
    status = 415
    code = "unsupported_media_type"


class BadRequest(PipemonError):
    pass


class NotFound(PipemonError):
    pass


class Unauthorized(PipemonError):
    pass


class Forbidden(PipemonError):
    pass


class TooMany(PipemonError):
    def __init__(self, message: str, retry_after: float = 1.0) -> None:
        self.retry_after = retry_after
        super().__init__(message)


class Conflict(PipemonError):
    pass


class Unavailable(PipemonError):
    """The request was not carried out (nothing of it is stored) or its outcome is unknown; a retry with
    the same idempotency keys is safe."""

    def __init__(self, message: str, retry_after: float = 1.0) -> None:
        self.retry_after = retry_after
        super().__init__(message)


class Elsewhere(Unavailable):
    """This node's writer does not keep what the request changes: it does not run here (an api or dispatcher
    node, a standby worker), or another worker owns the pipeline's partition (`partition`; None: unknown
    here). A cluster node relays the request to the worker that keeps it (cluster/relay.py); else 503."""

    def __init__(self, message: str, retry_after: float = 2.0, partition: int | None = None) -> None:
        self.partition = partition
        super().__init__(message, retry_after)


class Rejected(PipemonError):
    """The database refused what this one request asked to store (a constraint or a value it cannot hold)."""
