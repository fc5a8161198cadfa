"""PagerDuty's sink (Events API v2): pages only for notifications marked ``page``.

PagerDuty deduplicates on ``dedup_key`` (our alert key), so a redelivered trigger or an
in-incident update is folded into the open incident, and the resolve closes it.
"""

from __future__ import annotations

from typing import Any

import orjson

from alerts.model import Notification
from alerts.receivers.base import SessionConnection
from alerts.receivers.pagerduty.config import PagerDutyConfig
from alerts.receivers.pagerduty.render import pagerduty_event
from alerts.sinks import DeliveryResult, HttpReply, HttpSink, json_field, reveal


class PagerDutySink(HttpSink):
    """Sends Events v2 through a caller-owned ``aiohttp.ClientSession``.

    ``url`` is the enqueue endpoint (:data:`~alerts.receivers.pagerduty.config.EVENTS_V2_URL`
    in production). ``routing_key`` may be a pydantic ``SecretStr``: it is revealed only into
    the request body, and any error text that echoes it is redacted.
    """

    kind = "pagerduty"

    async def send(self, n: Notification, prior: dict[str, Any] | None) -> DeliveryResult:
        if not n.page:
            return DeliveryResult.success("not paged")
        key = reveal(self._secret)
        if not key:
            return DeliveryResult.permanent("pagerduty: no routing key configured")

        def ok(reply: HttpReply) -> DeliveryResult:
            dedup = json_field(reply.text, "dedup_key") or n.key
            return DeliveryResult.success(f"pagerduty: {n.action} accepted (HTTP {reply.status})", {"dedup_key": dedup})

        return await self._post(self.url, orjson.dumps(pagerduty_event(n, key)), {"Content-Type": "application/json"},
                                f"{n.action} of {n.key}", ok, ("message", "errors"), [key])


class PagerDutyConnection(SessionConnection):
    """One sink per routing key name, all on the caller's session."""

    cfg: PagerDutyConfig

    def sink(self, target: str) -> PagerDutySink:
        return PagerDutySink(self.session, self.cfg.url, self.key(target), name=f"pagerduty:{target}")



