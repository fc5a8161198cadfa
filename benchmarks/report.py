"""What ``tokenpulse replay --report`` costs on top of the replay.

    python -m benchmarks.report [--seed 1] [--days 21] [--repeat 1] [--events FILE --labels FILE] [--out report.html]

Writes an independent labelled history (``benchmarks.independent``: eight teams from $0.50 to
$50k a day, 21 days by default; or replays ``--events``) and times, in this one process and
alternating so machine noise hits both alike:

- ``replay``: ``tokenpulse.replay.replay_lines`` with the default policy, as the CLI runs it;
- ``traced``: the same replay filling a :class:`tokenpulse.report_html.WindowTrace` (every
  judged window of every series: what the charts need);
- ``report``: :func:`tokenpulse.report_html.write_report` of the traced replay (the charts with
  matplotlib, the page).

Prints the seconds of each (median), the traced replay against the plain one, the report's
charts and size. The target: the report in well under a minute on top of the replay.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import orjson

from tokenpulse.policy import Policy
from tokenpulse.replay import load_labels, read_lines, replay_lines, score
from tokenpulse.report_html import WindowTrace, write_report
from tokenpulse.runtime import stream_config
from tokenpulse.settings import Settings


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.report", description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--days", type=float, default=21.0)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--events", type=Path, help="replay this JSONL history instead of generating one")
    ap.add_argument("--labels", type=Path, help="its labels (with --events)")
    ap.add_argument("--out", type=Path, help="keep the report here (default: a temporary file)")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        events, labels = args.events, args.labels
        if events is None:
            from benchmarks.independent.generator import generate

            t = time.perf_counter()
            evs, labs, meta = generate(args.seed, days=args.days)
            events, labels = Path(tmp) / "events.jsonl", Path(tmp) / "labels.jsonl"
            with open(events, "wb") as f:
                n = evs.write_jsonl(f)
            labels.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in labs))
            print(f"history: seed {args.seed}, {args.days:g} days, {len(meta['teams'])} teams, {n:,} events "
                  f"({events.stat().st_size / 1e6:,.0f} MB), written in {time.perf_counter() - t:.1f} s")
        incidents = load_labels(labels) if labels is not None else None
        cfg = stream_config(Settings(), Policy(), bootstrap="", partitions=1)
        times: dict[str, list[float]] = {"replay": [], "traced": [], "report": []}
        out = args.out or Path(tmp) / "report.html"
        charts = 0
        for _ in range(args.repeat):
            t = time.perf_counter()
            replay_lines(read_lines(events), cfg)
            times["replay"].append(time.perf_counter() - t)
            t = time.perf_counter()
            trace = WindowTrace()
            res = replay_lines(read_lines(events), cfg, trace=trace)
            times["traced"].append(time.perf_counter() - t)
            summary: dict[str, object] = {"windows_judged": res.windows_judged}
            if incidents is not None:
                summary["score"] = score(res.firings, incidents, res.teams, res.first_ts, res.last_ts, 900.0)
            t = time.perf_counter()
            charts, _ = write_report(out, res, trace, window_seconds=cfg.window_seconds, summary=summary,
                                     incidents=incidents, detector={"detector": cfg.detector_name},
                                     source=events.name)
            times["report"].append(time.perf_counter() - t)
        med = {k: statistics.median(v) for k, v in times.items()}
        series = len(trace.series)
        windows = sum(len(s) for s in trace.series.values())
        print(f"replay {med['replay']:.1f} s, traced replay {med['traced']:.1f} s "
              f"({med['traced'] / med['replay']:.2f}x; {series} series, {windows:,} series-windows kept), "
              f"report {med['report']:.1f} s: {charts} charts, {out.stat().st_size / 1e6:.1f} MB "
              f"(median of {args.repeat}; {os.cpu_count()} cores)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
