"""Memory and judge time of N watched user series over a week of windows, through the worker's
own judge code (no broker): the baseline for bounding detector memory (issue 15, item 5).

    python -m benchmarks.scale [--users 100000] [--days 7] [--active 0.1] [--detector default]
    python -m benchmarks.scale --breakdown [--days 7] [--detector default]

(``--breakdown``: only one detector's bytes by component, after a sparse user series and a busy
team series: :func:`print_breakdown`.)

Each window, about ``--active`` of the users spend (one partial each, from one source, as the
hot path sends them); the :class:`~streams.judge.core.JudgeCore` built by ``judge_factory``
(the worker's, with its ``recent`` windows and spend records) judges every known series, and
the partition is checkpointed after each window (each detector's state serialised, as the
worker writes it to the ``judge`` table once per window), with the spend roll-up of
:mod:`streams.reports.retention`.

Printed, per day and at the end: RSS; the judge's time per window (``receive``: merge, detect,
alert engine) and the checkpoint's (with the judge table's local copy, written as the worker
writes it), as a share of the window; and per series: detector state in memory (one deep
``sys.getsizeof`` walk over a sample of detectors, so that what they share counts once; and by
component), serialised (orjson of ``to_state()``, what the changelog holds), the ``recent``
windows, the spend records, the labels and contributor mix, and the judge table's local copy
of the series' last checkpoint.
The default detector takes ~0.2 ms per update on these machines: a full week of 100k users is
days of CPU, so run it with ``--users 200`` (about 4 minutes) and scale per series.
"""

from __future__ import annotations

import argparse
import gc
import math
import random
import sys
import time
from typing import Any

import orjson

from streams.common.config import StreamConfig
from streams.common.spend import spend_windows
from streams.ingest.windows import NANO, Partial
from streams.judge.core import judge_factory
from streams.reports.retention import SpendRollup
from streams.worker.tables import persist, unpack

T0 = 1_767_571_200  # 2026-01-05T00:00:00Z, a Monday
LAST = 60  # windows the judge table's bytes per window are averaged over (the last hour)
STATE_EVERY = StreamConfig(bootstrap="").judge_state_every  # the worker's default
PARK = StreamConfig(bootstrap="").judge_park  # the worker's default


class LocalTable:
    """The judge table's local data as the worker keeps it (a Faust table's memory store holds
    every key's latest value beside the live state); the changelog writes are dropped."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}

    def send_changelog(self, partition: int, key: Any, value: Any) -> None:
        return None


def rss_mib() -> float:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def deep_size(obj: Any) -> int:
    """Bytes reachable from ``obj`` (each object once; classes, modules and functions left out).

    Given a list of many series' objects, what they share (default parameters, interned
    strings, small ints) counts once, as it does in memory."""
    return _walk(obj, set())


def per_series(objs: list[Any]) -> float:
    """Bytes per object of ``objs`` in memory: one walk over all of them, so that what they
    share counts once (a walk per object would count each detector's default parameters and
    small ints again), minus the list itself."""
    return (deep_size(objs) - sys.getsizeof(objs)) / len(objs) if objs else 0.0


def detector_parts(dets: list[Any]) -> dict[str, float]:
    """Bytes per series of each component of a combiner (``Combined``: its models by name,
    their calibrators, and the combiner's own state), else of the whole detector."""
    if not dets or not hasattr(dets[0], "_models"):
        return {"detector": per_series(dets)}
    out: dict[str, float] = {}
    for i, name in enumerate(dets[0]._names):
        models = [d._models[i] for d in dets]
        cals = [m._cal for m in models if hasattr(m, "_cal")]
        out[f"{name} calibration"] = per_series(cals) * len(cals) / len(models)
        out[name] = per_series(models) - out[f"{name} calibration"]
    levels = [d._level for d in dets]
    out["combiner level statistic"] = per_series(levels)
    out["combiner"] = per_series(dets) - sum(out.values())
    return out


def spend_rows(spend: Any, window: int) -> int:
    """Windows, hours and days of spend held (a record each on the spend table's changelog)."""
    return sum(1 for _ in spend_windows(spend.items(), window))


def spend_parts(spend: dict[str, Any]) -> dict[str, float]:
    """Bytes per series of a judge's spend by part (``sys.getsizeof``, allocations included):
    the windows' and the rolled hours' and days' rows in typed arrays and deflated in chunks
    (with each chunk's index), the cold books' streams (both tiers in one: ``cold``), and the
    rest (the books and their tiers as objects, the dict's entries and keys); and rows per
    series: ``n windows``, ``n windows deflated``, ``n hours``, ``n hours deflated`` (hours and
    days; a cold book's rows count as deflated), ``n cold`` (books held cold)."""
    out = dict.fromkeys(("windows in arrays", "windows deflated", "hours and days in arrays",
                         "hours and days deflated", "cold", "objects and keys"), 0.0)
    rows = dict.fromkeys(("n windows", "n windows deflated", "n hours", "n hours deflated", "n cold"), 0.0)
    out["objects and keys"] = float(sys.getsizeof(spend))
    for key, book in spend.items():
        out["objects and keys"] += sys.getsizeof(key) + sys.getsizeof(book)
        cold = getattr(book, "_cold", None)
        if cold is not None:
            from streams.common.spend import _COLD_HEAD
            out["cold"] += sys.getsizeof(cold)
            rows["n cold"] += 1
            _, _, _, nw, nr = _COLD_HEAD.unpack_from(cold)[:5]
            for rname, n in (("windows", nw), ("hours", nr)):
                rows[f"n {rname}"] += n
                rows[f"n {rname} deflated"] += n
        for tier, name, rname in ((book._w, "windows", "windows"), (book._r, "hours and days", "hours")):
            if tier is None:
                continue
            out["objects and keys"] += sys.getsizeof(tier)
            out[f"{name} in arrays"] += sys.getsizeof(tier.rows) + sys.getsizeof(tier.pairs)
            warm = len(tier.rows) // tier.STRIDE
            rows[f"n {rname}"] += tier.n_rows()
            rows[f"n {rname} deflated"] += tier.n_rows() - warm
            if tier.chunks is not None:
                out[f"{name} deflated"] += (sys.getsizeof(tier.chunks) + sys.getsizeof(tier.index)
                                            + sum(sys.getsizeof(c) for c in tier.chunks))
    n = max(1, len(spend))
    return {k: v / n for k, v in (out | rows).items()}


def user_rates(n: int, seed: int) -> list[float]:
    """Each user's usual dollars per active window: lognormal, as spend per person is."""
    rng = random.Random(seed)
    return [min(rng.lognormvariate(-3.0, 1.2), 50.0) for _ in range(n)]


class Timers:
    """``--split``: wall time inside some of the judge's calls, summed (``perf_counter``
    around each call; a call inside another counts in both)."""

    def __init__(self) -> None:
        self.s: dict[str, float] = {}
        self.n: dict[str, int] = {}
        self._undo: list[tuple[type, str, Any]] = []

    def wrap(self, owner: type, name: str, label: str) -> None:
        plain = owner.__dict__.get(name)
        if plain is None:  # (a revision without it: measured against another's code)
            return
        self.s[label], self.n[label] = 0.0, 0

        def timed(*args: Any, **kwargs: Any) -> Any:
            t = time.perf_counter()
            try:
                return plain(*args, **kwargs)
            finally:
                self.s[label] += time.perf_counter() - t
                self.n[label] += 1

        setattr(owner, name, timed)
        self._undo.append((owner, name, plain))

    def undo(self) -> None:
        for owner, name, plain in reversed(self._undo):
            setattr(owner, name, plain)
        self._undo.clear()


def split_timers() -> Timers:
    """Timers around the judge's wake (applying a parked series' waiting windows, its unpickle
    included), the unpickle itself, the detectors' ``update_empty`` (the waiting windows in one
    run) and ``update`` (windows with spend; and, where ``update_empty`` is not there, the
    waiting windows one by one)."""
    from detectors import DETECTORS
    from detectors.base import Detector
    from streams.judge.core import JudgeCore

    t = Timers()
    t.wrap(JudgeCore, "_wake", "wake (waiting windows applied, unpickle included)")
    t.wrap(JudgeCore, "_unpark", "unpickle (a parked detector loaded back)")
    t.wrap(Detector, "update_empty", "update_empty (waiting windows in a run)")
    for cls in DETECTORS.values():
        t.wrap(cls, "update_empty", "update_empty (waiting windows in a run)")
    t.wrap(Detector, "update", "update (windows with spend; waiting windows without update_empty)")
    return t


def run(users: int, days: float, active: float, detector: str, window: int, seed: int,
        quiet: bool = False, rollup: bool = True, state_every: int = STATE_EVERY, park: bool = PARK,
        split: bool = False) -> dict[str, Any]:
    """The simulation; ``rollup=False`` keeps every window's spend record (as before retention);
    ``split``: also the time inside some of the judge's calls (:func:`split_timers`)."""
    timers = split_timers() if split else None
    try:
        out = _run(users, days, active, detector, window, seed, quiet, rollup, state_every, park)
    finally:
        if timers is not None:
            timers.undo()
    if timers is not None:
        out["split_ms"] = {k: (1000 * v / out["windows"], timers.n[k]) for k, v in timers.s.items()}
    return out


def _run(users: int, days: float, active: float, detector: str, window: int, seed: int,
         quiet: bool, rollup: bool, state_every: int, park: bool) -> dict[str, Any]:
    gc.collect()
    rss0 = rss_mib()
    judge = judge_factory(window, detector, {}, {}, state_every=state_every, park=park)(0)
    table = LocalTable()
    roll = (SpendRollup(window) if rollup else
            SpendRollup(window, hourly_after=0, daily_after=0, user_hourly_after=0, user_daily_after=0))
    rates = user_rates(users, seed)
    names = [f"user=u{i:06d}" for i in range(users)]
    labels = [{"user": f"u{i:06d}"} for i in range(users)]
    rng = random.Random(seed + 1)
    n_windows = int(days * 86400 // window)
    judge_s = ckpt_s = 0.0
    ckpt_bytes = 0.0
    per_day: list[dict[str, float]] = []
    k = max(1, int(users * active))
    for i in range(n_windows):
        w = T0 + i * window
        parts = []
        for u in rng.sample(range(users), k) if i else range(users):  # everyone once: all series known
            nusd = int(rates[u] * rng.uniform(0.5, 1.5) * NANO)
            parts.append(Partial(names[u], labels[u], w, [nusd, 1000, 200, 0, 0, 1], {f"model:m{u % 7}": nusd}, True))
        seq = i + 1
        roll.seen(0, seq)
        t = time.perf_counter()
        judge.receive(0, 1, w + window, parts, seq)
        t2 = time.perf_counter()
        changes = judge.checkpoint()
        for key, value in changes.items():  # as JudgeWorker._write: a series' state kept packed
            persist(table, 0, f"0|{key}", value, packed=judge.packed_out.get(key) or key.startswith("det|"))
        judge.spend_changes()
        roll.roll(judge.spend, judge.done_until)
        t3 = time.perf_counter()
        if i + LAST >= n_windows:  # what the last hour's windows wrote to the judge table
            ckpt_bytes += sum(len(orjson.dumps(v)) for v in changes.values() if v is not None) / min(LAST, n_windows)
        judge_s += t2 - t
        ckpt_s += t3 - t2
        if (i + 1) % (86400 // window) == 0 or i + 1 == n_windows:
            day = (i + 1) * window / 86400
            row = {"day": day, "rss_mib": rss_mib(), "judge_pct": 100 * judge_s / (i + 1) / window,
                   "judge_ms": 1000 * judge_s / (i + 1), "ckpt_ms": 1000 * ckpt_s / (i + 1),
                   "ckpt_pct": 100 * ckpt_s / (i + 1) / window, "spend_mib": deep_size(judge.spend) / 2 ** 20,
                   "spend_records": spend_rows(judge.spend, window)}
            per_day.append(row)
            if not quiet:
                print(f"day {day:4.1f}  RSS {row['rss_mib']:8.1f} MiB  judge {row['judge_ms']:.3f} ms per window"
                      f" ({row['judge_pct']:.4f} % of the window)  checkpoint {row['ckpt_ms']:.3f} ms"
                      f" ({row['ckpt_pct']:.4f} %)  spend {row['spend_mib']:.2f} MiB", flush=True)
    sample = names[:: max(1, users // 200)]
    # a parked series holds its packed record in place of its detector: the very bytes the
    # judge table's copy is (counted once, here)
    held = [judge.detectors.get(s) or judge.parked[s] for s in sample]
    dets = [d for d in held if not isinstance(d, bytes)]
    det_mem = per_series(held)
    det_walk_each = sum(deep_size(d) for d in held) / len(held)
    det_ser = sum(len(orjson.dumps(judge.detectors[s].to_state() if s in judge.detectors
                                   else unpack(judge.parked[s])["state"])) for s in sample) / len(sample)
    recent = judge.recent.get(sample[0]) or ()
    rec_mem = per_series([judge.recent[s] for s in sample if s in judge.recent])
    info_mem = per_series([judge.series[s] for s in sample])
    table_mem = per_series([v for v in (table.data.get(f"0|det|{s}") for s in sample)
                            if not any(v is p for p in held)]) * sum(1 for d in held if not isinstance(d, bytes)) / len(sample)
    spend_mem = deep_size(judge.spend) / users
    # Outside the sum (as it has always been printed): the judge's maps themselves (their hash
    # tables; the keys are the series' names, held once), its idle records and the local data's
    # keys, and the judge table's own hash table, keys and small values (``idle|`` records)
    maps = [judge.series, judge.detectors, judge.parked, judge.recent, judge.spend, judge.packed_out, judge._idle]
    judge_maps = (sum(sys.getsizeof(m) for m in maps) + sum(sys.getsizeof(k) for k in judge.packed_out)
                  + sys.getsizeof(judge._idle_recs) + per_series(list(judge._idle_recs.values())) * len(judge._idle_recs)
                  ) / users
    # (an ``idle|`` value the judge holds too, the very object, is counted once: with the judge's)
    held_recs = {id(v) for v in judge._idle_recs.values()}
    table_maps = (sys.getsizeof(table.data) + sum(sys.getsizeof(k) for k in table.data)
                  + per_series(small := [v for k, v in table.data.items()
                                         if not k.startswith("0|det|") and id(v) not in held_recs]) * len(small)
                  ) / users
    parts = spend_parts(judge.spend)
    return {"users": users, "days": days, "windows": n_windows, "rss0_mib": rss0, "per_day": per_day,
            "detector_bytes": det_mem, "detector_serialized_bytes": det_ser, "detector_walk_each_bytes": det_walk_each,
            "detector_parts": detector_parts(dets), "series_info_bytes": info_mem,
            "parked": sum(1 for d in held if isinstance(d, bytes)), "sampled": len(held),
            "table_bytes": table_mem, "recent_bytes": rec_mem,
            "recent_len": len(recent), "spend_bytes": spend_mem, "spend_records": spend_rows(judge.spend, window),
            "checkpoint_bytes_per_window": ckpt_bytes, "spend_parts": parts,
            "judge_maps_bytes": judge_maps, "table_maps_bytes": table_maps}


# -- one detector's bytes, component by component (--breakdown) ------------------------------

BREAKDOWN_DEPTH = 3


_DICT_NAMES: dict[type, tuple[str, ...]] = {}


def _dict_names(cls: type) -> tuple[str, ...]:
    """The instance-dict attribute names of a detectors class, read from a fresh instance.

    Reading ``obj.__dict__`` of the live object would make CPython (3.11+) build a dict for it
    where it kept only an array of values (the class's keys shared): the walk must not add the
    memory it measures."""
    if cls not in _DICT_NAMES:
        try:
            _DICT_NAMES[cls] = tuple(getattr(cls(), "__dict__", {}))
        except TypeError:  # needs arguments: its attributes are left to the "(object)" row
            _DICT_NAMES[cls] = ()
    return _DICT_NAMES[cls]


def _attrs(obj: Any) -> list[tuple[str, Any]]:
    """An object's attributes: its slots (every class of its MRO), then its instance-dict ones."""
    names = [n for c in type(obj).__mro__ for n in getattr(c, "__slots__", ()) if n not in ("__dict__", "__weakref__")]
    return [(n, getattr(obj, n)) for n in [*names, *_dict_names(type(obj))] if hasattr(obj, n)]


def _own_bytes(obj: Any) -> int:
    """The object itself: header and slots, plus its instance values (estimated: a pointer per
    attribute and a 16-byte prefix; ``sys.getsizeof`` leaves them out on 3.11)."""
    n = len(_dict_names(type(obj)))
    return sys.getsizeof(obj) + (8 * n + 16 if n else 0)


def breakdown(obj: Any, shared: set[int], path: str = "", depth: int = 0,
              out: dict[str, int] | None = None, seen: set[int] | None = None) -> dict[str, int]:
    """Bytes of ``obj`` by attribute path (``seasonal._cal._c``), walking into the detectors'
    own objects (those of the ``detectors`` package) down to ``BREAKDOWN_DEPTH``; ``(object)``
    is an object's own header, slots and instance values. What ``shared`` holds (ids reachable from
    another series' detector cloned from the same prototype: parameters, interned strings,
    small ints) is left out, as it is held once per process, and each object counts once."""
    out = {} if out is None else out
    seen = set(shared) if seen is None else seen
    if id(obj) in seen:
        return out
    seen.add(id(obj))
    out[f"{path}(object)"] = _own_bytes(obj)
    names = getattr(obj, "_names", None)
    for name, val in _attrs(obj):
        items = ([(f"{names[i]}", m) for i, m in enumerate(val)]
                 if name == "_models" and names else [(name, val)])
        for label, v in items:
            if type(v).__module__.startswith("detectors.") and depth < BREAKDOWN_DEPTH:
                breakdown(v, shared, f"{path}{label}.", depth + 1, out, seen)
                continue
            out[f"{path}{label}"] = out.get(f"{path}{label}", 0) + _walk(v, seen)
        if len(items) > 1 or items[0][1] is not val:  # the list of models itself
            out[f"{path}{name}"] = _walk(val, seen)
    # attributes the names above missed (set only after learning): counted, unnamed
    rest = sum(_walk(o, seen) for o in gc.get_referents(obj))
    if rest:
        out[f"{path}(other attributes)"] = rest
    return out


def _walk(obj: Any, seen: set[int]) -> int:
    """``deep_size`` of what ``obj`` reaches that is not in ``seen`` (which it extends)."""
    size = 0
    todo = [obj]
    while todo:
        o = todo.pop()
        if id(o) in seen or isinstance(o, (type, type(sys), type(deep_size))):
            continue
        seen.add(id(o))
        size += sys.getsizeof(o)
        todo.extend(gc.get_referents(o))
    return size


def week_of(det: Any, active: float, usd: float, days: float, window: int, seed: int) -> None:
    """``days`` of windows through ``det.update`` as the judge calls it (every window, zero
    spend when the series did not spend): spending in ``active`` of them, ``usd`` a window
    (lognormal about it, with a daily swing) and requests to match."""
    rng = random.Random(seed)
    for i in range(int(days * 86400 // window)):
        ts = T0 + (i + 1) * window
        if rng.random() < active:
            day = 1.0 + 0.6 * math.sin(2 * math.pi * ((ts % 86400) / 86400 - 0.35))
            x = usd * day * rng.lognormvariate(0.0, 0.5)
            det.update(ts, x, float(max(1, round(x / usd * 20 * active))))
        else:
            det.update(ts, 0.0, 0.0)


def print_breakdown(detector: str, days: float, window: int, seed: int) -> dict[str, dict[str, int]]:
    """One default detector's bytes after ``days`` of a sparse user series (spending in 10 %
    of the windows, ~$0.05) and of a busy team series (every window, ~$2), by component."""
    from detectors import make_detector
    from streams.judge.core import detector_params

    proto = make_detector(detector, **detector_params(window, detector, {}))
    kinds = {"sparse user": (0.1, 0.05), "busy team": (1.0, 2.0)}
    dets = {}
    for k, (active, usd) in kinds.items():
        dets[k] = proto.clone()
        week_of(dets[k], active, usd, days, window, seed)
    tables: dict[str, dict[str, int]] = {}
    for k, det in dets.items():
        other = next(d for o, d in dets.items() if o != k)
        shared = _reachable(other) & _reachable(det)
        tables[k] = breakdown(det, shared)
    # Rows under 100 bytes on every series are gathered by object: mostly single floats and ints.
    small: dict[str, dict[str, int]] = {}
    for k, t in tables.items():
        for r in [r for r in t if max(tt.get(r, 0) for tt in tables.values()) < 100 and not r.endswith("(object)")]:
            key = r.rsplit(".", 1)[0] + ".scalars" if "." in r else "scalars"
            small.setdefault(k, {})
            small[k][key] = small[k].get(key, 0) + t.pop(r)
    for k in tables:
        tables[k].update(small.get(k, {}))
    rows = sorted(set().union(*tables.values()), key=lambda r: -max(t.get(r, 0) for t in tables.values()))
    print(f"bytes of one {detector} detector after {days:g} days of {window} s windows "
          "(what every series shares left out; (object): header, slots and instance values; "
          "scalars: attributes under 100 B each, mostly single floats and ints):")
    print(f"{'':36s}" + "".join(f"{k:>14s}" for k in tables))
    for r in rows:
        if any(t.get(r, 0) for t in tables.values()):
            print(f"{r:36s}" + "".join(f"{t.get(r, 0):14d}" for t in tables.values()))
    print(f"{'total':36s}" + "".join(f"{sum(t.values()):14d}" for t in tables.values()))
    by_part: dict[str, dict[str, int]] = {}
    for k, t in tables.items():
        for r, v in t.items():
            part = r.split(".")[0] if "." in r else "combiner"
            by_part.setdefault(part, {}).setdefault(k, 0)
            by_part[part][k] += v
    print("by part (" + " / ".join(tables) + "): "
          + "; ".join(f"{p} " + " / ".join(f"{v}" for v in d.values()) for p, d in by_part.items()))
    return tables


def _reachable(obj: Any) -> set[int]:
    """Ids of what ``obj`` reaches (as ``deep_size`` walks: classes, modules, functions left out)."""
    seen: set[int] = set()
    _walk(obj, seen)
    return seen


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--users", type=int, default=100_000, help="watched user series (default 100000)")
    ap.add_argument("--days", type=float, default=7.0, help="days of event time (default 7)")
    ap.add_argument("--active", type=float, default=0.1, help="share of users spending in a window (default 0.1)")
    ap.add_argument("--detector", default="default", help="detector of the policy (default: default)")
    ap.add_argument("--window", type=int, default=60, help="window seconds (default 60)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--state-every", type=int, default=STATE_EVERY,
                    help=f"TOKENPULSE_JUDGE_STATE_EVERY_WINDOWS (default {STATE_EVERY}; 1: every state every window)")
    ap.add_argument("--no-park", dest="park", action="store_false",
                    help="step every series every window (TOKENPULSE_JUDGE_PARK=false)")
    ap.add_argument("--split", action="store_true",
                    help="also print the time per window inside the judge's wake, unpickle, update_empty and "
                         "update calls (timers around them: a little slower)")
    ap.add_argument("--breakdown", action="store_true",
                    help="only print one detector's bytes by component after --days of a sparse user "
                         "series and of a busy team series (a few seconds)")
    a = ap.parse_args(argv)
    if a.breakdown:
        print_breakdown(a.detector, a.days, a.window, a.seed)
        return
    print(f"{a.users} user series, {a.days} days of {a.window} s windows, {a.active:.0%} active per window, "
          f"detector {a.detector}, detector states written every {a.state_every} windows, "
          f"idle series {'parked' if a.park else 'stepped'}", flush=True)
    out = run(a.users, a.days, a.active, a.detector, a.window, a.seed, state_every=a.state_every, park=a.park,
              split=a.split)
    last = out["per_day"][-1]
    grown = last["rss_mib"] - out["rss0_mib"]
    print()
    print(f"RSS {last['rss_mib']:.1f} MiB (+{grown:.1f} MiB over the start: {grown * 1024 / a.users:.1f} KiB per series)")
    print(f"judge time per window: {last['judge_ms']:.3f} ms, {last['judge_pct']:.4f} % of the window; checkpoint "
          f"{last['ckpt_ms']:.3f} ms, {last['ckpt_pct']:.4f} %"
          f" ({out['checkpoint_bytes_per_window'] / 1e6:.3f} MB serialised per window, the last hour's mean)")
    print(f"parked at the end: {out['parked']} of the {out['sampled']} series sampled (their packed record held in "
          "place of the detector, the judge table's copy those same bytes)")
    print("per series: detector "
          f"{out['detector_bytes'] / 1024:.1f} KiB in memory ({out['detector_walk_each_bytes'] / 1024:.1f} KiB walking each "
          f"alone), {out['detector_serialized_bytes'] / 1024:.1f} KiB serialised; "
          f"recent windows ({out['recent_len']} windows) {out['recent_bytes'] / 1024:.1f} KiB; "
          f"spend records {out['spend_bytes'] / 1024:.1f} KiB ({out['spend_records'] / a.users:.0f} windows, hours "
          f"and days); labels and contributor mix {out['series_info_bytes'] / 1024:.1f} KiB; "
          f"the judge table's local copy of its last checkpoint {out['table_bytes'] / 1024:.1f} KiB")
    for label, (ms, calls) in out.get("split_ms", {}).items():
        print(f"  in {label}: {ms:.3f} ms per window ({calls} calls)")
    sp = out["spend_parts"]
    print(f"spend by part: windows {sp['windows in arrays']:.0f} B in arrays ({sp['n windows'] - sp['n windows deflated']:.0f}"
          f" windows), {sp['windows deflated']:.0f} B deflated ({sp['n windows deflated']:.0f}); hours and days "
          f"{sp['hours and days in arrays']:.0f} B in arrays ({sp['n hours'] - sp['n hours deflated']:.0f}), "
          f"{sp['hours and days deflated']:.0f} B deflated ({sp['n hours deflated']:.0f}); "
          f"cold streams {sp['cold']:.0f} B ({sp['n cold'] * 100:.0f} % of the books, their rows counted above as "
          f"deflated); books, tiers, dict and keys {sp['objects and keys']:.0f} B")
    print(f"detector state by part ({out['sampled'] - out['parked']} live detectors): " + ", ".join(
        f"{k} {v:.0f} B" for k, v in out["detector_parts"].items()))
    per = (out["detector_bytes"] + out["recent_bytes"] + out["spend_bytes"] + out["series_info_bytes"]
           + out["table_bytes"]) / 1024
    print(f"not in the sum: the judge's maps, idle records and keys {out['judge_maps_bytes']:.0f} B per series; "
          f"the judge table's hash table, keys and idle records {out['table_maps_bytes']:.0f} B")
    print(f"scaled: {per:.1f} KiB per series -> {per * 10_000 / 1024:.0f} MiB per 10k series, "
          f"{per * 100_000 / 1024 ** 2:.2f} GiB for 100k; judge {last['judge_pct'] * 100_000 / a.users:.1f} % "
          "of the window for 100k on one core")


if __name__ == "__main__":
    main()
