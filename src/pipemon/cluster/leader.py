"""Leadership by a PostgreSQL session advisory lock, held on a connection of its own.

The writer's in-memory engine state (health, detectors, alert groups, lineage suppression across
pipelines) must have one owner, so exactly one worker (and one dispatcher) is active at a time; the others
wait on the lock. When the leader dies its session ends, the server releases the lock, and a standby takes
over within one `TRY_EVERY_S`, reloading the engine state from the store. A leader that loses its lock's
connection (PostgreSQL restarted, network cut) steps down at its next `check()` before it writes again.
On SQLite there is one process: it always leads.
"""
from __future__ import annotations

import hashlib
import logging

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

log = logging.getLogger(__name__)

TRY_EVERY_S = 1.0


def lock_id(name: str) -> int:
    """A signed 64-bit advisory-lock key for a name (stable across processes)."""
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "big", signed=True)


class Leadership:
    """`acquire()` and `check()` block (call them off the event loop); both return whether we lead."""

    def __init__(self, engine: Engine, name: str) -> None:
        self.engine, self.name, self.key = engine, name, lock_id(name)
        self.postgres = engine.dialect.name == "postgresql"
        self._conn: Connection | None = None
        self.leading = False
        self.problem: str | None = None

    def acquire(self) -> bool:
        if self.leading:
            return True
        if not self.postgres:
            self.leading = True
            return True
        try:
            if self._conn is None:
                self._conn = self.engine.connect()
            got = self._conn.execute(sa.text("SELECT pg_try_advisory_lock(:k)"), {"k": self.key}).scalar()
            self._conn.commit()
            self.problem = None
        except Exception as e:  # noqa: BLE001 - the database is away: not leading, try again later
            problem = f"cannot reach the database to take the {self.name} lock: {type(e).__name__}"
            if problem != self.problem:  # said once, not every second: a standby that never leads says why
                first = (str(getattr(e, "orig", None) or e).strip().splitlines() or [""])[0][:200]
                log.warning("%s: %s", problem, first)  # libpq's own line: no SQL, no password
            self.problem = problem
            self._drop()
            return False
        self.leading = bool(got)
        if self.leading:
            log.warning("leading %s (advisory lock %d)", self.name, self.key)
        return self.leading

    def check(self) -> bool:
        """Still leading? Probes the lock's session: when it is gone, the lock is gone with it."""
        if not self.leading or not self.postgres:
            return self.leading
        try:
            assert self._conn is not None
            # the session that took the lock still answers: it still holds it (only we could unlock it)
            held = self._conn.execute(sa.text("SELECT 1")).scalar()
            self._conn.commit()
        except Exception as e:  # noqa: BLE001 - the session is gone, and the lock with it
            self.problem = f"lost the database session holding the {self.name} lock: {type(e).__name__}"
            held = 0
        if not held:
            log.error("no longer leading %s: %s", self.name, self.problem or "the lock is not held")
            self.leading = False
            self._drop()
        return self.leading

    def release(self) -> None:
        if self.leading and self.postgres and self._conn is not None:
            try:
                self._conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": self.key})
                self._conn.commit()
            except Exception:  # noqa: BLE001 - the session ends below anyway
                pass
        self.leading = False
        self._drop()

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # noqa: BLE001 - a dead connection may fail to close
                pass
