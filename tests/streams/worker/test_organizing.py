"""``TOKENPULSE_PLACEMENT=series`` in the worker's parts without Faust: judges on the partitions
the series' names hash to send verdicts, the org stage (:class:`OrgWorker`) applies them, and
what goes out (spikes, budget thresholds, decisions) is what today's placement sends; a verdicts
message read twice is applied once; the org stage acknowledges only once the broker has its
checkpoint (tests/integration/test_placement.py runs it in a real worker)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from pydantic import ValidationError

from streams.common.config import StreamConfig
from streams.common.metrics import Metrics
from streams.common.partitioning import series_partition
from streams.ingest.windows import NANO, Partial
from streams.worker.judging import JudgeWorker
from streams.worker.organizing import OrgWorker
from streams.worker.state import WorkerState
from tests.alerts.policies import NO_HOLD
from tests.streams.worker.fakes import MemoryTable, Topic, memory_tables
from tests.streams.worker.test_judging import T0, Clock, N, Q, SlowTable, W, config, sent
from tokenpulse.policy import Policy
from tokenpulse.runtime import stream_config
from tokenpulse.settings import Settings

# the default org's series: team=web is judged on partition 1, the org and team=ads on 0 (the org's)
assert [series_partition(s, N) for s in ("org", "team=ads", "team=web")] == [Q, Q, 1]


def messages(n_windows: int = 30, spike: range = range(20, 23), sources: int = 2) -> list[dict[str, Any]]:
    """Windows messages as the org placement's hot path sends them (all to the org's partition):
    team web spikes, team ads spends 0.6 $ a window (its budget: 30 $ a day)."""
    out = []
    for i in range(n_windows):
        w = T0 + i * W
        web = int((40.0 if i in spike else 1.0 + 0.1 * (i % 3)) / sources * NANO)
        ads = int(20.0 / sources * NANO)
        for src in range(sources):
            parts = [Partial("team=web", {"team": "web"}, w, [web, 10, 1, 0, 0, 1], {"user:a": web}, True),
                     Partial("team=ads", {"team": "ads"}, w, [ads, 10, 1, 0, 0, 1], {"user:b": ads}, True),
                     Partial("org", {}, w, [web + ads, 20, 2, 0, 0, 2], {"team:web": web, "team:ads": ads}, True)]
            out.append({"src": src, "seq": i + 1, "n_src": sources, "wm": True, "closed_until": w + W,
                        "partials": [p.to_wire() for p in parts]})
    return out


def by_series(msg: dict[str, Any]) -> dict[int, dict[str, Any]]:
    """The message the series placement's hot path sends each judge partition instead."""
    out = {q: {**msg, "partials": []} for q in range(N)}
    for row in msg["partials"]:
        out[series_partition(Partial.from_wire(row).series, N)]["partials"].append(row)
    return out


class Apart:
    """A worker with the series placement: its judges, its org stage, their topics."""

    def __init__(self, budgets_table: Any = None, org_table: Any = None, tables: Any = None, **cfg: Any) -> None:
        self.clock = Clock(T0 + 86400)
        self.outbox, self.decisions, self.verdicts = Topic(), Topic(), Topic()
        tables = tables if tables is not None else memory_tables()
        if budgets_table is not None:
            tables = tables.__class__(**{**tables.__dict__, "budgets": budgets_table})
        self.judging = JudgeWorker(config(placement="series", **cfg), Metrics(), tables,
                                   send_outbox=lambda k, v, p: self.outbox.send(k, v, p),
                                   send_decision=lambda k, v: self.decisions.send(k, v),
                                   send_verdicts=lambda k, v, p: self.verdicts.send(k, v, p),
                                   owned=lambda: set(range(N)), clock=self.clock)
        self.org_table = org_table if org_table is not None else MemoryTable()
        self.org = OrgWorker(config(placement="series", **cfg), self.judging.metrics, self.org_table, self.judging,
                             clock=self.clock)
        self.acked: list[Any] = []

        async def ack(message: Any) -> None:
            self.acked.append(message)

        self.org.ack = ack
        self.judging.ack = ack
        self.fed = 0

    async def feed(self, msg: dict[str, Any], i: int, twice: bool = False) -> None:
        for q, part in by_series(msg).items():
            await self.judging.receive(q, part, ("windows", q, i))
        for _, v, p in self.verdicts.sent[self.fed:]:
            assert p is not None
            for _ in range(2 if twice else 1):
                await self.org.receive(p, orjson.loads(v), ("verdicts", p, self.fed))
            self.fed += 1


def what_went_out(outbox: Topic, decisions: Topic) -> tuple[list[Any], list[Any], list[Any]]:
    notes = sent(outbox)
    spikes = [(n["key"], n["action"], [m["series"] for m in n["members"]]) for n in notes if n["kind"] == "spike"]
    budget = [n["threshold"] for n in notes if n["kind"] == "budget" and n["rule"] == "budget_threshold"]
    return spikes, budget, [(d["budget"], d["decision"]) for d in sent(decisions)]


async def today() -> tuple[list[Any], list[Any], list[Any]]:
    outbox, decisions = Topic(), Topic()
    j = JudgeWorker(config(), Metrics(), memory_tables(), send_outbox=lambda k, v, p: outbox.send(k, v, p),
                    send_decision=lambda k, v: decisions.send(k, v), owned=lambda: set(range(N)),
                    clock=Clock(T0 + 86400))
    for i, msg in enumerate(messages()):
        await j.receive(Q, msg, i)
    return what_went_out(outbox, decisions)


async def test_judged_apart_the_org_stage_sends_what_today_sends() -> None:
    want = await today()
    assert want[0] and want[1] == [50.0, 80.0, 100.0] and want[2] == [("ads-daily", "block")]
    for twice in (False, True):  # a verdicts message read again (a judge's replay) changes nothing
        w = Apart()
        for i, msg in enumerate(messages()):
            await w.feed(msg, i, twice)
        assert what_went_out(w.outbox, w.decisions) == want, twice
        # the judges judged a series each partition, and sent each org partition every message's verdicts
        assert {q: sorted(j.series) for q, j in w.judging.judges.items()} == {0: ["org", "team=ads"], 1: ["team=web"]}
        # the budget is in the org stage's ledger on the org's partition
        assert {p: sorted(led.budgets) for p, led in w.judging.ledgers.items()} == {Q: ["ads-daily"], 1 - Q: []}
        assert all(p is not None and p == Q for _, _, p in w.outbox.sent)
        dup = w.judging.metrics.counters["org_verdicts_total"]
        assert sum(v for k, v in dup.items() if 'duplicate="true"' in k) == (len(w.verdicts.sent) if twice else 0)


async def test_the_org_stage_acknowledges_once_the_broker_has_its_checkpoint() -> None:
    budgets, org_table = SlowTable(), SlowTable()
    w = Apart(budgets, org_table)
    msgs = messages(3)
    await w.feed(msgs[0], 0)
    await asyncio.sleep(0.01)
    mine = [m for m in w.acked if m[0] == "verdicts"]
    assert org_table.writes and mine == []  # the org stage's checkpoint is written, not on the broker yet
    for f in org_table.writes + budgets.writes:
        f.set_result(None)
    await asyncio.sleep(0.01)
    # each org partition's first message (it was due a checkpoint); the others wait for the next
    assert sorted(m[1] for m in w.acked if m[0] == "verdicts") == list(range(N))

    # writes the broker refused: nothing of those checkpoints acknowledged
    before = [m for m in w.acked if m[0] == "verdicts"]
    w.clock.t += 1.0
    await w.feed(msgs[1], 1)
    pending = [f for f in org_table.writes + budgets.writes if not f.done()]
    assert pending
    for f in pending:
        f.set_exception(ConnectionError("the broker went away"))
    await asyncio.sleep(0.01)
    assert [m for m in w.acked if m[0] == "verdicts"] == before


def test_the_placement_setting() -> None:
    assert stream_config(Settings(), Policy(), "127.0.0.1:1", 2).placement == "series"  # the default
    assert StreamConfig(bootstrap="127.0.0.1:1").placement == "series"  # the stream layer's own default agrees
    assert stream_config(Settings(placement="org"), Policy(), "127.0.0.1:1", 2).placement == "org"
    with pytest.raises(ValidationError, match="placement"):
        Settings(placement="team")


async def test_a_policy_reload_reaches_the_org_stage_and_the_judges_tracking() -> None:
    w = Apart()
    for i, msg in enumerate(messages(3)):
        await w.feed(msg, i)
    assert w.org.orgs and all(j.local_tracking == 2 for j in w.judging.judges.values())
    new = config(placement="series", alert_policy={"resolve_after_windows": 5, "page_min_excess_usd": 123})
    state = WorkerState(new, w.judging.metrics, None, None, w.judging, SimpleNamespace(deliverer=None), None,  # type: ignore[arg-type]
                        w.judging.tables, organizing=w.org)
    state.apply_policy(new, ["alerts"])
    assert all(o.engine.policy.page_min_excess_usd == 123 for o in w.org.orgs.values())
    assert all(j.local_tracking == 5 for j in w.judging.judges.values())


async def test_an_assignment_drops_the_local_copies_of_org_partitions_gone_elsewhere() -> None:
    w = Apart()
    for i, msg in enumerate(messages(3)):
        await w.feed(msg, i)
    await w.org.checkpoint(Q, w.clock.t + 10)
    await w.org.checkpoint(1 - Q, w.clock.t + 10)
    assert {k.partition("|")[0] for k in w.org_table.data} == {str(Q), str(1 - Q)}
    w.org.assigned([Q])
    assert {k.partition("|")[0] for k in w.org_table.data} == {str(Q)}


# -- a switch from TOKENPULSE_PLACEMENT=org to series with an alert open ----------------------------

SWITCH = {"alert_policy": {"resolve_after_windows": 2, "inhibit_by_org": False, **NO_HOLD}}
KEYS = ("cost_spike:org", "cost_spike:team=web")


async def switched(spike: range, n_windows: int = 40, switch_at: int = 30) -> tuple[Apart, list[Any], list[Any]]:
    """Team web spiking from window 20 (open at the pager when the deployment switches at
    ``switch_at``), judged beside its org stage on the org's partition, then apart (the same
    tables: the judge table holds the alert state); the spike notifications before and after.
    The org's alert does not inhibit its teams here, so that web's own alert is the one open:
    web is judged on partition 1 after the switch, by a new detector."""
    msgs = messages(n_windows, spike)
    clock = Clock(T0 + 86400)
    outbox = Topic()
    tables = memory_tables()
    j = JudgeWorker(config(**SWITCH), Metrics(), tables, send_outbox=lambda k, v, p: outbox.send(k, v, p),
                    send_decision=lambda k, v: Topic().send(k, v), owned=lambda: set(range(N)), clock=clock)
    for i, msg in enumerate(msgs[:switch_at * 2]):
        await j.receive(Q, msg, i)
    await j.checkpoint(Q, clock())
    before = [n for n in sent(outbox) if n["kind"] == "spike"]
    w = Apart(tables=tables, **SWITCH)
    for i, msg in enumerate(msgs[switch_at * 2:], start=switch_at * 2):
        await w.feed(msg, i)
    after = [n for n in sent(w.outbox) if n["kind"] == "spike"]
    return w, before, after


def incidents(notes: list[dict[str, Any]], action: str) -> dict[str, list[float]]:
    """Per alert key, the ``started_at`` of each ``action`` notification."""
    out: dict[str, list[float]] = {}
    for n in notes:
        if n["action"] == action:
            out.setdefault(n["key"], []).append(n["started_at"])
    return out


async def test_a_switch_to_series_resolves_the_open_alerts_once_with_their_keys() -> None:
    w, before, after = await switched(spike=range(20, 30))
    opened = incidents(before, "trigger")
    assert sorted(opened) == list(KEYS) and not incidents(before, "resolve"), before
    # the org stage adopted both alerts from the judge table: each resolves once, as the same
    # incident (PagerDuty's dedup key is the alert key), with no second trigger; web's series is
    # judged on partition 1 now, by a detector that never flagged it
    assert not incidents(after, "trigger") and incidents(after, "resolve") == opened, after
    assert all(n["ended_at"] == T0 + 30 * W for n in after)  # back to normal at the first window apart
    # moved: the judge table holds no alert state any more, and the judge of the org's partition
    # let team web go (it stayed there while it tracked web's alert, which it never steps apart)
    await w.org.checkpoint(Q, w.clock())
    assert not [k for k in w.judging.tables.judge.data if "|alert|" in k or "|group|" in k]
    assert "team=web" not in w.judging.judges[Q].series and "team=web" in w.judging.judges[1].series
    assert not w.org.orgs[Q].adopted


async def test_a_switch_mid_spike_does_not_page_again() -> None:
    # web and the org still spike for five windows after the switch, then are normal
    _, before, after = await switched(spike=range(20, 35), n_windows=45)
    opened = incidents(before, "trigger")
    assert sorted(opened) == list(KEYS), before
    assert not incidents(after, "trigger") and incidents(after, "resolve") == opened, after


async def test_the_adopted_state_is_the_org_stages_after_a_restart() -> None:
    # the move survives a restart: the org table has the org's alert (still spiking, on the same
    # partition under both placements), the judge table not; web's resolved (see above)
    msgs = messages(32, range(20, 32))
    clock = Clock(T0 + 86400)
    tables = memory_tables()
    j = JudgeWorker(config(**SWITCH), Metrics(), tables, send_outbox=lambda k, v, p: Topic().send(k, v, p),
                    send_decision=lambda k, v: Topic().send(k, v), owned=lambda: set(range(N)), clock=clock)
    for i, msg in enumerate(msgs[:60]):
        await j.receive(Q, msg, i)
    await j.checkpoint(Q, clock())
    assert {f"{Q}|alert|{k}" for k in KEYS} <= set(tables.judge.data)
    w = Apart(tables=tables, **SWITCH)
    for i, msg in enumerate(msgs[60:], start=60):
        await w.feed(msg, i)
    await w.org.checkpoint(Q, w.clock())
    assert not [k for k in tables.judge.data if "|alert|" in k or "|group|" in k]
    assert w.org_table.data[f"{Q}|alert|cost_spike:org"]["status"] == "firing"
    assert f"{Q}|alert|cost_spike:team=web" not in w.org_table.data
    again = Apart(tables=tables, org_table=w.org_table, **SWITCH)
    o = again.org.org_for(Q)
    assert o.tracks("cost_spike:org") and o.adopted == {"cost_spike:org"}
    assert not again.org.moving  # its own state: nothing adopted twice
