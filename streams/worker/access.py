"""Who may read the worker's API, dashboard and metrics, and the headers every answer carries.

Use :func:`access_middleware` on the worker's aiohttp application (``create_app`` does, through
Faust's ``web_application_options``): it guards every path but a few open ones, so a view
added later is guarded without anyone remembering to.

- With an API token (``TOKENPULSE_API_TOKEN``): a request is let in with
  ``Authorization: Bearer <token>``, or with the session cookie that ``POST /login`` sets
  (HttpOnly, SameSite=Strict; its value is derived from the token, not the token itself).
  Anything else gets 401: a JSON error for the API, the login form for a browser.
- A metrics token (``TOKENPULSE_METRICS_TOKEN``) opens ``/metrics`` and nothing else, so a
  Prometheus scraper does not hold the key to every team's spend.
- Open to anyone: ``/healthz`` (liveness probes), ``/login``, ``/logout``, the static
  ``/assets/`` of the dashboard (code, no data), and ``/slack/actions`` (Slack's signed button
  presses: :mod:`streams.worker.slack_actions` checks the signature instead of a token).
- Without an API token everything is open, which :func:`exposure_error` allows only on a
  loopback interface (or when the operator says so).

Tokens are compared in constant time (their SHA-256 digests, so the length leaks nothing
either), and never logged or echoed: a failed attempt is counted, not described.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from importlib.resources import files
from typing import Any

from aiohttp import web

__all__ = ["COOKIE", "OPEN_PATHS", "SECURITY_HEADERS", "Access", "access_middleware", "exposure_error", "is_loopback"]

COOKIE = "tokenpulse_session"
# /slack/actions: Slack cannot send the API token; the endpoint checks Slack's request signature
# (streams.worker.slack_actions), and does not exist without the signing secret (404)
# /pagerduty/webhook: likewise PagerDuty's signature (streams.worker.pagerduty_webhook), 404 without its secret
OPEN_PATHS = frozenset({"/healthz", "/login", "/logout", "/slack/actions", "/pagerduty/webhook"})
OPEN_PREFIXES = ("/assets/", "/dev/")  # /dev/: the dev inbox, which checks its own made-up secrets

# Sent with every answer. The dashboard loads only its own files (no inline script or style,
# no CDN), may not be framed (clickjacking), and the browser may not guess content types.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}

UNAUTHORIZED = ("unauthorized: send 'Authorization: Bearer <TOKENPULSE_API_TOKEN>' "
                "or log in at /login")


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps the port on this machine.

    >>> [is_loopback(h) for h in ("127.0.0.1", "::1", "localhost", "127.0.0.2", "0.0.0.0", "::", "10.0.0.5", "api.local")]
    [True, True, True, True, False, False, False, False]
    """
    if host.strip().lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def exposure_error(host: str, api_token: str | None, allow_unauthenticated: bool) -> str | None:
    """Why the worker must not start serving on ``host`` (None: it may): a port reachable from
    other machines with no token would hand every team's and user's spend to anyone.

    >>> exposure_error("127.0.0.1", None, False) is None, exposure_error("0.0.0.0", "t", False) is None
    (True, True)
    >>> print(exposure_error("0.0.0.0", None, False)[:90])
    TOKENPULSE_WEB_HOST=0.0.0.0 is reachable from other machines and TOKENPULSE_API_TOKEN is n
    """
    if api_token or allow_unauthenticated or is_loopback(host):
        return None
    return (f"TOKENPULSE_WEB_HOST={host} is reachable from other machines and TOKENPULSE_API_TOKEN is not set: "
            "set TOKENPULSE_API_TOKEN (a long random string), bind 127.0.0.1, or set "
            "TOKENPULSE_ALLOW_UNAUTHENTICATED=1 to serve the API to anyone who can reach the port")


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()


@dataclass(frozen=True)
class Access:
    """The tokens of one worker (``None``: not set). ``repr`` never shows them."""

    api_token: str | None = field(default=None, repr=False)
    metrics_token: str | None = field(default=None, repr=False)

    @property
    def open(self) -> bool:
        """No API token: every path is open (loopback, or the operator allowed it)."""
        return not self.api_token

    def session_value(self) -> str:
        """The login cookie's value: an HMAC of a fixed label under the token, so the cookie
        is not the token itself and stops working when the token changes."""
        assert self.api_token
        return hmac.new(self.api_token.encode("utf-8", "surrogatepass"), b"tokenpulse-session-v1",
                        hashlib.sha256).hexdigest()

    def token_ok(self, given: str | None, *, metrics: bool = False) -> bool:
        """Whether ``given`` is the API token (or, with ``metrics``, the metrics token), in
        constant time."""
        if not given:
            return False
        d = _digest(given)
        ok = bool(self.api_token) and hmac.compare_digest(d, _digest(self.api_token or ""))
        if metrics and self.metrics_token:
            ok |= hmac.compare_digest(d, _digest(self.metrics_token))
        return ok

    def allows(self, path: str, authorization: str | None, cookie: str | None) -> bool:
        """Whether a request for ``path`` with these headers may be answered."""
        if self.open or path in OPEN_PATHS or path.startswith(OPEN_PREFIXES):
            return True
        scheme, _, cred = (authorization or "").partition(" ")
        if scheme.lower() == "bearer" and self.token_ok(cred.strip(), metrics=path == "/metrics"):
            return True
        if cookie and path != "/metrics":
            return hmac.compare_digest(_digest(cookie), _digest(self.session_value()))
        return False


def login_page(message: str = "") -> str:
    """The login form (``streams/worker/login.html``); ``message`` is one of this module's
    fixed sentences, never anything from the request."""
    page = files("streams.worker").joinpath("login.html").read_text(encoding="utf-8")
    return page.replace("<!--message-->", message)


def _wants_html(request: web.Request) -> bool:
    return "text/html" in request.headers.get("Accept", "") and not request.path.startswith("/api/")


def _secure(request: web.Request) -> bool:
    # behind a TLS-terminating proxy the request is http here; the proxy says what it was
    return request.secure or request.headers.get("X-Forwarded-Proto", "").lower() == "https"


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def access_middleware(access: Access, on_denied: Callable[[str], None] | None = None) -> Any:
    """The aiohttp middleware for ``access``: the login form and session, 401 for whatever is
    not let in, and :data:`SECURITY_HEADERS` on every answer. ``on_denied(path_kind)`` is
    called on each refusal (a metric; never the credentials)."""

    async def login(request: web.Request) -> web.StreamResponse:
        if access.open:
            raise web.HTTPSeeOther("/dashboard")
        if request.method != "POST":
            return web.Response(text=login_page(), content_type="text/html")
        form = await request.post()
        given = form.get("token")
        if not isinstance(given, str) or not access.token_ok(given):
            if on_denied is not None:
                on_denied("login")
            return web.Response(status=401, text=login_page('<p class="error">That is not the API token.</p>'),
                                content_type="text/html")
        resp = web.HTTPSeeOther("/dashboard")
        resp.set_cookie(COOKIE, access.session_value(), httponly=True, samesite="Strict", path="/",
                        secure=_secure(request))
        raise resp

    async def logout(request: web.Request) -> web.StreamResponse:
        resp = web.HTTPSeeOther("/login")
        resp.del_cookie(COOKIE, path="/")
        raise resp

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            path = request.path
            if path == "/login":
                resp = await login(request)
            elif path == "/logout":
                resp = await logout(request)
            elif access.allows(path, request.headers.get("Authorization"), request.cookies.get(COOKIE)):
                resp = await handler(request)
            else:
                if on_denied is not None:
                    on_denied("metrics" if path == "/metrics" else "api")
                if _wants_html(request):
                    resp = web.Response(status=401, text=login_page(), content_type="text/html")
                else:
                    resp = web.json_response({"error": UNAUTHORIZED}, status=401)
                resp.headers["WWW-Authenticate"] = 'Bearer realm="tokenpulse"'
        except web.HTTPException as exc:  # redirects and aiohttp's own 404/405
            exc.headers.update(SECURITY_HEADERS)
            raise
        resp.headers.update(SECURITY_HEADERS)
        if not path.startswith(OPEN_PREFIXES):
            resp.headers.setdefault("Cache-Control", "no-store")  # spend figures stay out of caches
        return resp

    return guard
