"""Time and memory of the judge's spend books (``streams.common.spend.SeriesSpend``) against
another revision's, in the same run: the hot path's ratio, not a timing that depends on the load.

    python -m benchmarks.spend_cost [--ref main] [--series 1000] [--days 3] [--active 0.1] [--repeat 3]

The baseline is ``streams/common/spend.py`` as it is at ``--ref`` (``git show``), loaded as a
module of its own; both drive the same :class:`~streams.reports.retention.SpendRollup`. For
each, ``--series`` series spend in ``--active`` of the one-minute windows of ``--days`` days
(one source, one message per window, as benchmarks/scale.py), the roll-up runs every hour of
event time (the series are users', ``user=…``: windows become hours after 24 h, hours days after
7 days, the users' horizons of :mod:`streams.reports.retention`), and every 50th window a late
partial goes to a window an hour back. Printed per implementation (the times: the least of ``--repeat``
interleaved runs, the load on a shared machine only ever adds; the rest: their median):

- ``add``: µs per new window (``add_window`` of a new latest window: the judge's hot path);
- ``late``: µs per late partial an hour back (a chunk thawed, where there are chunks);
- ``wire``: µs per ``window_wire`` of the newest window (what the checkpoint writes);
- ``roll``: µs per series per hour of event time in the roll-up (called every window, as the
  worker does at each checkpoint; it works once an hour, packing the books);
- ``read``: µs per series to read every span (``spans``: what the API's answers walk);
- bytes per series (``sys.getsizeof`` of the books' objects, arrays and chunks).

``--check SEEDS`` compares instead every answer of the two (spans, seqs, the roll-up's
changelog writes, a restore from shuffled records) over random histories with late partials
and redeliveries: the proof that a change of the books' form changed no answer.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import streams.common.spend as current
from streams.reports.retention import SpendRollup

T0 = 1_767_571_200
W = 60
ROOT = Path(__file__).resolve().parent.parent
TIMES = ("add", "late", "wire", "roll", "read")


def load_ref(ref: str) -> ModuleType:
    """``streams/common/spend.py`` at git revision ``ref``, as a module of its own."""
    src = subprocess.run(["git", "-C", str(ROOT), "show", f"{ref}:streams/common/spend.py"],
                         check=True, capture_output=True, text=True).stdout
    spec = importlib.util.spec_from_loader(f"spend_at_{ref}", loader=None)
    assert spec is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses and typing resolve names through it
    exec(compile(src, f"{ref}:streams/common/spend.py", "exec"), mod.__dict__)  # our own file, at a revision
    if not hasattr(mod.SeriesSpend, "pack"):  # before the deflated chunks: nothing to pack
        mod.SeriesSpend.pack = lambda self: None
    return mod


def size_of(obj: Any, seen: set[int]) -> int:
    """``sys.getsizeof`` of ``obj`` and what it holds (slots, lists, arrays, bytes), once each."""
    if id(obj) in seen:
        return 0
    seen.add(id(obj))
    n = sys.getsizeof(obj)
    if isinstance(obj, list):
        return n + sum(size_of(x, seen) for x in obj)
    for klass in type(obj).__mro__:  # a subclass's __slots__ names only its own
        for name in getattr(klass, "__slots__", ()):
            n += size_of(getattr(obj, name, None), seen)
    return n


def run(mod: ModuleType, series: int, days: float, active: float, seed: int) -> dict[str, float]:
    rng = random.Random(seed)
    books: dict[str, Any] = {}
    roll = SpendRollup(W)
    t_add = t_late = t_wire = t_roll = 0.0
    n_add = n_late = n_wire = n_roll = 0
    keys = [f"user=u{i:06d}|spend" for i in range(series)]
    k = max(1, int(series * active))
    for i in range(int(days * 86400 // W)):
        w = T0 + i * W
        seq = i + 1
        roll.seen(0, seq)
        who = rng.sample(range(series), k)
        adds = [(keys[u], [rng.randrange(10**7, 10**9), 1000, 200, 0, 0, 1]) for u in who]
        t = time.perf_counter()
        for key, sums in adds:
            book = books.get(key)
            if book is None:
                book = books[key] = mod.SeriesSpend()
            book.add_window(w, sums, {0: seq})
        t_add += time.perf_counter() - t
        n_add += len(adds)
        t = time.perf_counter()
        for key, _ in adds:
            books[key].window_wire(w)
        t_wire += time.perf_counter() - t
        n_wire += len(adds)
        if i % 50 == 49 and i > 60:  # a late partial an hour back, to a series that has spend
            key = keys[who[0]]
            t = time.perf_counter()
            books[key].add_window(w - 60 * W, [1, 1, 0, 0, 0, 1], {0: seq})
            t_late += time.perf_counter() - t
            n_late += 1
        t = time.perf_counter()
        roll.roll(books, w + W)  # as the worker: at every checkpoint
        t_roll += time.perf_counter() - t
        if i % 60 == 59:
            n_roll += len(books)
    t = time.perf_counter()
    spans = sum(1 for book in books.values() for _ in book.spans(W))
    t_read = time.perf_counter() - t
    gc.collect()
    seen: set[int] = set()
    mem = sum(size_of(b, seen) for b in books.values()) / len(books)
    return {"add": 1e6 * t_add / n_add, "late": 1e6 * t_late / max(1, n_late), "wire": 1e6 * t_wire / n_wire,
            "roll": 1e6 * t_roll / max(1, n_roll), "read": 1e6 * t_read / len(books), "bytes": mem,
            "spans": spans / len(books)}


def answers(mod: ModuleType, seed: int, days: float, series: int, active: float, hourly: int,
            daily: int) -> list[Any]:
    """Everything a reader could see of books of ``mod`` driven through a random history: new
    windows, late partials up to ~3 days back, redeliveries, the roll-up's changelog writes
    every window, every span now and then, and books restored from their records shuffled."""
    r = random.Random(seed)
    books: dict[str, Any] = {}
    roll = SpendRollup(W, hourly_after=hourly, daily_after=daily)
    out: list[Any] = []

    def spans(bs: dict[str, Any]) -> list[Any]:
        return sorted((k, s, span, list(x)) for k, b in bs.items() for s, span, x in b.spans(W))

    for i in range(int(days * 86400 // W)):
        w, seq, src = T0 + i * W, i + 1, r.randrange(2)
        roll.seen(src, seq)
        for n in range(series):
            if r.random() < active:
                book = books.get(f"s{n}|spend") or books.setdefault(f"s{n}|spend", mod.SeriesSpend())
                at = w if r.random() > 0.05 else w - W * r.randrange(1, 4000)
                book.add_window(at, [r.randrange(10**9), 5, 6, 0, r.randrange(3), 1], {src: seq})
                if r.random() < 0.01:
                    book.add_window(at, [1] * 6, {src: seq})
        written = roll.roll(books, w + W)
        if written:
            out.append(written)
        if i % 997 == 0:
            out.append(spans(books))
    out += [spans(books), sorted(sorted(b.seqs()) for b in books.values())]
    records = []
    for k, b in books.items():
        name = k.rpartition("|")[0]
        records += [(f"{name}|{s}", b.window_wire(s)) for s in b.window_starts()]
        records += [(f"{name}|day:{d}", b.day_wire(d)) for d in sorted({row[0] // 86400 * 86400 for row in b.rolled()})]
    r.shuffle(records)
    restored: dict[str, Any] = {}
    mod.load_records(restored, records)
    return [*out, spans(restored), sorted(records, key=lambda kv: kv[0])]


def check(ref: ModuleType, seeds: int) -> bool:
    """Whether this tree's books answer exactly as ``ref``'s on random histories (sparse and
    dense series, short and default roll-up horizons)."""
    ok = True
    for seed in range(seeds):
        for name, cfg in (("sparse, windows 6 h, hours 2 days", (5, 6, 0.3, 6 * 3600, 2 * 86400)),
                          ("dense, windows 3 h, hours 1 day", (4, 3, 0.9, 3 * 3600, 86400)),
                          ("sparse, the defaults", (4, 10, 0.1, 48 * 3600, 35 * 86400))):
            same = answers(ref, seed, *cfg) == answers(current, seed, *cfg)
            ok &= same
            print(f"seed {seed}, {name}: {'same answers' if same else 'DIFFERENT'}", flush=True)
    return ok


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ref", default="main", help="git revision of the baseline (default main)")
    ap.add_argument("--series", type=int, default=1000)
    ap.add_argument("--days", type=float, default=3.0)
    ap.add_argument("--active", type=float, default=0.1)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--check", type=int, default=0, metavar="SEEDS",
                    help="instead: compare every answer with --ref's on SEEDS random histories (exit 1 if any differs)")
    a = ap.parse_args(argv)
    if a.check:
        sys.exit(0 if check(load_ref(a.ref), a.check) else 1)
    impls = {a.ref: load_ref(a.ref), "this tree": current}
    got: dict[str, list[dict[str, float]]] = {name: [] for name in impls}
    for r in range(a.repeat):
        for name, mod in impls.items():  # interleaved: the machine's load hits both alike
            got[name].append(run(mod, a.series, a.days, a.active, a.seed + r))
    cols = ("add", "late", "wire", "roll", "read", "bytes", "spans")
    # the least time of the runs (what the load added is noise), the median of the rest
    med = {name: {c: (min if c in TIMES else statistics.median)(x[c] for x in rows) for c in cols}
           for name, rows in got.items()}
    print(f"{a.series} series, {a.days} days of {W} s windows, {a.active:.0%} active; best of {a.repeat}")
    print(f"{'':>10} " + " ".join(f"{c:>9}" for c in cols))
    for name, row in med.items():
        print(f"{name:>10} " + " ".join(f"{row[c]:9.2f}" for c in cols))
    base, new = med[a.ref], med["this tree"]
    print(f"{'ratio':>10} " + " ".join(f"{new[c] / base[c]:9.2f}" if base[c] else f"{'-':>9}" for c in cols))


if __name__ == "__main__":
    main()
