"""The one small interface every receiver implements, and what they share.

A sink delivers one :class:`~alerts.model.Notification` and says whether a failure is worth
retrying; backoff lives once, in :mod:`alerts.retry`. Sinks take their HTTP client in the
constructor so that tests (and the dev command) point them at a local server.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from alerts.model import Notification

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
