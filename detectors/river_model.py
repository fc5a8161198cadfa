"""A river linear forecaster of log spend on seasonal features, scored on its residuals.

Why this model and not another river one: HalfSpaceTrees costs ~1.1 MiB and ~29 ms to build per
model (see DESIGN), too much for one per series; SNARIMAX with a daily season of 1,440 one-minute
windows keeps that many lagged values and errors per series. A ``LinearRegression`` on a dozen
seasonal features keeps 16 numbers.

Measured on this machine (2 cores, CPython 3.11, river 0.26.1), one series fed a week of 60 s
windows with a daily shape (``test_cost_per_update_and_state_bytes`` prints it)::

    .venv/bin/python -m pytest -q -s tests/detectors/test_river_model.py -k cost

    RiverForecast: 7.9-11.8 us/update, 1,288 bytes of compact JSON state per series
    SeasonalBaseline (same runs): 4.7-5.3 us/update, 10,093 bytes

(six runs, with other work loading the machine: load average 4-5). Of that, river's learn_one
takes ~2.8 us, its predict_one ~0.4 us, the features ~1.3 us; the state is the model's 16
numbers plus 4 x 24 of scale and hour-of-day bookkeeping.

On the project's labelled workload it does **not** beat ``SeasonalBaseline`` (3 seeds x 21 days,
7 burn-in; the workload generator as of 2026-11-26)::

    .venv/bin/python -m benchmarks.detectors --seeds 3 \
        --candidates seasonal river seasonal:threshold=4 river:threshold=4 river:threshold=3.5

    candidate              recall  FA/tw  loop switch burst night
    seasonal                 0.17   0.00  0.00   0.00  0.33  0.33
    river                    0.06   0.00  0.00   0.00  0.11  0.11
    seasonal:threshold=4     0.81   0.05  0.56   0.89  1.00  0.78
    river:threshold=4        0.58   0.00  0.33   0.00  1.00  1.00
    river:threshold=3.5      0.58   0.20  0.33   0.00  1.00  1.00

It catches bursts and night spikes as well or faster, but misses the model switches (a ~3x rise
for hours) and most runaway loops (a ramp): both grow through windows under the bound, which
this model learns -- it follows the level within hours by design. A slower ``lr`` (0.003,
0.005) changed the recall at threshold 4 by at most one incident in 36; a scale per hour of
the week (tried) did not help either and made the state 5x bigger. A guard that stops learning
upward residuals during a run of them broke the recovery after quiet periods.

Detection against ``SeasonalBaseline``, both at their defaults (threshold 6), measured with a
scratch harness (not in the repository) on synthetic 60 s series of three weeks, 3 seeds, 40
injected events each (single windows and 30-window runaways at 2x, 3x, 5x, 8x the spend):

- daily sine shape, weekends at 0.3x, with or without sparse nights: no false alerts from
  either; the river model catches more (single windows 3x 19/24 vs 17/24, 5x 29/29 vs 25/29;
  30-window runaways 5x 30/30 vs 24/30), the slot profile slightly more 30-window 2x (6 vs 4);
- business-hours plateau with one-hour ramps, noise sigma 0.3, sparse nights: no false alerts
  from either; the slot profile catches more sustained runaways (30-window 5x 6/15 vs 4/15, 8x
  12/15 vs 9/15), the river model more single 8x windows (6/6 vs 5/6) and has a much tighter
  bound inside the 07:00 ramp hour (12.7x vs 49.6x the expected value);
- a 10-minute nightly batch (+$5 or +$20 a window on the sine series): the river model flags
  all ten windows every night, the slot profile only on the first night;
- hourly windows, 5 weeks, sine shape with weekends at 0.3x (4 seeds, 40 single 3x windows):
  no false alerts; the slot profile caught 15, the river model 13 with ``lr=0.03`` (9 at 0.01,
  7 at 0.06).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from detectors.base import Detector, Verdict, require
from detectors.calibration import STAT_FLOOR, TailCalibrator

if TYPE_CHECKING:
    from river.linear_model import LinearRegression

__all__ = ["RiverForecast"]

_DAY = 86400.0
_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
# 1970-01-01 was a Thursday: day 0 of the epoch is day 3 of a Monday-based week.
_EPOCH_WEEKDAY = 3

# sigma of a normal / its mean absolute deviation: the scale is a mean absolute deviation.
_SIGMA_PER_DEV = math.sqrt(math.pi / 2)
# Huber-style bounded influence: the forecaster learns a residual as at most this many robust
# sigmas. Tighter than SeasonalBaseline's 3 because this model follows the level within hours:
# the first windows of a runaway that stay under the alert bound are learnt, and at 3 sigmas
# they lift the forecast enough to hide the rest of it (measured: 30-window 5x runaways on a
# business-hours series caught 1 time in 15 at 3, 4 at 2).
_CLIP_LEARN = 2.0
# The residual scale learns residuals clipped at 3 sigmas, which leaves normal noise untouched.
_CLIP_SCALE = 3.0
# Windows learnt unclipped at the start: no trustworthy scale to clip against yet.
_UNCLIPPED_WARMUP = 4
# An hour-of-day scale slot is pooled with the global scale as if that had this many windows.
_PRIOR_WINDOWS = 30
_MAX_LOG_BOUND = 700.0
# Weight of a window in the recent level that ``rebase`` adopts (about the last three windows:
# on-call answers "new normal" minutes into a shift, when a longer memory still holds the old level).
_RECENT_W = 0.5


class RiverForecast(Detector):
    """Forecast log(spend) with river's ``LinearRegression`` on daily Fourier terms and the
    day of the week; flag windows far above the forecast in robust sigmas of its residuals.

    The features of a window (at its midpoint, UTC) are ``daily_terms`` sine/cosine pairs of
    the time of day and, with ``day_of_week``, seven day indicators; with the intercept the
    model is a smooth daily shape times a level per weekday, in log space. Plain SGD with the
    default rate both learns that shape and follows the level within an hour or two, so the
    forecast is "this time of day, at today's level". (Weekly Fourier terms were tried and
    dropped: learnt that fast they stand in for the level and extrapolate it along a sine
    through the night, paging on the next morning's ordinary traffic.)

    - Like ``SeasonalBaseline`` it works on log(spend), learns only windows with spend (zero
      windows and credits teach nothing and are never flagged), and alerts only when a window
      is ``threshold`` sigmas above the forecast on the log scale *and* ``threshold *
      min_scale`` dollars above it: cents are not an incident. ``upper`` is the smallest spend
      that passes both.
    - What it learns is clipped at 2 robust sigmas (bounded influence); the residual scale is
      an exponentially weighted mean absolute deviation per hour of day (24 slots, pooled with
      the global one while young), floored at log(1 + ``min_rel_scale``).
    - With ``protect_anomaly`` a flagged window is not learnt -- unless its hour of day was
      never learnt before: then the forecast for it was extrapolated from other hours, and
      the window is learnt (clipped), so that the office opening on a series' first morning
      pages that morning only (``SeasonalBaseline`` lets its young slots learn likewise).
      Once an hour has history, a runaway in it stays flagged. ``count`` is not used.

    Use it where the daily shape is smooth but steep (ramps inside an hour), for young series
    (no week of history needed per hour of the week), or as a second opinion next to
    ``SeasonalBaseline`` for bursts. Not alone: on series with sharp recurring features a
    10-minute nightly batch is smoothed away by a few harmonics and flagged every night, and
    because it follows the level, a rise that builds up over minutes to hours (a model switch,
    an agent loop with a growing context) is partly learnt rather than flagged (see the
    benchmark above).

    Parameters
    ----------
    window_seconds
        Length of the windows; ``ts`` is a window's end.
    threshold
        Alert bound in robust sigmas of the log-scale residual.
    min_history
        Windows with spend to learn before any alert (cold start).
    min_scale
        Money per window: a window must exceed the forecast by ``threshold * min_scale``.
    min_rel_scale
        Floor of the log-scale sigma, as a relative change (0.1: sigma >= log 1.1).
    lr
        Learning rate of river's SGD optimiser and of the intercept, per window. 0.01 suits
        60 s windows; for hourly windows 0.03 did best (measured 0.01 to 0.1). Must be at most
        1 / (2 + daily_terms) (SGD diverges at twice that).
    daily_terms
        Harmonics of the day, each a sine and a cosine feature.
    day_of_week
        Learn a level per day of the week (UTC).
    alpha
        Weight of the newest hour of data in the residual scale (0.2: the global scale
        remembers about five hours, an hour-of-day slot about five days).
    protect_anomaly
        Do not learn flagged windows.

    Example: three days of 60 s windows with a daily shape, then an 8x spike.

    >>> import numpy as np
    >>> rng = np.random.default_rng(42)
    >>> det = RiverForecast()
    >>> ts = 1_704_067_200 + 60 * np.arange(1, 3 * 1440 + 1)
    >>> shape = 2 + 1.5 * np.sin(2 * np.pi * (ts % 86400) / 86400)
    >>> spend = shape * rng.lognormal(0, 0.15, ts.size)
    >>> spike = ts.size - 100
    >>> spend[spike] *= 8
    >>> verdicts = [det.update(float(t), float(v)) for t, v in zip(ts, spend)]
    >>> int(np.argmax([v.score for v in verdicts])) == spike, verdicts[spike].is_anomaly
    (True, True)
    >>> sum(v.is_anomaly for v in verdicts)
    1
    >>> verdicts[spike].reason
    '8.9x the forecast (alert bound 2.6x)'
    >>> verdicts[spike + 1].is_anomaly  # not learnt: the next window is ordinary again
    False
    """

    name = "river"

    def __init__(
        self,
        window_seconds: float = 60.0,
        threshold: float = 6.0,
        min_history: int = 30,
        min_scale: float = 0.05,
        min_rel_scale: float = 0.1,
        lr: float = 0.01,
        daily_terms: int = 4,
        day_of_week: bool = True,
        alpha: float = 0.2,
        protect_anomaly: bool = True,
    ) -> None:
        self.window_seconds = window_seconds
        self.threshold = threshold
        self.min_history = min_history
        self.min_scale = min_scale
        self.min_rel_scale = min_rel_scale
        self.lr = lr
        self.daily_terms = daily_terms
        self.day_of_week = day_of_week
        self.alpha = alpha
        self.protect_anomaly = protect_anomaly
        require("RiverForecast", window_seconds > 0, "window_seconds must be > 0", window_seconds)
        require("RiverForecast", threshold > 0, "threshold must be > 0", threshold)
        require("RiverForecast", isinstance(min_history, int) and min_history >= 0,
                 "min_history must be an int >= 0", min_history)
        require("RiverForecast", min_scale > 0, "min_scale must be > 0", min_scale)
        require("RiverForecast", min_rel_scale > 0, "min_rel_scale must be > 0", min_rel_scale)
        require("RiverForecast", isinstance(daily_terms, int) and 0 <= daily_terms <= 24,
                 "daily_terms must be an int in [0, 24]", daily_terms)
        require("RiverForecast", isinstance(day_of_week, bool), "day_of_week must be a bool", day_of_week)
        # Squared norm of a feature vector: the intercept's 1, 1 per sine/cosine pair, 1 for
        # the day's indicator. SGD diverges at lr >= 2 / norm; refuse well before that.
        norm = 1 + daily_terms + int(day_of_week)
        require("RiverForecast", 0 < lr <= 1.0 / norm, f"lr must be in (0, 1/{norm}]", lr)
        require("RiverForecast", 0 < alpha <= 1, "alpha must be in (0, 1]", alpha)
        self._features = tuple(
            f"{trig}{k}" for k in range(1, daily_terms + 1) for trig in ("sin", "cos")
        ) + (_DAYS if day_of_week else ())
        # Per window, from alpha per hour of data (as in SeasonalBaseline).
        self._alpha_window = 1.0 - (1.0 - alpha) ** (window_seconds / 3600.0)
        self._log_floor = math.log1p(min_rel_scale)
        super().__init__()

    # -- state ------------------------------------------------------------------------------

    def _new_model(self) -> LinearRegression:
        # Imported here, not at the top: river's import costs ~0.5 s, which every process
        # importing ``detectors`` would pay whether or not it runs this model.
        from river import linear_model, optim

        return linear_model.LinearRegression(
            optimizer=optim.SGD(self.lr), intercept_lr=self.lr, l2=0.0
        )

    def _reset(self) -> None:
        self._model = self._new_model()
        self._memo: tuple[float, int, dict[str, float], float] | None = None
        self._n = 0  # windows with spend learnt
        self._dev = 0.0  # global mean absolute deviation of the log residuals
        # Per hour of day (UTC): windows learnt, mean absolute deviation of their residuals,
        # distinct days they came from and the epoch hour of the latest.
        self._hod_n: list[int] = [0] * 24
        self._hod_dev: list[float] = [0.0] * 24
        self._hod_days: list[int] = [0] * 24
        self._hod_last: list[int] = [-1] * 24
        self._cal = TailCalibrator()  # the score statistic's history (calibrated scores)
        self._recent = 0.0  # recent log residual, flagged windows too (for rebase)
        self._stat: tuple[float, float, float | None] | None = None  # last scored (not state)

    def _get_state(self) -> dict[str, Any]:
        # The river model's learnt numbers, in the fixed feature order: SGD with a constant
        # rate has no other state (n_iterations only drives learning-rate schedules).
        weights = self._model.weights
        return {
            "n": self._n,
            "intercept": float(self._model.intercept),
            "weights": [float(weights.get(f, 0.0)) for f in self._features],
            "iterations": int(self._model.optimizer.n_iterations),
            "dev": self._dev,
            "hod_n": list(self._hod_n),
            "hod_dev": list(self._hod_dev),
            "hod_days": list(self._hod_days),
            "hod_last": list(self._hod_last),
            "cal": self._cal.to_state(),
            "recent": self._recent,
        }

    def _set_state(self, state: dict[str, Any]) -> None:
        try:
            n = int(state["n"])
            intercept = float(state["intercept"])
            weights = [float(x) for x in state["weights"]]
            iterations = int(state["iterations"])
            dev = float(state["dev"])
            hod_n = [int(x) for x in state["hod_n"]]
            hod_dev = [float(x) for x in state["hod_dev"]]
            hod_days = [int(x) for x in state["hod_days"]]
            hod_last = [int(x) for x in state["hod_last"]]
            # states written before scores were calibrated have none: start it afresh
            cal = TailCalibrator.from_state(state["cal"]) if "cal" in state else TailCalibrator()
            recent = float(state.get("recent", 0.0))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"malformed river state: {exc!r}") from exc
        if len(weights) != len(self._features):
            raise ValueError(
                f"river state has {len(weights)} weights, these parameters need "
                f"{len(self._features)}"
            )
        if not all(len(xs) == 24 for xs in (hod_n, hod_dev, hod_days, hod_last)):
            raise ValueError("river state hour-of-day lists must have 24 slots")
        if not all(math.isfinite(x) for x in [intercept, dev, *weights, *hod_dev]):
            raise ValueError("river state has non-finite values")
        model = self._new_model()
        model.intercept = intercept
        model.optimizer.n_iterations = iterations
        if n:
            # river keeps the weights in a private VectorDict and has no public setter. Filled
            # in the order the first learn_one creates them, so dot products sum in the same
            # order and a restored model predicts bit for bit like the original.
            from river.utils import VectorDict

            model._weights = VectorDict(dict(zip(self._features, weights, strict=True)))
        self._model, self._n, self._dev = model, n, dev
        self._memo = None
        self._hod_n, self._hod_dev = hod_n, hod_dev
        self._hod_days, self._hod_last = hod_days, hod_last
        self._cal, self._stat = cal, None
        self._recent = recent if math.isfinite(recent) else 0.0

    # -- model ------------------------------------------------------------------------------

    def _x(self, ts: float) -> dict[str, float]:
        """Features of the window's midpoint: daily harmonics (by angle addition) and the
        day-of-week indicators."""
        mid = ts - 0.5 * self.window_seconds
        x: dict[str, float] = {}
        names = iter(self._features)
        if self.daily_terms:
            angle = 2.0 * math.pi * (mid % _DAY) / _DAY
            s1, c1 = math.sin(angle), math.cos(angle)
            s, c = s1, c1
            for _ in range(self.daily_terms):
                x[next(names)] = s
                x[next(names)] = c
                s, c = s * c1 + c * s1, c * c1 - s * s1
        if self.day_of_week:
            # All seven, zeros included: river's VectorDict then holds them in this order
            # from the first learn_one, which the state round trip relies on.
            today = _DAYS[int((mid // _DAY + _EPOCH_WEEKDAY) % 7)]
            for day in _DAYS:
                x[day] = 1.0 if day == today else 0.0
        return x

    def _forecast(self, ts: float) -> tuple[dict[str, float], float]:
        """Features and forecast of log(spend) for the window ending at ``ts``.

        ``update`` asks twice (score, then learn); the second time is the memo's, which is
        only valid while nothing has been learnt since (``_n`` counts every learnt window).
        """
        memo = self._memo
        if memo is not None and memo[0] == ts and memo[1] == self._n:
            return memo[2], memo[3]
        x = self._x(ts)
        mu = self._model.predict_one(x)  # type: ignore[no-untyped-call]  # river is untyped
        self._memo = (ts, self._n, x, mu)
        return x, mu

    def _hour(self, ts: float) -> int:
        """Epoch hour the window starts in (its hour of day is this modulo 24)."""
        return int((ts - self.window_seconds) // 3600)

    def _hod(self, ts: float) -> int:
        return self._hour(ts) % 24

    def _seen_before(self, hour: int) -> bool:
        """Whether windows of this hour of day were learnt on an earlier day: if not, the
        forecast for it is an extrapolation of the other hours, not something learnt."""
        hod = hour % 24
        return self._hod_days[hod] - (self._hod_last[hod] == hour) >= 1

    def _sigma(self, hod: int) -> float:
        sigma = self._raw_sigma(hod)
        return sigma if sigma > self._log_floor else self._log_floor

    def _raw_sigma(self, hod: int) -> float:
        n_h = self._hod_n[hod]
        dev = (n_h * self._hod_dev[hod] + _PRIOR_WINDOWS * self._dev) / (n_h + _PRIOR_WINDOWS)
        # Wider while few windows are known: the forecast itself is uncertain then.
        return _SIGMA_PER_DEV * dev * math.sqrt(1.0 + 1.0 / self._n)

    def score_one(self, ts: float, value: float, count: float | None = None) -> Verdict:
        if not (math.isfinite(ts) and math.isfinite(value)):
            raise ValueError(f"ts and value must be finite, got ts={ts!r} value={value!r}")
        threshold, min_scale, learnt = self.threshold, self.min_scale, self._n
        stat: float | None = None
        if learnt == 0:
            expected, upper, z = 0.0, threshold * min_scale, 0.0
        else:
            mu = self._forecast(ts)[1]
            if mu > _MAX_LOG_BOUND:
                mu = _MAX_LOG_BOUND
            raw = self._raw_sigma(self._hod(ts))
            sigma = raw if raw > self._log_floor else self._log_floor
            expected = math.exp(mu)
            upper = math.exp(min(mu + threshold * sigma, _MAX_LOG_BOUND))
            money_bound = expected + threshold * min_scale
            if upper < money_bound:
                upper = money_bound
            # Both tests must pass: the binding one is the smaller z.
            z = (value - expected) / min_scale
            if value > 0.0:
                lr = math.log(value) - mu
                z_log = lr / sigma
                if z_log < z:
                    z = z_log
                # the score's statistic: the residual against the scale without the floors
                stat = lr / (raw if raw > STAT_FLOOR else STAT_FLOOR)
            else:
                stat = -math.inf
        excess = value - expected
        self._stat = (ts, value, stat)
        p = 1.0
        if learnt == 0 or learnt < self.min_history:
            is_anomaly = False
            stat = None
            reason = f"cold start: {learnt} of {self.min_history} windows with spend learnt"
        elif value <= 0.0:
            is_anomaly = False
            reason = "no spend in the window" if value == 0.0 else "a credit, not spend"
        else:
            is_anomaly = z >= threshold
            if stat is not None:
                p = self._cal.sf(stat)
            reason = (
                f"{value / expected:.1f}x the forecast (alert bound {upper / expected:.1f}x)"
            )
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

    def learn_one(self, ts: float, value: float, count: float | None = None) -> None:
        if not (math.isfinite(ts) and math.isfinite(value)):
            raise ValueError(f"ts and value must be finite, got ts={ts!r} value={value!r}")
        memo = self._stat
        if memo is None or memo[0] != ts or memo[1] != value:
            self.score_one(ts, value, count)
            memo = self._stat
        assert memo is not None
        self._stat = None
        if memo[2] is not None and self._n >= self.min_history:
            self._cal.learn(memo[2])
        if value <= 0.0:
            return  # zero windows say nothing about the level of spend when there is spend
        y = math.log(value)
        model = self._model
        n = self._n
        x, forecast = self._forecast(ts)
        hour = self._hour(ts)
        hod = hour % 24
        if self._hod_last[hod] != hour:
            self._hod_last[hod] = hour
            self._hod_days[hod] += 1
        if n == 0:
            # Start at the first value instead of SGD-walking there from 0 (log $0.001 = -7).
            model.intercept = y
            self._n = 1
            return
        r = y - forecast
        self._recent += _RECENT_W * (r - self._recent)
        if n >= _UNCLIPPED_WARMUP:
            sigma = self._sigma(hod)
            c = _CLIP_LEARN * sigma
            # Learn a clipped target: a huge window moves the model like a 2-sigma one.
            model.learn_one(x, forecast + (c if r > c else -c if r < -c else r))
            c = _CLIP_SCALE * sigma
            if r > c:
                r = c
            elif r < -c:
                r = -c
        else:
            model.learn_one(x, y)
        n += 1
        self._n = n
        abs_r = r if r >= 0.0 else -r
        aw = self._alpha_window
        w = 1.0 / n
        self._dev += (w if w > aw else aw) * (abs_r - self._dev)
        n_h = self._hod_n[hod] + 1
        self._hod_n[hod] = n_h
        w = 1.0 / n_h
        self._hod_dev[hod] += (w if w > aw else aw) * (abs_r - self._hod_dev[hod])

    def _learn_protected(
        self, ts: float, value: float, verdict: Verdict, count: float | None = None
    ) -> None:
        # A flagged window of an hour of day never learnt before was judged against the shape
        # extrapolated from other hours: learn it (clipped, as any window), or a level that
        # differs in that hour -- the office opening on the series' first morning -- would be
        # flagged against the night's level every day and never become expected. Once the
        # hour has history, whatever it flags is not learnt. The price, as in
        # SeasonalBaseline: a runaway during an hour's first day is partly learnt.
        if not self._seen_before(self._hour(ts)):
            self.learn_one(ts, value, count)
        elif value > 0.0 and self._n:
            self._recent += _RECENT_W * (math.log(value) - self._forecast(ts)[1] - self._recent)

    def _rebase(self) -> None:
        # The intercept moves by the recent log residual: the forecast's shape stays, its
        # level is the new one.
        self._model.intercept += self._recent
        self._recent = 0.0
        self._memo = None
        self._stat = None
