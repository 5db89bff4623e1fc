"""Alerts, silences, the notification outbox and engine blobs in the store."""
from __future__ import annotations

from collections.abc import Iterable

import msgspec
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from pipemon.errors import NotFound
from pipemon.model import DeliveryStatus
from pipemon.store.reads import Page, decode_cursor, encode_cursor, in_scope
from pipemon.store.schema import alerts, engine_blobs, notifications, silences
from pipemon.store.writes import _sql, insert_returning_id

_enc = msgspec.json.Encoder()


def _json(obj) -> str:
    return _enc.encode(obj).decode()


# --- alerts ------------------------------------------------------------------------------------------------

_ALERT_COLS = ("fingerprint", "pipeline", "team", "kind", "severity", "state", "summary", "started_at",
               "last_seen", "resolved_at", "acked_at", "occurrences", "body")
_INSERT_ALERT = f"INSERT INTO alerts ({', '.join(_ALERT_COLS)}) VALUES ({', '.join('?' * len(_ALERT_COLS))})"
_UPDATE_ALERT = f"UPDATE alerts SET {', '.join(c + ' = ?' for c in _ALERT_COLS)} WHERE id = ?"


def _alert_values(a) -> tuple:
    """The _ALERT_COLS values of an alert, bound raw (the writer stores alerts in its transaction)."""
    return (a.fingerprint, a.pipeline, a.team, a.kind.value, a.severity.value, a.state.value, a.summary,
            a.started_at, a.last_seen, a.resolved_at, a.acked_at, a.occurrences, _json(a.to_json()))


def insert_alert(conn: Connection, a) -> int:
    aid = insert_returning_id(conn, _INSERT_ALERT, _alert_values(a))
    assert aid is not None  # no ON CONFLICT: a conflict raises
    return aid


def update_alerts(conn: Connection, items: Iterable) -> None:
    rows = [(*_alert_values(a), a.id) for a in items]
    if rows:
        conn.exec_driver_sql(_sql(conn, _UPDATE_ALERT), rows)


def load_open_alerts(conn: Connection, kinds: tuple[str, ...] | None = None) -> list[tuple[int, dict]]:
    q = sa.select(alerts.c.id, alerts.c.body).where(alerts.c.state != "resolved")
    if kinds is not None:
        q = q.where(alerts.c.kind.in_(kinds))
    rows = conn.execute(q)
    return [(r.id, msgspec.json.decode(r.body)) for r in rows]


def get_alert(conn: Connection, alert_id: int, scope: str | None = None) -> sa.Row:
    row = conn.execute(sa.select(alerts).where(alerts.c.id == alert_id,
                                               in_scope(alerts.c.team, scope))).first()
    if row is None:
        raise NotFound(f"no alert {alert_id}")
    return row


def list_alerts(conn: Connection, *, team: str | None = None, states: list[str] | None = None,
                kind: str | None = None, pipeline: str | None = None, limit: int = 100,
                cursor: str | None = None, scope: str | None = None) -> Page:
    q = sa.select(alerts).where(in_scope(alerts.c.team, scope))
    if team is not None:
        q = q.where(alerts.c.team == team)
    if states:
        q = q.where(alerts.c.state.in_(states))
    if kind is not None:
        q = q.where(alerts.c.kind == kind)
    if pipeline is not None:
        q = q.where(alerts.c.pipeline == pipeline)
    if cursor:
        t, aid = decode_cursor(cursor, 2)
        q = q.where(sa.or_(alerts.c.started_at < t, sa.and_(alerts.c.started_at == t, alerts.c.id < aid)))
    rows = list(conn.execute(q.order_by(alerts.c.started_at.desc(), alerts.c.id.desc()).limit(limit + 1)))
    nxt = encode_cursor(rows[limit - 1].started_at, rows[limit - 1].id) if len(rows) > limit else None
    return Page(rows[:limit], nxt)


# --- silences -----------------------------------------------------------------------------------------------

def insert_silence(conn: Connection, matchers: list[str], starts_at: float, ends_at: float, created_by: str,
                   comment: str, now: float, team: str | None = None) -> int:
    pk = conn.execute(silences.insert().values(matchers=_json(matchers), starts_at=starts_at, ends_at=ends_at,
                                               created_by=created_by, comment=comment, created_at=now,
                                               team=team)
                      ).inserted_primary_key
    assert pk is not None  # a single-row INSERT always reports its key
    return pk[0]


def expire_silence(conn: Connection, silence_id: int, now: float, scope: str | None = None) -> sa.Row:
    row = conn.execute(sa.select(silences).where(silences.c.id == silence_id,
                                                 in_scope(silences.c.team, scope))).first()
    if row is None:
        raise NotFound(f"no silence {silence_id}")
    if row.ends_at > now:
        conn.execute(sa.update(silences).where(silences.c.id == silence_id).values(ends_at=now))
    row = conn.execute(sa.select(silences).where(silences.c.id == silence_id)).first()
    assert row is not None  # read just above, in this transaction
    return row


def load_silences(conn: Connection, since: float | None = None, scope: str | None = None) -> list[sa.Row]:
    q = sa.select(silences).where(in_scope(silences.c.team, scope))
    if since is not None:
        q = q.where(silences.c.ends_at > since)
    return list(conn.execute(q.order_by(silences.c.id.desc())))


# --- the outbox ---------------------------------------------------------------------------------------------

_INSERT_NOTIFICATION = ("INSERT INTO notifications (key, receiver, action, group_key, teams, fingerprints, "
                        "body, status, attempts, next_attempt_at, created_at) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?) ON CONFLICT (key) DO NOTHING")


def insert_notification(conn: Connection, *, key: str, receiver: str, action: str, group_key: str,
                        teams: list[str], fingerprints: list[str], body: str, now: float) -> int | None:
    """A new pending notification; None when one with this key exists already (a replayed decision): one
    statement, the unique key deciding."""
    return insert_returning_id(conn, _INSERT_NOTIFICATION,
                               (key, receiver, action, group_key, _json(teams), _json(fingerprints), body,
                                DeliveryStatus.PENDING.value, now, now))


PENDING = DeliveryStatus.PENDING
_CLAIMED = (notifications.c.id, notifications.c.body, notifications.c.attempts,
            notifications.c.next_attempt_at, notifications.c.created_at)


def _claim_statement(ordered: bool) -> sa.Update:
    n = notifications
    now = sa.bindparam("now", type_=sa.Float)
    cond = [n.c.status == PENDING]
    if ordered:
        earlier = n.alias("earlier")
        cond += [n.c.next_attempt_at <= now, sa.or_(n.c.claimed_until.is_(None), n.c.claimed_until < now),
                 ~sa.exists().where(earlier.c.status == PENDING, earlier.c.receiver == n.c.receiver,
                                    earlier.c.group_key == n.c.group_key, earlier.c.id < n.c.id)]
    else:
        cond.append(sa.or_(n.c.claimed_by.is_(None), n.c.claimed_by != sa.bindparam("me")))
    ids = (sa.select(n.c.id).where(*cond).order_by(n.c.id).limit(sa.bindparam("limit", type_=sa.Integer))
           .with_for_update(skip_locked=True))
    return (sa.update(n).where(n.c.id.in_(ids.scalar_subquery()))
            .values(claimed_by=sa.bindparam("me"), claimed_until=sa.bindparam("until", type_=sa.Float))
            .returning(*_CLAIMED))


# built once: building and keying this statement costs ~2 ms of CPU, more than the claim's round trip
_CLAIM = {ordered: _claim_statement(ordered) for ordered in (True, False)}


def claim(conn: Connection, me: str, now: float, until: float, *, limit: int, ordered: bool) -> list[sa.Row]:
    """Claim pending rows for dispatcher `me` until `until` (its lease); the claimed rows (id, body, attempts,
    next attempt, creation time), oldest first.

    ordered (several dispatchers share the outbox): only due rows whose lease is free or expired, and of
    each (receiver, group) only the earliest pending row, so that no dispatcher sends a group's next
    notification before the previous one is recorded (order per group across dispatchers); `FOR UPDATE
    SKIP LOCKED` on PostgreSQL makes concurrent claims skip each other's rows instead of waiting.
    Not ordered (the one dispatcher of the store, embedded): every pending row not claimed by `me` yet, due
    or not, so the deliverer holds all of them and orders them itself (rules.pick)."""
    rows = conn.execute(_CLAIM[ordered], {"me": me, "now": now, "until": until, "limit": limit}).all()
    return sorted(rows, key=lambda r: r.id)


def renew_claims(conn: Connection, me: str, until: float) -> set[int]:
    """Extend the lease of every pending row `me` holds; the ids still ours (a row whose lease expired and
    that another dispatcher claimed is not)."""
    n = notifications
    return set(conn.execute(sa.update(n).where(n.c.claimed_by == me, n.c.status == PENDING)
                            .values(claimed_until=until).returning(n.c.id)).scalars())


def release_claims(conn: Connection, me: str | None = None) -> int:
    """Give back the pending rows `me` holds (a dispatcher stopping), or every claim (None: the one process
    of an embedded store starting: any claim is a dead process's)."""
    n = notifications
    held = n.c.claimed_by.is_not(None) if me is None else n.c.claimed_by == me
    return conn.execute(sa.update(n).where(held, n.c.status == PENDING)
                        .values(claimed_by=None, claimed_until=None)).rowcount


def mark_sent(conn: Connection, notification_id: int, attempts: int, now: float) -> None:
    conn.execute(sa.update(notifications).where(notifications.c.id == notification_id).values(
        status=DeliveryStatus.SENT, attempts=attempts, sent_at=now, last_error=None, claimed_by=None,
        claimed_until=None))


def mark_failed(conn: Connection, notification_id: int, attempts: int, status: DeliveryStatus, error: str,
                next_attempt_at: float) -> None:
    """A failed attempt (status pending: to be retried at next_attempt_at, still claimed by the dispatcher
    that holds it) or an end without delivery (failed, dead, skipped). Only a pending row changes: the
    deliverer records results again after the store was unavailable, and a late record must never undo a
    later one (sent stays sent)."""
    values: dict = {"status": status, "attempts": attempts, "last_error": error[:2000],
                    "next_attempt_at": next_attempt_at}
    if status is not DeliveryStatus.PENDING:
        values.update(claimed_by=None, claimed_until=None)
    conn.execute(sa.update(notifications).where(notifications.c.id == notification_id,
                                                notifications.c.status == PENDING).values(**values))


def carries_team(scope: str | None) -> sa.ColumnElement[bool]:
    """A notification is a team's when its JSON list of teams holds the team as a whole element: `["t"` or
    `,"t"` (inside a JSON string a quote is always escaped, so neither can match within another name)."""
    if scope is None:
        return sa.true()
    enc = _json(scope)
    return sa.or_(notifications.c.teams.contains("[" + enc, autoescape=True),
                  notifications.c.teams.contains("," + enc, autoescape=True))


def list_notifications(conn: Connection, *, receiver: str | None = None,
                       status: DeliveryStatus | None = None,
                       fingerprint: str | None = None, limit: int = 100, cursor: str | None = None,
                       scope: str | None = None) -> Page:
    q = sa.select(notifications).where(carries_team(scope))
    if receiver is not None:
        q = q.where(notifications.c.receiver == receiver)
    if status is not None:
        q = q.where(notifications.c.status == status)
    if fingerprint is not None:
        q = q.where(notifications.c.fingerprints.contains(f'"{fingerprint}"', autoescape=True))
    if cursor:
        (nid,) = decode_cursor(cursor, 1)
        q = q.where(notifications.c.id < nid)
    rows = list(conn.execute(q.order_by(notifications.c.id.desc()).limit(limit + 1)))
    nxt = encode_cursor(rows[limit - 1].id) if len(rows) > limit else None
    return Page(rows[:limit], nxt)


def notification_stats(conn: Connection, since: float, scope: str | None = None) -> list[sa.Row]:
    """For the noise report: every notification since a time (receiver, action, teams, created_at)."""
    return list(conn.execute(sa.select(notifications.c.receiver, notifications.c.action,
                                       notifications.c.teams, notifications.c.fingerprints,
                                       notifications.c.created_at, notifications.c.status)
                             .where(notifications.c.created_at >= since, carries_team(scope))))


def alerts_since(conn: Connection, since: float, scope: str | None = None) -> list[sa.Row]:
    return list(conn.execute(sa.select(alerts.c.pipeline, alerts.c.team, alerts.c.kind, alerts.c.started_at,
                                       alerts.c.acked_at, alerts.c.resolved_at, alerts.c.state)
                             .where(alerts.c.started_at >= since, in_scope(alerts.c.team, scope))))


# --- blobs --------------------------------------------------------------------------------------------------

def get_blob(conn: Connection, name: str) -> dict | None:
    row = conn.execute(sa.select(engine_blobs.c.body).where(engine_blobs.c.name == name)).first()
    return msgspec.json.decode(row.body) if row else None


_PUT_BLOB = ("INSERT INTO engine_blobs (name, body, updated_at) VALUES (?, ?, ?) ON CONFLICT (name) "
             "DO UPDATE SET body = excluded.body, updated_at = excluded.updated_at")


def put_blob(conn: Connection, name: str, body: dict, now: float) -> None:
    """One upsert, bound raw: the dispatcher saves its state on every change of groups and timers."""
    conn.exec_driver_sql(_sql(conn, _PUT_BLOB), (name, _json(body), now))
