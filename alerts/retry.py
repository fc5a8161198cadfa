"""Backoff, once for every sink: exponential with full jitter, honouring ``Retry-After``.

Time and randomness are injected so that tests run without sleeping.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from alerts.model import Notification
from alerts.sinks import DeliveryResult, Sink

log = logging.getLogger(__name__)


def backoff_delay(attempt: int, *, base: float, cap: float, rand: Callable[[], float]) -> float:
    """Full jitter (uniform in 0..min(cap, base·2^(attempt-1))): retries of many alerts
    after one outage spread out instead of hitting the receiver together."""
    return float(rand()) * min(cap, base * 2.0 ** (attempt - 1))


async def deliver_with_retry(
    sink: Sink,
    n: Notification,
    prior: dict[str, Any] | None,
    *,
    max_attempts: int = 8,
    base: float = 0.5,
    cap: float = 30.0,
    sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    rand: Callable[[], float] = random.random,
) -> DeliveryResult:
    """Send ``n`` until it is delivered, fails permanently, or ``max_attempts`` are spent.

    A server's ``Retry-After`` wins over a shorter backoff: retrying earlier only earns
    another 429. Returns the last result; its ``state`` is what to keep as the next ``prior``.
    """
    async def attempt() -> DeliveryResult:
        return await sink.send(n, prior)

    return await retry_call(attempt, sink.name, f"{n.key} seq {n.seq}", max_attempts=max_attempts,
                            base=base, cap=cap, sleep=sleep, rand=rand)


async def retry_call(
    attempt: Callable[[], Awaitable[DeliveryResult]],
    name: str,
    what: str,
    *,
    max_attempts: int = 8,
    base: float = 0.5,
    cap: float = 30.0,
    sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    rand: Callable[[], float] = random.random,
) -> DeliveryResult:
    """The retry loop of :func:`deliver_with_retry` for any one delivery: ``attempt`` is
    called until it succeeds, fails permanently, or ``max_attempts`` are spent (a digest
    message, which is not one notification, goes through here). ``name`` (the sink) and
    ``what`` are for the log."""
    result = DeliveryResult.permanent("not attempted")
    for i in range(1, max(1, max_attempts) + 1):
        try:
            result = await attempt()
        except Exception as exc:  # noqa: BLE001 - a sink bug must not kill the outbox loop
            # Only the type: the message of an unknown exception may carry anything.
            result = DeliveryResult.permanent(f"{name}: sink raised {type(exc).__name__}")
        if result.ok or not result.retryable:
            if not result.ok:
                log.warning("%s: giving up on %s: %s", name, what, result.detail)
            return result
        if i >= max_attempts:
            break
        delay = backoff_delay(i, base=base, cap=cap, rand=rand)
        if result.retry_after is not None:
            delay = max(delay, result.retry_after)
        log.info("%s: attempt %d/%d for %s failed (%s), retrying in %.2fs",
                 name, i, max_attempts, what, result.detail, delay)
        await sleep(delay)
    log.warning("%s: %d attempts failed for %s: %s", name, max_attempts, what, result.detail)
    return result


async def deliver_all(
    sinks: Sequence[Sink],
    n: Notification,
    priors: Mapping[str, dict[str, Any] | None] | None = None,
    **retry: Any,
) -> dict[str, DeliveryResult]:
    """Deliver ``n`` to every sink concurrently; results by ``sink.name``.

    ``priors`` maps ``sink.name`` to that sink's kept state for ``n.key``. A slow or failing
    receiver does not hold up the others.
    """
    priors = priors or {}
    results = await asyncio.gather(
        *(deliver_with_retry(s, n, priors.get(s.name), **retry) for s in sinks)
    )
    return {s.name: r for s, r in zip(sinks, results, strict=True)}
