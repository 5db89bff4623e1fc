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

from pipemon.store.db import end_session

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
        # the session ends, not back to the pool: a pooled session would keep the lock it may still hold
        conn, self._conn = self._conn, None
        end_session(conn)


class PartitionLocks:
    """One session advisory lock per partition (`{name}:{n}`), all on one connection of its own, so a
    worker that dies frees every partition it owned at once. `take`, `give`, `held_anywhere` and `check`
    block (call them off the event loop)."""

    def __init__(self, engine: Engine, name: str, partitions: int) -> None:
        self.engine, self.name, self.partitions = engine, name, partitions
        self.keys = {n: lock_id(f"{name}:{n}") for n in range(partitions)}
        self.owned: set[int] = set()
        self.problem: str | None = None
        self._conn: Connection | None = None

    def _connection(self) -> Connection:
        if self._conn is None:
            self._conn = self.engine.connect()
        return self._conn

    def held_anywhere(self) -> set[int]:
        """Partitions whose lock some session holds (ours included), from pg_locks: a 64-bit advisory key
        shows as classid (high 32 bits) and objid (low 32 bits), objsubid 1."""
        rows = self._run(lambda c: c.execute(sa.text(
            "SELECT classid::bigint, objid::bigint FROM pg_locks WHERE locktype = 'advisory' "
            "AND objsubid = 1 AND granted "
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"))
            .all())
        if rows is None:
            return set(range(self.partitions))  # unknown: take nothing
        held = {(int(hi) << 32) | int(lo) for hi, lo in rows}
        return {n for n, k in self.keys.items() if (k & 0xFFFFFFFFFFFFFFFF) in held}

    def take(self, wanted: list[int]) -> set[int]:
        """Try each partition's lock; returns those newly taken."""
        got: set[int] = set()
        for n in wanted:
            if n in self.owned:
                continue
            ok = self._run(lambda c, n=n: c.execute(sa.text("SELECT pg_try_advisory_lock(:k)"),
                                                   {"k": self.keys[n]}).scalar())
            if ok:
                got.add(n)
                self.owned.add(n)
            elif ok is None:
                break
        if got:
            log.warning("took partitions %s (now owning %d)", sorted(got), len(self.owned))
        return got

    def give(self, partitions: set[int]) -> None:
        for n in sorted(partitions & self.owned):
            self._run(lambda c, n=n: c.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": self.keys[n]}))
            self.owned.discard(n)
        if partitions:
            log.warning("gave back partitions %s (now owning %d)", sorted(partitions), len(self.owned))

    def check(self) -> bool:
        """The locks' session still answers (then it still holds them); when it is gone, so are they."""
        if not self.owned:
            return True
        if self._run(lambda c: c.execute(sa.text("SELECT 1")).scalar()) is None:
            log.error("lost partitions %s: %s", sorted(self.owned), self.problem)
            self.owned.clear()
            return False
        return True

    def release(self) -> None:
        if self.owned and self._conn is not None:
            self._run(lambda c: c.execute(sa.text("SELECT pg_advisory_unlock_all()")))
        self.owned.clear()
        self._drop()

    def _run(self, fn):
        """fn(conn), committed; None (and the session dropped, with every lock it held) when it fails."""
        try:
            conn = self._connection()
            result = fn(conn)
            conn.commit()
            self.problem = None
            return result
        except Exception as e:  # noqa: BLE001 - the database is away: the session and its locks are gone
            self.problem = f"cannot reach the database for the {self.name} locks: {type(e).__name__}"
            self.owned.clear()
            self._drop()
            return None

    def _drop(self) -> None:
        # the session ends, not back to the pool: a pooled session would keep the lock it may still hold
        conn, self._conn = self._conn, None
        end_session(conn)
