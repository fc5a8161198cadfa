"""The combiner: several detectors side by side, and an alert only for money that matters."""

from __future__ import annotations

import math
from typing import Any

from detectors.base import Detector, Verdict, require

__all__ = ["Combined"]

# Components whose flag means "a sustained rise" or "too many requests" rather than "this
# window's spend is extreme": the low-volume guard does not apply to them.
_SUSTAINED = frozenset({"changepoint"})
_COUNT = frozenset({"counts"})

# Score of a window that is surprising but not (yet) material: just under the alert bound, so
# that scores still rank windows and ``is_anomaly == (score >= 0.5)`` holds.
_BELOW_BOUND = 0.4999

# Recurrence memory: per quarter hour of the (UTC) day, which of the last days had a surprising
# window in it, as bits of an int (bit 0: the current day).
_SLOT_SECONDS = 900
_SLOTS_PER_DAY = 86400 // _SLOT_SECONDS
_RECUR_DAYS = 7
_RECUR_MASK = (1 << (_RECUR_DAYS + 1)) - 1


class Combined(Detector):
    """Runs several detectors on each window; alerts on statistical surprise *and* material impact.

    Each window goes to every component (``components``, registry names; the first one gives
    the expected spend). The window is **surprising** when a component flags it, except that a
    spike flagged in a window with fewer than ``min_requests`` requests only counts when the
    ``counts`` component (a tail test on request counts) agrees -- three calls at night are
    not "infinite sigma", and one long-context call is not an incident.

    Surprise is not enough. Like AWS Cost Anomaly Detection's impact thresholds, the alert
    needs **material impact**: the excess over expected spend, summed over the incident so far
    (consecutive windows above expected since the first surprising one), must reach both
    ``min_excess_usd`` dollars and ``min_excess_pct`` percent of the expected spend over those
    windows. A one-window burst of $200 alerts at once; a model switch that adds $1.50 a minute
    alerts when its running excess passes $20; a $3 blip never does. ``impact`` in the verdict
    is that running excess.

    A surprise in a quarter hour of the day (UTC) that was also surprising, give or take a
    quarter hour, on ``recurring_days`` of the previous seven days is **routine** -- a nightly
    batch, a daily report -- and neither alerts nor is kept from the models: they learn it,
    so it soon stops surprising them. A new nightly job therefore pages at most
    ``recurring_days`` times; the price is that an incident repeating at the same time of day
    for that many days becomes routine too.

    Anomalous windows teach no component (``protect_anomaly``); a window that one component
    flags but that is not material is not learnt by that component either (its own
    protection), while the others learn it.

    Parameters
    ----------
    window_seconds
        Length of the windows; passed to the components that take it.
    components
        Registry names of the models to run, first one giving ``expected``.
    component_params
        ``{name: {param: value}}`` for the components (a YAML section per model).
    min_excess_usd
        Dollars over expected, summed over the incident so far, before it alerts.
    min_excess_pct
        The same excess as a percentage of the expected spend over the incident's windows.
    min_requests
        Fewer requests than this in a window (when the count is known): a spike-type flag
        needs the ``counts`` component's agreement.
    recurring_days
        Earlier days (of the last 7) with a surprise at the same time of day that make it
        routine; 0 turns the rule off.
    protect_anomaly
        Do not learn anomalous windows into any component.

    Example: a team spending about $2 a minute. A burst to $6 is surprising but not worth
    $20; the burst to $40 that follows it alerts.

    >>> import numpy as np
    >>> rng = np.random.default_rng(1)
    >>> det = Combined(components=("seasonal",), min_excess_usd=20)
    >>> t0 = 1_704_067_200.0
    >>> for i in range(1, 2 * 1440):
    ...     _ = det.update(t0 + 60 * i, 2.0 * rng.lognormal(0, 0.1), count=40)
    >>> v = det.update(t0 + 60 * 2880, 6.0, count=120)
    >>> v.is_anomaly, round(v.impact), v.reason  # doctest: +ELLIPSIS
    (False, 4, 'seasonal: 3.0x the hour-of-day expected value ...; $4.02 over expected so far, alerts from $20 and 50%')
    >>> v = det.update(t0 + 60 * 2881, 40.0, count=800)
    >>> v.is_anomaly, v.score >= 0.5, round(v.excess)
    (True, True, 38)
    """

    name = "combined"

    def __init__(
        self,
        window_seconds: float = 60.0,
        components: tuple[str, ...] | list[str] = ("seasonal", "changepoint", "counts"),
        component_params: dict[str, dict[str, Any]] | None = None,
        min_excess_usd: float = 20.0,
        min_excess_pct: float = 50.0,
        min_requests: float = 5.0,
        recurring_days: int = 2,
        protect_anomaly: bool = True,
    ) -> None:
        from detectors import DETECTORS  # the registry imports this module

        self.window_seconds = window_seconds
        self.components = components
        self.component_params = component_params
        self.min_excess_usd = min_excess_usd
        self.min_excess_pct = min_excess_pct
        self.min_requests = min_requests
        self.recurring_days = recurring_days
        self.protect_anomaly = protect_anomaly
        require("Combined", window_seconds > 0, "window_seconds must be > 0", window_seconds)
        require(
            "Combined",
            isinstance(components, (tuple, list)) and len(components) > 0,
            "components must be a non-empty list of detector names",
            components,
        )
        require("Combined", len(set(components)) == len(components), "components must not repeat", components)
        require("Combined", min_excess_usd >= 0, "min_excess_usd must be >= 0", min_excess_usd)
        require("Combined", min_excess_pct >= 0, "min_excess_pct must be >= 0", min_excess_pct)
        require("Combined", min_requests >= 0, "min_requests must be >= 0", min_requests)
        require(
            "Combined",
            isinstance(recurring_days, int) and 0 <= recurring_days <= _RECUR_DAYS,
            f"recurring_days must be an integer in [0, {_RECUR_DAYS}]",
            recurring_days,
        )
        params = component_params or {}
        require("Combined", isinstance(params, dict), "component_params must be a mapping", params)
        unknown = sorted(set(params) - set(components))
        require("Combined", not unknown, f"component_params for models not in components {unknown}", params)
        self._models: list[Detector] = []
        for name in components:
            cls = DETECTORS.get(name)
            if cls is None or cls is Combined:
                known = ", ".join(sorted(n for n in DETECTORS if n != self.name))
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
            self._models.append(cls(**kwargs))
        self._names = tuple(components)
        self._count_index = next((i for i, n in enumerate(self._names) if n in _COUNT), None)
        # The component verdicts of the window scored last, so that learning it does not score
        # it a second time (update scores, then learns the same window).
        self._scored: tuple[Any, ...] | None = None
        super().__init__()

    @classmethod
    def _unit_test_params(cls) -> dict[str, Any]:
        # The contract's series spend about $2 a minute; its 8x spike is worth ~$14.
        return {"min_excess_usd": 5.0}

    # -- state ------------------------------------------------------------------------------

    def _reset(self) -> None:
        for m in self._models:
            m.reset()
        self._run_excess = 0.0  # excess over expected since the incident's first surprising window
        self._run_expected = 0.0  # expected spend over the same windows
        self._recur_day = 0  # the day (epoch day) bit 0 of the recurrence masks stands for
        self._recur: list[int] = [0] * _SLOTS_PER_DAY
        self._scored = None

    def _get_state(self) -> dict[str, Any]:
        return {
            "models": [m.to_state() for m in self._models],
            "run": [self._run_excess, self._run_expected],
            "recur_day": self._recur_day,
            "recur": list(self._recur),
        }

    def _set_state(self, state: dict[str, Any]) -> None:
        try:
            models = state["models"]
            run = [float(x) for x in state["run"]]
            recur_day = int(state["recur_day"])
            recur = [int(x) for x in state["recur"]]
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"malformed combined state: {exc!r}") from exc
        if not isinstance(models, list) or len(models) != len(self._models):
            raise ValueError(f"combined state holds {len(models) if isinstance(models, list) else '?'} "
                             f"models, this detector runs {len(self._models)}")
        if len(run) != 2 or not all(math.isfinite(x) for x in run):
            raise ValueError("combined state: bad run totals")
        if len(recur) != _SLOTS_PER_DAY or not all(0 <= x <= _RECUR_MASK for x in recur):
            raise ValueError("combined state: bad recurrence masks")
        for m, s in zip(self._models, models):
            m.load_state(s)
        self._run_excess, self._run_expected = run
        self._recur_day, self._recur = recur_day, recur
        self._scored = None

    # -- model ------------------------------------------------------------------------------

    def _component_verdicts(self, ts: float, value: float, count: float | None) -> list[Verdict]:
        return [m.score_one(ts, value, count) for m in self._models]

    def _day_slot(self, ts: float) -> tuple[int, int]:
        start = ts - self.window_seconds
        return int(start // 86400), int((start % 86400) // _SLOT_SECONDS)

    def _recurs(self, day: int, slot: int) -> bool:
        """Whether this quarter hour (or a neighbour: jobs start a few minutes early or late)
        was surprising on at least ``recurring_days`` of the previous days."""
        if not self.recurring_days:
            return False
        shift = day - self._recur_day  # bit k of a mask stands for day recur_day - k
        if shift < 0 or shift > _RECUR_DAYS:
            return False
        seen = 0
        for s in (slot - 1, slot, slot + 1):
            seen |= self._recur[s % _SLOTS_PER_DAY]
        # earlier days only: days recur_day - k with k >= max(0, 1 - shift); and within the window
        seen = (seen << shift) & _RECUR_MASK & ~1
        return seen.bit_count() >= self.recurring_days

    def _remember(self, day: int, slot: int) -> None:
        shift = day - self._recur_day
        if shift > 0:
            masks = self._recur
            for i in range(_SLOTS_PER_DAY):
                masks[i] = (masks[i] << shift) & _RECUR_MASK
            self._recur_day = day
        elif shift < 0:
            return  # an old window (replayed out of order): not worth remembering
        self._recur[slot] |= 1

    def score_one(self, ts: float, value: float, count: float | None = None) -> Verdict:
        if not (math.isfinite(ts) and math.isfinite(value)):
            raise ValueError(f"ts and value must be finite, got ts={ts!r} value={value!r}")
        if count is not None and not (math.isfinite(count) and count >= 0):
            raise ValueError(f"count must be a finite number >= 0, got {count!r}")
        vs = self._component_verdicts(ts, value, count)
        base = vs[0]
        expected = base.expected
        excess = value - expected

        low_volume = count is not None and count < self.min_requests
        counts_agree = self._count_index is not None and vs[self._count_index].is_anomaly
        surprising: list[int] = []
        for i, (name, v) in enumerate(zip(self._names, vs)):
            if not v.is_anomaly:
                continue
            if low_volume and name not in _SUSTAINED and name not in _COUNT and not counts_agree:
                continue  # the minimum volume guard
            surprising.append(i)
        # A surprise at a time of day that was just as surprising on other recent days is
        # routine (a nightly batch, a daily report): not an incident, and learnt.
        day, slot = self._day_slot(ts)
        routine = bool(surprising) and self._recurs(day, slot)
        noticed = bool(surprising)
        if routine:
            surprising = []

        run_excess, run_expected = self._run_excess, self._run_expected
        if surprising or (run_excess > 0.0 and excess > 0.0):
            # The incident goes on while spend stays above expected; a surprising window starts
            # one. Below expected, it is over.
            run_excess += max(excess, 0.0)
            run_expected += max(expected, 0.0)
        else:
            run_excess = run_expected = 0.0
        # what learning this window needs; ``noticed`` as the (day, slot) to remember, or None
        self._scored = (ts, value, count, vs, (run_excess, run_expected), (day, slot) if noticed else None, routine)

        pct_ok = run_expected <= 0.0 or 100.0 * run_excess / run_expected >= self.min_excess_pct
        material = run_excess >= self.min_excess_usd and pct_ok
        is_anomaly = bool(surprising) and material and excess > 0.0

        top = max(range(len(vs)), key=lambda i: vs[i].score)
        if surprising:
            lead = max(surprising, key=lambda i: vs[i].score)
            score = max(vs[lead].score, 0.5) if is_anomaly else min(vs[lead].score, _BELOW_BOUND)
            said = f"{self._names[lead]}: {vs[lead].reason}"
            if is_anomaly:
                reason = f"{said}; ${run_excess:,.2f} over expected in this incident"
            else:
                reason = (
                    f"{said}; ${run_excess:,.2f} over expected so far, alerts from "
                    f"${self.min_excess_usd:,.0f} and {self.min_excess_pct:g}%"
                )
        else:
            score = min(vs[top].score, _BELOW_BOUND)
            flagged = [i for i, v in enumerate(vs) if v.is_anomaly]
            if routine:
                i = flagged[0]
                reason = (f"{self._names[i]}: {vs[i].reason}; but this time of day was as "
                          f"unusual on {self.recurring_days}+ of the last {_RECUR_DAYS} days: routine")
            elif flagged:
                i = flagged[0]
                reason = (f"{self._names[i]}: {vs[i].reason}; only {count:g} requests, and the "
                          f"request count is not unusual")
            else:
                reason = f"{self._names[top]}: {vs[top].reason}"

        # The smallest spend that would start an alert in this window: under the lowest
        # component bound nothing is surprising, and under expected + min_excess_usd (and the
        # percentage) one window is not material on its own. Inside an incident the money
        # already over expected counts too, so an anomalous window may sit lower: its upper
        # is then its own spend.
        upper = min(v.upper for v in vs)
        money = expected + max(self.min_excess_usd, expected * self.min_excess_pct / 100.0)
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
        )

    def _scored_for(self, ts: float, value: float, count: float | None) -> tuple[Any, ...]:
        s = self._scored
        if s is None or s[0] != ts or s[1] != value or s[2] != count:
            self.score_one(ts, value, count)
            s = self._scored
        assert s is not None
        return s

    def learn_one(self, ts: float, value: float, count: float | None = None) -> None:
        _, _, _, vs, run, noticed_at, routine = self._scored_for(ts, value, count)
        for m, v in zip(self._models, vs):
            if v.is_anomaly and m.protect_anomaly and not routine:
                m._learn_protected(ts, value, v, count)
            else:
                m.learn_one(ts, value, count)  # routine windows teach every model
        self._commit(run, noticed_at)

    def _learn_protected(
        self, ts: float, value: float, verdict: Verdict, count: float | None = None
    ) -> None:
        _, _, _, vs, run, noticed_at, _ = self._scored_for(ts, value, count)
        for m, v in zip(self._models, vs):
            m._learn_protected(ts, value, v, count)
        self._commit(run, noticed_at)

    def _commit(self, run: tuple[float, float], noticed_at: tuple[int, int] | None) -> None:
        self._run_excess, self._run_expected = run
        if noticed_at is not None:
            self._remember(*noticed_at)
        self._scored = None
