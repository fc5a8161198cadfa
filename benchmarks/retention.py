"""RSS of a judge partition over 30 days of event time, with the spend roll-up and without it
(issue 15, item 6): the worker's judge code as in :mod:`benchmarks.scale`, run twice.

    python -m benchmarks.retention [--users 300] [--days 30] [--active 0.2] [--detector naive]

With the roll-up (the defaults: windows for 48 h, hours for 35 days), RSS should stay within
10 % of its value at day 7 for the rest of the run; without it, it grows with every window
that had spend. The detector is ``naive`` by default (memory and time of the default detector
are :mod:`benchmarks.scale`'s business, and it would make 30 days take an hour). The two runs
are two processes side by side, so one's memory does not hide the other's.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

from benchmarks.scale import run


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--users", type=int, default=300)
    ap.add_argument("--days", type=float, default=30.0)
    ap.add_argument("--active", type=float, default=0.2)
    ap.add_argument("--detector", default="naive")
    ap.add_argument("--one", choices=("rollup", "none"), help=argparse.SUPPRESS)  # a child run
    a = ap.parse_args(argv)
    if a.one:
        out = run(a.users, a.days, a.active, a.detector, 60, 7, quiet=True, rollup=a.one == "rollup")
        print(json.dumps(out))
        return
    print(f"{a.users} user series, {a.days:g} days of 60 s windows, {a.active:.0%} active per window, "
          f"detector {a.detector}", flush=True)
    procs = {}
    for mode in ("rollup", "none"):  # side by side: the same machine load for both
        cmd = [sys.executable, "-m", "benchmarks.retention", "--one", mode, "--users", str(a.users), "--days",
               str(a.days), "--active", str(a.active), "--detector", a.detector]
        procs[mode] = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    runs = {}
    for mode, proc in procs.items():
        stdout, _ = proc.communicate()
        if proc.returncode:
            sys.exit(f"the {mode} run failed ({proc.returncode})")
        runs[mode] = json.loads(stdout)
    print(f"{'day':>4} {'RSS MiB, roll-up':>17} {'spend MiB':>10} {'RSS MiB, none':>14} {'spend MiB':>10}")
    for r, n in zip(runs["rollup"]["per_day"], runs["none"]["per_day"], strict=True):
        print(f"{r['day']:4.0f} {r['rss_mib']:17.1f} {r['spend_mib']:10.2f} {n['rss_mib']:14.1f} {n['spend_mib']:10.2f}")
    for mode, out in runs.items():
        days = out["per_day"]
        week = next((d for d in days if d["day"] >= 7), days[0])
        last = days[-1]
        peak = max(d["rss_mib"] for d in days if d["day"] >= week["day"])
        grown = (last["rss_mib"] - out["rss0_mib"]) / (week["rss_mib"] - out["rss0_mib"]) - 1
        print(f"{mode:>6}: RSS day {week['day']:.0f} {week['rss_mib']:.1f} MiB, day {last['day']:.0f} "
              f"{last['rss_mib']:.1f} MiB ({100 * (last['rss_mib'] / week['rss_mib'] - 1):+.1f} %, peak after the "
              f"first week {100 * (peak / week['rss_mib'] - 1):+.1f} %; growth over the start "
              f"{100 * grown:+.1f} %); spend {last['spend_records']} records, {week['spend_mib']:.2f} -> "
              f"{last['spend_mib']:.2f} MiB ({100 * (last['spend_mib'] / week['spend_mib'] - 1):+.1f} %)")


if __name__ == "__main__":
    main()
