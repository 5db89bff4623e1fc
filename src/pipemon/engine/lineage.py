"""The dependency graph between pipelines: through datasets (OpenLineage inputs and outputs) and through
the config's `depends_on`. Used to find a late pipeline's broken upstream, and a failure's blast radius."""
from __future__ import annotations

from collections import deque


class Lineage:
    def __init__(self) -> None:
        self._producers: dict[str, set[str]] = {}   # dataset -> pipelines writing it
        self._consumers: dict[str, set[str]] = {}   # dataset -> pipelines reading it
        self._inputs: dict[str, set[str]] = {}      # pipeline -> datasets it reads
        self._outputs: dict[str, set[str]] = {}     # pipeline -> datasets it writes
        self._declared_up: dict[str, set[str]] = {}
        self._declared_down: dict[str, set[str]] = {}

    def add(self, pipeline: str, dataset: str, role: str) -> None:
        if role == "in":
            self._inputs.setdefault(pipeline, set()).add(dataset)
            self._consumers.setdefault(dataset, set()).add(pipeline)
        else:
            self._outputs.setdefault(pipeline, set()).add(dataset)
            self._producers.setdefault(dataset, set()).add(pipeline)

    def declare(self, pipeline: str, upstreams: tuple[str, ...]) -> None:
        for u in upstreams:
            self._declared_up.setdefault(pipeline, set()).add(u)
            self._declared_down.setdefault(u, set()).add(pipeline)

    def declared(self) -> set[str]:
        """The pipelines with declared upstreams."""
        return set(self._declared_up)

    def undeclare(self) -> None:
        """Forget every `depends_on` edge (a config reload declares the new ones)."""
        self._declared_up = {}
        self._declared_down = {}

    # Read from API threads while the writer adds edges: every read copies a set in one C call first.
    def upstream(self, pipeline: str) -> set[str]:
        out = set(self._declared_up.get(pipeline, ()))
        for ds in list(self._inputs.get(pipeline, ())):
            out.update(list(self._producers.get(ds, ())))
        out.discard(pipeline)
        return out

    def downstream(self, pipeline: str) -> set[str]:
        out = set(self._declared_down.get(pipeline, ()))
        for ds in list(self._outputs.get(pipeline, ())):
            out.update(list(self._consumers.get(ds, ())))
        out.discard(pipeline)
        return out

    def ancestors(self, pipeline: str, max_depth: int = 20) -> dict[str, int]:
        """Every pipeline upstream, with its distance (1 = direct)."""
        return _bfs(pipeline, self.upstream, max_depth)

    def descendants(self, pipeline: str, max_depth: int = 20) -> dict[str, int]:
        return _bfs(pipeline, self.downstream, max_depth)


def _bfs(start: str, step, max_depth: int) -> dict[str, int]:
    seen: dict[str, int] = {}
    todo = deque([(start, 0)])
    while todo:
        p, d = todo.popleft()
        if d >= max_depth:
            continue
        for q in step(p):
            if q != start and q not in seen:
                seen[q] = d + 1
                todo.append((q, d + 1))
    return seen
