"""Pure online detectors of token-spend anomalies, one model per series.

numpy/scipy/river only: no I/O, no Faust, no imports from ``alerts``, ``streams`` or
``tokenpulse``, so the worker and the offline replay run the very same code.

>>> det = make_detector("seasonal", threshold=8, min_history=10)
>>> det  # doctest: +ELLIPSIS
SeasonalBaseline(window_seconds=60.0, threshold=8, min_history=10, ..., protect_anomaly=True)
>>> _ = det.update(1_700_000_040.0, 1.25)
>>> twin = detector_from_state("seasonal", det.get_params(), det.to_state())
>>> twin.to_state() == det.to_state()
True
"""

from __future__ import annotations

from typing import Any

from detectors.base import Detector, Verdict
from detectors.changepoint import LevelShift
from detectors.combined import Combined
from detectors.counts import CountTail
from detectors.forecast import BurnForecaster, Forecast, burn_alert
from detectors.naive import NaiveRolling
from detectors.river_model import RiverForecast
from detectors.seasonal import SeasonalBaseline

__all__ = [
    "DEFAULT_DETECTOR",
    "DETECTORS",
    "BurnForecaster",
    "Combined",
    "CountTail",
    "Detector",
    "Forecast",
    "LevelShift",
    "NaiveRolling",
    "RiverForecast",
    "SeasonalBaseline",
    "Verdict",
    "burn_alert",
    "detector_from_state",
    "make_detector",
]

DETECTORS: dict[str, type[Detector]] = {
    SeasonalBaseline.name: SeasonalBaseline,
    NaiveRolling.name: NaiveRolling,
    LevelShift.name: LevelShift,
    CountTail.name: CountTail,
    Combined.name: Combined,
    RiverForecast.name: RiverForecast,
}
"""Registry: policy name -> detector class. A new model adds one line here and gets the shared
contract tests for free."""

DEFAULT_DETECTOR = Combined.name
"""What ``"default"`` means: the combiner, whose components and thresholds come from the policy."""


def make_detector(name: str = "default", **params: Any) -> Detector:
    """Build a detector by registry name; ``params`` are its constructor arguments.

    Raises ``ValueError`` for an unknown name or parameter, or a bad value, so a policy file can
    be validated at start by building one detector per section.
    """
    cls = DETECTORS.get(DEFAULT_DETECTOR if name == "default" else name)
    if cls is None:
        known = ", ".join(["default", *sorted(DETECTORS)])
        raise ValueError(f"unknown detector {name!r}; known detectors: {known}")
    allowed = cls._param_names()
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise ValueError(
            f"detector {cls.name!r} has no parameter(s) {', '.join(unknown)}; "
            f"its parameters: {', '.join(allowed)}"
        )
    return cls(**params)


def detector_from_state(name: str, params: dict[str, Any], state: dict[str, Any]) -> Detector:
    """Rebuild a detector from its registry name, parameters and ``to_state()`` output."""
    return make_detector(name, **params).load_state(state)
