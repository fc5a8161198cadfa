"""The dev inbox: a stand-in for Slack and PagerDuty inside the worker's own web server.

Use it when nobody has given the dev stack a Slack token or a PagerDuty key (``tokenpulse dev``
turns it on then): the real receivers (``alerts/receivers/slack``, ``pagerduty``) deliver to
it over HTTP exactly as they would to Slack's Web API and PagerDuty's Events v2, and the
dashboard's Notifications panel (``GET /api/inbox``) shows each message as Slack would show
it -- header, fields, context, thread replies, the root message rewritten on resolve -- with
the PagerDuty events beside them. The first thing a new user sees is what on-call will get.
Not for production: it keeps the last :data:`KEEP` messages in memory and nothing else.

- ``POST /dev/slack/api/chat.postMessage`` and ``chat.update``: Slack's answers (``ok``,
  ``channel``, ``ts``; ``not_authed`` / ``invalid_auth`` without the dev token,
  ``message_not_found`` for an unknown ``ts``);
- ``POST /dev/pagerduty/v2/enqueue``: Events v2's answer (202, ``dedup_key``; 400 for a wrong
  routing key or event).

The secrets are made up per run (:meth:`DevInboxSpec.new`): the stand-in's paths are open in
the access middleware (the receivers do not hold the API token), and check their own.
"""

from __future__ import annotations

import hmac
import itertools
import secrets
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

__all__ = ["KEEP", "PREFIX", "DevInbox", "DevInboxSpec", "register_inbox"]

PREFIX = "/dev/"
SLACK_PATH = "/dev/slack/api/"
PAGERDUTY_PATH = "/dev/pagerduty/v2/enqueue"
KEEP = 300  # root messages (with their replies) and PagerDuty events kept, newest last
BODY_MAX = 256 * 1024


@dataclass(frozen=True)
class DevInboxSpec:
    """The stand-in's made-up credentials (never shown) and the URLs the receivers use."""

    slack_token: str = field(repr=False)
    pagerduty_key: str = field(repr=False)

    @classmethod
    def new(cls) -> DevInboxSpec:
        return cls(slack_token="xoxb-dev-inbox-" + secrets.token_hex(16), pagerduty_key=secrets.token_hex(16))

    @staticmethod
    def base_url(host: str, port: int) -> str:
        """The worker's own URL as the receivers in the same process reach it."""
        if host in ("0.0.0.0", "::", ""):  # bound to every interface: loopback is one of them
            host = "127.0.0.1"
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("utf-8", "surrogatepass"), b.encode("utf-8", "surrogatepass"))


class DevInbox:
    """What the stand-in received: Slack messages by (channel, ts) with their thread replies,
    and PagerDuty events, each with the time it arrived."""

    def __init__(self, spec: DevInboxSpec, clock: Any = time.time) -> None:
        self.spec = spec
        self.clock = clock
        self.roots: dict[tuple[str, str], dict[str, Any]] = {}
        self.order: deque[tuple[str, str]] = deque()
        self.pagerduty: deque[dict[str, Any]] = deque(maxlen=KEEP)
        self._ts = itertools.count(1)

    # -- Slack ---------------------------------------------------------------------------------
    def slack(self, method: str, token: str | None, body: dict[str, Any]) -> dict[str, Any]:
        """One Slack Web API call; the answer Slack would give."""
        if not token:
            return {"ok": False, "error": "not_authed"}
        if not _same(token, self.spec.slack_token):
            return {"ok": False, "error": "invalid_auth"}
        if method == "chat.postMessage":
            return self._post(body)
        if method == "chat.update":
            return self._update(body)
        if method == "auth.test":
            return {"ok": True, "team": "dev inbox", "user": "tokenpulse"}
        return {"ok": False, "error": "unknown_method"}

    def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        channel = str(body.get("channel") or "")
        if not channel:
            return {"ok": False, "error": "channel_not_found"}
        text, blocks = body.get("text"), _blocks(body.get("blocks"))
        if not text and not blocks:
            return {"ok": False, "error": "no_text"}
        now = self.clock()
        ts = f"{int(now)}.{next(self._ts):06d}"
        message = {"channel": channel, "ts": ts, "posted_at": now, "text": str(text or ""), "blocks": blocks}
        thread = body.get("thread_ts")
        if thread:
            root = self.roots.get((channel, str(thread)))
            if root is None:
                return {"ok": False, "error": "thread_not_found"}
            root["replies"].append(message)
        else:
            self.roots[(channel, ts)] = {**message, "replies": [], "edited_at": None}
            self.order.append((channel, ts))
            while len(self.order) > KEEP:
                self.roots.pop(self.order.popleft(), None)
        return {"ok": True, "channel": channel, "ts": ts, "message": {"ts": ts, "text": message["text"]}}

    def _update(self, body: dict[str, Any]) -> dict[str, Any]:
        root = self.roots.get((str(body.get("channel") or ""), str(body.get("ts") or "")))
        if root is None:
            return {"ok": False, "error": "message_not_found"}
        if body.get("text") is not None:
            root["text"] = str(body["text"])
        if body.get("blocks") is not None:
            root["blocks"] = _blocks(body["blocks"])
        root["edited_at"] = self.clock()
        return {"ok": True, "channel": root["channel"], "ts": root["ts"]}

    # -- PagerDuty -----------------------------------------------------------------------------
    def enqueue(self, body: Any) -> tuple[int, dict[str, Any]]:
        """One Events v2 event; the status and body PagerDuty would answer with."""
        if not isinstance(body, dict) or not _same(str(body.get("routing_key") or ""), self.spec.pagerduty_key):
            return 400, {"status": "invalid event", "message": "Event object is invalid",
                         "errors": ["routing_key is invalid"]}
        action = body.get("event_action")
        if action not in ("trigger", "acknowledge", "resolve"):
            return 400, {"status": "invalid event", "message": "Event object is invalid",
                         "errors": ["event_action must be trigger, acknowledge or resolve"]}
        dedup = str(body.get("dedup_key") or secrets.token_hex(8))
        event = {k: v for k, v in body.items() if k != "routing_key"}  # never shown, even made up
        self.pagerduty.append({"received_at": self.clock(), **event, "dedup_key": dedup})
        return 202, {"status": "success", "message": "Event processed", "dedup_key": dedup}

    # -- the API -------------------------------------------------------------------------------
    def view(self) -> dict[str, Any]:
        """``GET /api/inbox``: Slack root messages newest first (their replies oldest first),
        and PagerDuty events newest first."""
        slack = [self.roots[k] for k in reversed(self.order) if k in self.roots]
        return {"enabled": True, "slack": slack, "pagerduty": list(reversed(self.pagerduty)),
                "note": "the dev inbox: what Slack and PagerDuty would have received (no token was set)"}


def _blocks(value: Any) -> list[dict[str, Any]]:
    # slack-sdk sends blocks as a list in JSON, or as a JSON string in a form
    if isinstance(value, str):
        try:
            value = orjson.loads(value)
        except orjson.JSONDecodeError:
            return []
    return [b for b in value if isinstance(b, dict)] if isinstance(value, list) else []


async def _body(request: web.Request) -> dict[str, Any]:
    raw = await request.content.read(BODY_MAX + 1)
    if len(raw) > BODY_MAX:
        raise web.HTTPRequestEntityTooLarge(max_size=BODY_MAX, actual_size=len(raw))
    if request.content_type == "application/json":
        try:
            data = orjson.loads(raw) if raw else {}
        except orjson.JSONDecodeError:
            return {}
        return data if isinstance(data, dict) else {}
    from urllib.parse import parse_qsl

    return dict(parse_qsl(raw.decode("utf-8", "replace")))


def register_inbox(web_app: web.Application, inbox: DevInbox) -> None:
    """The stand-in's routes on the worker's aiohttp application."""

    async def slack(request: web.Request) -> web.Response:
        body = await _body(request)
        auth = request.headers.get("Authorization", "")
        token = auth[7:].strip() if auth.lower().startswith("bearer ") else str(body.pop("token", "") or "")
        return web.json_response(inbox.slack(request.match_info["method"], token or None, body))

    async def pagerduty(request: web.Request) -> web.Response:
        raw = await request.content.read(BODY_MAX + 1)
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            body = None
        status, answer = inbox.enqueue(body)
        return web.json_response(answer, status=status)

    web_app.router.add_post(SLACK_PATH + "{method}", slack)
    web_app.router.add_post(PAGERDUTY_PATH, pagerduty)
