"""Calibrated upper-tail p-values of a detector statistic, learnt from the series' own history.

Every model computes a statistic that grows with how unusual a window is (a robust z of log
spend, a CUSUM, a count's surprise). What a value of it means differs from series to series --
a z of 4 is rare on a smooth $500/min series and routine on a bursty one with quantised nights
-- so a score that analysts can put one threshold on cannot be a fixed function of it. A
:class:`TailCalibrator` turns it into an upper-tail p-value against the distribution of the
same statistic on the series' own earlier, normal windows (an online conformal p-value):
``score = 1 - p`` then means the same everywhere: on normal windows ``P(score >= s) ~ 1 - s``.

- The body is empirical: an exponentially forgetting histogram of the statistic (bins 0.1
  wide in ``asinh(z)`` over z in [-2.1, 1,500), an underflow bin that also holds ``-inf`` -- a
  window without spend -- and an overflow bin), linearly interpolated within a bin.
- Where fewer than ``_K_MIN`` windows' worth of history lies above the value, the empirical
  estimate is noise; the tail is extrapolated instead: ``P(Z >= z) / P(Z >= u)`` is fitted as
  ``exp(-a (z - u)**c)`` (a Weibull-type tail: heavy for ``c < 1``, exponential at 1,
  Gaussian-like at 2) over the histogram edges from its 90th percentile ``u`` to the last
  reliable one, and continued from there. The result is continuous and strictly decreasing in the statistic: no caps, no ties,
  and p reaches 0 only where a double does.
- A small standard-normal prior (``_PRIOR_WINDOWS``) makes the first windows sensible; it is
  outweighed within a few hundred windows.

Pure Python and one typed array (it runs once per window per model per series): ~1 us to
score, ~0.5 us to learn; 97 single-precision floats of state (empty top bins are not written).

>>> import random
>>> rng = random.Random(1)
>>> cal = TailCalibrator()
>>> for _ in range(20000):
...     cal.learn(rng.gauss(0.0, 1.0))
>>> [round(cal.sf(z), 4) for z in (0.0, 1.0, 2.326, 3.09)]   # normal: 0.5, 0.1587, 0.01, 0.001
[0.4943, 0.1624, 0.0116, 0.0018]
>>> cal.sf(8.0) > cal.sf(8.01) > 0.0
True
"""

from __future__ import annotations

import math
from array import array
from typing import Any

from detectors.f32 import pack_f32, unpack_f32

__all__ = ["STAT_FLOOR", "LevelSurprise", "TailCalibrator", "combine_min_p", "jitter", "z_of_p"]

# Bins are uniform in asinh(z): ~0.1 wide in z near 0, ~0.3 around z = 3, and the range
# reaches z ~ 200, so that a badly scaled or heavy-tailed statistic still lands in bins.
_LO = -1.5  # asinh(z): z ~ -2.1
_WIDTH = 0.1
_NBINS = 95
_HI = _LO + _WIDTH * _NBINS  # z ~ 1,500
_N = _NBINS + 2  # + underflow (index 0) and overflow (index _N - 1)
_HI_Z = math.sinh(_HI)
# Windows of history the histogram remembers (exponential forgetting after that many): two
# days of 1-minute windows, so that it follows a model whose own scale is still settling.
_MEMORY = 2880
_DECAY = 1.0 / (1.0 - 1.0 / _MEMORY)
# Below this many windows' worth of mass above a value, the empirical tail is not trusted.
_K_MIN = 4.0
# Where the tail fit starts: the edge above which at most this share of the mass lies (the
# 97th percentile: low enough for a few points to fit, high enough to be tail).
_TAIL_START = 0.03
_PRIOR_WINDOWS = 20.0
# Tail shape when there is nothing to fit (a standard normal's from its 90th percentile, roughly).
_DEFAULT_A = 1.4
_DEFAULT_C = 1.5
# Bounds of the tail's shape exponent: from much heavier than exponential to Gaussian-like.
_MIN_C = 0.3
_MAX_C = 2.5
# The bins grow with the weight of the next window instead of all decaying: they are brought
# back to 1 when it passes this, low enough for single-precision bins (max ~3.4e38) to hold
# ``_MEMORY`` windows of that weight. States written with doubles (up to 1e100) are rescaled
# on load.
_RESCALE = 1e30

STAT_FLOOR = 0.01
"""Floor of a model's scale in its statistic (log units: 1 %). The models' own floors
(``min_rel_scale``, ``min_scale``) are about what is worth an alert, not about what is unusual,
so the statistic leaves them out: on a very smooth series a 5 % rise *is* unusual. This one
only keeps a series without any noise (a constant, a square wave) from z-scores in the
millions on changes of a few percent."""


def _normal_prior() -> list[float]:
    cdf = [0.5 * math.erfc(-math.sinh(_LO + _WIDTH * i) / math.sqrt(2.0)) for i in range(_NBINS + 1)]
    out = [cdf[0]]
    out += [cdf[i + 1] - cdf[i] for i in range(_NBINS)]
    out.append(1.0 - cdf[-1])
    return [_PRIOR_WINDOWS * m for m in out]


_PRIOR = _normal_prior()


def _trimmed(c: array[float]) -> array[float]:
    """``c`` without its empty top bins (a calibrator holds only the bins up to its last one
    with weight: the others are zero)."""
    end = len(c)
    while end > 1 and c[end - 1] == 0.0:
        end -= 1
    return c[:end] if end < len(c) else c


# the prior in single precision: its bins past z ~ 14 (about half of them) are exactly zero
_PRIOR32 = _trimmed(array("f", _PRIOR))
_PRIOR32_TOTAL = math.fsum(_PRIOR32)


class TailCalibrator:
    """Online upper-tail p-values of a statistic against its own history (see module doc).

    ``learn(z)`` adds a normal window's statistic; ``sf(z)`` is ``P(Z >= z)`` for a new one.
    Learn only windows that are normal (not flagged), so that an incident does not teach the
    calibration that incidents are ordinary.
    """

    __slots__ = ("_c", "_total", "_w", "_n", "_fit")

    def __init__(self) -> None:
        # The bins' weights in one array of single-precision floats, up to the last bin with
        # any weight (those above are zero; it grows when a window lands there): a list of
        # Python floats held ~3 KiB per calibrator, all bins as doubles ~0.8 KiB, these
        # ~0.25 KiB (four calibrators per default detector: benchmarks/scale.py). A bin's
        # relative precision (6e-8) is far finer than the histogram's own resolution; the sums
        # below are done in doubles.
        self._c = array("f", _PRIOR32)
        # The total is the sum of the bins as they hold it (what each bin took after rounding),
        # not of the weights given: a p-value is a share of it, and a total a little below the
        # bins' sum gave p > 1 in the lowest bins, where "1.0: no opinion" means something.
        self._total = _PRIOR32_TOTAL
        self._w = 1.0  # weight of the next window (grows instead of decaying every bin)
        self._n = 0  # windows learnt
        self._fit: tuple[float, float, float, float, float] | None = None

    # -- state ------------------------------------------------------------------------------

    def to_state(self) -> list[Any]:
        # the empty top bins are left out (most of them, on most series); single precision:
        # exact as base64 of their bytes, a third of the JSON numbers' size
        return [self._n, self._w, self._total, pack_f32(_trimmed(self._c))]

    @classmethod
    def from_state(cls, state: Any) -> TailCalibrator:
        try:
            n, w, total, c = state
            c = unpack_f32(c)  # base64 text, or a list of numbers (states written before)
            c += [0.0] * (_N - len(c))
            n, w, total = int(n), float(w), float(total)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"malformed calibration state: {exc!r}") from exc
        if len(c) != _N or not all(math.isfinite(x) and x >= 0.0 for x in [*c, w, total]) or w <= 0.0:
            raise ValueError("calibration state does not fit")
        if w > _RESCALE:  # written with double bins (before _RESCALE was lowered for floats)
            c = [x / w for x in c]
            total /= w
            w = 1.0
        bins = _trimmed(array("f", c))
        if not all(math.isfinite(x) for x in bins) or total > 3e38:
            raise ValueError("calibration state does not fit single-precision bins")
        # The total is what the bins hold (see __init__). One written with these bins agrees with
        # their sum to the last few bits and is kept as written (a round trip scores the same);
        # one written with double bins, now rounded, is replaced by their sum.
        held = math.fsum(bins)
        if abs(total - held) > 1e-12 * held:
            total = held
        self = cls()
        self._n, self._w, self._total, self._c = n, w, total, bins
        return self

    @property
    def n(self) -> int:
        """Windows learnt."""
        return self._n

    # -- learning ---------------------------------------------------------------------------

    def learn(self, z: float, weight: float = 1.0) -> None:
        """Add one normal window's statistic (``-inf``: the lowest possible, e.g. no spend).

        ``weight`` (0 to 1) counts the window as that fraction of one: for a window learnt late
        and with less confidence (a short burst, see ``Combined``'s ``burst_weight``).
        """
        if z != z:  # NaN: nothing to learn
            return
        w = self._w
        i = _bin(z)
        c = self._c
        if i >= len(c):
            # the bins up to it, empty; exactly sized (frombytes over-allocates ~6 % and 6 bins,
            # in each of a detector's calibrators, for every watched series)
            c = self._c = c + array("f", [0.0]) * (i + 1 - len(c))
        old = c[i]
        c[i] = old + w * weight
        self._total += c[i] - old  # what the bin took (exact in a double)
        self._n += 1
        # Exponential forgetting from the start, not an average that turns into one: a model
        # whose own scale is still settling (its first day) should not weigh on its scores for
        # weeks.
        w *= _DECAY
        if w > _RESCALE:
            for i in range(len(c)):
                c[i] /= w
            self._total = math.fsum(c)
            w = 1.0
        self._w = w
        self._fit = None

    def learn_repeat(self, z: float, k: int) -> None:
        """``learn(z)`` ``k`` times (a run of windows with the same statistic: a model's empty
        windows), to the bit: the same additions in the same order, without the calls."""
        if k <= 0 or z != z:
            return
        i = _bin(z)
        c = self._c
        if i >= len(c):
            c = self._c = c + array("f", [0.0]) * (i + 1 - len(c))
        w, total = self._w, self._total
        for _ in range(k):
            old = c[i]
            c[i] = old + w  # (learn's w * weight, at weight 1.0: the same double)
            total += c[i] - old
            w *= _DECAY
            if w > _RESCALE:
                for j in range(len(c)):
                    c[j] /= w
                total = math.fsum(c)
                w = 1.0
        self._w, self._total = w, total
        self._n += k
        self._fit = None

    # -- p-values ---------------------------------------------------------------------------

    def sf(self, z: float) -> float:
        """Estimated ``P(Z >= z)`` under the series' own history; 1.0 for ``-inf``."""
        if z != z:
            return 1.0
        v = math.asinh(z)
        if v < _LO:
            return 1.0
        c, total = self._c, self._total
        unit = self._w / _DECAY  # the weight of one recent window
        if v < _HI:
            i = 1 + int((v - _LO) / _WIDTH)
            upper = _LO + _WIDTH * i  # bin i covers [upper - WIDTH, upper) in asinh(z)
            above = sum(c[i + 1 :])  # (bins past the array's end are empty)
            if i < len(c):
                above += c[i] * (upper - v) / _WIDTH
            if above >= _K_MIN * unit:
                return above / total
        e0, _s0, er, sr, a_b = self._tail()
        if er >= _HI_Z and z > er:
            # A good share of the history lies beyond the bins (a statistic that is often
            # huge): no shape to fit out there, so a Pareto tail of index 1 -- heavy, never 0.
            return float(sr * er / z)
        a, shape = a_b if a_b is not None else (_DEFAULT_A, _DEFAULT_C)
        if z <= er:  # cannot happen with a consistent fit; keep the result monotone anyway
            return float(sr)
        x, xr = z - e0, er - e0
        return float(sr * math.exp(-a * (x**shape - xr**shape)))

    def _unit(self) -> float:
        """The weight of one recent window in the histogram."""
        return self._w / _DECAY

    def _tail(self) -> Any:
        """(start edge, its sf, last reliable edge, its sf, (a, b)) -- cached until ``learn``."""
        fit = self._fit
        if fit is not None:
            return fit
        c: Any = self._c
        if len(c) < _N:
            c = c.tolist() + [0.0] * (_N - len(c))
        total = self._total
        unit = self._w / _DECAY
        # mass above each edge e_k = LO + WIDTH * k, k = 0.._NBINS (edge k is bin k's upper one)
        above = [0.0] * (_NBINS + 1)
        acc = c[_N - 1]
        for k in range(_NBINS, -1, -1):
            above[k] = acc
            acc += c[k]
        k_rel = 0
        for k in range(_NBINS + 1):
            if above[k] >= _K_MIN * unit:
                k_rel = k
            else:
                break
        k0 = 0
        for k in range(_NBINS + 1):
            if above[k] <= _TAIL_START * total:
                k0 = k
                break
        else:
            k0 = _NBINS
        if k0 > k_rel:
            k0 = k_rel
        s0 = above[k0] / total
        sr = above[k_rel] / total
        e0, er = math.sinh(_LO + _WIDTH * k0), math.sinh(_LO + _WIDTH * k_rel)
        ab: Any = None
        if k_rel - k0 >= 2 and s0 > 0.0:
            # Weighted least squares of log(-log(S_k / S_0)) = log a + c log x: a Weibull-type
            # tail, exp(-a x**c), which spans heavy (c < 1), exponential (c = 1) and Gaussian-like
            # (c = 2) tails and is monotone for any a, c > 0. Weights ~ windows above the edge.
            sw = swx = swy = swxx = swxy = 0.0
            for k in range(k0 + 1, k_rel + 1):
                ratio = above[k] / above[k0]
                if ratio >= 1.0:
                    continue
                lx = math.log(math.sinh(_LO + _WIDTH * k) - e0)
                ly = math.log(-math.log(ratio))
                wt = above[k] / unit
                sw += wt
                swx += wt * lx
                swy += wt * ly
                swxx += wt * lx * lx
                swxy += wt * lx * ly
            den = sw * swxx - swx * swx
            if sw > 0.0 and den > 1e-12 * sw * sw:
                shape = (sw * swxy - swx * swy) / den
                shape = _MIN_C if shape < _MIN_C else _MAX_C if shape > _MAX_C else shape
                la = (swy - shape * swx) / sw
                ab = (math.exp(la), shape)
        fit = (e0, s0, er, sr, ab)
        self._fit = fit
        return fit


# LevelSurprise: windows its mean and variance remember (as the calibrator's histogram: two
# days of 1-minute windows), windows before it has an opinion, and the weight of a window in
# the recent level that ``rebase`` adopts (about the last three windows: on-call answers "new
# normal" minutes into a shift, when a longer memory still holds the old level).
_LEVEL_MEMORY = 2880
_LEVEL_WARMUP = 30
_LEVEL_RECENT_W = 0.5


class LevelSurprise:
    """How surprising a value is in either direction against the series' recent level: a
    calibrated two-sided p-value, for a score that means "how unusual is this window".

    The models judge spend *above* what they expect (what an alert is about) and do not learn
    what they flag; a score that ranks windows across series wants more: a collapse is
    surprising too, and a level that has held for a while is less news with every window.
    This keeps an exponentially weighted mean and variance of the value (on its own scale,
    so zero and negative values count) over about ``_LEVEL_MEMORY`` windows, learns every
    window, flagged or not, and turns ``|value - mean| / sd`` into an upper-tail p-value with
    a :class:`TailCalibrator` fed the same statistic of every earlier window. A step is
    surprising when it comes and fades as the mean and variance take it in; a series that
    keeps moving keeps its statistic high. Not seasonal: pair it with a model that is (the
    combiner takes the smaller p-value of the two).

    Use it for scores, not alerts: it neither knows the time of day nor money.

    >>> import random
    >>> rng = random.Random(2)
    >>> lv = LevelSurprise()
    >>> for _ in range(3000):
    ...     lv.learn(10.0 + rng.gauss(0.0, 1.0))
    >>> lv.sf(10.5) > 0.5, lv.sf(4.0) < 1e-3, lv.sf(16.0) < 1e-3, lv.sf(20.0) < lv.sf(16.0)
    (True, True, True, True)
    """

    __slots__ = ("_mean", "_var", "_n", "_recent", "_cal")

    def __init__(self) -> None:
        self._mean = 0.0
        self._var = 0.0
        self._n = 0
        self._recent = 0.0
        self._cal = TailCalibrator()

    def to_state(self) -> list[Any]:
        return [self._mean, self._var, self._n, self._recent, self._cal.to_state()]

    @classmethod
    def from_state(cls, state: Any) -> LevelSurprise:
        try:
            mean, var, n, recent, cal = state
            mean, var, n, recent = float(mean), float(var), int(n), float(recent)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"malformed level state: {exc!r}") from exc
        if not all(math.isfinite(x) for x in (mean, var, recent)) or var < 0.0 or n < 0:
            raise ValueError("level state does not fit")
        self = cls()
        self._mean, self._var, self._n, self._recent = mean, var, n, recent
        self._cal = TailCalibrator.from_state(cal)
        return self

    def _stat(self, x: float) -> float:
        d = x - self._mean
        d = d if d >= 0.0 else -d
        if d == 0.0:
            return 0.0
        sd = math.sqrt(self._var)
        # a series without noise (a constant, a square wave): a change of a few percent of
        # its level is not worth a z of millions (as the models' STAT_FLOOR)
        floor = STAT_FLOOR * abs(self._mean)
        if sd < floor:
            sd = floor
        return d / sd if sd > 0.0 else 1e6

    def sf(self, x: float) -> float:
        """Two-sided p-value of ``x`` against the level so far (1.0 while warming up)."""
        if self._n < _LEVEL_WARMUP:
            return 1.0
        return self._cal.sf(self._stat(x))

    def learn(self, x: float) -> None:
        """Take in one window's value (every window: the level follows what happens)."""
        n = self._n
        if n == 0:
            self._mean, self._recent, self._n = x, x, 1
            return
        if n >= _LEVEL_WARMUP:
            self._cal.learn(self._stat(x))
        n += 1
        self._n = n
        w = 1.0 / n
        if w < 1.0 / _LEVEL_MEMORY:
            w = 1.0 / _LEVEL_MEMORY
        d = x - self._mean
        self._mean += w * d
        self._var = (1.0 - w) * (self._var + w * d * d)
        self._recent += _LEVEL_RECENT_W * (x - self._recent)

    def rebase(self) -> None:
        """Adopt the recent level (about the last three windows) as the mean at once."""
        if self._n:
            self._mean = self._recent


def _bin(z: float) -> int:
    v = math.asinh(z) if z > -1e300 else -1e300
    if v < _LO:
        return 0
    if v >= _HI:
        return _N - 1
    return 1 + int((v - _LO) / _WIDTH)


def combine_min_p(ps: list[float]) -> float:
    """Bonferroni's minimum p: ``min(1, k * min(p))`` for ``k`` p-values (1.0 for none)."""
    if not ps:
        return 1.0
    p = min(ps) * len(ps)
    return p if p < 1.0 else 1.0


def z_of_p(p: float) -> float:
    """A monotone, roughly standard-normal-scaled statistic of a p-value: sqrt(-2 log p)."""
    if p >= 1.0:
        return 0.0
    if p <= 0.0:
        return 40.0 + 1e-3  # beyond a double's p; still above every finite p's value
    return math.sqrt(-2.0 * math.log(p))


_PHI = 0.6180339887498949


def jitter(ts: float, window_seconds: float) -> float:
    """A deterministic stand-in for a uniform random number in [0, 1), from the window's end.

    For discrete statistics (request counts): a randomised p-value, ``P(X > k) + U P(X = k)``,
    is uniform under the model where ``P(X >= k)`` is not; taking U from the window's index
    along the golden-ratio sequence keeps "same inputs, same scores".
    """
    return (ts / window_seconds * _PHI) % 1.0
