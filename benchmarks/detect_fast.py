"""A fast loop for detector work: cached window arrays per history, the detector rerun on them.

    python -m benchmarks.detect_fast record [--independent 1 2 3] [--project 0] [--dir D]
    python -m benchmarks.detect_fast run [--independent 1 2 3] [--project 0] [--params k=v ...]
                                         [--jobs 2] [--verbose] [--new-series on|off]
                                         [--hourly off|team|all] [--hourly-params k=v ...]
                                         [--wow [k=v ...]] [--burst [k=v ...] | --no-burst]
    python -m benchmarks.detect_fast show HISTORY TEAM FROM [--minutes 120] [--params k=v ...]
    python -m benchmarks.detect_fast notify [--independent 1 2 3] [--project 0] [--new-series-params k=v ...]
    python -m benchmarks.detect_fast falses [--independent 1 2 3] [--project 0] [--list] [run's options]
    python -m benchmarks.detect_fast misses [--independent 1 2 3] [--project 0] [run's options]

``record`` writes each history once (the independent generator's seeds, the project
generator's), runs it through the worker's ingest and judge with recording detectors
(``tokenpulse.tune.record_windows``) and keeps every series' windows and the labels in
``--dir`` (default ``$TMPDIR/tokenpulse-detect-fast``). ``run`` then replays only the
detectors on the team and team x model series (the ones ``benchmarks.detectors`` scores),
turns their decisions into alerts per team (one group per team: a trigger when no series of the
team was alerting, resolved after the policy's ``resolve_after_windows`` quiet windows) and
scores them like ``benchmarks.detectors`` (recall, false alerts per team-week, median delay,
misses and false alerts listed); the org stage's new-series rule
(:class:`streams.org.newseries.NewSeriesRule`) runs over the same windows and its flagged windows
join their team's (``--new-series``: as the default policy has it, or on/off). ``--hourly team``
(an experiment, off by default) also runs the default detector over each team series' minute
windows summed into hours (:func:`_hourly`; ``all``: the team x model series' too, under the
team-scale gate and the corroboration's p-value) and ORs its flags into the team's, each flagged hour holding the alert until the
next hour's verdict (:func:`_hold`). ``--wow`` (an experiment, off unless given) ORs in a
week-over-week hourly judge of each team series the same way (:func:`_week_over_week`: the last
hours against the same hours a week before, scaled by growth, with a second week and an hour's
shift allowed, optionally only in hours with a surprising minute the team did not alert in).
``--burst`` (on by default, as the policy's ``detector.team_burst``; ``--no-burst``) ORs in the
org stage's team burst rule (:func:`_team_burst`: a team series' spend since the first of at
least 2 surprising windows among its last 30, 3x its detector's expected spend there and more
by an hour of the team's mean spend, at least $0.50). ``show`` prints
the per-window verdicts of one team series around a time: observed, expected, score, each
component's p-value and flag, the gate. ``notify`` steps the new-series rule and a real
:class:`alerts.AlertEngine` (the default policy's ``alerts`` section, grouping by team) together
over the same windows, as the org stage does, and counts the rule's notifications per labelled
incident (its first notifications are the pages on-call gets; the worsened updates and resolves
are listed apart) and outside any. ``falses`` and ``misses`` take ``run``'s options and score its
flags through the same code path (:func:`_flags_of`: the week-over-week judge and the team burst
rule included). ``falses`` breaks ``run``'s false alert starts
down: which series flagged the window that started the alert (team, team x model, new-series,
hourly, week-over-week, team-burst), which model led its p-value (from the verdict's reason: seasonal, changepoint, counts,
sparse), and what the history was doing then (the should-not-alert label it falls in, the hours
after one, or nothing labelled: ordinary traffic), with the team's usual spend a day.
``misses``, for each of ``run``'s missed incidents, says why each series of its team did
not alert in its span: never surprising (no window's models' p reached the threshold: the money
gate never had an incident to count), surprising but under the money gate (how far the
incident's running excess got in a surprising window, against the gate there), or flagged (held
back by the team-scale gate).

It approximates the full replay (grouping and the org alert's inhibition are left out), in a
fraction of its time: confirm a change with ``python -m benchmarks.detectors``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import yaml

GRACE_S = 900.0


def _dir(a: argparse.Namespace) -> Path:
    d = Path(a.dir or os.path.join(tempfile.gettempdir(), "tokenpulse-detect-fast"))
    d.mkdir(parents=True, exist_ok=True)
    return d


def _cfg() -> Any:
    from tokenpulse.policy import Policy
    from tokenpulse.runtime import stream_config
    from tokenpulse.settings import Settings

    return stream_config(Settings(), Policy(), bootstrap="", partitions=1)


def _record_one(kind: str, seed: int, d: str) -> str:
    from tokenpulse.replay import to_epoch
    from tokenpulse.tune import _save, record_windows

    out = Path(d) / f"{kind}{seed}.npz"
    if out.is_file():
        return f"{out.name}: cached"
    t = time.perf_counter()
    path = Path(d) / f"{kind}{seed}.jsonl"
    if kind == "i":
        from benchmarks.independent.generator import generate as generate_independent

        events, labels, meta = generate_independent(seed, days=21.0, burn_in_days=7.0)
        with open(path, "wb") as f:
            events.write_jsonl(f)
        scored_from = to_epoch(meta["burn_in_end"], "burn_in_end")
        labels = [{**lab, "kind": lab.get("name", "")} for lab in labels]
    else:
        from tokenpulse.workload import generate

        wl = generate(seed, 21.0)
        wl.write_jsonl(path)
        labels, scored_from = wl.labels, wl.scored_from
    ws = record_windows(path, _cfg())
    _save(ws, out)
    path.unlink()
    clean = [{k: (v if isinstance(v, (int, float, str, bool)) or v is None else str(v)) for k, v in lab.items()}
             for lab in labels]
    (Path(d) / f"{kind}{seed}.labels.json").write_text(json.dumps({"labels": clean, "scored_from": scored_from}))
    return f"{out.name}: {sum(len(s.ts) for s in ws.series):,} windows in {time.perf_counter() - t:.0f}s"


def _histories(a: argparse.Namespace) -> list[tuple[str, int]]:
    return [("i", s) for s in a.independent] + [("p", s) for s in a.project]


def _params(items: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for it in items:
        k, _, v = it.partition("=")
        val = yaml.safe_load(v)
        if "." in k:  # component.param
            comp, _, p = k.partition(".")
            out.setdefault("component_params", {}).setdefault(comp, {})[p] = val
        else:
            out[k] = val
    return out


def _team_series(ws: Any) -> list[Any]:
    return [s for s in ws.series if "team" in s.labels and set(s.labels) <= {"org", "team", "model"}]  # of any org


def _run_series(sw: Any, params: dict[str, Any], window: int) -> tuple[str, np.ndarray, np.ndarray]:
    team, _, ts, flags, *_ = _run_series_full(sw, params, window)
    return team, ts, flags


def _run_series_full(sw: Any, params: dict[str, Any], window: int
                     ) -> tuple[str, str, np.ndarray, np.ndarray, list[str], np.ndarray, np.ndarray, np.ndarray,
                                np.ndarray, np.ndarray]:
    """One series through the default detector: its team, name, window ends, flags, the reason
    of each flagged window, and per window the verdict's expected spend, the excess the
    team-scale gate compares (the incident's, else the window's own: as the judge's signal), the
    spend, the verdict's baseline (``Verdict.baseline``: what a fired alert's window is back
    to normal against) and its surprise p-value (``Verdict.upward_p``: what the team
    corroboration reads of a team series)."""
    from detectors import make_detector

    det = make_detector("default", window_seconds=float(window), **params)
    ts, v, c = sw.ts.tolist(), sw.value.tolist(), sw.count.tolist()
    flags = np.zeros(len(ts), dtype=bool)
    expected = np.zeros(len(ts))
    baseline = np.zeros(len(ts))
    impact = np.zeros(len(ts))
    up = np.ones(len(ts))
    reasons: list[str] = []
    upd = det.update
    for i in range(len(ts)):
        ci = c[i]
        vd = upd(ts[i], v[i], None if ci < 0 else ci)
        expected[i] = vd.expected
        baseline[i] = vd.baseline
        up[i] = vd.upward_p
        impact[i] = vd.impact if vd.impact is not None else vd.observed - vd.expected
        if vd.is_anomaly:
            flags[i] = True
            reasons.append(f"{vd.reason.partition(':')[0]} x{vd.observed / vd.expected if vd.expected > 0 else float('inf'):.3g}")
    return sw.labels["team"], sw.series, sw.ts, flags, reasons, expected, impact, sw.value, baseline, up


def _basis_expected(r: Any, window: int) -> np.ndarray:
    return np.asarray(r[5])


def _basis_mean(r: Any, window: int) -> np.ndarray:
    """The team's mean spend per window over the (at most 7) whole UTC days before each window's
    day, as the org stage's per-team day sums give it (0 on its first day)."""
    ts = np.asarray(r[2])
    value = np.asarray(r[7])
    day = ((ts - window) // 86400).astype(int)
    d0 = int(day.min())
    sums = np.bincount(day - d0, weights=value)
    out = np.zeros(len(ts))
    for d in range(len(sums)):
        prev = sums[max(0, d - 7):d]
        if len(prev):
            out[day - d0 == d] = prev.mean() / (86400.0 / window)
    return out



def _parent_gate(results: list[Any], minutes: float, window: int, basis: str = "expected") -> list[Any]:
    """The team-scale gate (``--parent-minutes``; the policy's by default): a team x model
    series' flagged window counts only when its incident's excess reaches ``minutes`` of its team
    series' expected spend in that window. The comparison is the worker's own
    (:func:`streams.org.core.team_scale_keeps`, which ``OrgCore.team_scale`` uses), made on the
    fast loop's arrays; ``basis="mean"`` (an experiment) swaps the team's expected spend for its
    mean of the days before."""
    from streams.org.core import team_scale_keeps

    if minutes <= 0:
        return results
    basis_of = _basis_mean if basis == "mean" else _basis_expected
    team_exp = {r[0]: dict(zip(r[2].tolist(), basis_of(r, window).tolist(), strict=True))
                for r in results if "|model=" not in r[1]}
    out = []
    for r in results:
        team, name, ts, flags, reasons, expected, impact, value, *rest = r
        if "|model=" in name and r[0] in team_exp:
            te = team_exp[team]
            keep = flags.copy()
            kept_reasons = []
            for j, i in enumerate(np.flatnonzero(flags).tolist()):
                team_expected = te.get(float(ts[i]), 0.0)
                # a team with no expected spend gates nothing (as OrgCore.team_scale)
                if team_expected and not team_scale_keeps(float(impact[i]), team_expected, minutes, window):
                    keep[i] = False
                else:
                    kept_reasons.append(reasons[j])
            r = (team, name, ts, keep, kept_reasons, expected, impact, value, *rest)
        out.append(r)
    return out


class _WeekAgo:
    """A team series' week-ago reference as the org stage keeps it (the new-series rule's
    hourly sums of the team's spend, folded up to a window's start), from its cached windows:
    :meth:`ratio` is :func:`streams.org.newseries.week_ratio` over the same sums."""

    def __init__(self, ts: np.ndarray, value: np.ndarray, window: int) -> None:
        self.start = np.asarray(ts, dtype=float) - window
        self.cs = np.concatenate([[0.0], np.cumsum(np.asarray(value, dtype=float))])
        spent = np.flatnonzero(np.asarray(value) > 0)
        self.first = float(self.start[spent[0]]) if len(spent) else None

    def _sum(self, a: float, b: float) -> float:
        """The spend of the windows starting in [a, b)."""
        i, j = np.searchsorted(self.start, [a, b])
        return float(self.cs[j] - self.cs[i])

    def ratio(self, at: float, shifts: tuple[int, ...] = (0,)) -> float | None:
        from streams.org.newseries import HOUR_S, WEEK_HOURS, week_ratio

        if self.first is None or at - self.first < WEEK_HOURS * HOUR_S + HOUR_S:
            return None
        h = int(at // HOUR_S)
        ago = {h - WEEK_HOURS + s - k for s in shifts for k in (0, 1)}
        hours = {x: self._sum(x * HOUR_S, (x + 1) * HOUR_S) for x in {h - 1, *ago}}
        hours[h] = self._sum(h * HOUR_S, at)
        return week_ratio(hours, at, shifts)


def _corroborate(results: list[Any], limit: float, resolve_after: int = 3, strict: float = 0.0,
                 week_ratio_min: float = 0.0, window: int = 60, shifts: tuple[int, ...] = (0,)) -> list[Any]:
    """The team corroboration (``--corroborate``; the policy's ``detector.team_corroboration_p``
    by default): a team x model series' flagged window counts only when its team series' surprise
    p-value in the same window is at most ``limit`` (and, with ``strict`` and ``week_ratio_min``,
    the policy's ``team_corroboration_strict_p`` and ``team_week_ratio``: at most ``strict`` or
    the team's last hour at least ``week_ratio_min`` times the same hour a week before, the
    worker's :func:`streams.org.core.corroborated` on the org stage's week-ago reference; ``shifts``:
    the hours a week before it takes the most of, ``(-1, 0, 1)`` for the policy's
    ``team_week_shift_h`` 1), or
    when it follows a counted window of the series within ``resolve_after`` windows (the
    worker's org stage: the engine tracks that alert already). A team without a window there
    gates nothing (as ``OrgCore.corroborate``)."""
    from streams.org.core import corroborated

    if limit <= 0:
        return results
    team_p = {r[0]: dict(zip(r[2].tolist(), r[9].tolist(), strict=True)) for r in results if "|model=" not in r[1]}
    weeks = ({r[0]: _WeekAgo(r[2], r[7], window) for r in results if "|model=" not in r[1]}
             if strict > 0 and week_ratio_min > 0 else {})
    out = []
    for r in results:
        team, name, ts, flags, reasons, *rest = r
        if "|model=" in name and team in team_p:
            tp = team_p[team]
            wk = weeks.get(team)
            keep = flags.copy()
            kept_reasons = []
            last = -(10 ** 9)
            for j, i in enumerate(np.flatnonzero(flags).tolist()):
                p = tp.get(float(ts[i]))
                week = (wk.ratio(float(ts[i]) - window, shifts) if wk is not None and p is not None and limit >= p > strict
                        else None)
                if p is None or corroborated(p, limit, strict, week_ratio_min, week) or i - last <= resolve_after:
                    last = i
                    kept_reasons.append(reasons[j])
                else:
                    keep[i] = False
            r = (team, name, ts, keep, kept_reasons, *rest)
        out.append(r)
    return out


def _confirm_shift(results: list[Any], ratio_min: float, resolve_after: int = 3, window: int = 60,
                   shifts: tuple[int, ...] = (0,)) -> list[Any]:
    """The week-ago check of a sustained shift (``--shift-week-ratio``; the policy's
    ``detector.shift_week_ratio`` by default): a team or team x model series' flagged window led by
    the sustained-shift model (its reason's first word, as :func:`_run_series_full` keeps it)
    counts only while the team's last hour is at least ``ratio_min`` times its week-ago reference
    (:class:`_WeekAgo`, the org stage's; ``shifts``: the hours a week before it takes the most
    of), the worker's :func:`streams.org.core.shift_confirmed`, or when it follows a counted
    window of the series within ``resolve_after`` windows (the engine tracks that alert, as
    ``OrgCore.confirm_shift``). Without a reference nothing is checked."""
    from streams.org.core import SHIFT_LEAD, shift_confirmed

    if ratio_min <= 0:
        return results
    weeks = {r[0]: _WeekAgo(r[2], r[7], window) for r in results if "|model=" not in r[1]}
    out = []
    for r in results:
        team, name, ts, flags, reasons, *rest = r
        wk = weeks.get(team)
        if wk is None or not any(x.split()[0] == SHIFT_LEAD for x in reasons):
            out.append(r)
            continue
        keep = flags.copy()
        kept_reasons = []
        last = -(10 ** 9)
        for j, i in enumerate(np.flatnonzero(flags).tolist()):
            lead = reasons[j].split()[0]
            if (lead != SHIFT_LEAD or i - last <= resolve_after
                    or shift_confirmed(lead, wk.ratio(float(ts[i]) - window, shifts), ratio_min)):
                last = i
                kept_reasons.append(reasons[j])
            else:
                keep[i] = False
        out.append((team, name, ts, keep, kept_reasons, *rest))
    return out


def _rule_rows(ws: Any) -> tuple[dict[float, list[tuple[str, int, int]]], list[float]]:
    """The new-series rule's input from the cached windows of the team and team x model series:
    per window end its spend rows (series, nano-dollars, requests), and every window end in order."""
    from streams.org.newseries import NANO_USD

    series = _team_series(ws)
    rows: dict[float, list[tuple[str, int, int]]] = defaultdict(list)
    for sw in series:
        c = np.maximum(sw.count, 0)
        live = (c > 0) | (sw.value > 0)
        for t, v, n in zip(sw.ts[live].tolist(), sw.value[live].tolist(), c[live].tolist(), strict=True):
            rows[t].append((sw.series, round(v * NANO_USD), int(n)))
    return rows, sorted({t for sw in series for t in sw.ts.tolist()})


def _new_series_flags(ws: Any, settings: dict[str, Any]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The org stage's new-series rule (:class:`streams.org.newseries.NewSeriesRule`, the class
    the worker's org stage steps) driven window by window over the team and team x model series'
    cached windows: the windows it flags, per team."""
    from streams.org.newseries import NewSeriesRule, NewSeriesSettings

    rule = NewSeriesRule(NewSeriesSettings(**settings))
    window = int(ws.window_seconds)
    rows, times = _rule_rows(ws)
    flagged: dict[str, list[float]] = defaultdict(list)
    for t in times:
        for sg in rule.judge_window(int(t) - window, int(t), rows.get(t, ()), []):
            if sg.is_anomaly:
                flagged[sg.labels["team"]].append(t)
    return {team: (np.array(ts), np.ones(len(ts), dtype=bool)) for team, ts in flagged.items()}


def _new_series_notes(ws: Any, settings: dict[str, Any], alert_policy: dict[str, Any]) -> list[Any]:
    """The notifications of the new-series rule's alerts alone: the rule stepped window by window
    with the alert engine, which tells it which alerts it tracks (as ``OrgCore.step_window``)."""
    from alerts import AlertEngine, AlertPolicy
    from streams.org.newseries import NewSeriesRule, NewSeriesSettings

    rule = NewSeriesRule(NewSeriesSettings(**settings))
    engine = AlertEngine(AlertPolicy.from_dict(alert_policy))
    window = int(ws.window_seconds)
    rows, times = _rule_rows(ws)
    notes: list[Any] = []
    for t in times:
        sigs = rule.judge_window(int(t) - window, int(t), rows.get(t, ()), [],
                                 lambda s: engine.tracks(engine.key_for(s)))
        notes += engine.observe_window(sigs, float(t))
    return notes


HOUR_S = 3600


def _hourly(sw: Any, window: int, hour: int = HOUR_S) -> Any:
    """One series' minute windows summed into hour windows: spend and requests per hour, each
    hour ending at its last minute window's end (a window ending at ``ts`` belongs to the hour
    it starts in, as :class:`detectors.seasonal.SeasonalBaseline` places it). Only hours that
    have ended by the series' last window are kept (the last, partial hour is not judged); a
    series' first hour may be partial (it started then). Requests are unknown (-1) in an hour
    only when they were unknown in all its windows."""
    from tokenpulse.tune import SeriesWindows

    ts = np.asarray(sw.ts, dtype=float)
    if len(ts) == 0:
        return SeriesWindows(sw.series, sw.labels, ts, np.zeros(0), np.zeros(0))
    h = ((ts - window) // hour).astype(np.int64)  # the hour each window starts in
    h0 = int(h[0])
    idx = h - h0
    n = int(idx[-1]) + 1
    value = np.bincount(idx, weights=np.asarray(sw.value, dtype=float), minlength=n)
    c = np.asarray(sw.count, dtype=float)
    count = np.bincount(idx, weights=np.maximum(c, 0.0), minlength=n)
    known = np.bincount(idx, weights=(c >= 0).astype(float), minlength=n)
    count[known == 0] = -1.0
    present = np.bincount(idx, minlength=n) > 0
    ends = (np.arange(n) + h0 + 1) * float(hour)
    keep = present & (ends <= ts[-1])
    return SeriesWindows(sw.series, sw.labels, ends[keep], value[keep], count[keep])


def _hold(ts: np.ndarray, flags: np.ndarray, window: int, hour: int = HOUR_S) -> tuple[np.ndarray, np.ndarray]:
    """An hour window's flags on the minute grid: a flag at an hour's end holds the team's alert
    until the next hour's verdict (the hour's end minute and the minutes after it, up to the next
    hour's end), so that flagged hours in a row make one alert, as they would in a worker that
    judges the hour once it ends."""
    t = np.asarray(ts, dtype=float)[np.asarray(flags, dtype=bool)]
    if len(t) == 0:
        return np.zeros(0), np.zeros(0, dtype=bool)
    steps = np.arange(hour // window) * float(window)
    out = np.unique((t[:, None] + steps[None, :]).ravel())
    return out, np.ones(len(out), dtype=bool)


WEEK_H = 7 * 24


def _week_over_week(ts: np.ndarray, value: np.ndarray, up: np.ndarray, window: int, k: int = 3,
                    ratio: float = 8.0, excess_hours: float = 3.0, growth: str = "none", weeks: int = 2,
                    q: float = 1e-4, m: int = 0, floor_usd: float = 2.0, shift: int = 1,
                    quiet: bool = True, flagged: np.ndarray | None = None) -> np.ndarray:
    """The week-over-week hourly judge of one team series (the org stage's, ``run --wow``): the ends of
    the closed UTC hours it flags. At the end of hour ``h`` the team's spend over the last ``k``
    hours is compared with the same ``k`` hours a week before, scaled by the week's growth
    (``growth="day"``: the 24 hours before those ``k`` against the same 24 hours a week before;
    ``"week"``: the 168 hours before them against the 168 before those; ``"none"``: unscaled; a
    growth below 1 counts as 1, and a span the team was not yet seen in gives none), and, with
    ``weeks=2``, the same two weeks before once the team is known that long: the larger of the
    two references (a week-ago holiday or a moved batch does not read as new money). Each week's
    reference is the largest of the ``k`` hours at the same time and up to ``shift`` hours either
    side (a daily job that daylight saving moved by an hour is not new money). A flag: the
    last ``k`` hours at least ``ratio`` times the reference and above it by at least
    ``excess_hours`` x ``k`` hours of the team's mean hourly spend over the week before them (and
    ``floor_usd``); with ``m`` > 0, only if at least ``m`` of the team series' minute windows in
    those hours had a surprise p-value at most ``q``; with ``quiet``, only if none of the team's
    windows in those hours was flagged already (``flagged``: the ends of the team's flagged
    windows: the hourly judge speaks for hours its minute alerts did not). The defaults are the
    setting chosen on 2026-12-07 (docs/detection-log.md, "Week-over-week hourly evidence"). The team
    must be known a week and ``k``
    hours (its first spending window). Hours are the minute windows' sums by the hour each window
    starts in (as :func:`_hourly`); an hour is judged once it has ended by the series' last window."""
    k, weeks, m, shift = int(k), int(weeks), int(m), int(shift)  # from the command line's K=V (YAML: 1e-3 is a string)
    ratio, excess_hours, q, floor_usd = float(ratio), float(excess_hours), float(q), float(floor_usd)
    ts = np.asarray(ts, dtype=float)
    value = np.asarray(value, dtype=float)
    if len(ts) == 0 or not (value > 0).any():
        return np.zeros(0)
    hr = ((ts - window) // HOUR_S).astype(np.int64)
    h0 = int(hr[0])
    n = int(hr[-1]) - h0 + 1
    cs = np.concatenate([[0.0], np.cumsum(np.bincount(hr - h0, weights=value, minlength=n))])
    first = int(hr[np.flatnonzero(value > 0)[0]]) - h0  # index of the first spending hour
    last = int(ts[-1] // HOUR_S) - 1 - h0  # the last hour ended by the last window
    hs = np.arange(max(first + WEEK_H + k, 0), last + 1)
    if len(hs) == 0:
        return np.zeros(0)

    def span(a: np.ndarray, b: np.ndarray) -> np.ndarray:  # hours [a, b] (indexes; before the series: 0)
        return cs[np.clip(b + 1, 0, n)] - cs[np.clip(a, 0, n)]

    now = span(hs - k + 1, hs)

    def reference(lag: int) -> np.ndarray:
        base = span(hs - k + 1 - lag, hs - lag)
        for sh in range(1, shift + 1):
            base = np.maximum(base, np.maximum(span(hs - k + 1 - lag - sh, hs - lag - sh),
                                               span(hs - k + 1 - lag + sh, hs - lag + sh)))
        if growth == "none":
            return base
        g_span = 24 if growth == "day" else WEEK_H
        a = span(hs - k - g_span + 1, hs - k)
        b = span(hs - k - g_span + 1 - lag, hs - k - lag)
        ok = (b > 0) & (hs - k - g_span + 1 - lag >= first)
        g = np.where(ok, a / np.where(b > 0, b, 1.0), 1.0)
        return base * np.maximum(g, 1.0)

    ref = reference(WEEK_H)
    if weeks >= 2:
        known = hs - k + 1 - 2 * WEEK_H >= first + 1
        ref = np.where(known, np.maximum(ref, reference(2 * WEEK_H)), ref)
    mean_hour = span(hs - k - WEEK_H + 1, hs - k) / WEEK_H
    flag = (now >= ratio * ref) & (now - ref >= np.maximum(excess_hours * k * mean_hour, floor_usd))
    if m > 0:
        surprising = np.bincount(hr[np.asarray(up) <= q] - h0, minlength=n).astype(float)
        cq = np.concatenate([[0.0], np.cumsum(surprising)])
        flag &= cq[hs + 1] - cq[hs - k + 1] >= m
    if quiet and flagged is not None and len(flagged):
        fh = ((np.asarray(flagged, dtype=float) - window) // HOUR_S).astype(np.int64) - h0
        busy = np.bincount(fh[(fh >= 0) & (fh < n)], minlength=n).astype(float)
        cb = np.concatenate([[0.0], np.cumsum(busy)])
        flag &= cb[hs + 1] - cb[hs - k + 1] == 0
    return (hs[flag] + h0 + 1) * float(HOUR_S)


def _wow_flags(results: list[Any], window: int, settings: dict[str, Any],
               per_team: dict[str, list[tuple[np.ndarray, np.ndarray]]] | None = None
               ) -> dict[str, list[tuple[np.ndarray, np.ndarray]]]:
    """:func:`_week_over_week` over each team series of ``results`` (:func:`_run_series_full`'s),
    its flagged hours held on the minute grid (:func:`_hold`), per team. ``per_team``: the
    team's flagged windows so far (the minute detectors' and the new-series rule's), which a
    ``quiet`` judge stays out of."""
    out: dict[str, list[tuple[np.ndarray, np.ndarray]]] = defaultdict(list)
    for r in results:
        if "|model=" in r[1]:
            continue
        parts = (per_team or {}).get(r[0], [])
        flagged = np.concatenate([np.asarray(t)[np.asarray(f, dtype=bool)] for t, f in parts] or [np.zeros(0)])
        ends = _week_over_week(r[2], r[7], r[9], window, **settings, flagged=flagged)
        if len(ends):
            out[r[0]].append(_hold(ends, np.ones(len(ends), dtype=bool), window))
    return out


def _team_burst(ts: np.ndarray, value: np.ndarray, expected: np.ndarray, up: np.ndarray, window: int,
                windows: int = 30, surprising: int = 2, p: float = 1e-4, ratio: float = 3.0,
                mean_minutes: float = 60.0, min_excess_usd: float = 0.5) -> np.ndarray:
    """The org stage's team burst rule over one team series (``run --burst``; the policy's
    ``detector.team_burst``, :func:`streams.org.newseries.burst_verdict`, whose flags it gives
    window by window): the ends of the windows it flags. At each window, over the windows ending
    within the last ``windows`` windows that the team spent in (their spend, the detector's
    expected spend, its surprise p): at least ``surprising`` of them with p at most ``p``, and
    from the first of those on, the spend at least ``ratio`` times the expected spend and more
    by ``mean_minutes`` minutes of the team's mean spend over the (at most 168) UTC hours before
    the window's hour since its first, and by ``min_excess_usd``; the team known a day; the
    window itself spent in at or above the detector's expected spend."""
    windows, surprising = int(windows), int(surprising)  # from the command line's K=V
    p, ratio, mean_minutes, min_excess_usd = float(p), float(ratio), float(mean_minutes), float(min_excess_usd)
    ts = np.asarray(ts, dtype=float)
    v = np.asarray(value, dtype=float)
    if len(ts) == 0 or not (v > 0).any():
        return np.zeros(0)
    spent = v > 0  # the judges send a team's expected spend and p only for windows it spent in
    e = np.where(spent, np.asarray(expected, dtype=float), 0.0)
    s = spent & (np.asarray(up, dtype=float) <= p)
    n = len(ts)
    cv = np.concatenate([[0.0], np.cumsum(v)])
    ce = np.concatenate([[0.0], np.cumsum(e)])
    cs = np.concatenate([[0], np.cumsum(s)])
    i = np.arange(n)
    a = np.searchsorted(ts, ts - windows * float(window), side="right")  # windows ending after now - span
    nxt = np.full(n + 1, n)  # the first surprising window at or after each
    for j in range(n - 1, -1, -1):
        nxt[j] = j if s[j] else nxt[j + 1]
    b = np.minimum(nxt[a], i)
    sv, se, ns = cv[i + 1] - cv[b], ce[i + 1] - ce[b], cs[i + 1] - cs[a]
    hr = ((ts - window) // HOUR_S).astype(np.int64)
    h0 = int(hr[0])
    hs = np.concatenate([[0.0], np.cumsum(np.bincount(hr - h0, weights=v, minlength=int(hr[-1]) - h0 + 1))])
    first = int(hr[np.flatnonzero(spent)[0]])
    known = hr - first >= 24
    span = np.clip(np.minimum(hr - first, WEEK_H), 1, None)
    mean_hour = (hs[hr - h0] - hs[np.clip(hr - h0 - span, 0, None)]) / span
    need = np.maximum(mean_minutes / 60.0 * mean_hour, min_excess_usd)
    flag = known & spent & (v >= e) & (ns >= surprising) & (sv >= ratio * se) & (sv - se >= need)
    return ts[flag]


def _burst_flags(results: list[Any], window: int, settings: dict[str, Any]) -> dict[str, list[tuple[np.ndarray, np.ndarray]]]:
    """:func:`_team_burst` over each team series of ``results`` (:func:`_run_series_full`'s), per team."""
    out: dict[str, list[tuple[np.ndarray, np.ndarray]]] = defaultdict(list)
    for r in results:
        if "|model=" in r[1]:
            continue
        ends = _team_burst(r[2], r[7], r[5], r[9], window, **settings)
        if len(ends):
            out[r[0]].append((ends, np.ones(len(ends), dtype=bool)))
    return out


def _hourly_flags(pool: ProcessPoolExecutor, ws: Any, params: dict[str, Any], which: str,
                  parent_minutes: float = 0.0, corroborate: float = 0.0) -> dict[str, list[tuple[np.ndarray, np.ndarray]]]:
    """The default detector over each team series' hours (``which="team"``; ``"all"``: the team x
    model series' too, gated by the team-scale gate and the team corroboration's p-value against
    the team series' hours; not the week-ago reference), its flags held on the minute grid
    (:func:`_hold`)."""
    window = int(ws.window_seconds)
    series = [s for s in _team_series(ws) if which == "all" or "|model=" not in s.series]
    hours = [_hourly(s, window) for s in series]
    results = list(pool.map(_run_series_full, hours, [params] * len(hours), [HOUR_S] * len(hours)))
    if which == "all":
        results = _corroborate(_parent_gate(results, parent_minutes, HOUR_S), corroborate, window=HOUR_S)
    per_team: dict[str, list[tuple[np.ndarray, np.ndarray]]] = defaultdict(list)
    for team, _, ts, flags, *_ in results:
        per_team[team].append(_hold(ts, flags, window))
    return per_team


def _flags(pool: ProcessPoolExecutor, ws: Any, params: dict[str, Any],
           new_series: dict[str, Any] | None, parent_minutes: float = 0.0,
           parent_basis: str = "expected", corroborate: float = 0.0, strict: float = 0.0,
           week_ratio_min: float = 0.0, hourly: str = "off", hourly_params: dict[str, Any] | None = None,
           wow: dict[str, Any] | None = None, week_shift: int = 0,
           shift_week_ratio: float = 0.0, burst: dict[str, Any] | None = None,
           who: dict[tuple[str, float], list[tuple[str, str]]] | None = None,
           ) -> dict[str, list[tuple[np.ndarray, np.ndarray]]]:
    """Each team's series' flagged windows: the detectors' and the new-series rule's (and, with
    ``hourly`` other than ``"off"``, the hourly detector's: :func:`_hourly_flags`; with ``wow``,
    the week-over-week hourly judge's with those settings: :func:`_wow_flags`; with ``burst``,
    the team burst rule's: :func:`_burst_flags`, after the judge, whose quiet hours do not see it),
    the team-scale gate, the team corroboration and the week-ago check of a sustained shift
    applied (:func:`_confirm_shift`). ``who``: gets, per (team, flagged window end), which series
    kind flagged it and what led (the verdict's reason for a detector's flag: ``falses``)."""
    series = _team_series(ws)
    series.sort(key=lambda s: -len(s.ts))
    per_team: dict[str, list[tuple[np.ndarray, np.ndarray]]] = defaultdict(list)
    results = list(pool.map(_run_series_full, series, [params] * len(series), [ws.window_seconds] * len(series)))
    gated = _corroborate(_parent_gate(results, parent_minutes, int(ws.window_seconds), parent_basis), corroborate,
                         strict=strict, week_ratio_min=week_ratio_min, window=int(ws.window_seconds),
                         shifts=tuple(range(-week_shift, week_shift + 1)))
    gated = _confirm_shift(gated, shift_week_ratio, window=int(ws.window_seconds),
                           shifts=tuple(range(-week_shift, week_shift + 1)))
    for team, name, ts, flags, reasons, *_ in gated:
        per_team[team].append((ts, flags))
        if who is not None:
            skind = "team x model" if "|model=" in name else "team"
            for t, r in zip(np.asarray(ts)[flags].tolist(), reasons, strict=True):
                who[(team, t)].append((skind, r))

    def join(kind: str, got: dict[str, list[tuple[np.ndarray, np.ndarray]]]) -> None:
        for team, parts in got.items():
            per_team[team] += parts
            if who is not None:
                for ts, flags in parts:
                    for t in np.asarray(ts)[np.asarray(flags, dtype=bool)].tolist():
                        who[(team, t)].append((kind, kind))

    if new_series is not None:
        join("new-series", {team: [got] for team, got in _new_series_flags(ws, new_series).items()})
    if hourly != "off":
        join("hourly", _hourly_flags(pool, ws, hourly_params or {}, hourly, parent_minutes, corroborate))
    if wow is not None:
        join("week-over-week", _wow_flags(results, int(ws.window_seconds), wow, per_team))
    if burst is not None:
        join("team-burst", _burst_flags(results, int(ws.window_seconds), burst))
    return per_team


def _flags_of(pool: ProcessPoolExecutor, ws: Any, a: argparse.Namespace,
              who: dict[tuple[str, float], list[tuple[str, str]]] | None = None,
              ) -> dict[str, list[tuple[np.ndarray, np.ndarray]]]:
    """:func:`_flags` with the command line's settings (:func:`_flag_args`'s): the one code path of
    ``run``, ``falses`` and ``misses``, so that each scores the same alerts."""
    return _flags(pool, ws, _params(a.params), _new_series(a), a.parent_minutes, a.parent_basis, a.corroborate,
                  a.corroborate_strict, a.week_ratio, a.hourly, _params(a.hourly_params),
                  None if a.wow is None else _params(a.wow), a.week_shift, a.shift_week_ratio,
                  None if a.burst is None else _params(a.burst), who)


def _alerts(per_team: dict[str, list[tuple[np.ndarray, np.ndarray]]], window: int,
            resolve_after: int = 3, keep_firing_s: float = 0.0) -> dict[str, list[float]]:
    """Alert starts per team: the team's series as one group. ``keep_firing_s`` (the policy's
    ``alerts.group_keep_firing_s``, flap damping): a flag within that long after the group's
    resolve (``resolve_after`` windows after its last flag) continues the alert."""
    out: dict[str, list[float]] = {}
    for team, parts in per_team.items():
        firing: dict[float, bool] = defaultdict(bool)
        for ts, flags in parts:
            for t, f in zip(ts.tolist(), flags.tolist(), strict=True):
                if f:
                    firing[t] = True
        starts: list[float] = []
        last = None
        for t in sorted(firing):
            if last is None or t - last > resolve_after * window + keep_firing_s:
                starts.append(t)
            last = t
        out[team] = starts
    return out


def _score(starts: dict[str, list[float]], labels: list[dict[str, Any]], scored_from: float, last_ts: float,
           teams: list[str]) -> dict[str, Any]:
    from tokenpulse.replay import to_epoch

    should = [(str(lab["team"]), to_epoch(lab["start"], "start"), to_epoch(lab["end"], "end"), lab.get("kind", ""))
              for lab in labels if lab["should_alert"]]
    neg = [(str(lab["team"]), to_epoch(lab["start"], "start"), to_epoch(lab["end"], "end"), lab.get("kind", ""))
           for lab in labels if not lab["should_alert"]]
    rows, false = [], []
    for team, s, e, kind in should:
        hits = [t for t in starts.get(team, []) if s <= t <= e + GRACE_S and t >= scored_from]
        rows.append((team, kind, s, (min(hits) - s) if hits else None))
    for team, ts in starts.items():
        for t in ts:
            if t < scored_from:
                continue
            if any(tm == team and s <= t <= e + GRACE_S for tm, s, e, _ in should):
                continue
            k = next((kind for tm, s, e, kind in neg if tm == team and s <= t <= e + GRACE_S), "other")
            false.append((team, t, k))
    tw = len(teams) * (last_ts - scored_from) / (7 * 86400)
    return {"rows": rows, "false": false, "team_weeks": tw}


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%a %m-%d %H:%M")


def cmd_record(a: argparse.Namespace) -> None:
    d = str(_dir(a))
    with ProcessPoolExecutor(max_workers=a.jobs) as pool:
        for msg in pool.map(_record_one, *zip(*[(k, s, d) for k, s in _histories(a)], strict=True)):
            print(msg, file=sys.stderr)


def _new_series(a: argparse.Namespace) -> dict[str, Any] | None:
    """The new-series rule's settings for ``run`` (None: off): the default policy's, or
    ``--new-series on|off`` with ``--new-series-params k=v`` over them."""
    from tokenpulse.policy import NewSeriesPolicy

    pol = NewSeriesPolicy(**{k: v for k, v in _params(a.new_series_params).items()})
    on = pol.enabled if a.new_series == "policy" else a.new_series == "on"
    if not on:
        return None
    return pol.model_copy(update={"enabled": True}).settings()


def cmd_run(a: argparse.Namespace) -> None:
    from tokenpulse.tune import _load

    d = _dir(a)
    t0 = time.perf_counter()
    sets: dict[str, dict[str, Any]] = {"i": {"rows": [], "false": [], "tw": 0.0}, "p": {"rows": [], "false": [], "tw": 0.0}}
    sizes: dict[tuple[str, str, float], str] = {}  # a miss's size, for --verbose
    with ProcessPoolExecutor(max_workers=a.jobs) as pool:
        for kind, seed in _histories(a):
            ws = _load(d / f"{kind}{seed}.npz")
            meta = json.loads((d / f"{kind}{seed}.labels.json").read_text())
            for lab in meta["labels"]:
                if lab.get("should_alert") and "excess_usd" in lab:
                    from tokenpulse.replay import to_epoch

                    sizes[(f"{kind}{seed}", str(lab["team"]), to_epoch(lab["start"], "start"))] = (
                        f" x{lab.get('factor', 0):.3g} ${lab['excess_usd']:,.2f} over "
                        f"${lab.get('baseline_usd_per_hour', 0):,.3g}/h")
            per_team = _flags_of(pool, ws, a)
            sc = _score(_alerts(per_team, ws.window_seconds, keep_firing_s=a.keep_firing), meta["labels"],
                        meta["scored_from"], ws.last_ts or 0.0, ws.teams)
            agg = sets[kind]
            agg["rows"] += [(f"{kind}{seed}", *r) for r in sc["rows"]]
            agg["false"] += [(f"{kind}{seed}", *f) for f in sc["false"]]
            agg["tw"] += sc["team_weeks"]
            det = sum(r[3] is not None for r in sc["rows"])
            print(f"{kind}{seed}: {det}/{len(sc['rows'])} detected, {len(sc['false'])} false "
                  f"({time.perf_counter() - t0:.0f}s)", file=sys.stderr)
    for kind, agg in sets.items():
        rows = agg["rows"]
        if not rows:
            continue
        det = [r for r in rows if r[4] is not None]
        by_kind: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        for r in rows:
            by_kind[r[2]][1] += 1
            by_kind[r[2]][0] += r[4] is not None
        fk: dict[str, int] = defaultdict(int)
        for f in agg["false"]:
            fk[f[3]] += 1
        delays = [r[4] / 60 for r in det]
        sw = [r[4] / 60 for r in det if r[2] == "model_switch"]
        print(f"{'independent' if kind == 'i' else 'project'}: recall {len(det)}/{len(rows)} = {len(det) / len(rows):.2f}, "
              f"false {len(agg['false'])} / {agg['tw']:.1f} tw = {len(agg['false']) / agg['tw']:.2f}, "
              f"median delay {statistics.median(delays) if delays else float('nan'):.1f} min"
              f" (switch {statistics.median(sw) if sw else float('nan'):.1f})")
        print("  by kind: " + ", ".join(f"{k} {x}/{n}" for k, (x, n) in sorted(by_kind.items())))
        print("  false by kind: " + ", ".join(f"{k} {n}" for k, n in sorted(fk.items())))
        if a.verbose:
            for r in rows:
                if r[4] is None:
                    print(f"  MISSED {r[0]} {r[1]} {r[2]} {_iso(r[3])}{sizes.get((r[0], r[1], r[3]), '')}")
            for f in agg["false"]:
                print(f"  FALSE  {f[0]} {f[1]} {_iso(f[2])} ({f[3]})")
        if a.delays:
            for r in det:
                print(f"  delay {r[0]} {r[1]} {r[2]} {r[4] / 60:.1f} min")


def cmd_notify(a: argparse.Namespace) -> None:
    from tokenpulse.policy import NewSeriesPolicy, Policy
    from tokenpulse.replay import to_epoch
    from tokenpulse.tune import _load

    d = _dir(a)
    pol = NewSeriesPolicy(**_params(a.new_series_params))
    settings = pol.model_copy(update={"enabled": True}).settings()
    per_incident: list[int] = []
    for kind, seed in _histories(a):
        h = f"{kind}{seed}"
        ws = _load(d / f"{h}.npz")
        meta = json.loads((d / f"{h}.labels.json").read_text())
        notes = _new_series_notes(ws, settings, Policy().alert_policy())
        spans = [(str(lab["team"]), to_epoch(lab["start"], "start"), to_epoch(lab["end"], "end"), lab.get("kind", ""))
                 for lab in meta["labels"] if lab["should_alert"]]
        used: set[int] = set()
        for team, s, e, k in spans:
            mine = [(i, n) for i, n in enumerate(notes)
                    if n.labels.get("team") == team and s <= n.fired_at <= e + GRACE_S]
            used.update(i for i, _ in mine)
            if not mine:
                continue
            firsts = [n for _, n in mine if n.reason == "first"]
            per_incident.append(len(firsts))
            print(f"{h} {team} {k} {_iso(s)}: {len(firsts)} first ({', '.join(_iso(n.fired_at) for n in firsts)}), "
                  f"{sum(n.reason == 'worsened' for _, n in mine)} worsened, {sum(n.reason == 'repeat' for _, n in mine)} "
                  f"repeat, {sum(n.action == 'resolve' for _, n in mine)} resolved")
        for i, n in enumerate(notes):
            if i not in used and n.fired_at >= meta["scored_from"]:
                print(f"{h} {n.labels.get('team')} OUTSIDE any incident: {n.reason} {_iso(n.fired_at)}")
    if per_incident:
        print(f"incidents alerted: {len(per_incident)}, first notifications {sum(per_incident)} "
              f"(per incident: max {max(per_incident)}, mean {statistics.mean(per_incident):.2f})")


def cmd_falses(a: argparse.Namespace) -> None:
    """``run``'s false alert starts, each with the series and model that started it and what the
    history was doing then (see the module docstring)."""
    from tokenpulse.replay import to_epoch
    from tokenpulse.tune import _load

    d = _dir(a)
    table: dict[tuple[str, str, str], int] = defaultdict(int)
    total = 0
    with ProcessPoolExecutor(max_workers=a.jobs) as pool:
        for kind, seed in _histories(a):
            h = f"{kind}{seed}"
            ws = _load(d / f"{h}.npz")
            meta = json.loads((d / f"{h}.labels.json").read_text())
            # (team, window end) -> [(series kind, model that led)]
            who: dict[tuple[str, float], list[tuple[str, str]]] = defaultdict(list)
            per_team = _flags_of(pool, ws, a, who)
            sc = _score(_alerts(per_team, ws.window_seconds, keep_firing_s=a.keep_firing), meta["labels"], meta["scored_from"],
                        ws.last_ts or 0.0, ws.teams)
            negs = [(str(lab["team"]), to_epoch(lab["start"], "start"), to_epoch(lab["end"], "end"),
                     lab.get("kind", ""), float(lab.get("baseline_usd_per_hour") or 0.0))
                    for lab in meta["labels"] if not lab["should_alert"]]
            usual = {sw.labels["team"]: 1440.0 * float(np.mean(sw.value)) for sw in ws.series
                     if set(sw.labels) == {"team"}}
            for team, t, k in sc["false"]:
                ctx = k
                if k == "other":
                    after = [(kk, t - e) for tm, s, e, kk, _ in negs if tm == team and 0 < t - e <= 3 * 3600]
                    ctx = f"3 h after {after[0][0]}" if after else "ordinary"
                ws_ = who.get((team, t), [("?", "?")])
                skinds = "+".join(sorted({s for s, _ in ws_}))
                lead = "+".join(sorted({r.split()[0] for _, r in ws_}))
                scale = usual.get(team, 0.0)
                size = "<$10/day" if scale < 10 else "<$1k/day" if scale < 1000 else ">=$1k/day"
                table[(ctx, skinds, lead)] += 1
                table[("size " + size, "", "")] += 1
                total += 1
                if a.list:
                    print(f"  {h} {team:16s} {_iso(t)} {ctx:28s} {skinds:18s} {'; '.join(r for _, r in ws_)[:80]}")
            print(f"{h}: {len(sc['false'])} false", file=sys.stderr)
    print(f"false alert starts: {total}")
    print("| what the history was doing | series that started it | model that led | false alerts |")
    print("|---|---|---|---:|")
    for (ctx, sk, lead), n in sorted(table.items(), key=lambda kv: (kv[0][0].startswith("size"), -kv[1])):
        print(f"| {ctx} | {sk} | {lead} | {n} |")


def _gate_trace(sw: Any, params: dict[str, Any], window: int) -> tuple[str, np.ndarray, np.ndarray, np.ndarray,
                                                                     np.ndarray, np.ndarray]:
    """One series through the default detector, with what its money gate saw in each window
    (``Combined.gate_inputs``): window ends, surprising or not, the incident's running excess
    so far, the money gate there (:meth:`Combined.materiality` of the gate's base), flagged."""
    from detectors import make_detector

    det = make_detector("default", window_seconds=float(window), **params)
    n = len(sw.ts)
    surprising = np.zeros(n, dtype=bool)
    run = np.zeros(n)
    gate = np.zeros(n)
    flags = np.zeros(n, dtype=bool)
    ts, v, c = sw.ts.tolist(), sw.value.tolist(), sw.count.tolist()
    for i in range(n):
        vd = det.update(ts[i], v[i], None if c[i] < 0 else c[i])
        g = det.gate_inputs()
        if g is not None:
            surprising[i] = g[0]
            gate[i] = det.materiality(g[5])
        run[i] = vd.impact or 0.0
        flags[i] = vd.is_anomaly
    return sw.series, sw.ts, surprising, run, gate, flags


def _why_missed(surprising: np.ndarray, run: np.ndarray, gate: np.ndarray, flags: np.ndarray) -> str:
    """Why one series of a team did not alert in a missed incident's windows: never surprising
    (no window's models' p reached the threshold), surprising but under the money gate (the most
    the incident's running excess reached in a surprising window, against the gate there), or
    flagged (the detector alerted: the team-scale gate held it back, or the alert started
    outside the span)."""
    if flags.any():
        return f"flagged in {int(flags.sum())} windows (held back by the team-scale gate, or outside the span)"
    if not surprising.any():
        return "never surprising"
    i = int(np.argmax(np.where(surprising, run, -np.inf)))
    return (f"surprising in {int(surprising.sum())} windows; the incident's excess there reached "
            f"${run[i]:,.2f} of a ${gate[i]:,.2f} gate")


def cmd_misses(a: argparse.Namespace) -> None:
    """Each missed incident of ``run``, and why each series of its team did not alert in it."""
    from tokenpulse.replay import to_epoch
    from tokenpulse.tune import _load

    d = _dir(a)
    params = _params(a.params)
    with ProcessPoolExecutor(max_workers=a.jobs) as pool:
        for kind, seed in _histories(a):
            h = f"{kind}{seed}"
            ws = _load(d / f"{h}.npz")
            meta = json.loads((d / f"{h}.labels.json").read_text())
            window = int(ws.window_seconds)
            per_team = _flags_of(pool, ws, a)
            sc = _score(_alerts(per_team, window, keep_firing_s=a.keep_firing), meta["labels"], meta["scored_from"],
                        ws.last_ts or 0.0, ws.teams)
            missed = [r for r in sc["rows"] if r[3] is None]
            teams = {r[0] for r in missed}
            series = [sw for sw in _team_series(ws) if sw.labels["team"] in teams]
            traces = {sw.labels["team"]: [] for sw in series}
            for sw, tr in zip(series, pool.map(_gate_trace, series, [params] * len(series),
                                               [window] * len(series)), strict=True):
                traces[sw.labels["team"]].append(tr)
            for team, _, start, _ in missed:
                lab = next(lab for lab in meta["labels"] if lab["should_alert"] and str(lab["team"]) == team
                           and to_epoch(lab["start"], "start") == start)
                end = to_epoch(lab["end"], "end") + GRACE_S
                size = (f" x{lab.get('factor', 0):.3g} ${lab['excess_usd']:,.2f} over "
                        f"${lab.get('baseline_usd_per_hour', 0):,.3g}/h" if "excess_usd" in lab else "")
                print(f"MISSED {h} {team} {lab.get('kind', '')} {_iso(start)}{size}")
                for name, ts, surprising, run, gate, flags in traces[team]:
                    span = (ts >= start) & (ts <= end)
                    print(f"  {name:44s} {_why_missed(surprising[span], run[span], gate[span], flags[span])}")


def cmd_show(a: argparse.Namespace) -> None:
    from detectors import make_detector
    from tokenpulse.replay import to_epoch
    from tokenpulse.tune import _load

    d = _dir(a)
    ws = _load(d / f"{a.history}.npz")
    t_from = to_epoch(a.start, "from")
    for sw in ws.series:
        if sw.labels.get("team") != a.team or (set(sw.labels) != {"team"} and not a.models):
            continue
        det = make_detector("default", window_seconds=float(ws.window_seconds), **_params(a.params))
        print(f"== {sw.series}")
        for t, v, c in zip(sw.ts.tolist(), sw.value.tolist(), sw.count.tolist(), strict=True):
            if t > t_from + 60 * a.minutes:
                break
            sc = det.score_one(t, v, None if c < 0 else c) and det._scored
            vd = det.update(t, v, None if c < 0 else c)
            if t >= t_from and (t - t_from) % (60 * a.every) < ws.window_seconds:
                vs = sc[3] if sc else []
                comps = " ".join(f"{n[:4]}:{(v.p if v.p is not None else 1 - v.score):.0e}{'!' if v.is_anomaly else ''}"
                                 for n, v in zip(det._names, vs, strict=True)) + " "
                g = det.gate_inputs()
                print(f"{_iso(t)} obs {v:9.3f} exp {vd.expected:9.3f} n {c:6.0f} score {vd.score:.6f} "
                      f"{'ALERT' if vd.is_anomaly else ('surp ' if g and g[0] else '     ')} imp {vd.impact or 0:8.2f} "
                      f"{comps}{vd.reason[:110]}")


def _corroborate_default() -> float:
    """The default policy's team corroboration (``detector.team_corroboration_p``)."""
    from tokenpulse.policy import Policy

    return float(Policy().detector.team_corroboration_p)


def _week_default() -> tuple[float, float, int]:
    """The default policy's week-ago reference of the team corroboration
    (``detector.team_corroboration_strict_p``, ``detector.team_week_ratio``,
    ``detector.team_week_shift_h``)."""
    from tokenpulse.policy import Policy

    d = Policy().detector
    return float(d.team_corroboration_strict_p), float(d.team_week_ratio), int(d.team_week_shift_h)


def _shift_week_default() -> float:
    """The default policy's week-ago check of a sustained shift (``detector.shift_week_ratio``)."""
    from tokenpulse.policy import Policy

    return float(Policy().detector.shift_week_ratio)


def _keep_firing_default() -> float:
    """The default policy's flap damping (``alerts.group_keep_firing_s``)."""
    from tokenpulse.policy import Policy

    return float(Policy().alerts.group_keep_firing_s)


def _week_args(p: argparse.ArgumentParser) -> None:
    strict, ratio, shift = _week_default()
    p.add_argument("--corroborate-strict", type=float, default=strict, metavar="P",
                   help="with a week-ago reference, a team p above this corroborates only while the team's last hour "
                        "is --week-ratio times the same hour a week before (default: the policy's "
                        "detector.team_corroboration_strict_p; 0: off)")
    p.add_argument("--week-ratio", type=float, default=ratio, metavar="K",
                   help="(default: the policy's detector.team_week_ratio; 0: off)")
    p.add_argument("--week-shift", type=int, default=shift, choices=(0, 1), metavar="H",
                   help="the week-ago hour is the most of the same hour and H hours either side "
                        "(default: the policy's detector.team_week_shift_h; 0: the same hour)")
    p.add_argument("--shift-week-ratio", type=float, default=_shift_week_default(), metavar="K",
                   help="the week-ago check of a sustained shift: a flag the changepoint model leads starts an alert "
                        "only while the team's last hour is at least K times the week-ago reference (default: the "
                        "policy's detector.shift_week_ratio; 0: off)")
    p.add_argument("--keep-firing", type=float, default=_keep_firing_default(), metavar="S",
                   help="flap damping: a team's flag within S seconds after its alert resolved continues it "
                        "(default: the policy's alerts.group_keep_firing_s; 0: off)")


def _wow_default() -> list[str] | None:
    """The default policy's week-over-week judge: on (no K=V over the fast loop's defaults,
    which are the policy's) or off (None)."""
    from tokenpulse.policy import Policy

    return [] if Policy().detector.week_over_week.enabled else None


def _burst_default() -> list[str] | None:
    """The default policy's team burst rule: on (no K=V over the fast loop's defaults, which
    are the policy's) or off (None)."""
    from tokenpulse.policy import Policy

    return [] if Policy().detector.team_burst.enabled else None


def _team_scale_default() -> float:
    """The default policy's team-scale gate (``detector.team_scale_minutes``), which the
    worker's org stage applies: the fast loop scores what the worker does unless told otherwise."""
    from tokenpulse.policy import Policy

    return float(Policy().detector.team_scale_minutes)


def _flag_args(p: argparse.ArgumentParser) -> None:
    """The settings of the flags ``run``, ``falses`` and ``misses`` score (:func:`_flags_of`): one
    set of options for the three, with the default policy's defaults."""
    p.add_argument("--params", nargs="*", default=[])
    p.add_argument("--parent-minutes", type=float, default=_team_scale_default(),
                   help="the team-scale gate: a team x model series' alert needs this many minutes of its team's "
                        "expected spend (default: the policy's detector.team_scale_minutes; 0: off)")
    p.add_argument("--parent-basis", choices=("expected", "mean"), default="expected",
                   help="the team's spend those minutes are of: its detector's expected value in the window, or "
                        "its mean over the 7 whole days before")
    p.add_argument("--new-series", choices=("policy", "on", "off"), default="policy",
                   help="the org stage's new-series rule: as the default policy has it, or on/off")
    p.add_argument("--corroborate", type=float, default=_corroborate_default(), metavar="P",
                   help="the team corroboration: a team x model series' flag starts an alert only when its team "
                        "series' surprise p in the window is at most P (default: the policy's "
                        "detector.team_corroboration_p; 0: off)")
    _week_args(p)
    p.add_argument("--new-series-params", nargs="*", default=[], metavar="K=V",
                   help="its settings (ratio, min_requests, min_excess_usd)")
    p.add_argument("--hourly", choices=("off", "team", "all"), default="off",
                   help="an experiment: the default detector also over hour windows (the minute windows summed) of "
                        "the team series (team) or of the team and team x model series (all), its flags joining "
                        "the team's, each held until the next hour's verdict")
    p.add_argument("--hourly-params", nargs="*", default=[], metavar="K=V",
                   help="the hourly detector's parameters, as --params (e.g. score_threshold=0.99999)")
    p.add_argument("--wow", nargs="*", default=_wow_default(), metavar="K=V",
                   help="the week-over-week hourly judge of each team series (_week_over_week: the last k "
                        "hours against the same hours one and two weeks before), its flagged hours joining "
                        "the team's; K=V over its defaults (k, ratio, excess_hours, growth=day|week|none, "
                        "weeks, shift, q, m, floor_usd, quiet); default: as the policy's "
                        "detector.week_over_week.enabled (--wow alone: on, with the defaults)")
    p.add_argument("--no-wow", dest="wow", action="store_const", const=None,
                   help="without the week-over-week judge")
    p.add_argument("--burst", nargs="*", default=_burst_default(), metavar="K=V",
                   help="the team burst rule of each team series (_team_burst); K=V over its defaults "
                        "(windows, surprising, p, ratio, mean_minutes, min_excess_usd); default: as the "
                        "policy's detector.team_burst.enabled (--burst alone: on, with the defaults)")
    p.add_argument("--no-burst", dest="burst", action="store_const", const=None,
                   help="without the team burst rule")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("record", "run"):
        p = sub.add_parser(name)
        p.add_argument("--independent", type=int, nargs="*", default=[1, 2, 3])
        p.add_argument("--project", type=int, nargs="*", default=[0])
        p.add_argument("--dir")
        p.add_argument("--jobs", type=int, default=2)
        p.add_argument("--verbose", action="store_true")
        p.add_argument("--delays", action="store_true")
        _flag_args(p)
    p = sub.add_parser("falses")
    p.add_argument("--independent", type=int, nargs="*", default=[1, 2, 3])
    p.add_argument("--project", type=int, nargs="*", default=[0])
    p.add_argument("--dir")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--list", action="store_true", help="every false alert start, one a line")
    _flag_args(p)
    p = sub.add_parser("misses", help="each missed incident, and why each series of its team did not alert")
    p.add_argument("--independent", type=int, nargs="*", default=[1, 2, 3])
    p.add_argument("--project", type=int, nargs="*", default=[0])
    p.add_argument("--dir")
    p.add_argument("--jobs", type=int, default=2)
    _flag_args(p)
    p = sub.add_parser("notify")
    p.add_argument("--independent", type=int, nargs="*", default=[1, 2, 3])
    p.add_argument("--project", type=int, nargs="*", default=[0])
    p.add_argument("--dir")
    p.add_argument("--new-series-params", nargs="*", default=[], metavar="K=V",
                   help="the rule's settings (ratio, min_requests, min_excess_usd)")
    p = sub.add_parser("show")
    p.add_argument("history")
    p.add_argument("team")
    p.add_argument("start")
    p.add_argument("--minutes", type=int, default=120)
    p.add_argument("--every", type=int, default=1)
    p.add_argument("--models", action="store_true")
    p.add_argument("--dir")
    p.add_argument("--params", nargs="*", default=[])
    a = ap.parse_args(argv)
    {"record": cmd_record, "run": cmd_run, "show": cmd_show, "notify": cmd_notify, "falses": cmd_falses,
     "misses": cmd_misses}[a.cmd](a)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
