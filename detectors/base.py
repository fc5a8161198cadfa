"""The contract every tokenpulse detector follows.

A detector watches one series (a team, a team x model, the org) one closed window at a time.
``update(ts, value)`` scores the window against what the detector has learnt so far and then
learns it -- except that a flagged window does not teach the baseline that flagged it: a runaway
agent loop must not teach it that burning tokens is normal (river's
``protect_anomaly_detector`` idea).

Constructor arguments are the configuration, stored verbatim under their own names; everything
learnt lives apart from them. That is what makes ``clone()`` (one fresh model per series),
``get_params()`` (a YAML section per detector), ``repr`` and pickling nearly free, and lets the
worker keep only ``to_state()`` (plain JSON) in a Faust table while the parameters come from the
policy file.

This package is pure: no I/O, no Faust, no imports from ``alerts``, ``streams`` or
``tokenpulse``. The same objects run in the worker and in offline replay.
"""

from __future__ import annotations

import inspect
import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Self

from detectors.compact import known, shared, shared_param

__all__ = ["Detector", "Verdict", "require"]


def require(owner: str, ok: bool, message: str, value: Any) -> None:
    """Raise ``ValueError("<owner>: <message>, got <value>")`` unless ``ok``: how every model
    refuses a bad constructor argument, named after its class."""
    if not ok:
        raise ValueError(f"{owner}: {message}, got {value!r}")


@dataclass(slots=True, frozen=True)
class Verdict:
    """What a detector says about one window of one series.

    Money fields are in the unit of the series (USD per window).

    >>> v = Verdict(ts=120.0, observed=8.0, expected=1.0, upper=4.0, score=0.99,
    ...             is_anomaly=True, excess=7.0, excess_pct=700.0, detector="seasonal",
    ...             reason="12.0 robust sigma above the hour-of-day expected value")
    >>> v.to_dict()["excess_pct"]
    700.0
    """

    ts: float
    """End of the window (epoch seconds)."""
    observed: float
    """Spend in the window."""
    expected: float
    """What the detector expected for this window."""
    upper: float
    """The alert bound: at or above it (once warmed up) the window is an anomaly."""
    score: float
    """How unusual, in [0, 1]: ``1 - p``, where ``p`` is an upper-tail p-value of the window
    against the series' own recent history, so the same number means the same on every series
    (on normal windows ``P(score >= s) ~ 1 - s``). 0 means "nothing to see" or no opinion yet
    (cold start). Whether it alerts is ``is_anomaly``: the model's own bound, or for the
    combiner a score threshold plus materiality."""
    is_anomaly: bool
    excess: float
    """observed - expected, signed (negative when spend is below what was expected)."""
    excess_pct: float | None
    """excess as a percentage of expected; None when nothing was expected (expected == 0)."""
    detector: str
    """Registry name of the detector that produced the verdict."""
    reason: str
    """One short human sentence, for the alert text."""
    impact: float | None = None
    """Excess over expected summed over the incident so far (money), for detectors that track
    incidents (the combiner); None otherwise."""
    p: float | None = None
    """The upper-tail p-value behind ``score`` (``score == 1 - p``), at full precision where
    ``1 - p`` rounds to 1.0; None when it is ``1 - score``."""
    mean_expected: float | None = None
    """The mean spend per window that ``expected`` stands for, where a detector knows it apart
    from ``expected`` (the combiner's ``gate_on_mean``: expected times the series' mean of
    observed / expected on normal windows, the baseline its money gate counts the excess over);
    None: ``expected`` itself. What "back to normal" is measured against once an alert has
    fired (``alerts.engine.clearly_normal``). Not in :meth:`to_dict`, whose records (and their
    recorded hashes, tests/detectors/test_compact.py) stay as they were."""
    surprise_p: float | None = None
    """The upper-tail p-value this detector's surprise is decided on, where it differs from
    :attr:`p` (the combiner's: the models' combined p, which ``score_threshold`` is compared
    with, before the score squeezes it inside a run or mixes in the two-sided level
    statistic); None: :attr:`p` (or ``1 - score``). What the org stage's team corroboration
    reads of a team series (docs/detectors.md). Not in :meth:`to_dict`, as
    :attr:`mean_expected`."""

    @property
    def upward_p(self) -> float:
        """:attr:`surprise_p`, else :attr:`p`, else ``1 - score``."""
        if self.surprise_p is not None:
            return self.surprise_p
        return self.p if self.p is not None else 1.0 - self.score

    @property
    def baseline(self) -> float:
        """:attr:`mean_expected`, else :attr:`expected`."""
        return self.expected if self.mean_expected is None else self.mean_expected

    def to_dict(self) -> dict[str, Any]:
        # Written out rather than dataclasses.asdict: asdict deep-copies and is ~5x slower,
        # and this runs once per window per series.
        return {
            "ts": self.ts,
            "observed": self.observed,
            "expected": self.expected,
            "upper": self.upper,
            "score": self.score,
            "is_anomaly": self.is_anomaly,
            "excess": self.excess,
            "excess_pct": self.excess_pct,
            "detector": self.detector,
            "reason": self.reason,
            "impact": self.impact,
            "p": self.p,
        }


class Detector(ABC):
    """Base class of the online per-series detectors.

    Subclasses:

    - take every setting as a keyword argument of ``__init__`` with a default, store it
      unchanged under the same attribute name, validate it (``ValueError``), then call
      ``super().__init__()`` which builds the fresh state through ``_reset()``;
    - take ``protect_anomaly: bool = True`` (read by ``update``);
    - set the class attribute ``name`` (the registry key, also written into each ``Verdict``);
    - implement ``score_one`` (no state change), ``learn_one``, ``_reset``, ``_get_state``,
      ``_set_state`` and ``_rebase`` (see ``rebase``); state must be plain Python (lists, floats, ints, None) so that pickling
      and ``to_state`` need nothing special;
    - may override ``_unit_test_params`` to give the contract tests non-default settings.

    ``update`` also refuses to learn a window whose ``ts`` is not after the last one seen: a
    window redelivered after a crash or rebalance is scored again but not learnt twice.
    """

    name: ClassVar[str]
    state_version: ClassVar[int] = 1
    # Whether a window of zero spend (and no request) can never be an anomaly: then a judge may
    # defer a series' empty windows until it spends again (streams.judge.core: parking), as no
    # verdict of theirs can start or hold an alert. True only where the code guarantees it.
    quiet_at_zero: ClassVar[bool] = False
    # Whether _score_empty gives only a lower bound of an empty window's upper (the exact one
    # is costly: _empty_upper): a combiner then asks for it only where it can matter.
    _lazy_upper: ClassVar[bool] = False
    protect_anomaly: bool

    def __init__(self) -> None:
        self._last_ts: float | None = None
        self._reset()

    # -- what each model implements -------------------------------------------------------

    @abstractmethod
    def score_one(self, ts: float, value: float, count: float | None = None) -> Verdict:
        """Judge one window against the current state, without learning it.

        ``count`` is the number of requests in the window when the caller knows it (the
        worker always does); models that do not use it ignore it."""

    @abstractmethod
    def learn_one(self, ts: float, value: float, count: float | None = None) -> None:
        """Learn one window unconditionally, whatever its score and ``ts``.

        ``update`` is the normal entry point. Calling this directly force-learns one window
        (offline replay, tests); a model with bounded influence learns it like any other
        window, so it nudges the baseline rather than resets it to the value.
        """

    @abstractmethod
    def _reset(self) -> None:
        """Build the fresh (empty) learnt state from the parameters."""

    @abstractmethod
    def _get_state(self) -> dict[str, Any]:
        """The learnt state as JSON-able lists, floats and ints."""

    @abstractmethod
    def _set_state(self, state: dict[str, Any]) -> None:
        """Replace the learnt state; raise ValueError if ``state`` does not fit."""

    @abstractmethod
    def _rebase(self) -> None:
        """Move the baseline to the recent level (see ``rebase``)."""

    def _learn_protected(  # noqa: B027 - an optional hook: by default a protected window teaches nothing
        self, ts: float, value: float, verdict: Verdict, count: float | None = None
    ) -> None:
        """Learn what may be learnt from a window flagged with ``protect_anomaly`` set.

        Nothing, by default. A model may learn it into parts of its state that did not judge
        the window and are not trusted yet (see ``SeasonalBaseline``), but never into the
        baseline that flagged it.
        """

    def _take_held(self) -> float | None:
        """The calibration statistic the last ``_learn_protected`` window did not learn (None:
        none, or this model does not calibrate one); handed over once.

        A combiner that finds afterwards that the window belonged to a short, isolated burst
        gives it back through :meth:`_learn_held`: see ``Combined``'s ``burst_windows``.
        """
        return None

    def _learn_held(self, stat: float, weight: float = 1.0) -> None:  # noqa: B027 - an optional hook, as _learn_protected
        """Learn a statistic from :meth:`_take_held` into the score's calibration, late."""

    def learn_damped(self, ts: float, value: float, count: float | None, damp: float) -> None:
        """Learn one window with its pull on the baseline scaled by ``damp`` (0 to 1).

        For a window that is elevated but not flagged (a combiner passes ``damp < 1`` while
        the evidence of a rise is still adding up, so that the baseline does not swallow it
        first). Models whose baseline supports it set ``_damp`` for the duration of
        ``learn_one``; the others learn the window fully.
        """
        self._damp = damp
        try:
            self.learn_one(ts, value, count)
        finally:
            self._damp = 1.0

    _damp: float = 1.0  # see learn_damped (not state: 1 outside of it)

    # -- empty windows in a run (a combiner's update_empty) ---------------------------------

    def _score_empty(self, ts: float) -> tuple[float, float, float, bool, bool] | None:
        """What ``score_one(ts, 0.0, 0.0)`` says, without the verdict: ``(expected, upper, p,
        is_anomaly, exact)``; ``exact`` False: ``upper`` is only a lower bound of it (the exact
        one is costly: :meth:`_empty_upper`, asked before the window is learnt). It leaves
        what :meth:`_learn_empty` of the same window needs. None: this model has no such path
        (a combiner then steps the window with ``update``)."""
        return None

    def _empty_upper(self, ts: float) -> float:
        """The exact ``upper`` of the empty window :meth:`_score_empty` gave a lower bound of."""
        return self.score_one(ts, 0.0, 0.0).upper

    def _learn_empty(self, ts: float) -> None:
        """Learn the empty window :meth:`_score_empty` scored last: ``learn_one(ts, 0.0, 0.0)``."""
        self.learn_one(ts, 0.0, 0.0)

    def _empty_run_ok(self, ends: Sequence[float]) -> bool:
        """Whether :meth:`_empty_run` may take these windows: none of them can be flagged (nor
        anything else make a combiner step one apart). False by default."""
        return False

    def _empty_run(self, ends: Sequence[float], caps: Sequence[float] | None
                   ) -> list[tuple[float, float, float, bool, bool]]:
        """:meth:`_score_empty` and :meth:`_learn_empty` of each of ``ends`` in turn (model by
        model rather than window by window: a combiner's empty windows touch no other model's
        state). The exact upper of window i only where its lower bound is under ``caps[i]``
        (None: nowhere)."""
        out = []
        for i, ts in enumerate(ends):
            e = self._score_empty(ts)
            assert e is not None
            if not e[4] and caps is not None and e[1] < caps[i]:
                e = (e[0], self._empty_upper(ts), e[2], e[3], True)
            out.append(e)
            self._learn_empty(ts)
        return out

    @classmethod
    def _unit_test_params(cls) -> dict[str, Any]:
        """Settings the shared contract tests construct the detector with."""
        return {}

    # -- the shared behaviour -------------------------------------------------------------

    def update(self, ts: float, value: float, count: float | None = None) -> Verdict:
        """Score the window ending at ``ts`` with spend ``value`` (and ``count`` requests, when
        known), then learn it.

        The window is not learnt when it is not newer than the last window seen (a
        redelivery), nor -- when it is flagged and ``protect_anomaly`` is set -- by the
        baseline that flagged it.
        """
        verdict = self.score_one(ts, value, count)
        last = self._last_ts
        if last is None or ts > last:
            if not (verdict.is_anomaly and self.protect_anomaly):
                self.learn_one(ts, value, count)
            else:
                self._learn_protected(ts, value, verdict, count)
            self._last_ts = ts
        return verdict

    def update_empty(self, ends: Sequence[float]) -> list[tuple[float, float, float, bool]]:
        """Windows without spend and without requests, ending at ``ends`` (in order): the same
        state as ``update(ts, 0.0, 0.0)`` for each, to the bit, and of each verdict only
        ``(expected, upper, score, is_anomaly)`` (what a judge's ``recent`` windows keep).

        For a series' empty windows applied in a run (a parked series woken up:
        streams.judge.core). A model may do it faster than ``update`` by skipping what an
        empty window provably does not need (the reason's text, the verdict object, a bound
        no minimum can pick); by default it is ``update`` window by window.
        """
        out = []
        for ts in ends:
            v = self.update(ts, 0.0, 0.0)
            out.append((v.expected, v.upper, v.score, v.is_anomaly))
        return out

    def rebase(self) -> None:
        """Adopt the current level as the new normal, at once.

        For when spend has moved for good -- a migration, a new feature, what on-call answers
        "expected, new normal" to: the windows of a sustained shift are flagged and so not
        learnt (``protect_anomaly``), and the baseline would otherwise stay where it was. Each
        model moves its expectation to the level of the last few windows (flagged or not),
        keeping what it knows about the shape of the day and the week, and ends any alarm it
        holds; the next windows at that level are ordinary.
        """
        self._rebase()

    def reset(self) -> None:
        """Forget everything learnt; keep the parameters."""
        self._last_ts = None
        self._reset()

    def clone(self, **params: Any) -> Self:
        """A fresh detector with the same parameters, optionally some of them replaced."""
        unknown = set(params) - set(self._param_names())
        if unknown:
            raise ValueError(
                f"{type(self).__name__}: unknown parameter(s) {sorted(unknown)}; "
                f"parameters are {list(self._param_names())}"
            )
        return type(self)(**{**self.get_params(), **params})

    def get_params(self) -> dict[str, Any]:
        """The constructor arguments, as given."""
        return {p: getattr(self, p) for p in self._param_names()}

    def to_state(self) -> dict[str, Any]:
        """Everything learnt, as a JSON-able dict (the parameters are not included)."""
        return {
            "detector": self.name,
            "v": self.state_version,
            "last_ts": self._last_ts,
            **self._get_state(),
        }

    def load_state(self, state: dict[str, Any]) -> Self:
        """Replace the learnt state with one from ``to_state``; returns ``self``."""
        if state.get("detector") != self.name:
            raise ValueError(f"state is for detector {state.get('detector')!r}, not {self.name!r}")
        if state.get("v") != self.state_version:
            raise ValueError(
                f"{self.name} state version {state.get('v')!r} is not the supported "
                f"{self.state_version}"
            )
        last_ts = state.get("last_ts")
        if last_ts is not None and not (
            isinstance(last_ts, int | float) and math.isfinite(last_ts)
        ):
            raise ValueError(f"bad last_ts in {self.name} state: {last_ts!r}")
        self._set_state(state)
        self._last_ts = None if last_ts is None else float(last_ts)
        return self

    @classmethod
    def _param_names(cls) -> tuple[str, ...]:
        # Cached per class: inspect.signature costs tens of microseconds.
        cached: tuple[str, ...] | None = cls.__dict__.get("_param_names_cache")
        if cached is None:
            sig = inspect.signature(cls.__init__)
            cached = tuple(
                p.name
                for p in sig.parameters.values()
                if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
            )
            cls._param_names_cache = cached  # type: ignore[attr-defined]
        return cached

    def __setstate__(self, state: Any) -> None:
        """Unpickling (a parked series woken: ``streams.common.packing.unpack_live``): every
        attribute as pickled, but a parameter is the one object of its value that all the
        process's woken detectors hold (``detectors.compact.shared``, ``shared_param``), and so
        is a float equal to one some ``__init__`` derived and shared (a learning rate, a floor)
        or to another shared value (``known``). A clone shares its prototype's parameters; a
        woken detector, built from its pickle, held ~1.5 KiB of floats, strings and tuples of
        its own that were the same values (benchmarks.scale). Floats are immutable and only
        their values are read: every verdict and ``to_state()`` is the same."""
        d, slots = state if isinstance(state, tuple) else (state, None)
        params = self._param_names()
        setattr_ = object.__setattr__
        for part in (d, slots):
            if not part:
                continue
            for k, v in part.items():
                if k in params:
                    v = shared(v) if type(v) is float else shared_param(v)
                elif type(v) is float:
                    v = known(v)
                setattr_(self, k, v)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"
