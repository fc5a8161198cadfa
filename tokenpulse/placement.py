"""The placement a deployment's state was written with, kept on the broker, and the start-up
check that refuses a silent switch (docs/deploying.md#placement).

Why on the broker: a worker's data dir is a cache (a new pod starts empty), while the state the
placement decides the layout of -- detector state in the ``judge`` table, exact spend in
``spend``, both keyed by judge partition -- lives in changelog topics. So the record lives
beside them: one compacted topic ``<APP_ID>-meta`` (one partition, key ``placement``), read by
every worker at start before Faust runs, the way Kafka Streams and Faust keep what outlives
every process. It survives all workers stopping, as the changelogs do.

Use :func:`check_placement` once per worker start (``tokenpulse.runtime.prepare_topics``);
:func:`decide` is the rule itself, pure, for the tests.
"""

from __future__ import annotations

import logging
import socket
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from streams.common.security import PLAINTEXT, KafkaSecurity

__all__ = ["PLACEMENTS", "STATE_TABLES", "PlacementDecision", "PlacementError", "check_placement", "decide",
           "meta_topic", "read_record", "state_written", "write_record"]

PLACEMENTS = ("org", "series")
KEY = b"placement"
# The tables whose layout the placement decides (docs/deploying.md, "What switching a running
# deployment moves"): a record in either means the deployment has judged with some placement.
STATE_TABLES = ("judge", "spend")
# What a deployment that wrote state before the placement was recorded ran with: the only
# placement older versions had by default.
UNRECORDED = "org"

log = logging.getLogger("tokenpulse.placement")


class PlacementError(Exception):
    """The worker must not start with this placement; the message says what to set."""


@dataclass(frozen=True)
class PlacementDecision:
    """What a worker does about the recorded placement at start.

    ``placement``: the one it runs with (always the configured one: the check only refuses).
    ``write``: record it on the broker (first start, a deployment from before the record, or a
    switch). ``previous``: the placement it switches from (None: no switch). ``unrecorded``:
    the previous placement was not on the broker but taken from the state's age (``org``)."""

    placement: str
    write: bool
    previous: str | None = None
    unrecorded: bool = False


def meta_topic(app_id: str) -> str:
    """The deployment's compacted meta topic (beside Faust's ``<APP_ID>-<table>-changelog``)."""
    return f"{app_id}-meta"


def decide(recorded: str | None, has_state: bool, configured: str, explicit: bool) -> PlacementDecision:
    """The start-up rule. ``recorded``: the placement on the broker (None: none yet);
    ``has_state``: the deployment has written judge or spend state; ``configured``: this
    worker's ``TOKENPULSE_PLACEMENT``; ``explicit``: it was given (environment or setting)
    rather than taken from the default.

    Raises :class:`PlacementError` when the worker would switch the deployment's placement
    only because the default changed."""
    if recorded is None and not has_state:
        return PlacementDecision(configured, write=True)  # a new deployment
    previous = recorded if recorded is not None else UNRECORDED
    unrecorded = recorded is None
    if previous == configured:
        return PlacementDecision(configured, write=unrecorded, unrecorded=unrecorded)
    if explicit:
        return PlacementDecision(configured, write=True, previous=previous, unrecorded=unrecorded)
    where = ("taken as 'org': state written before the placement was recorded" if unrecorded
             else "as recorded on the broker")
    raise PlacementError(
        f"this deployment's state was written with TOKENPULSE_PLACEMENT={previous} ({where}), and this worker "
        f"would start with {configured!r}, the default, which moves every series (docs/deploying.md#placement). "
        f"To keep the deployment as it is, set TOKENPULSE_PLACEMENT={previous}; to switch it, set "
        f"TOKENPULSE_PLACEMENT={configured} explicitly.")


# -- on the broker (kafka-python) ---------------------------------------------------------------------

def _consumer(bootstrap: str, security: KafkaSecurity) -> Any:
    from kafka import KafkaConsumer

    return KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, client_id="tokenpulse-placement",
                         request_timeout_ms=10000, **security.kafka_python())


def _partitions(consumer: Any, topic: str, timeout: float) -> list[int]:
    # a topic created a moment ago may be missing from the first metadata answer
    deadline = time.monotonic() + timeout
    while True:
        parts = consumer.partitions_for_topic(topic)
        if parts:
            return sorted(parts)
        if time.monotonic() >= deadline:
            return []
        time.sleep(0.2)


def read_record(bootstrap: str, app_id: str, security: KafkaSecurity = PLAINTEXT,
                timeout: float = 30.0) -> str | None:
    """The placement recorded on the meta topic (the last ``placement`` record), or None; the
    topic must exist.

    A record that is not one of ours is a :class:`PlacementError` naming the topic and offset:
    a worker must not guess what the state was written with."""
    from kafka import TopicPartition

    topic = meta_topic(app_id)
    consumer = _consumer(bootstrap, security)
    try:
        if not _partitions(consumer, topic, 10.0):  # made before (ensure_topics): not knowing it is no answer
            raise PlacementError(f"{topic}: no metadata from the broker within 10 s; the placement cannot be checked")
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        consumer.seek_to_beginning(tp)
        # every record is written alone (write_record flushes each), so the log end is exact on
        # Tansu too, whose ListOffsets answers the last batch's base offset + 1
        end = consumer.end_offsets([tp])[tp]
        last: tuple[int, bytes | None] | None = None
        deadline = time.monotonic() + timeout
        while consumer.position(tp) < end:
            if time.monotonic() >= deadline:
                raise PlacementError(f"could not read {topic} to its end ({end}) within {timeout:g} s")
            for batch in consumer.poll(timeout_ms=500).values():
                for rec in batch:
                    if rec.key == KEY:
                        last = (rec.offset, rec.value)
    finally:
        consumer.close()
    if last is None:
        return None
    offset, raw = last
    if raw is None:  # a tombstone: the record was deleted
        return None
    try:
        value = orjson.loads(raw)["placement"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        value = None
    if value not in PLACEMENTS:
        raise PlacementError(f"{topic} offset {offset}: not a placement record (want JSON with \"placement\": "
                             f"one of {', '.join(PLACEMENTS)}); with every worker stopped, delete the topic or "
                             "write a record with the placement the state was written with")
    return str(value)


def state_written(bootstrap: str, app_id: str, security: KafkaSecurity = PLAINTEXT) -> bool:
    """Whether the deployment has written judge or spend state: a record on their changelogs
    (``<APP_ID>-judge-changelog``, ``<APP_ID>-spend-changelog``), which Faust creates on first use."""
    from kafka import TopicPartition

    consumer = _consumer(bootstrap, security)
    try:
        topics = consumer.topics()
        for table in STATE_TABLES:
            topic = f"{app_id}-{table}-changelog"
            if topic not in topics:
                continue
            tps = [TopicPartition(topic, p) for p in _partitions(consumer, topic, 5.0)]
            # the log end, not the start: compaction may have removed the first records
            if tps and any(off > 0 for off in consumer.end_offsets(tps).values()):
                return True
        return False
    finally:
        consumer.close()


def write_record(bootstrap: str, app_id: str, placement: str, previous: str | None,
                 security: KafkaSecurity = PLAINTEXT) -> None:
    """Record ``placement`` on the meta topic (created by the caller), acknowledged by every
    in-sync replica before the worker goes on."""
    from kafka import KafkaProducer

    body = {"placement": placement, "previous": previous, "at": datetime.now(UTC).isoformat(timespec="seconds"),
            "host": socket.gethostname()}
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", client_id="tokenpulse-placement",
                             **security.kafka_python())
    try:
        producer.send(meta_topic(app_id), key=KEY, value=orjson.dumps(body), partition=0).get(timeout=30)
        producer.flush(30)
    finally:
        producer.close()


def _logger() -> logging.Logger:
    # The check runs before Faust sets up logging: a handler of its own, in Faust's line format,
    # so that the switch shows in the worker's log whatever the root logger holds.
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("[%(asctime)s] [%(process)d] [%(levelname)s] %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False
    return log


def check_placement(bootstrap: str, app_id: str, configured: str, explicit: bool,
                    security: KafkaSecurity = PLAINTEXT) -> PlacementDecision:
    """Read the recorded placement, decide (:func:`decide`), record the configured one when it
    is new or switched, and log what happened. The meta topic must exist (``ensure_topics``).
    Raises :class:`PlacementError` when the worker must not start."""
    topic = meta_topic(app_id)
    recorded = read_record(bootstrap, app_id, security)
    has_state = recorded is None and state_written(bootstrap, app_id, security)
    decision = decide(recorded, has_state, configured, explicit)
    if decision.write:
        write_record(bootstrap, app_id, decision.placement, decision.previous, security)
    out = _logger()
    if decision.previous is not None:
        out.warning("placement: switching this deployment from %r to %r (TOKENPULSE_PLACEMENT given explicitly; "
                    "%s); each series moves to where the new placement judges it (docs/deploying.md#placement). "
                    "Recorded on %s.", decision.previous, decision.placement,
                    "the state before had no record: taken as 'org'" if decision.unrecorded else "recorded before",
                    topic)
    elif decision.write:
        out.info("placement: %r recorded on %s (%s)", decision.placement, topic,
                 "state written before the placement was recorded: taken as 'org'" if decision.unrecorded
                 else "a new deployment")
    else:
        out.info("placement: %r, as recorded on %s", decision.placement, topic)
    return decision
