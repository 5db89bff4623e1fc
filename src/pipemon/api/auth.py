"""The caller of a request, as a FastAPI dependency: `caller: Caller = Depends(auth.caller)`, and
`Depends(auth.require(Action.OPERATE))` for an endpoint that needs a right.

401 without a valid token (auth on), 403 when the token's role lacks the right. Another team's record is
a 404 (its existence is not leaked): that is the query's job, scoped by `Caller.scope()`.
"""
from __future__ import annotations

from collections.abc import Callable

from fastapi import Request

from pipemon.access import ANONYMOUS, Action, Caller
from pipemon.errors import Forbidden, Unauthorized


def caller(request: Request) -> Caller:
    """Who is calling. While auth is off every request is ANONYMOUS (org-wide admin)."""
    cached = getattr(request.state, "caller", None)
    if cached is not None:
        return cached
    resolve = getattr(request.app.state, "resolve_caller", None)
    who = ANONYMOUS if resolve is None else resolve(request)
    request.state.caller = who
    return who


def require(action: Action) -> Callable[[Request], Caller]:
    def dependency(request: Request) -> Caller:
        who = caller(request)
        if not who.can(action):
            raise Forbidden(f"the {who.role} role of token {who.name!r} may not {action.value}")
        return who
    return dependency


__all__ = ["caller", "require", "Unauthorized", "Forbidden"]
