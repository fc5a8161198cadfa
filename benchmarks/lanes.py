"""Per-event cost of the ingest lanes in one process, without Kafka, against orjson parsing.

    python -m benchmarks.lanes [--events 200000] [--repeat 7]

The worker's hot path minus the broker: :func:`streams.ingest.pipeline.count_message` on the
throughput benchmark's messages (:func:`benchmarks.throughput.make_messages`: canonical events
without ``cost_usd``, so pricing runs), each case in a fresh :class:`~streams.ingest.windows.IngestPartition`:

=============  ===========================================================================
case           what is timed
=============  ===========================================================================
parse          ``orjson.loads`` of every 100-event message (the yardstick)
batched        ``count_message`` on 100-event messages (msgspec fast lane + ``add_events``)
one-event      ``count_message`` on one-event messages (the same lane, one event per call)
general        ``count_message`` on one-event messages in the OpenAI ``usage`` shape (the
               general lane: ``decode_message`` + ``normalize`` + ``add``)
ndjson         ``count_message`` on the batched case's events as 100-line NDJSON messages,
               which the msgspec lane does not take: ``decode_message`` + the dict lane
               (``streams.ingest.normalize._fast_canonical``) + ``add``
ndjson-slow    the same with the dict lane switched off (every event through ``normalize``'s
               field-by-field ``_build``): what the dict lane saves
=============  ===========================================================================

The cases alternate within each repeat, so machine noise hits them alike. Time is this
process's CPU time (``time.process_time``), which other work on a shared machine disturbs far
less than wall time. The table shows the median and the best ns per event and the median's
ratio to ``parse``. Compare two versions of the code by their ratios (the same run's
yardstick), not by their absolute figures.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import orjson

import streams.ingest.normalize as normalize_mod
import streams.ingest.pipeline as pipeline_mod
from benchmarks.throughput import make_messages
from streams.ingest.windows import IngestPartition
from streams.ingest.pipeline import count_message
from streams.ingest.pricing import Pricer


def _openai_shape(raw: bytes) -> bytes:
    ev = orjson.loads(raw)
    ev["usage"] = {"prompt_tokens": ev.pop("input_tokens"), "completion_tokens": ev.pop("output_tokens"),
                   "prompt_tokens_details": {"cached_tokens": ev.pop("cache_read_tokens", 0)}}
    ev.pop("cache_write_tokens", None)
    return orjson.dumps(ev)


def _count(messages: list[bytes]) -> Callable[[], int]:
    pricer = Pricer()  # shared by the runs: resolving a model's price once is not per-event work

    def run() -> int:
        core = IngestPartition(partition=0)
        rejects: list[str] = []
        for raw in messages:
            count_message(core, raw, pricer, 0.0, lambda b, reason, i: rejects.append(reason))
        assert not rejects, rejects[:3]
        return core.counters.accepted
    return run


def _without_dict_lane(run: Callable[[], int]) -> Callable[[], int]:
    def slow() -> int:
        saved = normalize_mod._fast_canonical, pipeline_mod._fast_canonical
        normalize_mod._fast_canonical = pipeline_mod._fast_canonical = lambda o, default_org: None
        try:
            return run()
        finally:
            normalize_mod._fast_canonical, pipeline_mod._fast_canonical = saved
    return slow


def _parse(messages: list[bytes]) -> Callable[[], int]:
    def run() -> int:
        n = 0
        loads = orjson.loads
        for raw in messages:
            n += len(loads(raw))
        return n
    return run


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=200_000, help="events per case (default 200000)")
    ap.add_argument("--repeat", type=int, default=7, help="runs per case; the table shows the median (default 7)")
    args = ap.parse_args(argv)
    batched = [v for _, v in make_messages(args.events, 100)]
    single = [v for _, v in make_messages(args.events // 4, 1)]
    general = [_openai_shape(v) for v in single]
    ndjson = [b"\n".join(orjson.dumps(ev) for ev in orjson.loads(v)) for v in batched]
    cases: dict[str, tuple[Callable[[], int], int]] = {
        "parse": (_parse(batched), args.events),
        "batched": (_count(batched), args.events),
        "one-event": (_count(single), len(single)),
        "general": (_count(general), len(general)),
        "ndjson": (_count(ndjson), args.events),
        "ndjson-slow": (_without_dict_lane(_count(ndjson)), args.events),
    }
    for run, _ in cases.values():
        run()  # warm up: prices resolved, caches filled
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(args.repeat):
        for name, (run, n) in cases.items():
            t = time.process_time()
            got = run()
            dt = time.process_time() - t
            assert got == n, (name, got, n)
            times[name].append(dt / n * 1e9)
    base = statistics.median(times["parse"])
    print(f"{'case':<12} {'ns/event':>9} {'best':>6} {'/ parse':>8}")
    for name in cases:
        med = statistics.median(times[name])
        print(f"{name:<12} {med:9.0f} {min(times[name]):6.0f} {med / base:8.2f}")


if __name__ == "__main__":
    main()
