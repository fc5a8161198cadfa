"""The generic webhook's sink: POSTs every notification, signed (see
:mod:`alerts.receivers.webhook.render` for the request and how to verify it)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson

from alerts.model import Notification
from alerts.receivers.base import SessionConnection
from alerts.receivers.webhook.config import WebhookConfig
from alerts.receivers.webhook.render import (
    IDEMPOTENCY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    idempotency_header,
    sign,
    webhook_body,
)
from alerts.sinks import DeliveryResult, HttpReply, HttpSink, SecretLike, reveal


def _origin(url: str) -> str:
    # The path or query of a webhook URL is often a credential in itself
    # (https://hooks.example/T0/B0/xyz): only scheme and host go into logs.
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<invalid url>"
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}"


class WebhookSink(HttpSink):
    """POSTs every notification, signed, to one URL through a caller-owned
    ``aiohttp.ClientSession``.

    Use it for receivers that are neither Slack, PagerDuty nor Opsgenie; it sends every action
    (trigger, update, resolve) whatever ``page`` says, and leaves rendering to the receiver.
    ``secret`` may be a pydantic ``SecretStr``: it only ever keys the HMAC, and any error text
    that echoes it (or the URL, which may carry a token) is redacted. ``clock`` is injected
    so tests control the signed timestamp.
    """

    kind = "webhook"

    def __init__(
        self,
        session: aiohttp.ClientSession,
        url: str,
        secret: str | SecretLike,
        *,
        name: str = "webhook",
        timeout_s: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(session, url, secret, name=name, timeout_s=timeout_s)
        self.clock = clock

    def _shown_url(self) -> str:
        return _origin(self.url)

    async def send(self, n: Notification, prior: dict[str, Any] | None) -> DeliveryResult:
        if prior is not None and prior.get("seq", -1) >= n.seq:
            return DeliveryResult.success("already delivered", prior)
        secret = reveal(self._secret)
        if not secret:
            return DeliveryResult.permanent("webhook: no secret configured")
        ts = int(self.clock())
        body = orjson.dumps(webhook_body(n, ts))
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "tokenpulse-webhook/1",
            TIMESTAMP_HEADER: str(ts),
            SIGNATURE_HEADER: sign(secret, ts, body),
            IDEMPOTENCY_HEADER: idempotency_header(n),
        }

        def ok(reply: HttpReply) -> DeliveryResult:
            return DeliveryResult.success(f"webhook: {n.action} accepted (HTTP {reply.status})", {"seq": n.seq})

        return await self._post(self.url, body, headers, f"{n.action} of {n.key} to {_origin(self.url)}", ok,
                                ("error", "message"), [secret, self.url], limit=300)


class WebhookConnection(SessionConnection):
    """The one URL, on the caller's session."""

    cfg: WebhookConfig

    def sink(self, target: str) -> WebhookSink:
        assert self.cfg.url is not None and self.cfg.secret is not None, "connect a configured receiver"
        return WebhookSink(self.session, self.cfg.url, self.cfg.secret)
