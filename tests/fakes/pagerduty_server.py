"""A local server speaking the PagerDuty Events API v2 (``POST /v2/enqueue``).

Validates events the way PagerDuty does for the fields tokenpulse sends, answers 202 with
the ``dedup_key``, 400 ``invalid event`` with the reasons, and keeps the incidents it would
have opened so tests can assert "one page per incident, resolved".

    server = FakePagerDutyServer()
    url = server.start()                      # or: await server.start_async()
    sink = PagerDutySink(session, f"{url}/v2/enqueue", "R0UTINGKEY")
"""

from __future__ import annotations

import uuid
from typing import Any

import orjson
from aiohttp import web

from tests.fakes._server import FakeServer, json_response

ACTIONS = ("trigger", "acknowledge", "resolve")
SEVERITIES = ("critical", "error", "warning", "info")


def validate_event(event: Any, routing_keys: set[str] | None = None) -> list[str]:
    """The reasons PagerDuty would reject this event (empty: accepted)."""
    if not isinstance(event, dict):
        return ["Event object is not a JSON object"]
    errors: list[str] = []
    rk = event.get("routing_key")
    if not isinstance(rk, str) or not rk:
        errors.append("'routing_key' is missing or blank")
    elif routing_keys is not None and rk not in routing_keys:
        errors.append("Invalid routing key")
    action = event.get("event_action")
    if action not in ACTIONS:
        errors.append("'event_action' must be one of trigger, acknowledge, resolve")
    dedup = event.get("dedup_key")
    if dedup is not None and (not isinstance(dedup, str) or len(dedup) > 255):
        errors.append("'dedup_key' must be a string of at most 255 characters")
    if action in ("acknowledge", "resolve") and not dedup:
        errors.append("'dedup_key' is required for acknowledge and resolve")
    if action == "trigger":
        payload = event.get("payload")
        if not isinstance(payload, dict):
            errors.append("'payload' is missing or not an object")
        else:
            summary = payload.get("summary")
            if not isinstance(summary, str) or not summary:
                errors.append("'payload.summary' is missing or blank")
            elif len(summary) > 1024:
                errors.append("'payload.summary' is longer than 1024 characters")
            if not isinstance(payload.get("source"), str) or not payload.get("source"):
                errors.append("'payload.source' is missing or blank")
            if payload.get("severity") not in SEVERITIES:
                errors.append("'payload.severity' must be one of critical, error, warning, info")
        links = event.get("links")
        if links is not None and (
            not isinstance(links, list) or any(not isinstance(x, dict) or "href" not in x for x in links)
        ):
            errors.append("'links' must be a list of objects with 'href'")
    return errors


class FakePagerDutyServer(FakeServer):
    name = "pagerduty"

    def __init__(self, *, routing_keys: set[str] | None = None, **kw: Any) -> None:
        super().__init__(**kw)
        # None: any non-blank routing key is accepted.
        self.routing_keys = routing_keys
        # dedup_key -> {"status": "triggered" | "acknowledged" | "resolved", "events": [...]}
        self.incidents: dict[str, dict[str, Any]] = {}

    @property
    def enqueue_url(self) -> str:
        return f"{self.url}/v2/enqueue"

    def default_failure_body(self, status: int) -> Any:
        if status == 429:
            return {"status": "throttle event", "message": "Requests for this service are arriving too quickly. Please retry later."}
        if status == 400:
            return {"status": "invalid event", "message": "Event object is invalid", "errors": ["injected"]}
        return super().default_failure_body(status)

    def events(self) -> list[dict[str, Any]]:
        """The accepted events, in order."""
        with self._lock:
            return [r["body"] for r in self.requests if r.get("status") == 202]

    def make_app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v2/enqueue", self._enqueue)
        return app

    async def _enqueue(self, request: web.Request) -> web.Response:
        raw = await request.read()
        try:
            event = orjson.loads(raw)
        except orjson.JSONDecodeError:
            event = None
        entry: dict[str, Any] = {"path": request.path, "body": event}
        canned = self._injected()
        if canned is not None:
            entry["status"] = canned.status
            self._record(entry)
            return self._respond(canned)
        errors = ["Malformed JSON"] if event is None else validate_event(event, self.routing_keys)
        if errors:
            entry["status"] = 400
            self._record(entry)
            return json_response(
                {"status": "invalid event", "message": "Event object is invalid", "errors": errors}, status=400
            )
        dedup = event.get("dedup_key") or uuid.uuid4().hex
        action = event["event_action"]
        with self._lock:
            inc = self.incidents.get(dedup)
            if action == "trigger":
                if inc is None or inc["status"] == "resolved":
                    inc = self.incidents[dedup] = {"status": "triggered", "events": [], "opened": 1 + (inc or {}).get("opened", 0)}
            elif inc is not None and inc["status"] != "resolved":
                inc["status"] = "resolved" if action == "resolve" else "acknowledged"
            if inc is not None:
                inc["events"].append(event)
        entry["status"] = 202
        self._record(entry)
        return json_response({"status": "success", "message": "Event processed", "dedup_key": dedup}, status=202)
