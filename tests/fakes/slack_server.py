"""A local server speaking enough of the Slack Web API for tokenpulse: ``chat.postMessage``
and ``chat.update``.

Behaves like Slack where it matters to a client: Bearer token (or ``token`` field) checked,
form or JSON bodies, HTTP 200 with ``{"ok": false, "error": ...}`` for API errors, channel
names answered with channel IDs, unique increasing ``ts``, threads, ``chat.update`` only by
channel ID and existing ``ts``, and Block Kit limits checked (``invalid_blocks``).
``reply_delay`` makes every thread reply take that long, as Slack's own latency does: a test that
asserts on a reply as soon as it sees something sent before it then fails every time, not now
and then.

    server = FakeSlackServer(token="xoxb-test")
    url = server.start()                      # or: await server.start_async()
    client = AsyncWebClient(token="xoxb-test", base_url=f"{url}/api/")
    ...
    server.stop()
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import time
from typing import Any

import orjson
from aiohttp import web

from tests.fakes._server import FakeServer, json_response

HEADER_MAX = 150
SECTION_MAX = 3000
BLOCKS_MAX = 50


def channel_id(name: str) -> str:
    """The stable fake ID of a channel name ("#alerts" -> "C…")."""
    if _is_id(name):
        return name
    return "C" + hashlib.sha1(name.lstrip("#").encode()).hexdigest()[:10].upper()


def _is_id(channel: str) -> bool:
    return len(channel) >= 9 and channel[0] in "CGD" and channel[1:].isalnum() and channel.upper() == channel


def _u16(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def check_blocks(blocks: Any) -> str | None:
    """Why Slack would reject these blocks, or ``None``."""
    if not isinstance(blocks, list) or len(blocks) > BLOCKS_MAX:
        return "too many blocks" if isinstance(blocks, list) else "blocks must be a list"
    for i, b in enumerate(blocks):
        if not isinstance(b, dict) or "type" not in b:
            return f"block {i} has no type"
        t = b["type"]
        if t == "header":
            text = b.get("text") or {}
            if text.get("type") != "plain_text" or not text.get("text") or _u16(text["text"]) > HEADER_MAX:
                return f"block {i}: header must be plain_text of 1..{HEADER_MAX} characters"
        elif t == "section":
            text = b.get("text")
            if text is not None and (not text.get("text") or _u16(text["text"]) > SECTION_MAX):
                return f"block {i}: section text must be 1..{SECTION_MAX} characters"
        elif t == "context":
            els = b.get("elements") or []
            if not els or len(els) > 10:
                return f"block {i}: context needs 1..10 elements"
        elif t == "actions":
            why = _check_actions(b.get("elements"))
            if why:
                return f"block {i}: {why}"
    return None


def _check_actions(els: Any) -> str | None:
    # Slack's rules for buttons: 1..25 elements, unique action_ids (≤ 255), a plain_text label
    # of ≤ 75 characters, a value of ≤ 2000, style primary or danger
    if not isinstance(els, list) or not 1 <= len(els) <= 25:
        return "actions needs 1..25 elements"
    ids = [e.get("action_id") for e in els if isinstance(e, dict)]
    if len(set(ids)) != len(els):
        return "action_ids must be unique"
    for e in els:
        if e.get("type") != "button":
            return "only buttons here"
        text = e.get("text") or {}
        if text.get("type") != "plain_text" or not 1 <= _u16(text.get("text") or "") <= 75:
            return "a button's text must be plain_text of 1..75 characters"
        if not isinstance(e.get("action_id"), str) or not 1 <= len(e["action_id"]) <= 255:
            return "a button needs an action_id"
        if "value" in e and (not isinstance(e["value"], str) or len(e["value"]) > 2000):
            return "a button's value must be a string of at most 2000 characters"
        if e.get("style") not in (None, "primary", "danger"):
            return "a button's style must be primary or danger"
    return None


class FakeSlackServer(FakeServer):
    name = "slack"

    def __init__(self, token: str = "xoxb-fake-token", *, channels: set[str] | None = None, **kw: Any) -> None:
        super().__init__(**kw)
        self.token = token
        # None: every channel exists. Otherwise names ("#x") and/or IDs that exist.
        self.channels = channels
        self.messages: dict[tuple[str, str], dict[str, Any]] = {}
        self._ts = itertools.count(1)
        self.reply_delay = 0.0  # seconds before a thread reply is stored and answered

    def default_failure_body(self, status: int) -> Any:
        if status == 429:
            return {"ok": False, "error": "ratelimited"}
        return super().default_failure_body(status)

    # -- views for assertions ----------------------------------------------------------------
    def calls(self, method: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [r for r in self.requests if method is None or r["method"] == method]

    def thread(self, channel: str, ts: str) -> list[dict[str, Any]]:
        with self._lock:
            return [m for (c, _), m in self.messages.items() if c == channel and m.get("thread_ts") == ts]

    # -- the API -----------------------------------------------------------------------------
    def make_app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/api/{method}", self._handle)
        return app

    async def _handle(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        body = await _parse_body(request)
        token = _bearer(request) or str(body.pop("token", "") or "")
        entry: dict[str, Any] = {"method": method, "body": body, "authorized": token == self.token,
                                 "at": time.time()}  # arrived: before any reply_delay
        canned = self._injected()
        if canned is not None:
            entry["status"] = canned.status
            self._record(entry)
            return self._respond(canned)
        if not token:
            result: dict[str, Any] = {"ok": False, "error": "not_authed"}
        elif token != self.token:
            result = {"ok": False, "error": "invalid_auth"}
        elif method == "chat.postMessage":
            if self.reply_delay > 0 and body.get("thread_ts"):
                await asyncio.sleep(self.reply_delay)
            result = self._post_message(body)
        elif method == "chat.update":
            result = self._update(body)
        else:
            entry["status"] = 404
            self._record(entry)
            return json_response({"ok": False, "error": "unknown_method"}, status=404)
        entry["status"] = 200
        entry["response"] = result
        self._record(entry)
        return json_response(result)

    def _resolve_channel(self, channel: str) -> str | None:
        if not channel:
            return None
        if self.channels is not None:
            known = {channel_id(c) for c in self.channels}
            if channel_id(channel) not in known:
                return None
        return channel_id(channel)

    def _post_message(self, body: dict[str, Any]) -> dict[str, Any]:
        cid = self._resolve_channel(str(body.get("channel", "")))
        if cid is None:
            return {"ok": False, "error": "channel_not_found"}
        blocks = body.get("blocks")
        text = body.get("text")
        if not text and not blocks:
            return {"ok": False, "error": "no_text"}
        if blocks is not None:
            why = check_blocks(blocks)
            if why:
                return {"ok": False, "error": "invalid_blocks", "errors": [why]}
        ts = f"{int(time.time())}.{next(self._ts):06d}"
        message: dict[str, Any] = {"type": "message", "ts": ts, "text": text or "", "blocks": blocks or []}
        if body.get("thread_ts"):
            message["thread_ts"] = str(body["thread_ts"])
        with self._lock:
            self.messages[(cid, ts)] = message
        return {"ok": True, "channel": cid, "ts": ts, "message": message}

    def _update(self, body: dict[str, Any]) -> dict[str, Any]:
        channel = str(body.get("channel", ""))
        ts = str(body.get("ts", ""))
        # Like Slack: chat.update wants the channel ID that chat.postMessage returned.
        if not _is_id(channel) or self._resolve_channel(channel) is None:
            return {"ok": False, "error": "channel_not_found"}
        with self._lock:
            message = self.messages.get((channel, ts))
        if message is None:
            return {"ok": False, "error": "message_not_found"}
        blocks = body.get("blocks")
        if blocks is not None:
            why = check_blocks(blocks)
            if why:
                return {"ok": False, "error": "invalid_blocks", "errors": [why]}
        with self._lock:
            if body.get("text") is not None:
                message["text"] = body["text"]
            if blocks is not None:
                message["blocks"] = blocks
            message["edited"] = True
        return {"ok": True, "channel": channel, "ts": ts, "text": message["text"]}


def _bearer(request: web.Request) -> str | None:
    auth = request.headers.get("Authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return None


async def _parse_body(request: web.Request) -> dict[str, Any]:
    if request.content_type == "application/json":
        raw = await request.read()
        try:
            data = orjson.loads(raw) if raw else {}
        except orjson.JSONDecodeError:
            return {}
        return data if isinstance(data, dict) else {}
    form = await request.post()
    out: dict[str, Any] = {}
    for k, v in form.items():
        value: Any = v if isinstance(v, str) else str(v)
        if k in ("blocks", "attachments", "metadata") and isinstance(value, str):
            try:
                value = orjson.loads(value)  # form posts carry structured fields as JSON text
            except orjson.JSONDecodeError:
                pass
        out[k] = value
    return out
