"""The naive anchor: a rolling mean + k sigma of spend per window."""

from __future__ import annotations

import math
from typing import Any

from detectors.base import Detector, Verdict, require
from detectors.calibration import STAT_FLOOR, TailCalibrator

__all__ = ["NaiveRolling"]

# Weight of a window in the recent level that ``rebase`` adopts (about the last three windows:
# on-call answers "new normal" minutes into a shift, when a longer memory still holds the old level).
_RECENT_W = 0.5



class NaiveRolling(Detector):
    """Rolling mean + ``k`` standard deviations of the last ``n_windows`` windows' spend.

    The evaluation's naive anchor: what anyone would write first, kept faithful and simple so
    that the other detectors are measured against something recognisable. Do not run it in
    production.

    - Linear scale, zero windows included, no seasonality: the bound follows the last hour (with
      the defaults) wherever the day is.
    - The standard deviation is floored at ``min_scale`` (money per window), the one concession:
      on a flat series sigma is 0 and every cent would be an anomaly.
    - With ``protect_anomaly`` a flagged window does not enter the buffer. That is also its best
      known failure: once spend moves to a level the buffer never saw -- traffic back after a
      quiet hour, a real step up -- every window is flagged and none is learnt, so it stays
      flagged until ``reset``.

    A window is an anomaly when, once ``min_history`` windows have been learnt, its spend is at
    least ``mean + k * sigma`` of the buffer (population standard deviation); ``upper`` is that
    bound and ``expected`` the mean.

    Parameters
    ----------
    window_seconds
        Length of the windows fed to it (kept for the contract; the model ignores time).
    n_windows
        Length of the rolling buffer, in windows.
    k
        Alert bound in standard deviations above the mean.
    min_history
        Windows to learn before any alert (cold start); at most ``n_windows``.
    min_scale
        Floor of the standard deviation, money per window.
    protect_anomaly
        Do not learn flagged windows.

    Example: an hour of about $2 per minute, then a $9 minute.

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> det = NaiveRolling()
    >>> ts = 1_704_067_200 + 60 * np.arange(1, 62)
    >>> spend = 2 + rng.normal(0, 0.2, 61)
    >>> spend[-1] = 9.0
    >>> verdicts = [det.update(float(t), float(v)) for t, v in zip(ts, spend)]
    >>> [i for i, v in enumerate(verdicts) if v.is_anomaly]
    [60]
    >>> v = verdicts[-1]
    >>> round(v.expected, 2), round(v.upper, 2), v.reason
    (2.02, 2.55, '38.9 sigma above the mean of the last 60 windows (bound 3 sigma)')
    """

    name = "naive"

    def __init__(
        self,
        window_seconds: float = 60.0,
        n_windows: int = 60,
        k: float = 3.0,
        min_history: int = 30,
        min_scale: float = 0.05,
        protect_anomaly: bool = True,
    ) -> None:
        self.window_seconds = window_seconds
        self.n_windows = n_windows
        self.k = k
        self.min_history = min_history
        self.min_scale = min_scale
        self.protect_anomaly = protect_anomaly
        require("NaiveRolling", window_seconds > 0, "window_seconds must be > 0", window_seconds)
        require(
            "NaiveRolling",
            isinstance(n_windows, int) and n_windows >= 2, "n_windows must be an int >= 2",
            n_windows,
        )
        require("NaiveRolling", k > 0, "k must be > 0", k)
        require(
            "NaiveRolling",
            isinstance(min_history, int) and 1 <= min_history <= n_windows,
            "min_history must be an int in [1, n_windows]",
            min_history,
        )
        require("NaiveRolling", min_scale > 0, "min_scale must be > 0", min_scale)
        super().__init__()

    @classmethod
    def _unit_test_params(cls) -> dict[str, Any]:
        # The contract's series have a 7x daily swing with 15 % noise and a 16-hour silence.
        # On them the defaults (one hour, 3 sigma) false-alarm about 1 % of windows and, once
        # the buffer is all zeros, flag every window after the silence forever -- which is what
        # this anchor is for (tests/detectors/test_naive.py shows both). A day-long buffer at
        # 6 sigma is still the same model and lets the shared checks test its mechanics
        # (state, protection, copies) rather than its quality.
        return {"n_windows": 1440, "k": 6.0}

    # -- state ------------------------------------------------------------------------------

    def _reset(self) -> None:
        self._buf: list[float] = []  # the last n_windows values, a ring once full
        self._pos = 0  # where the next value goes once the ring is full
        # Running sums of the buffer, kept in the state (not re-derived on load) so that a
        # restored detector scores bit-for-bit like the original; re-summed from the buffer
        # every time the ring wraps, so rounding cannot drift.
        self._sum = 0.0
        self._sumsq = 0.0
        self._cal = TailCalibrator()  # the z-score's history (calibrated scores)
        self._recent = 0.0  # recent spend per window, flagged or not (for rebase)
        self._recent_n = 0
        self._memo: tuple[float, float, float | None] | None = None  # not state

    def _get_state(self) -> dict[str, Any]:
        return {"buf": list(self._buf), "pos": self._pos, "sum": self._sum, "sumsq": self._sumsq,
                "cal": self._cal.to_state(), "recent": [self._recent, self._recent_n]}

    def _set_state(self, state: dict[str, Any]) -> None:
        try:
            buf = [float(x) for x in state["buf"]]
            pos = int(state["pos"])
            total, sumsq = float(state["sum"]), float(state["sumsq"])
            # states written before scores were calibrated have none: start it afresh
            cal = TailCalibrator.from_state(state["cal"]) if "cal" in state else TailCalibrator()
            recent, recent_n = state.get("recent", (0.0, 0))
            recent, recent_n = float(recent), int(recent_n)
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"malformed naive state: {exc!r}") from exc
        if len(buf) > self.n_windows or not 0 <= pos < self.n_windows:
            raise ValueError(f"naive state does not fit n_windows={self.n_windows}")
        if not all(math.isfinite(x) for x in [*buf, total, sumsq]):
            raise ValueError("naive state has non-finite values")
        self._buf, self._pos, self._sum, self._sumsq = buf, pos, total, sumsq
        self._cal, self._memo = cal, None
        self._recent, self._recent_n = recent, recent_n

    # -- model ------------------------------------------------------------------------------

    def score_one(self, ts: float, value: float, count: float | None = None) -> Verdict:
        if not (math.isfinite(ts) and math.isfinite(value)):
            raise ValueError(f"ts and value must be finite, got ts={ts!r} value={value!r}")
        n = len(self._buf)
        k = self.k
        if n == 0:
            mean, sigma, raw = 0.0, self.min_scale, 0.0
        else:
            mean = self._sum / n
            var = self._sumsq / n - mean * mean
            raw = sigma = math.sqrt(var) if var > 0.0 else 0.0
            if sigma < self.min_scale:
                sigma = self.min_scale
        upper = mean + k * sigma
        z = (value - mean) / sigma
        p = 1.0
        stat: float | None = None
        if n < self.min_history:
            flag = False
            reason = f"cold start: {n} of {self.min_history} windows learnt"
        else:
            flag = z >= k
            # The score's statistic: the z-score without the money floor on sigma (a relative
            # numerical floor only), calibrated against its own history.
            floor = STAT_FLOOR * abs(mean) if mean else STAT_FLOOR * 1e-6
            stat = (value - mean) / (raw if raw > floor else floor)
            p = self._cal.sf(stat)
            reason = f"{z:.1f} sigma above the mean of the last {n} windows (bound {k:g} sigma)"
        excess = value - mean
        self._memo = (ts, value, stat)
        return Verdict(
            ts=ts,
            observed=value,
            expected=mean,
            upper=upper,
            score=1.0 - p,
            is_anomaly=flag,
            excess=excess,
            excess_pct=100.0 * excess / mean if mean > 0.0 else None,
            detector=self.name,
            reason=reason,
            p=p,
        )

    def learn_one(self, ts: float, value: float, count: float | None = None) -> None:
        if not (math.isfinite(ts) and math.isfinite(value)):
            raise ValueError(f"ts and value must be finite, got ts={ts!r} value={value!r}")
        memo = self._memo
        if memo is None or memo[0] != ts or memo[1] != value:
            self.score_one(ts, value, count)
            memo = self._memo
        assert memo is not None
        self._memo = None
        self._follow(value)
        if memo[2] is not None and len(self._buf) >= self.n_windows:
            # learnt once the buffer is full: before that its z-scores are of another kind
            self._cal.learn(memo[2])
        self._push(value)

    def _learn_protected(
        self, ts: float, value: float, verdict: Verdict, count: float | None = None
    ) -> None:
        self._follow(value)  # the level, not the buffer

    def _follow(self, value: float) -> None:
        self._recent_n += 1
        w = max(_RECENT_W, 1.0 / self._recent_n)
        self._recent += w * (value - self._recent)

    def _rebase(self) -> None:
        # The buffer moves by the difference between the recent level and its mean: its spread
        # stays, its level is the new one.
        buf = self._buf
        if not buf or not self._recent_n:
            return
        delta = self._recent - self._sum / len(buf)
        for i in range(len(buf)):
            buf[i] += delta
        self._sum = math.fsum(buf)
        self._sumsq = math.fsum(x * x for x in buf)
        self._recent, self._recent_n = 0.0, 0
        self._memo = None

    def _push(self, value: float) -> None:
        buf = self._buf
        if len(buf) < self.n_windows:
            buf.append(value)
            self._sum += value
            self._sumsq += value * value
            return
        old = buf[self._pos]
        buf[self._pos] = value
        self._pos = (self._pos + 1) % self.n_windows
        if self._pos == 0:
            self._sum = math.fsum(buf)
            self._sumsq = math.fsum(x * x for x in buf)
        else:
            self._sum += value - old
            self._sumsq += value * value - old * old
