"""Too many requests for the hour: an upper-tail test on request counts per window."""

from __future__ import annotations

import math
from array import array
from collections.abc import Sequence
from typing import Any

from scipy.special import betainc, gammainc, nbdtrik, pdtrik

from detectors.base import Detector, Verdict, require
from detectors.calibration import TailCalibrator, jitter, z_of_p
from detectors.compact import narrowest, shared, widened

__all__ = ["CountTail"]

# Profile layout: 24 hour-of-day slots (UTC), then one global slot.
_GLOBAL = 24
_N_SLOTS = 25
# The learnt floats, one array (CountTail._floats): the slots' mean requests per window, then
# the dispersion sums, the cost sums and the recent level (see CountTail._reset).
_DISP = _N_SLOTS
_COST = _DISP + 4
_RECENT = _COST + 2
_N_FLOATS = _RECENT + 4

# Bounded influence, as in SeasonalBaseline: once a slot has a few windows, a count is learnt
# at most this many standard deviations from the slot's mean (the standard deviation taken as
# at least one request: a slot of zeros must still learn its first calls), and so is its
# contribution to the dispersion. A burst just under the bound, or an outage, nudges the
# profile.
_CLIP_SD = 3.0
_UNCLIPPED_WARMUP = 4

# Weight of a window in the recent level that ``rebase`` adopts (about the last ten windows: a
# request count is Poisson-noisy at low rates, and the count model is not the one whose expected
# spend the combiner reports; the spend models follow the last three windows).
_RECENT_W = 0.1

# Below this the overdispersion is taken as 0 (Poisson): the negative binomial with r = 1/phi
# above ~1e9 is the Poisson to double precision anyway, and betainc is slower there.
_MIN_DISPERSION = 1e-9

# Learnt floats are kept at full precision: rounding them on every update (to halve the
# state's JSON) cost more CPU than the combiner's whole decision.


class CountTail(Detector):
    """Count-aware tail test for low-volume series: is this many requests plausible now?

    On a quiet series, spend per window is a handful of requests: a night of zeros and the
    odd call makes any z-score on spend infinite (sigma ~ 0), and three calls where half a call
    is usual look like a 6x spike to a spend model. Counts have a known shape: this detector
    asks how likely it is to see at least this many requests in the window given the expected
    number, under a negative binomial (a Poisson whose rate itself varies; Poisson when the
    series shows no extra variance). Three requests against 0.5 expected is p = 0.014: nothing.
    Sixty is p ~ 1e-100: an alert.

    - The expected count comes from an hour-of-day profile (24 slots, UTC) of the mean requests
      per window, zero windows included -- a quiet hour's rate *is* mostly zeros --
      interpolated between neighbouring hours by where the window falls in its hour. A slot
      judges once it has data from an earlier day; until then the global slot does (a recent
      level over the last few hours).
    - Overdispersion ``phi`` (variance = mean + phi * mean**2) is estimated online from the
      residuals of the windows against the profile, for the hour-of-day slots together and
      for the global slot: sum of (residual**2 - mean) over sum of mean**2, exponentially
      weighted. It absorbs bursty traffic, so ordinary bursts of an agent-heavy series do not
      page at ``p_threshold``, and it is 0 for a Poisson series.
    - A window is an anomaly when, once ``min_history`` windows have been learnt, its count is
      at least ``min_count``, its upper-tail p-value is at most ``p_threshold``, *and* its spend
      is at least ``min_excess`` above the expected spend: cents are not an incident however
      improbable the count.
    - ``expected`` spend is the expected count times the learnt mean cost per request (spend
      over requests, exponentially weighted, over windows with a count); ``upper`` is the spend
      at the count bound (the smallest count that is flagged) at that cost, or ``expected +
      min_excess`` when that is larger.
    - The ``score`` is calibrated (``detectors.calibration``): the count's tail, at a
      deterministically randomised count (integer counts have atoms, and ``P(X >= k)`` alone
      is not uniform under the model), against the same statistic on the series' earlier
      normal windows. ``is_anomaly`` is the model's own test above.
    - ``count=None`` (tests, an analyst's spend-only series): the window is judged on a
      pseudo-count, ``value`` divided by the learnt mean cost per request, or by
      ``fallback_cost`` before any window with a count has been learnt. On such a series the
      "counts" are really spend in units of a typical request; the estimated dispersion keeps
      the test honest, but the low-volume reasoning is only as good as that unit.
    - With ``protect_anomaly`` a flagged window teaches nothing.

    Use it next to ``SeasonalBaseline`` on series with few requests per window (a team's
    nights, a rarely used model), and as the count check behind a spend alert on them. It says
    nothing about what a request costs: a model switch at constant volume is ``LevelShift``'s.

    Parameters
    ----------
    window_seconds
        Length of the windows; ``ts`` is a window's end, and the window belongs to the hour in
        which it starts.
    p_threshold
        Alert bound on the upper-tail p-value of the count.
    min_count
        Fewer requests than this in a window are never an anomaly.
    min_history
        Windows to learn before any alert (cold start).
    min_excess
        Money per window: a flagged window's spend exceeds the expected spend by at least this.
    alpha
        Weight of the newest hour of data in a slot: with 0.2 an hour-of-day slot remembers
        about five days, the global slot and the dispersion about five hours.
    estimate_dispersion
        Estimate the overdispersion (negative binomial); False: plain Poisson (for comparison:
        it pages on ordinary bursts).
    fallback_cost
        Cost of one request assumed when ``count`` is None and no window with a count has
        been learnt yet.
    protect_anomaly
        Do not learn flagged windows.

    Example: two days of a quiet series (one request a minute at noon, 0.2 at night, $0.05
    each), then bursts at 03:00 on day three.

    >>> import numpy as np
    >>> rng = np.random.default_rng(3)
    >>> det = CountTail()
    >>> ts = 1_704_067_200 + 60 * np.arange(1, 3 * 1440 + 1)
    >>> hour = (ts - 60) % 86400 / 3600
    >>> counts = rng.poisson(0.6 - 0.4 * np.cos(2 * np.pi * hour / 24)).astype(float)
    >>> night = 2 * 1440 + 180
    >>> counts[night], counts[night + 10] = 3, 60
    >>> spend = 0.05 * counts
    >>> verdicts = [det.update(float(t), float(v), float(c)) for t, v, c in zip(ts, spend, counts)]
    >>> [i - night for i, v in enumerate(verdicts) if v.is_anomaly]
    [10]
    >>> v = verdicts[night]
    >>> round(v.expected, 3), v.reason
    (0.017, '3 requests, 0.33 expected: p = 0.0027 (bound 1e-06)')
    >>> v = verdicts[night + 10]
    >>> round(v.upper, 2), v.reason
    (0.43, '60 requests, 0.35 expected: p = 1.7e-47 (bound 1e-06)')
    """

    # Slots, not an instance dict: one detector per watched series (benchmarks.scale --breakdown).
    # An attribute left out still works (it goes into a dict, made when first set), at that
    # dict's cost: tests/detectors/test_state_memory.py checks none is.
    __slots__ = ("alpha", "estimate_dispersion", "fallback_cost", "min_count", "min_excess", "min_history",
        "p_threshold", "protect_anomaly", "window_seconds", "_alpha_window", "_cal", "_day", "_disp_n",
        "_floats", "_held", "_last_ts", "_memo", "_n", "_offset", "_offset_w", "_ready", "_seen")

    name = "counts"

    def __init__(
        self,
        window_seconds: float = 60.0,
        p_threshold: float = 1e-6,
        min_count: float = 5.0,
        min_history: int = 30,
        min_excess: float = 0.3,
        alpha: float = 0.2,
        estimate_dispersion: bool = True,
        fallback_cost: float = 0.01,
        protect_anomaly: bool = True,
    ) -> None:
        self.window_seconds = window_seconds
        self.p_threshold = p_threshold
        self.min_count = min_count
        self.min_history = min_history
        self.min_excess = min_excess
        self.alpha = alpha
        self.estimate_dispersion = estimate_dispersion
        self.fallback_cost = fallback_cost
        self.protect_anomaly = protect_anomaly
        require("CountTail", window_seconds > 0, "window_seconds must be > 0", window_seconds)
        require("CountTail", 0 < p_threshold < 0.5, "p_threshold must be in (0, 0.5)", p_threshold)
        require("CountTail", min_count >= 1, "min_count must be >= 1", min_count)
        require("CountTail", min_history >= 0, "min_history must be >= 0", min_history)
        require("CountTail", min_excess > 0, "min_excess must be > 0", min_excess)
        require("CountTail", 0 < alpha <= 1, "alpha must be in (0, 1]", alpha)
        require(
            "CountTail",
            isinstance(estimate_dispersion, bool), "estimate_dispersion must be a bool",
            estimate_dispersion,
        )
        require("CountTail", fallback_cost > 0, "fallback_cost must be > 0", fallback_cost)
        # (one float object for all the clones of a detector: detectors.compact)
        self._alpha_window = shared(1.0 - (1.0 - alpha) ** (window_seconds / 3600.0))
        # how fast a rebased level wears off once requests are back (half-life one hour)
        self._offset_w = shared(1.0 - 0.5 ** (window_seconds / 3600.0))
        super().__init__()

    # -- state ------------------------------------------------------------------------------

    def _reset(self) -> None:
        self._held: float | None = None  # not state: see _take_held
        # typed arrays, not lists of Python numbers: a quarter of the memory, the same values
        # windows learnt, in 16 bits until one outgrows them (the global slot after 65,535
        # windows: 45 days of one-minute windows), then 32 (4000 years): detectors.compact
        self._n = array("H", [0]) * _N_SLOTS
        # Every learnt float in one array (an array's header is 80 bytes, one per watched
        # series each): from 0, the slots' mean requests per window; from _DISP, the dispersion
        # for the hour-of-day level and the global one: exponentially weighted sums of
        # (residual**2 - mean) and of mean**2 (num_hod, den_hod, num_glob, den_glob); from
        # _COST, the mean cost per request: exponentially weighted spend and requests of
        # windows with a count (no cost known while the requests are 0); from _RECENT, the
        # recent level (see _follow).
        # Fixed-length sums as typed arrays, not lists: a list holds a 24-byte float object
        # (28-byte int) per entry, one such set per watched series (benchmarks.scale --breakdown).
        # Made by repetition: an array made from bytes over-allocates.
        self._floats = array("d", [0.0]) * _N_FLOATS
        self._disp_n = array("q", [0]) * 2  # windows counted in the dispersion sums
        # Hour-of-day slots with data (bit i: slot i), those with data from a day before
        # ``_day``, and the epoch day of the latest learnt window.
        self._seen = 0
        self._ready = 0
        self._day = -1
        self._cal = TailCalibrator()  # the score statistic's history (calibrated scores)
        # (_floats from _RECENT: recent requests, expected requests, spend and
        # requests-with-a-count per window over every window, flagged or not: the level
        # ``rebase`` adopts.)
        # The level: a log factor on every expected count, set by ``rebase`` and worn off as
        # the slots learn the new level (or as the requests go back to the old one).
        self._offset = 0.0
        self._memo: tuple[Any, ...] | None = None  # not state: see score_one

    def _get_state(self) -> dict[str, Any]:
        return {
            "n": list(self._n),
            "mean": self._floats[:_N_SLOTS].tolist(),
            "disp": self._floats[_DISP:_COST].tolist(),
            "disp_n": list(self._disp_n),
            "cost": self._floats[_COST:_RECENT].tolist(),
            "days": [self._seen, self._ready, self._day],
            "cal": self._cal.to_state(),
            "recent": self._floats[_RECENT:].tolist(),
            "offset": self._offset,
        }

    def _set_state(self, state: dict[str, Any]) -> None:
        try:
            n = [int(x) for x in state["n"]]
            mean = [float(x) for x in state["mean"]]
            disp = [float(x) for x in state["disp"]]
            disp_n = [int(x) for x in state["disp_n"]]
            cost = [float(x) for x in state["cost"]]
            seen, ready, day = (int(x) for x in state["days"])
            # states written before scores were calibrated have none: start it afresh
            cal = TailCalibrator.from_state(state["cal"]) if "cal" in state else TailCalibrator()
            recent = [float(x) for x in state.get("recent", (0.0, 0.0, 0.0, 0.0))]
            offset = float(state.get("offset", 0.0))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"malformed counts state: {exc!r}") from exc
        if len(n) != _N_SLOTS or len(mean) != _N_SLOTS:
            raise ValueError(f"counts state lists must have {_N_SLOTS} slots")
        if not all(0 <= x < 2 ** 31 for x in n) or not all(0 <= x < 2 ** 63 for x in disp_n):
            raise ValueError("counts state has negative or out-of-range window counts")
        if len(disp) != 4 or len(disp_n) != 2 or len(cost) != 2:
            raise ValueError("counts state has the wrong number of dispersion or cost sums")
        floats = [*mean, *disp, *cost]
        if not all(math.isfinite(x) for x in floats) or min(mean + cost) < 0.0:
            raise ValueError("counts state has non-finite or negative values")
        if len(recent) != 4 or not all(math.isfinite(x) and x >= 0.0 for x in recent):
            raise ValueError("counts state has a bad recent level")
        if not math.isfinite(offset):
            raise ValueError("counts state has a bad level offset")
        self._n, self._disp_n = narrowest(n, "Hi"), array("q", disp_n)
        self._seen, self._ready, self._day = seen, ready, day
        self._floats = array("d", mean + disp + cost + recent)
        self._cal, self._offset = cal, offset
        self._memo = None

    # -- model ------------------------------------------------------------------------------

    def _where(self, ts: float) -> tuple[int, int, bool, float]:
        """Hour of the window, its slot, whether the slot judges it (it has data from an
        earlier day), and the slot's expected count for the window."""
        hour = int((ts - self.window_seconds) // 3600)
        slot = hour % 24
        bit = 1 << slot
        judged = bool(self._ready & bit or (self._seen & bit and self._day < hour // 24))
        mean, n = self._floats, self._n  # (the means are its first _N_SLOTS)
        mu = mean[slot]
        # Slots stand for their hour's middle; interpolate towards the neighbouring hour by
        # where the window's middle falls, so that a rising hour's last minutes are not all
        # "above the hour's mean" (which the dispersion would have to absorb).
        f = (ts - 0.5 * self.window_seconds) / 3600.0 - hour - 0.5
        if f < 0.0:
            other, f = (slot - 1) % 24, -f
        else:
            other = (slot + 1) % 24
        if f > 0.5:
            f = 0.5
        if n[slot] and n[other]:
            mu += f * (mean[other] - mu)
        if self._offset != 0.0:
            mu *= math.exp(self._offset)
        return hour, slot, judged, mu

    def _dispersion(self, level: int) -> float:
        if not self.estimate_dispersion:
            return 0.0
        num, den = self._floats[_DISP + 2 * level], self._floats[_DISP + 2 * level + 1]
        return num / den if den > 0.0 and num > 0.0 else 0.0

    def _cost_per_request(self) -> float:
        f = self._floats
        spend, requests = f[_COST], f[_COST + 1]
        return spend / requests if requests > 0.0 and spend > 0.0 else self.fallback_cost

    def _bound(self, mu: float, phi: float, cost: float) -> tuple[float, float]:
        """The test's count bound and the window's upper (spend). The test: at least the count
        whose tail is p_threshold (the same as p <= p_threshold at a whole count, without a
        second tail evaluation)."""
        count_bound = _count_bound(self.p_threshold, mu, phi)
        bound = count_bound if count_bound > self.min_count else self.min_count
        upper = bound * cost
        expected = mu * cost
        if upper < expected + self.min_excess:
            upper = expected + self.min_excess
        return bound, upper

    def _judged_mu(self, ts: float) -> tuple[tuple[int, int, bool, float], float, float]:
        """Where the window is (:meth:`_where`), the expected count it is judged against and
        the dispersion of the level that judges it."""
        where = self._where(ts)
        judged, mu = where[2], where[3]
        if not judged:
            mu = self._floats[_GLOBAL] * (math.exp(self._offset) if self._offset != 0.0 else 1.0)
        return where, mu, self._dispersion(0 if judged else 1)

    def _score_empty(self, ts: float) -> tuple[float, float, float, bool, bool]:
        # score_one of a window without requests nor spend: count 0, tail p 1, statistic 0
        # (memoised as score_one does); never flagged (the bound is at least min_count >= 1).
        # Its upper, the inverse of the count's tail, costs most (scipy): given as the lower
        # bound it cannot go under, min_count requests or expected + min_excess.
        cost = self._cost_per_request()
        where, mu, _ = self._judged_mu(ts)
        self._memo = (ts, 0.0, 0.0, 0.0, where, 0.0)
        expected = mu * cost
        low = self.min_count * cost
        if low < expected + self.min_excess:
            low = expected + self.min_excess
        learnt = self._n[_GLOBAL]
        p = 1.0 if learnt < self.min_history or learnt == 0 else self._cal.sf(0.0)
        return expected, low, p, False, False

    _lazy_upper = True

    def _empty_run_ok(self, ends: Sequence[float]) -> bool:
        return True  # never flagged without requests

    def _empty_upper(self, ts: float) -> float:
        _, mu, phi = self._judged_mu(ts)
        return self._bound(mu, phi, self._cost_per_request())[1]

    def score_one(self, ts: float, value: float, count: float | None = None) -> Verdict:
        if not (math.isfinite(ts) and math.isfinite(value)):
            raise ValueError(f"ts and value must be finite, got ts={ts!r} value={value!r}")
        cost = self._cost_per_request()
        x = _count(value, count, cost)
        # (where: kept for learn_one of the same window -- the worker and the combiner score,
        # then learn: the second look would cost as much as the first)
        where, mu, phi = self._judged_mu(ts)
        # The count's tail, at a randomised count when it is a whole number: integer counts
        # have atoms, and P(X >= k) alone is not uniform under the model; P(X > k) + U P(X = k)
        # is (the tail between k and k + 1, U from the window's end: same inputs, same p).
        if x > 0.0 and x.is_integer():
            p = _upper_tail(x + 1.0 - jitter(ts, self.window_seconds), mu, phi)
        else:
            p = _upper_tail(x, mu, phi)
        stat = z_of_p(p) if x > 0.0 else 0.0  # the score's statistic, calibrated below
        self._memo = (ts, value, count, x, where, stat)
        bound, upper = self._bound(mu, phi, cost)
        expected = mu * cost
        min_excess = self.min_excess
        excess = value - expected
        learnt = self._n[_GLOBAL]
        p_score = 1.0
        if learnt < self.min_history or learnt == 0:
            flag = False
            reason = f"cold start: {learnt} of {self.min_history} windows learnt"
        else:
            p_score = self._cal.sf(stat)
            flag = x >= bound and excess >= min_excess
            what = "requests" if count is not None else "requests (from spend)"
            reason = (
                f"{x:.3g} {what}, {mu:.2g} expected: p = {p:.2g} "
                f"(bound {self.p_threshold:.2g})"
            )
        return Verdict(
            ts=ts,
            observed=value,
            expected=expected,
            upper=upper,
            score=1.0 - p_score,
            is_anomaly=flag,
            excess=excess,
            excess_pct=100.0 * excess / expected if expected > 0.0 else None,
            detector=self.name,
            reason=reason,
            p=p_score,
        )

    def learn_one(self, ts: float, value: float, count: float | None = None) -> None:
        if not (math.isfinite(ts) and math.isfinite(value)):
            raise ValueError(f"ts and value must be finite, got ts={ts!r} value={value!r}")
        memo = self._memo
        if memo is None or memo[0] != ts or memo[1] != value or memo[2] != count:
            self.score_one(ts, value, count)
            memo = self._memo
        assert memo is not None
        x, (hour, slot, _, mu), stat = memo[3], memo[4], memo[5]
        self._memo = None
        self._follow(value, count, x, mu)
        off = self._offset
        if off != 0.0:
            # A rebased level wears off towards what the slots expect by themselves, never past
            # 0 (one request of pseudo-count keeps quiet windows from racing it down).
            new = off + self._offset_w * math.log((x + 1.0) / (mu + 1.0))
            if (new > 0.0) != (off > 0.0):
                new = 0.0
            elif abs(new) > abs(off):
                new = off
            self._offset = new
        if self._n[_GLOBAL] >= self.min_history and self._n[_GLOBAL]:
            self._cal.learn(stat)
        day = hour // 24
        if day > self._day:
            self._ready |= self._seen
            self._day = day
        self._seen |= 1 << slot
        aw = self._alpha_window
        damp = self._damp
        n_, disp_n = self._n, self._disp_n
        mean = disp = self._floats  # the means from 0, the dispersion sums from _DISP
        for level, i in ((0, slot), (1, _GLOBAL)):
            n = n_[i]
            if n == 0:
                n_[i] = 1
                mean[i] = (x)
                continue
            m = mean[i]
            # The dispersion is learnt around what the level expects of the window (the
            # interpolated profile, at the hour-of-day level); the mean around the slot's own.
            centre = mu if level == 0 else m
            r, d = x - m, x - centre
            if n >= _UNCLIPPED_WARMUP:
                var = centre + self._dispersion(level) * centre * centre
                c = _CLIP_SD * math.sqrt(var if var > 1.0 else 1.0)
                r = c if r > c else -c if r < -c else r
                d = c if d > c else -c if d < -c else d
            n += 1
            try:
                n_[i] = n
            except OverflowError:  # outgrew its type: the same values, wider
                n_ = self._n = widened(n_, "i")
                n_[i] = n
            w = 1.0 / n
            if w < aw:
                w = aw
            mean[i] = (max(m + damp * w * r, 0.0))
            dn = disp_n[level] + 1
            disp_n[level] = dn
            w = 1.0 / dn
            if w < aw:
                w = aw
            j = _DISP + 2 * level
            disp[j] = (disp[j] + w * (d * d - centre - disp[j]))
            disp[j + 1] = (disp[j + 1] + w * (centre * centre - disp[j + 1]))
        if count is not None:
            cost = self._floats
            w = aw
            cost[_COST] = (cost[_COST] + w * (value - cost[_COST]))
            cost[_COST + 1] = (cost[_COST + 1] + w * (count - cost[_COST + 1]))


    def _learn_protected(
        self, ts: float, value: float, verdict: Verdict, count: float | None = None
    ) -> None:
        memo = self._memo
        self._memo = None
        if memo is not None and memo[0] == ts and memo[1] == value and memo[2] == count:
            self._follow(value, count, memo[3], memo[4][3])  # the level, not the baseline
            if self._n[_GLOBAL] >= self.min_history and self._n[_GLOBAL]:
                self._held = memo[5]  # what learn_one would have calibrated on (see _take_held)

    def _take_held(self) -> float | None:
        held, self._held = self._held, None
        return held

    def _learn_held(self, stat: float, weight: float = 1.0) -> None:
        self._cal.learn(stat, weight)

    def _follow(self, value: float, count: float | None, x: float, mu: float) -> None:
        r = self._floats
        r[_RECENT] += _RECENT_W * (x - r[_RECENT])
        r[_RECENT + 1] += _RECENT_W * (mu - r[_RECENT + 1])
        if count is not None:
            r[_RECENT + 2] += _RECENT_W * (max(value, 0.0) - r[_RECENT + 2])
            r[_RECENT + 3] += _RECENT_W * (count - r[_RECENT + 3])

    def _rebase(self) -> None:
        # Every expected count moves by the ratio of recent to expected requests, at once (an
        # offset that wears off as the slots learn the level, or as the requests go back), and
        # the cost per request becomes the recent one (a model switch changes that, not the
        # count).
        f = self._floats
        got, expected, spend, requests = f[_RECENT:]
        if expected > 0.0 and got > 0.0:
            self._offset += math.log(got / expected)
        if requests > 0.0 and spend > 0.0:
            f[_COST], f[_COST + 1] = spend, requests
        f[_RECENT:] = array("d", [0.0]) * 4
        self._memo = None

def _count(value: float, count: float | None, cost: float) -> float:
    """The window's requests, or a pseudo-count from its spend."""
    if count is not None:
        if not (math.isfinite(count) and count >= 0.0):
            raise ValueError(f"count must be finite and >= 0, got {count!r}")
        return float(count)
    return value / cost if value > 0.0 else 0.0


def _upper_tail(x: float, mu: float, phi: float) -> float:
    """P(X >= x) for a negative binomial of mean ``mu`` and overdispersion ``phi`` (Poisson
    when phi is ~0), continuous in ``x`` through the incomplete beta and gamma functions."""
    if x <= 0.0:
        return 1.0
    if mu <= 0.0:
        return 0.0
    if phi < _MIN_DISPERSION:
        return float(gammainc(x, mu))  # P(k, mu) = P(Poisson >= k)
    r = 1.0 / phi
    return float(betainc(x, r, mu / (r + mu)))  # I_{1-p}(k, r) = P(NB >= k)


def _count_bound(p: float, mu: float, phi: float) -> float:
    """The smallest (real) count whose upper tail is at most ``p``."""
    if mu <= 0.0:
        return 0.0
    if phi < _MIN_DISPERSION:
        return float(pdtrik(1.0 - p, mu)) + 1.0
    r = 1.0 / phi
    return float(nbdtrik(1.0 - p, r, r / (r + mu))) + 1.0
