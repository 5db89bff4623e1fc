"""A reload after a rolled-back batch (what a worker does after an abandoned group, and what broke the first
takeover test: every reload failed on the rollups' foreign key, forever)."""
from __future__ import annotations

import pytest
import sqlalchemy as sa

from pipemon.ingest import native
from tests.conftest import T0


class _Boom(Exception):
    pass


def test_reload_after_a_rolled_back_batch_that_created_a_pipeline(pm, clock):
    body = (b'[{"pipeline": "ns/new", "run_id": "r1", "type": "START", "event_time": %f},'
            b' {"pipeline": "ns/new", "run_id": "r1", "type": "COMPLETE", "event_time": %f}]' % (T0 - 60, T0))
    with pytest.raises(_Boom):
        with pm.writer.one_transaction():
            pm.writer.ingest(native.parse(body, clock.now()))
            raise _Boom  # the batch is rolled back: ns/new's row is gone, its rollup is still in memory
    pm.writer._reset()  # reload from the store, as after any failed batch (it raised before the fix)
    with pm.db.begin() as conn:
        pm.health.checkpoint(conn, clock.now())  # writes the rollups: no foreign-key violation
        assert conn.execute(sa.text("SELECT count(*) FROM pipelines WHERE key = 'ns/new'")).scalar() == 0
    assert pm.writer.ingest(native.parse(body, clock.now())).accepted == 2  # and the retry is stored
    with pm.db.begin() as conn:
        pm.health.checkpoint(conn, clock.now())
        assert conn.execute(sa.text("SELECT count(*) FROM rollups")).scalar() >= 1
