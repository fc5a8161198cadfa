"""Spend retention: a judge partition's window records roll up into hours, then days.

Use one :class:`SpendRollup` per judge partition, next to its :class:`~streams.judge.core.JudgeCore`:
tell it each message's ``(src, seq)`` (:meth:`SpendRollup.seen`), and at each checkpoint
:meth:`SpendRollup.roll` the judge's ``spend`` dict; persist what it returns, in its order.
Right after a restore, roll once with ``force=True`` before the first message is applied.

What it does, in event time (the judge's ``done_until``):

- a window record whose hour ended more than ``hourly_after`` ago is added into its series' UTC
  day record, in that hour (``streams.common.spend`` has the shapes);
- a day record whose day ended more than ``daily_after`` ago becomes one sum for the day.

Exactness. Every sum moves at most once: the day record keeps, per hour (per day once
compacted), the highest seq of each source it absorbed (``hw``). A window record is only ever
absorbed whole, in one roll of its hour, and only once its sources have sent a later message
than the ones in it (a message may come in chunks sharing one seq: a later seq means every
chunk of it has been applied). So after a roll every message a source sends has a seq above
that hour's ``hw``, and a window record whose seqs are all at or below ``hw`` is one already
counted: one restored from a checkpoint whose roll-up was only partly written (the rolled
record is written before the deletions, so a crash between them leaves such a copy), or one
re-created by a redelivered message. It is dropped, not added again.

Late events keep counting: a window of a rolled hour gets a new window record, rolled into
the same hour at the next roll.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from dataclasses import dataclass, field
from typing import Any

from streams.common.spend import DAY, HOUR, HOUR_KEYS, day_key, split_key

__all__ = ["HOURLY_AFTER", "DAILY_AFTER", "SpendRollup"]

HOURLY_AFTER = 48 * HOUR  # TOKENPULSE_SPEND_HOURLY_AFTER_SECONDS
DAILY_AFTER = 35 * DAY  # TOKENPULSE_SPEND_DAILY_AFTER_SECONDS


def _hw(row: list[Any]) -> dict[int, int]:
    it = iter(row[6:])
    return {int(src): int(seq) for src, seq in zip(it, it, strict=False)}


def _row(sums: list[int], hw: dict[int, int]) -> list[Any]:
    out: list[Any] = list(sums)
    for src in sorted(hw):
        out += [src, hw[src]]
    return out


@dataclass
class SpendRollup:
    """Rolls one judge partition's spend records up (see the module's docstring).

    ``hourly_after`` / ``daily_after``: event-time seconds after which a window's spend is
    kept only by the hour, an hour's only by the day (0: never). Windows that do not divide
    an hour (``window_seconds`` 7 or 5400) are never rolled into hours.
    """

    window_seconds: int
    hourly_after: int = HOURLY_AFTER
    daily_after: int = DAILY_AFTER
    latest: dict[int, int] = field(default_factory=dict)  # highest seq seen per source
    _next_hour: int | None = None  # the roll is due once the cut-off reaches this hour
    _next_day: int | None = None

    def seen(self, src: int, seq: int) -> None:
        """A message of source ``src`` with ``seq`` is about to be applied."""
        if seq > self.latest.get(src, -1):
            self.latest[src] = seq

    def restored(self, spend: MutableMapping[str, Any]) -> None:
        """After a restore: the seqs already applied stand in for the messages seen."""
        for rec in spend.values():
            if not rec:
                continue
            if "v" in rec:
                for src, seqs in rec["v"].items():
                    if seqs:
                        self.seen(int(src), max(int(s) for s in seqs))
            elif "h" in rec or "d" in rec:
                for row in rec["h"].values() if "h" in rec else [rec["d"]]:
                    for src, seq in _hw(row).items():
                        self.seen(src, seq)

    def due(self, now: float) -> bool:
        """Whether a roll at event time ``now`` has anything new to do (one pass per hour)."""
        if self.hourly_after and self._next_hour is not None and now - self.hourly_after >= self._next_hour:
            return True
        return bool(self.daily_after and self._next_day is not None and now - self.daily_after >= self._next_day)

    def roll(self, spend: MutableMapping[str, Any], now: float | None, force: bool = False) -> dict[str, Any]:
        """Roll ``spend`` up in place as of event time ``now``; the changes to persist, in
        order (rolled records first, then the window records' deletions as ``None``)."""
        if now is None or not (force or self._next_hour is None or self.due(now)):
            return {}
        written: dict[str, Any] = {}
        deleted: list[str] = []
        if self.hourly_after and HOUR % self.window_seconds == 0:
            self._roll_hours(spend, now, written, deleted)
        if self.daily_after:
            self._roll_days(spend, now, written)
        for key in deleted:
            spend.pop(key, None)
        return written | {k: None for k in deleted}

    def _roll_hours(self, spend: MutableMapping[str, Any], now: float, written: dict[str, Any],
                    deleted: list[str]) -> None:
        W = self.window_seconds
        cut = int(now - self.hourly_after) // HOUR * HOUR  # hours ending by it are rolled
        self._next_hour = cut + HOUR
        # window records of rolled hours, grouped: each hour of a series is absorbed whole
        groups: dict[tuple[str, int], list[tuple[str, dict[str, Any]]]] = {}
        for key, rec in list(spend.items()):
            if not rec or "v" not in rec:
                continue
            got = split_key(key)
            if got is None or got[1] + W > cut:
                continue
            series, w, _ = got
            hour = w // HOUR * HOUR
            seqs = {int(s): max(int(x) for x in v) for s, v in rec["v"].items() if v}
            hw = self._hw_of(spend, series, hour)
            if seqs and hw and all(s in hw and x <= hw[s] for s, x in seqs.items()):
                deleted.append(key)  # counted already (a copy restored or re-created)
            elif not any(x >= 0 and x >= self.latest.get(s, -1) for s, x in seqs.items()):
                groups.setdefault((series, hour), []).append((key, rec))
            # else: its message may have more chunks to come; the next roll takes it
        for (series, hour), recs in groups.items():
            day = hour // DAY * DAY
            dk = day_key(series, day)
            drec = spend.get(dk) or {"h": {}}
            hk = HOUR_KEYS[(hour - day) // HOUR]
            row = drec["d"] if "d" in drec else drec["h"].get(hk) or [0] * 6
            hw = _hw(row)
            sums = [int(x) for x in row[:6]]
            for key, rec in recs:
                deleted.append(key)
                for i in range(6):
                    sums[i] += int(rec["s"][i])
                for s, x in rec["v"].items():
                    if x:
                        hw[int(s)] = max(hw.get(int(s), -1), max(int(y) for y in x))
            drec = {"d": _row(sums, hw)} if "d" in drec else {"h": {**drec["h"], hk: _row(sums, hw)}}
            spend[dk] = written[dk] = drec

    def _roll_days(self, spend: MutableMapping[str, Any], now: float, written: dict[str, Any]) -> None:
        cut = int(now - self.daily_after) // DAY * DAY
        self._next_day = cut + DAY
        for key, rec in list(spend.items()):
            if not rec or "h" not in rec:
                continue
            got = split_key(key)
            if got is None or got[1] + DAY > cut:
                continue
            sums = [0, 0, 0, 0, 0, 0]
            hw: dict[int, int] = {}
            for row in rec["h"].values():
                for i in range(6):
                    sums[i] += int(row[i])
                for s, x in _hw(row).items():
                    hw[s] = max(hw.get(s, -1), x)
            spend[key] = written[key] = {"d": _row(sums, hw)}

    @staticmethod
    def _hw_of(spend: MutableMapping[str, Any], series: str, hour: int) -> dict[int, int]:
        """The highest seq per source already counted in ``series``' ``hour`` ({} if none)."""
        day = hour // DAY * DAY
        drec = spend.get(day_key(series, day))
        if not drec:
            return {}
        row = drec.get("d") or drec["h"].get(HOUR_KEYS[(hour - day) // HOUR])
        return _hw(row) if row else {}
