"""Opsgenie's sink (Alert API v2): opens an alert for a paged notification and closes it on
the resolve, with the same retry rules as every receiver (2xx ok; 429, honouring
``Retry-After``, and 5xx retried; anything else permanent). Opsgenie answers 202 with a
``requestId`` and processes the request asynchronously."""

from __future__ import annotations

from typing import Any

import aiohttp
import orjson

from alerts.model import Notification
from alerts.receivers.opsgenie.config import OpsgenieConfig
from alerts.receivers.opsgenie.render import alias_of, close_body, close_path, create_body
from alerts.sinks import DeliveryResult, SecretLike, http_result, post_json, reveal, settle


class OpsgenieSink:
    """Sends to one API integration through a caller-owned ``aiohttp.ClientSession``.

    ``api_url`` is the account's base URL (``https://api.opsgenie.com``, or
    ``https://api.eu.opsgenie.com``). ``api_key`` may be a pydantic ``SecretStr``: it is
    revealed only into the ``Authorization: GenieKey`` header, and any error text that echoes
    it is redacted. Like PagerDuty it gets only notifications marked ``page``.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        api_url: str,
        api_key: str | SecretLike,
        *,
        name: str = "opsgenie",
        timeout_s: float = 10.0,
    ) -> None:
        self.session = session
        self.api_url = api_url.rstrip("/")
        self._api_key = api_key
        self.name = name
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)

    def __repr__(self) -> str:
        return f"OpsgenieSink(api_url={self.api_url!r}, name={self.name!r})"

    async def send(self, n: Notification, prior: dict[str, Any] | None) -> DeliveryResult:
        if not n.page:
            return DeliveryResult.success("not paged")
        key = reveal(self._api_key)
        if not key:
            return DeliveryResult.permanent("opsgenie: no API key configured")
        if n.action == "resolve":
            verb, url, body = "close", self.api_url + close_path(n), close_body(n)
        else:
            verb, url, body = "create", f"{self.api_url}/v2/alerts", create_body(n)
        headers = {"Content-Type": "application/json", "Authorization": f"GenieKey {key}"}
        what = f"{verb} of {n.key}"
        reply = await post_json(self.session, url, orjson.dumps(body), headers, self.timeout, "opsgenie")
        if isinstance(reply, DeliveryResult):
            return settle(reply, "opsgenie", what, [key])
        state = {"alias": alias_of(n), "request_id": _request_id(reply.text)}
        ok = DeliveryResult.success(f"opsgenie: {verb} accepted (HTTP {reply.status})", state)
        return settle(http_result(reply, "opsgenie", ok, ("message", "errors")), "opsgenie", what, [key])


class OpsgenieConnection:
    """One sink per API key name, all on the caller's session."""

    def __init__(self, cfg: OpsgenieConfig, session: aiohttp.ClientSession) -> None:
        self.cfg = cfg
        self.session = session

    def sink(self, target: str) -> OpsgenieSink:
        key = self.cfg.key_for(target)
        if key is None:
            raise KeyError(self.cfg.target_error(target))
        return OpsgenieSink(self.session, self.cfg.api_url, key, name=f"opsgenie:{target}")

    async def close(self) -> None:
        return None  # the session is the caller's


def _request_id(text: str) -> str | None:
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    value = data.get("requestId") if isinstance(data, dict) else None
    return str(value) if value is not None else None
