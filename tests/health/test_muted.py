"""Silenced is not healthy: being muted never changes what assess() says, and a health blob stored by a
version that had the `paused` state still loads."""
from __future__ import annotations

from pipemon.engine.health import HealthState, PipelineHealth
from pipemon.model import Run, RunStatus


def failed_run(t: float) -> Run:
    return Run(pipeline="ns/p", run_id="r1", status=RunStatus.FAILED, started_at=t, ended_at=t + 60,
               start_seen=True, error_message="disk full")


def test_a_muted_failing_pipeline_is_failing():
    h = PipelineHealth(first_seen=0.0)
    h.run_finished(failed_run(100.0), backfill=False)
    before = h.assess(200.0)
    h.muted, h.muted_until = "silenced by #1 (bob: migration)", 7400.0
    assert h.assess(200.0) == before and before[0] is HealthState.FAILING
    again = PipelineHealth.from_json(h.to_json())
    assert (again.muted, again.muted_until) == ("silenced by #1 (bob: migration)", 7400.0)


def test_a_blob_from_before_loads_with_its_state_re_assessed_later():
    h = PipelineHealth(first_seen=0.0)
    h.run_finished(failed_run(100.0), backfill=False)
    old = {**h.to_json(), "state": "paused", "paused": "silenced by #1"}
    loaded = PipelineHealth.from_json(old)
    assert loaded.state is HealthState.UNKNOWN and loaded.muted is None
    assert loaded.assess(200.0)[0] is HealthState.FAILING
