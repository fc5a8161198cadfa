"""The combiner: several detectors side by side, and an alert only for money that matters."""

from __future__ import annotations

import math
from array import array
from collections.abc import Sequence
from typing import Any

from detectors.base import Detector, Verdict, require
from detectors.calibration import LevelSurprise
from detectors.compact import shared
from detectors.sparse import SparseEvidence

__all__ = ["Combined", "gate_step", "is_material", "materiality"]

# Components whose flag means "a sustained rise" or "too many requests" rather than "this
# window's spend is extreme": the low-volume guard does not apply to them.
_SUSTAINED = frozenset({"changepoint"})
_COUNT = frozenset({"counts"})

# Memory of the usual spend per window (for the materiality gate), in seconds of windows.
_USUAL_MEMORY_S = 7 * 86400.0
# The money gate's baseline (gate_on_mean): the mean spend the models' expected value stands for,
# expected times the mean of observed / expected over normal windows with spend (about a week's
# memory, like the usual spend). The components' expected value is a typical (log-scale) value,
# which on a heavy-tailed series sits far below the mean: every ordinary burst is then "dollars
# over expected". A window's ratio counts up to _MEAN_RATIO_CAP, and the correction applies once
# _MEAN_MIN_N windows taught it.
_MEAN_RATIO_CAP = 100.0
_MEAN_MIN_N = 60
# Memory of the recent spend per window (normal windows): the relative gate is minutes of the
# window's expected spend or of this, whichever is lower -- a young series' expected spend at an
# hour it has not seen yet is an average of other hours (the demo's three hours of history
# before an evening or a weekend night are two to three times its current level).
_RECENT_MEMORY_S = 1800.0

# New normal: a shift's run of surprising windows ends after this long without one, and its
# level is stable when an hour's mean log ratio is within log(1.25) of the hour before's.
_SHIFT_GAP_S = 900.0
_STABLE_LOG = math.log(1.25)
# A shifted level within this factor of the series' usual spend (a week's average) is a level
# it has had before, whatever the ratio to a baseline that learnt a quiet spell.
_USUAL_LEVEL = 1.5

# The combined p-value: where the dependence between the models' p-values is measured (the
# share of normal windows with min p <= _DEP_Q), a prior of that many windows at Bonferroni's
# k * _DEP_Q, and the weight of a window once the estimate is warm (about two days of
# 1-minute windows).
_DEP_Q = 0.01
_DEP_PRIOR = 200
_DEP_W = 1.0 / 2880
# The score (not the alert): inside a run of windows the models found surprising (the window
# before had a combined p of at most _DEP_Q) the models' p-value is squeezed into
# [_RUN_P / 2, _RUN_P): the run was news when it started, and whether its level still is, in either
# direction, is the level statistic's to say. _RUN_P * 2 <= 1 % keeps an alerting window's
# score >= 0.99.
_RUN_P = 0.005

# Recurrence memory: per quarter hour of the (UTC) day, which of the last days had a surprising
# window in it, as bits of an int (bit 0: the current day).
_SLOT_SECONDS = 900
_SLOTS_PER_DAY = 86400 // _SLOT_SECONDS
_RECUR_DAYS = 7
_RECUR_MASK = (1 << (_RECUR_DAYS + 1)) - 1
# A slot's mask holds two: the low byte the days a model noticed a window there (its own bound,
# or a sustained-rise model's in a window the models found surprising together), the high
# byte the days only a sustained-rise model flagged one ("a level above the hour-of-day level
# for a while", at a calibrated p of about 1 %). Those make a level routine at that time of day,
# not a window a spike-type model flags, with ``level_marks_apart`` (docs/detection-log.md, the
# key leak of 2026-12-07); without it the two count alike.
_LEVEL_SHIFT = 8


def _component_models(components: tuple[str, ...] | list[str], params: dict[str, dict[str, Any]],
                      window_seconds: float) -> list[Detector]:
    """A detector per component name, of the registry's class, with its ``params`` (and the
    combiner's ``window_seconds`` where it takes one); a ValueError for an unknown name or
    parameter."""
    from detectors import DETECTORS  # the registry imports this module

    models: list[Detector] = []
    for name in components:
        cls = DETECTORS.get(name)
        if cls is None or cls is Combined:
            known = ", ".join(sorted(n for n in DETECTORS if n != Combined.name))
            raise ValueError(f"Combined: unknown component {name!r}; known: {known}")
        kwargs = dict(params.get(name) or {})
        if "window_seconds" in cls._param_names():
            kwargs.setdefault("window_seconds", window_seconds)
        bad = sorted(set(kwargs) - set(cls._param_names()))
        if bad:
            raise ValueError(
                f"Combined: component {name!r} has no parameter(s) {', '.join(bad)}; "
                f"its parameters: {', '.join(cls._param_names())}"
            )
        models.append(cls(**kwargs))
    return models


class Combined(Detector):
    r"""Runs several detectors on each window; alerts on statistical surprise *and* material impact.

    Each window goes to every component (``components``, registry names; the first one gives
    the expected spend). Their calibrated p-values are combined by their minimum times a
    factor between 1 and ``k`` (Bonferroni's ``k * min p`` when the models are independent):
    how often that minimum is 1 % or less on the series' own normal windows, per 1 %: the
    models' p, calibrated on every series and for every mix of models. The window is
    **surprising** when ``1 -`` that p reaches ``score_threshold`` and its spend is above
    expected. In a window with fewer than ``min_requests`` requests the spike-type models'
    evidence only counts when the ``counts`` component (a tail test on request counts) flags
    the window too, and a sustained-rise model's only once it has flagged -- three calls at
    night are not "infinite sigma", and one long-context call is not an incident.

    The verdict's ``score`` (``1 - p``) answers a wider question, "how unusual is this window",
    in either direction: the models' p combined the same way with a two-sided, calibrated
    level statistic that learns every window (:class:`~detectors.calibration.LevelSurprise`),
    and inside a run of windows the models found surprising their p only counts down to about
    0.5 %: a collapse of spend scores high too, and a shift scores high when it comes and
    fades as it becomes the level, not for the hours until it is adopted. An alerting window
    still scores 0.99 or more; alerts stay about spend above expected.

    Surprise is not enough. Like AWS Cost Anomaly Detection's impact thresholds, the alert
    needs **material impact**: the excess over expected spend (over the mean spend that the
    expected value stands for, ``gate_on_mean``), summed over the incident so far
    (consecutive windows above expected since the first surprising one), must reach
    ``min_excess_pct`` percent of the expected spend over those windows and a dollar figure
    relative to what the series usually costs at that time, :meth:`materiality`:
    ``min_excess_minutes`` (10) minutes of the window's expected spend (or of its last half
    hour's, if lower: a young series' expectation for an hour it has not seen is an average of
    other hours), at least
    ``min_excess_usd`` ($2) -- $2 on a team that spends a few cents a minute at night, $10 on
    one that spends $1 a minute then, $350 on $50,000 a day. So an 8x spike alerts after about two
    minutes at any hour on any series above the floor, a 2x model switch after about ten, and a
    blip has to last to matter. One dollar figure cannot fit both ends, and a gate that scales with the
    daily total instead (``min_excess_root`` times the square root of the usual daily spend,
    off by default) is too high at night and on quiet days. Set ``min_excess_minutes: 0`` for a
    plain dollar gate (``min_excess_usd``). ``impact`` in the verdict is the running excess.

    A surprising window teaches no model, and so not the calibration of their p-values either;
    but a run of them that ends within ``burst_windows`` windows was a **burst**, part of
    the series' normal variation: its windows' statistics are learnt into the calibration when
    it ends (not into the baselines). A bursty series' calibration then knows its bursts, and
    an ordinary one is no longer p ~ 1e-10; a longer run is an incident and teaches nothing.
    Such a burst is learnt only once ``burst_gap`` (30) quiet windows follow it: runs closer
    together are the on-and-off windows of one incident (a model switch), and teach nothing.

    A surprise in a quarter hour of the day (UTC) that was also surprising (a component
    flagged it), give or take a quarter hour, on ``recurring_days`` of the previous seven days
    is **routine** -- a nightly batch, a daily report -- and neither alerts nor is kept from
    the models: they learn it, so it soon stops surprising them. A new nightly job therefore
    pages at most ``recurring_days`` times; the price is that an incident repeating at the
    same time of day for that many days becomes routine too. With ``level_marks_apart``, a day
    on which only the sustained-rise model flagged that quarter hour, in windows not surprising
    as a whole (a level above the hour-of-day level, at p ~ 1 %), counts for a level (a window
    no spike-type model flags), not for a window the spike-type models flag.

    What the models learn does not depend on the gate (the materiality and percentage, nor
    whether an alert fired): a surprising window teaches no component, and a component does
    not learn a window it flagged itself (``protect_anomaly``). So the gate can be swept on
    recorded verdicts without running the models again.

    **A new normal versus a runaway.** Protection is right for minutes and wrong for days: a
    shift that has lasted ``new_normal_after`` (3 h), whose level against expected is as high
    as the hour before and no higher (within 25 %), and which is at most
    ``max_new_normal_ratio`` (5) times expected (or back at about the series' usual spend), is
    adopted: every component
    ``rebase``\ s to it and the alert resolves. A level that keeps rising, or a loop burning at
    more than 5x, keeps alerting until it stops or someone calls ``rebase()`` ("expected, new
    normal").

    Parameters
    ----------
    window_seconds
        Length of the windows; passed to the components that take it.
    components
        Registry names of the models to run, first one giving ``expected``.
    component_params
        ``{name: {param: value}}`` for the components (a YAML section per model).
    score_threshold
        Score from which a window above expected is surprising (0.9999: p <= 1e-4).
    min_excess_usd
        Dollars over expected, summed over the incident so far, before it alerts: a floor under
        the relative gate, or the whole money gate with ``min_excess_minutes: 0``.
    min_excess_pct
        The same excess as a percentage of the expected spend over the incident's windows.
    min_excess_minutes
        The relative gate: the excess must reach this many minutes of the window's expected
        spend (what the series usually costs at that time of day and week); 0 turns it off.
    min_excess_root
        Another relative gate, off by default: this times the square root of the series' usual
        daily spend (dollars, learnt from its normal windows over about a week).
    min_requests
        Fewer requests than this in a window (when the count is known): a spike-type model
        needs the ``counts`` component's agreement.
    recurring_days
        Earlier days (of the last 7) with a surprise at the same time of day that make it
        routine; 0 turns the rule off.
    new_normal_after
        Seconds a shift (a run of surprising windows) must last before its level may become
        the new normal; 0 turns the rule off (``rebase()`` still works).
    max_new_normal_ratio
        A shift more than this many times expected is not adopted by itself (unless it is back
        at about the series' usual spend, a week's average): a loop that keeps burning keeps
        alerting.
    protect_anomaly
        Do not learn surprising windows into any component.
    gate_on_mean
        Count the money gate's excess (and the percentage) over the *mean* spend the expected
        value stands for: expected times the series' mean of observed / expected on its normal
        windows (about a week's memory). The models' expected value is a typical, log-scale
        value; on a bursty, heavy-tailed series it sits far below the mean, and every ordinary
        burst would count as dollars over expected. ``false``: over the expected value itself.
    burst_windows
        A run of surprising windows that ends within this many windows is a burst, not an
        incident: when it ends, its windows' statistics are learnt into the models' p-value
        calibration (never into their baselines), so that a bursty series' ordinary bursts
        stop scoring p ~ 1e-10 against a tail that never saw one (5); 0 turns it off.
    burst_gap
        A burst is learnt only once this many quiet windows have followed it; another
        surprising run before then makes both the on-and-off windows of one incident (a model
        switch, a loop that stutters), and the earlier one is dropped (30). 0: learnt when it
        ends, which loses incidents that come on and off (docs/detectors.md).
    burst_weight
        Each burst window counts as this fraction (0 to 1) of a window in the calibration.
    burst_recur, burst_recur_days
        A burst is learnt only on a series that has had at least ``burst_recur`` bursts before
        it, counted with exponential forgetting over ``burst_recur_days`` (7): a one-off
        burst-like incident stays rare. 0: every burst is learnt.

    sparse
        Run the sparse-series evidence (:class:`~detectors.sparse.SparseEvidence`, off): the
        spend of the last ``sparse_requests`` (20) expected requests, summed over as many
        windows as that takes (at most ``sparse_max_windows``, 240), against what they usually
        cost. Its p counts ``sparse_penalty`` (100) times, only where a window is expected to
        have fewer than ``min_requests`` requests, and in any window however few requests it
        has; it carries an incident's running excess through empty windows for ``sparse_gap``
        (15) windows after one with evidence of its own, and alerts only on such windows.
        Measured in docs/detection-log.md ("evidence over requests for sparse series").
    sparse_requests, sparse_max_windows, sparse_gap, sparse_penalty
        See ``sparse``.
    level_marks_apart
        The recurrence rule does not count, for a window a spike-type model (``seasonal``,
        ``counts``, the sparse evidence) flags, the days on which only the sustained-rise model
        flagged that quarter hour without a surprise (off: any model's flag counts for any
        window). Measured in docs/detection-log.md ("a level mark made it routine").

    Example: a team spending about $2 a minute (the gate: 10 minutes of it, $20). A burst to $6
    is surprising but not worth it; the burst to $40 that follows it alerts.

    >>> import numpy as np
    >>> rng = np.random.default_rng(1)
    >>> det = Combined(components=("seasonal",))
    >>> t0 = 1_704_067_200.0
    >>> for i in range(1, 2 * 1440):
    ...     _ = det.update(t0 + 60 * i, 2.0 * rng.lognormal(0, 0.1), count=40)
    >>> v = det.update(t0 + 60 * 2880, 6.0, count=120)
    >>> v.is_anomaly, v.score > 0.9999, round(v.impact), v.reason  # doctest: +ELLIPSIS
    (False, True, 4, 'seasonal: 3.0x the hour-of-day expected value ...; $4.00 over expected so far, alerts from $19.82 and 50%')
    >>> v = det.update(t0 + 60 * 2881, 40.0, count=800)
    >>> v.is_anomaly, round(v.excess), round(v.impact)
    (True, 38, 42)
    """

    # Slots, not an instance dict: with more than 30 attributes CPython gives up sharing the
    # dict's keys between instances, and each detector's dict then took ~1.6 KiB (one per
    # watched series: benchmarks/scale.py). An attribute left out still works (it goes
    # into a dict, made when first set), at that dict's cost.
    __slots__ = ("burst_gap", "burst_recur", "burst_recur_days", "burst_weight", "burst_windows",
        "component_params", "components", "gate_on_mean", "level_marks_apart", "max_new_normal_ratio", "min_excess_minutes",
        "min_excess_pct", "min_excess_root", "min_excess_usd", "min_requests", "new_normal_after",
        "protect_anomaly", "recurring_days", "score_threshold", "window_seconds", "_burst", "_burst_n",
        "_burst_quiet", "_burst_seen", "_burst_ts", "_count_index", "_dep", "_dep2", "_gate_in",
        "_level", "_mean_ratio", "_models", "_names", "_prev_p", "_recent", "_recent_min_n",
        "_recent_w", "_recur", "_recur_day", "_restarted", "_run_excess", "_run_expected", "_scored",
        "_shift", "_shift_min_n", "_shift_period", "_usual", "_usual_n", "_usual_w", "_last_ts",
        "sparse", "sparse_gap", "sparse_max_windows", "sparse_penalty", "sparse_requests", "_sparse",
        "_sparse_fresh", "_sparse_held")

    name = "combined"
    # An anomaly needs the money gate's excess over the mean spend (``g_excess > 0``): never
    # with zero spend, which is at most the (non-negative) expected spend.
    quiet_at_zero = True

    def __init__(
        self,
        window_seconds: float = 60.0,
        components: tuple[str, ...] | list[str] = ("seasonal", "changepoint", "counts"),
        component_params: dict[str, dict[str, Any]] | None = None,
        score_threshold: float = 0.9999,
        min_excess_usd: float = 2.0,
        min_excess_pct: float = 50.0,
        min_excess_root: float = 0.0,
        min_excess_minutes: float = 10.0,
        min_requests: float = 5.0,
        recurring_days: int = 2,
        new_normal_after: float = 3 * 3600.0,
        max_new_normal_ratio: float = 5.0,
        protect_anomaly: bool = True,
        gate_on_mean: bool = True,
        burst_windows: int = 5,
        burst_weight: float = 1.0,
        burst_recur: float = 0.0,
        burst_recur_days: float = 7.0,
        burst_gap: int = 30,
        sparse: bool = False,
        sparse_requests: float = 20.0,
        sparse_max_windows: float = 240.0,
        sparse_gap: int = 15,
        sparse_penalty: float = 100.0,
        level_marks_apart: bool = False,
    ) -> None:
        self.window_seconds = window_seconds
        self.components = components
        self.component_params = component_params
        self.score_threshold = score_threshold
        self.min_excess_usd = min_excess_usd
        self.min_excess_pct = min_excess_pct
        self.min_excess_root = min_excess_root
        self.min_excess_minutes = min_excess_minutes
        self.min_requests = min_requests
        self.recurring_days = recurring_days
        self.new_normal_after = new_normal_after
        self.max_new_normal_ratio = max_new_normal_ratio
        self.protect_anomaly = protect_anomaly
        self.gate_on_mean = gate_on_mean
        self.burst_windows = burst_windows
        self.burst_weight = burst_weight
        self.burst_recur = burst_recur
        self.burst_recur_days = burst_recur_days
        self.burst_gap = burst_gap
        self.sparse = sparse
        self.sparse_requests = sparse_requests
        self.sparse_max_windows = sparse_max_windows
        self.sparse_gap = sparse_gap
        self.sparse_penalty = sparse_penalty
        self.level_marks_apart = level_marks_apart
        self._check_params()
        params = component_params or {}
        require("Combined", isinstance(params, dict), "component_params must be a mapping", params)
        unknown = sorted(set(params) - set(components))
        require("Combined", not unknown, f"component_params for models not in components {unknown}", params)
        self._models: list[Detector] = _component_models(components, params, window_seconds)
        self._names = tuple(components)
        self._count_index = next((i for i, n in enumerate(self._names) if n in _COUNT), None)
        # The component verdicts of the window scored last, so that learning it does not score
        # it a second time (update scores, then learns the same window).
        self._scored: tuple[Any, ...] | None = None
        # (derived floats: one object for all the clones, detectors.compact)
        self._usual_w = shared(min(1.0, window_seconds / _USUAL_MEMORY_S))
        self._recent_w = shared(min(1.0, window_seconds / _RECENT_MEMORY_S))
        self._recent_min_n = max(1, int(_RECENT_MEMORY_S / window_seconds))
        # A shift's level is compared period by period: a third of new_normal_after (an hour by
        # default), and a period's level counts once it has a third of its windows.
        self._shift_period = shared(new_normal_after / 3.0 if new_normal_after > 0 else 3600.0)
        self._shift_min_n = max(1, int(self._shift_period / window_seconds / 3))
        super().__init__()

    def _check_params(self) -> None:
        """Each parameter in its range (a ValueError naming the first that is not)."""
        require("Combined", isinstance(self.burst_windows, int) and self.burst_windows >= 0,
                "burst_windows must be an integer >= 0 (0: off)", self.burst_windows)
        require("Combined", 0.0 < self.burst_weight <= 1.0, "burst_weight must be in (0, 1]", self.burst_weight)
        require("Combined", self.burst_recur >= 0.0, "burst_recur must be >= 0 (0: off)", self.burst_recur)
        require("Combined", isinstance(self.sparse, bool), "sparse must be a bool", self.sparse)
        require("Combined", isinstance(self.level_marks_apart, bool), "level_marks_apart must be a bool",
                self.level_marks_apart)
        require("Combined", self.sparse_requests > 0, "sparse_requests must be > 0", self.sparse_requests)
        require("Combined", self.sparse_max_windows >= 1, "sparse_max_windows must be >= 1", self.sparse_max_windows)
        require("Combined", isinstance(self.sparse_gap, int) and self.sparse_gap >= 0, "sparse_gap must be an integer >= 0",
                self.sparse_gap)
        require("Combined", self.sparse_penalty >= 1, "sparse_penalty must be >= 1", self.sparse_penalty)
        require("Combined", isinstance(self.burst_gap, int) and self.burst_gap >= 0,
                "burst_gap must be an integer >= 0", self.burst_gap)
        require("Combined", self.burst_recur_days > 0.0, "burst_recur_days must be > 0", self.burst_recur_days)
        require("Combined", self.window_seconds > 0, "window_seconds must be > 0", self.window_seconds)
        require(
            "Combined",
            isinstance(self.components, (tuple, list)) and len(self.components) > 0,
            "components must be a non-empty list of detector names",
            self.components,
        )
        require("Combined", len(set(self.components)) == len(self.components), "components must not repeat", self.components)
        require("Combined", 0 < self.score_threshold < 1, "score_threshold must be in (0, 1)", self.score_threshold)
        require("Combined", self.min_excess_usd >= 0, "min_excess_usd must be >= 0", self.min_excess_usd)
        require("Combined", self.min_excess_root >= 0, "min_excess_root must be >= 0", self.min_excess_root)
        require("Combined", self.min_excess_minutes >= 0, "min_excess_minutes must be >= 0", self.min_excess_minutes)
        require("Combined", self.min_excess_pct >= 0, "min_excess_pct must be >= 0", self.min_excess_pct)
        require("Combined", self.min_requests >= 0, "min_requests must be >= 0", self.min_requests)
        require("Combined", self.new_normal_after >= 0, "new_normal_after must be >= 0 (0: off)", self.new_normal_after)
        require("Combined", self.max_new_normal_ratio > 1, "max_new_normal_ratio must be > 1", self.max_new_normal_ratio)
        require(
            "Combined",
            isinstance(self.recurring_days, int) and 0 <= self.recurring_days <= _RECUR_DAYS,
            f"recurring_days must be an integer in [0, {_RECUR_DAYS}]",
            self.recurring_days,
        )

    @classmethod
    def _unit_test_params(cls) -> dict[str, Any]:
        # The contract's series spend about $2 a minute; its 8x spike is worth ~$14: a flat
        # $5 gate (the relative one would want ~$30 of a ~$2,900-a-day series).
        return {"min_excess_usd": 5.0, "min_excess_minutes": 0.0}

    # -- state ------------------------------------------------------------------------------

    def _reset(self) -> None:
        for m in self._models:
            m.reset()
        self._run_excess = 0.0  # excess over expected since the incident's first surprising window
        self._run_expected = 0.0  # expected spend over the same windows
        self._recur_day = 0  # the day (epoch day) bit 0 of the recurrence masks stands for
        # one byte per quarter hour (the masks hold _RECUR_DAYS + 1 bits), not a list of ints
        self._recur = array("H", bytes(2 * _SLOTS_PER_DAY))
        self._scored = None
        self._gate_in: tuple[bool, float, float, float, bool, float] | None = None  # not state
        self._restarted = False  # the incident's run was reset by a rebase before this window
        # How often the smallest component p-value is at most _DEP_Q on normal windows,
        # exponentially weighted, with a prior of _DEP_PRIOR windows at k * _DEP_Q (Bonferroni).
        self._dep = [_DEP_Q * self._opinions(), float(_DEP_PRIOR)]
        # The sparse-series evidence (``sparse``), and the statistic of the window learnt last
        # that it did not calibrate (for the burst rule).
        self._sparse = (SparseEvidence(self.window_seconds, self.sparse_requests, self.sparse_max_windows)
                        if self.sparse else None)
        self._sparse_held: float | None = None
        self._sparse_fresh = -math.inf  # end of the last window that added evidence of its own
        self._usual = 0.0  # usual spend per window (exponentially weighted, normal windows)
        self._usual_n = 0
        self._recent = [0.0, 0]  # recent spend per window (the last half hour of normal windows), n
        self._mean_ratio = [1.0, 0]  # mean observed / expected on normal windows with spend, n
        # The shift under way: ts of its first surprising window (None: none), of its latest,
        # the hour of the shift being summed, the sum and number of log(observed / expected)
        # in it, the previous hour's mean (None until it had enough windows), and the sum of
        # the observed spend in the hour.
        self._shift: list[Any] = [None, None, 0, 0.0, 0, None, 0.0]
        # The score's second opinion (two-sided, learns every window), the dependence between
        # it and the models' p (as _dep), and the models' combined p in the window before.
        self._level = LevelSurprise()
        self._dep2 = [2 * _DEP_Q, float(_DEP_PRIOR)]
        self._prev_p = 1.0
        # The surprising run under way: its length in windows, and the calibration statistics
        # its windows did not teach the models ([model index, statistic], while it is short).
        self._burst_n = 0
        self._burst: list[list[float]] = []
        # Bursts seen so far, forgotten exponentially over ``burst_recur_days``, and when the
        # last one ended (``burst_recur``).
        self._burst_seen = 0.0
        self._burst_ts = 0.0
        self._burst_quiet = 0  # quiet windows since the last run ended (``burst_gap``)

    def _opinions(self) -> int:
        """How many p-values the combined one is the minimum of, at most."""
        return len(self._models) + (1 if self.sparse else 0)

    def _get_state(self) -> dict[str, Any]:
        sparse = {} if self._sparse is None else {"sparse": [self._sparse.to_state(), self._sparse_fresh]}
        return {
            **sparse,
            "models": [m.to_state() for m in self._models],
            "run": [self._run_excess, self._run_expected],
            "usual": [self._usual, self._usual_n],
            "recent": list(self._recent),
            "mean_ratio": list(self._mean_ratio),
            "dep": list(self._dep),
            "shift": list(self._shift),
            "recur_day": self._recur_day,
            "recur": list(self._recur),
            "score": [self._level.to_state(), list(self._dep2), self._prev_p],
            "burst": [self._burst_n, [list(x) for x in self._burst], self._burst_seen, self._burst_ts, self._burst_quiet],
        }

    def _set_state(self, state: dict[str, Any]) -> None:
        try:
            models = state["models"]
            run = [float(x) for x in state["run"]]
            recur_day = int(state["recur_day"])
            recur = [int(x) for x in state["recur"]]
            # (states written before the relative gate and calibrated scores have neither)
            usual, usual_n = (float(state["usual"][0]), int(state["usual"][1])) if "usual" in state else (0.0, 0)
            recent = [float(state["recent"][0]), int(state["recent"][1])] if "recent" in state else [0.0, 0]
            # (states written before the mean-based gate have none: learnt afresh)
            mean_ratio = ([float(state["mean_ratio"][0]), int(state["mean_ratio"][1])] if "mean_ratio" in state
                          else [1.0, 0])
            dep = [float(x) for x in state["dep"]] if "dep" in state else [_DEP_Q * self._opinions(), _DEP_PRIOR]
            shift = list(state.get("shift", (None, None, 0, 0.0, 0, None, 0.0)))
            if len(shift) != 7:
                raise ValueError(f"shift tracker has {len(shift)} fields, not 7")
            shift = [None if shift[0] is None else float(shift[0]), None if shift[1] is None else float(shift[1]),
                     int(shift[2]), float(shift[3]), int(shift[4]), None if shift[5] is None else float(shift[5]),
                     float(shift[6])]
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"malformed combined state: {exc!r}") from exc
        if not isinstance(models, list) or len(models) != len(self._models):
            raise ValueError(f"combined state holds {len(models) if isinstance(models, list) else '?'} "
                             f"models, this detector runs {len(self._models)}")
        if len(run) != 2 or not all(math.isfinite(x) for x in run):
            raise ValueError("combined state: bad run totals")
        if len(recur) != _SLOTS_PER_DAY or not all(0 <= x <= _RECUR_MASK | _RECUR_MASK << _LEVEL_SHIFT
                                                   for x in recur):
            raise ValueError("combined state: bad recurrence masks")
        for m, s in zip(self._models, models, strict=True):
            m.load_state(s)
        self._run_excess, self._run_expected = run
        self._recur_day, self._recur = recur_day, array("H", recur)
        if not math.isfinite(usual) or not math.isfinite(recent[0]):
            raise ValueError("combined state: bad usual spend")
        self._recent = recent
        if not (math.isfinite(mean_ratio[0]) and mean_ratio[0] > 0.0 and mean_ratio[1] >= 0):
            raise ValueError("combined state: bad mean ratio")
        self._mean_ratio = mean_ratio
        if len(dep) != 2 or not all(math.isfinite(x) and x >= 0.0 for x in dep):
            raise ValueError("combined state: bad dependence estimate")
        self._usual, self._usual_n, self._dep = usual, usual_n, dep
        self._shift = shift
        # (states written before the two-sided score have none: start it afresh)
        try:
            if "score" in state:
                lv, dep2, prev_p = state["score"]
                level = LevelSurprise.from_state(lv)
                dep2 = [float(x) for x in dep2]
                prev_p = float(prev_p)
            else:
                level, dep2, prev_p = LevelSurprise(), [2 * _DEP_Q, float(_DEP_PRIOR)], 1.0
        except (TypeError, ValueError) as exc:
            raise ValueError(f"malformed combined state: {exc!r}") from exc
        if len(dep2) != 2 or not all(math.isfinite(x) and x >= 0.0 for x in [*dep2, prev_p]):
            raise ValueError("combined state: bad score state")
        self._level, self._dep2, self._prev_p = level, dep2, prev_p
        # (states written before the burst rule have none)
        try:
            burst_n, burst, *seen = state.get("burst", (0, []))
            burst_n = int(burst_n)
            burst = [[int(i), float(x)] for i, x in burst]
            seen_n, seen_ts = (float(seen[0]), float(seen[1])) if seen else (0.0, 0.0)
            quiet = int(seen[2]) if len(seen) > 2 else 0
        except (TypeError, ValueError, IndexError) as exc:
            raise ValueError(f"malformed combined state: {exc!r}") from exc
        if (
            burst_n < 0
            or not all((0 if self._sparse is None else -1) <= i < len(self._models) for i, _ in burst)
            or not (math.isfinite(seen_n) and seen_n >= 0.0 and math.isfinite(seen_ts) and quiet >= 0)
        ):
            raise ValueError("combined state: bad burst")
        self._burst_n, self._burst = burst_n, burst
        self._burst_seen, self._burst_ts, self._burst_quiet = seen_n, seen_ts, quiet
        self._load_sparse(state)
        self._scored = None

    def _load_sparse(self, state: dict[str, Any]) -> None:
        # (states written before the sparse evidence, or with it off, have none: learnt afresh)
        self._sparse_held = None
        self._sparse_fresh = -math.inf
        if self._sparse is None:
            return
        if "sparse" not in state:
            self._sparse = SparseEvidence(self.window_seconds, self.sparse_requests, self.sparse_max_windows)
            return
        try:
            sp_state, fresh = state["sparse"]
            fresh = float(fresh)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"malformed combined state: {exc!r}") from exc
        self._sparse = SparseEvidence.from_state(sp_state, self.window_seconds, self.sparse_requests,
                                                 self.sparse_max_windows)
        self._sparse_fresh = fresh

    # -- model ------------------------------------------------------------------------------

    def _component_verdicts(self, ts: float, value: float, count: float | None) -> list[Verdict]:
        return [m.score_one(ts, value, count) for m in self._models]

    def _day_slot(self, ts: float) -> tuple[int, int]:
        start = ts - self.window_seconds
        return int(start // 86400), int((start % 86400) // _SLOT_SECONDS)

    def _recurs(self, day: int, slot: int, spike: bool = False) -> bool:
        """Whether this quarter hour (or a neighbour: jobs start a few minutes early or late)
        was surprising on at least ``recurring_days`` of the previous days (for a window a
        spike-type model flagged, ``spike``: not counting the days a sustained-rise model's flag
        alone marked)."""
        if not self.recurring_days:
            return False
        shift = day - self._recur_day  # bit k of a mask stands for day recur_day - k
        if shift < 0 or shift > _RECUR_DAYS:
            return False
        seen = 0
        for s in (slot - 1, slot, slot + 1):
            seen |= self._recur[s % _SLOTS_PER_DAY]
        seen = (seen & _RECUR_MASK) if spike else (seen | seen >> _LEVEL_SHIFT) & _RECUR_MASK
        # earlier days only: days recur_day - k with k >= max(0, 1 - shift); and within the window
        seen = (seen << shift) & _RECUR_MASK & ~1
        return seen.bit_count() >= self.recurring_days

    def _remember(self, day: int, slot: int, level: bool = False) -> None:
        shift = day - self._recur_day
        if shift > 0:
            masks = self._recur
            for i in range(_SLOTS_PER_DAY):
                m = masks[i]
                masks[i] = ((m & _RECUR_MASK) << shift) & _RECUR_MASK | (
                    ((m >> _LEVEL_SHIFT) << shift) & _RECUR_MASK) << _LEVEL_SHIFT
            self._recur_day = day
        elif shift < 0:
            return  # an old window (replayed out of order): not worth remembering
        self._recur[slot] |= (1 << _LEVEL_SHIFT) if level else 1

    def score_one(self, ts: float, value: float, count: float | None = None) -> Verdict:
        if not (math.isfinite(ts) and math.isfinite(value)):
            raise ValueError(f"ts and value must be finite, got ts={ts!r} value={value!r}")
        if count is not None and not (math.isfinite(count) and count >= 0):
            raise ValueError(f"count must be a finite number >= 0, got {count!r}")
        vs = self._component_verdicts(ts, value, count)
        expected = vs[0].expected
        excess = value - expected

        # Which components' evidence counts: in a window with fewer than min_requests
        # requests a spike-type model's only counts when the request count is unusual too.
        low_volume = count is not None and count < self.min_requests
        counts_agree = self._count_index is not None and vs[self._count_index].is_anomaly
        # (A sustained-rise model's evidence counts there only once it has flagged: its score
        # also moves with the window's own residual.)
        # Without a request count (an analyst's spend-only series) the count model's pseudo-count
        # is the spend itself: no evidence of its own, so it does not vote.
        eligible = [
            i for i, (name, v) in enumerate(zip(self._names, vs, strict=True))
            if (not low_volume or counts_agree or name in _COUNT or (name in _SUSTAINED and v.is_anomaly))
            and not (count is None and name in _COUNT and len(vs) > 1)
        ]
        # The models' own flags (their bounds): what the recurrence memory and each model's
        # protection go by, independent of this detector's gate.
        flagged = [i for i in eligible if vs[i].is_anomaly]
        ps = [_p_of(vs[i]) for i in eligible]
        # The sparse evidence (``sparse``): the spend of the last few dozen expected requests,
        # summed over as many windows as that takes -- evidence in any window, however few
        # requests it has, and still evidence in an empty window after them.
        # It counts while its sum is above expected and a window of at most ``sparse_gap``
        # windows ago added evidence of its own (the window's own excess of at least one
        # request's spread): an incident that stopped leaves its spend in the sum for the
        # horizon, and is over before that.
        sp = None
        own = False
        if self._sparse is not None and count is not None:
            sp = self._sparse.score(ts, value, count)
            # Its p counts ``sparse_penalty`` times (at most 1): a running sum's calibration
            # sees few independent excursions, and its tail is extrapolated from them.
            sp = (min(1.0, sp[0] * self.sparse_penalty), *sp[1:])
            own = self._sparse.adds_evidence(ts, value, count)
            # (only where windows are expected to be few requests: elsewhere each window is
            # evidence by itself, and the models above have it)
            if (sp[2] > 0.0 and self._sparse.expected_requests() < self.min_requests
                    and (own or ts - self._sparse_fresh <= self.sparse_gap * self.window_seconds)):
                ps.append(sp[0])
            else:
                sp = None
        p_min = min(ps) if ps else 1.0
        sparse_lead = sp is not None and sp[0] <= p_min
        sparse_flag = sparse_lead and sp is not None and 1.0 - sp[0] >= self.score_threshold
        p = self._models_p(p_min, len(ps))
        # (above expected: this window, or the sparse evidence's sum when it leads)
        statistically = 1.0 - p >= self.score_threshold and (excess > 0.0 or sparse_lead)
        p_score, p_pair = self._score_p(p, value)
        score = 1.0 - p_score
        # A surprise at a time of day that was just as surprising on other recent days is
        # routine (a nightly batch, a daily report): not an incident, and learnt.
        day, slot = self._day_slot(ts)
        # a spike-type model's flag (most windows flag nothing: no generator made for them)
        spike = sparse_flag or (bool(flagged) and any(self._names[i] not in _SUSTAINED for i in flagged))
        routine = ((statistically or bool(flagged) or sparse_flag)
                   and self._recurs(day, slot, spike and self.level_marks_apart))
        surprising = statistically and not routine

        # The money is counted against the mean spend the expected value stands for (see
        # gate_on_mean); the verdict's excess stays against the models' expected value.
        g_expected = self.gate_expected(expected)
        g_excess = value - g_expected
        run_excess, run_expected = gate_step(self._run_excess, self._run_expected, surprising, g_excess, g_expected)
        base = self.gate_base(expected)
        gate = self.materiality(base)
        is_anomaly = (surprising and g_excess > 0.0
                      and is_material(run_excess, run_expected, gate, self.min_excess_pct)
                      # led by the sparse evidence: a window that adds evidence of its own
                      and (own or not sparse_lead))
        # what the gate saw, for replaying it with other settings (gate_inputs)
        self._gate_in = (surprising, g_excess, g_expected, self._usual, self._restarted, base)
        # what learning this window needs (see learn_one): the recurrence memory's mark, a level
        # mark when only a sustained-rise model flagged a window the models did not find surprising
        noticed = (day, slot, not (spike or statistically)) if flagged or sparse_flag else None
        self._scored = (ts, value, count, vs, (run_excess, run_expected),
                        noticed, routine, statistically, p_min, p, p_pair)

        model_ps = ps[: len(eligible)]
        if eligible and model_ps:
            lead = eligible[min(range(len(model_ps)), key=model_ps.__getitem__)]
        else:
            lead = 0
        said = f"{self._names[lead]}: {vs[lead].reason}"
        if sparse_lead and sp is not None and (not model_ps or sp[0] < min(model_ps)):
            said = f"sparse: {sp[3]}"
        if routine:
            reason = (f"{said}; but this time of day was as unusual on {self.recurring_days}+ "
                      f"of the last {_RECUR_DAYS} days: routine")
        elif is_anomaly:
            reason = f"{said}; ${run_excess:,.2f} over expected in this incident"
        elif surprising:
            reason = (f"{said}; ${run_excess:,.2f} over expected so far, alerts from "
                      f"${gate:,.2f} and {self.min_excess_pct:g}%")
        elif low_volume and len(eligible) < len(vs) and any(v.is_anomaly for v in vs):
            reason = f"{said}; only {count:g} requests, and the request count is not unusual"
        else:
            reason = said

        # The smallest spend that would start an alert in this window: under the lowest
        # component bound nothing is surprising, and under expected + the gate (and the
        # percentage) one window is not material on its own. Inside an incident the money
        # already over expected counts too, so an anomalous window may sit lower: its upper
        # is then its own spend.
        upper = min(v.upper for v in vs)
        money = g_expected + max(gate, g_expected * self.min_excess_pct / 100.0)
        if upper < money:
            upper = money
        if is_anomaly and upper > value:
            upper = value
        return Verdict(
            ts=ts,
            observed=value,
            expected=expected,
            upper=upper,
            score=score,
            is_anomaly=is_anomaly,
            excess=excess,
            excess_pct=100.0 * excess / expected if expected > 0.0 else None,
            detector=self.name,
            reason=reason,
            impact=run_excess if run_excess > 0.0 else None,
            p=p_score,
            mean_expected=g_expected,
            surprise_p=p,
        )

    def update_empty(self, ends: Sequence[float]) -> list[tuple[float, float, float, bool]]:
        """``update(ts, 0.0, 0.0)`` for each of ``ends``, to the bit, without what no empty
        window needs: the components' verdicts and reasons, and a costly upper that cannot be
        the smallest (the count model's inverse tail, when another bound is lower or the money
        gate is above them).

        An empty window is never surprising (its spend is not above expected), so it starts no
        incident and no shift, and teaches every model unless one flags it by itself; the
        incident's run, the recurrence memory and the sparse evidence stay as they are. A
        window where that is not so (a model flags it, a shift is under way, a window not after
        the last, the sparse evidence on, a model without the fast path) goes through
        ``update``: tests/detectors/test_update_empty.py holds both to the same states.
        """
        models = self._models
        if self._sparse is not None or any(type(m)._score_empty is Detector._score_empty for m in models):
            return super().update_empty(ends)
        # the models whose p counts in a window with fewer than min_requests requests, none flagged
        low_volume = self.min_requests > 0.0
        eligible = [i for i, name in enumerate(self._names) if not low_volume or name in _COUNT]
        if self._empty_run_ready(ends):
            return self._empty_run_all(ends, eligible)
        scorers = [m._score_empty for m in models]
        learners = [m._learn_empty for m in models]
        out: list[tuple[float, float, float, bool]] = []
        for ts in ends:
            last = self._last_ts
            got = None
            if math.isfinite(ts) and (last is None or ts > last) and self._shift[0] is None:
                got = self._empty_window(ts, [f(ts) for f in scorers], eligible, learners)
            if got is None:  # a model flags it, a shift is under way, or not after the last: the whole path
                v = self.update(ts, 0.0, 0.0)
                got = (v.expected, v.upper, v.score, v.is_anomaly)
            out.append(got)
        return out

    def _empty_run_ready(self, ends: Sequence[float]) -> bool:
        """Whether no window of the run can be flagged or stepped apart: every model says so,
        no shift under way, no burst held, each window after the last (and the first model's
        upper is exact: the money gate needs its expected value before the others run)."""
        models = self._models
        if (not ends or self._shift[0] is not None or (self.burst_windows and (self._burst_n or self._burst))
                or models[0]._lazy_upper):
            return False
        prev = self._last_ts if self._last_ts is not None else -math.inf
        for ts in ends:
            if not (math.isfinite(ts) and ts > prev):
                return False
            prev = ts
        return all(m._empty_run_ok(ends) for m in models)

    def _empty_run_all(self, ends: Sequence[float], eligible: list[int]) -> list[tuple[float, float, float, bool]]:
        """:meth:`update_empty` model by model (:meth:`_empty_run_ready`): each model takes
        the whole run (:meth:`Detector._empty_run`), then the combiner's own state steps
        through it. What a model learns from an empty window depends on nothing the combiner
        or another model learns in the run; a costly upper is asked for only where it can be
        the smallest, above the money gate."""
        models = self._models
        runs: list[list[tuple[float, float, float, bool, bool]]] = [[] for _ in models]
        for j, m in enumerate(models):
            if not m._lazy_upper:
                runs[j] = m._empty_run(ends, None)
        expected = [e[0] for e in runs[0]]
        money = [self._empty_money(e0) for e0 in expected]
        exact = [runs[j] for j, m in enumerate(models) if not m._lazy_upper]
        uppers = [min([r[i][1] for r in exact], default=math.inf) for i in range(len(ends))]
        caps = [u if u > g else -math.inf for u, g in zip(uppers, money, strict=True)]
        for j, m in enumerate(models):
            if m._lazy_upper:
                runs[j] = m._empty_run(ends, caps)
                for i, e in enumerate(runs[j]):
                    if e[4] and e[1] < uppers[i]:
                        uppers[i] = e[1]
        out = [(e0, g if u < g else u, self._empty_step([runs[j][i][2] for j in eligible]), False)
               for i, (e0, u, g) in enumerate(zip(expected, uppers, money, strict=True))]
        self._run_excess = self._run_expected = 0.0
        self._scored = None
        self._last_ts = ends[-1]
        return out

    def _empty_window(self, ts: float, es: list[tuple[float, float, float, bool, bool] | None],
                      eligible: list[int], learners: list[Any]) -> tuple[float, float, float, bool] | None:
        """One window of :meth:`update_empty` given the models' :meth:`_score_empty`: scored
        and learnt as ``update(ts, 0.0, 0.0)`` would, or None (untouched) if a model flags it."""
        scored: list[tuple[float, float, float, bool, bool]] = []
        for e in es:
            if e is None or e[3]:
                return None
            scored.append(e)
        score = self._empty_step([scored[i][2] for i in eligible])
        expected = scored[0][0]
        money = self._empty_money(expected)
        upper = min([e[1] for e in scored if e[4]], default=math.inf)
        if upper > money:  # (else the money gate's is the upper, whatever the others')
            for m, e in zip(self._models, scored, strict=True):
                if not e[4] and e[1] < upper:  # a lower bound under the smallest: the exact one
                    u = m._empty_upper(ts)
                    if u < upper:
                        upper = u
        for f in learners:
            f(ts)
        if self.burst_windows and (self._burst_n or self._burst):
            # (else _hold_burst of a quiet window changes nothing: the models hold no
            # statistic, as only a flagged window's _learn_protected sets one)
            self._hold_burst(ts, False)
        self._run_excess = self._run_expected = 0.0
        self._scored = None
        self._last_ts = ts
        return expected, (money if upper < money else upper), score, False

    def _empty_step(self, ps: list[float]) -> float:
        """The combiner's own step through an empty window, given its eligible models' p: the
        score (as score_one and _score_p), then the level statistic, the models' p of the
        window before and the dependence estimates learnt (as _learn_window: neither
        surprising nor flagged)."""
        p_min = min(ps) if ps else 1.0
        p = self._models_p(p_min, len(ps))
        p_score, p_pair = self._score_p(p, 0.0)
        self._level.learn(0.0)
        self._prev_p = p
        if p_min < 1.0:
            _learn_dependence(self._dep, p_min)
            _learn_dependence(self._dep2, p_pair)
        return 1.0 - p_score

    def _empty_money(self, expected: float) -> float:
        """An empty window's money gate (the least its upper is, as score_one: gate_expected,
        gate_base, materiality) and gate inputs; then its usual and recent spend learn the zero
        (as _learn_window), and a rebase's restart has been said."""
        g_expected = self.gate_expected(expected)
        base = self.gate_base(expected)
        gate = self.materiality(base)
        self._gate_in = (False, 0.0 - g_expected, g_expected, self._usual, self._restarted, base)
        self._learn_usual(0.0)
        self._restarted = False
        return g_expected + max(gate, g_expected * self.min_excess_pct / 100.0)

    def _models_p(self, p_min: float, k: int) -> float:
        """The models' combined p-value from the smallest of their ``k``: Bonferroni's k * min(p)
        is exact for independent models and k times too cautious for identical ones. The factor
        used is how often min(p) <= 1 % on this series' normal windows, per 1 % (between 1 and
        k): calibrated there, and carried into the tail."""
        if k > 1:
            k_eff = self._dep[0] / _DEP_Q
            k_eff = 1.0 if k_eff < 1.0 else k if k_eff > k else k_eff
        else:
            k_eff = 1.0
        p = p_min * k_eff
        return 1.0 if p > 1.0 else p

    def _learn_usual(self, value: float) -> None:
        """A normal window's spend into the usual spend per window (the materiality gate's,
        about a week's memory) and the last half hour's (``gate_base``)."""
        self._usual_n += 1
        w = 1.0 / self._usual_n
        if w < self._usual_w:
            w = self._usual_w
        self._usual += w * (value - self._usual)
        rec = self._recent
        rec[1] += 1
        w = 1.0 / rec[1]
        if w < self._recent_w:
            w = self._recent_w
        rec[0] += w * (value - rec[0])

    def _score_p(self, p: float, value: float) -> tuple[float, float]:
        """The score's p-value, and the smaller of its two opinions (for their dependence).

        The alert's p (the models: spend *above* expected) and the level statistic's
        two-sided one (:class:`~detectors.calibration.LevelSurprise`: a collapse is surprising
        too, and a level that holds fades as it is learnt), combined as the models are: the
        smaller times how often it is <= 1 % on normal windows, per 1 % (between 1 and 2).
        Inside a run the models found surprising, their p counts down to about ``_RUN_P`` only
        (squeezed into ``[_RUN_P / 2, _RUN_P)``, order kept): a shift the models will not learn
        for hours is news once, not at every window.
        """
        if self._prev_p <= _DEP_Q and p < _RUN_P:
            p = 0.5 * (_RUN_P + p)  # into [_RUN_P / 2, _RUN_P): still ranked, no ties
        p_level = self._level.sf(value)
        pair = p if p < p_level else p_level
        k = self._dep2[0] / _DEP_Q
        k = 1.0 if k < 1.0 else 2.0 if k > 2.0 else k
        p_score = pair * k
        return (p_score if p_score < 1.0 else 1.0), pair

    def gate_expected(self, expected: float) -> float:
        """The spend the money gate counts an excess over: the models' expected value times the
        series' mean of observed / expected on normal windows (``gate_on_mean``; once it has
        learnt ``_MEAN_MIN_N`` windows), else the expected value itself."""
        mr = self._mean_ratio
        if self.gate_on_mean and mr[1] >= _MEAN_MIN_N:
            return expected * mr[0]
        return expected

    def gate_base(self, expected: float) -> float:
        """The spend per window the relative gate counts minutes of: the window's expected
        spend, or the last half hour's (normal windows) when that is lower and known."""
        level, n = self._recent
        return level if n >= self._recent_min_n and level < expected else expected

    def materiality(self, expected: float = 0.0) -> float:
        """Dollars an incident must be over expected (summed so far) to alert on this series in
        a window whose expected spend is ``expected``: ``min_excess_minutes`` minutes of it (or
        ``min_excess_root`` times the square root of the usual daily spend, if larger), at least
        ``min_excess_usd``."""
        return materiality(self._usual, self.window_seconds, self.min_excess_usd, self.min_excess_root,
                           self.min_excess_minutes, expected)

    def gate_inputs(self) -> tuple[bool, float, float, float, bool, float] | None:
        """What the money gate saw in the window scored last: (surprising, excess and expected
        spend as the gate counts them (:meth:`gate_expected`),
        usual spend per window, whether a new normal reset the incident just before it, the
        spend per window the relative gate counts minutes of: :meth:`gate_base`).
        Nothing the models learn depends on the gate's settings, so a sequence of these,
        recorded once, replays the decision for any ``min_excess_usd``, ``min_excess_pct``,
        ``min_excess_minutes`` and ``min_excess_root`` exactly, through :func:`gate_step` (from
        ``(0, 0)`` after a reset), :func:`materiality` (with the gate's base) and
        :func:`is_material` (a threshold sweep without the models)."""
        return self._gate_in

    def _scored_for(self, ts: float, value: float, count: float | None) -> tuple[Any, ...]:
        s = self._scored
        if s is None or s[0] != ts or s[1] != value or s[2] != count:
            self.score_one(ts, value, count)
            s = self._scored
        assert s is not None
        return s

    def learn_one(self, ts: float, value: float, count: float | None = None) -> None:
        self._learn_window(ts, value, count)

    def _learn_protected(
        self, ts: float, value: float, verdict: Verdict, count: float | None = None
    ) -> None:
        # Learning does not depend on this detector's own decision (its gate): a model does
        # not learn a window that it flagged or that was statistically surprising as a whole
        # (unless routine), whether or not the money made it an alert. So the gate can be
        # re-evaluated on recorded verdicts without running the models again.
        self._learn_window(ts, value, count)

    def _learn_window(self, ts: float, value: float, count: float | None) -> None:
        _, _, _, vs, run, noticed_at, routine, statistically, p_min, p, p_pair = self._scored_for(ts, value, count)
        self._level.learn(value)  # every window: the level follows what happens
        self._prev_p = p
        protect_all = statistically and not routine
        if self._sparse is not None and count is not None:
            if self._sparse.adds_evidence(ts, value, count):
                self._sparse_fresh = ts
            self._sparse_held = self._sparse.learn(ts, value, count, normal=not protect_all)
        for m, v in zip(self._models, vs, strict=True):
            if m.protect_anomaly and not routine and (protect_all or v.is_anomaly):
                m._learn_protected(ts, value, v, count)
            else:
                m.learn_one(ts, value, count)  # routine windows teach every model
        if self.burst_windows:
            self._hold_burst(ts, protect_all)
        if not protect_all:
            # The dependence estimate learns normal windows only: not those a model flagged
            # either, or a run of incidents just under the threshold would teach it that
            # small minimum p-values are ordinary, and then fewer would cross it. Windows
            # where no model has an opinion yet (cold start: min p == 1) say nothing.
            if p_min < 1.0 and not any(v.is_anomaly for v in vs):
                _learn_dependence(self._dep, p_min)
                _learn_dependence(self._dep2, p_pair)
            e0 = vs[0].expected
            if value > 0.0 and e0 > 0.0:
                mr = self._mean_ratio
                mr[1] += 1
                w = 1.0 / mr[1]
                if w < self._usual_w:
                    w = self._usual_w
                r = value / e0
                mr[0] += w * ((r if r < _MEAN_RATIO_CAP else _MEAN_RATIO_CAP) - mr[0])
            self._learn_usual(value)
        if self._restarted and self._gate_in is not None and self._gate_in[4]:
            self._restarted = False  # this window's gate inputs said so: said once
        if self._track_shift(ts, value, vs[0].expected, protect_all):
            self._rebase()  # a new normal: from the next window on, this level is expected
            run = (0.0, 0.0)
        self._commit(run, noticed_at)

    def _hold_burst(self, ts: float, surprising: bool) -> None:
        """Short surprising runs teach the models' calibration after all (``burst_windows``).

        A surprising window teaches no model, and so not its p-value's calibration either:
        on a bursty series the calibration then never sees a burst, its tail is extrapolated
        from quieter windows, and every ordinary burst scores p ~ 1e-10. A run of surprising
        windows that ends within ``burst_windows`` windows is such a burst: its windows'
        statistics (held back by each model) are learnt into the calibration when it ends.
        A longer run is an incident and teaches nothing; nor does the baseline learn a burst.
        """
        held = self._burst
        if surprising:
            if not self._burst_n and held:
                # ``burst_gap``: another run before the last one's gap is over -- on-and-off
                # windows of one incident (a model switch), not an isolated burst
                held.clear()
            self._burst_n += 1
            short = self._burst_n <= self.burst_windows
            for i, m in enumerate(self._models):
                stat = m._take_held()
                if short and stat is not None:
                    held.append([i, stat])
            stat, self._sparse_held = self._sparse_held, None
            if short and stat is not None:
                held.append([-1, stat])  # the sparse evidence's
            if not short:
                held.clear()
            return
        for m in self._models:
            m._take_held()  # a window a model flagged by itself: not a burst of the series'
        self._sparse_held = None
        if self._burst_n:
            self._burst_quiet = 0  # a run just ended
        self._burst_n = 0
        if held and self._burst_quiet < self.burst_gap:
            self._burst_quiet += 1
        elif held:
            # ``burst_recur``: only a series whose bursts recur learns them; a one-off burst
            # (an incident that looks like one) is counted, and stays rare.
            seen = self._burst_seen * math.exp(-(ts - self._burst_ts) / (86400.0 * self.burst_recur_days))
            if seen >= self.burst_recur:
                for k, stat in held:
                    if k < 0:
                        if self._sparse is not None:
                            self._sparse.learn_held(stat)
                    else:
                        self._models[int(k)]._learn_held(stat, self.burst_weight)
            self._burst_seen, self._burst_ts = seen + 1.0, ts
            held.clear()

    def _track_shift(self, ts: float, value: float, expected: float, surprising: bool) -> bool:
        """Follow a run of surprising windows period by period (a third of ``new_normal_after``:
        hours by default); True when it is a new normal: it has lasted ``new_normal_after``, its
        level (against expected) is as high as the period before and no higher (within 25 %),
        and it is at most ``max_new_normal_ratio`` times expected -- or within 1.5x of the
        series' usual spend (about a week's average: a return to a level the series had before
        is not a runaway, however far it is above a baseline that learnt a quiet spell)."""
        sh = self._shift
        if surprising:
            if sh[0] is None:
                sh[:] = [ts, ts, 0, 0.0, 0, None, 0.0]
            else:
                sh[1] = ts
        if sh[0] is None:
            return False
        if ts - sh[1] > _SHIFT_GAP_S:
            sh[:] = [None, None, 0, 0.0, 0, None, 0.0]  # it stopped: no shift
            return False
        hour = int((ts - sh[0]) // self._shift_period)
        if hour > sh[2]:
            sh[5] = sh[3] / sh[4] if sh[4] >= self._shift_min_n else None
            sh[2], sh[3], sh[4], sh[6] = hour, 0.0, 0, 0.0
        if value > 0.0 and expected > 0.0:
            sh[3] += math.log(value / expected)
            sh[4] += 1
            sh[6] += value
        if not self.new_normal_after or ts - sh[0] < self.new_normal_after:
            return False
        prev = sh[5]
        if prev is None or sh[4] < self._shift_min_n:
            return False
        level = sh[3] / sh[4]
        if not (level > 0.0 and abs(level - prev) <= _STABLE_LOG):
            return False
        # not a runaway: at most max_new_normal_ratio times expected, or back at about what the
        # series usually spends (a level it had before its baseline learnt a quiet spell)
        return bool(level <= math.log(self.max_new_normal_ratio) or sh[6] / sh[4] <= _USUAL_LEVEL * self._usual)

    def _rebase(self) -> None:
        for m in self._models:
            m.rebase()
        if self._sparse is not None:
            self._sparse.rebase()
        self._run_excess = self._run_expected = 0.0
        self._restarted = True
        self._shift = [None, None, 0, 0.0, 0, None, 0.0]
        self._level.rebase()
        self._prev_p = 1.0
        self._burst_n, self._burst = 0, []
        self._scored = None

    def _commit(self, run: tuple[float, float], noticed_at: tuple[int, int, bool] | None) -> None:
        self._run_excess, self._run_expected = run
        if noticed_at is not None:
            self._remember(*noticed_at)
        self._scored = None


def _learn_dependence(dep: list[float], p: float) -> None:
    """One normal window into a dependence estimate ``[share of p <= _DEP_Q, windows]``: a
    running mean, weighted ``1/n`` until it is warm, then ``_DEP_W``."""
    n = dep[1] + 1.0
    dep[1] = n
    w = max(1.0 / n, _DEP_W)
    dep[0] += w * ((1.0 if p <= _DEP_Q else 0.0) - dep[0])


def _p_of(v: Verdict) -> float:
    """A verdict's p-value at full precision."""
    return v.p if v.p is not None else 1.0 - v.score


def gate_step(run_excess: float, run_expected: float, surprising: bool, excess: float,
              expected: float) -> tuple[float, float]:
    """The incident's running excess and expected spend after one more window: a surprising
    window starts (or continues) one, and it goes on while spend stays above expected; below
    expected it is over."""
    if surprising or (run_excess > 0.0 and excess > 0.0):
        return run_excess + max(excess, 0.0), run_expected + max(expected, 0.0)
    return 0.0, 0.0


def materiality(usual: float, window_seconds: float, min_excess_usd: float, min_excess_root: float,
                min_excess_minutes: float = 0.0, expected: float = 0.0) -> float:
    """The dollar gate of a series whose usual spend per window is ``usual`` and whose expected
    spend in the window at hand is ``expected``: ``min_excess_minutes`` minutes of that expected
    spend (what the series usually costs at that time), or ``min_excess_root * sqrt(usual
    daily spend)`` if larger, at least ``min_excess_usd``.

    >>> round(materiality(1000 / 1440, 60, 0.5, 0.6), 2), materiality(1 / 1440, 60, 0.5, 0.6)
    (18.97, 0.6)
    >>> materiality(0.0, 60, 0.5, 0.0, 10.0, expected=2.0), materiality(0.0, 60, 0.5, 0.0, 10.0, expected=0.01)
    (20.0, 0.5)
    """
    gate = min_excess_usd
    if min_excess_root > 0.0 and usual > 0.0:
        rel = min_excess_root * math.sqrt(usual * (86400.0 / window_seconds))
        if rel > gate:
            gate = rel
    if min_excess_minutes > 0.0 and expected > 0.0:
        rel = min_excess_minutes * expected * (60.0 / window_seconds)
        if rel > gate:
            gate = rel
    return gate


def is_material(run_excess: float, run_expected: float, gate: float, min_excess_pct: float) -> bool:
    """Whether an incident's running excess passes the dollar gate and the percentage."""
    pct_ok = run_expected <= 0.0 or 100.0 * run_excess / run_expected >= min_excess_pct
    return run_excess >= gate and pct_ok
