"""Who drives a series' excess: each contributor's usual share of the spend, learnt online.

A verdict says how far a window's spend is above what the detector expected; on-call wants to
know *whose* spend that is. The biggest spender of the window is often the wrong answer: the
nightly batch user tops every night's list whether or not something is wrong. So every watched
series keeps, per contributor (``user:alice``, ``model:gpt-4o``, ``team:ads`` for the org), its
exact nano-dollar spend over the current and the previous day of event time, learnt from
normal windows only (an incident does not become the usual mix). A window's expected spend is
split by those shares, and contributors are ranked by what they spent above their share:

>>> mix = ContributorMix()
>>> for w in range(0, 3600, 60):  # a normal hour: alice 3/4 of $1 a minute, bob 1/4
...     mix.learn(w, {"user:alice": 750_000_000, "user:bob": 250_000_000}, 1_000_000_000)
>>> window = {"user:alice": 800_000_000, "user:bob": 9_200_000_000}  # $10: bob's loop
>>> [(c["name"], c["usd"], c["expected_usd"], c["excess_usd"]) for c in mix.excess(window, 1.0)]
[('bob', 9.2, 0.25, 8.95), ('alice', 0.8, 0.75, 0.05)]

Integer sums only, so the worker and the offline replay (which learn from the same windows
in the same order) rank alike, and a restart from :meth:`to_state` changes nothing. The
state is bounded: at most :data:`MAX_TRACKED` contributors per day; later newcomers count in
the total (so their usual share is 0 and all they spend is excess).
"""

from __future__ import annotations

from array import array
from typing import Any

from alerts.model import Contributor
from streams.ingest.windows import NANO

__all__ = ["DAY", "MAX_TRACKED", "ContributorMix", "top_spenders"]

DAY = 86_400
MAX_TRACKED = 64
TOP = 5


def _entry(name: str, nusd: int) -> Contributor:
    kind, _, who = name.partition(":")
    return {"kind": kind, "name": who, "usd": round(nusd / NANO, 6)}


def top_spenders(contrib: dict[str, int], k: int = TOP) -> list[Contributor]:
    """The ``k`` contributors that spent most in a window (ties by name)."""
    top = sorted(contrib.items(), key=lambda kv: (-kv[1], kv[0]))[:k]
    return [_entry(name, nusd) for name, nusd in top]


class ContributorMix:
    """Per contributor, nano-dollars spent today and yesterday (UTC days of event time) in
    the windows :meth:`learn` was given, with the total spend of those windows.

    Held compactly (a user series has one or two contributors a day; two dicts and their int
    objects were ~600 bytes per series): today's and yesterday's names in two tuples (yesterday's
    is today's of the day before: the same tuple) and every sum in one 64-bit array,
    ``[today's total, yesterday's total, today's sums..., yesterday's sums...]`` in the names'
    order (a Python list past 64 bits). ``cur``, ``prev`` and the totals read as they did."""

    __slots__ = ("day", "_cur", "_prev", "_v")

    def __init__(self) -> None:
        self.day: int | None = None
        self._cur: tuple[str, ...] = ()  # today's contributors, in the order they came
        self._prev: tuple[str, ...] = ()  # yesterday's
        self._v: array[int] | list[int] = array("q", _ZEROS)

    @property
    def cur(self) -> dict[str, int]:
        """Today's contributors' nano-dollars (a copy)."""
        v = self._v
        return {name: v[2 + i] for i, name in enumerate(self._cur)}

    @property
    def prev(self) -> dict[str, int]:
        """Yesterday's (a copy)."""
        v, k = self._v, 2 + len(self._cur)
        return {name: v[k + i] for i, name in enumerate(self._prev)}

    @property
    def cur_total(self) -> int:
        return self._v[0]

    @property
    def prev_total(self) -> int:
        return self._v[1]

    def learn(self, window_start: int, contrib: dict[str, int], total_nusd: int) -> None:
        """Add one normal window (its contributors' and its total nano-dollars)."""
        day = window_start // DAY
        if day != self.day:
            if self.day is not None and day < self.day:
                return  # an older window (cannot happen in order; never rewrites the past)
            if self.day is not None and day == self.day + 1:
                v = self._v
                self._v = _sums([0, v[0], *v[2:2 + len(self._cur)]])
                self._prev = self._cur
            else:
                self._v = array("q", _ZEROS)
                self._prev = ()
            self._cur = ()
            self.day = day
        if not total_nusd:
            return
        # (an array's store that overflows raises and changes nothing: the sums go on in a list)
        v = self._v
        try:
            v[0] += total_nusd
        except OverflowError:
            v = self._v = list(v)
            v[0] += total_nusd
        cur = self._cur
        for name, nusd in contrib.items():
            if name in cur:
                i = 2 + cur.index(name)
                try:
                    v[i] += nusd
                except OverflowError:
                    v = self._v = list(v)
                    v[i] += nusd
            elif len(cur) < MAX_TRACKED:
                # (once a day per contributor: rebuilt to exactly its size, where an insert
                # over-allocates, and today's names the very tuple of yesterday's when they are
                # the same, as a user's models usually are)
                k = 2 + len(cur)
                v = self._v = _sums([*v[:k], nusd, *v[k:]])
                cur = (*cur, name)
                self._cur = cur = self._prev if cur == self._prev else cur

    def excess(self, contrib: dict[str, int], expected_usd: float, k: int = TOP) -> list[Contributor]:
        """The ``k`` contributors of a window that spent most above their usual share of
        ``expected_usd``, each with ``usd`` (spent), ``expected_usd`` and ``excess_usd``;
        only those above their share. Without any history yet (or when nobody is above
        their share), the window's top spenders."""
        v = self._v
        total = v[0] + v[1]
        if total <= 0 or not contrib:
            return top_spenders(contrib, k)
        cur, prev = self._cur, self._prev
        k_prev = 2 + len(cur)
        scale = expected_usd / total
        ranked = []
        for name, nusd in contrib.items():
            usual = ((v[2 + cur.index(name)] if name in cur else 0)
                     + (v[k_prev + prev.index(name)] if name in prev else 0))
            expected = usual * scale
            excess = nusd / NANO - expected
            if excess > 0:
                ranked.append((-excess, name, nusd, expected))
        if not ranked:
            return top_spenders(contrib, k)
        ranked.sort()
        out = []
        for neg, name, nusd, expected in ranked[:k]:
            e = _entry(name, nusd)
            e["expected_usd"] = round(expected, 6)
            e["excess_usd"] = round(-neg, 6)
            out.append(e)
        return out

    # -- persistence (JSON-able, lives with the series' detector state) -----------------
    def to_state(self) -> dict[str, Any]:
        return {"day": self.day, "cur": self.cur, "cur_total": self.cur_total,
                "prev": self.prev, "prev_total": self.prev_total}

    @classmethod
    def from_state(cls, state: dict[str, Any] | None) -> ContributorMix:
        mix = cls()
        if not state:
            return mix
        day = state.get("day")
        mix.day = None if day is None else int(day)
        cur = {str(k): int(v) for k, v in (state.get("cur") or {}).items()}
        prev = {str(k): int(v) for k, v in (state.get("prev") or {}).items()}
        mix._cur, mix._prev = tuple(cur), tuple(prev)
        mix._v = _sums([int(state.get("cur_total") or 0), int(state.get("prev_total") or 0),
                        *cur.values(), *prev.values()])
        return mix


_ZEROS = (0, 0)


def _sums(values: list[int]) -> array[int] | list[int]:
    """``values`` in a 64-bit array of exactly their size, or as they are past 64 bits."""
    try:
        return array("q", values)
    except OverflowError:
        return list(values)
