"""Shared by the front doors: decoding, time parsing, idempotency keys, error paths."""
from __future__ import annotations

import hashlib
import re
from datetime import datetime, timezone
from typing import Any

import msgspec

from pipemon.errors import BadJson, InvalidEvent, Problem

_JSON = msgspec.json.Decoder()
_AT_PATH = re.compile(r"^(?P<msg>.*?)(?: - at `(?P<loc>[^`]*)`)?$", re.S)


def event_key(t: float | None, *parts: str) -> str:
    """A stable idempotency key: 32 hex characters, the event time's seconds then a hash of the parts
    that identify the event. The time prefix makes inserts into the unique index mostly appends (events
    arrive roughly in time order) instead of one random B-tree page per event."""
    prefix = f"{int(t) & 0xFFFFFFFF:08x}" if t is not None else "00000000"
    return prefix + hashlib.blake2b("\x1f".join(parts).encode(), digest_size=12).hexdigest()


def parse_time(value: Any, loc: str) -> float:
    """ISO 8601 (a zone or Z; none means UTC) or unix seconds -> unix seconds."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            d = datetime.fromisoformat(value)
        except ValueError:
            pass
        else:
            if d.tzinfo is None:
                d = d.replace(tzinfo=timezone.utc)
            return d.timestamp()
    raise InvalidEvent("invalid event", [Problem(loc, f"expected an ISO 8601 time or unix seconds, got {value!r}"[:200])])


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, timezone.utc).isoformat().replace("+00:00", "Z")


def decode_json(body: bytes) -> Any:
    try:
        return _JSON.decode(body)
    except msgspec.DecodeError as e:
        raise BadJson(f"body is not valid JSON: {e}") from None


def problem_from(err: msgspec.ValidationError, prefix: str) -> Problem:
    """msgspec says 'Expected `str`, got `int` - at `$.job.name`'; we want loc + msg, rooted at prefix."""
    m = _AT_PATH.match(str(err))
    assert m is not None
    loc = m.group("loc") or "$"
    return Problem(prefix + loc[1:], m.group("msg"))


def split_items(body: bytes, max_items: int) -> tuple[list[msgspec.Raw], bool]:
    """A JSON object or an array of them -> ([raw item, …], was_array)."""
    head = body.lstrip()[:1]
    if head == b"[":
        try:
            items = msgspec.json.decode(body, type=list[msgspec.Raw])
        except msgspec.ValidationError:
            raise BadJson("body is not valid JSON") from None
        except msgspec.DecodeError as e:
            raise BadJson(f"body is not valid JSON: {e}") from None
        if not items:
            raise InvalidEvent("empty batch", [Problem("$", "a batch holds at least one event")])
        if len(items) > max_items:
            raise InvalidEvent("batch too long", [Problem("$", f"a batch holds at most {max_items} events, got {len(items)}")])
        return items, True
    if head == b"{":
        return [msgspec.Raw(body)], False
    decode_json(body)  # raises BadJson for non-JSON; valid JSON of another type falls through
    raise InvalidEvent("invalid event", [Problem("$", "expected a JSON object (one event) or an array of them")])


_ID_FIELDS = ("namespace", "name", "run_id", "team", "integration")
_TEXT_FIELDS = ("error_message", "error_type", "log")


def scrub_nul(ev, prefix: str):
    """PostgreSQL text cannot hold NUL: an identifier with one is rejected (422), free text has it replaced.
    Valid JSON can only carry NUL as the escape \\u0000, so callers skip this unless the raw body holds one."""
    import msgspec

    problems = [Problem(f"{prefix}.{f}", "must not contain NUL characters") for f in _ID_FIELDS
                if "\x00" in (getattr(ev, f) or "")]
    ids = [*ev.inputs, *ev.outputs, *(ev.metrics or {})]
    for ref in (ev.parent, ev.root):
        if ref is not None:
            ids += [ref.namespace, ref.name, ref.run_id]
    for ds, cols in (ev.schemas or {}).items():
        ids += [ds, *(c for col in cols for c in col)]
    if any("\x00" in s for s in ids):
        problems.append(Problem(prefix, "dataset, parent, metric and column names must not contain NUL characters"))
    if problems:
        raise InvalidEvent("invalid event", problems)
    fixed = {f: getattr(ev, f).replace("\x00", "\ufffd") for f in _TEXT_FIELDS if getattr(ev, f)}
    return msgspec.structs.replace(ev, **fixed)
