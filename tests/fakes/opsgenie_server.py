"""A local server speaking the Opsgenie Alert API v2, as far as tokenpulse uses it:
``POST /v2/alerts`` (create) and ``POST /v2/alerts/{identifier}/close`` (close).

Written from Opsgenie's documented contract, not from tokenpulse's renderer: the
``Authorization: GenieKey <key>`` header (401 otherwise), the create request's fields and limits
(``message`` required and at most 130 characters, ``alias`` 512, ``description`` 15,000,
``priority`` P1..P5, ``details`` a map of strings; 422 with the errors otherwise), one open
alert per ``alias`` (a create for an open alias only raises its ``count``), a close by
``identifierType=alias``, and 202 with a ``requestId`` for every accepted request. It keeps the
alerts it would have, so tests can assert "one alert per incident, closed".

    server = FakeOpsgenieServer()
    url = server.start()                      # or: await server.start_async()
    sink = OpsgenieSink(session, server.url, "genie-key")
"""

from __future__ import annotations

import uuid
from typing import Any

import orjson
from aiohttp import web

from tests.fakes._server import FakeServer, json_response

PRIORITIES = ("P1", "P2", "P3", "P4", "P5")
IDENTIFIER_TYPES = ("id", "tiny", "alias")


def validate_create(body: Any) -> dict[str, str]:
    """The errors Opsgenie would answer a create request with (empty: accepted)."""
    if not isinstance(body, dict):
        return {"body": "Request body is not a JSON object"}
    errors: dict[str, str] = {}
    message = body.get("message")
    if not isinstance(message, str) or not message.strip():
        errors["message"] = "Message can not be empty."
    elif len(message) > 130:
        errors["message"] = "Message can not be longer than 130 characters."
    for field, limit in (("alias", 512), ("description", 15000), ("entity", 512), ("source", 100)):
        v = body.get(field)
        if v is not None and (not isinstance(v, str) or len(v) > limit):
            errors[field] = f"{field} must be a string of at most {limit} characters."
    if body.get("priority") is not None and body["priority"] not in PRIORITIES:
        errors["priority"] = "Priority should be one of P1, P2, P3, P4, P5."
    details = body.get("details")
    if details is not None and (not isinstance(details, dict)
                                or any(not isinstance(k, str) or not isinstance(v, str) for k, v in details.items())):
        errors["details"] = "Details should be a map of strings."
    tags = body.get("tags")
    if tags is not None and (not isinstance(tags, list) or len(tags) > 20
                             or any(not isinstance(t, str) or len(t) > 50 for t in tags)):
        errors["tags"] = "Tags should be at most 20 strings of at most 50 characters."
    return errors


class FakeOpsgenieServer(FakeServer):
    name = "opsgenie"

    def __init__(self, *, api_keys: set[str] | None = None, **kw: Any) -> None:
        super().__init__(**kw)
        # None: any non-blank key is accepted
        self.api_keys = api_keys
        # alias -> {"status": "open" | "closed", "count": n, "opened": k, "key": api key, "events": [...]}
        self.alerts: dict[str, dict[str, Any]] = {}

    def default_failure_body(self, status: int) -> Any:
        message = {429: "You are making too many requests! To avoid errors, we recommend you limit requests.",
                   401: "Could not authenticate", 422: "Request body is not processable. Please check the errors."}
        return {"message": message.get(status, "Internal Server Error"), "took": 0.0, "requestId": uuid.uuid4().hex}

    def events(self) -> list[dict[str, Any]]:
        """The accepted requests, in order: ``{"action": "create" | "close", "alias", "body", "key"}``."""
        with self._lock:
            return [{k: r[k] for k in ("action", "alias", "body", "key")} for r in self.requests
                    if r.get("status") == 202]

    def make_app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v2/alerts", self._create)
        app.router.add_post("/v2/alerts/{identifier}/close", self._close)
        return app

    def _key(self, request: web.Request) -> str | None:
        scheme, _, key = request.headers.get("Authorization", "").partition(" ")
        if scheme != "GenieKey" or not key.strip():
            return None
        if self.api_keys is not None and key not in self.api_keys:
            return None
        return key

    def _accepted(self, entry: dict[str, Any]) -> web.Response:
        entry["status"] = 202
        self._record(entry)
        return json_response({"result": "Request will be processed", "took": 0.003, "requestId": uuid.uuid4().hex},
                             status=202)

    def _refused(self, entry: dict[str, Any], status: int, body: dict[str, Any]) -> web.Response:
        entry["status"] = status
        self._record(entry)
        return json_response({**body, "took": 0.001, "requestId": uuid.uuid4().hex}, status=status)

    async def _read(self, request: web.Request, action: str, alias: str | None) -> tuple[Any, dict[str, Any]]:
        raw = await request.read()
        try:
            body = orjson.loads(raw) if raw else {}
        except orjson.JSONDecodeError:
            body = None
        if alias is None and isinstance(body, dict):
            alias = body.get("alias")
        return body, {"path": request.path_qs, "action": action, "body": body, "alias": alias,
                      "key": request.headers.get("Authorization", "").partition(" ")[2]}

    def _injected_response(self, entry: dict[str, Any]) -> web.Response | None:
        canned = self._injected()
        if canned is None:
            return None
        entry["status"] = canned.status
        self._record(entry)
        return self._respond(canned)

    async def _create(self, request: web.Request) -> web.Response:
        body, entry = await self._read(request, "create", None)
        canned = self._injected_response(entry)
        if canned is not None:
            return canned
        key = self._key(request)
        if key is None:
            return self._refused(entry, 401, {"message": "Could not authenticate"})
        errors = validate_create(body)
        if errors:
            return self._refused(entry, 422, {"message": "Request body is not processable. Please check the errors.",
                                              "errors": errors})
        alias = body.get("alias") or body["message"]
        with self._lock:
            alert = self.alerts.get(alias)
            if alert is None or alert["status"] == "closed":
                opened = (alert or {}).get("opened", 0) + 1
                alert = self.alerts[alias] = {"status": "open", "count": 0, "opened": opened, "key": key, "events": []}
            alert["count"] += 1
            alert["priority"] = body.get("priority", "P3")
            alert["events"].append(body)
        entry["alias"] = alias
        return self._accepted(entry)

    async def _close(self, request: web.Request) -> web.Response:
        identifier = request.match_info["identifier"]  # aiohttp gives it percent-decoded
        body, entry = await self._read(request, "close", identifier)
        canned = self._injected_response(entry)
        if canned is not None:
            return canned
        if self._key(request) is None:
            return self._refused(entry, 401, {"message": "Could not authenticate"})
        kind = request.query.get("identifierType", "id")
        if kind not in IDENTIFIER_TYPES or not isinstance(body, dict):
            return self._refused(entry, 422, {"message": "Request body is not processable. Please check the errors.",
                                              "errors": {"identifierType": f"{kind} is not one of id, tiny, alias"}})
        with self._lock:
            alert = self.alerts.get(identifier) if kind == "alias" else None
            # like Opsgenie: accepted either way; closing what is not open does nothing
            if alert is not None and alert["status"] == "open":
                alert["status"] = "closed"
                alert["events"].append({"close": body})
        return self._accepted(entry)
