"""``tokenpulse tune``: sweep the default detector's alert settings over a history, for analysts.

Three stages, each done once however many settings are swept:

1. **Windows** (:func:`load_windows`): the history goes through the worker's own ingest and
   judge (``tokenpulse.replay.replay_lines``) once, with a judge whose detectors only record
   what they are given: per watched series, the closed windows' ends, spend and request
   counts -- exactly the ``update(ts, value, count)`` calls a detector gets in a replay. Kept
   on disk in the data dir (``tune/``), keyed by the file (size, mtime, content hash) and by
   what decides the windows (watched dimensions, prices, window length, lateness, limits).
   Bad lines are counted and the first ones kept with their line number and reason.
2. **Models** (:func:`run_models`): each team series' detector (the policy's parameters and
   overrides for its labels) runs over its windows once per ``score_threshold`` swept, in
   ``jobs`` processes, and records what its money gate reads in each window
   (``Combined.gate_inputs``). What the models learn depends on the threshold but not on the
   money gate (``min_excess_minutes``, ``min_excess_pct``, ``min_excess_usd``), so one run per
   threshold serves every gate setting.
3. **Sweep** (:func:`sweep`): per setting, the gate (``detectors.combined.gate_step``,
   ``materiality``, ``is_material``) turns the recorded inputs into each window's decision --
   exactly what ``Combined`` with that setting decides -- and the alert lifecycle of the
   policy (``fire_after_windows``, ``resolve_after_windows``) turns decisions into alerts.

What it does not model: grouping and the org alert's inhibition (each team series alerts on
its own here), and series below the team (team x model): their alerts fold into the team's
group in the worker, and an override by ``team`` applies to them too.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from detectors.base import Detector, Verdict
from streams.common.config import StreamConfig

__all__ = ["SETTINGS", "Setting", "SeriesWindows", "WindowSet", "load_windows", "run_models", "sweep"]

CACHE_VERSION = 1


@dataclass
class SeriesWindows:
    """The windows one series' detector was given, in order."""

    series: str
    labels: dict[str, str]
    ts: np.ndarray  # window ends (epoch seconds)
    value: np.ndarray  # spend (USD)
    count: np.ndarray  # requests


@dataclass
class WindowSet:
    """Every watched series' windows of one history, and what the ingest said about it."""

    series: list[SeriesWindows]
    first_ts: float | None
    last_ts: float | None
    teams: list[str]
    counters: dict[str, int]
    rejects: list[tuple[int, str]]  # (line, reason), the first 100
    window_seconds: int
    lines: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def team_weeks(self, since: float | None = None) -> float:
        """Team-weeks of history (every team over the whole span, or from ``since``)."""
        start = self.first_ts if since is None else max(since, self.first_ts or since)
        span = max(0.0, (self.last_ts or 0.0) - (start or 0.0))
        return max(len(self.teams), 1) * span / (7 * 86400)


class _Recorder(Detector):
    """A detector that only writes down the windows it is given (never flags one)."""

    name = "recorder"

    def __init__(self) -> None:
        self.protect_anomaly = False
        super().__init__()

    def _reset(self) -> None:
        self.ts = array("d")
        self.value = array("d")
        self.count = array("d")

    def update(self, ts: float, value: float, count: float | None = None) -> Verdict:
        self.ts.append(ts)
        self.value.append(value)
        self.count.append(-1.0 if count is None else count)
        return _QUIET

    def score_one(self, ts: float, value: float, count: float | None = None) -> Verdict:
        return _QUIET

    def learn_one(self, ts: float, value: float, count: float | None = None) -> None:
        pass

    def _get_state(self) -> dict[str, Any]:
        return {}

    def _set_state(self, state: dict[str, Any]) -> None:
        pass

    def _rebase(self) -> None:
        pass


_QUIET = Verdict(ts=0.0, observed=0.0, expected=0.0, upper=0.0, score=0.0, is_anomaly=False, excess=0.0,
                 excess_pct=None, detector="recorder", reason="")


def _file_hash(path: Path) -> str:
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


def cache_key(path: Path, cfg: StreamConfig) -> str:
    """What decides a history's windows: the file (size, mtime, content) and the settings of
    the ingest (watched dimensions, prices, window length, lateness, limits)."""
    st = path.stat()
    parts = {
        "v": CACHE_VERSION,
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
        "hash": _file_hash(path),
        "watch": sorted(cfg.watched),
        "prices": cfg.price_overrides,
        "window": cfg.window_seconds,
        "lateness": cfg.lateness,
        "idle_grace": cfg.idle_grace,
        "limits": [cfg.limits.max_tokens_per_request, cfg.limits.max_cost_usd_per_request],
    }
    return hashlib.blake2b(json.dumps(parts, sort_keys=True, default=str).encode(), digest_size=12).hexdigest()


def record_windows(path: Path, cfg: StreamConfig,
                   progress: Callable[[int, int], None] | None = None) -> WindowSet:
    """Run the history through the worker's ingest and judge once, recording every series'
    windows (no detector, no alerts)."""
    from alerts import AlertEngine, AlertPolicy
    from streams.judge.core import JudgeCore
    from tokenpulse.replay import read_lines, replay_lines

    recorders: list[_Recorder] = []

    def new(_labels: dict[str, str] | None = None) -> Detector:
        r = _Recorder()
        recorders.append(r)
        return r

    judge = JudgeCore(partition=0, window_seconds=cfg.window_seconds, make_detector=new,
                      engine=AlertEngine(AlertPolicy()))
    judge.keep_recent = False
    judge.keep_spend = False
    res = replay_lines(read_lines(path), cfg, progress=progress, total_bytes=path.stat().st_size, judge=judge)
    out = []
    for name, info in judge.series.items():
        det = judge.detectors[name]
        assert isinstance(det, _Recorder)
        out.append(SeriesWindows(name, dict(info.labels), np.frombuffer(det.ts, dtype=np.float64).copy(),
                                 np.frombuffer(det.value, dtype=np.float64).copy(),
                                 np.frombuffer(det.count, dtype=np.float64).copy()))
    return WindowSet(series=out, first_ts=res.first_ts, last_ts=res.last_ts, teams=sorted(res.teams),
                     counters=dict(res.counters), rejects=list(res.rejects), window_seconds=cfg.window_seconds)


def _save(ws: WindowSet, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "series": [[s.series, s.labels, len(s.ts)] for s in ws.series],
        "first_ts": ws.first_ts, "last_ts": ws.last_ts, "teams": ws.teams, "counters": ws.counters,
        "rejects": ws.rejects, "window_seconds": ws.window_seconds,
    }
    arrays = {
        "ts": np.concatenate([s.ts for s in ws.series]) if ws.series else np.zeros(0),
        "value": np.concatenate([s.value for s in ws.series]) if ws.series else np.zeros(0),
        "count": np.concatenate([s.count for s in ws.series]) if ws.series else np.zeros(0),
    }
    tmp = target.with_suffix(".tmp.npz")
    # numpy types savez as (file, *args, allow_pickle: bool, **kwds): mypy reads the ** as allow_pickle
    np.savez(tmp, meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8), **arrays)  # type: ignore[arg-type]
    os.replace(tmp, target)


def _load(target: Path) -> WindowSet:
    with np.load(target) as z:
        meta = json.loads(z["meta"].tobytes())
        ts, value, count = z["ts"], z["value"], z["count"]
    out, at = [], 0
    for name, labels, n in meta["series"]:
        out.append(SeriesWindows(name, labels, ts[at:at + n], value[at:at + n], count[at:at + n]))
        at += n
    return WindowSet(series=out, first_ts=meta["first_ts"], last_ts=meta["last_ts"], teams=meta["teams"],
                     counters=meta["counters"], rejects=[tuple(r) for r in meta["rejects"]],
                     window_seconds=meta["window_seconds"], extra={"cached": True})


def load_windows(path: Path, cfg: StreamConfig, cache_dir: Path | None,
                 progress: Callable[[int, int], None] | None = None) -> WindowSet:
    """The history's windows, from the cache when it has them (``cache_dir`` None: no cache)."""
    if cache_dir is None:
        return record_windows(path, cfg, progress)
    target = cache_dir / f"windows-{cache_key(path, cfg)}.npz"
    if target.is_file():
        try:
            return _load(target)
        except (OSError, ValueError, KeyError):
            pass  # a broken cache file: record again
    ws = record_windows(path, cfg, progress)
    _save(ws, target)
    ws.extra["cached"] = False
    return ws




# -- stage 2: the models, once per team series and score threshold ----------------------------

GATE_SWEPT = ("min_excess_minutes", "min_excess_pct")
"""The gate settings swept without running the models again (with ``score_threshold``, which
needs one model run per value)."""


@dataclass(frozen=True)
class Setting:
    """One point of the sweep."""

    score_threshold: float
    min_excess_minutes: float
    min_excess_pct: float

    def label(self) -> str:
        return f"{self.score_threshold:g} {self.min_excess_minutes:g}m {self.min_excess_pct:g}%"

    def params(self) -> dict[str, float]:
        return {"score_threshold": self.score_threshold, "min_excess_minutes": self.min_excess_minutes,
                "min_excess_pct": self.min_excess_pct}


SETTINGS: tuple[Setting, ...] = tuple(
    Setting(t, m, pct) for t in (0.999, 0.9999, 0.99999) for m in (5.0, 10.0, 15.0, 30.0) for pct in (25.0, 50.0)
)
"""The default grid: 3 thresholds x 4 gates x 2 percentages = 24 settings."""


@dataclass
class GateInputs:
    """What one team series' gate saw in each window, for one score threshold (arrays)."""

    team: str
    threshold: float
    params: dict[str, Any]  # the series' detector parameters (policy + overrides), threshold set
    ts: np.ndarray
    surprising: np.ndarray
    excess: np.ndarray
    expected: np.ndarray
    usual: np.ndarray
    restarted: np.ndarray
    base: np.ndarray  # what the relative gate counts minutes of (Combined.gate_base)


def team_series(ws: WindowSet) -> list[SeriesWindows]:
    """The series of whole teams (labels ``{team: ...}``), the ones alerts are budgeted on."""
    return [s for s in ws.series if set(s.labels) - {"org"} == {"team"}]  # of any org


def series_params(cfg: StreamConfig, labels: dict[str, str]) -> dict[str, Any]:
    """The default detector's constructor arguments for a series: the policy's parameters and
    its overrides for these labels (as the worker builds them)."""
    from detectors.config import params_for
    from streams.judge.core import detector_params

    merged = params_for(cfg.detector_params, [(dict(m), dict(p)) for m, p in cfg.detector_overrides], labels)
    return detector_params(cfg.window_seconds, cfg.detector_name, merged)


def _run_one(sw: SeriesWindows, name: str, params: dict[str, Any], threshold: float) -> GateInputs:
    from detectors import make_detector

    det = make_detector(name, **{**params, "score_threshold": threshold})
    n = len(sw.ts)
    surprising = np.zeros(n, dtype=bool)
    excess = np.zeros(n)
    expected = np.zeros(n)
    usual = np.zeros(n)
    restarted = np.zeros(n, dtype=bool)
    base = np.zeros(n)
    upd = det.update
    gi = det.gate_inputs  # type: ignore[attr-defined]
    ts_l, v_l, c_l = sw.ts.tolist(), sw.value.tolist(), sw.count.tolist()
    for i in range(n):
        c = c_l[i]
        upd(ts_l[i], v_l[i], None if c < 0 else c)
        su, ex, e, u, r, b = gi()
        if su:
            surprising[i] = True
        excess[i] = ex
        expected[i] = e
        usual[i] = u
        base[i] = b
        if r:
            restarted[i] = True
    # the settings the sweep keeps as they are, as this detector has them (defaults included)
    kept = {"score_threshold": threshold, "min_excess_usd": det.min_excess_usd,  # type: ignore[attr-defined]
            "min_excess_root": det.min_excess_root}  # type: ignore[attr-defined]
    return GateInputs(sw.labels["team"], threshold, {**params, **kept}, sw.ts, surprising, excess, expected, usual,
                      restarted, base)


def run_models(ws: WindowSet, cfg: StreamConfig, thresholds: list[float], jobs: int = 1,
               progress: Callable[[int], None] | None = None) -> list[GateInputs]:
    """Every team series' detector over its windows, once per threshold, in ``jobs`` processes
    (``progress(windows)`` after each run)."""
    from detectors import DEFAULT_DETECTOR

    name = DEFAULT_DETECTOR if cfg.detector_name == "default" else cfg.detector_name
    if name != "combined":
        raise ValueError(f"tune sweeps the default detector's gate; the policy's detector is {cfg.detector_name!r}")
    items = [(sw, name, series_params(cfg, sw.labels), t) for sw in team_series(ws) for t in thresholds]
    # the biggest series first: the pool balances the tail
    items.sort(key=lambda it: -len(it[0].ts))
    if jobs <= 1 or len(items) <= 1:
        out = []
        for it in items:
            out.append(_run_one(*it))
            if progress is not None:
                progress(len(it[0].ts))
        return out
    from concurrent.futures import ProcessPoolExecutor, as_completed

    got = []
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        futs = {pool.submit(_run_one, *it): it for it in items}
        for fut in as_completed(futs):
            got.append(fut.result())
            if progress is not None:
                progress(len(futs[fut][0].ts))
    return got


# -- stage 3: the gate and the alert lifecycle, per setting --------------------------------


def gate_decisions(g: GateInputs, window_seconds: float, min_excess_usd: float, min_excess_pct: float,
                   min_excess_minutes: float, min_excess_root: float = 0.0) -> np.ndarray:
    """Each window's ``is_anomaly`` under these gate settings, from the recorded inputs: what
    ``Combined`` with them decides (tests/tokenpulse/test_tune.py holds it to that). Only the
    windows of an incident are stepped one by one."""
    from detectors.combined import gate_step, is_material, materiality

    n = len(g.ts)
    anomaly = np.zeros(n, dtype=bool)
    starts = np.flatnonzero(g.surprising).tolist()
    sur, exc, exp_, usual, rst, base = (g.surprising.tolist(), g.excess.tolist(), g.expected.tolist(),
                                       g.usual.tolist(), g.restarted.tolist(), g.base.tolist())
    k = 0
    while k < len(starts):
        i = starts[k]
        run = (0.0, 0.0)
        while i < n:
            if rst[i]:
                run = (0.0, 0.0)
            run = gate_step(run[0], run[1], sur[i], exc[i], exp_[i])
            if sur[i] and exc[i] > 0.0:
                gate = materiality(usual[i], window_seconds, min_excess_usd, min_excess_root, min_excess_minutes,
                                   base[i])
                if is_material(run[0], run[1], gate, min_excess_pct):
                    anomaly[i] = True
            if run == (0.0, 0.0):
                break
            i += 1
        while k < len(starts) and starts[k] <= i:
            k += 1
    return anomaly


def alert_starts(ts: np.ndarray, anomaly: np.ndarray, fire_after: int = 1, resolve_after: int = 3) -> list[float]:
    """Window ends at which an alert starts: ``fire_after`` anomalous windows in a row start
    one, ``resolve_after`` normal windows in a row end it (the alert engine's lifecycle)."""
    out: list[float] = []
    idx = np.flatnonzero(anomaly).tolist()
    if not idx:
        return out
    firing_until = -1  # index of the last anomalous window of the alert under way
    run = 0
    prev = -2
    for i in idx:
        run = run + 1 if i == prev + 1 else 1
        prev = i
        if firing_until >= 0 and i - firing_until <= resolve_after:
            firing_until = i  # still firing (fewer than resolve_after normal windows between)
            continue
        firing_until = -1
        if run >= fire_after:
            out.append(float(ts[i]))
            firing_until = i
    return out


@dataclass
class Row:
    """One setting's results for one team (or all of them)."""

    setting: Setting
    alerts: int
    team_weeks: float
    incidents: int = 0
    detected: int = 0
    delays_s: list[float] = field(default_factory=list)
    false_alerts: int = 0
    labelled: bool = False  # the team has labels or feedback: false alerts can be told

    @property
    def alerts_per_week(self) -> float:
        return self.alerts / self.team_weeks if self.team_weeks > 0 else 0.0

    @property
    def false_per_week(self) -> float | None:
        if not self.labelled:
            return None
        return self.false_alerts / self.team_weeks if self.team_weeks > 0 else 0.0

    @property
    def budgeted_per_week(self) -> float:
        """What the alert budget counts: false alerts per team-week where labels tell them,
        every alert otherwise."""
        f = self.false_per_week
        return self.alerts_per_week if f is None else f

    @property
    def recall(self) -> float | None:
        return self.detected / self.incidents if self.incidents else None

    @property
    def median_delay_min(self) -> float | None:
        if not self.delays_s:
            return None
        d = sorted(self.delays_s)
        return d[len(d) // 2] / 60 if len(d) % 2 else (d[len(d) // 2 - 1] + d[len(d) // 2]) / 120


@dataclass
class Label:
    team: str
    start: float
    end: float
    should_alert: bool


def score_team(starts: list[float], labels: list[Label], scored_from: float, grace: float) -> tuple[int, int, list[float], int]:
    """(incidents, detected, delays, false alerts) of one team's alert starts against its labels,
    from ``scored_from`` on (as ``tokenpulse.replay.score``)."""
    starts = [t for t in starts if t >= scored_from]
    should = [lab for lab in labels if lab.should_alert and lab.end >= scored_from]
    detected, delays = 0, []
    for lab in should:
        hits = [t for t in starts if lab.start <= t <= lab.end + grace]
        if hits:
            detected += 1
            delays.append(min(hits) - lab.start)
    false = sum(1 for t in starts if not any(lab.start <= t <= lab.end + grace for lab in should))
    return len(should), detected, delays, false


def sweep(gates: list[GateInputs], ws: WindowSet, settings: list[Setting], *, labels: list[Label],
          scored_from: float, alert_policy: dict[str, Any], grace: float = 900.0,
          progress: Callable[[int], None] | None = None) -> dict[str, list[Row]]:
    """Per team, one :class:`Row` per setting; with labels, false alerts are the alerts outside
    every should-alert incident (without, every alert counts)."""
    fire_after = int(alert_policy.get("fire_after_windows", 1))
    resolve_after = int(alert_policy.get("resolve_after_windows", 3))
    by: dict[tuple[str, float], GateInputs] = {(g.team, g.threshold): g for g in gates}
    teams = sorted({g.team for g in gates})
    lab_by_team: dict[str, list[Label]] = {}
    for lab in labels:
        lab_by_team.setdefault(lab.team, []).append(lab)
    out: dict[str, list[Row]] = {t: [] for t in teams}
    last = ws.last_ts or 0.0
    for team in teams:
        for st in settings:
            g = by[(team, st.score_threshold)]
            anomaly = gate_decisions(g, ws.window_seconds, float(g.params["min_excess_usd"]),
                                     st.min_excess_pct, st.min_excess_minutes, float(g.params["min_excess_root"]))
            starts = alert_starts(g.ts, anomaly, fire_after, resolve_after)
            first = float(g.ts[0]) if len(g.ts) else last
            tw = max(0.0, last - max(scored_from, first)) / (7 * 86400)
            team_labels = lab_by_team.get(team, [])
            n_alerts = sum(1 for t in starts if t >= scored_from)
            if team_labels:
                inc, det, delays, false = score_team(starts, team_labels, scored_from, grace)
            else:
                inc, det, delays, false = 0, 0, [], n_alerts
            out[team].append(Row(st, n_alerts, tw, inc, det, delays, false, bool(team_labels)))
            if progress is not None:
                progress(1)
    return out


def overall(rows: dict[str, list[Row]], settings: list[Setting]) -> list[Row]:
    """The same setting for every team, summed."""
    out = []
    for j, st in enumerate(settings):
        r = Row(st, 0, 0.0)
        for team_rows in rows.values():
            x = team_rows[j]
            r.alerts += x.alerts
            r.team_weeks += x.team_weeks
            r.incidents += x.incidents
            r.detected += x.detected
            r.delays_s.extend(x.delays_s)
            r.false_alerts += x.false_alerts
            r.labelled = r.labelled or x.labelled
        out.append(r)
    return out


def recommend(rows: list[Row], budget: float) -> tuple[Row, bool]:
    """The setting with the best recall under the alert budget (false alerts per team-week where
    labels tell them, every alert otherwise), then the fewest alerts, then the shortest median
    delay; without labels, the most sensitive setting under the budget (the most alerts: recall
    cannot be told, and a quieter one could miss). Returns (row, within budget); over budget
    everywhere: the quietest setting."""
    ok = [r for r in rows if r.budgeted_per_week <= budget]
    if not ok:
        return min(rows, key=lambda r: (r.budgeted_per_week, r.alerts, -(r.recall or 0.0))), False
    if any(r.incidents for r in ok):
        return min(ok, key=lambda r: (-(r.recall or 0.0), r.alerts,
                                      r.median_delay_min if r.median_delay_min is not None else math.inf)), True
    return max(ok, key=lambda r: (r.alerts, -r.setting.score_threshold, -r.setting.min_excess_minutes)), True


def policy_patch(global_best: Setting, per_team: dict[str, Setting], existing: list[tuple[dict[str, str], dict[str, Any]]],
                 base_params: dict[str, Any]) -> dict[str, Any]:
    """A ``detector`` section: the global recommendation as its parameters (on top of the
    policy's own), the policy's overrides kept, then one override per team whose recommendation
    differs from the global one (later overrides win)."""
    params = {**base_params, **global_best.params()}
    overrides = [{"match": dict(m), "params": dict(p)} for m, p in existing]
    for team, st in sorted(per_team.items()):
        if st != global_best:
            overrides.append({"match": {"team": team}, "params": st.params()})
    return {"detector": {"name": "default", "params": params, "overrides": overrides}}


def load_tune_labels(path: Path) -> list[Label]:
    """Labels (``tokenpulse replay --labels``' format)."""
    from tokenpulse.replay import load_labels

    return [Label(i.team, i.start, i.end, i.should_alert) for i in load_labels(path)]


def load_feedback(path: Path) -> list[Label]:
    """On-call feedback, one JSON object a line: ``team``, ``at`` (the alert's time: RFC 3339
    or epoch seconds) and ``useful`` (true: a real incident; false: noise). A useful alert
    becomes a should-alert incident over the quarter hour before it; noise becomes a
    should-not-alert span (it counts as a false alert wherever it falls, as any alert outside an
    incident does). A line whose ``team`` is null (an answer on the org's alert, as
    ``tokenpulse feedback export`` writes it) is skipped. Bad lines raise ``ValueError`` naming
    the line."""
    from tokenpulse.replay import jsonl_values, to_epoch

    out = []
    for where, r in jsonl_values(path):
        if not isinstance(r, dict) or not {"team", "at", "useful"} <= set(r):
            raise ValueError(f"{where}: needs team, at and useful")
        if not isinstance(r["useful"], bool):
            raise ValueError(f"{where}: useful must be true or false, got {r['useful']!r}")
        if r["team"] is None:
            continue
        at = to_epoch(r["at"], f"{where}: at")
        out.append(Label(str(r["team"]), at - 900.0, at, r["useful"]))
    return out


# -- the command ----------------------------------------------------------------------------


def run_tune(
    events: Path, cfg: StreamConfig, *, data_dir: Path | None, labels: list[Label], budget: float,
             out: Path | None, jobs: int, burn_in_days: float | None, top: int, console: Any,
             err_console: Any, settings: list[Setting] | None = None, progress: bool = True) -> dict[str, Any]:
    """What ``tokenpulse tune`` does once its inputs are read: the three stages with a progress
    bar on ``err_console``, a table per team and one for all teams on ``console``, the patch
    written to ``out``. Returns a summary (for tests and ``--json``)."""
    settings = list(settings or SETTINGS)
    ws, rows, burn, took = _run_stages(events, cfg, data_dir=data_dir, labels=labels, settings=settings, jobs=jobs,
                                       burn_in_days=burn_in_days, err_console=err_console, progress=progress)
    unknown = _warn_about_inputs(ws, labels, err_console)
    current = Setting(float(cfg.detector_params.get("score_threshold", 0.9999)),
                      float(cfg.detector_params.get("min_excess_minutes", 10.0)),
                      float(cfg.detector_params.get("min_excess_pct", 50.0)))
    all_rows = overall(rows, settings)
    best_all, ok_all = recommend(all_rows, budget)
    per_team: dict[str, Setting] = {}
    summary: dict[str, Any] = {"teams": {}, "budget": budget, "burn_in_days": burn, "seconds": took,
                               "windows_cached": bool(ws.extra.get("cached")), "rejects": ws.rejects[:10],
                               "unknown_teams": unknown}
    for team, rs in rows.items():
        best, within = recommend(rs, budget)
        per_team[team] = best.setting
        console.print(_settings_table(f"team {_safe(team)}", rs, best, within, top=top, current=current))
        summary["teams"][team] = {**_recommendation(best, within), "median_delay_min": best.median_delay_min}
    console.print(_settings_table("all teams, one setting", all_rows, best_all, ok_all, top=top, current=current))
    summary["global"] = _recommendation(best_all, ok_all)
    patch = policy_patch(best_all.setting, per_team, [(dict(m), dict(p)) for m, p in cfg.detector_overrides],
                         dict(cfg.detector_params))
    summary["patch"] = patch
    if out is not None:
        _write_patch(out, patch, budget, err_console)
    err_console.print(f"windows {took['windows']:.1f}s{' (cached)' if ws.extra.get('cached') else ''}, models "
                      f"{took['models']:.1f}s, sweep {took['sweep']:.1f}s")
    return summary


def _run_stages(events: Path, cfg: StreamConfig, *, data_dir: Path | None, labels: list[Label],
                settings: list[Setting], jobs: int, burn_in_days: float | None, err_console: Any,
                progress: bool) -> tuple[WindowSet, dict[str, list[Row]], float, dict[str, float]]:
    """The three stages, each with its progress bar on ``err_console``: (the windows, the rows
    per team, the burn-in in days, each stage's seconds). Raises ``ValueError`` when the
    history has no team series."""
    import time

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    thresholds = sorted({s.score_threshold for s in settings})
    took: dict[str, float] = {}
    cols = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*cols, console=err_console, transient=False, disable=not progress) as bar:
        t0 = time.perf_counter()
        size = events.stat().st_size
        task = bar.add_task("windows (parse once)", total=max(size, 1))
        ws = load_windows(events, cfg, None if data_dir is None else data_dir / "tune",
                          progress=lambda done, of: bar.update(task, completed=done))
        bar.update(task, completed=max(size, 1),
                   description="windows (from the cache)" if ws.extra.get("cached") else "windows (parsed)")
        took["windows"] = time.perf_counter() - t0
        teams = team_series(ws)
        if not teams:
            raise ValueError(f"{events}: no team series to tune (no accepted event names a team; "
                             f"{ws.counters.get('accepted', 0):,} accepted, {ws.counters.get('rejected', 0):,} rejected)")
        t0 = time.perf_counter()
        task = bar.add_task(f"models ({len(teams)} teams x {len(thresholds)} thresholds)",
                            total=max(1, sum(len(s.ts) for s in teams) * len(thresholds)))
        gates = run_models(ws, cfg, thresholds, jobs=jobs, progress=lambda n: bar.advance(task, n))
        took["models"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        span_days = ((ws.last_ts or 0.0) - (ws.first_ts or 0.0)) / 86400
        burn = burn_in_days if burn_in_days is not None else (7.0 if span_days >= 14 else span_days / 4)
        scored_from = (ws.first_ts or 0.0) + burn * 86400
        task = bar.add_task(f"sweep ({len(settings)} settings)", total=max(1, len(teams) * len(settings)))
        rows = sweep(gates, ws, settings, labels=labels, scored_from=scored_from, alert_policy=cfg.alert_policy,
                     progress=lambda n: bar.advance(task, n))
        took["sweep"] = time.perf_counter() - t0
    return ws, rows, burn, took


def _safe(x: object) -> str:
    """``x`` as text for a rich console: no terminal control characters, no markup."""
    from rich.markup import escape

    from streams.common.text import terminal_safe

    return escape(terminal_safe(str(x)))


def _warn_about_inputs(ws: WindowSet, labels: list[Label], err_console: Any) -> list[str]:
    """Tell of the history's bad lines (the first ten) and of the teams the labels or feedback
    name that the history does not have; returns those teams."""
    rejected = ws.counters.get("rejected", 0)
    if ws.rejects or rejected:
        err_console.print(f"[yellow]{max(rejected, len(ws.rejects)):,} bad line(s) skipped[/yellow]"
                          + (" (the first ones:)" if ws.rejects else ""))
        for line, reason in ws.rejects[:10]:
            err_console.print(f"  line {line}: {_safe(reason)}")
    known = set(ws.teams)
    unknown = sorted({lab.team for lab in labels} - known)
    if unknown:
        err_console.print(f"[yellow]labels or feedback name {len(unknown)} team(s) the history does not have "
                          f"(not scored):[/yellow] {_safe(', '.join(unknown))}")
    return unknown


def _row_cells(r: Row) -> tuple[str, str, str, str, str]:
    rec = "-" if r.recall is None else f"{r.recall:.2f} ({r.detected}/{r.incidents})"
    d = r.median_delay_min
    f = r.false_per_week
    return (f"{r.alerts_per_week:.2f}", str(r.alerts), "-" if f is None else f"{f:.2f}", rec,
            "-" if d is None else f"{d:.1f}")


def _settings_table(title: str, rs: list[Row], best: Row, within: bool, *, top: int, current: Setting) -> Any:
    """A rich table of the ``top`` settings by recall (then the fewest alerts), plus the
    recommended one (``best``) and the policy's ``current`` one wherever they rank."""
    from rich.table import Table

    t = Table(title=title, title_justify="left")
    for c, j in (("score, gate, %", "left"), ("alerts/wk", "right"), ("alerts", "right"), ("false/wk", "right"),
                 ("recall", "right"), ("delay min", "right"), ("", "left")):
        t.add_column(c, justify=j)  # type: ignore[arg-type]
    ranked = sorted(rs, key=lambda r: (-(r.recall or 0.0), r.budgeted_per_week, r.alerts))
    shown = [r for r in ranked[:top]]
    for r in rs:
        if (r is best or r.setting == current) and r not in shown:
            shown.append(r)
    for r in shown:
        marks = []
        if r is best:
            marks.append("recommended" if within else "quietest (all over budget)")
        if r.setting == current:
            marks.append("current")
        style = "bold green" if r is best else None
        t.add_row(r.setting.label(), *_row_cells(r), ", ".join(marks), style=style)
    return t


def _recommendation(best: Row, within: bool) -> dict[str, Any]:
    """The summary's account of a recommended setting."""
    return {"recommended": best.setting.params(), "within_budget": within,
            "alerts_per_week": round(best.alerts_per_week, 3), "false_per_week": best.false_per_week,
            "recall": best.recall}


def _write_patch(out: Path, patch: dict[str, Any], budget: float, err_console: Any) -> None:
    import yaml

    text = ("# tokenpulse tune: the detector section recommended for an alert budget of "
            f"{budget:g} alerts per team-week.\n# Put it in place of your policy's detector "
            "section; check with: tokenpulse policy FILE\n")
    out.write_text(text + yaml.safe_dump(patch, sort_keys=False), encoding="utf-8")
    err_console.print(f"wrote {_safe(out)}")
