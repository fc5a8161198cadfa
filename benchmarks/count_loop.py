"""The replay's counting loop alone, and edited copies of it against the real one.

    python -m benchmarks.count_loop [--rate 50] [--events 300000] [--repeat 5] [--variant PATH ...]

Writes the dense history of ``benchmarks.replay`` (``--rate`` events/s at the peak), decodes and
tidies its first ``--events`` lines into canonical events beforehand (untimed, afresh for every
run: pricing writes into them), then counts them through ``IngestPartition.add_events`` in runs
of 128 lines, closing windows every quarter window of event time as the replay does, with no
judge. Prints the CPU seconds of ``add_events`` and of closing windows (``advance``: cells into
series partials, ids into hashes), median of ``--repeat`` runs.

``--variant PATH``: an edited copy of ``streams/ingest/windows.py`` (its ``IngestPartition``
is used whole, so changes to ``add_events``, ``advance`` or ``checkpoint`` all count), timed
alternating with the real module in the same process, so machine noise hits both alike. Every
run's partials, counters and final checkpoint must equal the real module's: ``MISMATCH`` says
which did not. The figures of the replay benchmark's notes (benchmarks/README.md) that
remove one part of the loop at a time were made so.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import math
import statistics
import sys
import tempfile
import time
from itertools import islice
from pathlib import Path
from typing import Any

from benchmarks.replay import write_history
from streams.ingest.normalize import ONE_CANONICAL, tidy_canonicals
from streams.ingest.pricing import Pricer
from streams.ingest.windows import IngestPartition
from tokenpulse.policy import Policy
from tokenpulse.runtime import stream_config
from tokenpulse.settings import Settings

RUN = 128  # lines a run, as the replay's chunks


def load(path: Path, n: int) -> list[list[bytes]]:
    with open(path, "rb") as f:
        src = islice(f, n)
        chunks = []
        while chunk := list(islice(src, RUN)):
            chunks.append(chunk)
    return chunks


def decode(chunks: list[list[bytes]]) -> list[list[Any]]:
    out = []
    for chunk in chunks:
        events = list(map(ONE_CANONICAL.decode, chunk))
        if not tidy_canonicals(events):
            raise SystemExit("the history has a line that is not one tidy canonical event")
        out.append(events)
    return out


def count(cls: Any, runs: list[list[Any]]) -> tuple[float, float, Any]:
    """CPU seconds of add_events and of advance, and what must not differ between variants."""
    cfg = stream_config(Settings(), Policy(), bootstrap="", partitions=1)
    core = cls(0, window_seconds=cfg.window_seconds, lateness=cfg.lateness, idle_grace=cfg.idle_grace,
               watched=cfg.watched, limits=cfg.limits, dedupe_retention=cfg.dedupe_horizon)
    pricer = Pricer(cfg.price_overrides)
    quarter = cfg.window_seconds / 4
    next_advance: float | None = None
    partials: list[Any] = []
    closing = 0.0
    started = time.process_time()
    for run in runs:
        i, n = 0, len(run)
        while i < n:
            i = core.add_events(run, 0.0, pricer, i, -math.inf if next_advance is None else next_advance)
            core.wall_at_max = core.max_ts
            if core.max_ts is not None and (next_advance is None or core.max_ts >= next_advance):
                t = time.process_time()
                partials += [p.to_wire() for p in core.advance(core.max_ts)]
                closing += time.process_time() - t
                next_advance = core.max_ts + quarter
    t = time.process_time()
    partials += [p.to_wire() for p in core.advance((core.max_ts or 0.0) + 86400)]
    closing += time.process_time() - t
    total = time.process_time() - started
    return total - closing, closing, (partials, core.counters.to_dict(), core.checkpoint())


def variant(path: str) -> Any:
    name = "count_loop_variant_" + str(abs(hash(path)))
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"{path}: not a Python module")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod.IngestPartition


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rate", type=float, default=50.0, help="events/s at the peak of the history (default 50)")
    ap.add_argument("--events", type=int, default=300_000, help="lines of the history counted (default 300000)")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--variant", action="append", default=[], help="an edited copy of streams/ingest/windows.py")
    a = ap.parse_args()
    classes = {"windows.py": IngestPartition, **{p: variant(p) for p in a.variant}}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "history.jsonl"
        write_history(path, round(4.0 / a.rate, 3), a.rate)
        chunks = load(path, a.events)
    n = sum(map(len, chunks))
    times: dict[str, list[tuple[float, float]]] = {k: [] for k in classes}
    reference = None
    for _ in range(a.repeat):
        for name, cls in classes.items():
            runs = decode(chunks)
            gc.collect()
            adding, closing, result = count(cls, runs)
            times[name].append((adding, closing))
            if reference is None:
                reference = result
            elif result != reference:
                what = [k for k, x, y in zip(("partials", "counters", "checkpoint"), result, reference, strict=True)
                        if x != y]
                print(f"MISMATCH {name}: {', '.join(what)}")
            del runs
    print(f"{n:,} events of the {a.rate:g} events/s history; CPU s, median of {a.repeat}")
    print(f"{'module':30s} {'add_events':>10s} {'closing':>8s} {'in all':>7s} {'µs/event':>9s}")
    for name, v in times.items():
        add = statistics.median(x for x, _ in v)
        close = statistics.median(y for _, y in v)
        both = statistics.median(x + y for x, y in v)
        print(f"{name[-30:]:30s} {add:10.3f} {close:8.3f} {both:7.3f} {both / n * 1e6:9.2f}")


if __name__ == "__main__":
    main()
