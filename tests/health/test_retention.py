"""Retention: raw history older than the configured period goes; hourly rollups and open runs stay put."""
from __future__ import annotations

import sqlalchemy as sa

from pipemon.app import build
from pipemon.clock import FakeClock
from pipemon.config import loads
from pipemon.ingest import native

T0 = 1_790_000_000.0
DAY = 86400.0


def count(pm, sql):
    with pm.db.connect() as c:
        return c.execute(sa.text(sql)).scalar()


def test_old_events_runs_findings_and_hourly_rollups_go(db_url):
    clock = FakeClock(T0)
    pm = build(db_url, loads("retention: 3d"), clock=clock, deliver=False)
    for day in range(6):
        clock.set(T0 + day * DAY)
        pm.writer.ingest(native.parse(
            b'[{"pipeline": "ret/daily", "run_id": "r%d", "type": "START", "event_time": %f},'
            b' {"pipeline": "ret/daily", "run_id": "r%d", "type": "COMPLETE", "event_time": %f}]'
            % (day, T0 + day * DAY, day, T0 + day * DAY + 60), clock.now()))
    pm.writer.ingest(native.parse(b'{"pipeline": "ret/daily", "run_id": "open", "type": "START", "event_time": %f}'
                                  % T0, clock.now()))
    with pm.db.begin() as conn:
        pm.health.checkpoint(conn, clock.now())
    assert count(pm, "SELECT COUNT(*) FROM runs") == 7
    clock.set(T0 + 6 * DAY)
    with pm.db.begin() as conn:
        deleted = pm.health.retain(conn, clock.now())
    assert deleted["events"] == 6 and deleted["runs"] == 3   # days 0-2; the still-running run stays
    assert count(pm, "SELECT COUNT(*) FROM runs") == 4
    assert count(pm, "SELECT MIN(started_at) FROM runs WHERE status <> 'running'") == T0 + 3 * DAY
    assert count(pm, "SELECT COUNT(*) FROM events") == 7
    # day 3's hour began before the cutoff (T0 is not on the hour): its hourly row goes with days 0-2
    assert count(pm, "SELECT COUNT(*) FROM rollups WHERE period = 'h'") == 2
    assert count(pm, "SELECT COUNT(*) FROM rollups WHERE period = 'd'") == 6    # long windows keep their days
    pm.close()
