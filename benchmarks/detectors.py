"""Detectors against the labelled evaluation workload, next to a naive anchor.

    python -m benchmarks.detectors [--seeds 3] [--days 21] [--candidates NAME[:k=v,...] ...]
                                   [--policy P.yaml] [--jobs 2] [--json]

For each seed, writes ``tokenpulse.workload.generate(seed, days)`` once to a temporary JSONL
file, then replays it (``tokenpulse.replay.replay_lines``, the worker's own pipeline) once per
candidate detector and scores the alert firings with ``tokenpulse.replay.score`` over the
scored span (after the workload's burn-in, 7 days by default: firings before it are dropped).

Candidates: every detector registered in ``detectors.DETECTORS`` when the run starts, plus
``default`` (a candidate that resolves to the same detector and parameters is replayed once and
reported under both names). ``--candidates`` picks some, with optional parameters
(``seasonal:threshold=5,min_history=60``); unknown names are skipped with a note. The policy
(``--policy``, default: the built-in one) gives the watched series, alert thresholds and price
overrides; its ``detector.params`` apply to the candidate it names.

Prints, per candidate and aggregated over the seeds: recall, false alerts per team-week, the
median detection delay, recall per incident kind and false alerts per should-not-page kind
(a false firing inside a should-not-page label of its team, or ``other``). Only firings of team
series (team, team x model) are scored, as in ``score``; team-weeks count each team from its
first event (the new team pro rata) over the scored span. Then a verdict line
for ``default`` against the targets (recall 1.0, <= 0.25 false alerts per team-week, median
delay <= 5 min) and against the naive anchor (``naive``), axis by axis: better recall means
higher (or both 1.0: a perfect anchor cannot be beaten), better false alerts means fewer per
team-week; "better on both axes" needs both.

Replays run in ``--jobs`` worker processes (default: 2, or 1 on a 1-core machine). Progress on
stderr; ``--json`` prints the aggregated results as JSON on stdout instead of the tables.

With ``--independent-seeds N`` (default 1) each candidate also replays N histories of the
independent generator (``benchmarks/independent/``, seeds 1..N, or from
``--independent-seed0``, written from its own spec apart
from the detectors), scored the same way after its burn-in; its recall per kind and the missed
incidents are printed below the tables.

Last, a side-by-side table: the project's generator, the independent generator, and with
``--nab`` the NAB
standard-profile score of each candidate (``benchmarks.nab``: NAB's own scorer, a NAB checkout
in ``--nab-dir``), next to the anchors of issue 12 (the default before this round, the naive
anchor, a 1000-point rolling z-score, NAB's windowed Gaussian, Numenta HTM, ARTime).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import tempfile
import time
from collections import Counter, defaultdict
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import orjson

from tokenpulse.policy import Policy, load_policy
from tokenpulse.replay import Incident, read_lines, replay_lines, score, to_epoch
from tokenpulse.runtime import stream_config
from tokenpulse.settings import Settings
from tokenpulse.workload import NEGATIVE_KINDS, POSITIVE_KINDS, generate

ANCHOR = "naive"
TARGET_RECALL = 1.0
TARGET_FALSE_PER_TEAM_WEEK = 0.25
TARGET_DELAY_MIN = 5.0
GRACE_S = 900.0  # like `tokenpulse replay --grace`: a firing up to 15 min after the end counts


@dataclasses.dataclass(frozen=True)
class Candidate:
    label: str  # as given ("default", "seasonal:threshold=5")
    name: str  # registry name, resolved ("default" -> the default detector)
    params: tuple[tuple[str, Any], ...]

    @property
    def key(self) -> tuple[str, str]:
        return (self.name, repr(self.params))  # params may hold lists: compare their repr


def _split_top_level(text: str) -> list[str]:
    """Split ``k=v,k2=[a,b]`` on the commas outside brackets and braces."""
    parts, depth, cur = [], 0, []
    for ch in text:
        if ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return parts


def parse_candidate(text: str, policy: Policy) -> Candidate:
    import yaml

    from detectors import DEFAULT_DETECTOR

    name, _, rest = text.partition(":")
    name = name.strip()
    params: dict[str, Any] = {}
    pol_name = policy.detector.name
    if name == pol_name or (name == "default" and pol_name == DEFAULT_DETECTOR) or (
            pol_name == "default" and name == DEFAULT_DETECTOR):
        params.update(policy.detector.params)
    for part in _split_top_level(rest):
        if part.strip():
            k, sep, v = part.partition("=")
            if not sep:
                raise ValueError(f"candidate {text!r}: expected key=value, got {part!r}")
            params[k.strip()] = yaml.safe_load(v)
    resolved = DEFAULT_DETECTOR if name == "default" else name
    return Candidate(text, resolved, tuple(sorted(params.items())))


def _replay_job(path: str, cfg: Any) -> dict[str, Any]:
    """One replay in a worker process; returns only what scoring needs."""
    t = time.perf_counter()
    res = replay_lines(read_lines(Path(path)), cfg, total_bytes=os.path.getsize(path))
    return {
        "firings": [{k: f[k] for k in ("team", "series", "fired_at", "window_start", "excess_usd")} for f in res.firings],
        "teams": sorted(res.teams),
        "last_ts": res.last_ts,
        "accepted": res.counters.get("accepted", 0),
        "seconds": time.perf_counter() - t,
    }


def _kind_of_false(team: str, t: float, negatives: list[tuple[str, float, float, str]]) -> str:
    """The should-not-page label a false firing falls in (the shortest one), or 'other'."""
    best: tuple[float, str] | None = None
    for lt, s, e, kind in negatives:
        if lt == team and s <= t <= e + GRACE_S and (best is None or e - s < best[0]):
            best = (e - s, kind)
    return best[1] if best else "other"


def score_seed(job: dict[str, Any], labels: list[dict[str, Any]], scored_from: float, team_weeks: float) -> dict[str, Any]:
    firings = [f for f in job["firings"] if to_epoch(f["fired_at"], "fired_at") >= scored_from]
    incidents = [Incident(str(lab["team"]), to_epoch(lab["start"], "start"), to_epoch(lab["end"], "end"),
                          bool(lab["should_alert"]), str(lab.get("name", ""))) for lab in labels]
    kinds = [lab.get("kind", "") for lab in labels if lab["should_alert"]]
    sc = score(firings, incidents, set(job["teams"]), scored_from, job["last_ts"], GRACE_S)
    per_kind: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    delays: dict[str, list[float]] = defaultdict(list)
    for kind, inc in zip(kinds, sc["per_incident"], strict=True):
        per_kind[kind][1] += 1
        if inc["detected"]:
            per_kind[kind][0] += 1
            delays[kind].append(inc["delay_s"])
    should = [i for i in incidents if i.should_alert]
    negatives = [(str(lab["team"]), to_epoch(lab["start"], "start"), to_epoch(lab["end"], "end"), str(lab.get("kind", "")))
                 for lab in labels if not lab["should_alert"]]
    false_kinds: Counter[str] = Counter()
    for f in firings:
        if not f.get("team"):
            continue
        t = to_epoch(f["fired_at"], "fired_at")
        if any(i.team == f["team"] and i.start <= t <= i.end + GRACE_S for i in should):
            continue
        false_kinds[_kind_of_false(f["team"], t, negatives)] += 1
    assert sum(false_kinds.values()) == sc["false_alerts"]
    return {
        "incidents": sc["incidents"], "detected": sc["detected"], "false_alerts": sc["false_alerts"],
        "team_weeks": team_weeks, "delays_s": [d["delay_s"] for d in sc["per_incident"] if d["detected"]],
        "per_kind": dict(per_kind), "delays_by_kind": dict(delays), "false_by_kind": dict(false_kinds),
        "missed": [d for d in sc["per_incident"] if not d["detected"]],
    }


def score_independent(job: dict[str, Any], labels: list[dict[str, Any]], scored_from: float) -> dict[str, Any]:
    """A replay of an independent history: its labels name their kind in ``name``; scored, like
    the project's, from the end of its burn-in (no label starts before it)."""
    firings = [f for f in job["firings"] if to_epoch(f["fired_at"], "fired_at") >= scored_from]
    incidents = [Incident(str(lab["team"]), to_epoch(lab["start"], "start"), to_epoch(lab["end"], "end"),
                          bool(lab["should_alert"]), str(lab.get("name", ""))) for lab in labels]
    sc = score(firings, incidents, set(job["teams"]), scored_from, job["last_ts"], GRACE_S)
    return {"incidents": sc["incidents"], "detected": sc["detected"], "false_alerts": sc["false_alerts"],
            "team_weeks": sc["team_weeks"], "per_incident": sc["per_incident"]}


def aggregate_independent(runs: list[dict[str, Any]]) -> dict[str, Any]:
    inc = sum(r["incidents"] for r in runs)
    det = sum(r["detected"] for r in runs)
    fa = sum(r["false_alerts"] for r in runs)
    tw = sum(r["team_weeks"] for r in runs)
    rows = [d for r in runs for d in r["per_incident"]]
    delays = [d["delay_s"] for d in rows if d["detected"]]
    switch = [d["delay_s"] for d in rows if d["detected"] and d["name"] == "model_switch"]
    by_kind: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for d in rows:
        by_kind[d["name"]][1] += 1
        by_kind[d["name"]][0] += bool(d["detected"])
    return {
        "incidents": inc, "detected": det, "recall": det / inc if inc else None, "false_alerts": fa,
        "team_weeks": round(tw, 3), "false_per_team_week": fa / tw if tw else None,
        "median_delay_min": statistics.median(delays) / 60 if delays else None,
        "model_switch_median_delay_min": statistics.median(switch) / 60 if switch else None,
        "recall_by_kind": {k: d / n for k, (d, n) in sorted(by_kind.items())},
        "missed": [f"{d['team']} {d['name']} {d['start']}" for d in rows if not d["detected"]],
    }


def aggregate(per_seed: list[dict[str, Any]]) -> dict[str, Any]:
    inc = sum(s["incidents"] for s in per_seed)
    det = sum(s["detected"] for s in per_seed)
    fa = sum(s["false_alerts"] for s in per_seed)
    tw = sum(s["team_weeks"] for s in per_seed)
    delays = [d for s in per_seed for d in s["delays_s"]]
    per_kind = {k: [0, 0] for k in POSITIVE_KINDS}
    delay_kind: dict[str, list[float]] = {k: [] for k in POSITIVE_KINDS}
    false_kind = Counter({k: 0 for k in (*NEGATIVE_KINDS, "other")})
    for s in per_seed:
        for k, (d, n) in s["per_kind"].items():
            per_kind.setdefault(k, [0, 0])
            per_kind[k][0] += d
            per_kind[k][1] += n
        for k, v in s["delays_by_kind"].items():
            delay_kind.setdefault(k, []).extend(v)
        false_kind.update(s["false_by_kind"])
    return {
        "incidents": inc, "detected": det, "recall": det / inc if inc else None,
        "false_alerts": fa, "team_weeks": round(tw, 3), "false_per_team_week": fa / tw if tw else None,
        "median_delay_min": statistics.median(delays) / 60 if delays else None,
        "recall_by_kind": {k: (d / n if n else None) for k, (d, n) in per_kind.items()},
        "median_delay_min_by_kind": {k: (statistics.median(v) / 60 if v else None) for k, v in delay_kind.items()},
        "false_by_kind": dict(false_kind),
        "missed": [m for s in per_seed for m in s["missed"]],
    }


def _fmt(v: float | None, spec: str = ".2f") -> str:
    return "-" if v is None else format(v, spec)


def print_tables(results: dict[str, dict[str, Any]], order: list[str]) -> None:
    kinds = list(POSITIVE_KINDS)
    neg = [*NEGATIVE_KINDS, "other"]
    short = {"runaway_loop": "loop", "model_switch": "switch", "burst": "burst", "night_spike": "night",
             "nightly_batch": "batch", "organic_growth": "growth", "tiny_blip": "blip", "holiday_lull": "holiday",
             "new_team": "newteam", "other": "other"}
    w = max(12, *(len(c) for c in order)) + 1
    head = f"{'candidate':{w}s} {'recall':>7s} {'FA/tw':>6s} {'FA':>4s} {'delay':>6s} | " + \
        " ".join(f"{short[k]:>6s}" for k in kinds) + " | " + " ".join(f"{short[k]:>7s}" for k in neg)
    print("recall and delay (min) over should-alert incidents; FA = false alerts after the burn-in, FA/tw per team-week")
    print(f"{'':{w}s} {'':>7s} {'':>6s} {'':>4s} {'':>6s} | {'recall by kind':^{7 * len(kinds) - 1}s} | "
          f"{'false alerts by should-not-page kind':^{8 * len(neg) - 1}s}")
    print(head)
    print("-" * len(head))
    for c in order:
        r = results[c]
        if r.get("skipped"):
            print(f"{c:{w}s} skipped: {r['skipped']}")
            continue
        print(f"{c:{w}s} {_fmt(r['recall']):>7s} {_fmt(r['false_per_team_week']):>6s} {r['false_alerts']:4d} "
              f"{_fmt(r['median_delay_min'], '.1f'):>6s} | "
              + " ".join(f"{_fmt(r['recall_by_kind'].get(k)):>6s}" for k in kinds) + " | "
              + " ".join(f"{r['false_by_kind'].get(k, 0):7d}" for k in neg))
    print()
    print("median delay (min) by kind: " + "; ".join(
        f"{c}: " + ", ".join(f"{short[k]} {_fmt(results[c]['median_delay_min_by_kind'].get(k), '.1f')}" for k in kinds)
        for c in order if not results[c].get("skipped")))


def verdict(results: dict[str, dict[str, Any]]) -> str:
    d = results.get("default")
    if d is None or d.get("skipped"):
        return "default: not run"
    ok_r = d["recall"] is not None and d["recall"] >= TARGET_RECALL
    ok_f = d["false_per_team_week"] is not None and d["false_per_team_week"] <= TARGET_FALSE_PER_TEAM_WEEK
    ok_d = d["median_delay_min"] is not None and d["median_delay_min"] <= TARGET_DELAY_MIN
    parts = [
        f"default ({d['detector']}): recall {_fmt(d['recall'])} {'ok' if ok_r else 'MISS'} (target {TARGET_RECALL:g}), "
        f"false alerts/team-week {_fmt(d['false_per_team_week'])} {'ok' if ok_f else 'MISS'} "
        f"(target <= {TARGET_FALSE_PER_TEAM_WEEK:g}), median delay {_fmt(d['median_delay_min'], '.1f')} min "
        f"{'ok' if ok_d else 'MISS'} (target <= {TARGET_DELAY_MIN:g})"
    ]
    a = results.get(ANCHOR) or next((r for r in results.values() if r.get("detector") == ANCHOR), None)
    if a is None or a.get("skipped"):
        parts.append(f"vs anchor: '{ANCHOR}' was not run (not registered or not a candidate), no comparison")
    else:
        dr, ar = d["recall"] or 0.0, a["recall"] or 0.0
        df, af = d["false_per_team_week"] or 0.0, a["false_per_team_week"] or 0.0
        # recall cannot beat a perfect anchor: matching 1.0 counts as better on that axis
        r_better = dr > ar or dr == ar == 1.0
        f_better = df < af

        def word(better: bool, same: bool) -> str:
            return "better" if better else ("same" if same else "worse")

        dd, ad = d["median_delay_min"], a["median_delay_min"]
        delay = "" if dd is None or ad is None else f", median delay {dd:.1f} vs {ad:.1f} min"
        parts.append(f"vs {ANCHOR} anchor: recall {dr:.2f} vs {ar:.2f} ({word(r_better, dr == ar)}), "
                     f"false alerts/team-week {df:.2f} vs {af:.2f} ({word(f_better, df == af)}){delay}: "
                     f"{'BETTER on both axes' if r_better and f_better else 'NOT better on both axes'}")
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:  # noqa: C901 - a benchmark script: options, runs, tables, read top to bottom
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=3, help="number of seeds (0..N-1)")
    ap.add_argument("--seed0", type=int, default=0, help="first seed")
    ap.add_argument("--days", type=float, default=21.0, help="days of history per seed")
    ap.add_argument("--burn-in-days", type=float, default=None, help="warm-up excluded from scoring (default 7)")
    ap.add_argument("--candidates", nargs="*", default=None,
                    help="detector names (NAME[:k=v,...]); default: every registered one plus 'default'")
    ap.add_argument("--policy", type=Path, default=None, help="policy YAML (watch, alerts, prices, detector params)")
    ap.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1), help="replays run in parallel")
    ap.add_argument("--json", action="store_true", help="print the results as JSON on stdout")
    ap.add_argument("--independent-seeds", type=int, default=1,
                    help="also replay this many histories of the independent generator (benchmarks.independent, "
                         "seeds 1..N; ~4 min per candidate and seed on 2 cores; 0: none)")
    ap.add_argument("--independent-seed0", type=int, default=1,
                    help="first seed of the independent generator (default 1: seeds 1..N; e.g. 4 with "
                         "--independent-seeds 3 for the held-out seeds 4..6)")
    ap.add_argument("--nab", action="store_true",
                    help="also run the candidates on NAB (benchmarks.nab; needs a NAB checkout, --nab-dir)")
    ap.add_argument("--nab-dir", default=os.environ.get("NAB_DIR", "/work/nab"), help="NAB checkout (with --nab)")
    a = ap.parse_args(argv)

    from detectors import DEFAULT_DETECTOR, DETECTORS

    def note(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    policy = load_policy(a.policy) if a.policy else Policy()
    names = a.candidates if a.candidates else [*sorted(DETECTORS), "default"]
    if ANCHOR not in [n.partition(":")[0] for n in names] and a.candidates is None:
        names.append(ANCHOR)  # reported as skipped when it is not registered
    results: dict[str, dict[str, Any]] = {}
    cands: list[Candidate] = []
    for n in dict.fromkeys(names):
        try:
            c = parse_candidate(n, policy)
        except ValueError as exc:
            results[n] = {"skipped": str(exc)}
            continue
        if c.name not in DETECTORS:
            results[n] = {"skipped": f"detector {c.name!r} is not registered (known: {', '.join(sorted(DETECTORS))})"}
            note(f"note: skipping {n}: not registered")
            continue
        cands.append(c)
    unique = list(dict.fromkeys(c.key for c in cands))
    params_of = {c.key: dict(c.params) for c in cands}
    base = stream_config(Settings(), policy, bootstrap="", partitions=1)
    note(f"detectors: {', '.join(c.label for c in cands)} ({len(unique)} distinct); default = {DEFAULT_DETECTOR}; "
         f"seeds {a.seed0}..{a.seed0 + a.seeds - 1}, {a.days:g} days each, {a.jobs} parallel replays")

    t0 = time.perf_counter()
    per_seed: dict[tuple[Any, ...], list[dict[str, Any]]] = defaultdict(list)
    per_ind: dict[tuple[Any, ...], list[dict[str, Any]]] = defaultdict(list)
    replay_s: dict[tuple[Any, ...], float] = defaultdict(float)
    with tempfile.TemporaryDirectory(prefix="tokenpulse-bench-") as tmp:
        seeds = []
        for seed in range(a.seed0, a.seed0 + a.seeds):
            t = time.perf_counter()
            wl = generate(seed, a.days, burn_in_days=a.burn_in_days)
            path = Path(tmp) / f"seed{seed}.jsonl"
            n = wl.write_jsonl(path)
            seeds.append((seed, str(path), wl.labels, wl.scored_from, wl.team_weeks()))
            note(f"seed {seed}: {n:,} events, {sum(lab['should_alert'] for lab in wl.labels)} incidents, "
                 f"{path.stat().st_size / 1e6:.0f} MB, generated in {time.perf_counter() - t:.1f}s")
            del wl
        ind_seeds = []
        if a.independent_seeds > 0:
            from benchmarks.independent.generator import generate as generate_independent

            for seed in range(a.independent_seed0, a.independent_seed0 + a.independent_seeds):
                t = time.perf_counter()
                burn = a.burn_in_days if a.burn_in_days is not None else (7.0 if a.days >= 14 else a.days / 4)
                events, ind_labels, meta = generate_independent(seed, days=a.days, burn_in_days=burn)
                path = Path(tmp) / f"independent{seed}.jsonl"
                with open(path, "wb") as f:
                    n = events.write_jsonl(f)
                ind_seeds.append((f"i{seed}", str(path), ind_labels, to_epoch(meta["burn_in_end"], "burn_in_end"), None))
                note(f"independent seed {seed}: {n:,} events, {meta['positives']} incidents, "
                     f"{path.stat().st_size / 1e6:.0f} MB, generated in {time.perf_counter() - t:.1f}s")
                del events
        # the default detector (usually the slowest: it runs several models) first, so the
        # cheap replays fill the tail instead of one slow replay running alone at the end
        default_key = next((c.key for c in cands if c.label == "default"), None)
        ordered = sorted(unique, key=lambda k: k != default_key)
        jobs = [(s, k) for k in ordered for s in [*seeds, *ind_seeds]]
        done = 0
        with ProcessPoolExecutor(max_workers=max(1, a.jobs)) as pool:
            futs = {}
            for (seed, path, labels, scored_from, tw), key in jobs:
                cfg = dataclasses.replace(base, detector_name=key[0], detector_params=params_of[key])
                futs[pool.submit(_replay_job, path, cfg)] = (seed, labels, scored_from, tw, key)
            for fut in as_completed(futs):
                seed, labels, scored_from, tw, key = futs[fut]
                done += 1
                try:
                    job = fut.result()
                except Exception as exc:  # noqa: BLE001 - report a failing detector, keep the others
                    note(f"[{done}/{len(jobs)}] seed {seed} {key[0]}: FAILED {type(exc).__name__}: {exc}")
                    per_seed[key].append({"error": f"{type(exc).__name__}: {exc}"})
                    continue
                if tw is None:  # the independent generator
                    sc = score_independent(job, labels, scored_from)
                    per_ind[key].append(sc)
                else:
                    sc = score_seed(job, labels, scored_from, tw)
                    per_seed[key].append(sc)
                replay_s[key] += job["seconds"]
                note(f"[{done}/{len(jobs)}] {time.perf_counter() - t0:5.0f}s  seed {seed} {key[0]}{params_of[key] or ''}: "
                     f"{job['accepted']:,} events in "
                     f"{job['seconds']:.1f}s, {sc['detected']}/{sc['incidents']} detected, {sc['false_alerts']} false")
    elapsed = time.perf_counter() - t0

    for c in cands:
        runs = per_seed[c.key]
        errors = [r["error"] for r in runs if "error" in r]
        if errors:
            results[c.label] = {"skipped": f"replay failed: {errors[0]}"}
            continue
        agg = aggregate(runs)
        agg["detector"] = c.name
        agg["params"] = dict(c.params)
        agg["replay_seconds"] = round(replay_s[c.key], 1)
        if per_ind[c.key]:
            agg["independent"] = aggregate_independent(per_ind[c.key])
        results[c.label] = agg
    order = [n for n in dict.fromkeys(names) if n in results]
    summary = {"seeds": a.seeds, "independent_seeds": a.independent_seeds, "days": a.days,
               "seconds": round(elapsed, 1), "default": DEFAULT_DETECTOR,
               "candidates": {k: results[k] for k in order}, "verdict": verdict(results)}
    nab_rows: dict[str, Any] = {}
    nab_published: dict[str, Any] = {}
    if a.nab:
        from benchmarks import nab as nab_bench

        note(f"NAB: running {', '.join(c.label for c in cands)} and the rolling z-score anchor")
        specs = [_nab_spec(c) for c in cands]
        out = _run_nab(nab_bench, a.nab_dir, specs)
        nab_rows = {c.label: out["detectors"].get(_nab_spec(c)) for c in cands}
        nab_rows["rolling-z"] = out["detectors"].get("rolling-z")
        nab_published = out["published"]
        summary["nab"] = {"detectors": nab_rows, "published": nab_published}
    if a.json:
        sys.stdout.buffer.write(orjson.dumps(summary, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS) + b"\n")
    else:
        print(f"{a.seeds} seeds x {a.days:g} days (burn-in excluded), {len(unique)} distinct detectors, "
              f"{elapsed:.0f}s; 'default' is {DEFAULT_DETECTOR}")
        print()
        print_tables(results, order)
        print()
        print(verdict(results))
        print()
        for c in order:
            ind = results[c].get("independent")
            if ind:
                kinds = ", ".join(f"{k} {v:.2f}" for k, v in ind["recall_by_kind"].items())
                print(f"independent generator, {c}: {ind['detected']}/{ind['incidents']} detected ({kinds}), "
                      f"{ind['false_alerts']} false alerts over {ind['team_weeks']:.1f} team-weeks, model switch "
                      f"median delay {_fmt(ind['model_switch_median_delay_min'], '.1f')} min; missed: "
                      f"{'; '.join(ind['missed']) or 'none'}")
        print()
        print(side_by_side(results, order, nab_rows, nab_published))
    return 0


def _nab_spec(c: Candidate) -> str:
    """A candidate as benchmarks.nab takes it (NAME[:k=v,...])."""
    import yaml

    parts = [f"{k}={yaml.safe_dump(v, default_flow_style=True).strip()}" for k, v in c.params]
    return c.name if not parts else f"{c.name}:{','.join(parts)}"


def _run_nab(nab_bench: Any, nab_dir: str, specs: list[str]) -> dict[str, Any]:
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        nab_bench.main(["--nab-dir", nab_dir, "--json", "--detectors", *specs])
    return json.loads(buf.getvalue())


# The issue's anchors (issue 12): the default before this work, and the references.
ISSUE_ANCHORS = (
    ("default before (issue 12)", "1.00 / 0.00 / 4.3", "0.25 / 0.00 / 0.25 recall", "0.0"),
    ("default, round 1 (0.6 x sqrt(daily $) gate)", "0.97 / 0.02 / 1.7", "~0.45 recall, 1.06 FA/tw (seed 1)", "4.5"),
    ("rolling mean + 6 sigma per team (issue 12)", None, "0.75-1.00 recall at ~1.6 FA/tw", None),
    ("rolling z-score, 1000 points", None, None, "rolling-z"),
    ("NAB windowed Gaussian", None, None, "windowedGaussian"),
    ("Numenta HTM", None, None, "numenta"),
    ("ARTime", None, None, "ARTime"),
)


def side_by_side(results: dict[str, dict[str, Any]], order: list[str], nab_rows: dict[str, Any],
                 published: dict[str, Any]) -> str:
    """One table: the project's generator (recall / false alerts per team-week / median delay),
    the independent generator, and NAB (standard profile), with the issue's anchors."""
    w = max(32, *(len(c) for c in order)) + 1
    head = f"{'':{w}s} {'project generator':>24s} {'independent generator':>32s} {'NAB standard':>13s}"
    lines = ["side by side: recall / false alerts per team-week / median delay (min); NAB normalised score", head,
             "-" * len(head)]
    for c in order:
        r = results[c]
        proj = "-" if r.get("skipped") else (f"{_fmt(r['recall'])} / {_fmt(r['false_per_team_week'])} / "
                                            f"{_fmt(r['median_delay_min'], '.1f')}")
        nab = nab_rows.get(c)
        nab_s = "-" if not nab else f"{nab['standard']['score']:.1f}"
        ind = r.get("independent")
        ind_s = "not run (--independent-seeds N)" if not ind else (
            f"{_fmt(ind['recall'])} / {_fmt(ind['false_per_team_week'])} / {_fmt(ind['median_delay_min'], '.1f')}")
        lines.append(f"{c:{w}s} {proj:>24s} {ind_s:>32s} {nab_s:>13s}")
    for label, proj, indep, nab_key in ISSUE_ANCHORS:
        if nab_key == "rolling-z":
            nab_s = f"{nab_rows['rolling-z']['standard']['score']:.1f}" if nab_rows.get("rolling-z") else "38.8 (issue)"
        elif nab_key in ("windowedGaussian", "numenta", "ARTime"):
            names = {"windowedGaussian": "NAB windowed Gaussian", "numenta": "Numenta HTM", "ARTime": "ARTime"}
            got = published.get(names[nab_key])
            nab_s = f"{got['standard']:.1f}" if got else {"windowedGaussian": "39.6", "numenta": "70.5",
                                                           "ARTime": "74.9"}[nab_key] + " (issue)"
        else:
            nab_s = nab_key or "-"
        lines.append(f"{'  ' + label:{w}s} {proj or '-':>24s} {indep or '-':>32s} {nab_s:>13s}")
    lines.append("targets: recall >= 0.95, <= 0.25 false alerts per team-week, median delay <= 5 min on both "
                 "generators; NAB standard >= 40")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
