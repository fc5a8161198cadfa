"""Slack's sink: one message per incident, follow-ups in its thread.

The trigger posts a message and keeps its ``channel`` and ``ts``; updates and the resolve
reply in that thread, and the resolve also rewrites the root message so the channel shows
at a glance that it is over. Use one :class:`SlackSink` per channel; :class:`SlackConnection`
makes them, sharing one client and one :class:`ChannelPacer`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.web.async_client import AsyncWebClient

from alerts.model import Notification
from alerts.receivers.slack.config import SlackConfig
from alerts.receivers.slack.render import slack_blocks
from alerts.sinks import DeliveryResult, classify_http, parse_retry_after, redact

log = logging.getLogger(__name__)

# Errors Slack reports with HTTP 200 and ok=false that are about Slack, not about us.
_RETRYABLE_ERRORS = frozenset(
    {"ratelimited", "rate_limited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"}
)


class ChannelPacer:
    """Spaces calls per channel: one starts no sooner than ``interval`` seconds after the
    previous one to the same channel; other channels are not held back.

    Slack allows about one message per second per channel and answers bursts with 429s;
    waiting our turn costs the same time without the failed request. A caller reserves its
    slot before it sleeps, so concurrent posts to one channel queue up in arrival order.
    Share one pacer between the sinks of one workspace. ``clock`` and ``sleep`` are injected
    so tests run without waiting.
    """

    def __init__(
        self,
        interval: float = 1.0,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        self.interval = interval
        self.clock = clock
        self.sleep = sleep
        self._next: dict[str, float] = {}

    async def wait(self, channel: str) -> float:
        """Wait for ``channel``'s next slot; returns the seconds waited."""
        now = self.clock()
        at = max(now, self._next.get(channel, now))
        self._next[channel] = at + self.interval  # reserved before sleeping: no await above
        delay = at - now
        if delay > 0:
            await self.sleep(delay)
        return delay


class SlackSink:
    """Delivers to one Slack channel through a caller-built ``AsyncWebClient``.

    The client carries the token; build it with ``retry_handlers=[]`` so that retries
    (and their ``Retry-After`` waits) happen once, in :func:`alerts.retry.deliver_with_retry`,
    instead of inside slack-sdk as well. ``pacer`` (shared by the sinks of one workspace)
    spaces ``chat.postMessage`` calls to the channel; ``chat.update`` is not a new message
    and is not paced.
    """

    def __init__(
        self, client: AsyncWebClient, channel: str, *, name: str = "slack", pacer: ChannelPacer | None = None,
        interactive: bool = False,
    ) -> None:
        self.client = client
        self.channel = channel
        self.name = name
        self.pacer = pacer
        self.interactive = interactive  # root messages carry the answer buttons (the signing secret is set)

    async def _paced(self) -> None:
        # Keyed by the configured channel: replies go to the ID Slack answered with, which
        # is the same channel under another name.
        if self.pacer is not None:
            await self.pacer.wait(self.channel)

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
            await self._paced()
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

    async def post(self, text: str, blocks: list[dict[str, Any]]) -> DeliveryResult:
        """Post a message of its own to the channel (a digest): paced, not in a thread, not
        tied to one notification. ``state`` holds its ``channel`` and ``ts``."""
        try:
            await self._paced()
            resp = await self.client.chat_postMessage(
                channel=self.channel, text=text, blocks=blocks, unfurl_links=False, unfurl_media=False
            )
        except Exception as exc:  # noqa: BLE001 - every failure becomes a result
            return self._failure("chat.postMessage", exc)
        state = {"channel": resp.get("channel") or self.channel, "ts": resp["ts"]}
        return DeliveryResult.success(f"posted {state['ts']} in {state['channel']}", state)

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

    async def answer(self, channel: str, ts: str, text: str, blocks: list[dict[str, Any]], line: str) -> DeliveryResult:
        """After on-call pressed a button on the message ``ts``: rewrite it in place (``text``,
        ``blocks``: :func:`~alerts.receivers.slack.render.answered_message`), then say ``line``
        (who chose what, :func:`~alerts.receivers.slack.render.answered_text`) in its thread. The
        rewrite first: it is idempotent. A rewrite refused for good (the message was deleted or
        is too old to edit) does not stop the thread reply."""
        try:
            await self.client.chat_update(channel=channel, ts=ts, text=text, blocks=blocks)
        except Exception as exc:  # noqa: BLE001 - every failure becomes a result
            failed = self._failure("chat.update", exc)
            if failed.retryable:
                return failed
        try:
            await self._paced()
            await self.client.chat_postMessage(channel=channel, thread_ts=ts, text=line, unfurl_links=False,
                                               unfurl_media=False)
        except Exception as exc:  # noqa: BLE001 - every failure becomes a result
            return self._failure("chat.postMessage", exc)
        return DeliveryResult.success(f"answered {ts} in {channel}")

    async def _post_root(self, n: Notification) -> DeliveryResult:
        text, blocks = slack_blocks(n, interactive=self.interactive)
        await self._paced()
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


class SlackConnection:
    """One workspace: a client with the token (its ``retry_handlers=[]``: retries, and their
    ``Retry-After`` waits, happen once, in :mod:`alerts.retry`) and a pacer shared by the
    sinks of every channel. The HTTP session passed in is not used: slack-sdk keeps its own."""

    def __init__(self, cfg: SlackConfig, session: Any = None) -> None:
        assert cfg.token is not None, "connect a configured receiver"
        base = cfg.api_url if cfg.api_url.endswith("/") else cfg.api_url + "/"
        self.client = AsyncWebClient(token=cfg.token.get_secret_value(), base_url=base, timeout=10,
                                     retry_handlers=[])
        self.pacer = ChannelPacer(cfg.pacing_seconds)
        self.interactive = cfg.signing_secret is not None

    def sink(self, target: str) -> SlackSink:
        return SlackSink(self.client, target, name=f"slack:{target}", pacer=self.pacer, interactive=self.interactive)

    async def close(self) -> None:
        session = getattr(self.client, "session", None)
        if session is not None and not session.closed:
            await session.close()


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
