"""Delivers notifications from the outbox to every receiver of the registry
(:data:`alerts.receivers.RECEIVERS`) that is on, each target its routes name.

Where a notification goes is :func:`alerts.routing.route_targets` over the policy's routes;
each target has an entry ``<receiver>:<target>`` in the notification key's ``deliveries``
table value (``slack:#ads``, ``pagerduty:default``, ``webhook:default``). An update or resolve
also goes to every target that had its incident, so it follows it there after a policy reload.
Receivers that page (PagerDuty, Opsgenie) get only notifications marked ``page``.

Idempotent per alert key: the last delivered ``seq`` per entry is kept, so a redelivered outbox
record is not sent twice, and a sink's state (Slack's root message ``ts``) is kept so updates
and the resolve go to the same thread.

Nothing is lost when a sink keeps failing: a notification it could not take after its retries
stays in that sink's ``pending`` list in the table entry of its key, and is sent again, in
``seq`` order and before anything newer of the key, by the next notification of the key or
by :meth:`Deliverer.retry_pending` (the worker calls it on a timer). So a trigger missed
during an outage still reaches PagerDuty before its resolve. While a sink is failing, each
attempt gets a single try instead of the full backoff, so a dead receiver does not stall the
outbox; sinks are delivered to concurrently, so one does not hold up another.

A Slack channel subscribed in a digest mode (``hourly``/``daily``) gets no message per
notification: its entry is ``digest:<channel>``, and "delivering" to it forwards the
notification to the digest topic (:class:`DigestForward`), where :mod:`streams.delivery.digests`
collects it and posts one digest per period. Forwarding goes through the same pending list and
``seq`` marks, so a redelivered outbox record is not forwarded twice, and a resolve follows its
incident into the digest like into a thread.

Per-sink health (consecutive failures, last error, last success, notifications pending) is
kept in memory and mirrored into gauges for ``/metrics``; ``/api/sinks`` shows it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from alerts import Notification
from alerts.receivers import RECEIVERS, Connection
from alerts.retry import deliver_with_retry
from alerts.routing import Route, route_targets
from alerts.sinks import DeliveryResult, Sink, redact
from streams.common.config import StreamConfig
from streams.common.metrics import Metrics

log = logging.getLogger("tokenpulse.delivery")

PENDING_MAX = 20  # per (sink, key): beyond it the oldest updates are dropped, never a trigger or resolve


@dataclass
class SinkHealth:
    """What an operator asks about one receiver: is it up, since when is it failing, why."""

    name: str
    consecutive_failures: int = 0
    last_error: str | None = None
    last_error_at: float | None = None
    last_success_at: float | None = None
    pending: dict[str, int] = field(default_factory=dict)  # alert key -> notifications waiting

    @property
    def up(self) -> bool:
        return self.consecutive_failures == 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "sink": self.name,
            "up": self.up,
            "consecutive_failures": self.consecutive_failures,
            "last_error": self.last_error,
            "last_error_at": self.last_error_at,
            "last_success_at": self.last_success_at,
            "pending_notifications": sum(self.pending.values()),
            "pending_keys": sorted(self.pending),
        }


class DigestForward:
    """The "sink" of a digest channel: hands the notification to the digest collector (a
    topic keyed by channel, so one worker owns each channel's digest) with the schedule the
    channel had when it was forwarded."""

    def __init__(self, channel: str, route: Route,
                 forward: Callable[[str, dict[str, Any]], Awaitable[Any]] | None) -> None:
        self.channel = channel
        self.route = route
        self.forward = forward
        self.name = f"digest:{channel}"

    async def send(self, n: Notification, prior: dict[str, Any] | None) -> DeliveryResult:
        if self.forward is None:
            return DeliveryResult.permanent("digest: no digest collector in this process")
        record = {
            "channel": self.channel,
            "schedule": {"mode": self.route.mode, "tz": self.route.timezone, "daily_at": self.route.daily_at},
            "note": n.to_dict(),
        }
        try:
            await self.forward(self.channel, record)
        except Exception as exc:  # noqa: BLE001 - the broker is away: try again later
            return DeliveryResult.retry(f"digest: forwarding failed: {type(exc).__name__}")
        return DeliveryResult.success(f"collected for the {self.route.mode} digest",
                                      {"started_at": n.started_at, "seq": n.seq})


class Deliverer:
    """Sends one outbox record to its sinks and returns the new ``deliveries`` entry of its key.

    Callers serialise work on one key with :meth:`lock` (the outbox agent and the retry timer
    both deliver), and read the prior entry inside it.
    """

    def __init__(
        self,
        cfg: StreamConfig,
        metrics: Metrics,
        max_attempts: int = 5,
        *,
        backoff_base: float = 0.5,
        backoff_cap: float = 8.0,
        retry_interval: float = 5.0,
        clock: Callable[[], float] = time.time,
        forward_digest: Callable[[str, dict[str, Any]], Awaitable[Any]] | None = None,
    ) -> None:
        self.cfg = cfg
        self.forward_digest = forward_digest
        self.metrics = metrics
        self.max_attempts = max_attempts
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.retry_interval = retry_interval
        self.clock = clock
        self._session: Any = None
        self._connections: dict[str, Connection] = {}
        self._sinks: dict[str, Sink] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self.health: dict[str, SinkHealth] = {}
        for name in cfg.receivers:
            self._health(name)
        if any(r.digest for r in self._routes()):
            self._health("digest")

    def reconfigure(self, cfg: StreamConfig) -> None:
        """A policy reload: routes from ``cfg`` for the next notification. Receivers (settings),
        their clients and health stay; an incident already at a target keeps getting its
        updates there (see :meth:`targets`)."""
        self.cfg = cfg

    # -- where to --------------------------------------------------------------------------
    def _routes(self) -> list[Route]:
        # routes of receivers that are off are not used (Slack without a token, as before)
        return [r for r in self.cfg.routes if r.receiver in self.cfg.receivers]

    def targets(self, n: Notification, state: dict[str, Any] | None = None) -> list[str]:
        """The entries ``n`` goes to: ``<receiver>:<target>`` for a target that takes it at
        once, ``digest:<channel>`` for a Slack channel that takes it in its digest; for an
        update or resolve also every entry that had the incident. A receiver that pages gets
        only paged notifications."""
        defaults = {name: cfg.default_targets() for name, cfg in self.cfg.receivers.items()}
        names = [f"{receiver}:{target}" if mode == "immediate" else f"digest:{target}"
                 for receiver, target, mode in route_targets(n, self._routes(), defaults)
                 if n.page or not RECEIVERS[receiver].pages_only]
        if n.action != "trigger":
            for k, e in (state or {}).items():
                if k not in names and isinstance(e, dict) and e.get("seq", -1) >= 0 \
                        and e.get("started_at") == n.started_at and (n.page or not _pages_only(k)):
                    names.append(k)
        return names

    def sink(self, receiver: str, target: str) -> Sink | None:
        """The sink of one target (made once, on the receiver's one connection); ``None`` when
        the receiver is off or has no such target (its secret is not set)."""
        name = f"{receiver}:{target}"
        sink = self._sinks.get(name)
        if sink is None:
            cfg = self.cfg.receivers.get(receiver)
            if cfg is None or cfg.target_error(target) is not None:
                return None
            conn = self._connections.get(receiver)
            if conn is None:
                conn = self._connections[receiver] = RECEIVERS[receiver].connect(cfg, self._http())
            sink = self._sinks[name] = conn.sink(target)
        return sink

    def _http(self) -> Any:
        # One aiohttp session for the HTTP receivers, made inside the running loop on first use.
        if self._session is None:
            import aiohttp

            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        return self._session

    def _sink(self, name: str, n: Notification) -> Sink | None:
        receiver, _, target = name.partition(":")
        if receiver == "digest":
            route = next((r for r in self._routes() if r.digest and r.target == target), None)
            # no longer a digest channel: the notification went out (or not) when it was one
            return None if route is None else DigestForward(target, route, self.forward_digest)
        if receiver not in RECEIVERS or (RECEIVERS[receiver].pages_only and not n.page):
            return None  # e.g. a record that does not page: nothing to send
        return self.sink(receiver, target)

    # -- health ------------------------------------------------------------------------------
    def _health(self, name: str) -> SinkHealth:
        name = name.partition(":")[0]  # one health record for every Slack channel
        h = self.health.get(name)
        if h is None:
            h = self.health[name] = SinkHealth(name)
            self._publish(h)
        return h

    def health_of(self, name: str) -> SinkHealth:
        return self._health(name)

    def note_result(self, name: str, ok: bool, detail: str) -> None:
        """Count one delivery outside the outbox path (a digest post) in ``name``'s health."""
        h = self._health(name)
        if ok:
            h.consecutive_failures = 0
            h.last_success_at = self.clock()
        else:
            h.consecutive_failures += 1
            h.last_error, h.last_error_at = detail, self.clock()
        self._publish(h)

    def secrets(self) -> list[str]:
        return self._secrets()

    def _publish(self, h: SinkHealth) -> None:
        labels = {"sink": h.name}
        self.metrics.set("sink_up", 1.0 if h.up else 0.0, labels)
        self.metrics.set("sink_consecutive_failures", float(h.consecutive_failures), labels)
        self.metrics.set("sink_pending_notifications", float(sum(h.pending.values())), labels)

    def _secrets(self) -> list[str]:
        return [s for cfg in self.cfg.receivers.values() for s in cfg.secrets()]

    def sinks_status(self) -> list[dict[str, Any]]:
        """Health of every receiver that is on (and of digest posts), for ``/api/sinks``."""
        return [h.to_dict() for _, h in sorted(self.health.items())]

    def note_state(self, key: str, state: dict[str, Any] | None) -> None:
        """Count the pending notifications of ``key`` per sink (also after a restart, when
        the table was recovered)."""
        waiting_by_sink: dict[str, int] = {}
        for name, entry in (state or {}).items():
            if isinstance(entry, dict):
                sink = name.partition(":")[0]
                waiting_by_sink[sink] = waiting_by_sink.get(sink, 0) + len(entry.get("pending") or ())
        for name, waiting in waiting_by_sink.items():
            h = self.health.get(name)
            if h is None:
                continue  # a sink no longer configured
            if waiting:
                h.pending[key] = waiting
            else:
                h.pending.pop(key, None)
            self._publish(h)

    # -- delivery ----------------------------------------------------------------------------
    def lock(self, key: str) -> asyncio.Lock:
        lk = self._locks.get(key)
        if lk is None:
            lk = self._locks[key] = asyncio.Lock()
        return lk

    @staticmethod
    def has_pending(state: dict[str, Any] | None) -> bool:
        return any(isinstance(e, dict) and e.get("pending") for e in (state or {}).values())

    async def deliver(self, record: dict[str, Any], prior: dict[str, Any] | None) -> dict[str, Any]:
        """Deliver ``record`` (and whatever is pending for its key) to its sinks."""
        state: dict[str, Any] = {k: dict(v) for k, v in (prior or {}).items()}
        try:
            n = Notification.from_dict(record)
        except ValueError as exc:
            # written by a version that this one cannot read: said once, here, and left in the
            # outbox topic rather than stopping delivery of everything behind it
            log.error("outbox record skipped: %s", exc)
            return state
        names = self.targets(n, state)
        wanted = set(names)
        # Pending records of a target this notification does not go to (PagerDuty pending, an
        # unpaged update) are still flushed.
        names += [k for k, e in state.items() if k not in names and isinstance(e, dict) and e.get("pending")]
        entries = await asyncio.gather(
            *(self._deliver_to(name, n, record, state.get(name) or {}, name in wanted) for name in names)
        )
        for name, entry in zip(names, entries):
            if entry is not None:
                state[name] = entry
        self.note_state(n.key, state)
        return state

    async def retry_pending(self, key: str, prior: dict[str, Any] | None) -> dict[str, Any] | None:
        """Try the pending notifications of ``key`` again; the new entry, or ``None`` when
        nothing was pending."""
        if not self.has_pending(prior):
            return None
        state: dict[str, Any] = {k: dict(v) for k, v in (prior or {}).items()}
        names = [k for k, e in state.items() if isinstance(e, dict) and e.get("pending")]
        entries = await asyncio.gather(*(self._flush(name, state[name]) for name in names))
        for name, entry in zip(names, entries):
            state[name] = entry
        self.note_state(key, state)
        return state

    async def _deliver_to(
        self, name: str, n: Notification, record: dict[str, Any], mine: dict[str, Any], wanted: bool
    ) -> dict[str, Any] | None:
        pending = [p for p in (mine.get("pending") or ()) if p["seq"] > mine.get("seq", -1)]
        if wanted and mine.get("seq", -1) < n.seq and all(p["seq"] != n.seq for p in pending):
            pending.append(record)
        if not pending:
            return None  # already delivered: a redelivered outbox record
        return await self._flush(name, {**mine, "pending": _bounded(sorted(pending, key=lambda p: p["seq"]))})

    async def _flush(self, name: str, entry: dict[str, Any]) -> dict[str, Any]:
        """Send ``entry``'s pending records in order, stopping at the first failure."""
        h = self._health(name)
        entry = dict(entry)
        pending = list(entry.get("pending") or ())
        while pending:
            try:
                n = Notification.from_dict(pending[0])
            except ValueError as exc:
                log.error("delivery to %s: pending record dropped: %s", name, exc)
                pending.pop(0)
                entry["dropped"] = int(entry.get("dropped", 0)) + 1
                continue
            sink = self._sink(name, n)
            if sink is None:  # e.g. a record that does not page: nothing to send
                pending.pop(0)
                continue
            # A failing sink gets one try per notification: the timer comes back for it.
            attempts = self.max_attempts if h.up else 1
            result = await deliver_with_retry(
                sink, n, entry.get("state") or None,
                max_attempts=attempts, base=self.backoff_base, cap=self.backoff_cap,
            )
            labels = {"sink": h.name, "action": n.action}  # the receiver: one series per receiver, not per target
            if not result.ok:
                detail = redact(result.detail, *self._secrets())
                h.consecutive_failures += 1
                h.last_error, h.last_error_at = detail, self.clock()
                self.metrics.inc("alerts_failed_total", labels=labels)
                log.warning("delivery to %s failed for %s seq %d (%d pending): %s",
                            name, n.key, n.seq, len(pending), detail)
                entry.update(ok=False, detail=detail)
                if not result.retryable:
                    # Will fail again the same way: visible in the entry, not retried forever.
                    pending.pop(0)
                    entry["dropped"] = int(entry.get("dropped", 0)) + 1
                    continue
                break
            h.consecutive_failures = 0
            h.last_success_at = self.clock()
            self.metrics.inc("alerts_sent_total", labels=labels)
            entry.update(seq=n.seq, ok=True, detail=result.detail, started_at=n.started_at,
                         state={**(entry.get("state") or {}), **result.state})
            pending.pop(0)
        entry.setdefault("seq", -1)
        entry.setdefault("state", {})
        entry["pending"] = pending
        self._publish(h)
        return entry

    async def close(self) -> None:
        for conn in self._connections.values():
            await conn.close()
        if self._session is not None and not self._session.closed:
            await self._session.close()


def _pages_only(entry: str) -> bool:
    receiver = RECEIVERS.get(entry.partition(":")[0])
    return receiver is not None and receiver.pages_only


def _bounded(pending: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """At most :data:`PENDING_MAX` records; the oldest updates go first (the trigger that
    opens an incident and the resolve that closes it are kept)."""
    out = list(pending)
    while len(out) > PENDING_MAX:
        drop = next((i for i, p in enumerate(out) if p.get("action") == "update"), 0)
        out.pop(drop)
    return out


def pending_keys(items: Iterable[tuple[str, Any]]) -> list[str]:
    """Keys of a ``deliveries`` table with something pending."""
    return [k for k, v in items if isinstance(v, dict) and Deliverer.has_pending(v)]
