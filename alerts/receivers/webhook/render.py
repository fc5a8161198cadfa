"""The generic webhook's rendering: every notification as signed JSON, for anything that is
not Slack, PagerDuty or Opsgenie (a ticketing bridge, a chat-ops bot, a data lake), and
:func:`verify_signature` for the receivers.

The request
-----------
``POST <url>`` with ``Content-Type: application/json`` and the body (schema version 2)::

    {
      "version": 2,
      "type": "tokenpulse.notification",
      "sent_at": "2026-01-01T00:00:05+00:00",      # RFC 3339, UTC; = X-Tokenpulse-Timestamp
      "idempotency_key": "cost_spike:team=ads:1767225660000",   # "<key>:<seq>"
      "notification": { ...the notification, as in the outbox (Notification.to_dict)... }
    }

``notification`` is flat JSON: its ``kind`` (``spike``, ``budget``, ``mix`` or ``report``), the
envelope every kind has (``key``, ``seq``, ``action``: trigger | update | resolve,
``severity``, ``reason``, ``rule``, ``series``, ``labels``, ``title``, ``started_at``,
``fired_at``, ``ended_at`` (epoch seconds), ``page``, ``dashboard_url``) and the fields of its
kind (:mod:`alerts.model`): a spike's ``observed_usd``, ``expected_usd``, ``excess_usd``,
``excess_pct``, ``window_start``/``window_end``, ``top_contributors``, ``members``...; a
budget's ``budget`` (name), ``unit``, ``period_id``, ``spent``, ``limit``, ``pct_used``,
``threshold``, the forecast...; the third-party share's ``share_pct`` and ``line_pct``; a
report's ``channel`` and ``report``. New fields may be added within a version; a change of
meaning bumps ``version``. Version 1 (tokenpulse 0.1) had one record for every kind, with a
budget's figures in a ``budget`` object and its limit in ``expected_usd``.

Headers:

- ``X-Tokenpulse-Timestamp``: Unix seconds when this attempt was signed;
- ``X-Tokenpulse-Signature``: ``sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">`` keyed with
  the shared secret, over the exact body bytes;
- ``Idempotency-Key``: ``<key>:<seq>``, the same on every retry of one notification (percent-
  encoded where it is not plain ASCII, shortened with a hash beyond 200 characters). A
  receiver that has seen it already should answer 2xx and do nothing.

A receiver checks the signature and the timestamp with :func:`verify_signature` (or the same
few lines in its own language) and rejects a stale one, so a captured request cannot be
replayed later. Each retry is signed afresh, so a retry after a long outage is not stale.

Responses: 2xx delivered; 429 (``Retry-After`` honoured), 5xx, timeouts and connection errors
are retried by :func:`alerts.retry.deliver_with_retry`; any other status is permanent.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Any
from urllib.parse import quote

from alerts.model import Notification
from alerts.text import iso

SCHEMA_VERSION = 2
EVENT_TYPE = "tokenpulse.notification"
SIGNATURE_HEADER = "X-Tokenpulse-Signature"
TIMESTAMP_HEADER = "X-Tokenpulse-Timestamp"
IDEMPOTENCY_HEADER = "Idempotency-Key"
DEFAULT_TOLERANCE_S = 300.0
IDEMPOTENCY_HEADER_MAX = 200

# Printable ASCII except "%" stays as is; anything else (non-ASCII, controls, space) is
# percent-encoded so that a team name from a usage event cannot break or inject a header.
_HEADER_SAFE = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) != "%")


def _as_bytes(value: str | bytes) -> bytes:
    return value.encode() if isinstance(value, str) else value


def sign(secret: str | bytes, timestamp: int | str, body: bytes) -> str:
    """The ``X-Tokenpulse-Signature`` value for ``body`` sent at ``timestamp``.

    >>> sign("s3cret", 1767225600, b'{"version":1}')
    'sha256=3ef77ed2ef5af1997500cfa553d06a91661cf0850bb0860821f80c6ac0324ae7'
    """
    mac = hmac.new(_as_bytes(secret), f"{timestamp}.".encode() + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify_signature(
    secret: str | bytes,
    timestamp: str | int,
    body: str | bytes,
    header: str | None,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
    now: float | None = None,
) -> bool:
    """For receivers: is ``header`` tokenpulse's signature of ``body`` at ``timestamp``, and
    is the timestamp within ``tolerance_s`` of ``now`` (default: the wall clock)?

    Pass the raw body bytes as received (not re-serialised JSON) and the two header values.
    The comparison is constant-time. A timestamp too far in the past (a replay) or in the
    future (a skewed clock) fails, as does anything malformed; nothing raises.

    >>> body = b'{"version":1,"type":"tokenpulse.notification"}'
    >>> header = sign("s3cret", 1767225600, body)
    >>> verify_signature("s3cret", "1767225600", body, header, now=1767225630)
    True
    >>> verify_signature("s3cret", "1767225600", body + b" ", header, now=1767225630)  # tampered
    False
    >>> verify_signature("other", "1767225600", body, header, now=1767225630)  # wrong secret
    False
    >>> verify_signature("s3cret", "1767225600", body, header, now=1767225600 + 3600)  # replayed
    False
    """
    if not secret or not header:
        return False
    try:
        ts = int(str(timestamp).strip())
    except ValueError:
        return False
    current = time.time() if now is None else now
    if abs(current - ts) > tolerance_s:
        return False
    expected = sign(secret, ts, _as_bytes(body))
    # compare_digest on bytes: a non-ASCII header would make the str variant raise.
    return hmac.compare_digest(expected.encode(), header.strip().encode("utf-8", "replace"))


def idempotency_key(n: Notification) -> str:
    """``<key>:<seq>``: the same for every attempt of one notification, new for the next."""
    return f"{n.key}:{n.seq}"


def idempotency_header(n: Notification) -> str:
    """:func:`idempotency_key` made safe for an HTTP header (ASCII, bounded length)."""
    value = quote(idempotency_key(n), safe=_HEADER_SAFE)
    if len(value) <= IDEMPOTENCY_HEADER_MAX:
        return value
    digest = hashlib.sha256(value.encode()).hexdigest()[:32]
    tail = f"#{digest}:{n.seq}"
    return value[: IDEMPOTENCY_HEADER_MAX - len(tail)] + tail


def webhook_body(n: Notification, sent_at: float) -> dict[str, Any]:
    """The JSON document sent for ``n`` (schema :data:`SCHEMA_VERSION`)."""
    return {
        "version": SCHEMA_VERSION,
        "type": EVENT_TYPE,
        "sent_at": iso(sent_at),
        "idempotency_key": idempotency_key(n),
        "notification": n.to_dict(),
    }
