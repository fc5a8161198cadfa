"""Seeded synthetic spend series shared by the detector tests."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

MONDAY = 1_704_067_200.0
"""2024-01-01 00:00 UTC, a Monday: series start here so hour-of-week slots are easy to read."""


def daily_series(
    days: float,
    *,
    window_seconds: int = 60,
    seed: int = 0,
    base: float = 2.0,
    swing: float = 1.5,
    noise: float = 0.15,
    start: float = MONDAY,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Window end times and spend (USD/window) with a daily shape peaking at 15:00 UTC.

    Spend is the shape times lognormal noise, so it is positive and right-skewed like real spend.
    """
    rng = np.random.default_rng(seed)
    n = int(days * 86400 / window_seconds)
    ts = start + window_seconds * np.arange(1, n + 1, dtype=np.float64)
    hour_of_day = ((ts - window_seconds) % 86400) / 3600
    level = base + swing * np.sin(2 * np.pi * (hour_of_day - 9) / 24)
    spend = level * rng.lognormal(0.0, noise, n) * window_seconds / 60
    return ts, spend


def daily_counts(
    days: float,
    *,
    window_seconds: int = 60,
    seed: int = 0,
    night: float = 0.5,
    day: float = 6.0,
    dispersion: float = 0.0,
    start: float = MONDAY,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Window end times and requests per window: ``night`` at 03:00 UTC to ``day`` at 15:00.

    Poisson counts around that daily shape; with ``dispersion`` the rate of each window is
    itself gamma-distributed (variance = mean + dispersion * mean**2): bursty, agent-like
    traffic.
    """
    rng = np.random.default_rng(seed)
    n = int(days * 86400 / window_seconds)
    ts = start + window_seconds * np.arange(1, n + 1, dtype=np.float64)
    hour_of_day = ((ts - window_seconds) % 86400) / 3600
    rate = night + (day - night) * (1 - np.cos(2 * np.pi * (hour_of_day - 3) / 24)) / 2
    rate = rate * window_seconds / 60
    if dispersion > 0:
        rate = rate * rng.gamma(1 / dispersion, dispersion, n)
    return ts, rng.poisson(rate).astype(np.float64)
