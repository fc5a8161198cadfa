"""The third-party share (policy ``mix.max_third_party_share``) with
``TOKENPULSE_PLACEMENT=series``, without Faust: a team's team×model series are judged on both
partitions, the org stage counts every judge partition's spend rows and tells the team once, as
the org placement does; the count survives a restart from the budgets table."""

from __future__ import annotations

from typing import Any

from streams.budgets.mix import MixAlertSpec
from streams.common.metrics import Metrics
from streams.common.partitioning import series_partition
from streams.ingest.windows import NANO, Partial
from streams.worker.judging import JudgeWorker
from tests.streams.worker.fakes import Topic, memory_tables
from tests.streams.worker.test_judging import T0, Clock, N, Q, W, config, sent
from tests.streams.worker.test_organizing import Apart

MIX = MixAlertSpec(internal_models=("acme-*",), line=0.5, period="week", tz="UTC", min_spend_nusd=10 * NANO)
# web's third-party model on partition 0, its internal one on 1: neither partition sees the share
THIRD, OWN = "team=web|model=gpt-4o", "team=web|model=acme-llama"
assert (series_partition(THIRD, N), series_partition(OWN, N)) == (0, 1)


def messages(n: int = 12, sources: int = 2) -> list[dict[str, Any]]:
    """web spends 2 $ a window on gpt-4o and 1 $ on acme-llama (a 67 % third-party share)."""
    out = []
    for i in range(n):
        w = T0 + i * W
        for src in range(sources):
            parts = [Partial(THIRD, {"team": "web", "model": "gpt-4o"}, w, [NANO, 10, 1, 0, 0, 1], {}, False),
                     Partial(OWN, {"team": "web", "model": "acme-llama"}, w, [NANO // 2, 10, 1, 0, 0, 1], {}, False)]
            out.append({"src": src, "seq": i + 1, "n_src": sources, "wm": True, "closed_until": w + W,
                        "partials": [p.to_wire() for p in parts]})
    return out


def mix_notes(outbox: Topic) -> list[tuple[str, float, int | None]]:
    return [(n["key"], n["share_pct"], p) for n, (_, _, p) in zip(sent(outbox), outbox.sent, strict=True)
            if n["kind"] == "mix"]


async def by_org() -> list[tuple[str, float, int | None]]:
    outbox = Topic()
    j = JudgeWorker(config(mix_alert=MIX), Metrics(), memory_tables(), send_outbox=lambda k, v, p: outbox.send(k, v, p),
                    send_decision=lambda k, v: Topic().send(k, v), owned=lambda: set(range(N)),
                    clock=Clock(T0 + 3600))
    for i, msg in enumerate(messages()):
        await j.receive(Q, msg, i)
    return mix_notes(outbox)


def apart() -> Apart:
    w = Apart()
    cfg = config(placement="series", mix_alert=MIX)
    w.judging.cfg = w.judging.live = w.org.cfg = cfg
    w.judging.mix_on = True
    w.clock.t = T0 + 3600  # the period is not past: the crossing is notified
    return w


async def test_judged_apart_the_org_stage_tells_the_team_once_as_by_org() -> None:
    want = await by_org()
    assert [(k, p) for k, _, p in want] == [("mix:web:2026-W02", Q)], want
    w = apart()
    for i, msg in enumerate(messages()):
        await w.feed(msg, i)
    assert mix_notes(w.outbox) == want
    assert set(w.judging.mixes) == {Q}  # the org stage's watch, on the default org's partition
    # its counts and the fired mark are in the budgets table: a restart tells nobody again
    await w.org.checkpoint(Q, w.clock.t)
    assert any(k.startswith(f"{Q}|mixfired|web|") for k in w.judging.tables.budgets.data)
    again = Apart()
    again.judging.tables.budgets.data.update(w.judging.tables.budgets.data)
    again.judging.cfg = again.judging.live = again.org.cfg = w.judging.cfg
    again.judging.mix_on = True
    again.clock.t = w.clock.t
    for i, msg in enumerate(messages(14)):
        await again.feed(msg, i)
    assert mix_notes(again.outbox) == []
