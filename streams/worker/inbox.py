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

The answer buttons work too, without Slack: ``tokenpulse dev`` gives the stand-in Slack a made-up
signing secret (so alerts carry the buttons and the worker serves ``POST /slack/actions``), the
Notifications panel draws the buttons, and a press there is ``POST /api/inbox/press``
(:func:`register_inbox_press`; behind the API token like the rest of ``/api/``): the inbox builds
the ``block_actions`` request Slack would send for that button of that message, signs it with
the run's signing secret, and hands it to the very handler of ``/slack/actions``, which verifies
it like any other. The worker then applies the answer and rewrites the message in the inbox, as
it would in Slack.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import secrets
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import orjson
from aiohttp import web

from streams.worker.slack_actions import Handle

__all__ = ["DEV_USER", "KEEP", "PRESS_PATH", "PREFIX", "DevInbox", "DevInboxSpec", "register_inbox",
           "register_inbox_press"]

PREFIX = "/dev/"
SLACK_PATH = "/dev/slack/api/"
PAGERDUTY_PATH = "/dev/pagerduty/v2/enqueue"
KEEP = 300  # root messages (with their replies) and PagerDuty events kept, newest last
BODY_MAX = 256 * 1024
PRESS_PATH = "/api/inbox/press"
PRESS_MAX = 4096  # {"channel", "ts", "action_id"}
DEV_USER = {"id": "UDEVINBOX", "username": "dev-inbox", "name": "dev-inbox"}  # who presses in the dashboard


@dataclass(frozen=True)
class DevInboxSpec:
    """The stand-in's made-up credentials (never shown) and the URLs the receivers use."""

    slack_token: str = field(repr=False)
    pagerduty_key: str = field(repr=False)
    signing_secret: str = field(default="", repr=False)  # signs the presses of the dashboard's buttons

    @classmethod
    def new(cls) -> DevInboxSpec:
        return cls(slack_token="xoxb-dev-inbox-" + secrets.token_hex(16), pagerduty_key=secrets.token_hex(16),
                   signing_secret=secrets.token_hex(32))

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
        self.pressable = False  # its buttons can be pressed (register_inbox_press)

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

    def press(self, channel: str, ts: str, action_id: str) -> tuple[str, str, bytes] | str:
        """The signed request Slack would send when :data:`DEV_USER` presses the button
        ``action_id`` on the root message ``(channel, ts)``: its ``X-Slack-Request-Timestamp``,
        ``X-Slack-Signature`` and body; or why there is none (no such message or button). The
        button's value is the inbox's copy, never the dashboard's."""
        root = self.roots.get((channel, ts))
        if root is None:
            return "message_not_found"
        button = next((e for b in root["blocks"] if b.get("type") == "actions" for e in b.get("elements") or ()
                       if isinstance(e, dict) and e.get("action_id") == action_id), None)
        if button is None:
            return "button_not_found"
        if not self.spec.signing_secret:
            return "no_signing_secret"
        now = self.clock()
        payload = {"type": "block_actions", "user": DEV_USER, "api_app_id": "ADEVINBOX",
                   "container": {"type": "message", "channel_id": channel, "message_ts": ts},
                   "channel": {"id": channel}, "message": {"ts": ts, "text": root["text"]},
                   "actions": [{"type": "button", "action_id": action_id, "block_id": button.get("block_id"),
                                "value": button.get("value"), "action_ts": f"{now:.6f}"}]}
        body = urlencode({"payload": orjson.dumps(payload).decode()}).encode()
        timestamp = str(int(now))
        mac = hmac.new(self.spec.signing_secret.encode(), b"v0:" + timestamp.encode() + b":" + body, hashlib.sha256)
        return timestamp, "v0=" + mac.hexdigest(), body

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
        return {"enabled": True, "pressable": self.pressable, "slack": slack, "pagerduty": list(reversed(self.pagerduty)),
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


def register_inbox_press(web_app: web.Application, inbox: DevInbox, handle: Handle) -> None:
    """``POST /api/inbox/press`` (JSON ``{"channel", "ts", "action_id"}``): a press of a button
    drawn by the Notifications panel, signed by the inbox and answered by ``handle`` (what
    ``POST /slack/actions`` does with a request, :func:`streams.worker.slack_actions.register_slack_actions`).
    Only JSON is taken: a page elsewhere cannot send it from a form without a CORS preflight."""

    async def press(request: web.Request) -> web.Response:
        if request.content_type != "application/json":
            return web.json_response({"error": "Content-Type: application/json only"}, status=415)
        raw = await request.content.read(PRESS_MAX + 1)
        if len(raw) > PRESS_MAX:
            return web.json_response({"error": "body: too large"}, status=413)
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            body = None
        if not isinstance(body, dict):
            return web.json_response({"error": "body: not a JSON object"}, status=400)
        for name in ("channel", "ts", "action_id"):
            if not isinstance(body.get(name), str) or not body[name]:
                return web.json_response({"error": f"{name}: missing or not a string"}, status=400)
        signed = inbox.press(body["channel"], body["ts"], body["action_id"])
        if isinstance(signed, str):
            return web.json_response({"error": signed}, status=404)
        resp = handle(*signed)
        if resp.status != 200:
            return resp  # the refusal of /slack/actions, as it is
        return web.json_response({"ok": True, "action_id": body["action_id"]})

    web_app.router.add_post(PRESS_PATH, press)
    inbox.pressable = True
