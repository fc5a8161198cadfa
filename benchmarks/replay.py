"""Replay speed against merely parsing the same file with orjson (the issue's yardstick).

    python -m benchmarks.replay [--rate 5 --rate 50] [--days D] [--repeat 3] [--no-fork] [--steps]

For each ``--rate`` (simulated events/s at the weekday peak; default: 5, then a denser 50),
writes a simulated history (``tokenpulse.simulate``, with one 40x incident) to a temporary
JSONL file and times, in this one process and alternating so machine noise hits all alike:

- ``parse``: read the file line by line and ``orjson.loads`` every line;
- ``replay``: ``tokenpulse.replay.replay_lines`` with the default policy (the worker's own
  normalisation, windows, detectors and alert lifecycle), as the CLI runs it: with the judge
  forked into a second process on a machine with two cores;
- ``1-proc``: the same replay kept in one process (``fork=False``); with ``--no-fork`` only
  this one runs.

Prints MB/s and events/s of each (median) and the ratio replay / parse per rate: the target is
>= 0.35 on dense histories (``--rate`` 50 and up; the detection issue's rule, beside the
analysts' sweep of ``benchmarks.tune``, which replaced the old 0.5 for every density). The
ratio depends on the density: each closed window costs the same whatever the number
of events in it (one detector update per watched series), so sparse traffic is the hard case.
The history ends on a fixed Wednesday evening, so runs on different days replay the same data.

``--steps``: instead, one one-process replay per rate with each step's CPU seconds (each timed
around its calls: decoding and tidying chunks, ``add_events``, closing windows, of which turning
closed windows' ids into hashes, and the judge; the rest is reading lines and the loop).

Beside the wall-clock ratio (the target's), ``cpu`` is the same ratio in this process's CPU
seconds (``time.process_time``) for ``parse`` and ``1-proc``: on a machine shared with other
jobs it moves far less from run to run, so it is the one to compare two versions of the code
by (alternating them in the same load).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from tokenpulse.policy import Policy
from tokenpulse.replay import read_lines, replay_lines
from tokenpulse.runtime import stream_config
from tokenpulse.settings import Settings
from tokenpulse.simulate import Simulator, Spike

END = 1_767_808_800.0  # 2026-01-07T18:00:00Z, a Wednesday evening
TARGET = 0.35  # on dense histories
DENSE = 50.0  # events/s at the peak from which a history counts as dense


def write_history(path: Path, days: float, rate: float) -> int:
    start = END - days * 86400
    sim = Simulator(rate=rate, spikes=[Spike("ads", factor=40, minutes=30, start=start + days * 43200)])
    n = 0
    with open(path, "wb") as f:
        for ev in sim.between(start, END, sim_start=start):
            f.write(orjson.dumps(ev) + b"\n")
            n += 1
    return n


def bench(path: Path, n: int, repeat: int, cases: list[str]) -> tuple[dict[str, float], float]:
    """Median wall seconds of each case, and the median ratio of CPU seconds parse / 1-proc."""
    cfg = stream_config(Settings(), Policy(), bootstrap="", partitions=1)
    times: dict[str, list[float]] = {c: [] for c in ["parse", *cases]}
    cpu: dict[str, float] = {}
    cpu_ratios: list[float] = []
    for i in range(repeat):
        t, c = time.perf_counter(), time.process_time()
        loads = orjson.loads
        for line in read_lines(path):
            loads(line)
        times["parse"].append(time.perf_counter() - t)
        cpu["parse"] = time.process_time() - c
        notes = []
        for case in cases:
            t, c = time.perf_counter(), time.process_time()
            res = replay_lines(read_lines(path), cfg, fork=case == "replay")
            times[case].append(time.perf_counter() - t)
            cpu[case] = time.process_time() - c
            notes.append(f"{case} {times[case][-1]:.2f}s")
        if "1-proc" in cpu:
            cpu_ratios.append(cpu["parse"] / cpu["1-proc"])
            notes.append(f"cpu {cpu['parse']:.2f}s / {cpu['1-proc']:.2f}s")
        print(f"  run {i + 1}/{repeat}: parse {times['parse'][-1]:.2f}s, {', '.join(notes)} "
              f"({res.counters['accepted']:,} events, {res.windows_judged:,} windows, {len(res.firings)} firings)")
    return {c: statistics.median(v) for c, v in times.items()}, statistics.median(cpu_ratios)


def steps(path: Path) -> None:
    """One one-process replay with the CPU seconds of each step (``--steps``)."""
    import streams.ingest.windows as windows_mod
    import tokenpulse.replay as replay_mod

    cfg = stream_config(Settings(), Policy(), bootstrap="", partitions=1)
    spent: dict[str, float] = {}
    timed = [(replay_mod, "_decode_tidy", "decode + tidy"),
             (windows_mod.IngestPartition, "add_events", "add_events"),
             (windows_mod.IngestPartition, "advance", "closing windows"),
             (windows_mod.IngestPartition, "_compact_ids", "  of which ids -> hashes"),
             (replay_mod._Verdicts, "take", "judge")]
    originals = [(owner, name, getattr(owner, name)) for owner, name, _ in timed]

    def timer(f: Any, label: str) -> Any:
        def call(*args: Any, **kw: Any) -> Any:
            t = time.process_time()
            try:
                return f(*args, **kw)
            finally:
                spent[label] = spent.get(label, 0.0) + time.process_time() - t
        return call

    for (owner, name, label), (_, _, f) in zip(timed, originals, strict=True):
        setattr(owner, name, timer(f, label))
    try:
        t = time.process_time()
        replay_lines(read_lines(path), cfg, fork=False)
        total = time.process_time() - t
    finally:
        for owner, name, f in originals:
            setattr(owner, name, f)
    t = time.process_time()
    for line in read_lines(path):
        orjson.loads(line)
    parse = time.process_time() - t
    rest = total - sum(v for k, v in spent.items() if not k.startswith(" "))
    print(f"CPU s: replay {total:.2f} (parse {parse:.2f})")
    for label, secs in [*((label, spent.get(label, 0.0)) for _, _, label in timed), ("reading lines, the loop", rest)]:
        print(f"  {label:26s} {secs:6.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rate", type=float, action="append",
                    help="simulated events/s at the weekday peak; repeat to sweep (default: 5 and 50)")
    ap.add_argument("--days", type=float, default=None,
                    help="days of simulated history (default: 2 up to 5 events/s; 4/rate above, "
                         "the busiest hours of a weekday)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--no-fork", action="store_true", help="only the one-process replay")
    ap.add_argument("--steps", action="store_true", help="one one-process replay per rate, CPU seconds by step")
    a = ap.parse_args()
    rates = a.rate or [5.0, 50.0]
    cases = ["1-proc"] if a.no_fork else ["replay", "1-proc"]

    print(f"machine  {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    summary = []
    for rate in rates:
        days = a.days if a.days is not None else 2.0 if rate <= 5 else round(4.0 / rate, 3)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "history.jsonl"
            n = write_history(path, days, rate)
            size = path.stat().st_size
            print(f"\nfile     {n:,} events, {size / 1e6:,.1f} MB ({days:g} days at {rate:g} events/s peak)")
            if a.steps:
                steps(path)
                continue
            med, cpu_ratio = bench(path, n, a.repeat, cases)
        print(f"{'case':8s} {'MB/s':>8s} {'events/s':>12s} {'/ parse':>8s}")
        for case, secs in med.items():
            print(f"{case:8s} {size / 1e6 / secs:8.1f} {n / secs:12,.0f} {med['parse'] / secs:8.2f}")
        summary.append((rate, n, {c: med["parse"] / med[c] for c in cases}, cpu_ratio))

    if a.steps:
        return
    print(f"\nreplay / parse (target >= {TARGET} on dense histories, {DENSE:g} events/s peak and up; "
          f"wall clock, then cpu: 1-proc in CPU seconds)")
    for rate, n, ratios, cpu_ratio in summary:
        cells = ", ".join(f"{c} {r:.2f}" for c, r in ratios.items())
        best = max(ratios.values())
        verdict = ("ok" if best >= TARGET else "BELOW TARGET") if rate >= DENSE else "sparse: no target"
        print(f"  {rate:g} events/s peak ({n:,} events): {cells}   {verdict}   (cpu {cpu_ratio:.2f})")


if __name__ == "__main__":
    main()
