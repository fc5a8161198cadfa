"""PagerDuty's webhooks (v3), ``POST /pagerduty/webhook``: a page acknowledged or resolved in
PagerDuty acknowledges or resolves the tokenpulse alert, and its Slack thread says so.

Use :func:`register_pagerduty_webhook` on the worker's aiohttp application when the webhook
subscription's secret (``TOKENPULSE_PAGERDUTY_WEBHOOK_SECRET``) is set; without it the route does
not exist (404). PagerDuty cannot send the API token, so the access middleware lets the path
through (:data:`streams.worker.access.OPEN_PATHS`) and the signature is its authentication:

- the body is read up to :data:`BODY_MAX` and no further (413 beyond, before any HMAC);
- ``X-PagerDuty-Signature`` holds one or more ``v1=<hex HMAC-SHA256 of the body>``, comma
  separated (two while a secret is rotated); one must match, compared in constant time;
- a replayed delivery changes nothing: each webhook event has an ``id``, which becomes the
  answer's id, and the feedback worker applies an id once (PagerDuty signs no timestamp, so an
  old delivery cannot be told from a retry; applying it once is what matters).

A refused request gets 401 (413 for the size) and counts in
``tokenpulse_pagerduty_webhooks_rejected_total{reason}``. Of an accepted one, the events
``incident.acknowledged`` and ``incident.resolved`` of incidents that tokenpulse opened (their
``incident_key`` is the ``dedup_key`` it sent: the alert key) become feedback events
(``tokenpulse_ack``, ``tokenpulse_resolve``, ``source: pagerduty``) on ``<prefix>.feedback``,
applied by the worker that judges the series (:mod:`streams.worker.feedback`); every other event
is answered 200 and counted as ignored (a subscription usually sends more kinds than these).

Any worker may receive a webhook (a load balancer picks one), but only the workers delivering
an alert hold it. A worker that does not know the incident hands the signed request, as
received, to its peers (``forward``: :mod:`streams.worker.peers`, marked forwarded so that it
goes no further): a peer that holds the alert takes it (outcome ``forwarded`` here), none does
(``unknown_alert``), or a peer did not answer in time (``peer_unreachable``: 503, so that
PagerDuty delivers it again; the answer's id makes a second delivery harmless).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from aiohttp import web

from alerts.receivers.pagerduty.render import pd_dedup_key
from streams.worker.peers import FORWARDED, Peers

__all__ = ["ACTIONS", "BODY_MAX", "PATH", "Forward", "PageAnswer", "PagerDutyVerifier", "forward_to_peers", "page_event",
           "parse_webhook", "register_pagerduty_webhook"]

PATH = "/pagerduty/webhook"
BODY_MAX = 64 * 1024  # a v3 incident event is a few KiB
SIGNATURES_MAX = 8  # v1=... entries read from the header (rotation sends two)
ACTIONS = {"incident.acknowledged": "tokenpulse_ack", "incident.resolved": "tokenpulse_resolve"}
REASONS = ("missing", "malformed", "forged", "too_large", "invalid")


class PagerDutyVerifier:
    """Checks ``X-PagerDuty-Signature`` (v1) against the body: ``check`` returns None for a
    request to act on, or the reason to refuse it (one of :data:`REASONS`)."""

    def __init__(self, secret: str) -> None:
        if not secret:
            raise ValueError("the PagerDuty webhook secret is empty")
        self._key = secret.encode("utf-8")

    def __repr__(self) -> str:  # never the secret
        return "PagerDutyVerifier()"

    def signature(self, body: bytes) -> str:
        """What PagerDuty sends for ``body``: ``v1=`` and the hex HMAC-SHA256 (tests sign with it)."""
        return "v1=" + hmac.new(self._key, body, hashlib.sha256).hexdigest()

    def check(self, header: str | None, body: bytes) -> str | None:
        if not header:
            return "missing"
        given = [s.strip() for s in header.split(",")[:SIGNATURES_MAX]]
        sigs = [s[3:] for s in given if s.startswith("v1=")]
        if not sigs or any(len(s) != 64 or not s.isascii() for s in sigs):
            return "malformed"
        want = hmac.new(self._key, body, hashlib.sha256).hexdigest().encode("ascii")
        ok = False
        for s in sigs:  # every one compared: the time taken does not say which matched
            ok |= hmac.compare_digest(want, s.encode("ascii"))
        return None if ok else "forged"


@dataclass(frozen=True)
class PageAnswer:
    """An incident acknowledged or resolved in PagerDuty: the webhook event's id, the answer it
    is (``tokenpulse_ack`` / ``tokenpulse_resolve``), the incident's key (our ``dedup_key``),
    who (the agent's summary) and when (``occurred_at``, epoch seconds)."""

    id: str
    action: str
    incident_key: str
    user: str
    user_id: str
    at: float
    url: str


def _field(d: Any, name: str, where: str) -> str:
    v = d.get(name) if isinstance(d, dict) else None
    if not isinstance(v, str) or not v:
        raise ValueError(f"{where}.{name}: missing or not a string")
    return v


def parse_webhook(body: bytes) -> PageAnswer | None:
    """The answer in a v3 webhook body; None for an event that is not one (another type, or an
    incident without an ``incident_key``, which tokenpulse did not open). Raises ValueError
    naming the field that is wrong; the body is never echoed."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise ValueError("body: not JSON") from None
    event = doc.get("event") if isinstance(doc, dict) else None
    if not isinstance(event, dict):
        raise ValueError("event: missing")
    kind = _field(event, "event_type", "event")
    if kind not in ACTIONS:
        return None
    data = event.get("data")
    if not isinstance(data, dict):
        raise ValueError("event.data: missing")
    key = data.get("incident_key")
    if not isinstance(key, str) or not key:
        return None
    occurred = _field(event, "occurred_at", "event")
    try:
        at = datetime.fromisoformat(occurred.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise ValueError("event.occurred_at: not an ISO 8601 time") from None
    agent = event.get("agent")
    if not isinstance(agent, dict):
        agent = {}
    return PageAnswer(id="pagerduty:" + _field(event, "id", "event"), action=ACTIONS[kind], incident_key=key,
                      user=str(agent.get("summary") or "PagerDuty"), user_id=str(agent.get("id") or ""), at=at,
                      url=str(data.get("html_url") or ""))


def page_event(answer: PageAnswer, alerts: Any, deliveries: Any) -> dict[str, Any] | None:
    """The feedback event (``<prefix>.feedback``) for ``answer``: the alert whose ``dedup_key``
    is the incident's key (``alerts``: the ``alerts`` table's items, the latest notification of
    each key), with the Slack message of its incident when one was posted (``deliveries``: the
    ``deliveries`` table, whose ``slack:<channel>`` entries keep the root's ``channel`` and
    ``ts``), so the thread says who acknowledged or resolved it. None: no alert of this worker
    has that key (a page of another tool on the same service, or an alert another worker holds)."""
    rec = next((r for k, r in alerts if r and pd_dedup_key(str(k)) == answer.incident_key), None)
    if rec is None:
        return None
    key = str(rec.get("key") or "")
    channel = message_ts = None
    for name, entry in ((deliveries.get(key) or {}).items()):
        st = entry.get("state") if isinstance(entry, dict) else None
        if str(name).startswith("slack:") and isinstance(st, dict) and st.get("channel") and st.get("ts"):
            channel, message_ts = str(st["channel"]), str(st["ts"])
            break
    return {"id": answer.id, "action": answer.action, "key": key, "series": rec.get("series"),
            "started_at": rec.get("started_at"), "window_end": rec.get("window_end"), "user_id": answer.user_id,
            "user": answer.user, "channel": channel, "message_ts": message_ts, "at": answer.at,
            "source": "pagerduty", "url": answer.url}


Forward = Callable[[bytes, str | None], Awaitable[bool | None]]
"""Hands a signed webhook (body, ``X-PagerDuty-Signature``) to the peers: True when one took it,
False when none holds the alert, None when a peer did not answer."""


def forward_to_peers(peers: Callable[[], Peers | None]) -> Forward:
    """The :data:`Forward` of a worker: the signed request, as received, to every peer holding a
    partition this worker lacks (:meth:`streams.worker.peers.Peers.ask`; each peer checks the
    signature again). None (deliver again) only when a peer that may hold the alert did not
    answer; a partition nobody holds yet has no alert to find."""

    async def forward(raw: bytes, signature: str | None) -> bool | None:
        p = peers()
        if p is None:
            return False
        headers = {"Content-Type": "application/json"}
        if signature is not None:
            headers["X-PagerDuty-Signature"] = signature
        fanned = await p.ask(PATH, None, method="POST", body=raw, headers=headers)
        if any(b.get("outcome") == "accepted" for b in fanned.bodies):
            return True
        return None if any(m["peer"] for m in fanned.missing) else False

    return forward


def register_pagerduty_webhook(web_app: web.Application, verifier: PagerDutyVerifier,
                               on_answer: Callable[[PageAnswer], bool], metrics: Any = None,
                               forward: Forward | None = None) -> None:
    """``POST /pagerduty/webhook`` on ``web_app``: verify, hand the answer to ``on_answer``
    (which must not block; False: no alert of this worker has that key), answer at once; an
    answer for an alert this worker does not hold goes to ``forward`` (the peers), unless the
    request was itself forwarded by a peer. A forwarded request is answered with its outcome
    (``{"outcome": ...}``), which the forwarding worker reads."""

    def count(name: str, **labels: str) -> None:
        if metrics is not None:
            metrics.inc(name, labels=labels)

    def refuse(reason: str, status: int = 401, why: str = "") -> web.Response:
        count("pagerduty_webhooks_rejected_total", reason=reason)
        return web.json_response({"error": why or f"refused: {reason}"}, status=status)

    async def webhook(request: web.Request) -> web.Response:
        if request.content_length is not None and request.content_length > BODY_MAX:
            return refuse("too_large", 413)
        raw = await request.content.read(BODY_MAX + 1)
        if len(raw) > BODY_MAX:
            return refuse("too_large", 413)
        why = verifier.check(request.headers.get("X-PagerDuty-Signature"), raw)
        if why is not None:
            return refuse(why)
        try:
            answer = parse_webhook(raw)
        except ValueError as exc:
            return refuse("invalid", 400, str(exc))
        status = 200
        if answer is None:
            outcome = "ignored"
        elif on_answer(answer):
            outcome = "accepted"
        elif forward is None or request.headers.get(FORWARDED):
            outcome = "unknown_alert"
        else:
            took = await forward(raw, request.headers.get("X-PagerDuty-Signature"))
            outcome = "forwarded" if took else "unknown_alert" if took is False else "peer_unreachable"
            status = 503 if took is None else 200
        count("pagerduty_webhooks_total", outcome=outcome)
        if request.headers.get(FORWARDED):
            return web.json_response({"outcome": outcome})
        if status != 200:
            return web.json_response({"error": "the worker holding this alert did not answer; deliver again"},
                                     status=status)
        return web.Response(status=200)

    web_app.router.add_post(PATH, webhook)
