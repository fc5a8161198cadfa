"""Sustained rises of spend: a one-sided CUSUM on standardised log residuals."""

from __future__ import annotations

import math
from array import array
from collections.abc import Sequence
from typing import Any

from detectors.base import Detector, Verdict, require
from detectors.calibration import STAT_FLOOR, TailCalibrator
from detectors.compact import narrowest, shared, widened

__all__ = ["LevelShift"]

# Profile layout: 24 hour-of-day slots (UTC), then one global slot.
_GLOBAL = 24
_N_SLOTS = 25
_DEV = _N_SLOTS  # where the slots' scales start in LevelShift._loc_dev (their locations at 0)

# As in SeasonalBaseline: sigma / mean absolute deviation of a normal, the clip of a learnt
# residual (bounded influence), the windows a slot learns unclipped, and the windows of the
# level's pooled scale a young slot's scale is shrunk towards.
_SIGMA_PER_DEV = math.sqrt(math.pi / 2)
_CLIP_SIGMAS = 3.0
_UNCLIPPED_WARMUP = 4
_PRIOR_WINDOWS = 4

# The most one window can take off the statistic (in robust sigmas, before the drift): a zero
# or very low window in the middle of a shift -- a deploy, a retry pause -- dents the alarm
# rather than resolving it outright.
_MAX_DROP_SIGMAS = 3.0

# The statistic is capped at threshold + half of one window's largest rise, so that once spend
# is back to normal the alarm resolves within two or three windows, however long the shift.
_CAP_PER_RISE = 0.5

_MAX_LOG_BOUND = 700.0

# Weight of a window in the recent level that ``rebase`` adopts (about the last three windows:
# on-call answers "new normal" minutes into a shift, when a longer memory still holds the old level).
_RECENT_W = 0.5

# What a window's residual beyond the recursion's clip still adds to the score's statistic.
_SOFT_CLIP = 0.01  # math.exp overflows above ~709.78

# Learnt floats are kept at full precision: rounding them on every update (to halve the
# state's JSON) cost more CPU than the combiner's whole decision.


class LevelShift(Detector):
    """Sustained rise of spend above its hour-of-day level: a model switch, a new feature.

    A one-sided (upward) CUSUM over standardised residuals of log(spend) against a light
    seasonal baseline: a robust exponentially weighted location and mean absolute deviation of
    log(spend) per hour of the day (UTC), learnt from windows with spend only, like
    ``SeasonalBaseline``'s. Each window adds its residual ``r`` (robust sigmas above the
    expected value) minus the allowance ``drift`` to the statistic ``S``, floored at 0; the
    alarm is raised while ``S >= threshold``. Residuals below the expected value pull ``S``
    down, so ordinary noise keeps it near 0, and a shift of ``d`` sigmas raises the alarm in
    about ``threshold / (d - drift)`` windows.

    - A single window counts at most ``threshold / (min_windows - 0.5)`` towards ``S``: an alarm
      needs at least ``min_windows`` elevated windows, so one spike alone never raises it
      (that is ``SeasonalBaseline``'s job), while a 3x shift does within a few windows even
      when no window of it is extreme on its own.
    - ``S`` is capped a little above ``threshold``: windows stay flagged while the shift lasts
      (the alert keeps firing) and are normal again within about three windows of spend
      returning to its level (the alert resolves).
    - The residual of a window is the smaller of its log-scale residual and its excess in units
      of ``min_scale`` (money per window): a shift must cost at least ``drift * min_scale`` per
      window to count at all, so a tripled $0.01 series never alarms.
    - With ``protect_anomaly`` flagged windows do not teach the baseline. After an alarm has been
      raised for ``max_shift_seconds`` in one run (the statistic not back at 0), the new level is
      accepted: every slot's location moves up by the run's mean log residual, the statistic
      restarts from 0, and the next window is judged against the new level. A runaway that
      lasts a day therefore pages for a day, then becomes the baseline: by then people know.
    - The statistic moves on every learnt window, flagged or not (``learn_one`` and
      ``_learn_protected`` alike): it is a test of the recent windows, not a baseline.
    - The expected log(spend) of a window is interpolated between its hour's slot and the
      neighbouring hour's, by where the window falls in its hour: otherwise the first half of
      every falling hour sits above its slot's mean (and the second half of every rising
      one), a steady drift that a CUSUM would add up.
    - A zero window counts as the lowest residual: on a sparse series (a call every few
      minutes) the statistic never builds up. Sustained rises there are for ``CountTail`` and
      ``SeasonalBaseline``. ``count`` is not used: a model switch changes what a request
      costs, not how many there are.
    - No verdict until ``min_history`` windows with spend are learnt, and a window is only judged
      once its hour of the day has data from an earlier day: a shift detector that does not
      know the daily shape sees every morning as a shift.

    ``expected`` is the hour-of-day level (the global one before the hour is known). ``upper``
    is the level that counts as a shift: the spend per window that, held from a quiet start,
    raises the alarm on the ``min_windows``-th window (``drift + threshold / min_windows``
    sigmas above ``expected``, and at least that many ``min_scale`` above it). A flagged window
    may be below it (the alarm is about the run, not the window), and a window above it is
    flagged only once enough evidence has accumulated.

    The score is calibrated (``detectors.calibration``): the statistic so far plus this
    window's residual (softly clipped, unfloored), or inside a run the run's mean residual as a
    z-test when that is larger -- it keeps growing while a shift lasts, where the capped
    statistic stops -- as an upper-tail p-value against its own history on normal windows.

    Use it next to ``SeasonalBaseline`` for spend per window of a minute to an hour. Slow
    growth (a few percent a day) is followed by the baseline and never counts. It knows no day
    of the week: weekends pull the hour-of-day levels down a little (bounded influence keeps it
    little), so a Monday morning sits somewhat above them -- harmless at half-price weekends and
    ordinary noise, closer to the bound on a very smooth series with a stronger weekly swing --
    and a runaway on a quiet weekend is measured against weekday levels, so it must be larger
    to count.

    Parameters
    ----------
    window_seconds
        Length of the windows fed to it; ``ts`` is a window's end, and the window belongs to
        the hour in which it starts.
    threshold
        Alarm level of the statistic, in robust sigmas of log(spend) accumulated over drift.
    drift
        Allowance per window, in robust sigmas: residuals up to it never accumulate.
    min_windows
        Elevated windows an alarm needs at the least.
    min_history
        Windows with spend to learn before any verdict (cold start).
    min_scale
        Money per window: a window counts at most ``excess / min_scale`` sigmas.
    min_rel_scale
        Floor of the log-scale sigma, as a relative change (0.2: sigma >= log 1.2).
    alpha
        Weight of the newest hour of data in a slot: with 0.2 an hour-of-day slot remembers
        about five days, the global slot five hours.
    max_shift_seconds
        How long an alarm may stay raised in one run before its level is accepted as normal.
    protect_anomaly
        Do not learn flagged windows into the baseline.

    Example: two days of 1-min windows with a daily shape, then spend triples for an hour and
    comes back.

    >>> import numpy as np
    >>> rng = np.random.default_rng(1)
    >>> det = LevelShift()
    >>> ts = 1_704_067_200 + 60 * np.arange(1, 3 * 1440 + 1)
    >>> hour = (ts - 60) % 86400 / 3600
    >>> spend = (2 + np.sin(2 * np.pi * hour / 24)) * rng.lognormal(0, 0.3, ts.size)
    >>> start = 2 * 1440 + 600  # day 3, 10:00 UTC
    >>> spend[start : start + 60] *= 3
    >>> verdicts = [det.update(float(t), float(v)) for t, v in zip(ts, spend)]
    >>> flagged = [i - start for i, v in enumerate(verdicts) if v.is_anomaly]
    >>> flagged[0], flagged[-1], len(flagged)  # raised on the 3rd window, down with the spend
    (2, 59, 58)
    >>> v = verdicts[start + 30]
    >>> round(v.upper / v.expected, 1)  # the level that counts as a shift, sustained
    3.2
    >>> v.reason
    '3.1x the hour-of-day level over the last 31 windows (statistic 9.6, alarm at 8)'
    """

    # Slots, not an instance dict: with more than 30 attributes CPython gives up sharing the
    # dict's keys between instances, and each detector's dict then took ~1.6 KiB (one per
    # watched series: benchmarks/scale.py). An attribute left out still works (it goes
    # into a dict, made when first set), at that dict's cost.
    __slots__ = ("alpha", "drift", "max_shift_seconds", "min_history", "min_rel_scale", "min_scale",
        "min_windows", "protect_anomaly", "threshold", "window_seconds", "_alarm_since",
        "_alpha_window", "_cal", "_cap", "_cusum", "_day", "_held", "_loc_dev", "_log_floor",
        "_max_rise", "_memo", "_n", "_pool_dev", "_pool_n", "_ready", "_recent", "_run_log", "_run_n",
        "_run_rs", "_seen", "_last_ts")

    name = "changepoint"

    def __init__(
        self,
        window_seconds: float = 60.0,
        threshold: float = 8.0,
        drift: float = 1.0,
        min_windows: int = 3,
        min_history: int = 30,
        min_scale: float = 0.05,
        min_rel_scale: float = 0.2,
        alpha: float = 0.2,
        max_shift_seconds: float = 86400.0,
        protect_anomaly: bool = True,
    ) -> None:
        self.window_seconds = window_seconds
        self.threshold = threshold
        self.drift = drift
        self.min_windows = min_windows
        self.min_history = min_history
        self.min_scale = min_scale
        self.min_rel_scale = min_rel_scale
        self.alpha = alpha
        self.max_shift_seconds = max_shift_seconds
        self.protect_anomaly = protect_anomaly
        require("LevelShift", window_seconds > 0, "window_seconds must be > 0", window_seconds)
        require("LevelShift", threshold > 0, "threshold must be > 0", threshold)
        require("LevelShift", drift >= 0, "drift must be >= 0", drift)
        require(
            "LevelShift",
            isinstance(min_windows, int) and min_windows >= 1,
            "min_windows must be an int >= 1",
            min_windows,
        )
        require("LevelShift", min_history >= 0, "min_history must be >= 0", min_history)
        require("LevelShift", min_scale > 0, "min_scale must be > 0", min_scale)
        require("LevelShift", min_rel_scale > 0, "min_rel_scale must be > 0", min_rel_scale)
        require("LevelShift", 0 < alpha <= 1, "alpha must be in (0, 1]", alpha)
        require("LevelShift", max_shift_seconds > 0, "max_shift_seconds must be > 0", max_shift_seconds)
        # Derived once, not state (one float object for all the clones: detectors.compact).
        self._alpha_window = shared(1.0 - (1.0 - alpha) ** (window_seconds / 3600.0))
        self._log_floor = shared(math.log1p(min_rel_scale))
        # Largest rise of the statistic in one window: min_windows - 1 of them stay below
        # the threshold, min_windows reach it, without a tie to round either way.
        self._max_rise = shared(threshold / (min_windows - 0.5))
        self._cap = shared(threshold + _CAP_PER_RISE * self._max_rise)
        super().__init__()

    @classmethod
    def _unit_test_params(cls) -> dict[str, Any]:
        # The shared contract's scenarios are one-window spikes and runaways that must be
        # flagged from their first window -- exactly what this detector leaves to
        # SeasonalBaseline by default. With one window allowed to raise the alarm, at
        # 6 robust sigmas (drift 5 + threshold 1), and an allowance that empties the statistic
        # in one normal window, it runs the same code (statistic, protection, acceptance,
        # state) on them. Its own behaviour is tested in tests/detectors/test_changepoint.py.
        return {"threshold": 1.0, "drift": 5.0, "min_windows": 1}

    # -- state ------------------------------------------------------------------------------

    def _reset(self) -> None:
        self._held: float | None = None  # not state: see _take_held
        # typed arrays, not lists of Python numbers: a sixth of the memory. Counts in 16 bits,
        # widened to 32 when one outgrows them (the global slot after 65,535 windows with
        # spend: detectors.compact); the location and scale are single-precision floats, as
        # SeasonalBaseline's slots. (array * n allocates exactly; array(code, bytes) ~8 % more)
        self._n = array("H", [0]) * _N_SLOTS  # windows with spend learnt (widens to "i")
        # Which hour-of-day slots have data (bit i: slot i), which have data from a day
        # before ``_day``, and the epoch day of the latest learnt data.
        self._seen = 0
        self._ready = 0
        self._day = -1
        # location of log(spend) (from 0), then its mean absolute deviation (from _DEV): one
        # array, one 80-byte header per series
        self._loc_dev = array("f", [0.0]) * (2 * _N_SLOTS)
        self._pool_dev = 0.0  # mean absolute deviation over all hour-of-day slots
        self._pool_n = 0
        self._cusum = 0.0  # the statistic S
        self._run_n = 0  # judged windows with spend since S last left 0
        self._run_log = 0.0  # and the sum of their log residuals
        self._run_rs = 0.0  # and of their residuals in (unfloored) sigmas, clipped
        self._recent = 0.0  # recent log residual over all windows with spend (for rebase)
        self._alarm_since: float | None = None  # ts of the run's first alarm
        self._cal = TailCalibrator()  # the score statistic's history (calibrated scores)
        self._memo: tuple[float, float, _Judgement] | None = None  # not state: see _judge

    def _get_state(self) -> dict[str, Any]:
        return {
            "n": list(self._n),
            "days": [self._seen, self._ready, self._day],
            "loc": self._loc_dev[:_DEV].tolist(),
            "dev": self._loc_dev[_DEV:].tolist(),
            "pool": [self._pool_dev, self._pool_n],
            "cusum": [self._cusum, self._run_n, self._run_log, self._alarm_since, self._run_rs],
            "cal": self._cal.to_state(),
            "recent": self._recent,
        }

    def _set_state(self, state: dict[str, Any]) -> None:
        try:
            n = [int(x) for x in state["n"]]
            seen, ready, day = (int(x) for x in state["days"])
            loc = [float(x) for x in state["loc"]]
            dev = [float(x) for x in state["dev"]]
            pool_dev, pool_n = float(state["pool"][0]), int(state["pool"][1])
            cusum, run_n, run_log, since, *rest = state["cusum"]
            cusum, run_n, run_log = float(cusum), int(run_n), float(run_log)
            since = None if since is None else float(since)
            # (states written before scores were calibrated have neither: start them afresh)
            run_rs = float(rest[0]) if rest else 0.0
            recent = float(state.get("recent", 0.0))
            cal = TailCalibrator.from_state(state["cal"]) if "cal" in state else TailCalibrator()
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise ValueError(f"malformed changepoint state: {exc!r}") from exc
        if not all(len(xs) == _N_SLOTS for xs in (n, loc, dev)):
            raise ValueError(f"changepoint state lists must have {_N_SLOTS} slots")
        floats = [*loc, *dev, pool_dev, cusum, run_log, run_rs, recent] + ([] if since is None else [since])
        if not all(math.isfinite(x) for x in floats) or cusum < 0:
            raise ValueError("changepoint state has non-finite or negative values")
        if not all(-(2 ** 31) <= x < 2 ** 31 for x in n):
            raise ValueError("changepoint state counts must fit 32 bits")
        loc32, dev32 = array("f", loc), array("f", dev)
        if not all(math.isfinite(x) for x in loc32 + dev32):
            raise ValueError("changepoint state has values out of single-precision range")
        self._n, self._loc_dev = narrowest(n, "Hi"), loc32 + dev32
        self._seen, self._ready, self._day = seen, ready, day
        self._pool_dev, self._pool_n = pool_dev, pool_n
        self._cusum, self._run_n, self._run_log, self._alarm_since = cusum, run_n, run_log, since
        self._run_rs, self._recent = run_rs, recent
        self._cal = cal
        self._memo = None

    # -- model ------------------------------------------------------------------------------

    def _judge(self, ts: float, value: float) -> _Judgement:
        """Where the window falls, what was expected of it, and the statistic after it.

        Cached for the next call with the same window: the worker and the combiner score a
        window and then learn it, and the second look would cost as much as the first.
        """
        memo = self._memo
        if memo is not None and memo[0] == ts and memo[1] == value:
            return memo[2]
        if not (math.isfinite(ts) and math.isfinite(value)):
            raise ValueError(f"ts and value must be finite, got ts={ts!r} value={value!r}")
        hour = int((ts - self.window_seconds) // 3600)
        slot = hour % 24
        bit = 1 << slot
        judged = bool(self._ready & bit or (self._seen & bit and self._day < hour // 24))
        mu = self._expected_log(ts, hour, slot)
        drift = self.drift
        x: float | None = None
        stat: float | None = None
        rsc = 0.0  # this window's residual in unfloored sigmas, clipped (for the run's z-test)
        if not judged:
            r = 0.0  # the hour has no earlier day yet: no evidence either way
        elif value <= 0.0:
            r = -_MAX_DROP_SIGMAS
            stat = self._cusum - _MAX_DROP_SIGMAS
        else:
            x = math.log(value) - mu
            raw = self._raw_sigma(slot)
            r = x / (raw if raw > self._log_floor else self._log_floor)
            # The score's statistic: the statistic so far plus this window's residual (without
            # the floors), clipped like the recursion's so that one window cannot make a
            # sustained rise -- but softly (1 % of the rest still counts) so that scores keep
            # ranking and do not tie at the clip while a shift lasts. No drift: it stays on a
            # z-like scale where the calibration has its bins.
            scale = raw if raw > STAT_FLOOR else STAT_FLOOR
            rs = x / scale
            rmax = drift + self._max_rise
            rsc = rmax if rs > rmax else -_MAX_DROP_SIGMAS if rs < -_MAX_DROP_SIGMAS else rs
            if rs > rmax:
                rs = rmax + _SOFT_CLIP * (rs - rmax)
            stat = self._cusum + rs
            if self._alarm_since is not None and self._run_n and rsc > 0.0:
                # Inside a raised alarm (not merely a run: on a bursty series the statistic is
                # above 0 for long stretches, and a run's mean residual is positive by selection,
                # so its z would be ordinary there): also the run's mean residual as a z-test
                # (sum / sqrt(n), each
                # window's clipped as the recursion's is), which keeps growing while a shift
                # lasts where the capped statistic stops -- three hours at 3x are far stronger
                # evidence than three windows -- and which one spike cannot carry (nor a window
                # below expected).
                z_run = (self._run_rs + rsc) / math.sqrt(self._run_n + 1)
                if z_run > stat:
                    stat = z_run
            r_money = (value - math.exp(mu)) / self.min_scale
            if r_money < r:
                r = r_money
            if r < -_MAX_DROP_SIGMAS:
                r = -_MAX_DROP_SIGMAS
            elif r > drift + self._max_rise:
                r = drift + self._max_rise
        s = self._cusum + r - drift
        if s < 0.0:
            s = 0.0
        elif s > self._cap:
            s = self._cap
        result = (hour, slot, judged, mu, x, s, stat, rsc)
        self._memo = (ts, value, result)
        return result

    def _expected_log(self, ts: float, hour: int, slot: int) -> float:
        """Expected log(spend) of the window: its hour-of-day slot's location, linearly
        interpolated towards the neighbouring hour's by where the window's middle falls (slots
        stand for their hour's middle). Without it the first half of every falling hour sits
        above its slot's mean, and the second half of every rising one: a steady drift that a
        CUSUM adds up. The global location until the slot has data."""
        n, loc = self._n, self._loc_dev
        if not n[slot]:
            return loc[_GLOBAL]
        f = (ts - 0.5 * self.window_seconds) / 3600.0 - hour - 0.5
        if f < 0.0:
            other, f = (slot - 1) % 24, -f
        else:
            other = (slot + 1) % 24
        if not n[other]:
            return loc[slot]
        if f > 0.5:
            f = 0.5  # windows longer than an hour: stay between the two middles
        return loc[slot] + f * (loc[other] - loc[slot])

    def _sigma(self, slot: int) -> float:
        """Robust sigma of log(spend) in ``slot``, floored at log(1 + min_rel_scale)."""
        sigma = self._raw_sigma(slot)
        return sigma if sigma > self._log_floor else self._log_floor

    def _raw_sigma(self, slot: int) -> float:
        """Robust sigma of log(spend) in ``slot``: its mean absolute deviation, pooled with the
        level's while it has few windows, widened by the uncertainty of its location."""
        n = self._n[slot]
        dev = self._loc_dev[_DEV + slot]
        if slot != _GLOBAL:
            prior = self._pool_dev if self._pool_n else self._loc_dev[_DEV + _GLOBAL]
            dev = (n * dev + _PRIOR_WINDOWS * prior) / (n + _PRIOR_WINDOWS)
        return _SIGMA_PER_DEV * dev * math.sqrt(1.0 + 1.0 / max(n, 1))

    def _bounds(self, learnt: int, slot: int, mu: float) -> tuple[float, float]:
        """The window's expected spend and its upper: the spend per window that, held from a
        quiet start, raises the alarm on the min_windows-th window. Not this window's own
        bound given the evidence so far: that one moves with the statistic, and "what level
        counts as a shift" reads better."""
        need = self.drift + self.threshold / self.min_windows
        if learnt == 0:
            return 0.0, need * self.min_scale
        expected = math.exp(mu)
        sigma = self._sigma(slot if self._n[slot] else _GLOBAL)
        upper = math.exp(min(mu + need * sigma, _MAX_LOG_BOUND))
        money = expected + need * self.min_scale
        return expected, (money if upper < money else upper)

    def _score_empty(self, ts: float) -> tuple[float, float, float, bool, bool]:
        # score_one of a window without spend, without the verdict (the judgement memoised)
        _, slot, _, mu, _, s, stat, _ = self._judge(ts, 0.0)
        learnt = self._n[_GLOBAL]
        expected, upper = self._bounds(learnt, slot, mu)
        warm = learnt >= self.min_history and learnt > 0
        p = self._cal.sf(stat) if warm and stat is not None else 1.0
        return expected, upper, p, warm and s >= self.threshold, True

    def _empty_run_ok(self, ends: Sequence[float]) -> bool:
        # From 0 the statistic stays at 0 without spend (an empty window only takes off): no
        # window flagged, no shift accepted. The score's statistic of a judged one is then
        # -_MAX_DROP_SIGMAS, below the calibration's bins: p 1.0 whatever it learnt.
        return self._cusum == 0.0 and self._cal.sf(-_MAX_DROP_SIGMAS) == 1.0

    def _empty_run(self, ends: Sequence[float], caps: Sequence[float] | None
                   ) -> list[tuple[float, float, float, bool, bool]]:
        # as _judge, score_one and learn_one of each window, with the statistic at 0
        if not ends:
            return []
        learnt = self._n[_GLOBAL]
        out = []
        judged_n = 0
        ready, seen, day = self._ready, self._seen, self._day
        for ts in ends:
            hour = int((ts - self.window_seconds) // 3600)
            slot = hour % 24
            bit = 1 << slot
            if ready & bit or (seen & bit and day < hour // 24):
                judged_n += 1
            expected, upper = self._bounds(learnt, slot, self._expected_log(ts, hour, slot))
            out.append((expected, upper, 1.0, False, True))
        if learnt >= self.min_history and learnt > 0:
            self._cal.learn_repeat(-_MAX_DROP_SIGMAS, judged_n)  # (the same bin, whichever windows)
        self._cusum = 0.0
        self._run_n, self._run_log, self._run_rs, self._alarm_since = 0, 0.0, 0.0, None
        self._memo = None
        return out

    def score_one(self, ts: float, value: float, count: float | None = None) -> Verdict:
        _, slot, judged, mu, x, s, stat, _ = self._judge(ts, value)
        learnt = self._n[_GLOBAL]
        threshold = self.threshold
        expected, upper = self._bounds(learnt, slot, mu)
        excess = value - expected
        p = 1.0
        if learnt < self.min_history or learnt == 0:
            reason = f"cold start: {learnt} of {self.min_history} windows with spend learnt"
        else:
            if stat is not None:
                p = self._cal.sf(stat)
            alarm = f"statistic {s:.1f}, alarm at {threshold:g}"
            n = self._run_n + (x is not None)
            if s > 0.0 and n:
                ratio = math.exp((self._run_log + (x or 0.0)) / n)
                reason = f"{ratio:.1f}x the hour-of-day level over the last {n} windows ({alarm})"
            elif not judged:
                reason = f"hour {slot:02d} UTC has no earlier day yet ({alarm})"
            else:
                reason = f"no sustained rise ({alarm})"
        return Verdict(
            ts=ts,
            observed=value,
            expected=expected,
            upper=upper,
            score=1.0 - p,
            is_anomaly=learnt >= self.min_history and learnt > 0 and s >= threshold,
            excess=excess,
            excess_pct=100.0 * excess / expected if expected > 0.0 else None,
            detector=self.name,
            reason=reason,
            p=p,
        )

    def learn_one(self, ts: float, value: float, count: float | None = None) -> None:
        hour, slot, _, mu, x, s, stat, rsc = self._judge(ts, value)
        self._memo = None
        if stat is not None and self._n[_GLOBAL] >= self.min_history and self._n[_GLOBAL]:
            self._cal.learn(stat)
        self._step(ts, x, s, rsc)
        if x is not None:
            self._recent += _RECENT_W * (x - self._recent)
        if value > 0.0:
            self._learn(hour, slot, math.log(value), mu)

    def _learn_protected(
        self, ts: float, value: float, verdict: Verdict, count: float | None = None
    ) -> None:
        # The statistic is a test of the recent windows: it must see the flagged ones too, or
        # an alarm could never stay raised -- nor resolve. The baseline must not.
        _, _, _, _, x, s, stat, rsc = self._judge(ts, value)
        self._memo = None
        if stat is not None and self._n[_GLOBAL] >= self.min_history and self._n[_GLOBAL]:
            self._held = stat  # what learn_one would have calibrated on (see _take_held)
        self._step(ts, x, s, rsc)
        if x is not None:
            self._recent += _RECENT_W * (x - self._recent)

    def _take_held(self) -> float | None:
        held, self._held = self._held, None
        return held

    def _learn_held(self, stat: float, weight: float = 1.0) -> None:
        self._cal.learn(stat, weight)

    def _rebase(self) -> None:
        # As an accepted shift (max_shift_seconds), but now and to the recent level: every
        # slot moves by the recent log residual and the statistic starts again from 0.
        shift = self._recent
        loc, n = self._loc_dev, self._n
        for i in range(_N_SLOTS):
            if n[i]:
                loc[i] += shift
        self._cusum, self._run_n, self._run_log, self._alarm_since = 0.0, 0, 0.0, None
        self._run_rs = self._recent = 0.0
        self._memo = None

    def _step(self, ts: float, x: float | None, s: float, rsc: float = 0.0) -> None:
        """Move the statistic to ``s`` and keep the run's tally; accept a long shift."""
        s = (s)
        self._cusum = s
        if s <= 0.0:
            self._run_n, self._run_log, self._run_rs, self._alarm_since = 0, 0.0, 0.0, None
            return
        if x is not None:
            self._run_n += 1
            self._run_log = (self._run_log + x)
            self._run_rs += rsc
        if s >= self.threshold and self._alarm_since is None:
            self._alarm_since = ts
        since = self._alarm_since
        if since is not None and ts - since >= self.max_shift_seconds:
            shift = self._run_log / self._run_n if self._run_n else 0.0
            if shift > 0.0:
                loc = self._loc_dev
                for i in range(_N_SLOTS):
                    if self._n[i]:
                        loc[i] = (loc[i] + shift)
            self._cusum, self._run_n, self._run_log, self._alarm_since = 0.0, 0, 0.0, None
            self._run_rs = 0.0

    def _learn(self, hour: int, slot: int, x: float, mu: float) -> None:
        """Learn log(spend) ``x`` into the hour-of-day slot and the global one; ``mu`` is what
        was expected of the window (the scale of the hour-of-day slot is learnt around it)."""
        day = hour // 24
        if day > self._day:
            self._ready |= self._seen
            self._day = day
        self._seen |= 1 << slot
        n_, loc = self._n, self._loc_dev
        dev = loc  # the scales from _DEV
        aw = self._alpha_window
        for i in (slot, _GLOBAL):
            n = n_[i]
            if n == 0:
                n_[i] = 1
                loc[i] = (x)
                dev[_DEV + i] = 0.0
                continue
            r = x - loc[i]
            d = x - mu if i == slot else r
            if n >= _UNCLIPPED_WARMUP:
                c = _CLIP_SIGMAS * self._sigma(i)
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
            abs_d = d if d >= 0.0 else -d
            loc[i] = (loc[i] + w * r)
            dev[_DEV + i] = (dev[_DEV + i] + w * (abs_d - dev[_DEV + i]))
            if i != _GLOBAL:
                self._pool_n += 1
                w = 1.0 / self._pool_n
                if w < aw:
                    w = aw
                self._pool_dev = (self._pool_dev + w * (abs_d - self._pool_dev))


# hour, hour-of-day slot, whether it is judged, expected log(spend), log residual (None when
# not judged or no spend), the statistic after the window, the score's statistic (None when
# not judged), the window's clipped residual in unfloored sigmas (0 without spend).
_Judgement = tuple[int, int, bool, float, float | None, float, float | None, float]
