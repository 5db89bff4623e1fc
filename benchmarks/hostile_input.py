"""What hostile bodies cost the service: a 15 KB gzip array bomb (5 million `{}`), a 100,000-deep array,
and, for scale, a legitimate batch of 10,000 native events. For each: the answer, the wall time, the
peak of Python memory allocated while handling it (tracemalloc, in a separate run), and the longest the
event loop went without running another task (a 1 ms ticker beside the request). The 10,000 valid events
are for scale: they are parsed and committed, which today happens on the event loop too.

    python benchmarks/hostile_input.py
"""
from __future__ import annotations

import asyncio
import gzip
import json
import tempfile
import time
import tracemalloc

import httpx

from pipemon.api.app import create_app
from pipemon.app import build
from pipemon.config import Settings


async def measure(client: httpx.AsyncClient, path: str, body: bytes, headers: dict, trace: bool) -> tuple:
    lag = 0.0
    done = False

    async def ticker() -> None:
        nonlocal lag
        while not done:
            t = time.perf_counter()
            await asyncio.sleep(0.001)
            lag = max(lag, time.perf_counter() - t - 0.001)

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0.01)
    if trace:
        tracemalloc.start()
    t0 = time.perf_counter()
    r = await client.post(path, content=body, headers=headers)
    wall = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1] if trace else 0
    tracemalloc.stop()
    done = True
    await task
    return r.status_code, wall, peak, lag


async def main() -> None:
    pm = build(f"sqlite:///{tempfile.mkdtemp()}/bench.db", Settings())
    app = create_app(pm)
    now = time.time()
    cases = [
        ("gzip array bomb", "/api/v1/events", gzip.compress(b"[" + b"{}," * 5_000_000 + b"{}]", 9),
         {"content-encoding": "gzip"}),
        ("100,000-deep array", "/api/v1/events", b"[" * 100_000 + b"]" * 100_000, {}),
        ("10,000 valid events", "/api/v1/events", json.dumps([
            {"pipeline": f"bench/p{i % 50}", "run_id": f"r{i}", "type": "START", "event_time": now - 60,
             "metrics": {"rows": i}} for i in range(10_000)]).encode(), {}),
    ]
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            print(f"{'case':22} {'sent':>10} {'status':>6} {'wall':>8} {'peak alloc':>11} "
                  f"{'max loop stall':>15}")
            for name, path, body, headers in cases:
                await measure(client, path, body, headers, trace=False)  # warm-up: decoders built once
                status, wall, _, lag = await measure(client, path, body, headers, trace=False)
                _, _, peak, _ = await measure(client, path, body, headers, trace=True)  # tracing slows it
                print(f"{name:22} {len(body):>10,} {status:>6} {wall * 1000:>6.0f}ms {peak / 2**20:>9.1f}MB "
                      f"{lag * 1000:>13.0f}ms")
    pm.close()


if __name__ == "__main__":
    asyncio.run(main())
