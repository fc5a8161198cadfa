"""Hysteresis on resolve, measured: how many alerts, where they resolve, and what it does to detection.

    python -m benchmarks.flap_resolves      # after ``python -m benchmarks.detect_fast record``

detect_fast's cached team and team x model series (independent seeds 1-3, project seed 0) go
through the default detector and the team-scale gate; each series' windows then go through a
real :class:`alerts.AlertEngine` (an alert per series: no grouping, no inhibition), once per
setting of ``resolve_max_excess_pct`` / ``resolve_max_hold_s``: off, the hold uncapped, capped
at 2 h, 1 h (the default) and 30 min, each window's excess measured against the verdict's
baseline (``Signal.baseline_usd``, as the engine does); and, for comparison, the default
measured against the models' expected value instead (``basis=expected``: the hold as it was
first built, which held the alerts of series whose normal windows sit above that value to the
cap). Printed per setting: alerts started, alerts that started
in a labelled incident and were back to normal (``ended_at``) while it still ran, how long
after the incident's end the others were back to normal and were resolved, how many resolved
only at the cap, the alerts' length; and the independent seeds scored
as ``detect_fast run`` scores them (a team's series as one group, with the new-series rule's
flags; recall, false alert starts, median delay), from the engine's triggers and resolves: with
the hold off they are ``detect_fast run``'s own figures.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from alerts import AlertEngine, AlertPolicy, Signal
from alerts.engine import clearly_normal
from benchmarks import detect_fast as df
from tokenpulse.replay import to_epoch
from tokenpulse.tune import _load

# (resolve_max_excess_pct, resolve_max_hold_s, what the excess is measured against): off, the
# hold without a cap, capped; the default against the models' expected value, for comparison
Setting = tuple[float, float, str]
SETTINGS: tuple[Setting, ...] = ((0.0, 0.0, "baseline"), (50.0, float("inf"), "baseline"), (50.0, 7200.0, "baseline"),
                                 (50.0, 3600.0, "baseline"), (50.0, 1800.0, "baseline"), (50.0, 3600.0, "expected"))


def _alerts(gated: list[Any], vals: dict[str, Any], window: int,
            setting: Setting) -> list[tuple[str, str, str, float, float, float, bool]]:
    """(team, series, action, started_at, fired_at, ended_at, at the cap) of every trigger and
    resolve; at the cap: a resolve whose alert the cap released (a window the hold would have
    held counted towards it)."""
    pct, hold, basis = setting
    eng = AlertEngine(AlertPolicy(resolve_max_excess_pct=pct, resolve_max_hold_s=hold, group_by=(),
                                  inhibit_by_org=False))
    out: list[tuple[str, str, str, float, float, float, bool]] = []
    for team, name, ts, flags, *_ in gated:
        expected, value, baseline = vals[name]
        if basis == "expected":
            baseline = expected
        capped = False
        key = eng.key_for(name)
        for i, t in enumerate(ts.tolist()):
            flagged = bool(flags[i])
            if not flagged and not eng.tracks(key):
                continue  # as the judge: no signal for a normal window of a series without an alert
            s = Signal(series=name, labels={"team": team}, window_start=t - window, window_end=t,
                       observed_usd=float(value[i]), expected_usd=float(expected[i]), is_anomaly=flagged,
                       mean_expected_usd=float(baseline[i]))
            st = eng.state_for(key)
            if flagged:
                capped = False  # a material window starts the resolve over
            elif st is not None and st["status"] == "firing" and not clearly_normal(
                    eng.policy, s.observed_usd, s.baseline_usd):
                # over the bar: it counts only because of the cap
                last = st["last_material_end"]
                capped = capped or (last is not None and t - last >= hold)
            for n in eng.observe(s):
                if n.action in ("trigger", "resolve"):
                    out.append((team, name, n.action, n.started_at, n.fired_at, n.ended_at or n.fired_at,
                                n.action == "resolve" and capped))
                    capped = False
    return out


def _team_starts(out: list[tuple[str, str, str, float, float, float, bool]], new_series: dict[str, Any],
                 window: int, resolve_after: int) -> dict[str, list[float]]:
    """Alert starts per team as ``detect_fast run`` scores them (a team's series as one group):
    the end of a series' first window that fires while no alert of the team is open. A series'
    alert is open from that window to the one that resolves it; a window the new-series rule
    flags keeps its team's open for ``resolve_after`` windows (its alerts have no baseline: no hold)."""
    spans: dict[str, list[tuple[float, float]]] = defaultdict(list)
    opened: dict[str, tuple[str, float]] = {}
    for team, series, action, _, fired, *_ in out:
        if action == "trigger":
            opened[series] = (team, fired)
        else:
            spans[team].append((opened.pop(series)[1], fired))
    for team, at in opened.values():
        spans[team].append((at, math.inf))  # still open at the end
    for team, (ts, _) in new_series.items():
        spans[team] += [(t, t + resolve_after * window) for t in ts.tolist()]
    starts: dict[str, list[float]] = {}
    for team, got in spans.items():
        end = -math.inf
        starts[team] = []
        for s, e in sorted(got):
            if s > end:  # a window that fires as the team's last alert resolves is no new start
                starts[team].append(s)
            end = max(end, e)
    return starts


def main() -> None:
    d = df._dir(argparse.Namespace(dir=None))
    new_series = df._new_series(argparse.Namespace(new_series="policy", new_series_params=[]))
    resolve_after = AlertPolicy().resolve_after_windows
    res: dict[Setting, list[Any]] = {p: [] for p in SETTINGS}
    scores: dict[Setting, dict[str, list[Any]]] = {p: {"rows": [], "false": [], "tw": [0.0]} for p in SETTINGS}
    with ProcessPoolExecutor(2) as pool:
        for h in ("i1", "i2", "i3", "p0"):
            ws = _load(d / f"{h}.npz")
            meta = json.loads((d / f"{h}.labels.json").read_text())
            series = sorted(df._team_series(ws), key=lambda s: -len(s.ts))
            w = int(ws.window_seconds)
            results = list(pool.map(df._run_series_full, series, [{}] * len(series), [ws.window_seconds] * len(series)))
            gated = list(df._parent_gate(results, df._team_scale_default(), w, "expected"))
            vals = {r[1]: (r[5], r[7], r[8]) for r in results}
            flagged_new = df._new_series_flags(ws, new_series) if new_series is not None else {}
            spans = [(str(lab["team"]), to_epoch(lab["start"], "start"), to_epoch(lab["end"], "end"))
                     for lab in meta["labels"] if lab["should_alert"]]
            for p in SETTINGS:
                out = _alerts(gated, vals, w, p)
                res[p].append((out, spans, meta["scored_from"]))
                if h.startswith("i"):  # scored as detect_fast scores the independent seeds
                    sc = df._score(_team_starts(out, flagged_new, w, resolve_after), meta["labels"],
                                   meta["scored_from"], ws.last_ts or 0.0, ws.teams)
                    scores[p]["rows"] += sc["rows"]
                    scores[p]["false"] += sc["false"]
                    scores[p]["tw"][0] += sc["team_weeks"]
    for p in SETTINGS:
        started = inside = at_cap = 0
        after: list[float] = []
        resolved_after: list[float] = []
        length: list[float] = []
        for out, spans, scored_from in res[p]:
            for team, _, action, st, fired, ended, cap in out:
                if fired < scored_from:
                    continue
                if action == "trigger":
                    started += 1
                    continue
                at_cap += cap
                length.append((ended - st) / 60)
                ends = [e for tm, s, e in spans if tm == team and s <= st <= e]
                if ends and ended < ends[0]:
                    inside += 1  # back to normal while the labelled incident ran
                elif ends:
                    after.append((ended - ends[0]) / 60)
                    resolved_after.append((fired - ends[0]) / 60)
        rows, false, tw = scores[p]["rows"], scores[p]["false"], scores[p]["tw"][0]
        delays = [r[3] / 60 for r in rows if r[3] is not None]
        print(f"resolve_max_excess_pct={p[0]:g} resolve_max_hold_s={p[1]:g} basis={p[2]}: alerts {started}; started "
              f"in an incident: back to normal while it ran {inside}, after its end {len(after)} (median "
              f"{statistics.median(after or [0]):.0f} min, max {max(after or [0]):.0f}; resolved median "
              f"{statistics.median(resolved_after or [0]):.0f} min after it, max {max(resolved_after or [0]):.0f}); "
              f"resolved at the cap {at_cap}; alert length median "
              f"{statistics.median(length):.0f} min, mean {statistics.mean(length):.0f}, max {max(length):.0f}; "
              f"independent 1-3 scored per team: recall {len(delays)}/{len(rows)}, false {len(false)} / {tw:.1f} tw, "
              f"median delay {statistics.median(delays) if delays else float('nan'):.1f} min")


if __name__ == "__main__":
    main()
