"""Reading a request body safely: a size limit checked while streaming, and gzip (as the OpenLineage
client sends with `compression: gzip`) inflated as the body arrives under the same limit on the
*decoded* size, so a small zip bomb (15 KB of gzip holding 16 MB of `[{},{},…]`) stops at the limit
and never sits in memory whole. Inflating runs in slices of at most `_SLICE` bytes with a yield to the
event loop between them: a bomb costs other requests a few milliseconds at a time, not one long stall."""
from __future__ import annotations

import asyncio
import zlib

from starlette.requests import Request

from pipemon.errors import BadJson, BodyTooLarge, UnsupportedMedia

_SLICE = 1 << 20  # decoded bytes per step (~1-2 ms of zlib)


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(f"body of {int(declared):,} bytes is over the limit of {limit:,} bytes")
    encoding = request.headers.get("content-encoding", "").strip().lower()
    if encoding in ("gzip", "x-gzip", "deflate"):
        inflater = Inflater(limit, gzip=encoding != "deflate")
        async for chunk in request.stream():
            await inflater.feed(chunk)
        return inflater.finish()
    if encoding not in ("", "identity"):
        raise UnsupportedMedia(f"Content-Encoding {encoding!r} is not supported; use gzip or none")
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(f"body is over the limit of {limit:,} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


class Inflater:
    """gzip or deflate, fed as it arrives; over `limit` bytes decoded (or compressed) is a 413 at once."""

    def __init__(self, limit: int, gzip: bool) -> None:
        self.limit, self.gzip = limit, gzip
        self._z = zlib.decompressobj(wbits=31 if gzip else 15)
        self._out: list[bytes] = []
        self._size = 0
        self._compressed = 0

    async def feed(self, chunk: bytes) -> None:
        self._compressed += len(chunk)
        if self._compressed > self.limit:
            raise BodyTooLarge(f"body is over the limit of {self.limit:,} bytes")
        data = chunk
        while data:
            self._take(data)
            data = self._z.unconsumed_tail
            if data:
                await asyncio.sleep(0)  # let other requests run between slices

    def _take(self, data: bytes) -> None:
        if self._z.eof:
            return  # after the end of the stream: ignored, as before
        try:
            out = self._z.decompress(data, min(_SLICE, self.limit - self._size + 1))
        except zlib.error:
            raise BadJson(f"body is not valid {self._name()} data") from None
        self._size += len(out)
        if self._size > self.limit:
            raise BodyTooLarge(f"decompressed body is over the limit of {self.limit:,} bytes")
        self._out.append(out)

    def finish(self) -> bytes:
        if not self._z.eof:
            raise BadJson(f"compressed body is truncated or not {self._name()} data")
        return b"".join(self._out)

    def _name(self) -> str:
        return "gzip" if self.gzip else "deflate"
