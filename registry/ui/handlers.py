"""The UI's pages: parse the request, ask :mod:`.model` (through the store), render a template."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import re
import secrets
import urllib.parse
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp_jinja2
import jinja2
from aiohttp import web

from ..api.base import STORE_KEY, v2_url
from ..errors import ErrorCode, RegistryError
from ..reference import Digest, is_valid_name, parse_reference
from . import filters
from .access import CSRF_COOKIE, SESSION_COOKIE, SESSION_LIFETIME, LoginRefused, UIAuth, Viewer
from .model import Reader

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
JINJA_KEY: web.AppKey[jinja2.Environment] = web.AppKey("ui.jinja", jinja2.Environment)
STATE_KEY: web.AppKey["UIState"] = web.AppKey("ui.state", object)  # type: ignore[arg-type]
VIEWER_KEY: web.RequestKey[Viewer] = web.RequestKey("ui.viewer", Viewer)
#: repositories per page of the list
REPOS_PER_PAGE = 50
#: tags per page of a repository
TAGS_PER_PAGE = 25
#: a repository page sorts by created or size (which needs every tag's manifest) up to this many tags
SORT_LIMIT = 500
TAG_SORTS = ("name", "-name", "created", "-created", "size", "-size")
MAX_QUERY = 256
#: every UI response: scripts and styles only from here, no framing, no referrer leaks
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class UIState:
    """Per-app state, built when the app starts (the store and the authorizer exist by then)."""

    def __init__(self, app: web.Application, base: str) -> None:
        config = app[_config_key()]
        self.base = base
        self.config = config
        self.auth = UIAuth(app, config.http.secret)
        self.reader = Reader(app[STORE_KEY])

    @property
    def store(self) -> Any:
        return self.reader.store

    @property
    def deletes(self) -> bool:
        return self.config.storage.delete_enabled and not self.config.storage.readonly


def _config_key() -> Any:
    from ..app import CONFIG_KEY

    return CONFIG_KEY


def add_routes(app: web.Application, config: Any) -> None:
    base = config.http.prefix.rstrip("/") + config.ui.path
    env = aiohttp_jinja2.setup(
        app, app_key=JINJA_KEY, loader=jinja2.FileSystemLoader(str(HERE / "templates")),
        autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
        default_helpers=False,
    )
    env.filters.update(filters.FILTERS)

    async def start(app: web.Application) -> Any:
        st = app[STATE_KEY] = UIState(app, base)
        # a store that predates the catalog index gets it built now, not on the first page view
        task = asyncio.create_task(_prepare_catalog(st))
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    app.cleanup_ctx.append(start)
    app.router.add_get(base.rstrip("/"), _to_base(base))
    app.router.add_get(base, page(repositories))
    app.router.add_get(base + "login", page(login_form))
    app.router.add_post(base + "login", page(login))
    app.router.add_post(base + "logout", page(logout))
    app.router.add_static(base + "static", HERE / "static", name="ui-static", append_version=False)
    app.router.add_get(base + "r/{name:.+}/-/manifest/{reference}", page(manifest))
    app.router.add_get(base + "r/{name:.+}/-/delete", page(confirm_delete))
    app.router.add_post(base + "r/{name:.+}/-/delete", page(delete))
    app.router.add_get(base + "r/{name:.+}", page(repository))
    app.router.add_route("*", base + "{tail:.*}", page(not_found))


async def _prepare_catalog(st: UIState) -> None:
    try:
        await st.store.catalog.prepare()
    except Exception:  # a storage hiccup: the first page view tries again
        log.exception("ui: could not prepare the catalog index")


def _to_base(base: str) -> Handler:
    async def redirect(request: web.Request) -> web.Response:
        return web.Response(status=301, headers={"Location": base})

    return redirect


# --------------------------------------------------------------------------- the page wrapper


class PageError(Exception):
    """An answer other than the page: a status and a message for the error page."""

    def __init__(self, status: int, title: str, message: str = "") -> None:
        super().__init__(title)
        self.status, self.title, self.message = status, title, message


def state(request: web.Request) -> UIState:
    return request.app[STATE_KEY]


def _viewer(request: web.Request) -> tuple[Viewer, str | None]:
    """The viewer, and a new csrf cookie value to set (None when it need not be set)."""
    st = state(request)
    session = st.auth.session(request.cookies.get(SESSION_COOKIE))
    if session is not None:
        return Viewer(session[0], st.auth, session[1]), None
    nonce = request.cookies.get(CSRF_COOKIE, "")
    if not re.fullmatch(r"[A-Za-z0-9_-]{32,64}", nonce):
        nonce = secrets.token_urlsafe(32)
        return Viewer(None, st.auth, nonce), nonce
    return Viewer(None, st.auth, nonce), None


def secure_request(request: web.Request) -> bool:
    """Whether the browser reached us over TLS (directly, or through a proxy that says so)."""
    forwarded = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
    return request.secure or forwarded == "https" or state(request).config.http.tls is not None


def set_cookie(request: web.Request, response: web.StreamResponse, name: str, value: str,
               max_age: int | None = None) -> None:
    response.set_cookie(name, value, path=state(request).base, httponly=True, samesite="Lax",
                        secure=secure_request(request), max_age=max_age)


def page(handler: Handler) -> Handler:
    """Viewer, security headers, cookies and HTML errors around one UI handler."""

    @functools.wraps(handler)
    async def wrapped(request: web.Request) -> web.StreamResponse:
        viewer, new_nonce = _viewer(request)
        request[VIEWER_KEY] = viewer
        try:
            response = await handler(request)
        except PageError as err:
            response = render(request, "error.html", {"title": err.title, "message": err.message},
                              status=err.status)
        except web.HTTPException:
            raise
        except Exception:
            log.exception("ui: unhandled error in %s %s", request.method, request.rel_url.path)
            response = render(request, "error.html", {"title": "Something went wrong",
                                                      "message": "The error was logged."}, status=500)
        response.headers.update(SECURITY_HEADERS)
        if new_nonce is not None and not response.headers.get("X-UI-No-Csrf"):
            set_cookie(request, response, CSRF_COOKIE, new_nonce)
        response.headers.pop("X-UI-No-Csrf", None)
        return response

    return wrapped


def render(request: web.Request, template: str, context: dict[str, Any], status: int = 200) -> web.Response:
    st = state(request)
    viewer = request[VIEWER_KEY]
    full = {
        "base": st.base,
        "viewer": viewer,
        "auth_mode": st.auth.mode,
        "can_login": st.auth.can_login,
        "csrf": viewer.csrf_token,
        "here": request.path_qs,
        **context,
    }
    return aiohttp_jinja2.render_template(template, request, full, app_key=JINJA_KEY, status=status)


def check_csrf(request: web.Request, form: Any) -> None:
    """Every form that changes something carries the viewer's token, from our own origin."""
    origin = request.headers.get("Origin")
    if origin and origin != "null":
        host = request.headers.get("X-Forwarded-Host", "").split(",")[0].strip() or request.host
        if urllib.parse.urlsplit(origin).netloc != host:
            raise PageError(403, "Refused", "The form came from another site.")
    viewer: Viewer = request[VIEWER_KEY]
    if not viewer.auth.csrf_ok(viewer.nonce, form.get("csrf")):
        raise PageError(403, "Refused", "The form has expired or did not come from this page. Reload it and try again.")


def see_other(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location})


def _query(request: web.Request, name: str) -> str:
    value = request.query.get(name, "")
    return value[:MAX_QUERY]


def _page_number(request: web.Request) -> int:
    value = request.query.get("page", "1")
    return int(value) if value.isdigit() and 0 < int(value) < 10**9 else 1


def _name(request: web.Request) -> str:
    """The repository of the URL, if the viewer may pull it; the same 404 otherwise, so a page
    never tells a repository they may not pull from one that does not exist."""
    name = request.match_info["name"]
    viewer: Viewer = request[VIEWER_KEY]
    if not is_valid_name(name) or not viewer.may_pull(name):
        raise _no_such("repository")
    return name


def _no_such(what: str) -> PageError:
    return PageError(404, "Not found", f"There is no such {what}, or you may not see it.")


def registry_address(request: web.Request) -> tuple[str, bool]:
    """The host (``host[:port]``) clients pull from and whether it is plain HTTP: ``http.host``
    when set, else the request's host, ``X-Forwarded-Host``/``-Proto`` honoured (as the API's
    Location URLs)."""
    url = v2_url(request, "")
    parts = urllib.parse.urlsplit(url)
    if not parts.netloc:
        proto = "https" if secure_request(request) else "http"
        return request.host, proto == "http"
    return parts.netloc, parts.scheme == "http"


def pull_commands(request: web.Request, repo: str, ref: str) -> list[tuple[str, str]]:
    host, plain = registry_address(request)
    sep = "@" if ":" in ref else ":"
    image = f"{host}/{repo}{sep}{ref}"
    leaf = repo.rsplit("/", 1)[-1]
    tls = " --tls-verify=false" if plain else ""
    return [
        ("docker", f"docker pull {image}"),
        ("podman", f"podman pull{tls} {image}"),
        ("skopeo", f"skopeo copy{' --src-tls-verify=false' if plain else ''} docker://{image} oci:{leaf}"),
        ("oras", f"oras pull{' --plain-http' if plain else ''} {image}"),
    ]


# --------------------------------------------------------------------------- pages


async def repositories(request: web.Request) -> web.Response:
    """The catalog: one listing of the catalog index, filtered by what the viewer may pull."""
    st = state(request)
    viewer: Viewer = request[VIEWER_KEY]
    query = _query(request, "q").strip().lower()
    names = [n for n in await st.store.catalog.names() if viewer.may_pull(n)] if _sees_any(viewer) else []
    if query:
        names = sorted((n for n in names if query in n), key=lambda n: (not n.startswith(query), n.split("/")))
    pages = max(1, math.ceil(len(names) / REPOS_PER_PAGE))
    number = min(_page_number(request), pages)
    shown = names[(number - 1) * REPOS_PER_PAGE: number * REPOS_PER_PAGE]
    return render(request, "repositories.html", {
        "title": "Repositories", "query": query, "names": shown, "total": len(names),
        "page": number, "pages": pages,
    })


def _sees_any(viewer: Viewer) -> bool:
    return viewer.auth.mode != "external" and not (viewer.auth.mode == "htpasswd" and viewer.account is None)


async def repository(request: web.Request) -> web.Response:
    st = state(request)
    name = _name(request)
    viewer: Viewer = request[VIEWER_KEY]
    try:
        tags = await st.store.tags.list(name)
    except RegistryError:
        raise _no_such("repository") from None
    wanted = _query(request, "filter").strip()
    if wanted:
        tags = [t for t in tags if wanted.lower() in t.lower()]
    sort = request.query.get("sort", "name")
    sort = sort if sort in TAG_SORTS else "name"
    note = ""
    if sort.lstrip("-") != "name" and len(tags) > SORT_LIMIT:
        note = f"Sorting by {sort.lstrip('-')} needs every tag's manifest: filter to at most {SORT_LIMIT} tags."
        sort = "name"
    pages = max(1, math.ceil(len(tags) / TAGS_PER_PAGE))
    number = min(_page_number(request), pages)
    window = slice((number - 1) * TAGS_PER_PAGE, number * TAGS_PER_PAGE)
    if sort in ("name", "-name"):
        ordered = tags if sort == "name" else tags[::-1]
        rows = await st.reader.tag_rows(name, ordered[window])
    else:
        rows = await st.reader.tag_rows(name, tags)
        field = sort.lstrip("-")

        def key(row: Any) -> Any:
            s = row.summary
            value = None if s is None else (s.created_at if field == "created" else s.size)
            return (value is None, value if value is not None else 0, row.tag)

        rows.sort(key=key)
        if sort.startswith("-"):
            known = [r for r in rows if key(r)[0] is False][::-1]
            rows = known + [r for r in rows if key(r)[0] is True]
        rows = rows[window]
    return render(request, "repository.html", {
        "title": name, "name": name, "rows": rows, "total": len(tags), "filter": wanted, "sort": sort,
        "sorts": TAG_SORTS, "page": number, "pages": pages, "note": note,
        "can_delete": st.deletes and viewer.may(name, "delete"),
        "deleted": _query(request, "deleted"),
        "pull": pull_commands(request, name, rows[0].tag) if rows else [],
    })


async def manifest(request: web.Request) -> web.Response:
    st = state(request)
    name = _name(request)
    viewer: Viewer = request[VIEWER_KEY]
    ref = _reference(request.match_info["reference"])
    try:
        detail = await st.reader.detail(name, ref)
    except RegistryError:
        raise _no_such("manifest") from None
    return render(request, "manifest.html", {
        "title": f"{name}{'@' if isinstance(ref, Digest) else ':'}{ref}", "name": name, "d": detail,
        "is_tag": not isinstance(ref, Digest),
        "pull": pull_commands(request, name, str(ref)),
        "pull_digest": pull_commands(request, name, detail.digest) if not isinstance(ref, Digest) else [],
        "can_delete": st.deletes and viewer.may(name, "delete"),
    })


def _reference(value: str) -> str | Digest:
    try:
        return parse_reference(value)
    except RegistryError:
        raise _no_such("manifest") from None


async def confirm_delete(request: web.Request) -> web.Response:
    name, ref = _deletable(request, request.query.get("ref", ""))
    st = state(request)
    tags: list[str] = []
    if isinstance(ref, Digest):
        try:
            tags = sorted(await st.store.tags.tags_of(name, ref))
        except RegistryError:
            tags = []
    return render(request, "confirm.html", {
        "title": f"Delete {'manifest' if isinstance(ref, Digest) else 'tag'}", "name": name, "ref": str(ref),
        "is_digest": isinstance(ref, Digest), "tags": tags,
    })


async def delete(request: web.Request) -> web.Response:
    form = await request.post()
    check_csrf(request, form)
    name, ref = _deletable(request, str(form.get("ref", "")))
    try:
        await state(request).store.manifests.delete(name, ref)
    except RegistryError as err:
        if err.code is ErrorCode.MANIFEST_UNKNOWN:
            raise _no_such("manifest") from None
        raise PageError(409, "Not deleted", err.message or "The registry refused the delete.") from None
    viewer: Viewer = request[VIEWER_KEY]
    log.info("ui: %s deleted %s %s", viewer.account or "anonymous", name, ref)
    what = ("manifest " if isinstance(ref, Digest) else "tag ") + str(ref)
    target = f"{state(request).base}r/{name}?deleted={urllib.parse.quote(what)}"
    return see_other(target)


def _deletable(request: web.Request, value: str) -> tuple[str, str | Digest]:
    st = state(request)
    name = _name(request)
    viewer: Viewer = request[VIEWER_KEY]
    if not st.deletes or not viewer.may(name, "delete"):
        raise PageError(403, "Not allowed", "Deleting is disabled on this registry, or you may not delete here.")
    return name, _reference(value)


async def login_form(request: web.Request) -> web.Response:
    return _login_page(request, _next(request, request.query.get("next")))


def _login_page(request: web.Request, next_url: str, error: str = "", status: int = 200,
                user: str = "") -> web.Response:
    st = state(request)
    return render(request, "login.html", {"title": "Log in", "next": next_url, "error": error, "user": user,
                                          "external": st.auth.mode == "external"}, status=status)


def _next(request: web.Request, value: Any) -> str:
    """Where to go after logging in: a path of this UI only (no open redirect)."""
    base = state(request).base
    text = str(value or "")
    if (text.startswith(base) and "//" not in text and "\\" not in text
            and all(c.isprintable() and not c.isspace() for c in text)):
        return text
    return base


async def login(request: web.Request) -> web.StreamResponse:
    st = state(request)
    form = await request.post()
    check_csrf(request, form)
    next_url = _next(request, form.get("next"))
    user = str(form.get("username", ""))[:128]
    try:
        account = await st.auth.login(request, user, str(form.get("password", "")))
    except LoginRefused as err:
        response = _login_page(request, next_url, err.message, 429 if err.retry_after else 401, user)
        if err.retry_after:
            response.headers["Retry-After"] = str(err.retry_after)
        return response
    log.info("ui: %s logged in", account)
    response = see_other(next_url)
    set_cookie(request, response, SESSION_COOKIE, st.auth.session_cookie(account), max_age=SESSION_LIFETIME)
    response.del_cookie(CSRF_COOKIE, path=st.base)
    response.headers["X-UI-No-Csrf"] = "1"
    return response


async def logout(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    check_csrf(request, form)
    response = see_other(state(request).base)
    response.del_cookie(SESSION_COOKIE, path=state(request).base)
    return response


async def not_found(request: web.Request) -> web.Response:
    raise PageError(404, "Not found", "There is no such page.")
