"""``tokenpulse feedback export``: on-call's answers, read from the feedback topic, as labels.

The topic (``<prefix>.feedback``) is the source of truth: every answer is an event there before
any worker applies it, and reading it needs the broker only, not a running worker. Each
answered incident (alert key and ``started_at``) becomes one JSON line that both readers of
labels take:

- ``tokenpulse replay --labels`` (:func:`tokenpulse.replay.load_labels`): ``team``, ``start``,
  ``end``, ``should_alert``, ``name``;
- ``tokenpulse tune --feedback`` (:func:`tokenpulse.tune.load_feedback`): ``team``, ``at``,
  ``useful``;
- ``tokenpulse replay --feedback`` (:func:`tokenpulse.replay.load_feedback_answers`): ``series``,
  ``key``, ``action``, ``window_end``, ``id``, the answers replayed at their time.

An incident is a false alert (``should_alert``/``useful`` false) when anyone answered "not an
anomaly", the precision the dashboard counts; any other answer (acknowledged, a new normal,
snoozed, resolved in PagerDuty) says it was a real one. Answers on a series without a team
(``org``, ``provider=…``) are written with ``team: null``: the label readers skip them, as
replay's scoring does not attribute those alerts to a team, and ``replay --feedback`` still
applies them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

import orjson

from streams.common.periods import rfc3339
from streams.common.security import KafkaSecurity

__all__ = ["ExportError", "labels_from_answers", "read_feedback", "write_labels"]

NOT_ANOMALY = "tokenpulse_not_anomaly"
ACTIONS = ("tokenpulse_ack", "tokenpulse_new_normal", NOT_ANOMALY, "tokenpulse_snooze_4h", "tokenpulse_resolve")
_SPAN_S = 900.0  # an incident with no start known: the quarter hour before its window's end


class ExportError(RuntimeError):
    """The export cannot go on (the broker, the topic); ``str()`` says what to fix."""


def _team(series: str) -> str | None:
    for part in series.split("|"):
        k, _, v = part.partition("=")
        if k == "team":
            return v
    return None


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def labels_from_answers(answers: Iterable[dict[str, Any]], warn: Callable[[str], None] = lambda _: None,
                        ) -> list[dict[str, Any]]:
    """One label line per answered incident, oldest first. An answer without an id, alert
    key, series, known action or window end is left out and told to ``warn`` (with where it
    was read, its ``_where``); the same answer id twice counts once."""
    seen: set[str] = set()
    incidents: dict[tuple[str, float | None], list[dict[str, Any]]] = {}
    for a in answers:
        where = a.get("_where", "an answer")
        fid, action = str(a.get("id") or ""), str(a.get("action") or "")
        end = _num(a.get("window_end"))
        missing = [k for k in ("id", "key", "series") if not a.get(k)] + ([] if end is not None else ["window_end"])
        if missing:
            warn(f"{where}: left out: no {', '.join(missing)}")
            continue
        if action not in ACTIONS:
            warn(f"{where}: left out: unknown action {action[:40]!r}")
            continue
        if fid in seen:
            continue
        seen.add(fid)
        incidents.setdefault((str(a["key"]), _num(a.get("started_at"))), []).append(a)
    out = []
    for (key, started), group in incidents.items():
        group.sort(key=lambda a: (_num(a.get("at")) or 0.0, str(a["id"])))
        first = group[0]
        end = float(first["window_end"])  # the message answered: the alert's time
        start = started if started is not None and started <= end else end - _SPAN_S
        false = any(a["action"] == NOT_ANOMALY for a in group)
        series = str(first["series"])
        out.append({
            "team": _team(series),
            "start": rfc3339(start),
            "end": rfc3339(end),
            "should_alert": not false,
            "name": f"{key} answered {'not an anomaly' if false else first['action'].removeprefix('tokenpulse_')}",
            "at": rfc3339(end),
            "useful": not false,
            "id": str(next((a["id"] for a in group if a["action"] == NOT_ANOMALY), first["id"])),
            "action": NOT_ANOMALY if false else str(group[-1]["action"]),
            "key": key,
            "series": series,
            "started_at": None if started is None else rfc3339(started),
            "window_end": rfc3339(end),
            "answers": [{"action": a["action"], "user": a.get("user"), "source": a.get("source"),
                         "at": rfc3339(_num(a.get("at")) or end)} for a in group],
        })
    out.sort(key=lambda r: (r["end"], r["key"]))
    return out


def read_feedback(bootstrap: str, topic: str, security: KafkaSecurity, *, timeout: float = 30.0,
                  progress: Callable[[int, int], None] | None = None,
                  warn: Callable[[str], None] = lambda _: None) -> list[dict[str, Any]]:
    """Every answer on ``topic`` from its first offset to its end (no consumer group: nothing
    is committed, a worker's offsets are untouched). A record that is not a JSON object is
    told to ``warn`` with its partition and offset, never dropped quietly. ``progress(read,
    total)`` is called about once a second on a long read.

    Raises :class:`ExportError` when the broker cannot be reached or the topic does not
    exist (naming the feedback topics that do, if any: a wrong ``TOKENPULSE_TOPIC_PREFIX``)."""
    from kafka import KafkaConsumer, TopicPartition
    from kafka.errors import KafkaError

    from tokenpulse.broker import BrokerError, check_access

    try:
        check_access(bootstrap, security, timeout=timeout)
    except BrokerError as exc:
        raise ExportError(str(exc)) from None
    try:
        consumer = KafkaConsumer(bootstrap_servers=bootstrap.split(","), group_id=None, enable_auto_commit=False,
                                 client_id="tokenpulse-feedback-export", request_timeout_ms=max(int(timeout * 1000), 1000),
                                 consumer_timeout_ms=1000, **security.kafka_python())
    except KafkaError as exc:
        raise ExportError(f"cannot read from Kafka at {bootstrap}: {type(exc).__name__}: {exc}") from None
    try:
        topics = consumer.topics()
        if topic not in topics:
            others = sorted(t for t in topics if t.endswith(".feedback"))
            hint = (f"; feedback topics there: {', '.join(others)} (set TOKENPULSE_TOPIC_PREFIX)" if others
                    else "; no feedback topic there: no answer was ever given, or the prefix is wrong")
            raise ExportError(f"topic {topic} does not exist on {bootstrap}{hint}")
        parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        begin = consumer.beginning_offsets(parts)
        ends = consumer.end_offsets(parts)
        total = sum(max(0, ends[tp] - begin[tp]) for tp in parts)
        out: list[dict[str, Any]] = []
        last_report = time.monotonic()
        while True:
            batch = consumer.poll(timeout_ms=1000, max_records=5000)
            for tp, records in batch.items():
                for rec in records:
                    where = f"{topic}[{tp.partition}]@{rec.offset}"
                    try:
                        body = orjson.loads(rec.value)
                    except (orjson.JSONDecodeError, TypeError):
                        warn(f"{where}: not JSON: left out")
                        continue
                    if not isinstance(body, dict):
                        warn(f"{where}: not a JSON object: left out")
                        continue
                    out.append({**body, "_where": where})
            if progress is not None and time.monotonic() - last_report >= 1.0:
                last_report = time.monotonic()
                progress(len(out), total)
            # The end: every partition at its end offset and a poll with nothing more. (Tansu 0.6
            # reports the last batch's base offset + 1 as the end, so the empty poll decides.)
            if not batch and all(consumer.position(tp) >= ends[tp] for tp in parts):
                return out
    except KafkaError as exc:
        raise ExportError(f"reading {topic} from {bootstrap} failed: {type(exc).__name__}: {exc}") from None
    finally:
        consumer.close()


def write_labels(rows: list[dict[str, Any]], out: Any) -> None:
    """The label lines, one JSON object each."""
    for r in rows:
        out.write(orjson.dumps(r) + b"\n")
