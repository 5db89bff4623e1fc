"""Who is looking at the dashboard: the login page, the `pipemon_token` cookie, and the form-post check.

The dashboard knows callers exactly as the API does (`api.auth.caller`: `app.state.resolve_caller` reads a
Bearer header or this cookie); this module only adds what a browser needs. While auth is off every page
is the anonymous org admin's and `/login` just leads home.

- A page asked for without a valid token: a browser's navigation is sent to `/login?next=…`; anything
  else (a script's fetch, curl) gets a 401 page. A role without the right: a 403 page.
- `POST /login` checks the pasted token before setting the cookie: HttpOnly (no script reads it),
  SameSite=Strict (no other site's page sends it), Secure when the request came over https.
- Cross-site request forgery: every state-changing form post must come from this origin (its `Origin`
  header, else its `Referer`, matches `Host`); with SameSite=Strict cookies that is two locks, and no
  per-form token to keep in step with the cached pages.
"""
from __future__ import annotations

from collections.abc import Callable
from urllib.parse import parse_qs, quote, urlsplit

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import RedirectResponse, Response

from pipemon.access import Action, Caller
from pipemon.api import auth
from pipemon.errors import BadRequest, Forbidden, Unauthorized
from pipemon.web.render import error_page, page

COOKIE = "pipemon_token"
MAX_FORM = 16 * 1024
PUBLIC = {"x-pipemon-action": "public"}
router = APIRouter(tags=["dashboard"])


class LoginRequired(Unauthorized):
    """A dashboard page without a valid token."""


class PageForbidden(Forbidden):
    """A dashboard page or form the token's role has no right to."""


def auth_on(request: Request) -> bool:
    state = request.app.state
    resolve = getattr(state, "resolve_caller", None)
    if resolve is None:
        return False
    keyring = getattr(state, "keyring", None)
    if keyring is not None and resolve == keyring.resolve:
        return keyring.auth_on  # --auth auto: off on loopback until the first token exists
    return True  # another resolver (a test's token table): tokens are required


def viewer(action: Action) -> Callable[[Request], Caller]:
    """The dashboard's `auth.require`: the same caller, with a browser's answers to a refusal."""
    def dependency(request: Request) -> Caller:
        try:
            who = auth.caller(request)
        except Unauthorized as e:
            raise LoginRequired(str(e)) from None
        if not who.can(action):
            raise PageForbidden(f"the {who.role} role of token {who.name!r} may not {action.value} here")
        return who
    return dependency


def _navigation(request: Request) -> bool:
    mode = request.headers.get("sec-fetch-mode")
    if mode is not None:
        return mode == "navigate"
    return "text/html" in request.headers.get("accept", "")


def install(app: FastAPI) -> None:
    @app.exception_handler(LoginRequired)
    async def _login(request: Request, e: LoginRequired) -> Response:
        if _navigation(request):
            here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse("/login?next=" + quote(here, safe=""), status_code=303)
        response = error_page(request, 401, f"{e}; log in at /login")
        response.headers["WWW-Authenticate"] = "Bearer"
        return response

    @app.exception_handler(PageForbidden)
    async def _forbidden(request: Request, e: PageForbidden) -> Response:
        return error_page(request, 403, str(e))


def same_origin(request: Request) -> bool:
    """A form post from a page of this server: Origin (or, without one, Referer) names this host. With
    neither, a browser still says where the request came from in Sec-Fetch-Site; a client that sends none
    of these (curl) is not a browser another site can drive."""
    host = request.headers.get("host")
    for header in ("origin", "referer"):
        value = request.headers.get(header)
        if value and value != "null":
            return urlsplit(value).netloc == host
    return request.headers.get("sec-fetch-site", "same-origin") in ("same-origin", "none")


async def form(request: Request) -> dict[str, str]:
    body = await request.body()
    if len(body) > MAX_FORM:
        raise BadRequest("form too large")
    try:
        parsed = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=20)
    except (UnicodeDecodeError, ValueError):
        raise BadRequest("the form is not valid url-encoded UTF-8") from None
    return {k: v[-1] for k, v in parsed.items()}


def local(nxt: str | None, default: str = "/") -> str:
    """A redirect target from a form or a query: a path on this server, never another site."""
    if not nxt or not nxt.startswith("/") or nxt.startswith("//") or "\\" in nxt:
        return default
    return nxt


def _token_caller(request: Request, token: str) -> Caller:
    """Who this token is, asked of the same resolver as every request (a copy of this request carrying
    the token as its Bearer header and no cookie)."""
    headers = [(k, v) for k, v in request.scope["headers"] if k not in (b"authorization", b"cookie")]
    headers.append((b"authorization", b"Bearer " + token.encode("utf-8", "replace")))
    probe = Request({**request.scope, "headers": headers, "query_string": b""})
    return request.app.state.resolve_caller(probe)


@router.get("/login", summary="The dashboard's login page: paste a token", openapi_extra=PUBLIC)
def login_page(request: Request, next: str | None = None) -> Response:
    if not auth_on(request):
        return RedirectResponse(local(next), status_code=303)
    return page(request, "login.html", title="Log in", next=local(next), message=None)


@router.post("/login", summary="Log in: checks the token, then keeps it in an HttpOnly cookie",
             openapi_extra=PUBLIC)
async def login(request: Request) -> Response:
    if not same_origin(request):
        return error_page(request, 403, "cross-site form posts are refused")
    try:
        fields = await form(request)
    except BadRequest as e:
        return error_page(request, 400, str(e))
    nxt = local(fields.get("next"))
    if not auth_on(request):
        return RedirectResponse(nxt, status_code=303)
    token = fields.get("token", "").strip()

    def again(status: int, message: str) -> Response:
        return page(request, "login.html", status=status, title="Log in", next=nxt, message=message)

    if not token:
        return again(400, "paste a token (pipemon token create … prints one)")
    if len(token) > 1000 or not token.isprintable():
        return again(401, "that is not a valid token")
    try:
        who = _token_caller(request, token)
    except Unauthorized:
        return again(401, "that token is not valid (unknown, expired or revoked)")
    if not who.can(Action.READ):
        return again(403, f"a token of the {who.role} role cannot read the dashboard")
    response = RedirectResponse(nxt, status_code=303)
    response.set_cookie(COOKIE, token, httponly=True, samesite="strict", path="/",
                        secure=request.url.scheme == "https")
    return response


@router.get("/logout", summary="Log out: forgets the dashboard's cookie", openapi_extra=PUBLIC)
@router.post("/logout", summary="Log out: forgets the dashboard's cookie", openapi_extra=PUBLIC,
             operation_id="logout_post")
def logout(request: Request) -> Response:
    # a GET too, for the address bar: logging someone out is all another site could make it do
    response = RedirectResponse("/login" if auth_on(request) else "/", status_code=303)
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict",
                           secure=request.url.scheme == "https")
    return response
