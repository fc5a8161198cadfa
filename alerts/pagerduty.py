"""PagerDuty receiver (Events API v2): pages only for notifications marked ``page``.

PagerDuty deduplicates on ``dedup_key`` (our alert key), so a redelivered trigger or an
in-incident update is folded into the open incident, and the resolve closes it.
"""

from __future__ import annotations

import logging
from typing import Any

import aiohttp
import orjson

from alerts.format import pagerduty_event
from alerts.model import Notification
from alerts.sinks import DeliveryResult, SecretLike, classify_http, parse_retry_after, redact, reveal

log = logging.getLogger(__name__)

EVENTS_V2_URL = "https://events.pagerduty.com/v2/enqueue"


class PagerDutySink:
    """Sends Events v2 through a caller-owned ``aiohttp.ClientSession``.

    ``url`` is the enqueue endpoint (:data:`EVENTS_V2_URL` in production). ``routing_key`` may be a pydantic ``SecretStr``: it is revealed only into the request
    body, and any error text that echoes it is redacted.
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
        try:
            async with self.session.post(
                self.url,
                data=body,
                headers={"Content-Type": "application/json"},
                timeout=self.timeout,
            ) as resp:
                status = resp.status
                text = await resp.text()
                retry_after = parse_retry_after(resp.headers.get("Retry-After"))
        except TimeoutError:
            return self._done(n, DeliveryResult.retry("pagerduty: timed out"), key)
        except aiohttp.ClientError as exc:
            return self._done(n, DeliveryResult.retry(f"pagerduty: {type(exc).__name__}: {exc}"), key)

        kind = classify_http(status)
        if kind == "ok":
            dedup = _field(text, "dedup_key") or n.key
            return self._done(n, DeliveryResult.success(f"pagerduty: {n.action} accepted (HTTP {status})", {"dedup_key": dedup}), key)
        detail = f"pagerduty: HTTP {status}: {_reason(text)}"
        if kind == "retry":
            return self._done(n, DeliveryResult.retry(detail, retry_after), key)
        return self._done(n, DeliveryResult.permanent(detail), key)

    def _done(self, n: Notification, result: DeliveryResult, key: str) -> DeliveryResult:
        result.detail = redact(result.detail, key)
        if not result.ok:
            log.log(
                logging.INFO if result.retryable else logging.WARNING,
                "pagerduty %s of %s failed (%s): %s",
                n.action,
                n.key,
                "retryable" if result.retryable else "permanent",
                result.detail,
            )
        return result


def _field(text: str, name: str) -> str | None:
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    value = data.get(name) if isinstance(data, dict) else None
    return str(value) if value is not None else None


def _reason(text: str, limit: int = 500) -> str:
    """PagerDuty's own words: ``message`` and ``errors`` of a JSON error, else the body."""
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError:
        data = None
    if isinstance(data, dict):
        parts = [str(data.get("message") or data.get("status") or "")]
        errors = data.get("errors")
        if isinstance(errors, list) and errors:
            parts.append("; ".join(str(e) for e in errors))
        out = ": ".join(p for p in parts if p)
    else:
        out = " ".join(text.split())
    return (out[:limit] + "…") if len(out) > limit else (out or "no body")
