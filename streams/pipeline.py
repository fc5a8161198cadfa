"""One message's worth of the ingest pipeline: decode, normalise, price, count.

Pure and shared: the worker's hot path and the offline replay call the same function, so a
replayed file and the same events streamed through the worker are counted alike.

A message of tidy canonical events takes the fast lane (:func:`streams.normalize.decode_canonical`
and :meth:`streams.ingest.IngestPartition.add_events`); anything else, the general one. Both
count the same (tests/streams/test_fast_lane.py).
"""

from __future__ import annotations

from collections.abc import Callable

import orjson

from streams.ingest import IngestPartition
from streams.normalize import Rejected, _fast_canonical, decode_canonical, decode_message, normalize
from streams.pricing import Pricer

# (original bytes, reason, index within the message or None)
OnReject = Callable[[bytes, str, "int | None"], None]


def count_message(core: IngestPartition, raw: bytes, pricer: Pricer, now: float, on_reject: OnReject) -> None:
    """Count every usage event in one message; hand each reject to ``on_reject``."""
    fast = decode_canonical(raw)
    if fast is not None:
        # the common case: tidy canonical events, decoded straight into structs
        core.add_events(fast, now, pricer=pricer)  # type: ignore[arg-type]
        return
    try:
        items = decode_message(raw)
    except Rejected as exc:
        core.counters.rejected += 1
        on_reject(raw, exc.reason, None)
        return
    price = pricer.price
    add = core.add
    many = len(items) > 1
    for i, item in enumerate(items):
        ev = _fast_canonical(item, "default") if type(item) is dict else None
        if ev is None:
            if type(item) is Rejected:
                core.counters.rejected += 1
                on_reject(item.raw or b"", item.reason, i)
                continue
            try:
                ev = normalize(item)
            except Rejected as exc:
                core.counters.rejected += 1
                on_reject(orjson.dumps(item), exc.reason, i if many else None)
                continue
        if ev.cost_usd is None:
            ev.cost_usd = price(ev)
        add(ev, now)
