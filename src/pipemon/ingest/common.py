"""Shared by the front doors: decoding, time parsing, idempotency keys, error paths."""
from __future__ import annotations

import functools
import hashlib
import re
import typing
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import msgspec

from pipemon.errors import BadJson, InvalidEvent, Problem
from pipemon.ingest import limits
from pipemon_client.redact import scrub_output

# A command's output, a log excerpt or a stack trace: its end is what says what broke, so each front door
# keeps the last 8 KB of it, credentials masked before it is stored (pipemon_client.redact.scrub_output:
# the rule the light client applies too).
OUTPUT_TAIL = 8192


def output_tail(text: str | None) -> str | None:
    if not text:
        return None
    # masked on a wider window, then cut: a cut first could leave half a secret no pattern recognises
    return scrub_output(text[-OUTPUT_TAIL - 1024:].replace("\x00", "\ufffd"))[-OUTPUT_TAIL:]

_JSON = msgspec.json.Decoder()
_AT_PATH = re.compile(r"^(?P<msg>.*?)(?: - at `(?P<loc>[^`]*)`)?$", re.DOTALL)


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
            if d.tzinfo is None:
                d = d.replace(tzinfo=UTC)
            return d.timestamp()
        except (ValueError, OverflowError):  # year 1 with a positive offset overflows
            pass
    raise InvalidEvent("invalid event",
                       [Problem(loc, f"expected an ISO 8601 time or unix seconds, got {value!r}"[:200])])


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def decode_json(body: bytes) -> Any:
    try:
        return _JSON.decode(body)
    except msgspec.DecodeError as e:
        raise bad_json(e, body) from None
    except RecursionError:
        raise InvalidEvent("invalid event", [limits.deep("$")]) from None


_BYTE = re.compile(r"\(byte (\d+)\)")
_KEY_BEFORE = re.compile(rb'"((?:[^"\\]|\\.){1,100})"\s*:\s*$')
_NON_NUMBERS = (b"NaN", b"Infinity", b"-Infinity", b"+Infinity", b"-NaN")


def bad_json(err: msgspec.DecodeError, body: bytes) -> BadJson:
    """400 for a body that is not JSON; for the usual extensions (NaN, Infinity) name the field that holds
    one, as `$..name` (somewhere in the body, that key)."""
    m = _BYTE.search(str(err))
    if m is not None:
        at = int(m.group(1))
        at -= body[at - 1:at] in (b"-", b"+")  # msgspec points past the sign
        token = next((t for t in _NON_NUMBERS if body.startswith(t, at)), None)
        if token is not None:
            key = _KEY_BEFORE.search(body[max(0, at - 200):at])
            loc = f"$..{key.group(1).decode(errors='replace')}" if key else f"byte {at}"
            msg = f"{token.decode()} is not a JSON number (byte {at}); send a finite number, or null"
            return BadJson(f"body is not valid JSON: {msg}", [Problem(loc, msg)])
    return BadJson(f"body is not valid JSON: {err}")


def problem_from(err: msgspec.ValidationError, prefix: str) -> Problem:
    """msgspec says 'Expected `str`, got `int` - at `$.job.name`'; we want loc + msg, rooted at prefix."""
    m = _AT_PATH.match(str(err))
    assert m is not None
    loc = m.group("loc") or "$"
    return Problem(prefix + loc[1:], m.group("msg"))


def split_items(body: bytes, max_items: int) -> tuple[list[msgspec.Raw], bool]:
    """A JSON object or an array of them -> ([raw item, …], was_array). Nesting deeper than the limit
    is refused before decoding; so is an array of more than `max_items` items, without building it."""
    head = body.lstrip()[:1]
    if head == b"[":
        try:
            items = _batch(body, max_items)
        except RecursionError:  # deeper than the decoder can go: far over the limit
            raise InvalidEvent("invalid event", [limits.deep("$")]) from None
        except msgspec.ValidationError:  # the only one possible: more items than the capacity
            raise InvalidEvent("batch too long", [Problem("$", f"a batch holds at most {max_items:,} events, "
                                                                f"got more")]) from None
        except msgspec.DecodeError as e:
            raise bad_json(e, body) from None
        if not items:
            raise InvalidEvent("empty batch", [Problem("$", "a batch holds at least one event")])
        if len(items) > max_items:
            raise InvalidEvent("batch too long", [Problem("$", f"a batch holds at most {max_items} events, "
                                                                f"got {len(items)}")])
        return items, True
    if head == b"{":
        deep = limits.too_deep(body, "$")
        if deep:
            raise InvalidEvent("invalid event", deep)
        return [msgspec.Raw(body)], False
    decode_json(body)  # raises BadJson for non-JSON; valid JSON of another type falls through
    raise InvalidEvent("invalid event",
                       [Problem("$", "expected a JSON object (one event) or an array of them")])


def _batch(body: bytes, max_items: int) -> list[msgspec.Raw]:
    """The items of a JSON array, unparsed. An array can hold many more items than a batch may (a 16 MB
    body of `{},` is 5.6 million, 330 MB as a list): when the commas allow more than `max_items`, the
    items are decoded into a fixed-capacity array-like struct, so the decoder stops at item max_items+1."""
    if body.count(b",") < max_items:
        return _RAW_LIST.decode(body)
    got = msgspec.structs.astuple(_capped_decoder(max_items).decode(body))
    n = got.index(msgspec.UNSET) if msgspec.UNSET in got else len(got)
    return list(got[:n])  # type: ignore[arg-type]


_RAW_LIST = msgspec.json.Decoder(list[msgspec.Raw])


@functools.lru_cache(maxsize=4)
def _capped_decoder(capacity: int) -> msgspec.json.Decoder:
    fields = [(f"i{k}", msgspec.Raw | msgspec.UnsetType, msgspec.UNSET) for k in range(capacity)]
    cls = msgspec.defstruct("Batch", fields, array_like=True,  # type: ignore[arg-type]
                            forbid_unknown_fields=True, module=__name__)
    return msgspec.json.Decoder(cls)


def checked_items(items: list[msgspec.Raw], was_array: bool) -> list[tuple[str, msgspec.Raw, list[Problem]]]:
    """(json path prefix, item, nesting problems) per item of a split body."""
    if not was_array:
        return [("$", items[0], [])]  # split_items checked the whole body
    return [(f"$[{i}]", raw, limits.too_deep(bytes(raw), f"$[{i}]")) for i, raw in enumerate(items)]


def decoded_items(items: list[msgspec.Raw], was_array: bool, decoder: msgspec.json.Decoder,
                  all_problems: Callable[[msgspec.Raw, str], list[Problem]],
                  problems: list[Problem]) -> Iterator[tuple[str, msgspec.Raw, Any]]:
    """(json path prefix, item, decoded) per item that nests within the limit and decodes; an item that
    does not adds every problem it has (`all_problems`, field by field) to `problems` instead. Bad JSON
    fails the whole body. The one loop of both JSON doors."""
    for prefix, raw, deep in checked_items(items, was_array):
        if deep:
            problems += deep
            continue
        try:
            decoded = decoder.decode(raw)
        except msgspec.ValidationError:
            problems += all_problems(raw, prefix)
            continue
        except msgspec.DecodeError as e:
            raise bad_json(e, bytes(raw)) from None
        yield prefix, raw, decoded


def struct_problems(raw: bytes, typ: type, prefix: str, *, forbid_unknown: bool = False,
                    check: Callable[[str, Any, str], list[Problem]] | None = None,
                    path: str = "") -> list[Problem]:
    """Every problem of a JSON object against a msgspec Struct type, not only the first one the decoder
    meets: field by field, into nested structs, with missing required fields. `check(path, value, loc)`
    adds the door's limits for each field that decoded (path: dotted field names, e.g. `run.runId`)."""
    try:
        obj = msgspec.json.decode(raw, type=dict[str, msgspec.Raw])
    except msgspec.ValidationError:
        return [Problem(prefix, f"expected an object, got {_kind(raw)}")]
    except msgspec.DecodeError as e:
        bad = bad_json(e, raw)
        return bad.problems or [Problem(prefix, bad.message)]
    except RecursionError:
        return [limits.deep(prefix)]
    fields = {f.encode_name: f for f in msgspec.structs.fields(typ)}
    out: list[Problem] = []
    for k, v in obj.items():
        f = fields.get(k)
        loc, sub_path = f"{prefix}.{k}", f"{path}{k}"
        if f is None:
            if forbid_unknown:
                out.append(Problem(loc, "unknown field"))
            continue
        sub = _struct_of(f.type)
        if sub is not None and bytes(v).lstrip()[:1] == b"{":
            out += struct_problems(bytes(v), sub, loc, forbid_unknown=forbid_unknown, check=check,
                                   path=sub_path + ".")
            continue
        try:
            value = msgspec.json.decode(v, type=f.type)
        except msgspec.ValidationError as e:
            out += _entry_problems(v, f.type, loc) or [problem_from(e, loc)]
            continue
        if check is not None:
            out += check(sub_path, value, loc)
    for name, f in fields.items():
        if name not in obj and f.required:
            out.append(Problem(f"{prefix}.{name}", "required field is missing"))
    return out


def _entry_problems(raw: msgspec.Raw, t: Any, loc: str) -> list[Problem]:
    """For a `dict[str, float]` field (metrics): name each bad entry by its key, not `[...]`."""
    args = [a for a in typing.get_args(t) or (t,) if typing.get_origin(a) is dict]
    if not args or bytes(raw).lstrip()[:1] != b"{":
        return []
    vt = typing.get_args(args[0])[1]
    out = []
    for k, v in msgspec.json.decode(raw, type=dict[str, msgspec.Raw]).items():
        try:
            msgspec.json.decode(v, type=vt)
        except msgspec.ValidationError as e:
            msg = f"expected a number, got {bytes(v).decode(errors='replace')[:100]}" if vt is float else None
            if "out of range" in str(e):
                msg = f"{bytes(v).decode(errors='replace')[:100]} is out of range for a number"
            out.append(problem_from(e, f"{loc}.{k[:50]}") if msg is None else Problem(f"{loc}.{k[:50]}", msg))
    return out


def _struct_of(t: Any) -> type | None:
    """The Struct type in `X`, `X | None`, `X | str | None`, else None."""
    for a in typing.get_args(t) or (t,):
        if isinstance(a, type) and issubclass(a, msgspec.Struct):
            return a
    return None


def _kind(raw: bytes) -> str:
    return {b"[": "an array", b'"': "a string", b"n": "null", b"t": "a boolean", b"f": "a boolean"}.get(
        bytes(raw).lstrip()[:1], "a number")


_ID_FIELDS = ("namespace", "name", "run_id", "team", "integration")
_TEXT_FIELDS = ("error_message", "error_type", "log")


def scrub_nul(ev, prefix: str):
    """PostgreSQL text cannot hold NUL: an identifier with one is rejected (422), free text has it replaced.
    Valid JSON can only carry NUL as the escape \\u0000, so callers skip this unless the raw body holds
    one."""
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
        problems.append(Problem(prefix, "dataset, parent, metric and column names must not contain NUL "
                                        "characters"))
    if problems:
        raise InvalidEvent("invalid event", problems)
    fixed = {f: getattr(ev, f).replace("\x00", "\ufffd") for f in _TEXT_FIELDS if getattr(ev, f)}
    return msgspec.structs.replace(ev, **fixed)
