"""Is the judge's group stuck settling? A watch over Faust's rebalances and table recoveries.

After a rebalance Faust reads each assigned table's changelog before the agents run again. On a
loaded cluster that can take minutes, and it shows progress: the changelog offsets it has read
grow. A recovery that reads nothing for minutes is stuck (a broker that stopped serving the
partitions, or a fetch that never resumed), and a worker stuck there judges nothing while its
liveness probe, if it only asks "is the process up", says all is well. :class:`SettleWatch` tells
the two apart so that ``/healthz`` can answer 503 and a supervisor restarts the worker.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any


class SettleWatch:
    """Since when the judge has been settling, and since when without progress.

    Call :meth:`observe` with what the worker sees now (settling or not, and a number that grows
    while a recovery reads its changelogs); :meth:`stalled_for` is how long it has been settling
    without that number moving, and :meth:`stalled` whether that passed ``limit`` seconds (0: never
    reported)."""

    __slots__ = ("limit", "read", "since", "progress", "progress_at", "reported")

    def __init__(self, limit: float, read: Callable[[], tuple[bool, int]] | None = None) -> None:
        self.limit = limit
        self.read = read  # what :meth:`poll` observes (None: nothing to watch)
        self.since: float | None = None  # when this settling began (None: settled)
        self.progress: int | None = None  # the last progress figure seen while settling
        self.progress_at = 0.0  # when it last moved (or the settling began)
        self.reported = False  # this stall was logged

    def observe(self, settling: bool, progress: int, now: float) -> None:
        if not settling:
            self.since = self.progress = None
            self.reported = False
            return
        if self.since is None:
            self.since, self.progress, self.progress_at = now, progress, now
        elif progress != self.progress:
            self.progress, self.progress_at = progress, now
            self.reported = False

    def poll(self, now: float) -> None:
        """Observe what :attr:`read` says now."""
        if self.read is not None:
            self.observe(*self.read(), now)

    def settling_for(self, now: float) -> float:
        """Seconds since the current settling began (0: settled)."""
        return 0.0 if self.since is None else max(0.0, now - self.since)

    def stalled_for(self, now: float) -> float:
        """Seconds settling without progress (0: settled)."""
        return 0.0 if self.since is None else max(0.0, now - self.progress_at)

    def stalled(self, now: float) -> bool:
        return self.limit > 0 and self.stalled_for(now) > self.limit


def faust_settling(app: Any) -> Callable[[], tuple[bool, int]]:
    """Read (settling, progress) from a Faust app: settling from a rebalance's start until its
    tables are recovered; progress the sum of the changelog offsets its recovery has read (active
    and standby), which grows while a recovery makes headway."""

    def read() -> tuple[bool, int]:
        settling = bool(getattr(app, "rebalancing", False) or getattr(app, "in_recovery", False))
        progress = 0
        recovery = getattr(getattr(app, "tables", None), "recovery", None)
        for name in ("active_offsets", "standby_offsets"):
            offsets = getattr(recovery, name, None) or {}
            # None: a changelog partition just assigned, before Faust has read where its
            # recovery starts (Recovery._add, then _build_offsets). Read as a number it raised
            # TypeError in this 5 s timer, which crashed the worker: the survivor of a SIGKILL
            # under TOKENPULSE_PLACEMENT=series died so (test_failover.py)
            progress += sum(int(v) for v in offsets.values() if v is not None)
        return settling, progress

    return read
