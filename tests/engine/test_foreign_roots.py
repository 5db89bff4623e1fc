"""One page per root cause across writers (partitioned workers), in pure code: a root-kind alert another
writer keeps, mirrored into this writer's book (`AlertBook.mirror_foreign`), is a root to attach to like an
own one; when it is gone from the mirror (resolved by its writer), what was attached to it here resolves
and its descendants get the fresh-data hold, as after an own root's resolve."""
from __future__ import annotations

from pipemon.engine.alerts import Alert, fingerprint
from pipemon.engine.health import ConditionKind
from pipemon.engine.judge import Signal, SignalType
from pipemon.model import AlertKind, AlertState, Severity
from tests.engine.test_root_cause import T0, World


def world() -> World:
    w = World()
    w.book.lineage.declare("core/b", ["core/a"])  # core/b reads what core/a writes
    return w


def foreign_failure(pipeline: str = "core/a") -> Alert:
    return Alert(fingerprint(pipeline, AlertKind.FAILURE), pipeline, "core", AlertKind.FAILURE, {},
                 Severity.ERROR, "s", "d", T0, T0)


def late(w: World, pipeline: str, t: float) -> Alert:
    w.book.on_signal(Signal(pipeline, ConditionKind.LATE, "late:schedule", SignalType.OPENED, t, "no run"), t)
    return w.book.open[fingerprint(pipeline, AlertKind.LATE)]


def test_a_late_downstream_attaches_to_the_upstream_failure_another_writer_keeps():
    w = world()
    root = foreign_failure()
    w.book.mirror_foreign({root.fingerprint: root}, T0 + 10)
    a = late(w, "core/b", T0 + 20)
    assert (a.root_cause, a.root_pipeline) == (root.fingerprint, "core/a")
    assert a.held(T0 + 20) == "attached to the upstream failure of core/a"  # not paged


def test_without_the_mirror_the_same_late_pages_on_its_own():
    w = world()
    a = late(w, "core/b", T0 + 20)
    assert a.root_cause is None and a.held(T0 + 20) is None


def test_the_foreign_root_resolved_resolves_what_was_attached_and_holds_the_descendants():
    w = world()
    root = foreign_failure()
    w.book.mirror_foreign({root.fingerprint: root}, T0 + 10)
    a = late(w, "core/b", T0 + 20)
    w.book.mirror_foreign({}, T0 + 600)
    assert a.state is AlertState.RESOLVED and a.resolved_by == "upstream core/a recovered"
    assert a.fingerprint not in w.book.open
    until, root_pipeline, _ = w.book.holdoff["core/b"]
    assert root_pipeline == "core/a" and until > T0 + 600


def test_a_root_chain_across_writers_is_followed_to_its_end():
    w = world()
    w.book.lineage.declare("core/c", ["core/b"])
    top = foreign_failure("core/a")
    mid = Alert(fingerprint("core/b", AlertKind.LATE), "core/b", "core", AlertKind.LATE, {}, Severity.ERROR,
                "s", "d", T0, T0, root_cause=top.fingerprint, root_pipeline="core/a", root_team="core")
    w.book.mirror_foreign({top.fingerprint: top, mid.fingerprint: mid}, T0 + 10)
    assert late(w, "core/c", T0 + 20).root_cause == top.fingerprint


def test_after_a_restart_an_alert_attached_to_a_root_open_nowhere_resolves_at_the_first_mirror():
    w = world()
    a = Alert(fingerprint("core/b", AlertKind.LATE), "core/b", "core", AlertKind.LATE, {}, Severity.ERROR,
              "s", "d", T0, T0, root_cause=fingerprint("core/a", AlertKind.FAILURE), root_pipeline="core/a",
              root_team="core")
    w.book.open_alert(a.fingerprint, a)  # reloaded from the store, its root resolved meanwhile elsewhere
    w.book.mirror_foreign({}, T0 + 30)
    assert a.state is AlertState.RESOLVED and a.fingerprint not in w.book.open
