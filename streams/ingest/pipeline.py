"""One message's worth of the ingest pipeline: decode, normalise, price, count.

Pure and shared: the worker's hot path and the offline replay call the same function, so a
replayed file and the same events streamed through the worker are counted alike.

Three lanes, which count the same (tests/streams/ingest/test_fast_lane.py, test_fuzz.py): a
message of tidy canonical events takes the msgspec lane
(:func:`streams.ingest.normalize.decode_canonical` and
:meth:`streams.ingest.windows.IngestPartition.add_events`); any other message is decoded with
orjson and each element takes the dict lane (``normalize._fast_canonical``) when it is a tidy
canonical event, else :func:`~streams.ingest.normalize.normalize` (why the dict lane stays:
its docstring).

No input stops the pipeline: every element of a message is decoded, validated, priced and
counted under one guard, and whatever fails -- invalid (:class:`~streams.ingest.normalize.Rejected`),
over a plausibility bound (:class:`~streams.ingest.windows.Implausible`) or an error of our own -- is
handed to ``on_reject`` with its reason and is not counted; the other elements are.
:func:`dead_letter_record` turns a reject into the dead-letter topic's record and cannot fail.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import orjson

from streams.common.config import DLQ_MAX_BYTES
from streams.ingest.windows import Implausible, IngestPartition, failure_reason
from streams.ingest.normalize import Rejected, _fast_canonical, decode_canonical, decode_message, normalize
from streams.ingest.pricing import Pricer

__all__ = ["OnReject", "count_message", "dead_letter_record"]

# (original bytes, reason, index within the message or None)
OnReject = Callable[[bytes, str, "int | None"], None]

REASON_MAX_CHARS = 1000  # a reason header; the reasons themselves stay far below it


def count_message(core: IngestPartition, raw: bytes | None, pricer: Pricer, now: float, on_reject: OnReject) -> None:
    """Count every usage event in one message; hand each reject to ``on_reject``.

    Never raises on any input (``on_reject`` raising included: that reject is lost, not the
    message). A rejected element is not counted and not remembered as seen, so the same
    message after a restart is rejected the same way, never dropped as a duplicate.
    """
    if raw is None:  # a record without a value (a tombstone): nothing to count
        core.counters.rejected += 1
        _tell(on_reject, b"", "empty message: the record has no value", None)
        return
    try:
        fast = decode_canonical(raw)
    except Exception:  # noqa: BLE001 - cannot happen; the general lane then says what is wrong
        fast = None
    if fast is not None:
        # the common case: tidy canonical events, decoded straight into structs
        rejects = core._rejects
        try:
            core.add_events(fast, now, pricer, 0, math.inf, rejects)  # type: ignore[arg-type]
        except Exception as exc:  # noqa: BLE001 - add_events guards each event; this is the last net
            core.counters.failed += 1
            _tell(on_reject, raw, failure_reason(exc), None)
        if rejects:
            if len(fast) > 1:
                elems = _elements(raw)  # parsed once for all the rejects of the message
                for i, reason in rejects:
                    one = raw if elems is None or i >= len(elems) else _item_bytes(raw, elems[i])
                    _tell(on_reject, one, reason, i)
            else:
                _tell(on_reject, raw, rejects[0][1], None)
            rejects.clear()
        return
    try:
        items = decode_message(raw)
    except Rejected as exc:
        core.counters.rejected += 1
        _tell(on_reject, raw, exc.reason, None)
        return
    except Exception as exc:  # noqa: BLE001
        core.counters.failed += 1
        _tell(on_reject, raw, failure_reason(exc), None)
        return
    price = pricer.price
    add = core.add
    many = len(items) > 1
    for i, item in enumerate(items):
        try:
            ev = _fast_canonical(item, "default") if type(item) is dict else None
            if ev is None:
                if type(item) is Rejected:
                    core.counters.rejected += 1
                    _tell(on_reject, item.raw or b"", item.reason, i)
                    continue
                ev = normalize(item)
            if ev.cost_usd is None:
                ev.cost_usd = price(ev)
            add(ev, now)
        except Implausible as exc:  # counted by add()
            _tell(on_reject, _item_bytes(raw, item) if many else raw, exc.reason, i if many else None)
        except Rejected as exc:
            core.counters.rejected += 1
            _tell(on_reject, _item_bytes(raw, item) if many else raw, exc.reason, i if many else None)
        except Exception as exc:  # noqa: BLE001 - one element's failure stops no other
            core.counters.failed += 1
            _tell(on_reject, _item_bytes(raw, item) if many else raw, failure_reason(exc), i if many else None)


def _tell(on_reject: OnReject, raw: bytes, reason: str, index: int | None) -> None:
    try:
        on_reject(raw, reason, index)
    except Exception:  # noqa: BLE001 - the caller's sink failing must not stop the message
        pass


def _item_bytes(raw: bytes, item: object) -> bytes:
    """The bytes to dead-letter for one element of a message: the element written back as JSON
    (the original bytes of a bad NDJSON line), or -- when that cannot be written, e.g. nested
    deeper than orjson writes -- the whole message (the index says which element)."""
    if type(item) is Rejected:
        return item.raw or raw
    try:
        return orjson.dumps(item)
    except Exception:  # noqa: BLE001
        return raw


def _elements(raw: bytes) -> list[object] | None:
    """The elements of a JSON array message, as the general lane reads them (None: unreadable,
    which a message the fast lane took never is)."""
    try:
        items = orjson.loads(raw)
    except Exception:  # noqa: BLE001
        return None
    return items if type(items) is list else None


def dead_letter_record(
    raw: bytes, reason: str, source: str, index: int | None = None, max_bytes: int = DLQ_MAX_BYTES,
) -> tuple[bytes, list[tuple[str, bytes]]]:
    """The dead-letter topic's record for one reject: ``(value, headers)``. Never raises.

    The value is the original bytes, cut to ``max_bytes``; headers: ``tokenpulse.reason``,
    ``tokenpulse.source`` (``topic/partition/offset``), ``tokenpulse.index`` (the element of a
    batch, when there is one), and ``tokenpulse.truncated`` (the original size in bytes) when
    the value was cut.
    """
    try:
        value = raw if type(raw) is bytes else bytes(raw)
    except Exception:  # noqa: BLE001
        value = b""
    headers = [("tokenpulse.reason", _header(reason, REASON_MAX_CHARS)), ("tokenpulse.source", _header(source, 500))]
    if index is not None:
        headers.append(("tokenpulse.index", _header(index, 40)))
    if len(value) > max(0, max_bytes):
        headers.append(("tokenpulse.truncated", str(len(value)).encode()))
        value = value[:max(0, max_bytes)]
    return value, headers


def _header(value: object, limit: int) -> bytes:
    try:
        text = value if isinstance(value, str) else str(value)
        if len(text) > limit:
            text = text[: limit - 1] + "…"
        return text.encode("utf-8", "backslashreplace")
    except Exception:  # noqa: BLE001
        return b"?"
