"""Opsgenie's sink (Alert API v2): opens an alert for a paged notification and closes it on
the resolve, with the same retry rules as every receiver (2xx ok; 429, honouring
``Retry-After``, and 5xx retried; anything else permanent). Opsgenie answers 202 with a
``requestId`` and processes the request asynchronously."""

from __future__ import annotations

from typing import Any

import orjson

from alerts.model import Notification
from alerts.receivers.base import SessionConnection
from alerts.receivers.opsgenie.config import OpsgenieConfig
from alerts.receivers.opsgenie.render import alias_of, close_body, close_path, create_body
from alerts.sinks import DeliveryResult, HttpReply, HttpSink, json_field, reveal


class OpsgenieSink(HttpSink):
    """Sends to one API integration through a caller-owned ``aiohttp.ClientSession``.

    ``url`` is the account's base URL (``https://api.opsgenie.com``, or
    ``https://api.eu.opsgenie.com``). ``api_key`` may be a pydantic ``SecretStr``: it is
    revealed only into the ``Authorization: GenieKey`` header, and any error text that echoes
    it is redacted. Like PagerDuty it gets only notifications marked ``page``.
    """

    kind = "opsgenie"

    async def send(self, n: Notification, prior: dict[str, Any] | None) -> DeliveryResult:
        if not n.page:
            return DeliveryResult.success("not paged")
        key = reveal(self._secret)
        if not key:
            return DeliveryResult.permanent("opsgenie: no API key configured")
        base = self.url.rstrip("/")
        if n.action == "resolve":
            verb, url, body = "close", base + close_path(n), close_body(n)
        else:
            verb, url, body = "create", f"{base}/v2/alerts", create_body(n)

        def ok(reply: HttpReply) -> DeliveryResult:
            state = {"alias": alias_of(n), "request_id": json_field(reply.text, "requestId")}
            return DeliveryResult.success(f"opsgenie: {verb} accepted (HTTP {reply.status})", state)

        headers = {"Content-Type": "application/json", "Authorization": f"GenieKey {key}"}
        return await self._post(url, orjson.dumps(body), headers, f"{verb} of {n.key}", ok, ("message", "errors"), [key])


class OpsgenieConnection(SessionConnection):
    """One sink per API key name, all on the caller's session."""

    cfg: OpsgenieConfig

    def sink(self, target: str) -> OpsgenieSink:
        return OpsgenieSink(self.session, self.cfg.api_url, self.key(target), name=f"opsgenie:{target}")
