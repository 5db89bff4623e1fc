"""Who is calling: the tokens table mirrored in memory, and the request → Caller resolution.

The whole tokens table is mirrored by a thread of its own, which checks every REFRESH_S seconds whether
it changed (one aggregate query) and rereads it if so; resolving a request costs a hash and a dict lookup,
never a query (the ingest doors answer in tens of µs), and a token
created, revoked or expired elsewhere (`pipemon token … --db`, another replica) is honoured within
REFRESH_S. Changes made through this process's admin API reload it at once.

When auth is on (`pipemon serve --auth`):
  on    always;
  off   never: every request is the anonymous org admin (refused on a non-loopback address);
  auto  (default) off only while listening on loopback and no token was ever created — the laptop and
        demo case; the first token, made by any process, switches a running server on (a revoked or
        expired token still counts: revoking the last token must not open the server).
"""
from __future__ import annotations

import enum
import ipaddress
import logging
import threading

from fastapi import Request
from sqlalchemy.engine import Engine

from pipemon.access import ANONYMOUS, Caller
from pipemon.clock import Clock
from pipemon.errors import Unauthorized
from pipemon.store import tokens as store

log = logging.getLogger(__name__)

REFRESH_S = 2.0
COOKIE = "pipemon_token"  # set (HttpOnly) by the dashboard's login; holds the token itself


class AuthMode(enum.StrEnum):
    ON = "on"
    OFF = "off"
    AUTO = "auto"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name other than localhost: it may resolve to anything
        return False


class Keyring:
    def __init__(self, engine: Engine, clock: Clock, mode: AuthMode = AuthMode.AUTO, loopback: bool = True,
                 refresh_s: float = REFRESH_S) -> None:
        self.engine, self.clock, self.mode, self.loopback = engine, clock, AuthMode(mode), loopback
        self.refresh_s = refresh_s
        self._by_hash: dict[str, store.Token] = {}
        self._loaded = False
        self._any = False  # a token row exists (revoked and expired included)
        self._seen: tuple = ()  # the table's fingerprint when last read
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing = False

    @property
    def auth_on(self) -> bool:
        if self.mode is AuthMode.ON:
            return True
        if self.mode is AuthMode.OFF:
            return False
        # auto; before the first successful read nobody knows whether tokens exist: closed
        return not self.loopback or self._any or not self._loaded

    def load(self) -> None:
        """Read the tokens table when it changed (one aggregate query when not); on failure keep what was
        known."""
        try:
            with self.engine.connect() as conn:
                seen = store.fingerprint(conn)
                if self._loaded and seen == self._seen:
                    return
                rows = store.load_all(conn)
                self._seen = seen
        except Exception as e:  # the database is away: keep serving with the last known tokens
            if not self._failing:
                log.warning("could not read the tokens (%s); keeping the last known ones", type(e).__name__)
            self._failing = True
            return
        if self._failing:
            log.warning("reading the tokens works again")
        self._failing = False
        self._by_hash = {t.hash: t for t in rows}
        became = rows and self._loaded and not self._any and self.mode is AuthMode.AUTO and self.loopback
        self._any = bool(rows)
        self._loaded = True
        if became:
            log.warning("auth: on (the first token was created)")

    def start(self) -> None:
        self.load()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="pipemon-keyring", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self.refresh_s):
            self.load()

    def resolve(self, request: Request) -> Caller:
        """The Caller of a request, or Unauthorized (401). Never a query: see the module docstring."""
        if not self._loaded:  # an app served without its lifespan (the thread loads it otherwise)
            self.load()
        if not self.auth_on:
            return ANONYMOUS
        secret = presented(request)
        if not secret:
            raise Unauthorized("a token is required: send `Authorization: Bearer TOKEN`")
        tok = self._by_hash.get(store.digest(secret))
        if tok is None:
            raise Unauthorized("the token is not valid")
        state = tok.state(self.clock.now())
        if state != "active":
            raise Unauthorized(f"the token {tok.name!r} is {state}")
        return Caller(tok.name, tok.role, tok.team, tok.id,
                      address=request.client.host if request.client else None)


def presented(request: Request) -> str | None:
    """The token a request carries: `Authorization: Bearer`, else `?key=` on the ping doors (a crontab's
    bare curl), else the dashboard's cookie."""
    header = request.headers.get("authorization")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise Unauthorized("the Authorization header must be `Bearer TOKEN`")
        return value.strip()
    if request.url.path.startswith("/ping/"):
        key = request.query_params.get("key")
        if key:
            return key
    return request.cookies.get(COOKIE)
