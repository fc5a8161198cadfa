"""A local receiver for tokenpulse's generic webhook (``POST /hook``).

It checks requests the way a careful receiver would, written from the documented contract
rather than with :func:`alerts.receivers.webhook.verify_signature`, so that a bug shared by the signer
and the helper cannot hide: HMAC-SHA256 of ``"<timestamp>.<body>"`` with the shared secret,
a timestamp within ``tolerance_s``, JSON of schema version 2. A bad signature or a stale
timestamp gets 401, anything else malformed 400, an accepted request 200 (also for an
``Idempotency-Key`` seen before, which is counted once in :meth:`deliveries`).

Failure injection comes from :class:`FakeServer`: ``rate_limit_next(retry_after)`` (429 with
``Retry-After``), ``fail_next(500, times=3)``, ``outage_for(seconds)`` (503s); ``delay`` makes
every answer slow (for timeouts); ``await stop_async()`` takes it down (connection refused)
and ``await start_async()`` brings it back on the same port.

    server = FakeWebhookServer(secret="whsec-test")
    url = server.start()                      # or: await server.start_async()
    sink = WebhookSink(session, server.hook_url, "whsec-test")
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from typing import Any

import orjson
from aiohttp import web

from tests.fakes._server import FakeServer, json_response


class FakeWebhookServer(FakeServer):
    name = "webhook"

    def __init__(self, secret: str = "whsec-fake-secret", *, tolerance_s: float = 300.0, **kw: Any) -> None:
        super().__init__(**kw)
        self.secret = secret
        self.tolerance_s = tolerance_s
        self.delay = 0.0  # seconds before every answer

    @property
    def hook_url(self) -> str:
        return f"{self.url}/hook"

    def default_failure_body(self, status: int) -> Any:
        if status == 429:
            return {"error": "rate_limited", "message": "slow down"}
        return super().default_failure_body(status)

    # -- views for assertions ----------------------------------------------------------------
    def accepted(self) -> list[dict[str, Any]]:
        """Every accepted request (retries of one notification included), in order."""
        with self._lock:
            return [r for r in self.requests if r.get("status") == 200]

    def deliveries(self) -> list[dict[str, Any]]:
        """Accepted bodies, one per ``Idempotency-Key``: what a deduplicating receiver acts on."""
        seen: set[str] = set()
        out: list[dict[str, Any]] = []
        for r in self.accepted():
            if r["idempotency_key"] not in seen:
                seen.add(r["idempotency_key"])
                out.append(r["body"])
        return out

    # -- the receiver ------------------------------------------------------------------------
    def make_app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/hook", self._hook)
        return app

    def _check(self, raw: bytes, timestamp: str | None, signature: str | None) -> str | None:
        """Why the request is not authentic, or ``None``."""
        if not timestamp or not signature:
            return "missing signature"
        try:
            ts = int(timestamp)
        except ValueError:
            return "bad timestamp"
        if abs(time.time() - ts) > self.tolerance_s:
            return "stale timestamp"
        mac = hmac.new(self.secret.encode(), timestamp.encode() + b"." + raw, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(f"sha256={mac}".encode(), signature.encode()):
            return "invalid signature"
        return None

    async def _hook(self, request: web.Request) -> web.Response:
        raw = await request.read()
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            body = None
        entry: dict[str, Any] = {
            "path": request.path,
            "raw": raw,
            "body": body,
            "timestamp": request.headers.get("X-Tokenpulse-Timestamp"),
            "signature": request.headers.get("X-Tokenpulse-Signature"),
            "idempotency_key": request.headers.get("Idempotency-Key"),
            "content_type": request.content_type,
        }
        if self.delay:
            await asyncio.sleep(self.delay)
        canned = self._injected()
        if canned is not None:
            entry["status"] = canned.status
            self._record(entry)
            return self._respond(canned)
        why = self._check(raw, entry["timestamp"], entry["signature"])
        if why is not None:
            entry["status"] = 401
            self._record(entry)
            return json_response({"error": why}, status=401)
        if not isinstance(body, dict) or body.get("version") != 2 or not isinstance(body.get("notification"), dict):
            entry["status"] = 400
            self._record(entry)
            return json_response({"error": "unsupported payload"}, status=400)
        if not entry["idempotency_key"]:
            entry["status"] = 400
            self._record(entry)
            return json_response({"error": "missing Idempotency-Key"}, status=400)
        with self._lock:
            duplicate = any(
                r.get("status") == 200 and r["idempotency_key"] == entry["idempotency_key"] for r in self.requests
            )
        entry["status"] = 200
        entry["duplicate"] = duplicate
        self._record(entry)
        return json_response({"ok": True, "duplicate": duplicate})
