"""Where a model switch shows in the windows: measurements behind docs/detection-log.md (issue 12).

    python -m benchmarks.switch_evidence switches [HISTORY ...]        # default i1 i2 i3
    python -m benchmarks.switch_evidence team-price [--requests 20 --ratio 3 ...] [HISTORY ...]
    python -m benchmarks.switch_evidence team-z [--windows 30 --z 10 ...] [HISTORY ...]
    python -m benchmarks.switch_evidence new-series [--ratio 3 ...] [HISTORY ...]

Reads the fast loop's cached windows (``python -m benchmarks.detect_fast record`` writes them to
``$TMPDIR/tokenpulse-detect-fast``; HISTORY is ``i1`` .. ``i6`` or ``p0``) and applies three
candidate rules offline, each alone (not through the combiner, the alert groups or the gate's
running excess), counting alert starts (a new one after 3 quiet windows) against the labels
like ``benchmarks.detect_fast`` (an incident's span plus 15 minutes):

- ``switches``: for each labelled model switch, the team series' spend per request in its first
  30 min / 1 h / 3 h / whole span against the same hours of the 7 days before, and the team x
  model series: when each model first had requests, the new model's first windows.
- ``team-price``: a team's spend per request over its last N requests >= ``ratio`` x the median
  of its per-day spend per request in the same hour over the 7 days before, and that excess
  (spend - usual price x requests) >= max(``gate`` $, ``minutes`` x its usual spend a minute).
- ``team-z``: the mean log spend per request of the team's last M windows with requests against
  the mean and spread of that over its 7 days before (a z statistic), with the ratio and gate.
- ``new-series``: a team x model series whose first request comes two days or more after the
  team's, judged over its first day against the team's spend per request of the 7 days before
  it appeared: cumulative spend >= ``ratio`` x that price x its requests (at least 3) and the
  excess >= ``gate``.

An experiment, not a detector: see docs/detection-log.md, "A model switch judged by cost per request".
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

GRACE_S = 900.0


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%m-%d %H:%M")


def _open(d: Path, h: str) -> tuple[Any, list[tuple[str, float, float, str, bool]], float]:
    from tokenpulse.replay import to_epoch
    from tokenpulse.tune import _load

    ws = _load(d / f"{h}.npz")
    meta = json.loads((d / f"{h}.labels.json").read_text())
    labs = [(str(lab["team"]), to_epoch(lab["start"], "start"), to_epoch(lab["end"], "end"), str(lab.get("kind", "")),
             bool(lab["should_alert"])) for lab in meta["labels"]]
    return ws, labs, float(meta["scored_from"])


def _team(sw: Any) -> bool:
    return set(sw.labels) - {"org"} == {"team"}


def _starts(ts: list[float], window: int) -> list[float]:
    out: list[float] = []
    last = None
    for t in ts:
        if last is None or t - last > 3 * window:
            out.append(t)
        last = t
    return out


def _tally(h: str, name: str, starts: dict[str, list[float]], labs: list[tuple[str, float, float, str, bool]],
           scored_from: float) -> None:
    hits: dict[tuple[str, float], tuple[str, float]] = {}
    false: list[tuple[str, float, str]] = []
    for team, ts in starts.items():
        for t in ts:
            if t < scored_from:
                continue
            on = [lab for lab in labs if lab[0] == team and lab[1] <= t <= lab[2] + GRACE_S]
            pos = [lab for lab in on if lab[4]]
            if pos:
                hits.setdefault((team, pos[0][1]), (pos[0][3], t - pos[0][1]))
            else:
                false.append((team, t, on[0][3] if on else "other"))
    should = [lab for lab in labs if lab[4] and lab[1] >= scored_from]
    n_sw = sum(lab[3] == "model_switch" for lab in should)
    f_sw = sum(k == "model_switch" for k, _ in hits.values())
    print(f"{h} {name}: found {len(hits)}/{len(should)} (model switches {f_sw}/{n_sw}), false {len(false)}")
    for (team, _), (kind, delay) in sorted(hits.items()):
        print(f"  found {team} {kind} +{delay / 60:.0f} min")
    by: dict[tuple[str, str], int] = {}
    for team, _, kind in false:
        by[(team, kind)] = by.get((team, kind), 0) + 1
    for (team, kind), n in sorted(by.items()):
        print(f"  false {team} ({kind}) x{n}")


def cmd_switches(a: argparse.Namespace, d: Path) -> None:
    for h in a.histories:
        ws, labs, _ = _open(d, h)
        for team, s, e, kind, _ in labs:
            if kind != "model_switch":
                continue
            print(f"== {h} {team} {_iso(s)} .. {_iso(e)}")
            for sw in ws.series:
                if sw.labels.get("team") != team or set(sw.labels) - {"org", "team", "model"}:
                    continue
                ts, v, c = sw.ts, sw.value, np.maximum(sw.count, 0)
                if _team(sw):
                    pre = (ts >= s - 7 * 86400) & (ts < s)
                    hod = ((ts % 86400) // 3600).astype(int)
                    print(f"  team: 7 days before ${v[pre].sum():.2f} / {c[pre].sum():.0f} requests = "
                          f"${v[pre].sum() / max(c[pre].sum(), 1):.4f} a request, {np.mean(c[pre] == 0):.0%} of windows empty")
                    for span in (1800.0, 3600.0, 3 * 3600.0, e - s):
                        m = (ts > s) & (ts <= s + span)
                        same = pre & np.isin(hod, np.unique(hod[m]))
                        usual = v[same].sum() / max(c[same].sum(), 1)
                        now = v[m].sum() / max(c[m].sum(), 1)
                        print(f"    first {span / 60:4.0f} min: ${v[m].sum():8.2f} / {c[m].sum():5.0f} requests = ${now:.4f} "
                              f"(same hours before ${usual:.4f}: {now / max(usual, 1e-12):.1f}x, "
                              f"excess ${v[m].sum() - usual * c[m].sum():.2f})")
                elif (c > 0).any():
                    t0 = float(ts[c > 0][0])
                    print(f"  {sw.labels['model']}: first request {_iso(t0)}, before the switch "
                          f"{c[ts < s].sum():.0f} requests ${v[ts < s].sum():.2f}")
                    if s - 86400 <= t0:
                        first = np.nonzero(c > 0)[0][:8]
                        print("    first windows: "
                              + ", ".join(f"+{(ts[i] - s) / 60:.0f}m ${v[i]:.3f}/{c[i]:.0f}" for i in first))


def cmd_team_price(a: argparse.Namespace, d: Path) -> None:
    for h in a.histories:
        ws, labs, sf = _open(d, h)
        starts: dict[str, list[float]] = {}
        for sw in ws.series:
            if not _team(sw):
                continue
            ts, v, c = sw.ts, sw.value, np.maximum(sw.count, 0).astype(float)
            cv, cc = np.concatenate([[0.0], np.cumsum(v)]), np.concatenate([[0.0], np.cumsum(c)])
            day, hod = (ts // 86400).astype(int), ((ts % 86400) // 3600).astype(int)
            d0 = int(day.min())
            sv, sc = np.zeros((int(day.max()) - d0 + 1, 24)), np.zeros((int(day.max()) - d0 + 1, 24))
            np.add.at(sv, (day - d0, hod), v)
            np.add.at(sc, (day - d0, hod), c)
            refs: dict[tuple[int, int], tuple[float, float] | None] = {}
            flagged: list[float] = []
            for i in np.nonzero(c > 0)[0].tolist():
                lo = int(np.searchsorted(cc, cc[i + 1] - a.requests, side="right")) - 1
                key = (int(day[i]) - d0, int(hod[i]))
                if lo < 0:
                    continue
                if key not in refs:
                    rows = slice(max(0, key[0] - 7), key[0])
                    ok = sc[rows, key[1]] >= 3
                    refs[key] = None if ok.sum() < 3 else (
                        float(np.median(sv[rows, key[1]][ok] / sc[rows, key[1]][ok])),
                        float(sv[rows, key[1]].sum() / max(key[0] - rows.start, 1) / 60))
                ref = refs[key]
                if ref is None:
                    continue
                spend, n = cv[i + 1] - cv[lo], cc[i + 1] - cc[lo]
                if spend >= a.ratio * ref[0] * n and spend - ref[0] * n >= max(a.gate, a.minutes * ref[1]):
                    flagged.append(float(ts[i]))
            starts[sw.labels["team"]] = _starts(flagged, ws.window_seconds)
        _tally(h, f"team-price N={a.requests} ratio={a.ratio}", starts, labs, sf)


def cmd_team_z(a: argparse.Namespace, d: Path) -> None:
    for h in a.histories:
        ws, labs, sf = _open(d, h)
        starts: dict[str, list[float]] = {}
        for sw in ws.series:
            if not _team(sw):
                continue
            c = np.maximum(sw.count, 0)
            nz = np.nonzero(c > 0)[0]
            tn, vn, cn = sw.ts[nz], sw.value[nz], c[nz]
            x = np.log(vn / cn + 1e-12)
            cv, cc = np.concatenate([[0.0], np.cumsum(vn)]), np.concatenate([[0.0], np.cumsum(cn)])
            day = (tn // 86400).astype(int)
            stats: dict[int, tuple[float, float, float] | None] = {}
            flagged: list[float] = []
            for k in range(a.windows, len(nz)):
                dd = int(day[k])
                if dd not in stats:
                    m = (tn < dd * 86400) & (tn >= (dd - 7) * 86400)
                    enough = m.sum() >= 200  # windows with requests: the spread needs some
                    stats[dd] = (float(x[m].mean()), float(x[m].std()), float(vn[m].sum() / cn[m].sum())) if enough else None
                st = stats[dd]
                if st is None:
                    continue
                z = (x[k - a.windows + 1:k + 1].mean() - st[0]) / (st[1] / np.sqrt(a.windows))
                spend, n = cv[k + 1] - cv[k - a.windows + 1], cc[k + 1] - cc[k - a.windows + 1]
                if z >= a.z and spend >= a.ratio * st[2] * n and spend - st[2] * n >= a.gate:
                    flagged.append(float(tn[k]))
            starts[sw.labels["team"]] = _starts(flagged, ws.window_seconds)
        _tally(h, f"team-z M={a.windows} z={a.z} ratio={a.ratio}", starts, labs, sf)


def cmd_new_series(a: argparse.Namespace, d: Path) -> None:
    for h in a.histories:
        ws, labs, sf = _open(d, h)
        teams = {sw.labels["team"]: sw for sw in ws.series if _team(sw)}
        starts: dict[str, list[float]] = {}
        for sw in ws.series:
            if set(sw.labels) - {"org"} != {"team", "model"}:
                continue
            team, c = sw.labels["team"], np.maximum(sw.count, 0)
            tsr = teams[team]
            tc = np.maximum(tsr.count, 0)
            if not (c > 0).any() or sw.ts[c > 0][0] < tsr.ts[tc > 0][0] + 2 * 86400:
                continue
            t0 = float(sw.ts[c > 0][0])
            pre = (tsr.ts < t0) & (tsr.ts >= t0 - 7 * 86400)
            usual = tsr.value[pre].sum() / max(tc[pre].sum(), 1)
            m = (sw.ts >= t0) & (sw.ts < t0 + 86400)
            spend, n = np.cumsum(sw.value[m]), np.cumsum(c[m])
            ok = (n >= 3) & (spend >= a.ratio * usual * n) & (spend - usual * n >= a.gate)
            on = [lab for lab in labs if lab[0] == team and lab[1] - GRACE_S <= t0 <= lab[2] + GRACE_S]
            print(f"  {h} {team} {sw.labels['model']}: first request {_iso(t0)} "
                  f"({', '.join(lab[3] + ('' if lab[4] else ' (negative)') for lab in on) or 'no label'}); "
                  f"first day ${spend[-1]:.2f} / {n[-1]:.0f} requests = {spend[-1] / max(n[-1], 1) / usual:.1f}x the team's "
                  f"${usual:.4f}" + (f"; alerts +{(sw.ts[m][ok][0] - t0) / 60:.0f} min" if ok.any() else "; quiet"))
            if ok.any():
                starts.setdefault(team, []).append(float(sw.ts[m][ok][0]))
        _tally(h, f"new-series ratio={a.ratio}", starts, labs, sf)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    cmds = {"switches": cmd_switches, "team-price": cmd_team_price, "team-z": cmd_team_z, "new-series": cmd_new_series}
    for name in cmds:
        p = sub.add_parser(name)
        p.add_argument("histories", nargs="*", default=["i1", "i2", "i3"])
        p.add_argument("--dir")
        p.add_argument("--ratio", type=float, default=3.0)
        p.add_argument("--gate", type=float, default=2.0)
        p.add_argument("--minutes", type=float, default=10.0)
        p.add_argument("--requests", type=int, default=20)
        p.add_argument("--windows", type=int, default=30)
        p.add_argument("--z", type=float, default=10.0)
    a = ap.parse_args(argv)
    d = Path(a.dir or os.path.join(tempfile.gettempdir(), "tokenpulse-detect-fast"))
    if not d.is_dir():
        print(f"no cached windows in {d}: run python -m benchmarks.detect_fast record first", file=sys.stderr)
        return 2
    cmds[a.cmd](a, d)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
