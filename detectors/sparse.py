"""Evidence summed over as many windows as it takes: the combiner's model of sparse series.

A team that makes a request every few minutes has windows with 0, 1 or 2 requests: no single
window is evidence of anything (the combiner then listens only to the request-count model, see
``Combined``'s ``min_requests``), and a model switch that makes every request cost seven times
as much, or a key leak that adds a few expensive calls an hour, never shows in one window. It
shows in the spend of the last few dozen requests. :class:`SparseEvidence` keeps that sum:

- the expected requests per window come from an hour-of-day profile (24 UTC slots of mean
  requests per window, zeros included; a slot judges once it has ``_SLOT_MIN_N`` windows,
  before that the recent level of all hours does), and the cost of a request from the spend
  per request of normal windows (about a day's memory);
- the spend ``S`` and the expected spend ``E`` are summed with exponential forgetting over a
  horizon of about ``requests`` expected requests: ``requests / (expected requests per
  window)`` windows, at least one and at most ``max_windows`` -- one window on a busy series,
  an hour or more on a quiet one (a per-series, per-hour adaptive window length);
- it has an opinion once it has learnt ``min_history`` windows (two days): a new team's
  first days are its profile's, not evidence;
- its statistic is the excess ``S - E`` in units of its standard deviation under a compound
  Poisson: ``cost * sqrt(D * (Q + 1))`` with ``Q`` the expected requests summed the same way
  and ``D = E[c**2] / E[c]**2`` of the request cost ``c`` (learnt from the windows' spread of
  spend around requests x cost; at least 1);
- that statistic is calibrated like every model's (:class:`~detectors.calibration.TailCalibrator`,
  normal windows only), so its p-value means what the others' do, and the combiner combines
  it with theirs.

The sums follow every window, surprising or not: they are the evidence, not the baseline --
except that the first normal window after an incident forgets the excess summed so far (its
spend has been judged; kept, it made every ordinary request for hours after look like more of
it). The profile, the cost and the calibration learn normal windows only.

Not a registered detector: its verdict is about the last few dozen requests, not about one
window (a spike keeps it high for its horizon), which the per-window contract does not
describe; the combiner runs it next to its components (``Combined``'s ``sparse``).

>>> import random
>>> rng = random.Random(2)
>>> ev = SparseEvidence()
>>> t0 = 1_704_067_200.0
>>> for i in range(1, 5 * 1440):   # one $0.01 request every ~5 minutes
...     n = 1 if rng.random() < 0.2 else 0
...     ev.learn(t0 + 60 * i, 0.01 * n * rng.lognormvariate(0, 0.5), n, normal=True)
>>> ps = []
>>> for i in range(5 * 1440, 5 * 1440 + 60):   # the same requests at 7x the price
...     n = 1 if rng.random() < 0.2 else 0
...     v = 0.07 * n * rng.lognormvariate(0, 0.5)
...     ps.append(ev.score(t0 + 60 * i, v, n)[0])
...     _ = ev.learn(t0 + 60 * i, v, n, normal=False)
>>> min(ps[:5]) > 1e-3, min(ps[-10:]) < 2e-4   # an hour in: as rare as 1 window in 5,000
(True, True)
"""

from __future__ import annotations

import math
from array import array
from typing import Any

from detectors.calibration import TailCalibrator

__all__ = ["SparseEvidence"]

_GLOBAL = 24
_N_SLOTS = 25
# A slot of the hour-of-day profile judges once it has learnt this many windows (half an hour
# of one-minute windows: some of an earlier day).
_SLOT_MIN_N = 30
# Weight of the newest hour of data in a slot (as CountTail's alpha): ~5 days per slot, ~5 h
# for the global level.
_ALPHA = 0.2
# Memory of the cost per request and its spread, in seconds (about a day).
_COST_MEMORY_S = 86400.0
# Largest spread index D: a series whose requests' costs differ by more than this is judged as
# if they did not.
_MAX_D = 1e4
# Weight of a window in the recent level that rebase adopts (about the last 30 windows).
_RECENT_W = 1.0 / 30
# While its own p-value is at most this, the evidence is building up: a normal window's
# statistic is held from the calibration until the run ends, and learnt then (the profile and
# cost learn it as usual: holding them too locks a growing series out of learning). Otherwise a
# model switch that takes an hour to become decisive teaches the calibration that it is
# ordinary first, and the evidence never gets there. (Dropping the held statistics of a run
# that had a surprising window, as the models drop an incident's, left the calibration without
# a bursty series' ordinary bursts: 53 false alerts on seed 3 instead of 24.)
_HOLD_P = 0.01
# At most this many statistics held (half a day of one-minute windows); a longer run's oldest
# are learnt.
_HOLD_MAX = 720


class SparseEvidence:
    """Spend of the last ``requests`` expected requests against what they usually cost: a
    calibrated upper-tail p-value, for the combiner (module doc).

    ``score(ts, value, count)`` is pure; ``learn(ts, value, count, normal)`` moves the sums
    (always) and, for a normal window, the profile, cost and calibration.
    """

    __slots__ = ("window_seconds", "requests", "max_windows", "min_history", "_aw", "_cw",
                 "_off_w", "_n", "_mean", "_cost", "_spread", "_acc", "_cal", "_learnt",
                 "_recent", "_offset", "_memo", "_hold", "_after")

    def __init__(self, window_seconds: float = 60.0, requests: float = 20.0, max_windows: float = 240.0,
                 min_history: int = 2880) -> None:
        self.window_seconds = window_seconds
        self.requests = requests
        self.max_windows = max_windows
        self.min_history = min_history
        self._aw = 1.0 - (1.0 - _ALPHA) ** (window_seconds / 3600.0)
        self._cw = min(1.0, window_seconds / _COST_MEMORY_S)
        self._off_w = 1.0 - 0.5 ** (window_seconds / 3600.0)
        self.reset()

    def reset(self) -> None:
        self._n = array("q", bytes(8 * _N_SLOTS))  # windows learnt per slot
        self._mean = array("d", bytes(8 * _N_SLOTS))  # mean requests per window per slot
        self._cost = [0.0, 0.0, 0]  # EW spend and requests per window (windows with requests), n
        self._spread = 0.0  # EW of (spend - requests * cost)**2 per window (same windows)
        self._acc = [0.0, 0.0, 0.0]  # S, E, Q: spend, expected spend, expected requests (summed)
        self._cal = TailCalibrator()
        self._learnt = 0
        self._recent = [0.0, 0.0, 0.0, 0.0]  # requests, expected requests, spend, requests w/ spend
        self._offset = 0.0  # log factor on expected requests, set by rebase, wears off
        self._hold: list[float] = []  # statistics of the evidence building up (_HOLD_P)
        self._after = False  # the window learnt last was not normal (an incident under way)
        self._memo: tuple[Any, ...] | None = None

    # -- state ------------------------------------------------------------------------------

    def to_state(self) -> list[Any]:
        return [list(self._n), list(self._mean), list(self._cost), self._spread, list(self._acc),
                self._cal.to_state(), self._learnt, list(self._recent), self._offset, list(self._hold),
                int(self._after)]

    @classmethod
    def from_state(cls, state: Any, window_seconds: float = 60.0, requests: float = 20.0,
                   max_windows: float = 240.0, min_history: int = 2880) -> SparseEvidence:
        self = cls(window_seconds, requests, max_windows, min_history)
        try:
            # (states written before the incident flag have ten items: none under way)
            n, mean, cost, spread, acc, cal, learnt, recent, offset, hold, *after = state
            if len(after) > 1 or (after and after[0] not in (0, 1)):
                raise ValueError("a trailing item that is not the incident flag (0 or 1)")
            hold = [float(x) for x in hold]
            n = [int(x) for x in n]
            mean = [float(x) for x in mean]
            cost = [float(cost[0]), float(cost[1]), int(cost[2])]
            spread = float(spread)
            acc = [float(x) for x in acc]
            cal = TailCalibrator.from_state(cal)
            learnt = int(learnt)
            recent = [float(x) for x in recent]
            offset = float(offset)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"malformed sparse evidence state: {exc!r}") from exc
        floats = [*mean, *cost[:2], spread, *acc, *recent]
        if (len(n) != _N_SLOTS or len(mean) != _N_SLOTS or len(acc) != 3 or len(recent) != 4
                or not all(math.isfinite(x) and x >= 0.0 for x in floats) or not math.isfinite(offset)):
            raise ValueError("sparse evidence state does not fit")
        self._n, self._mean, self._cost, self._spread = array("q", n), array("d", mean), cost, spread
        if len(hold) > _HOLD_MAX or not all(math.isfinite(x) for x in hold):
            raise ValueError("sparse evidence state does not fit")
        self._acc, self._cal, self._learnt, self._recent, self._offset = acc, cal, learnt, recent, offset
        self._hold = hold
        self._after = bool(after and after[0])
        return self

    # -- model ------------------------------------------------------------------------------

    def _rate(self, ts: float) -> tuple[int, float]:
        """The window's hour-of-day slot and its expected requests."""
        slot = int((ts - self.window_seconds) // 3600) % 24
        mu = self._mean[slot] if self._n[slot] >= _SLOT_MIN_N else self._mean[_GLOBAL]
        if self._offset != 0.0:
            mu *= math.exp(self._offset)
        return slot, mu

    def expected_requests(self) -> float:
        """The expected requests of the window scored last (0 before any)."""
        memo = self._memo
        return float(memo[5]) if memo is not None else 0.0

    def cost(self) -> float:
        """The usual spend per request (0 until a window with requests was learnt)."""
        s, r, _ = self._cost
        return s / r if r > 0.0 and s > 0.0 else 0.0

    def score(self, ts: float, value: float, count: float) -> tuple[float, float, float, str, float]:
        """(p-value, statistic, summed excess S - E in dollars, reason, the window's own excess
        in the statistic's units) with this window summed in; p is 1 during the cold start
        (``min_history`` normal windows, a cost)."""
        memo = self._memo
        if memo is not None and memo[0] == ts and memo[1] == value and memo[2] == count:
            done: tuple[float, float, float, str, float] = memo[3]
            return done
        slot, mu = self._rate(ts)
        c = self.cost()
        # the horizon: about ``requests`` expected requests, in windows
        horizon = self.requests / mu if mu > 0.0 else self.max_windows
        horizon = 1.0 if horizon < 1.0 else self.max_windows if horizon > self.max_windows else horizon
        d = 1.0 - 1.0 / horizon
        s_, e_, q_ = self._acc
        s = d * s_ + (value if value > 0.0 else 0.0)
        e = d * e_ + mu * c
        q = d * q_ + mu
        if c > 0.0:
            var_c = self._spread / self._cost[1] if self._cost[1] > 0.0 else 0.0
            spread = 1.0 + var_c / (c * c)
            spread = _MAX_D if spread > _MAX_D else spread
            unit = c * math.sqrt(spread)  # the sd of one request's cost, about
            stat = (s - e) / (unit * math.sqrt(q + 1.0))
            own = (value - mu * c) / unit
        else:
            stat = own = 0.0
        if self._learnt < self.min_history or c <= 0.0:
            p = 1.0
            reason = f"sparse evidence: cold start ({self._learnt} of {self.min_history} windows)"
        else:
            p = self._cal.sf(stat)
            reason = (f"${s:,.2f} spent over the last ~{q:.0f} expected requests ({horizon:.0f} windows), "
                      f"${e:,.2f} expected: p = {p:.2g}")
        out = (p, stat, s - e, reason, own)
        self._memo = (ts, value, count, out, slot, mu, (s, e, q))
        return out

    def learn(self, ts: float, value: float, count: float, normal: bool) -> float | None:
        """Sum the window into the evidence; a ``normal`` window also teaches the profile, the
        cost and the calibration, unless the evidence is building up (its p at most
        ``_HOLD_P``: then its statistic is held, and learnt when that run ends without a
        surprising window). Returns the statistic a not-normal window did not teach."""
        self.score(ts, value, count)
        memo = self._memo
        assert memo is not None
        self._memo = None
        (p, stat, _, _, _), slot, mu, acc = memo[3], memo[4], memo[5], memo[6]
        self._acc = list(acc)
        r = self._recent
        r[0] += _RECENT_W * (count - r[0])
        r[1] += _RECENT_W * (mu - r[1])
        if count > 0.0:
            r[2] += _RECENT_W * (max(value, 0.0) - r[2])
            r[3] += _RECENT_W * (count - r[3])
        warm = self._learnt >= self.min_history and self.cost() > 0.0
        hold = self._hold
        if not normal:
            self._after = True
            return stat if warm else None
        if self._after:
            # The first normal window after an incident (whichever model found it): its spend
            # has been judged, and it would stay in the sums for the horizon (hours on a quiet
            # series), where every ordinary request after it looked like more of it (project
            # seed 0: `search` after its runaway loop, `legal` 8 h after a night spike). The
            # excess summed so far is forgotten; what falls short of expected is kept.
            self._after = False
            if self._acc[0] > self._acc[1]:
                self._acc[0] = self._acc[1]
        if warm and p <= _HOLD_P:
            if len(hold) >= _HOLD_MAX:
                self._cal.learn(hold.pop(0))
            hold.append(stat)
        else:
            for z in hold:
                self._cal.learn(z)  # the run is over: its normal windows are learnt now
            hold.clear()
            if warm:
                self._cal.learn(stat)
        self._learnt += 1
        off = self._offset
        if off != 0.0:
            # a rebased level wears off towards what the profile expects, never past it
            new = off + self._off_w * math.log((count + 1.0) / (mu + 1.0))
            self._offset = 0.0 if (new > 0.0) != (off > 0.0) else off if abs(new) > abs(off) else new
        for i in (slot, _GLOBAL):
            n = self._n[i] + 1
            self._n[i] = n
            w = 1.0 / n
            if w < self._aw:
                w = self._aw
            self._mean[i] += w * (count - self._mean[i])
        if count > 0.0:
            cs = self._cost
            cs[2] += 1
            w = 1.0 / cs[2]
            if w < self._cw:
                w = self._cw
            c = self.cost()
            if c > 0.0:
                dev = value - count * c
                self._spread += w * (dev * dev - self._spread)
            cs[0] += w * (max(value, 0.0) - cs[0])
            cs[1] += w * (count - cs[1])
        return None

    def adds_evidence(self, ts: float, value: float, count: float) -> bool:
        """Whether this window adds evidence of its own: its excess over expected is at least
        one request's spread, and more than the forgetting takes off the summed excess (the
        sum grows). An ordinary request in a sum that still holds a burst's spend adds less
        than the sum loses."""
        _, _, excess, _, own = self.score(ts, value, count)
        return own >= 1.0 and excess > self._acc[0] - self._acc[1]

    def learn_held(self, stat: float) -> None:
        """A statistic held back from the calibration, learnt late (a short burst)."""
        self._cal.learn(stat)

    def rebase(self) -> None:
        """Adopt the recent level: requests (an offset that wears off as the profile learns
        it) and cost per request, and forget the evidence summed so far."""
        got, expected, spend, requests = self._recent
        if expected > 0.0 and got > 0.0:
            self._offset += math.log(got / expected)
        if requests > 0.0 and spend > 0.0 and self._cost[1] > 0.0:
            self._cost[0] = self._cost[1] * spend / requests
        self._acc = [0.0, 0.0, 0.0]
        self._recent = [0.0, 0.0, 0.0, 0.0]
        self._hold = []
        self._after = False
        self._memo = None
