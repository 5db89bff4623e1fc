"""`POST /api/v1/config/reload` (org admins): re-read the config files, as SIGHUP does."""
from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from pipemon.access import Action, Caller
from pipemon.api import auth
from pipemon.errors import Conflict

router = APIRouter(tags=["config"])


@router.post("/api/v1/config/reload", openapi_extra={"x-pipemon-action": Action.ORG.value},
             summary="Re-read the main config file and every team file; a team whose file is invalid keeps "
                     "its last good config while the others' changes apply",
             responses={422: {"description": "The main file is invalid: nothing changed"},
                        409: {"description": "The server was started without config files"}})
def reload_config(request: Request, who: Caller = Depends(auth.require(Action.ORG))) -> Any:
    pm = request.app.state.pm
    if pm.reloader is None:
        raise Conflict("this server was started without --config or --config-dir: there is nothing to reload")
    report = pm.reloader.reload(pm, who)  # a plain `def`: file reads and the swap run off the event loop
    return JSONResponse(report.to_json(), status_code=200 if report.applied else 422)
