"""The combiner's sparse-series evidence (``Combined(sparse=True)``, detectors/sparse.py):
evidence summed over the last few dozen requests where no window has enough of them."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from detectors import Combined
from detectors.sparse import SparseEvidence
from tests.detectors.synthetic import MONDAY


def quiet_team(days: float, switch_at: int | None = None, factor: float = 7.0,
               seed: int = 4) -> tuple[list[float], list[float], list[float]]:
    """A team with a request every ~4 minutes ($0.02 each, lognormal sizes): every window has
    0, 1 or 2 requests. From ``switch_at`` on, each request costs ``factor`` times as much (a
    model switch): ~$2 more an hour, never a window with 5 requests."""
    rng = np.random.default_rng(seed)
    n = int(days * 1440)
    ts = MONDAY + 60.0 * np.arange(1, n + 1)
    counts = rng.poisson(0.25, n).astype(float)
    cost = 0.02 * rng.lognormal(0.0, 0.6, n)
    if switch_at is not None:
        cost[switch_at:] *= factor
    return ts.tolist(), (counts * cost).tolist(), counts.tolist()


def run(det: Combined, ts: list[float], spend: list[float], counts: list[float]) -> list[Any]:
    return [det.update(t, v, c) for t, v, c in zip(ts, spend, counts, strict=True)]


def test_a_model_switch_on_a_quiet_team_alerts_only_with_the_sparse_evidence() -> None:
    at = 4 * 1440 - 300  # day 4, 19:00 UTC (two days of history, two of calibration)
    ts, spend, counts = quiet_team(4.5, switch_at=at)
    assert max(counts) < 5  # no window is evidence by itself
    with_sparse = run(Combined(sparse=True), ts, spend, counts)
    without = run(Combined(), ts, spend, counts)
    assert not any(v.is_anomaly for v in without)
    alerts = [i for i, v in enumerate(with_sparse) if v.is_anomaly]
    assert alerts and alerts[0] >= at and alerts[0] - at <= 150  # within 2.5 hours, ~$2 over
    assert with_sparse[alerts[0]].reason.startswith("sparse: ")
    assert not any(v.is_anomaly for v in with_sparse[:at])


def test_the_same_team_without_a_switch_stays_quiet() -> None:
    ts, spend, counts = quiet_team(4.0, seed=9)
    assert not any(v.is_anomaly for v in run(Combined(sparse=True), ts, spend, counts))


@pytest.mark.parametrize("seed", [4, 5])
def test_ordinary_requests_after_an_incident_do_not_alert_again(seed: int) -> None:
    # A 20-minute burst at ten times the price alerts. Its spend stays in the sum for the
    # horizon (over an hour here): before, the next ordinary requests alerted again, each
    # a new alert after the first had resolved (seed 4: 24, 38, 43 windows after it began).
    ts, spend, counts = quiet_team(5.0, seed=seed)
    at = 4 * 1440 + 60
    for i in range(at, at + 20):
        counts[i], spend[i] = 2.0, 0.4
    alerts = [i - at for i, v in enumerate(run(Combined(sparse=True), ts, spend, counts)) if v.is_anomaly]
    assert alerts and 0 <= alerts[0] <= 10
    assert max(alerts) < 20


def test_state_round_trips_and_old_states_load() -> None:
    ts, spend, counts = quiet_team(1.2)
    det = Combined(sparse=True)
    run(det, ts[:1500], spend[:1500], counts[:1500])
    state = json.loads(json.dumps(det.to_state()))
    twin = Combined(sparse=True).load_state(state)
    rest = ts[1500:], spend[1500:], counts[1500:]
    assert run(twin, *rest) == run(det, *rest)
    # a checkpoint from before the sparse evidence (or with it off) loads; it starts afresh
    old = Combined().to_state()
    assert "sparse" not in old
    Combined(sparse=True).load_state(old)
    with pytest.raises(ValueError, match="sparse evidence state"):
        Combined(sparse=True).load_state({**state, "sparse": [state["sparse"][0][:3], 0.0]})
    # one written before the incident flag (ten items) loads, with no incident under way
    ten = {**state, "sparse": [state["sparse"][0][:10], state["sparse"][1]]}
    assert run(Combined(sparse=True).load_state(ten), *rest) == run(Combined(sparse=True).load_state(state), *rest)
    for bad in ([*state["sparse"][0][:10], 2], [*state["sparse"][0][:10], 0, 0]):
        with pytest.raises(ValueError, match="sparse evidence state"):
            Combined(sparse=True).load_state({**state, "sparse": [bad, state["sparse"][1]]})


def test_rebase_forgets_the_evidence() -> None:
    ev = SparseEvidence(min_history=10)
    for i in range(1, 200):
        ev.learn(MONDAY + 60 * i, 0.02, 1.0, normal=True)
    for i in range(200, 260):
        ev.learn(MONDAY + 60 * i, 0.2, 1.0, normal=False)
    assert ev.score(MONDAY + 60 * 260, 0.2, 1.0)[2] > 1.0
    ev.rebase()
    assert ev.cost() == pytest.approx(0.2, rel=0.2)
    assert abs(ev.score(MONDAY + 60 * 261, 0.2, 1.0)[2]) < 0.1


def test_bad_settings_are_refused() -> None:
    for bad in ({"sparse": 1}, {"sparse_requests": 0}, {"sparse_max_windows": 0.5}, {"sparse_gap": -1},
                {"sparse_penalty": 0.5}):
        with pytest.raises(ValueError, match="Combined: sparse"):
            Combined(**bad)
