"""Replay speed against merely parsing the same file with orjson (the issue's yardstick).

    python -m benchmarks.replay [--days 2] [--rate 5] [--repeat 3]

Writes a simulated history (``tokenpulse.simulate``) to a temporary JSONL file, then times,
in this one process and alternating so machine noise hits both alike:
- ``parse``: read the file line by line and ``orjson.loads`` every line;
- ``replay``: ``tokenpulse.replay.replay_lines`` with the default policy (the worker's own
  normalisation, windows, detectors and alert lifecycle).
Prints MB/s and events/s of each (median) and the ratio replay / parse (target >= 0.5).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import orjson

from tokenpulse.policy import Policy
from tokenpulse.replay import read_lines, replay_lines
from tokenpulse.runtime import stream_config
from tokenpulse.settings import Settings
from tokenpulse.simulate import Simulator, Spike


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--days", type=float, default=2.0, help="days of simulated history")
    ap.add_argument("--rate", type=float, default=5.0, help="simulated events/s at the weekday peak")
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "history.jsonl"
        end = float(int(time.time()))
        start = end - a.days * 86400
        sim = Simulator(rate=a.rate, spikes=[Spike("ads", factor=40, minutes=30, start=start + a.days * 43200)])
        n = 0
        with open(path, "wb") as f:
            for ev in sim.between(start, end, sim_start=start):
                f.write(orjson.dumps(ev) + b"\n")
                n += 1
        size = path.stat().st_size
        cfg = stream_config(Settings(), Policy(), bootstrap="", partitions=1)
        print(f"machine  {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
        print(f"file     {n:,} events, {size / 1e6:,.1f} MB ({a.days:g} days at {a.rate:g} events/s peak)")
        parse_s, replay_s = [], []
        for i in range(a.repeat):
            t = time.perf_counter()
            loads = orjson.loads
            for line in read_lines(path):
                loads(line)
            parse_s.append(time.perf_counter() - t)
            t = time.perf_counter()
            res = replay_lines(read_lines(path), cfg)
            replay_s.append(time.perf_counter() - t)
            print(f"  run {i + 1}/{a.repeat}: parse {parse_s[-1]:.2f}s, replay {replay_s[-1]:.2f}s "
                  f"({res.counters['accepted']:,} events, {len(res.firings)} firings)")
        p, r = statistics.median(parse_s), statistics.median(replay_s)
        print(f"\n{'case':8s} {'MB/s':>8s} {'events/s':>12s}")
        print(f"{'parse':8s} {size / 1e6 / p:8.1f} {n / p:12,.0f}")
        print(f"{'replay':8s} {size / 1e6 / r:8.1f} {n / r:12,.0f}")
        ratio = p / r
        print(f"\nreplay / parse  {ratio:.2f}   (target >= 0.5)  {'ok' if ratio >= 0.5 else 'BELOW TARGET'}")


if __name__ == "__main__":
    main()
