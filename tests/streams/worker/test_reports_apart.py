"""Scheduled reports with ``TOKENPULSE_PLACEMENT=series``, without Faust: every judge partition's
part arrives at the owner once, and the budgets in it are the org stage's ledger with every
judge partition's spend of the period, so the report says what the org placement says
(tests/integration/test_reports.py runs both placements in a real worker)."""

from __future__ import annotations

from typing import Any

import orjson

from streams.common.metrics import Metrics
from streams.ingest.windows import NANO, Partial
from streams.reports.core import ReportSpec
from streams.reports.reporting import Reporting
from streams.worker.judging import JudgeWorker
from streams.worker.tables import persist
from tests.streams.worker.fakes import MemoryTable, Topic, memory_tables
from tests.streams.worker.test_judging import T0, Clock, N, Q, W, config, sent
from tests.streams.worker.test_organizing import Apart

SPEC = ReportSpec(name="daily:#finops", channel="#finops", period="day")
DAY_END = T0 + 86400  # the report of T0's day is due at its end
KEY = "report:daily:#finops:2026-01-05"
ADS_NUSD = int(0.5 * NANO)  # team ads, per window and source


def messages(sources: int = 2) -> list[dict[str, Any]]:
    """The last 4 windows of T0's day and 3 of the next: ads and web spend every window; the
    org placement's messages (all to the org's partition)."""
    out = []
    for i in range(-4, 3):
        w = DAY_END + i * W
        for src in range(sources):
            parts = [Partial("team=ads", {"team": "ads"}, w, [ADS_NUSD, 10, 1, 0, 0, 1], {"user:b": ADS_NUSD}, True),
                     Partial("team=web", {"team": "web"}, w, [NANO, 10, 1, 0, 0, 1], {"user:a": NANO}, True),
                     Partial("org", {}, w, [NANO + ADS_NUSD, 20, 2, 0, 0, 2], {}, True)]
            out.append({"src": src, "seq": i + 10, "n_src": sources, "wm": True, "closed_until": w + W,
                        "partials": [p.to_wire() for p in parts]})
    return out


def reporting(judging: JudgeWorker, outbox: Topic, parts: Topic, table: MemoryTable) -> Reporting:
    r = judging.reporting = Reporting(
        judging.cfg, judging.metrics, judging.judges, judging.ledgers, table=table, persist=persist,
        send_note=lambda k, v, p: outbox.send(k, v, p), send_part=lambda k, v, p: parts.send(k, v, p),
        clock=judging.clock)
    return r


async def flow(r: Reporting, parts: Topic, done: int) -> int:
    """The reports agent: merge what was sent since ``done``."""
    for _, v, p in parts.sent[done:]:
        assert p is not None
        await r.merge_part(p, orjson.loads(v))
    return len(parts.sent)


def report_of(outbox: Topic) -> dict[str, Any]:
    """The report of T0's day (the day before it went out too, empty), sent once."""
    [note] = [n for n in sent(outbox) if n["kind"] == "report" and n["key"] == KEY]
    report: dict[str, Any] = note["report"]
    return report


async def by_org() -> dict[str, Any]:
    outbox, parts, table = Topic(), Topic(), MemoryTable()
    j = JudgeWorker(config(reports=(SPEC,)), Metrics(), memory_tables(), send_outbox=lambda k, v, p: outbox.send(k, v, p),
                    send_decision=lambda k, v: Topic().send(k, v), owned=lambda: set(range(N)), clock=Clock(T0 + 2 * 86400))
    r, done = reporting(j, outbox, parts, table), 0
    for i, msg in enumerate(messages()):
        await j.receive(Q, msg, i)
        await j.receive(1 - Q, {**msg, "partials": []}, i)  # the watermark, which every partition gets
        done = await flow(r, parts, done)
    return report_of(outbox)


async def test_judged_apart_the_report_has_every_part_once_and_the_org_stage_budgets() -> None:
    want = await by_org()
    assert want["complete"] and want["budgets"][0]["spent_base"] == 4 * 2 * ADS_NUSD, want["budgets"]
    w = Apart()
    w.judging.cfg = w.judging.live = config(placement="series", reports=(SPEC,))
    parts, table = Topic(), MemoryTable()
    r, done = reporting(w.judging, w.outbox, parts, table), 0
    for i, msg in enumerate(messages()):
        await w.feed(msg, i)
        done = await flow(r, parts, done)
    got = report_of(w.outbox)
    assert (got["complete"], got["missing"]) == (True, [])
    # each partition's part once: n parts, no late one
    bodies = [orjson.loads(v) for _, v, _ in parts.sent]
    assert sorted(b["q"] for b in bodies if b["key"] == KEY and not b.get("close")) == list(range(N))
    assert "reports_late_parts_total" not in w.judging.metrics.counters
    assert got["total"] == want["total"] and got["by_team"] == want["by_team"]
    assert got["budgets"] == want["budgets"]  # the ledger's spend of the whole day
