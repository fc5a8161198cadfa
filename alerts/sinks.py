"""The one small interface every receiver implements, and what they share.

A sink delivers one :class:`~alerts.model.Notification` and says whether a failure is worth
retrying; backoff lives once, in :mod:`alerts.retry`. Sinks take their HTTP client in the
constructor so that tests (and the dev command) point them at a local server. The receivers
that POST JSON (PagerDuty, Opsgenie, the webhook) share :func:`post_json`,
:func:`http_result` and :func:`settle`, so that a timeout, a 429 or a 401 means the same
thing for each of them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Protocol, runtime_checkable

import aiohttp
import orjson

from alerts.model import Notification

log = logging.getLogger("alerts.sinks")

HttpClass = Literal["ok", "retry", "permanent"]


@dataclass(slots=True)
class DeliveryResult:
    """The outcome of one delivery attempt.

    ``state`` is what the sink wants back as ``prior`` for the next notification of the same
    key (Slack: the channel and ``ts`` of the root message, to thread under it). The caller
    persists it per (sink, key) only when ``ok``. ``detail`` is for logs and the dashboard: it
    never contains a token.
    """

    ok: bool
    retryable: bool = False
    retry_after: float | None = None
    detail: str = ""
    state: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def success(cls, detail: str = "ok", state: dict[str, Any] | None = None) -> DeliveryResult:
        return cls(ok=True, detail=detail, state=dict(state or {}))

    @classmethod
    def retry(cls, detail: str, retry_after: float | None = None) -> DeliveryResult:
        return cls(ok=False, retryable=True, retry_after=retry_after, detail=detail)

    @classmethod
    def permanent(cls, detail: str) -> DeliveryResult:
        return cls(ok=False, retryable=False, detail=detail)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "retryable": self.retryable,
            "retry_after": self.retry_after,
            "detail": self.detail,
            "state": dict(self.state),
        }


@runtime_checkable
class Sink(Protocol):
    """A receiver. ``send`` must not raise for delivery problems: it returns a result."""

    name: str

    async def send(self, n: Notification, prior: dict[str, Any] | None) -> DeliveryResult: ...


def classify_http(status: int) -> HttpClass:
    """2xx ok; 429 and 5xx are worth retrying; anything else will fail again the same way."""
    if 200 <= status < 300:
        return "ok"
    if status == 429 or 500 <= status < 600:
        return "retry"
    return "permanent"


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (Slack and PagerDuty send delta-seconds)."""
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None  # an HTTP-date: rare here, and the backoff is a safe fallback
    return max(0.0, seconds)


class SecretLike(Protocol):
    def get_secret_value(self) -> str: ...


def reveal(secret: str | SecretLike) -> str:
    """The plain value of a ``str`` or pydantic ``SecretStr``; only for putting on the wire."""
    getter = getattr(secret, "get_secret_value", None)
    return str(getter()) if callable(getter) else str(secret)


def redact(text: str, *secrets: str) -> str:
    """Belt and braces: a server may echo a key back in an error message."""
    for s in secrets:
        if s and len(s) >= 4:
            text = text.replace(s, "[redacted]")
    return text


# -- JSON over HTTP ----------------------------------------------------------------------------
@dataclass(slots=True)
class HttpReply:
    """What a receiver answered: the status, its body as text, and ``Retry-After`` in seconds."""

    status: int
    text: str
    retry_after: float | None = None


async def post_json(
    session: aiohttp.ClientSession,
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    timeout: aiohttp.ClientTimeout,
    who: str,
) -> HttpReply | DeliveryResult:
    """POST ``body``: the reply, or the failure as a result when there was none (a timeout
    or a connection error is worth retrying; a URL that cannot be requested is not)."""
    try:
        async with session.post(url, data=body, headers=dict(headers), timeout=timeout) as resp:
            text = await resp.text(errors="replace")
            return HttpReply(resp.status, text, parse_retry_after(resp.headers.get("Retry-After")))
    except TimeoutError:
        return DeliveryResult.retry(f"{who}: timed out")
    except (aiohttp.InvalidURL, ValueError) as exc:
        # Will fail again the same way; the message would repeat the URL.
        return DeliveryResult.permanent(f"{who}: {type(exc).__name__}: invalid URL or request")
    except aiohttp.ClientError as exc:
        return DeliveryResult.retry(f"{who}: {type(exc).__name__}: {exc}")


def http_result(
    reply: HttpReply, who: str, ok: DeliveryResult, fields: tuple[str, ...], limit: int = 500
) -> DeliveryResult:
    """``ok`` for a 2xx; otherwise a retryable or permanent failure (:func:`classify_http`)
    with the receiver's own words: ``fields`` of its JSON error body (:func:`error_text`)."""
    kind = classify_http(reply.status)
    if kind == "ok":
        return ok
    detail = f"{who}: HTTP {reply.status}: {error_text(reply.text, fields, limit)}"
    if kind == "retry":
        return DeliveryResult.retry(detail, reply.retry_after)
    return DeliveryResult.permanent(detail)


def error_text(text: str, fields: tuple[str, ...], limit: int = 500) -> str:
    """A receiver's error in its own words: the values of ``fields`` in a JSON body (a list
    or an object joined with ``;``), else the body itself, on one line and at most ``limit``
    characters.

    >>> error_text('{"message": "Event object is invalid", "errors": ["no summary"]}', ("message", "errors"))
    'Event object is invalid: no summary'
    >>> error_text("<html> 502 Bad Gateway </html>", ("message",))
    '<html> 502 Bad Gateway </html>'
    """
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError:
        data = None
    parts: list[str] = []
    if isinstance(data, dict):
        for k in fields:
            v = data.get(k)
            if isinstance(v, list):
                v = "; ".join(str(x) for x in v)
            elif isinstance(v, dict):
                v = "; ".join(f"{a}: {b}" for a, b in v.items())
            if v:
                parts.append(str(v))
    out = ": ".join(parts) if parts else " ".join(text.split())
    return (out[:limit] + "…") if len(out) > limit else (out or "no body")


def json_field(text: str, name: str) -> str | None:
    """A field of a JSON reply (PagerDuty's ``dedup_key``, Opsgenie's ``requestId``), if any."""
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    value = data.get(name) if isinstance(data, dict) else None
    return str(value) if value is not None else None


class HttpSink:
    """What the sinks that POST JSON share (PagerDuty, Opsgenie, the webhook): the caller's
    ``aiohttp`` session, their URL, their secret (a ``str`` or pydantic ``SecretStr``, revealed
    only onto the wire), a name and a timeout. A subclass writes ``send`` with :meth:`_post`,
    which turns every outcome into a result: no reply (:func:`post_json`), the reply's status
    (:func:`http_result`), the secrets redacted and a failure logged (:func:`settle`)."""

    kind: ClassVar[str] = "http"  # the receiver, as details and logs name it

    def __init__(
        self,
        session: aiohttp.ClientSession,
        url: str,
        secret: str | SecretLike,
        *,
        name: str | None = None,
        timeout_s: float = 10.0,
    ) -> None:
        self.session = session
        self.url = url
        self._secret = secret
        self.name = name or self.kind
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(url={self._shown_url()!r}, name={self.name!r})"

    def _shown_url(self) -> str:
        return self.url

    async def _post(
        self,
        url: str,
        body: bytes,
        headers: Mapping[str, str],
        what: str,
        ok: Callable[[HttpReply], DeliveryResult],
        fields: tuple[str, ...],
        secrets: Iterable[str],
        limit: int = 500,
    ) -> DeliveryResult:
        """POST ``body``; ``ok(reply)`` is the result of a 2xx, ``fields`` where the receiver's
        JSON error says why, ``what`` the action and key for the log."""
        secrets = list(secrets)
        reply = await post_json(self.session, url, body, headers, self.timeout, self.kind)
        if isinstance(reply, DeliveryResult):
            return settle(reply, self.kind, what, secrets)
        return settle(http_result(reply, self.kind, ok(reply), fields, limit), self.kind, what, secrets)


def settle(result: DeliveryResult, who: str, what: str, secrets: Iterable[str]) -> DeliveryResult:
    """``result`` with every secret redacted from its detail, a failure logged (``what``: the
    action and key it was about, never a secret)."""
    result.detail = redact(result.detail, *secrets)
    if not result.ok:
        log.log(logging.INFO if result.retryable else logging.WARNING, "%s %s failed (%s): %s", who, what,
                "retryable" if result.retryable else "permanent", result.detail)
    return result
