"""The owner's merge of report parts (streams.reports.reporting) with a partition that never
answers: the report goes out after the deadline with what came, marked partial, once; a late
part sends nothing; a restart sends nothing twice. In process: a dict for the ``reports``
table, a FIFO list for the reports topic (one partition: parts and closes in send order)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest

from alerts.receivers.slack.render import report_blocks
from alerts.report import report_text
from streams.common.config import StreamConfig
from streams.common.metrics import Metrics
from streams.ingest.windows import NANO
from streams.reports.core import ReportSpec
from streams.reports.reporting import Reporting, report_owner

N = 4
DL = 600.0
SPEC = ReportSpec(name="daily:#finops", channel="#finops", period="day")
DUE = 2 * 86400.0  # 1970-01-02 is due at midnight after it (UTC, at 00:00)
OWNER = report_owner(SPEC, N)


@dataclass
class Judge:
    spend: dict[str, Any] = field(default_factory=dict)


class Table:
    def __init__(self) -> None:
        self.data: dict[str, Any] = {}


class World:
    """The reports topic, the outbox and the table of a worker holding every partition."""

    def __init__(self, table: Table | None = None) -> None:
        self.table = table or Table()
        self.topic: list[tuple[int, bytes]] = []
        self.notes: list[dict[str, Any]] = []
        self.now = 1_000_000.0  # the wall clock
        self.metrics = Metrics()
        judges = {q: Judge({f"team=t{q}|86400": {"s": [(q + 1) * NANO]}, f"org|{86400 + q * 60}": {"s": [(q + 1) * NANO]}})
                  for q in range(N)}
        cfg = StreamConfig(bootstrap="x", usage_partitions=N, reports=(SPEC,), report_deadline=DL)
        self.r = Reporting(cfg, self.metrics, judges, {}, table=self.table, send_part=self.send_part,
                           send_note=self.send_note, persist=self.persist, clock=lambda: self.now)

    async def send_part(self, key: bytes, value: bytes, p: int) -> None:
        self.topic.append((p, value))

    async def send_note(self, key: bytes, value: bytes, p: int) -> None:
        self.notes.append(orjson.loads(value))

    def persist(self, table: Table, p: int, key: str, value: Any) -> None:
        if value is None:
            table.data.pop(key, None)
        else:
            table.data[key] = value

    async def flow(self) -> None:
        """The reports agent reads what was sent, in order."""
        while self.topic:
            p, value = self.topic.pop(0)
            await self.r.merge_part(p, orjson.loads(value))

    async def judge(self, qs: list[int], wm: float) -> None:
        for q in qs:
            await self.r.after_judge(q, wm)
        await self.flow()


def run(coro: Any) -> Any:
    return asyncio.run(coro)


@dataclass
class Silent:
    """A partition ``q`` that never answers (never the report's owner) and the ``others``."""

    q: int
    others: list[int]

    async def world(self, table: Table | None = None) -> World:
        """A worker (on ``table``) where the others have judged past the due day: their parts
        went out and the report waits for ``q``."""
        w = World(table)
        await w.judge(self.others, DUE + 5)
        return w


@pytest.fixture(params=range(1, N), ids=lambda k: f"owner+{k}")
def silent(request: pytest.FixtureRequest) -> Silent:
    """Each partition but the owner's in turn as the one that never answers."""
    q = (OWNER + request.param) % N
    return Silent(q, [p for p in range(N) if p != q])


def test_every_part_in_time_gives_one_complete_report() -> None:
    async def go() -> World:
        w = World()
        await w.judge(list(range(N)), DUE + 5)
        await w.judge(list(range(N)), DUE + 2 * DL)
        w.now += 2 * DL
        await w.judge(list(range(N)), DUE + 3 * DL)
        return w

    w = run(go())
    assert len(w.notes) == 1
    rep = w.notes[0]["report"]
    assert rep["complete"] is True and rep["missing"] == []
    assert rep["total"]["nusd"] == 10 * NANO
    assert w.table.data[f"{OWNER}|done|report:{SPEC.name}:1970-01-02"]["complete"] is True


def test_a_partition_that_never_answers_does_not_hold_the_report_forever(silent: Silent) -> None:
    async def go() -> World:
        w = await silent.world()
        assert w.notes == []  # still waiting for the silent partition
        await w.judge(silent.others, DUE + DL + 1)  # event time past the deadline, the wall clock not yet
        assert w.notes == []
        w.now += DL
        await w.judge(silent.others, DUE + DL + 2)
        assert len(w.notes) == 1
        await w.judge(silent.others, DUE + DL + 3)  # nothing more to close
        return w

    w = run(go())
    assert len(w.notes) == 1
    note = w.notes[0]
    rep = note["report"]
    assert rep["complete"] is False
    assert rep["missing"][0]["partitions"] == [silent.q]
    assert rep["total"]["nusd"] == sum(q + 1 for q in silent.others) * NANO  # what came, exactly
    done = w.table.data[f"{OWNER}|done|report:{SPEC.name}:1970-01-02"]
    assert done["complete"] is False and done["missing"] == [silent.q]
    assert f"{OWNER}|parts|report:{SPEC.name}:1970-01-02" not in w.table.data
    assert w.metrics.counters["reports_partial_total"]
    # the Slack message says it, in its context and its fallback text; so does the terminal's
    text, blocks = report_blocks(rep)
    context = blocks[-1]["elements"][0]["text"]
    assert f"partial: partition {silent.q} did not report" in context and "partial" in text
    assert f"partition {silent.q} did not report" in report_text(rep)


def test_a_part_after_the_deadline_does_not_send_the_report_again(silent: Silent) -> None:
    async def go() -> World:
        w = await silent.world()
        w.now += DL
        await w.judge(silent.others, DUE + DL + 5)
        assert len(w.notes) == 1
        await w.judge([silent.q], DUE + 10)  # it wakes up
        await w.judge([silent.q], DUE + 20)
        return w

    w = run(go())
    assert len(w.notes) == 1
    done = w.table.data[f"{OWNER}|done|report:{SPEC.name}:1970-01-02"]
    assert done["late"] == [silent.q]
    assert sum(w.metrics.counters["reports_late_parts_total"].values()) == 1


def test_a_catching_up_owner_waits_on_the_wall_clock_for_the_others() -> None:
    """Event time racing through a backlog is not a deadline: the others are behind, not lost."""
    async def go() -> World:
        w = World()
        await w.judge([OWNER], DUE + 5 * DL)  # the owner alone, far past the deadline in event time
        assert w.notes == []
        w.now += DL / 2
        await w.judge([q for q in range(N) if q != OWNER], DUE + 5)
        return w

    w = run(go())
    assert len(w.notes) == 1 and w.notes[0]["report"]["complete"] is True


def test_a_restart_after_a_partial_report_sends_nothing_twice(silent: Silent) -> None:
    async def go() -> tuple[World, World]:
        w = await silent.world()
        w.now += DL
        await w.judge(silent.others, DUE + DL + 5)
        # a new worker on the same table: its scheduler and waits come from the table
        w2 = World(w.table)
        w2.now = w.now + 10 * DL
        await w2.judge(silent.others, DUE + DL + 10)
        w2.now += 2 * DL
        await w2.judge(silent.others, DUE + 3 * DL)
        return w, w2

    w, w2 = run(go())
    assert len(w.notes) == 1 and w2.notes == []


def test_a_restart_while_waiting_still_closes(silent: Silent) -> None:
    """The owner's part went out before the restart: the new worker waits a deadline from its start."""

    async def go() -> World:
        w = await silent.world()
        w2 = World(w.table)
        await w2.judge(silent.others, DUE + DL + 5)
        assert w2.notes == []
        w2.now += DL
        await w2.judge(silent.others, DUE + DL + 6)
        return w2

    w2 = run(go())
    assert len(w2.notes) == 1 and w2.notes[0]["report"]["missing"][0]["partitions"] == [silent.q]


def test_partial_line_names_every_missing_partition() -> None:
    from alerts.report import report_partial

    assert report_partial({"complete": True, "missing": []}) is None
    assert report_partial({}) is None  # a report from before reports said
    assert report_partial({"complete": False, "missing": [{"partitions": [5, 3]}]}) == \
        "partial: partitions 3, 5 did not report"
