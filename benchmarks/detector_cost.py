"""What each registered detector costs per series: time per update and size of its state.

    python -m benchmarks.detector_cost [--repeat 3] [--days 7] [--seed 0] [--json]

Run it from the repository root with the project's venv. For every detector in
``detectors.DETECTORS`` (default parameters, ``make_detector(name)``), it feeds one realistic
series of 1-min windows with request counts -- the worker's call, ``update(ts, spend, count)``
-- and reports:

- ``us/update``: the median time of one ``update`` call over the series (each call timed on its
  own with ``perf_counter_ns``; cold start included), the median of ``--repeat`` runs;
- ``state B``: the bytes of ``json.dumps(to_state(), separators=(",", ":"))`` after the
  series (what a Faust table would hold per series, parameters excluded);
- both as a ratio to ``seasonal`` (``SeasonalBaseline``) measured in the same run;
- ``empty``: after the series, µs per window of ten empty windows (no spend, no requests: what
  the judge applies when it wakes a parked series) through ``update`` one by one and through
  ``update_empty`` (the same states, :func:`empty_cost`).

The series (:func:`week_of_windows`): a team's requests per minute with a daily shape (2 a
minute at 03:00 UTC, 30 at 15:00), quieter weekends, bursty (negative binomial, dispersion
0.2), priced per request around $0.02 with lognormal noise; plus a 30x spike and a two-hour
4x runaway on the Friday, so that the detectors that flag them run their protected paths too.
Same seed, same series.

One more row, ``combined[seasonal+changepoint+counts]``, is the combiner running those three
side by side (when ``combined`` is registered and takes ``components``): the cost of the full
stack per series.
"""

from __future__ import annotations

import argparse
import json
import pickle
import statistics
import sys
import time
from typing import Any

import numpy as np

from detectors import DETECTORS, make_detector

MONDAY = 1_704_067_200.0  # 2024-01-01 00:00 UTC
REFERENCE = "seasonal"
STACK = ("seasonal", "changepoint", "counts")


def week_of_windows(
    days: float = 7.0, seed: int = 0
) -> tuple[list[float], list[float], list[float]]:
    """Window ends, spend (USD) and requests of ``days`` of 1-min windows of one team."""
    rng = np.random.default_rng(seed)
    n = int(days * 1440)
    ts = MONDAY + 60.0 * np.arange(1, n + 1)
    hour = ((ts - 60) % 86400) / 3600
    weekday = ((ts - 60 - MONDAY) // 86400) % 7
    rate = 2.0 + 28.0 * (1 - np.cos(2 * np.pi * (hour - 3) / 24)) / 2
    rate *= np.where(weekday >= 5, 0.4, 1.0)
    rate *= rng.gamma(5.0, 0.2, n)  # dispersion 0.2: agents come in bursts
    counts = rng.poisson(rate).astype(np.float64)
    # Spend: requests x ~$0.02, a window's mean cost per request noisier when it has few.
    noise = rng.lognormal(0.0, 0.6 / np.sqrt(np.maximum(counts, 1.0)))
    spend = counts * 0.02 * noise
    friday = 4 * 1440
    spend[friday + 600] *= 30  # a spike at 10:00
    spend[friday + 840 : friday + 960] *= 4  # a runaway from 14:00 to 16:00
    counts[friday + 840 : friday + 960] *= 4
    return ts.tolist(), spend.tolist(), counts.tolist()


EMPTY_RUN = 10  # empty windows a parked user series waits on average (spending in 10 % of them)


def empty_cost(det: Any, runs: int = 200) -> tuple[float, float]:
    """Median us per window of ``EMPTY_RUN`` empty windows (no spend, no requests) after ``det``'s
    last, applied as the judge wakes a parked series: ``update(ts, 0.0, 0.0)`` each, and
    ``update_empty`` (the same states: tests/detectors/test_update_empty.py), each on a fresh copy."""
    blob = pickle.dumps(det)
    ends = [det._last_ts + 60.0 * (i + 1) for i in range(EMPTY_RUN)]
    one: list[float] = []
    run: list[float] = []
    for _ in range(runs):
        for out, apply in ((one, lambda d: [d.update(t, 0.0, 0.0) for t in ends]), (run, lambda d: d.update_empty(ends))):
            d = pickle.loads(blob)
            t0 = time.perf_counter_ns()
            apply(d)
            out.append((time.perf_counter_ns() - t0) / EMPTY_RUN / 1000.0)
    return statistics.median(one), statistics.median(run)


def measure(
    name: str, ts: list[float], spend: list[float], counts: list[float]
) -> tuple[float, int, Any]:
    """Median ns of one update over the series, the state's compact JSON bytes after it, and the
    detector."""
    if name.startswith("combined["):
        det = make_detector("combined", components=STACK)
    else:
        det = make_detector(name)
    clock = time.perf_counter_ns
    times = []
    append = times.append
    update = det.update
    for t, v, c in zip(ts, spend, counts, strict=True):
        t0 = clock()
        update(t, v, c)
        append(clock() - t0)
    size = len(json.dumps(det.to_state(), separators=(",", ":"), allow_nan=False))
    return statistics.median(times), size, det


def last_ts_known(det: Any) -> bool:
    return getattr(det, "_last_ts", None) is not None and hasattr(det, "update_empty")


def run(repeat: int, days: float, seed: int) -> list[dict[str, Any]]:
    ts, spend, counts = week_of_windows(days, seed)
    names = sorted(DETECTORS)
    if REFERENCE in names:  # the reference first, so the others are compared with this run's
        names.remove(REFERENCE)
        names.insert(0, REFERENCE)
    if "combined" in names and all(n in names for n in STACK):
        try:
            make_detector("combined", components=STACK)
            names.append(f"combined[{'+'.join(STACK)}]")
        except ValueError:
            pass
    rows = []
    for name in names:
        medians, size, det = [], 0, None
        for _ in range(repeat):
            ns, size, det = measure(name, ts, spend, counts)
            medians.append(ns)
        one, run_ = empty_cost(det) if det is not None and last_ts_known(det) else (float("nan"), float("nan"))
        rows.append({"detector": name, "us_per_update": statistics.median(medians) / 1000.0,
                     "state_bytes": size, "windows": len(ts),
                     "us_per_empty_update": one, "us_per_empty_in_run": run_})
    ref = next((r for r in rows if r["detector"] == REFERENCE), None)
    for r in rows:
        r["time_vs_seasonal"] = r["us_per_update"] / ref["us_per_update"] if ref else None
        r["state_vs_seasonal"] = r["state_bytes"] / ref["state_bytes"] if ref else None
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per detector (median)")
    parser.add_argument("--days", type=float, default=7.0, help="days of 1-min windows")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    args = parser.parse_args(argv)
    if args.repeat < 1 or args.days <= 0:
        parser.error("--repeat must be >= 1 and --days > 0")
    rows = run(args.repeat, args.days, args.seed)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{rows[0]['windows']:,} windows of 60 s with counts, median of {args.repeat} run(s); then "
          f"{EMPTY_RUN} empty windows (a parked series' wake): us per window with update, with update_empty")
    print(
        f"{'detector':<40} {'us/update':>10} {'x seasonal':>11} {'state B':>9} {'x seasonal':>11}"
        f" {'empty: update':>14} {'update_empty':>13}"
    )
    for r in rows:
        tr = "-" if r["time_vs_seasonal"] is None else f"{r['time_vs_seasonal']:.2f}"
        sr = "-" if r["state_vs_seasonal"] is None else f"{r['state_vs_seasonal']:.2f}"
        print(
            f"{r['detector']:<40} {r['us_per_update']:>10.2f} {tr:>11} "
            f"{r['state_bytes']:>9,} {sr:>11} {r['us_per_empty_update']:>14.2f} {r['us_per_empty_in_run']:>13.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
