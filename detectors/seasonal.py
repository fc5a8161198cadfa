"""A seasonal, robust per-series baseline of spend per window."""

from __future__ import annotations

import math
from array import array
from collections.abc import Sequence
from typing import Any

from detectors.base import Detector, Verdict, require
from detectors.calibration import STAT_FLOOR, TailCalibrator
from detectors.compact import narrowest, shared, widened
from detectors.f32 import pack_f32, unpack_f32

__all__ = ["SeasonalBaseline"]

# Profile layout: one flat list per statistic, indexed by slot.
_HOW = 0  # 168 hour-of-week slots, Monday 00:00 UTC = 0
_HOD = 168  # 24 hour-of-day slots (UTC)
_GLOBAL = 192  # one slot for everything
_N_SLOTS = 193
_DEV = _N_SLOTS  # where the slots' scales start in SeasonalBaseline._loc_dev (their locations at 0)
_POOL_N = 3  # where the levels' residual counts start in SeasonalBaseline._pool (their scales at 0)
_LEVEL_NAMES = ("hour-of-week", "hour-of-day", "global")  # by index in a window's slots

# 1970-01-01 was a Thursday: hour 0 of the epoch is hour 72 of a Monday-based week.
_EPOCH_HOUR_OF_WEEK = 72

# sigma of a normal distribution / its mean absolute deviation (sqrt(pi / 2)). The scale is
# tracked as a mean absolute deviation: no square root, and less swayed by the occasional
# big window than a variance.
_SIGMA_PER_DEV = math.sqrt(math.pi / 2)

# Huber-style bounded influence: a residual counts at most this many robust sigmas when learnt,
# so a window just under the alert bound (or a burst during cold start) moves the baseline only
# a little -- a running median's robustness at an EWMA's cost. 3 leaves ordinary noise
# untouched (it biases a normal's scale by < 1 %).
_CLIP_SIGMAS = 3.0

# A young slot's scale is pooled with the typical scale of its level (all slots of the level
# together) as if that had contributed this many windows: with hourly windows an hour-of-week
# slot holds one value per week, and a scale from one or two values would page on ordinary
# week-to-week noise -- and, protected, never learn its way out of it. The level's pooled
# scale, not the coarser slot's: an hour-of-day slot mixes weekdays and weekends, and would
# make every young hour-of-week slot blind.
_PRIOR_WINDOWS = 4

# The first few values of a slot are learnt unclipped: there is no trustworthy scale to clip
# against yet, and clipping against a near-zero scale would pin the slot to its first
# (often partial) window for a long time.
_UNCLIPPED_WARMUP = 4

# Weight of a window in the recent level that ``rebase`` adopts (about the last three windows:
# on-call answers "new normal" minutes into a shift, when a longer memory still holds the old level).
_RECENT_W = 0.5

# Distinct hours a slot counts up to (it is compared with min_periods only), and the epoch
# hours of the slots' latest data are held modulo 2**16 (see SeasonalBaseline._reset).
_MAX_PERIODS = 0xFFFF
_HOUR_MASK = 0xFFFF

# A window this close to the next or the previous hour is also judged against that hour's slot
# when that slot expects at least _EDGE_RATIO times as much (see score_one): scheduled jobs
# start and stop a few minutes either side of their hour, and their first minutes were 5-15x
# what the hour before expected. Elsewhere a window is judged by its own hour alone: at 2x, the
# neighbouring night hours of a sparse series (cents, few windows with spend) qualified by
# noise, and a $6 night spike of one was found no more (issue 12, held-out seed 4).
_EDGE_S = 600.0
_EDGE_RATIO = 4.0

# math.exp overflows above ~709.78; a bound of e**700 times anything is "never" all the same.
_MAX_LOG_BOUND = 700.0


class SeasonalBaseline(Detector):
    """Robust seasonal baseline: is this window's spend far above what this hour usually costs?

    The expected spend of a window comes from a profile by hour of the week (168 slots, UTC).
    A slot judges once it holds data from ``min_periods`` earlier occurrences of its hour (for
    an hour-of-week slot: earlier weeks); until then the window is judged against its
    hour-of-day slot (24: earlier days), and until that one is ready against one global slot,
    a loose "recent level" fallback whose scale includes the daily swing.

    Each slot keeps a robust location and scale of log(spend) over the windows that had any
    spend: an exponentially weighted mean whose residuals are clipped at 3 robust sigmas
    (bounded influence, like a running median), and an exponentially weighted mean absolute
    deviation as the scale. A slot with few windows (hourly windows: one per occurrence)
    borrows the typical scale of its level's slots until its own is established.

    - Logarithms, because spend per window is multiplicative and right-skewed (a few long-context
      calls dominate a quiet minute): on a linear scale a series that routinely doubles from one
      minute to the next would page all day; on a log scale "8x the usual" means the same on a
      $0.50 and a $500 series.
    - Zero windows teach nothing: a sparse series (one call every few minutes) keeps the level
      of its calls instead of drifting to zero and flagging every call, and a quiet night,
      weekend or outage does not make the next ordinary window look like a spike.
    - Only spend above the baseline is flagged; zero or low spend never is.

    A window is an anomaly when, once ``min_history`` windows with spend have been learnt, it
    is at least ``threshold`` robust sigmas above the expected value on the log scale *and*
    at least ``threshold * min_scale`` (money) above it; ``upper`` is the smallest spend that
    satisfies both. The log-scale sigma is at least ``log(1 + min_rel_scale)``, so with the
    defaults nothing under 1.1 ** 6 = 1.77x the expected value is flagged, and nothing under
    +$0.30 per window: cents are not an incident however flat the baseline.

    With ``protect_anomaly`` a flagged window is not learnt by the slot that judged it nor by
    the coarser ones. Slots finer than the judge (they have no earlier history yet) do learn
    it: a nightly batch or weekly report present from a series' first day or week pages once,
    then becomes expected at its next occurrence instead of paging every time. Once a slot has
    history, whatever it flags stays flagged -- a new nightly job started in week five pages
    every night until the detector is ``reset`` -- because the alternative is a runaway loop
    becoming normal.

    The score is calibrated (``detectors.calibration``): the window's log residual in robust
    sigmas -- without the floors, which are about money, not rarity -- as an upper-tail p-value
    against the same statistic on the series' earlier normal windows; windows without spend
    score 0.

    A window within 10 minutes of the next (or previous) hour is also judged against that
    hour's slot when it expects at least four times as much, and counts as the less surprising
    of the two: a job that starts a few minutes before its hour is as expected as the rest of it.

    Use it for spend (or token) totals per fixed window of a minute to an hour. It knows no
    holidays, and follows trends only as fast as ``alpha`` lets it. An hour that mixes two
    levels (a 10-minute batch in an otherwise quiet hour) gets a wide bound: little short of a
    second batch is flagged in that hour. With hourly windows a slot holds one value per
    occurrence, so consider ``min_periods=2`` or more there.

    Parameters
    ----------
    window_seconds
        Length of the windows fed to it; ``ts`` is a window's end, and the window belongs to
        the hour in which it starts.
    threshold
        Alert bound in robust sigmas of log(spend).
    min_history
        Windows with spend to learn before any alert (cold start).
    min_scale
        Money per window (so it depends on ``window_seconds``): a window must exceed the
        expected value by ``threshold * min_scale`` to be flagged.
    min_rel_scale
        Floor of the log-scale sigma, as a relative change (0.1: sigma >= log 1.1).
    alpha
        Weight of the newest hour of data in a profile slot: with 0.2 an hour-of-week slot
        remembers about five weeks, an hour-of-day slot five days, the global slot five hours.
        A slot averages all it has until that gives less weight than ``alpha``.
    min_periods
        Earlier occurrences of its hour a slot needs data from before it judges instead of its
        fallback.
    protect_anomaly
        Do not learn flagged windows into the baseline that flagged them.

    Example: three weeks of hourly windows with a daily shape, then an 8x spike.

    >>> import numpy as np
    >>> rng = np.random.default_rng(42)
    >>> det = SeasonalBaseline(window_seconds=3600)
    >>> ts = 1_700_000_000 // 3600 * 3600 + 3600 * np.arange(1, 21 * 24 + 1)
    >>> spend = 10 + 6 * np.sin(2 * np.pi * (ts % 86400) / 86400) + rng.normal(0, 0.5, ts.size)
    >>> spike = ts.size - 5
    >>> spend[spike] *= 8
    >>> verdicts = [det.update(float(t), float(v)) for t, v in zip(ts, spend)]
    >>> scores = [v.score for v in verdicts]
    >>> int(np.argmax(scores)) == spike, verdicts[spike].is_anomaly
    (True, True)
    >>> sum(v.is_anomaly for v in verdicts)
    1
    >>> v = verdicts[spike]
    >>> round(v.observed), round(v.expected, 1), round(v.upper, 1), v.reason
    (26, 3.9, 11.9, '6.6x the hour-of-week expected value (alert bound 3.0x)')
    >>> round(1 - v.score, 12)  # p: one hour in a few million, against this series' history
    2.81122e-07
    >>> v = verdicts[spike + 1]  # the spike was not learnt: the next hour is ordinary again
    >>> v.is_anomaly, v.score < 0.99
    (False, True)
    """

    # Slots, not an instance dict: one detector per watched series (benchmarks.scale --breakdown).
    # An attribute left out still works (it goes into a dict, made when first set), at that
    # dict's cost: tests/detectors/test_state_memory.py checks none is.
    __slots__ = ("alpha", "min_history", "min_periods", "min_rel_scale", "min_scale", "protect_anomaly",
        "threshold", "window_seconds", "_alpha_window", "_cal", "_held", "_hour", "_last", "_last_ts",
        "_loc_dev", "_log_floor", "_memo", "_n", "_offset", "_offset_w", "_periods", "_pool", "_recent")

    name = "seasonal"

    def __init__(
        self,
        window_seconds: float = 60.0,
        threshold: float = 6.0,
        min_history: int = 30,
        min_scale: float = 0.05,
        min_rel_scale: float = 0.1,
        alpha: float = 0.2,
        min_periods: int = 1,
        protect_anomaly: bool = True,
    ) -> None:
        self.window_seconds = window_seconds
        self.threshold = threshold
        self.min_history = min_history
        self.min_scale = min_scale
        self.min_rel_scale = min_rel_scale
        self.alpha = alpha
        self.min_periods = min_periods
        self.protect_anomaly = protect_anomaly
        require("SeasonalBaseline", window_seconds > 0, "window_seconds must be > 0", window_seconds)
        require("SeasonalBaseline", threshold > 0, "threshold must be > 0", threshold)
        require("SeasonalBaseline", min_history >= 0, "min_history must be >= 0", min_history)
        require("SeasonalBaseline", min_scale > 0, "min_scale must be > 0", min_scale)
        require("SeasonalBaseline", min_rel_scale > 0, "min_rel_scale must be > 0", min_rel_scale)
        require("SeasonalBaseline", 0 < alpha <= 1, "alpha must be in (0, 1]", alpha)
        require("SeasonalBaseline", 1 <= min_periods < _MAX_PERIODS, f"min_periods must be in [1, {_MAX_PERIODS - 1}]",
                min_periods)
        # Derived once, not state: alpha is per hour of data and one window carries
        # window_seconds / 3600 of an hour, so the memory in hours is the same at any window
        # length. (One float object for all the clones of a detector: detectors.compact.)
        self._alpha_window = shared(1.0 - (1.0 - alpha) ** (window_seconds / 3600.0))
        self._log_floor = shared(math.log1p(min_rel_scale))
        # how fast a rebased offset wears off once spend is back (half-life one hour)
        self._offset_w = shared(1.0 - 0.5 ** (window_seconds / 3600.0))
        super().__init__()

    # -- state ------------------------------------------------------------------------------

    def _reset(self) -> None:
        self._held: float | None = None  # not state: see _take_held
        # Typed arrays, not numpy: an update touches 3 slots, where numpy's per-call overhead
        # (~1 us per tiny op) costs more than the arithmetic. Not lists of Python numbers
        # either: 193 slots x 5 of those held ~26 KiB per series, these ~2.8 KiB. The counts
        # are held in the narrowest type that holds them, widened when one outgrows it
        # (detectors.compact): windows with spend in 16 bits (65,535 of them: 45 days of a
        # series spending every minute, for the global slot), distinct hours in 8 (255 of
        # them: 11 days of spend for the global slot, 255 days for an hour-of-day slot).
        # The values -- and so every verdict and the state -- are the same in either type.
        # The location and scale of log(spend) are single-precision floats
        # (arithmetic in doubles, stored rounded to ~6e-8 relative: a location of log($0.05)
        # moves by ~2e-7, ~1e-6 of a robust sigma -- far below what the slot's own noise moves
        # it by every window). The distinct hours count up to _MAX_PERIODS (more say nothing
        # more: min_periods is below it), and the epoch hour of a slot's latest data is kept
        # modulo 2**16 (``_hour``, the latest hour learnt, gives the full one back for the
        # state). Only "is it this hour?" is asked of it: an hour-of-week slot's hours are
        # 168 apart, so the answer is exact for 157 years of a slot without spend, an
        # hour-of-day slot's for 22 years; a slot without data has periods 0.
        # (array * n allocates exactly n items; array(code, bytes) over-allocates ~8 %)
        self._n = array("H", [0]) * _N_SLOTS  # windows with spend learnt (widens to "i")
        self._periods = array("B", [0]) * _N_SLOTS  # distinct hours those came from (widens to "H")
        self._last = array("H", [0]) * _N_SLOTS  # epoch hour of the slot's latest data, mod 2**16
        self._hour = -1  # the latest epoch hour learnt (-1: none)
        # location of log(spend) (from 0), then its mean absolute deviation (from _DEV): one
        # array, one 80-byte header per series
        self._loc_dev = array("f", [0.0]) * (2 * _N_SLOTS)
        # Per level (hour-of-week, hour-of-day, global): mean absolute deviation of log(spend)
        # from its own slot's location, over all slots of the level, and residuals counted.
        # One typed array, not lists: no float or int object per entry (one set per series);
        # the scales from 0, the counts from _POOL_N (whole numbers, exact in a double up to
        # 2**53: 17 billion years of one-minute windows).
        self._pool = array("d", [0.0]) * 6
        # The statistic's own history, for calibrated scores; and the last scored window's
        # statistic (ts, value, z), so that learning it does not compute it again (not state).
        self._cal = TailCalibrator()
        self._memo: tuple[float, float, float | None, float | None] | None = None
        # The level: an offset of log(spend) over every slot, set by ``rebase`` and worn off
        # as the slots learn the new level (or as spend goes back to the old one); and the
        # recent log residual over every window with spend, flagged or not, that it adopts.
        self._offset = 0.0
        self._recent = 0.0

    def _get_state(self) -> dict[str, Any]:
        return {
            "n": list(self._n),
            "periods": list(self._periods),
            "last": self._last_hours(),
            # single precision in memory: exact as base64 of their bytes, a third of the JSON
            # numbers' size (older states' lists still load)
            "loc": pack_f32(self._loc_dev[:_DEV]),
            "dev": pack_f32(self._loc_dev[_DEV:]),
            "pool_dev": self._pool[:_POOL_N].tolist(),
            "pool_n": [int(x) for x in self._pool[_POOL_N:]],
            "cal": self._cal.to_state(),
            "level": [self._offset, self._recent],
        }

    def _set_state(self, state: dict[str, Any]) -> None:
        try:
            n = [int(x) for x in state["n"]]
            periods = [int(x) for x in state["periods"]]
            last = [int(x) for x in state["last"]]
            loc = unpack_f32(state["loc"])
            dev = unpack_f32(state["dev"])
            pool_dev = [float(x) for x in state["pool_dev"]]
            pool_n = [int(x) for x in state["pool_n"]]
            # states written before scores were calibrated have none: start it afresh
            cal = TailCalibrator.from_state(state["cal"]) if "cal" in state else TailCalibrator()
            offset, recent = (float(x) for x in state.get("level", (0.0, 0.0)))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"malformed seasonal state: {exc!r}") from exc
        if not all(-(2 ** 31) <= x < 2 ** 31 for x in n + last) or min(periods, default=0) < 0:
            raise ValueError("seasonal state counts and hours must fit 32 bits")
        if not all(len(xs) == _N_SLOTS for xs in (n, periods, last, loc, dev)):
            raise ValueError(f"seasonal state lists must have {_N_SLOTS} slots")
        if len(pool_dev) != 3 or len(pool_n) != 3 or not all(0 <= x <= 2 ** 53 for x in pool_n):
            raise ValueError("seasonal state pools must have 3 levels and counts >= 0")
        if not all(math.isfinite(x) for x in loc + dev + pool_dev):
            raise ValueError("seasonal state has non-finite values")
        loc32, dev32 = array("f", loc), array("f", dev)
        if not all(math.isfinite(x) for x in loc32 + dev32):
            raise ValueError("seasonal state has values out of single-precision range")
        self._n = narrowest(n, "Hi")
        self._periods = narrowest([p if p < _MAX_PERIODS else _MAX_PERIODS for p in periods], "BH")
        self._last = array("H", [h & _HOUR_MASK if p else 0 for h, p in zip(last, periods, strict=True)])
        self._hour = max((h for h, p in zip(last, periods, strict=True) if p), default=-1)
        self._loc_dev = loc32 + dev32
        self._pool = array("d", pool_dev + [float(x) for x in pool_n])
        if not (math.isfinite(offset) and math.isfinite(recent)):
            raise ValueError("seasonal state has a non-finite level")
        self._cal, self._memo = cal, None
        self._offset, self._recent = offset, recent

    def _last_hours(self) -> list[int]:
        """The epoch hour of each slot's latest data (-1: none), as the state has it."""
        ref = self._hour
        return [ref - ((ref - h) & _HOUR_MASK) if p else -1 for h, p in zip(self._last, self._periods, strict=True)]

    # -- model ------------------------------------------------------------------------------

    def score_one(self, ts: float, value: float, count: float | None = None) -> Verdict:
        if not (math.isfinite(ts) and math.isfinite(value)):
            raise ValueError(f"ts and value must be finite, got ts={ts!r} value={value!r}")
        hour, slots = self._slots(ts)
        learnt = self._n[_GLOBAL]
        level, expected, upper, z, stat, lr = self._judge(hour, slots, value, learnt)
        own_lr = lr
        # A window within _EDGE_S of the next (or previous) hour whose slot expects at least
        # _EDGE_RATIO times as much (a scheduled job's hour) is judged against that slot too, and
        # counts as the less surprising of the two: a nightly job that starts a few minutes
        # before its hour (or runs a few minutes into the next) puts those minutes in a slot
        # that sees them on few nights and clips them when it learns them; against it they were
        # 5-15x expected night after night (issue 12: 6 of 45 false alerts on the independent
        # generator). It is learnt into its own hour's slot as before.
        adjacent = self._adjacent_hour(ts, hour)
        if learnt and adjacent is not None and value > 0.0:
            a_slots = self._slots_of(adjacent)
            a = self._judge(adjacent, a_slots, value, learnt)
            if a[4] is not None and stat is not None and a[4] < stat and a[1] >= _EDGE_RATIO * expected:
                level, expected, upper, z, stat, lr = a
        excess = value - expected

        p = 1.0
        if learnt < self.min_history or learnt == 0:
            is_anomaly = False
            stat = None
            reason = f"cold start: {learnt} of {self.min_history} windows with spend learnt"
        elif value <= 0.0:
            is_anomaly = False
            reason = "no spend in the window" if value == 0.0 else "a credit, not spend"
        else:
            ratio = value / expected
            where = _LEVEL_NAMES[level]
            is_anomaly = z >= self.threshold
            if stat is not None:
                p = self._cal.sf(stat)
            bound = upper / expected
            reason = f"{ratio:.1f}x the {where} expected value (alert bound {bound:.1f}x)"
        self._memo = (ts, value, stat, own_lr if learnt else None)
        return Verdict(
            ts=ts,
            observed=value,
            expected=expected,
            upper=upper,
            score=1.0 - p,
            is_anomaly=is_anomaly,
            excess=excess,
            excess_pct=100.0 * excess / expected if expected > 0.0 else None,
            detector=self.name,
            reason=reason,
            p=p,
        )

    def _score_empty(self, ts: float) -> tuple[float, float, float, bool, bool]:
        # score_one of a window without spend: never flagged, p 1, no neighbouring hour (it
        # needs spend), and the statistic to learn is -inf once warm (memoised as score_one does)
        hour, slots = self._slots(ts)
        learnt = self._n[_GLOBAL]
        _, expected, upper, _, stat, _ = self._judge(hour, slots, 0.0, learnt)
        self._memo = (ts, 0.0, None if learnt < self.min_history or learnt == 0 else stat, None)
        return expected, upper, 1.0, False, True

    def _learn_empty(self, ts: float) -> None:
        # learn_one of a window without spend: only the score's calibration learns (no log
        # residual to follow, and _learn skips a window without spend)
        memo = self._memo
        if memo is None or memo[0] != ts or memo[1] != 0.0:
            self.learn_one(ts, 0.0, 0.0)
            return
        self._memo = None
        if memo[2] is not None:
            self._cal.learn(memo[2])

    def _empty_run_ok(self, ends: Sequence[float]) -> bool:
        return True  # never flagged without spend

    def _empty_run(self, ends: Sequence[float], caps: Sequence[float] | None
                   ) -> list[tuple[float, float, float, bool, bool]]:
        # Nothing but the calibration learns from an empty window, so each hour's expected
        # value and upper hold for every window of it in the run, and the calibration learns
        # -inf once a window (once warm: the windows with spend learnt do not change).
        if not ends:
            return []
        learnt = self._n[_GLOBAL]
        out = []
        at = -1
        e = (0.0, 0.0, 1.0, False, True)
        for ts in ends:
            hour, slots = self._slots(ts)
            if hour != at:
                at = hour
                _, expected, upper, _, _, _ = self._judge(hour, slots, 0.0, learnt)
                e = (expected, upper, 1.0, False, True)
            out.append(e)
        if not (learnt < self.min_history or learnt == 0):
            self._cal.learn_repeat(-math.inf, len(ends))
        self._memo = None
        return out

    def _judge(self, hour: int, slots: tuple[int, int, int], value: float, learnt: int
               ) -> tuple[int, float, float, float, float | None, float | None]:
        """``value`` against the profile of ``hour``: the judging level, expected spend, alert
        bound, the binding z, the score's statistic (None: not judged) and the log residual."""
        level = self._judging_level(hour, slots)
        slot = slots[level]
        threshold, min_scale = self.threshold, self.min_scale
        stat: float | None = None  # the statistic behind the score; None: not judged
        lr: float | None = None  # log residual against the expected value
        if learnt == 0:
            # Nothing known yet (and it is cold start anyway): the money floor is all we have.
            expected, upper = 0.0, threshold * min_scale
            z = value / min_scale
        else:
            mu = self._loc_dev[slot] + self._offset
            raw = self._raw_sigma(slots, level)
            sigma = raw if raw > self._log_floor else self._log_floor
            expected = math.exp(mu)
            upper = math.exp(min(mu + threshold * sigma, _MAX_LOG_BOUND))
            money_bound = expected + threshold * min_scale
            if upper < money_bound:
                upper = money_bound
            # Both tests must pass, so the binding one is the smaller z; z >= threshold exactly
            # when value >= upper.
            z = (value - expected) / min_scale
            if value > 0.0:
                lr = math.log(value) - mu
                z_log = lr / sigma
                if z_log < z:
                    z = z_log
                # The score's statistic: the same residual against the scale without the
                # money and relative floors (those say what is worth an alert, not what is rare).
                stat = lr / (raw if raw > STAT_FLOOR else STAT_FLOOR)
            else:
                stat = -math.inf
        return level, expected, upper, z, stat, lr

    def _adjacent_hour(self, ts: float, hour: int) -> int | None:
        """The neighbouring epoch hour a window lies within ``_EDGE_S`` of (the next one for a
        window at the end of its hour, the previous one at the start), or None."""
        start = ts - self.window_seconds
        into = start - 3600.0 * hour
        if into >= 3600.0 - _EDGE_S:
            return hour + 1
        if into + self.window_seconds <= _EDGE_S:
            return hour - 1
        return None

    def _slots_of(self, hour: int) -> tuple[int, int, int]:
        """The slots of an epoch hour, finest first."""
        return (_HOW + (hour + _EPOCH_HOUR_OF_WEEK) % 168, _HOD + hour % 24, _GLOBAL)

    def _slots(self, ts: float) -> tuple[int, tuple[int, int, int]]:
        """Epoch hour of the window (the hour it starts in) and its slots, finest first."""
        hour = int((ts - self.window_seconds) // 3600)
        return hour, self._slots_of(hour)

    def _judging_level(self, hour: int, slots: tuple[int, int, int]) -> int:
        """Index in ``slots`` of the finest slot with enough history from earlier hours."""
        periods, last, min_periods = self._periods, self._last, self.min_periods
        hour &= _HOUR_MASK
        for i in (0, 1):
            slot = slots[i]
            # Only hours before this one count, so that every window of an hour is judged at
            # the same level, whether or not earlier windows of the hour were learnt.
            if periods[slot] - (last[slot] == hour) >= min_periods:
                return i
        return 2

    def _sigma(self, slots: tuple[int, int, int], level: int) -> float:
        """Robust sigma of log(spend) in ``slots[level]``, floored at log(1 + min_rel_scale)."""
        sigma = self._raw_sigma(slots, level)
        return sigma if sigma > self._log_floor else self._log_floor

    def _raw_sigma(self, slots: tuple[int, int, int], level: int) -> float:
        """Robust sigma of log(spend) in ``slots[level]``, without the floor.

        Its own mean absolute deviation, pooled with its level's while it has few windows
        (with the coarser slot's before the level has any), widened by the uncertainty of its
        location (a mean of n values).
        """
        slot = slots[level]
        n = self._n[slot]
        loc_dev, pool = self._loc_dev, self._pool
        dev = loc_dev[_DEV + slot]
        if level < 2:
            prior = pool[level] if pool[_POOL_N + level] else loc_dev[_DEV + slots[level + 1]]
            dev = (n * dev + _PRIOR_WINDOWS * prior) / (n + _PRIOR_WINDOWS)
        return _SIGMA_PER_DEV * dev * math.sqrt(1.0 + 1.0 / n)

    def learn_one(self, ts: float, value: float, count: float | None = None) -> None:
        if not (math.isfinite(ts) and math.isfinite(value)):
            raise ValueError(f"ts and value must be finite, got ts={ts!r} value={value!r}")
        memo = self._memo
        if memo is None or memo[0] != ts or memo[1] != value:
            self.score_one(ts, value, count)
            memo = self._memo
        assert memo is not None
        self._memo = None
        if memo[2] is not None:
            self._cal.learn(memo[2])
        lr = memo[3]
        if lr is not None:
            self._follow(lr)
            off = self._offset
            if off != 0.0:
                # A rebased level wears off towards what the slots would expect by themselves
                # (x - loc = lr + off), never past 0: the slots take over as they learn the new
                # level, or spend goes back to the old one and the offset with it.
                new = off + self._offset_w * lr
                if (new > 0.0) != (off > 0.0):
                    new = 0.0
                elif abs(new) > abs(off):
                    new = off
                self._offset = new
        hour, slots = self._slots(ts)
        self._learn(hour, slots, value)

    def _learn_protected(
        self, ts: float, value: float, verdict: Verdict, count: float | None = None
    ) -> None:
        # The slot that flagged the window, and the coarser ones, must not learn it. The finer
        # slots did not judge it because they have no earlier history yet; they learn it, or
        # a pattern they have never seen -- a nightly batch job, a weekly report -- would be
        # flagged against the coarser profile every time and never become expected. The
        # price: a runaway during a slot's first period is remembered by that slot.
        memo = self._memo
        self._memo = None
        if memo is not None and memo[0] == ts and memo[1] == value:
            self._held = memo[2]  # what learn_one would have calibrated on (see _take_held)
            if memo[3] is not None:
                self._follow(memo[3])  # the current level, whether or not it is learnt
        hour, slots = self._slots(ts)
        level = self._judging_level(hour, slots)
        if level:
            self._learn(hour, slots, value, levels=level)

    def _take_held(self) -> float | None:
        held, self._held = self._held, None
        return held

    def _learn_held(self, stat: float, weight: float = 1.0) -> None:
        self._cal.learn(stat, weight)

    def _follow(self, lr: float) -> None:
        self._recent += _RECENT_W * (lr - self._recent)

    def _rebase(self) -> None:
        # Every slot's expectation moves by the recent log residual, at once; the offset then
        # wears off as the slots learn (hour-of-week slots learn once a week: shifting them
        # for good would leave a temporary level in them for months).
        self._offset += self._recent
        self._recent = 0.0
        self._memo = None

    def _new_hour(self, slot: int, h16: int) -> None:
        """The first data of ``slot`` from the hour ``h16`` (its epoch hour modulo 2**16)."""
        self._last[slot] = h16
        p = self._periods[slot]
        if p < _MAX_PERIODS:
            try:
                self._periods[slot] = p + 1
            except OverflowError:  # outgrew its type: the same values, wider
                self._periods = widened(self._periods, "H")
                self._periods[slot] = p + 1

    def _learn(self, hour: int, slots: tuple[int, int, int], value: float, levels: int = 3) -> None:
        """Learn ``value`` into the ``levels`` finest of ``slots``."""
        if value <= 0.0:
            return  # zero windows say nothing about the level of spend when there is spend
        x = math.log(value)
        n_, last, loc = self._n, self._last, self._loc_dev
        dev = loc  # the scales from _DEV
        pool = self._pool
        aw = self._alpha_window
        damp = self._damp
        if hour > self._hour:
            self._hour = hour
        h16 = hour & _HOUR_MASK
        for level in range(levels):
            slot = slots[level]
            if last[slot] != h16 or not self._periods[slot]:
                self._new_hour(slot, h16)
            n = n_[slot]
            if n == 0:
                n_[slot] = 1
                loc[slot] = x
                dev[_DEV + slot] = 0.0
                continue
            r = x - loc[slot]
            # the scale is learnt around what was expected (with the level's offset)
            d = r - self._offset
            if n >= _UNCLIPPED_WARMUP:
                c = _CLIP_SIGMAS * self._sigma(slots, level)
                if r > c:
                    r = c
                elif r < -c:
                    r = -c
                if d > c:
                    d = c
                elif d < -c:
                    d = -c
            n += 1
            try:
                n_[slot] = n
            except OverflowError:  # outgrew its type: the same values, wider
                n_ = self._n = widened(n_, "i")
                n_[slot] = n
            # 1/n while the slot is young: a plain average of what it has, no start-up bias.
            w = 1.0 / n
            if w < aw:
                w = aw
            w *= damp
            abs_r = d if d >= 0.0 else -d
            loc[slot] += w * r
            dev[_DEV + slot] += w * (abs_r - dev[_DEV + slot])
            pn = pool[_POOL_N + level] + 1.0
            pool[_POOL_N + level] = pn
            w = 1.0 / pn
            if w < aw:
                w = aw
            pool[level] += w * (abs_r - pool[level])
