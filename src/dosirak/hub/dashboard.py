"""The hub's web dashboard: server-rendered pages (Jinja2), one stylesheet and a little script,
all served by the hub itself (it works offline and reads without JavaScript).

Sign in with a token: it is kept in an HttpOnly, SameSite=Strict cookie, and every form carries
a CSRF field derived from it. Pages: models and bentos (search by name and label selector), a
version (labels, metadata, files, size, digest, aliases, a bento's APIs and models, the bentos
using a model; move an alias, delete with confirmation), the event log, and tokens (admins).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

import yaml
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from dosirak.exceptions import DosirakError, InvalidArgument
from dosirak.hub import catalog
from dosirak.hub.api import client_of
from dosirak.hub.hub import Hub
from dosirak.hub.tokens import Principal, parse_duration
from dosirak.store.versioned_store import YAML_LOADER

COOKIE = "dosirak_hub"
_HERE = Path(__file__).parent
_KINDS = {"models": "model", "bentos": "bento"}
_templates = Environment(loader=FileSystemLoader(_HERE / "templates"),
                         autoescape=select_autoescape(["html"]))


def _csrf(token: str) -> str:
    return hmac.new(token.encode(), b"dosirak-hub-form", hashlib.sha256).hexdigest()[:32]


def _page(request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
    token = request.cookies.get(COOKIE, "")
    html = _templates.get_template(name).render(
        csrf=_csrf(token) if token else "", signed_in=bool(token), **context)
    return HTMLResponse(html, status, headers={
        "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'",
        "X-Frame-Options": "DENY", "Referrer-Policy": "same-origin"})


def _back(path: str) -> Response:
    return RedirectResponse(path, 303)


async def _principal(hub: Hub, request: Request) -> Principal | None:
    token = request.cookies.get(COOKIE)
    if not token:
        return None
    try:
        return await run_in_threadpool(hub.authenticate, token, client_of(request))
    except DosirakError:
        return None


async def _form(request: Request) -> dict[str, str]:
    form = await request.form()
    fields = {key: str(value) for key, value in form.items()}
    token = request.cookies.get(COOKIE, "")
    if not token or not hmac.compare_digest(fields.get("csrf", ""), _csrf(token)):
        raise InvalidArgument("this form is stale or came from another site; reload the page "
                              "and try again")
    return fields


def routes(hub: Hub) -> list[BaseRoute]:
    def page(handler: Any, *, public: bool = False) -> Any:
        async def endpoint(request: Request) -> Response:
            who = await _principal(hub, request)
            if who is None and not public:
                return _back("/login?next=" + quote(request.url.path))
            try:
                return await handler(request, who)
            except DosirakError as error:
                return _page(request, "error.html", getattr(error, "status", 500),
                             who=who, message=str(error))

        return endpoint

    async def home(request: Request, who: Principal) -> Response:
        return _back("/models")

    async def login_page(request: Request, who: Principal | None) -> Response:
        return _page(request, "login.html", who=who, next=request.query_params.get("next", ""))

    async def login(request: Request, who: Principal | None) -> Response:
        form = await request.form()
        token = str(form.get("token", "")).strip()
        target = str(form.get("next") or "/models")
        if not target.startswith("/") or target.startswith("//"):
            target = "/models"
        try:
            await run_in_threadpool(hub.authenticate, token, client_of(request))
        except DosirakError as error:
            return _page(request, "login.html", getattr(error, "status", 401), who=None,
                         error=str(error), next=target)
        response = _back(target)
        response.set_cookie(COOKIE, token, httponly=True, samesite="strict", path="/",
                            secure=request.url.scheme == "https", max_age=12 * 3600)
        return response

    async def logout(request: Request, who: Principal) -> Response:
        await _form(request)
        response = _back("/login")
        response.delete_cookie(COOKIE, path="/")
        return response

    async def listing(request: Request, who: Principal) -> Response:
        kinds = request.path_params["kinds"]
        if kinds not in _KINDS:
            raise catalog.NotFound(f"no page /{kinds}")
        query = request.query_params
        found = await run_in_threadpool(lambda: catalog.list_versions(
            hub, _KINDS[kinds], q=query.get("q") or None, selector=query.get("selector") or None,
            limit=200))
        return _page(request, "list.html", who=who, kinds=kinds, items=found["items"],
                     q=query.get("q", ""), selector=query.get("selector", ""))

    async def version(request: Request, who: Principal) -> Response:
        kinds, params = request.path_params["kinds"], request.path_params
        if kinds not in _KINDS:
            raise catalog.NotFound(f"no page /{kinds}")
        found = await run_in_threadpool(catalog.get_version, hub, _KINDS[kinds], params["name"],
                                        params["version"])
        info = yaml.load(found["info"], Loader=YAML_LOADER) or {}
        apis = info.get("apis") or []
        return _page(request, "version.html", who=who, kinds=kinds, v=found, apis=apis,
                     metadata=json.dumps(found["metadata"], indent=2, default=str))

    async def move_alias(request: Request, who: Principal) -> Response:
        kinds, params = request.path_params["kinds"], request.path_params
        form = await _form(request)
        await run_in_threadpool(catalog.move_alias, hub, who, _KINDS.get(kinds, kinds),
                                params["name"], form.get("alias", ""), params["version"])
        return _back(f"/{kinds}/{params['name']}/{params['version']}")

    async def delete(request: Request, who: Principal) -> Response:
        kinds, params = request.path_params["kinds"], request.path_params
        form = await _form(request)
        if form.get("confirm") != params["version"]:
            raise InvalidArgument("type the version to confirm the deletion")
        await run_in_threadpool(lambda: catalog.delete_version(
            hub, who, _KINDS.get(kinds, kinds), params["name"], params["version"],
            force=form.get("force") == "on"))
        return _back(f"/{kinds}")

    async def events(request: Request, who: Principal) -> Response:
        found = await run_in_threadpool(lambda: hub.events(
            limit=200, action=request.query_params.get("action") or None))
        return _page(request, "events.html", who=who, events=found,
                     action=request.query_params.get("action", ""))

    async def token_page(request: Request, who: Principal, made: dict[str, Any] | None = None
                         ) -> Response:
        rows = await run_in_threadpool(hub.list_tokens, who)
        return _page(request, "tokens.html", who=who, tokens=rows, made=made)

    async def create_token(request: Request, who: Principal) -> Response:
        form = await _form(request)
        lifetime = parse_duration(form["expires"]) if form.get("expires") else None
        row, secret = await run_in_threadpool(hub.create_token, who, form.get("name", ""),
                                              [form.get("scope", "read")], lifetime)
        return await token_page(request, who, made={**row, "token": secret})

    async def revoke_token(request: Request, who: Principal) -> Response:
        await _form(request)
        await run_in_threadpool(hub.revoke_token, who, request.path_params["name"])
        return _back("/tokens")

    return [
        Route("/", page(home)),
        Route("/login", page(login_page, public=True), methods=["GET"]),
        Route("/login", page(login, public=True), methods=["POST"]),
        Route("/logout", page(logout), methods=["POST"]),
        Route("/events", page(events)),
        Route("/tokens", page(token_page), methods=["GET"]),
        Route("/tokens", page(create_token), methods=["POST"]),
        Route("/tokens/{name}/revoke", page(revoke_token), methods=["POST"]),
        Mount("/static", StaticFiles(directory=_HERE / "static"), name="static"),
        Route("/{kinds}", page(listing)),
        Route("/{kinds}/{name}/{version}", page(version)),
        Route("/{kinds}/{name}/{version}/alias", page(move_alias), methods=["POST"]),
        Route("/{kinds}/{name}/{version}/delete", page(delete), methods=["POST"]),
    ]


async def not_found(request: Request) -> Response:
    return _page(request, "error.html", 404, who=None,
                 message=f"there is no page {request.url.path}")
