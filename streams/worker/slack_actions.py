"""Slack's interactivity endpoint, ``POST /slack/actions``: the buttons of an alert message.

Use :func:`register_slack_actions` on the worker's aiohttp application when the Slack signing
secret (``TOKENPULSE_SLACK_SIGNING_SECRET``) is set; without it the route does not exist (404),
so nobody can press a button that was never rendered.

Slack cannot send the API token, so the access middleware lets ``/slack/actions`` through
(:data:`streams.worker.access.OPEN_PATHS`) and the request's signature is its authentication
(:class:`SlackVerifier`, Slack's "verifying requests" recipe):

- the body is read up to :data:`BODY_MAX` and no further (a larger one is refused before the
  signature is even computed);
- ``X-Slack-Request-Timestamp`` must be within :data:`MAX_SKEW_S` of our clock (a captured
  request cannot be replayed later);
- ``X-Slack-Signature`` must be ``v0=`` + HMAC-SHA256(secret, ``v0:<timestamp>:<body>``),
  compared in constant time;
- a signature already accepted within that window is refused (a captured request cannot be
  replayed sooner either); the memory of signatures is bounded (:data:`REPLAY_KEEP`).

A refused request gets 401 (413 for a body too large) and counts in
``tokenpulse_slack_actions_rejected_total{reason}``; it never reaches ``on_press``. An accepted
press is handed to ``on_press`` (which only enqueues: Slack wants an answer within 3 seconds)
and answered with an empty 200, which leaves the message as it is until the worker that owns
the series has applied the answer and rewritten it (``chat.update``).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

import orjson
from aiohttp import web

from alerts.receivers.slack.render import FEEDBACK_ACTIONS, parse_action_value

__all__ = ["BODY_MAX", "MAX_SKEW_S", "PATH", "REPLAY_KEEP", "Handle", "Press", "SlackVerifier", "parse_press",
           "register_slack_actions"]

PATH = "/slack/actions"
BODY_MAX = 64 * 1024  # a block_actions payload is a few KiB; Slack's largest are well under this
MAX_SKEW_S = 300  # Slack's own recommendation: 5 minutes
REPLAY_KEEP = 10_000  # signatures remembered; far more than Slack sends in 5 minutes to one app

REASONS = ("missing", "malformed", "stale", "forged", "replay", "too_large", "invalid")


class SlackVerifier:
    """Checks Slack's request signature (v0), its age, and that it was not seen before.

    ``check`` returns None for a request to act on, or the reason to refuse it (one of
    :data:`REASONS`). The signature is checked before the replay memory is consulted or
    filled, so forged requests cannot push genuine ones out of it. ``clock`` is injected so
    tests control time. One verifier per worker: the memory is per process, which is enough
    because a request reaches one worker only (Slack sends each once to one URL).
    """

    def __init__(self, secret: str, *, clock: Callable[[], float] = time.time, max_skew: float = MAX_SKEW_S,
                 keep: int = REPLAY_KEEP) -> None:
        if not secret:
            raise ValueError("the Slack signing secret is empty")
        self._key = secret.encode("utf-8")
        self.clock = clock
        self.max_skew = max_skew
        self.keep = keep
        self._seen: OrderedDict[str, float] = OrderedDict()  # signature -> its timestamp, oldest first

    def __repr__(self) -> str:  # never the secret
        return f"SlackVerifier(max_skew={self.max_skew}, keep={self.keep}, seen={len(self._seen)})"

    def signature(self, timestamp: str, body: bytes) -> str:
        """What Slack signs a request with: ``v0=`` and the hex HMAC-SHA256 of
        ``v0:<timestamp>:<body>`` (tests and the dev stand-in sign with it)."""
        mac = hmac.new(self._key, b"v0:" + timestamp.encode("ascii") + b":" + body, hashlib.sha256)
        return "v0=" + mac.hexdigest()

    def check(self, timestamp: str | None, signature: str | None, body: bytes) -> str | None:
        if not timestamp or not signature:
            return "missing"
        if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12):
            return "malformed"
        now = self.clock()
        ts = int(timestamp)
        if abs(now - ts) > self.max_skew:
            return "stale"
        expected = self.signature(timestamp, body)
        if not hmac.compare_digest(expected.encode("ascii"), signature.encode("utf-8", "surrogatepass")):
            return "forged"
        self._forget(now)
        if signature in self._seen:
            return "replay"
        self._seen[signature] = ts
        while len(self._seen) > self.keep:
            self._seen.popitem(last=False)
        return None

    def _forget(self, now: float) -> None:
        # A signature older than the window is refused as stale anyway: no need to remember it.
        # Entries are in arrival order, which is timestamp order to within the allowed skew.
        while self._seen:
            sig, ts = next(iter(self._seen.items()))
            if now - ts <= 2 * self.max_skew:
                break
            del self._seen[sig]


@dataclass(frozen=True)
class Press:
    """One button press, as Slack reported it: which answer, to which alert, by whom, and the
    message it was pressed on."""

    id: str  # unique per press: Slack's action_ts with the user and the message
    action: str  # one of alerts.receivers.slack.render.FEEDBACK_ACTIONS
    key: str  # the alert key ("cost_spike:team=ads")
    series: str
    started_at: float | None  # the incident the message was posted for
    window_end: float | None  # the window of the notification the message shows
    user_id: str
    user_name: str
    channel: str
    message_ts: str
    at: float  # when it was pressed (Slack's action_ts)

    def to_event(self) -> dict[str, Any]:
        """The feedback event (``<prefix>.feedback``) for this press."""
        return {"id": self.id, "action": self.action, "key": self.key, "series": self.series,
                "started_at": self.started_at, "window_end": self.window_end, "user_id": self.user_id,
                "user": self.user_name, "channel": self.channel, "message_ts": self.message_ts, "at": self.at,
                "source": "slack"}


def _str(d: Any, name: str, where: str) -> str:
    v = d.get(name) if isinstance(d, dict) else None
    if not isinstance(v, str) or not v:
        raise ValueError(f"{where}.{name}: missing or not a string")
    return v


def parse_press(body: bytes) -> Press:
    """The press in a ``block_actions`` request body (form-encoded, ``payload=<json>``).
    Raises ValueError naming the field that is wrong; the body is never echoed."""
    try:
        form = parse_qs(body.decode("utf-8"), strict_parsing=True, max_num_fields=8)
    except (UnicodeDecodeError, ValueError):
        raise ValueError("body: not a form (payload=...)") from None
    raw = form.get("payload")
    if not raw or len(raw) != 1:
        raise ValueError("payload: missing")
    try:
        p = orjson.loads(raw[0])
    except orjson.JSONDecodeError:
        raise ValueError("payload: not JSON") from None
    if not isinstance(p, dict) or p.get("type") != "block_actions":
        raise ValueError("payload.type: not block_actions")
    actions = p.get("actions")
    if not isinstance(actions, list) or not actions or not isinstance(actions[0], dict):
        raise ValueError("payload.actions: missing")
    act = actions[0]
    action = _str(act, "action_id", "actions[0]")
    if action not in FEEDBACK_ACTIONS:
        raise ValueError("actions[0].action_id: not a tokenpulse answer")
    value = parse_action_value(_str(act, "value", "actions[0]"))
    user = p.get("user") or {}
    user_id = _str(user, "id", "payload.user")
    user_name = str(user.get("username") or user.get("name") or user_id)
    container = p.get("container") or {}
    channel = str(container.get("channel_id") or (p.get("channel") or {}).get("id") or "")
    message: dict[str, Any] = p["message"] if isinstance(p.get("message"), dict) else {}
    message_ts = str(container.get("message_ts") or message.get("ts") or "")
    if not channel or not message_ts:
        raise ValueError("payload.container: no channel_id or message_ts")
    action_ts = str(act.get("action_ts") or "")
    try:
        at = float(action_ts)
    except ValueError:
        raise ValueError("actions[0].action_ts: not a Slack timestamp") from None
    return Press(id=f"slack:{channel}:{message_ts}:{user_id}:{action_ts}", action=action, key=value["key"],
                 series=value["series"], started_at=value.get("started_at"), window_end=value.get("window_end"),
                 user_id=user_id, user_name=user_name, channel=channel, message_ts=message_ts, at=at)


Handle = Callable[[str | None, str | None, bytes], web.Response]
"""A request's ``X-Slack-Request-Timestamp``, ``X-Slack-Signature`` and body, to its answer."""


def register_slack_actions(web_app: web.Application, verifier: SlackVerifier, on_press: Callable[[Press], Any],
                           metrics: Any = None) -> Handle:
    """``POST /slack/actions`` on ``web_app``: verify, hand the press to ``on_press`` (which must
    not block: it enqueues), answer at once. Returns what the route does with a request's
    signature headers and body: the dev inbox's buttons (:mod:`streams.worker.inbox`) hand it
    the requests they sign, so a press there takes the same path as one from Slack."""

    def refuse(reason: str, status: int = 401) -> web.Response:
        if metrics is not None:
            metrics.inc("slack_actions_rejected_total", labels={"reason": reason})
        # the reason only: never the body or the headers
        return web.json_response({"error": f"refused: {reason}"}, status=status)

    async def actions(request: web.Request) -> web.Response:
        if request.content_length is not None and request.content_length > BODY_MAX:
            return refuse("too_large", 413)
        raw = await request.content.read(BODY_MAX + 1)
        return handle(request.headers.get("X-Slack-Request-Timestamp"), request.headers.get("X-Slack-Signature"),
                      raw)

    def handle(timestamp: str | None, signature: str | None, raw: bytes) -> web.Response:
        if len(raw) > BODY_MAX:
            return refuse("too_large", 413)
        why = verifier.check(timestamp, signature, raw)
        if why is not None:
            return refuse(why)
        try:
            press = parse_press(raw)
        except ValueError as exc:
            return refuse("invalid", 400) if metrics is None else _invalid(metrics, str(exc))
        on_press(press)
        if metrics is not None:
            metrics.inc("slack_actions_total", labels={"action": press.action})
        return web.Response(status=200)

    web_app.router.add_post(PATH, actions)
    return handle


def _invalid(metrics: Any, why: str) -> web.Response:
    # Signed by Slack but not a press of ours (another app's button, a shape we do not read):
    # 400 with the field at fault, which Slack shows in the app's logs only.
    metrics.inc("slack_actions_rejected_total", labels={"reason": "invalid"})
    return web.json_response({"error": why}, status=400)
