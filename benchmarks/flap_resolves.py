"""Hysteresis on resolve, measured (branch h-flap-wip): how many alerts, and where they resolve.

    python -m benchmarks.flap_resolves      # after ``python -m benchmarks.detect_fast record``

detect_fast's cached team and team x model series (independent seeds 1-3, project seed 0) go
through the default detector and the team-scale gate; each series' windows then go through a
real :class:`alerts.AlertEngine` (an alert per series: no grouping, no inhibition), with
``resolve_max_excess_pct`` 0 (off) and 50. Printed per setting: alerts started, alerts that
started in a labelled incident and were back to normal (``ended_at``) while it still ran, how
long after the incident's end the others were, and the alerts' length.
"""

from __future__ import annotations

import argparse
import json
import statistics
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from alerts import AlertEngine, AlertPolicy, Signal
from benchmarks import detect_fast as df
from tokenpulse.replay import to_epoch
from tokenpulse.tune import _load

SETTINGS = (0.0, 50.0)


def _alerts(gated: list[Any], vals: dict[str, Any], window: int, pct: float) -> list[tuple[str, str, float, float, float]]:
    """(team, action, started_at, fired_at, ended_at) of every trigger and resolve."""
    eng = AlertEngine(AlertPolicy(resolve_max_excess_pct=pct, group_by=(), inhibit_by_org=False))
    out = []
    for team, name, ts, flags, *_ in gated:
        expected, value = vals[name]
        key = eng.key_for(name)
        for i, t in enumerate(ts.tolist()):
            flagged = bool(flags[i])
            if not flagged and not eng.tracks(key):
                continue  # as the judge: no signal for a normal window of a series without an alert
            s = Signal(series=name, labels={"team": team}, window_start=t - window, window_end=t,
                       observed_usd=float(value[i]), expected_usd=float(expected[i]), is_anomaly=flagged)
            for n in eng.observe(s):
                if n.action in ("trigger", "resolve"):
                    out.append((team, n.action, n.started_at, n.fired_at, n.ended_at or n.fired_at))
    return out


def main() -> None:
    d = df._dir(argparse.Namespace(dir=None))
    res: dict[float, list[Any]] = {p: [] for p in SETTINGS}
    with ProcessPoolExecutor(2) as pool:
        for h in ("i1", "i2", "i3", "p0"):
            ws = _load(d / f"{h}.npz")
            meta = json.loads((d / f"{h}.labels.json").read_text())
            series = sorted(df._team_series(ws), key=lambda s: -len(s.ts))
            w = int(ws.window_seconds)
            results = list(pool.map(df._run_series_full, series, [{}] * len(series), [ws.window_seconds] * len(series)))
            gated = list(df._parent_gate(results, df._team_scale_default(), w, "expected"))
            vals = {r[1]: (r[5], r[7]) for r in results}
            spans = [(str(lab["team"]), to_epoch(lab["start"], "start"), to_epoch(lab["end"], "end"))
                     for lab in meta["labels"] if lab["should_alert"]]
            for p in SETTINGS:
                res[p].append((_alerts(gated, vals, w, p), spans, meta["scored_from"]))
    for p in SETTINGS:
        started = inside = 0
        after: list[float] = []
        length: list[float] = []
        for out, spans, scored_from in res[p]:
            for team, action, st, fired, ended in out:
                if fired < scored_from:
                    continue
                if action == "trigger":
                    started += 1
                    continue
                length.append((ended - st) / 60)
                ends = [e for tm, s, e in spans if tm == team and s <= st <= e]
                if ends and ended < ends[0]:
                    inside += 1  # back to normal while the labelled incident ran
                elif ends:
                    after.append((ended - ends[0]) / 60)
        print(f"resolve_max_excess_pct={p:g}: alerts {started}; started in an incident: back to normal while it ran "
              f"{inside}, after its end {len(after)} (median {statistics.median(after or [0]):.0f} min, max "
              f"{max(after or [0]):.0f}); alert length median {statistics.median(length):.0f} min, "
              f"mean {statistics.mean(length):.0f}, max {max(length):.0f}")


if __name__ == "__main__":
    main()
