"""Schema changes of a pipeline's output datasets: columns added, dropped or retyped.

The first schema seen for a dataset is its reference; a different one is a finding (an addition
is informational, a drop or a type change a warning: score 1x / 1.5x the alarm line) and becomes
the new reference, so a change is reported once. A run that did not report a dataset says nothing
about it. INCIDENT feedback restores the previous reference, so the change keeps being reported
until it is fixed.
"""
from __future__ import annotations

from typing import Any, Final

from pipemon.engine.detect.base import ALARM_SCORE, Finding, FindingKind

Schema = tuple[tuple[str, str], ...]
_WARN: Final = 1.5


class SchemaWatch:
    __slots__ = ("prev", "ref")

    def __init__(self) -> None:
        self.ref: dict[str, Schema] = {}
        self.prev: dict[str, Schema] = {}  # the reference before the last change

    def observe(self, pipeline_id: str, run_id: str, t: float,
                schemas: dict[str, Schema]) -> list[Finding]:
        out = []
        for ds, cols in schemas.items():
            cols = tuple((str(c), str(ty)) for c, ty in cols)
            old = self.ref.get(ds)
            self.ref[ds] = cols
            if old is None or old == cols:
                continue
            self.prev[ds] = old
            out.append(_finding(pipeline_id, run_id, t, ds, old, cols))
        return out

    def restore(self, dataset: str) -> None:
        """INCIDENT: the change is a bug; keep comparing against the schema before it."""
        if dataset in self.prev:
            self.ref[dataset] = self.prev.pop(dataset)

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"ref": {k: [list(c) for c in v] for k, v in self.ref.items()}}
        if self.prev:
            d["prev"] = {k: [list(c) for c in v] for k, v in self.prev.items()}
        return d

    @staticmethod
    def from_json(d: dict[str, Any]) -> SchemaWatch:
        w = SchemaWatch()
        w.ref = {k: tuple((c, t) for c, t in v) for k, v in d["ref"].items()}
        w.prev = {k: tuple((c, t) for c, t in v) for k, v in d.get("prev", {}).items()}
        return w


def _finding(pipeline_id: str, run_id: str, t: float, ds: str, old: Schema, new: Schema) -> Finding:
    before, after = dict(old), dict(new)
    added = [c for c in after if c not in before]
    dropped = [c for c in before if c not in after]
    retyped = [f"{c} {before[c]}->{after[c]}" for c in after if c in before and before[c] != after[c]]
    parts = [f"{label}: {', '.join(cols)}" for label, cols in
             (("dropped", dropped), ("retyped", retyped), ("added", added)) if cols]
    if not parts:
        parts = ["columns reordered"]
    score = ALARM_SCORE * (_WARN if dropped or retyped else 1.0)
    return Finding(pipeline_id, FindingKind.SCHEMA_CHANGE, f"schema:{ds}", t, run_id,
                   float(len(new)), float(len(old)), None, None, score, None,
                   f"schema of {ds} changed: " + "; ".join(parts))
