"""Memory and cost of the dedupe horizon: event ids as Python strings in sets (what a closed
window held before) against the 64-bit hashes an ``IngestPartition`` keeps now.

    python -m benchmarks.dedupe [--ids 1000000] [--windows 120] [--repeat 3]

Both structures hold the same ids, spread over ``--windows`` closed one-minute windows (120:
the default two-hour horizon). Memory is what ``tracemalloc`` sees allocated for the sets
(the id strings included: once an event is counted, the set is what keeps its id alive) and
the arrays' own size for the hashes (``sys.getsizeof``: header and data); it is printed per
million ids, with the ratio of the two in the same run.
Times are per id: building the old sets, compacting them to hashes
(``IngestPartition._compact_ids``: hash, sort, unique), and a lookup of a late event in a
closed window (the only lookups that reach the hashes) against a set lookup.
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import sys
import time
import tracemalloc
import uuid

from streams.ingest.windows import IngestPartition, _holds

W = 60


def make_ids(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(n)]  # 36 characters, like most producers'


def by_window(ids: list[str], windows: int) -> dict[int, set[str]]:
    per = -(-len(ids) // windows)
    return {w * W: set(ids[w * per:(w + 1) * per]) for w in range(windows)}


def measure(n: int, windows: int, seed: int) -> dict[str, float]:
    gc.collect()
    # old: the strings and their sets (strings made while tracing: the sets keep them alive)
    tracemalloc.start()
    old = by_window(make_ids(n, seed), windows)
    old_bytes = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()

    ids = make_ids(n, seed)
    t = time.perf_counter()
    sets = by_window(ids, windows)
    build_ns = (time.perf_counter() - t) / n * 1e9
    core = IngestPartition(partition=0, window_seconds=W, dedupe_retention=windows * W + W)
    core.ids = sets
    del sets
    gc.collect()
    t = time.perf_counter()
    core._compact_ids(windows * W)  # every window closed, all within the horizon
    compact_ns = (time.perf_counter() - t) / n * 1e9
    # numpy arrays own their data: getsizeof counts it with the array's header
    new_bytes = sys.getsizeof(core.hashed) + sum(sys.getsizeof(a) for a in core.hashed.values())
    assert not core.ids and len(core.hashed) == windows and sum(len(a) for a in core.hashed.values()) == n

    probes = ids[:: max(1, n // 20000)]
    per = -(-n // windows)
    t = time.perf_counter()
    for i, eid in enumerate(probes):
        w = (i * max(1, n // 20000)) // per * W
        assert _holds(core.hashed[w], eid)
    hashed_ns = (time.perf_counter() - t) / len(probes) * 1e9
    t = time.perf_counter()
    for i, eid in enumerate(probes):
        w = (i * max(1, n // 20000)) // per * W
        assert eid in old[w]
    set_ns = (time.perf_counter() - t) / len(probes) * 1e9
    return {"old_mb_per_m": old_bytes / n * 1e6 / 2**20, "new_mb_per_m": new_bytes / n * 1e6 / 2**20,
            "old_b": old_bytes / n, "new_b": new_bytes / n, "build_ns": build_ns, "compact_ns": compact_ns,
            "hashed_lookup_ns": hashed_ns, "set_lookup_ns": set_ns}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ids", type=int, default=1_000_000)
    ap.add_argument("--windows", type=int, default=120, help="closed windows the ids are spread over (120: two hours)")
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args(argv)
    runs = [measure(a.ids, a.windows, seed) for seed in range(a.repeat)]
    med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    print(f"{a.ids:,} ids of 36 characters over {a.windows} closed windows, median of {a.repeat}")
    print(f"{'structure':<34} {'MiB per million ids':>20} {'bytes/id':>9}")
    print(f"{'set[str] per window (before)':<34} {med['old_mb_per_m']:>20.1f} {med['old_b']:>9.1f}")
    print(f"{'sorted uint64 hashes per window':<34} {med['new_mb_per_m']:>20.1f} {med['new_b']:>9.1f}")
    print(f"ratio before / now: {med['old_b'] / med['new_b']:.1f}x")
    print(f"per id: building the sets {med['build_ns']:.0f} ns, compacting them to hashes {med['compact_ns']:.0f} ns")
    print(f"a late event's lookup: {med['hashed_lookup_ns']:.0f} ns in the hashes, {med['set_lookup_ns']:.0f} ns in a set")


if __name__ == "__main__":
    main()
