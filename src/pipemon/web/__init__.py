"""The web dashboard: server-rendered pages (Jinja2 templates, a little plain JavaScript, SVG charts drawn
on the server) and the API docs, every asset inside this package.

    pages.py    fleet overview, pipeline, run, alerts, delivery log (GET, plain `def`: the threadpool)
    lineage.py  the dependency graph around a pipeline or of a team
    actions.py  acknowledge, resolve, silence, expire a silence (form posts, through the writer)
    session.py  the login page and cookie, a browser's answers to 401/403, the same-origin check
    assets.py   /static/… and /docs, /redoc with their assets from static/vendor/
    queries.py  the reads the JSON API has no query for (same tables)
    render.py   the template environment and its helpers; charts.py the SVG
"""
from __future__ import annotations

from fastapi import APIRouter

from pipemon.web import actions, assets, pages, session
from pipemon.web.session import install

# In the OpenAPI document too (tag "dashboard"), each with the right it needs (`x-pipemon-action`), so the
# access-matrix test finds every page and form the way it finds the API's routes.
router = APIRouter(tags=["dashboard"])
router.include_router(assets.router)
router.include_router(session.router)
router.include_router(actions.router)
router.include_router(pages.router)

__all__ = ["install", "router"]
