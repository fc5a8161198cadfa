"""``tokenpulse tune`` on three weeks of eight teams: how long each stage takes.

    python -m benchmarks.tune [--seed 1] [--days 21] [--jobs 2] [--keep DIR]

Writes one history of the independent generator (``benchmarks.independent``: 8 teams, three
weeks, ~1.3 M events, labelled), then runs ``tokenpulse tune`` on it twice with its labels and
the default grid of 24 settings (3 score thresholds x 4 gates x 2 percentages): the first run
parses the history into window aggregates (and caches them), the second takes them from the
cache. Prints each run's stages (windows, models, sweep) and the target: 3 weeks x 8 teams x
24 settings in <= 60 s on 2 cores, for the run from the cache (parsing is paid once per file;
a full replay of the same history with the default detector is printed next to it for scale).
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import os
import sys
import tempfile
import time
from pathlib import Path

import orjson

TARGET_S = 60.0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--days", type=float, default=21.0)
    ap.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--keep", type=Path, default=None, help="write the history here and keep it")
    ap.add_argument("--replay", action="store_true", help="also time one full replay of the history")
    a = ap.parse_args(argv)

    from rich.console import Console

    from benchmarks.independent.generator import generate
    from tokenpulse.policy import Policy
    from tokenpulse.replay import read_lines, replay_lines
    from tokenpulse.runtime import stream_config
    from tokenpulse.settings import Settings
    from tokenpulse.tune import SETTINGS, load_tune_labels, run_tune

    with tempfile.TemporaryDirectory(prefix="tokenpulse-tune-bench-") as tmp:
        where = a.keep or Path(tmp)
        where.mkdir(parents=True, exist_ok=True)
        h, lab = where / "history.jsonl", where / "labels.jsonl"
        t = time.perf_counter()
        events, labels, meta = generate(a.seed, days=a.days, burn_in_days=7.0 if a.days >= 14 else a.days / 4)
        with open(h, "wb") as f:
            n = events.write_jsonl(f)
        lab.write_bytes(b"".join(orjson.dumps(x) + b"\n" for x in labels))
        print(f"history: {n:,} events, {len(meta['teams'])} teams, {a.days:g} days, "
              f"{h.stat().st_size / 1e6:.0f} MB (generated in {time.perf_counter() - t:.0f}s)", file=sys.stderr)
        cfg = stream_config(Settings(), Policy(), bootstrap="", partitions=1)
        quiet = Console(file=io.StringIO(), width=120)
        runs = []
        for run in ("first (parse)", "second (cache)"):
            t = time.perf_counter()
            summary = run_tune(h, cfg, data_dir=where / "data", labels=load_tune_labels(lab), budget=0.25, out=None,
                               jobs=a.jobs, burn_in_days=None, top=6, console=quiet, err_console=quiet,
                               progress=False)
            total = time.perf_counter() - t
            s = summary["seconds"]
            runs.append(total)
            print(f"{run:>15}: {total:6.1f}s = windows {s['windows']:.1f}s + models {s['models']:.1f}s + sweep "
                  f"{s['sweep']:.1f}s ({len(SETTINGS)} settings, {len(summary['teams'])} teams, jobs {a.jobs})")
        g = summary["global"]
        print(f"recommended for all teams at <= 0.25 false alerts per team-week: {g['recommended']} "
              f"(recall {g['recall']}, {g['false_per_week']} false/team-week, within budget: {g['within_budget']})")
        if a.replay:
            t = time.perf_counter()
            replay_lines(read_lines(h), dataclasses.replace(cfg), total_bytes=h.stat().st_size)
            print(f"one full replay of the same history, for scale: {time.perf_counter() - t:.1f}s")
        ok = runs[1] <= TARGET_S
        print(f"target: 3 weeks x 8 teams x 24 settings <= {TARGET_S:.0f}s from the cache: "
              f"{runs[1]:.1f}s {'ok' if ok else 'MISS'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
