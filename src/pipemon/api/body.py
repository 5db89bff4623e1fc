"""Reading a request body safely: a size limit checked while streaming, and gzip (as the OpenLineage
client sends with `compression: gzip`) inflated with the same limit, so a small zip bomb stays small."""
from __future__ import annotations

import zlib

from starlette.requests import Request

from pipemon.errors import BadJson, BodyTooLarge, UnsupportedMedia


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(f"body of {int(declared):,} bytes is over the limit of {limit:,} bytes")
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(f"body is over the limit of {limit:,} bytes")
        chunks.append(chunk)
    body = b"".join(chunks)
    encoding = request.headers.get("content-encoding", "").strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding in ("gzip", "x-gzip", "deflate"):
        return _inflate(body, limit, gzip=encoding != "deflate")
    raise UnsupportedMedia(f"Content-Encoding {encoding!r} is not supported; use gzip or none")


def _inflate(body: bytes, limit: int, gzip: bool) -> bytes:
    d = zlib.decompressobj(wbits=31 if gzip else 15)
    try:
        out = d.decompress(body, limit + 1)
    except zlib.error:
        raise BadJson("body is not valid " + ("gzip" if gzip else "deflate") + " data") from None
    if len(out) > limit or d.unconsumed_tail:
        raise BodyTooLarge(f"decompressed body is over the limit of {limit:,} bytes")
    if not d.eof:
        raise BadJson("compressed body is truncated")
    return out
