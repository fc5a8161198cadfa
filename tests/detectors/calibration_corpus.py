"""A varied corpus of normal (incident-free) series for the score-calibration contract.

Scales from a tenth of a cent to $1,000 per window, smooth to bursty noise, daily and weekly
shapes, and sparse series that are a few priced requests at night. Every series is windows of
60 s with request counts, as the worker sees them.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from tests.detectors.synthetic import MONDAY

Series = tuple[str, NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]


def corpus(days: float = 5.0, seed: int = 0) -> list[Series]:
    """``(name, ts, spend, counts)`` for each series of the corpus, all starting on a Monday."""
    rng = np.random.default_rng(seed)
    n = int(days * 1440)
    ts = MONDAY + 60.0 * np.arange(1, n + 1)
    hour = ((ts - 60) % 86400) / 3600
    weekday = ((ts - 60 - MONDAY) // 86400) % 7
    daily = 1 + 0.75 * np.sin(2 * np.pi * (hour - 9) / 24)
    office = 0.2 + np.exp(-((hour - 14) ** 2) / (2 * 3.0**2))
    out: list[Series] = []

    def priced(name: str, rate: NDArray[np.float64], cost: float, sd: float, disp: float = 0.0) -> None:
        if disp > 0:
            rate = rate * rng.gamma(1 / disp, disp, n)
        counts = rng.poisson(rate).astype(np.float64)
        # each request's price varies; a window's spend is the sum of its requests'
        spend = counts * cost * rng.lognormal(0.0, sd / np.sqrt(np.maximum(counts, 1.0)), n)
        out.append((name, ts, spend, counts))

    def smooth(name: str, level: NDArray[np.float64], noise: float, per_request: float) -> None:
        spend = level * rng.lognormal(0.0, noise, n)
        counts = np.maximum(1.0, np.round(spend / per_request))
        out.append((name, ts, spend, counts))

    smooth("tenth-of-a-cent", 0.001 * daily, 0.3, 0.0005)
    smooth("two-dollars", 2.0 * daily, 0.15, 0.02)
    smooth("thousand-dollars-smooth", 1000.0 * (1 + 0.2 * np.sin(2 * np.pi * hour / 24)), 0.02, 5.0)
    smooth("fifty-dollars-bursty", 50.0 * office, 0.5, 0.5)
    smooth("weekly", 5.0 * office * np.where(weekday >= 5, 0.3, 1.0), 0.1, 0.05)
    priced("sparse-nights", 3.0 * office ** 2, 0.05, 0.6)
    priced("agents-bursty", 20.0 * daily, 0.02, 0.6, disp=0.3)
    priced("quiet", 0.3 * np.ones(n), 0.2, 0.4)
    return out
