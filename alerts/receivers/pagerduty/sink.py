"""PagerDuty's sink (Events API v2): pages only for notifications marked ``page``.

PagerDuty deduplicates on ``dedup_key`` (our alert key), so a redelivered trigger or an
in-incident update is folded into the open incident, and the resolve closes it.
"""

from __future__ import annotations

from typing import Any

import aiohttp
import orjson

from alerts.model import Notification
from alerts.receivers.pagerduty.config import PagerDutyConfig
from alerts.receivers.pagerduty.render import pagerduty_event
from alerts.sinks import DeliveryResult, SecretLike, http_result, post_json, reveal, settle


class PagerDutySink:
    """Sends Events v2 through a caller-owned ``aiohttp.ClientSession``.

    ``url`` is the enqueue endpoint (:data:`~alerts.receivers.pagerduty.config.EVENTS_V2_URL`
    in production). ``routing_key`` may be a pydantic ``SecretStr``: it is revealed only into
    the request body, and any error text that echoes it is redacted.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        url: str,
        routing_key: str | SecretLike,
        *,
        name: str = "pagerduty",
        timeout_s: float = 10.0,
    ) -> None:
        self.session = session
        self.url = url
        self._routing_key = routing_key
        self.name = name
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)

    def __repr__(self) -> str:
        return f"PagerDutySink(url={self.url!r}, name={self.name!r})"

    async def send(self, n: Notification, prior: dict[str, Any] | None) -> DeliveryResult:
        if not n.page:
            return DeliveryResult.success("not paged")
        key = reveal(self._routing_key)
        if not key:
            return DeliveryResult.permanent("pagerduty: no routing key configured")
        body = orjson.dumps(pagerduty_event(n, key))
        reply = await post_json(self.session, self.url, body, {"Content-Type": "application/json"}, self.timeout,
                                "pagerduty")
        if isinstance(reply, DeliveryResult):
            return settle(reply, "pagerduty", f"{n.action} of {n.key}", [key])
        dedup = _field(reply.text, "dedup_key") or n.key
        ok = DeliveryResult.success(f"pagerduty: {n.action} accepted (HTTP {reply.status})", {"dedup_key": dedup})
        return settle(http_result(reply, "pagerduty", ok, ("message", "errors")), "pagerduty",
                      f"{n.action} of {n.key}", [key])


class PagerDutyConnection:
    """One sink per routing key name, all on the caller's session."""

    def __init__(self, cfg: PagerDutyConfig, session: aiohttp.ClientSession) -> None:
        self.cfg = cfg
        self.session = session

    def sink(self, target: str) -> PagerDutySink:
        key = self.cfg.key_for(target)
        if key is None:
            raise KeyError(self.cfg.target_error(target))
        return PagerDutySink(self.session, self.cfg.url, key, name=f"pagerduty:{target}")

    async def close(self) -> None:
        return None  # the session is the caller's


def _field(text: str, name: str) -> str | None:
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    value = data.get(name) if isinstance(data, dict) else None
    return str(value) if value is not None else None



