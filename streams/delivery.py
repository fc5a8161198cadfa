"""Delivers notifications from the outbox to Slack, PagerDuty and the generic webhook.

Idempotent per alert key: the last delivered ``seq`` per sink is kept (in the ``deliveries``
table), so a redelivered outbox record is not sent twice, and Slack's root message ``ts`` is
kept so updates and the resolve go to the same thread. The webhook, when configured, gets
every notification (not only pages); it is last, so its retries never delay Slack or a page.
"""

from __future__ import annotations

import logging
from typing import Any

from alerts import Notification
from alerts.pagerduty import PagerDutySink
from alerts.retry import deliver_with_retry
from alerts.slack import SlackSink
from alerts.webhook import WebhookSink
from streams.config import StreamConfig
from streams.metrics import Metrics

log = logging.getLogger("tokenpulse.delivery")


class Deliverer:
    def __init__(self, cfg: StreamConfig, metrics: Metrics, max_attempts: int = 10) -> None:
        self.cfg = cfg
        self.metrics = metrics
        self.max_attempts = max_attempts
        self._slack_client: Any = None
        self._session: Any = None
        self._slack: dict[str, SlackSink] = {}
        self._pd: PagerDutySink | None = None
        self._webhook: WebhookSink | None = None

    def _slack_for(self, n: Notification) -> SlackSink | None:
        s = self.cfg.slack
        if s is None:
            return None
        team = (n.labels or {}).get("team")
        channel = s.team_channels.get(team, s.default_channel) if team else s.default_channel
        sink = self._slack.get(channel)
        if sink is None:
            from slack_sdk.web.async_client import AsyncWebClient

            if self._slack_client is None:
                base = s.api_url if s.api_url.endswith("/") else s.api_url + "/"
                self._slack_client = AsyncWebClient(token=s.token, base_url=base, timeout=10)
            sink = self._slack[channel] = SlackSink(self._slack_client, channel)
        return sink

    def _pagerduty(self) -> PagerDutySink | None:
        p = self.cfg.pagerduty
        if p is None:
            return None
        if self._pd is None:
            self._pd = PagerDutySink(self._http(), p.url, p.routing_key)
        return self._pd

    def _webhook_sink(self) -> WebhookSink | None:
        w = self.cfg.webhook
        if w is None:
            return None
        if self._webhook is None:
            self._webhook = WebhookSink(self._http(), w.url, w.secret)
        return self._webhook

    def _http(self) -> Any:
        # One aiohttp session for the HTTP sinks, made inside the running loop on first use.
        if self._session is None:
            import aiohttp

            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        return self._session

    async def deliver(self, record: dict[str, Any], prior: dict[str, Any] | None) -> dict[str, Any]:
        n = Notification.from_dict(record)
        state: dict[str, Any] = {k: dict(v) for k, v in (prior or {}).items()}
        sinks: list[Any] = []
        slack = self._slack_for(n)
        if slack is not None:
            sinks.append(slack)
        if n.page:
            pd = self._pagerduty()
            if pd is not None:
                sinks.append(pd)
        webhook = self._webhook_sink()
        if webhook is not None:
            sinks.append(webhook)
        for sink in sinks:
            mine = state.get(sink.name, {})
            if mine.get("seq", -1) >= n.seq:
                continue  # already delivered: a redelivered outbox record
            result = await deliver_with_retry(sink, n, mine.get("state") or None, max_attempts=self.max_attempts)
            entry = {"seq": n.seq if result.ok else mine.get("seq", -1), "ok": result.ok, "detail": result.detail,
                     "state": {**(mine.get("state") or {}), **result.state}}
            state[sink.name] = entry
            labels = {"sink": sink.name, "action": n.action}
            if result.ok:
                self.metrics.inc("alerts_sent_total", labels=labels)
            else:
                self.metrics.inc("alerts_failed_total", labels=labels)
                log.warning("delivery to %s failed for %s: %s", sink.name, n.key, result.detail)
        return state

    async def close(self) -> None:
        if self._slack_client is not None:
            session = getattr(self._slack_client, "session", None)
            if session is not None and not session.closed:
                await session.close()
        if self._session is not None and not self._session.closed:
            await self._session.close()
