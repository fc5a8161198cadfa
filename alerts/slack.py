"""Slack receiver: one message per incident, follow-ups in its thread.

The trigger posts a message and keeps its ``channel`` and ``ts``; updates and the resolve
reply in that thread, and the resolve also rewrites the root message so the channel shows
at a glance that it is over. Use one :class:`SlackSink` per channel.
"""

from __future__ import annotations

import logging
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.web.async_client import AsyncWebClient

from alerts.format import slack_blocks
from alerts.model import Notification
from alerts.sinks import DeliveryResult, classify_http, parse_retry_after, redact

log = logging.getLogger(__name__)

# Errors Slack reports with HTTP 200 and ok=false that are about Slack, not about us.
_RETRYABLE_ERRORS = frozenset(
    {"ratelimited", "rate_limited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"}
)


class SlackSink:
    """Delivers to one Slack channel through a caller-built ``AsyncWebClient``.

    The client carries the token; build it with ``retry_handlers=[]`` so that retries
    (and their ``Retry-After`` waits) happen once, in :func:`alerts.retry.deliver_with_retry`,
    instead of inside slack-sdk as well.
    """

    def __init__(self, client: AsyncWebClient, channel: str, *, name: str = "slack") -> None:
        self.client = client
        self.channel = channel
        self.name = name

    async def send(self, n: Notification, prior: dict[str, Any] | None) -> DeliveryResult:
        root = self._root_of(n, prior)
        if root is not None and root.get("seq", -1) >= n.seq:
            # The outbox was redelivered after this notification went out.
            return DeliveryResult.success("already delivered", root)
        try:
            if root is None:
                return await self._post_root(n)
            if n.action == "resolve":
                # The idempotent step first: if the reply then fails and is retried, the
                # root is rewritten twice, not the reply posted twice.
                failed = await self._update_root(n, root)
                if failed is not None and failed.retryable:
                    return failed
            text, blocks = slack_blocks(n, compact=True)
            await self.client.chat_postMessage(
                channel=root["channel"],
                thread_ts=root["ts"],
                text=text,
                blocks=blocks,
                unfurl_links=False,
                unfurl_media=False,
            )
            state = {**root, "seq": n.seq}
            return DeliveryResult.success(f"replied in thread {root['ts']}", state)
        except Exception as exc:  # noqa: BLE001 - every failure becomes a result, see below
            return self._failure("chat.postMessage", exc)

    # -- steps -------------------------------------------------------------------------------
    @staticmethod
    def _root_of(n: Notification, prior: dict[str, Any] | None) -> dict[str, Any] | None:
        """The root message of *this* incident, if one was posted.

        A prior from an earlier incident of the same key is not threaded under: the new
        incident gets its own root message.
        """
        if not prior or "ts" not in prior or "channel" not in prior:
            return None
        started = prior.get("started_at")
        if started is None or float(started) != float(n.started_at):
            return None
        return prior

    async def _post_root(self, n: Notification) -> DeliveryResult:
        text, blocks = slack_blocks(n)
        resp = await self.client.chat_postMessage(
            channel=self.channel, text=text, blocks=blocks, unfurl_links=False, unfurl_media=False
        )
        state = {
            "channel": resp.get("channel") or self.channel,
            "ts": resp["ts"],
            "seq": n.seq,
            "started_at": n.started_at,
        }
        return DeliveryResult.success(f"posted {state['ts']} in {state['channel']}", state)

    async def _update_root(self, n: Notification, root: dict[str, Any]) -> DeliveryResult | None:
        text, blocks = slack_blocks(n)
        try:
            await self.client.chat_update(channel=root["channel"], ts=root["ts"], text=text, blocks=blocks)
        except Exception as exc:  # noqa: BLE001
            # Logged by _failure. When permanent (the root was deleted, or is too old to
            # edit) the caller goes on: the thread reply still says it is resolved.
            return self._failure("chat.update", exc)
        return None

    # -- errors ------------------------------------------------------------------------------
    def _failure(self, method: str, exc: BaseException) -> DeliveryResult:
        result = _classify(method, exc)
        result.detail = redact(result.detail, self.client.token or "")
        log.log(
            logging.INFO if result.retryable else logging.WARNING,
            "slack %s to %s failed (%s): %s",
            method,
            self.channel,
            "retryable" if result.retryable else "permanent",
            result.detail,
        )
        return result


def _classify(method: str, exc: BaseException) -> DeliveryResult:
    # Never str(exc) for a SlackApiError: only the error code and status, which cannot
    # carry the request (and so the token).
    if isinstance(exc, SlackApiError):
        resp = exc.response
        status = int(getattr(resp, "status_code", 0) or 0)
        data = getattr(resp, "data", None)
        error = str(data.get("error", "unknown_error")) if isinstance(data, dict) else "unexpected_response"
        detail = f"slack {method}: {error} (HTTP {status})"
        headers = getattr(resp, "headers", None) or {}
        if status == 429 or error in ("ratelimited", "rate_limited"):
            return DeliveryResult.retry(detail, parse_retry_after(_header(headers, "Retry-After")))
        if status == 200 and error in _RETRYABLE_ERRORS:
            return DeliveryResult.retry(detail)
        if classify_http(status) == "retry":
            return DeliveryResult.retry(detail, parse_retry_after(_header(headers, "Retry-After")))
        return DeliveryResult.permanent(detail)
    if isinstance(exc, TimeoutError):
        return DeliveryResult.retry(f"slack {method}: timed out")
    if isinstance(exc, aiohttp.ClientError):
        return DeliveryResult.retry(f"slack {method}: {type(exc).__name__}: {exc}")
    if isinstance(exc, SlackClientError):
        return DeliveryResult.permanent(f"slack {method}: {type(exc).__name__}")
    # A bug, or a response slack-sdk could not parse: retrying will not help.
    return DeliveryResult.permanent(f"slack {method}: unexpected {type(exc).__name__}")


def _header(headers: Any, name: str) -> str | None:
    try:
        value = headers.get(name)
        if value is None:
            for k, v in headers.items():
                if k.lower() == name.lower():
                    return str(v)
        return None if value is None else str(value)
    except AttributeError:
        return None
