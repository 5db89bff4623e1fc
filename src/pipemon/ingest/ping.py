"""The ping front door, healthchecks.io style, for cron scripts:

    GET|POST /ping/{namespace}/{name}          success
    GET|POST /ping/{namespace}/{name}/start    a run started
    GET|POST /ping/{namespace}/{name}/fail     failure
    GET|POST /ping/{namespace}/{name}/{code}   exit code 0-255; non-zero is a failure

`?rid=…` names the run (so overlapping runs stay apart); without it a success or failure closes the
pipeline's latest open run, or stands for an instant run when none is open. A POST body (the first
10 KB) becomes the run's log excerpt.
"""
from __future__ import annotations

import uuid

from pipemon.errors import InvalidEvent, Problem
from pipemon.ingest import limits
from pipemon.ingest.common import OUTPUT_TAIL, event_key, output_tail
from pipemon.model import Event, EventType, Source

_LOCS = {"namespace": "namespace", "name": "name", "run_id": "rid"}


def parse(namespace: str, name: str, signal: str | None, body: bytes, run_id: str | None,
          now: float) -> list[Event]:
    code: int | None = None
    if signal is None or signal == "":
        etype = EventType.COMPLETE
    elif signal == "start":
        etype = EventType.START
    elif signal == "fail":
        etype = EventType.FAIL
    elif signal.isascii() and signal.isdigit() and int(signal) <= 255:
        code = int(signal)
        etype = EventType.COMPLETE if code == 0 else EventType.FAIL
    else:
        raise InvalidEvent("invalid ping", [Problem("path", f"unknown ping signal {signal!r}; expected "
                                                            "start, fail or an exit code 0-255")])
    problems = [Problem(loc, "must not be empty" if not v else "must not contain NUL characters")
                for loc, v in (("namespace", namespace), ("name", name), ("rid", run_id))
                if v is not None and ((not v and loc != "rid") or "\x00" in v)]
    problems += limits.event_problems(Event(key="", source=Source.PING, namespace=namespace, name=name,
                                            run_id=run_id or "", type=etype, time=now), _LOCS, now)
    if problems:
        raise InvalidEvent("invalid ping", problems)
    if run_id is None and etype is EventType.START:
        run_id = str(uuid.uuid4())
    # the body is the job's output: its tail says what broke (a cut may split a character: replaced)
    log = output_tail(body[-4 * OUTPUT_TAIL:].decode("utf-8", errors="replace")) if body else None
    return [Event(
        key=event_key(now, uuid.uuid4().hex), source=Source.PING, namespace=namespace, name=name,
        run_id=run_id or "", type=etype,
        time=now, error_message=(f"exit code {code}" if code else ("failure reported by ping" if
                                                                   etype is EventType.FAIL else None)),
        error_type="ExitCode" if code else None, log=log,
    )]

