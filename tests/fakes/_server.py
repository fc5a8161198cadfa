"""What the fake Slack and PagerDuty servers share: lifecycle, recording, failure injection.

A server runs either in the caller's event loop (``await start_async()``) or on its own loop
in a daemon thread (``start()``), for synchronous tests and for the integration tier where
the worker under test has its own loop. Records and switches are guarded by a lock because
the test thread reads them while the server thread writes.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Self

import orjson
from aiohttp import web


@dataclass
class Canned:
    """One injected response, served instead of the normal behaviour."""

    status: int
    body: Any = None  # dict/list -> JSON; str -> text/html; None -> the server's default
    headers: dict[str, str] = field(default_factory=dict)


class FakeServer:
    name = "fake"

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._canned: deque[Canned] = deque()
        self._outage_until: float | None = None
        self.downtimes: list[tuple[float, float]] = []  # (from, until) of each down_for
        self._runner: web.AppRunner | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    # -- failure injection -------------------------------------------------------------------
    def fail_next(
        self, status: int, body: Any = None, headers: dict[str, str] | None = None, times: int = 1
    ) -> None:
        """Serve this response to the next ``times`` requests, before normal behaviour."""
        with self._lock:
            for _ in range(times):
                self._canned.append(Canned(status, body, dict(headers or {})))

    def rate_limit_next(self, retry_after: int = 1, times: int = 1) -> None:
        self.fail_next(429, None, {"Retry-After": str(retry_after)}, times)

    def outage_until(self, t: float | None) -> None:
        """Answer 503 to everything until wall-clock time ``t`` (``None`` ends it)."""
        with self._lock:
            self._outage_until = t

    def outage_for(self, seconds: float) -> None:
        """503 to everything for ``seconds`` (how long is up to the test: a minute-long outage
        and a compressed one use the same switch)."""
        self.outage_until(time.time() + seconds)

    def served(self, status: int) -> int:
        """How many requests were answered with ``status`` (injected ones included)."""
        with self._lock:
            return sum(1 for r in self.requests if r.get("status") == status)

    def down_for(self, seconds: float) -> None:
        """Stop listening (clients get connection refused) for ``seconds``, then come back on
        the same port. For a server started with :meth:`start`; returns once it is down."""
        if self._loop is None:
            raise RuntimeError("down_for needs a server started with start()")
        down = threading.Event()

        async def cycle() -> None:
            await self.stop_async()
            with self._lock:
                self.downtimes.append((time.time(), time.time() + seconds))
            down.set()
            await asyncio.sleep(seconds)
            await self.start_async()

        asyncio.run_coroutine_threadsafe(cycle(), self._loop)
        if not down.wait(10):
            raise RuntimeError(f"{self.name} server did not go down")

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self._canned.clear()
            self._outage_until = None

    def _injected(self) -> Canned | None:
        with self._lock:
            if self._canned:
                return self._canned.popleft()
            if self._outage_until is not None and time.time() < self._outage_until:
                return Canned(503)
        return None

    def _record(self, entry: dict[str, Any]) -> None:
        entry.setdefault("at", time.time())  # when it arrived, for latency assertions
        with self._lock:
            self.requests.append(entry)

    def _respond(self, canned: Canned) -> web.Response:
        body = canned.body if canned.body is not None else self.default_failure_body(canned.status)
        headers = dict(canned.headers)
        if isinstance(body, str):
            return web.Response(status=canned.status, text=body, content_type="text/html", headers=headers)
        return json_response(body, status=canned.status, headers=headers)

    def default_failure_body(self, status: int) -> Any:
        return f"<html><body><h1>{status}</h1></body></html>"

    # -- app ---------------------------------------------------------------------------------
    def make_app(self) -> web.Application:
        raise NotImplementedError

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # -- lifecycle in the caller's loop ------------------------------------------------------
    async def start_async(self) -> str:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        self._runner = web.AppRunner(self.make_app(), access_log=None)
        await self._runner.setup()
        await web.SockSite(self._runner, sock).start()
        return self.url

    async def stop_async(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start_async()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop_async()

    # -- lifecycle on a thread of its own -----------------------------------------------------
    def start(self) -> str:
        loop = asyncio.new_event_loop()
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self.start_async())
            except BaseException as exc:  # noqa: BLE001 - reported to start()
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self.stop_async())
            loop.close()

        self._loop = loop
        self._thread = threading.Thread(target=run, name=f"{self.name}-server", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError(f"{self.name} server did not start")
        if failure:
            raise failure[0]
        return self.url

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        self._loop = None
        self._thread = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status, body=orjson.dumps(data), content_type="application/json", headers=headers
    )
