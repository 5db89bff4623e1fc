"""Static files and the API docs, all from inside the package: nothing is fetched from another host.

`/docs` (Swagger UI) and `/redoc` use the copies in `static/vendor/` (see its README.txt), so they work
on a network without internet access.
"""
from __future__ import annotations

import mimetypes
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, Response

from pipemon.web.render import error_page

router = APIRouter()
PUBLIC = {"x-pipemon-action": "public"}
STATIC = Path(__file__).parent / "static"
# Only files that ship in the package are served: the set is fixed at import, so no path is ever joined
# from what a client sent.
FILES = {p.relative_to(STATIC).as_posix(): p for p in STATIC.rglob("*") if p.is_file()}
_TYPES = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml", ".txt": "text/plain"}


@router.get("/static/{path:path}", summary="The dashboard's own files", openapi_extra=PUBLIC)
def static(request: Request, path: str) -> Response:
    p = FILES.get(path)
    if p is None:
        return error_page(request, 404, f"no file {path!r}")
    media = _TYPES.get(p.suffix) or mimetypes.guess_type(p.name)[0] or "application/octet-stream"
    return FileResponse(p, media_type=media, headers={"Cache-Control": "public, max-age=3600"})


@router.get("/docs", summary="The API's documentation (Swagger UI)", openapi_extra=PUBLIC)
def docs(request: Request) -> HTMLResponse:
    app = request.app
    return get_swagger_ui_html(openapi_url=app.openapi_url, title=f"{app.title} — API",
                               swagger_js_url="/static/vendor/swagger-ui/swagger-ui-bundle.js",
                               swagger_css_url="/static/vendor/swagger-ui/swagger-ui.css",
                               swagger_favicon_url="/static/favicon.svg",
                               swagger_ui_parameters={"validatorUrl": None})


@router.get("/redoc", summary="The API's reference (ReDoc)", openapi_extra=PUBLIC)
def redoc(request: Request) -> HTMLResponse:
    app = request.app
    return get_redoc_html(openapi_url=app.openapi_url, title=f"{app.title} — API",
                          redoc_js_url="/static/vendor/redoc/redoc.standalone.js",
                          redoc_favicon_url="/static/favicon.svg", with_google_fonts=False)
