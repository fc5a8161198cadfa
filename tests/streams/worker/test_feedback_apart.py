"""On-call's answers with ``TOKENPULSE_PLACEMENT=series``, without Faust: the answer arrives on
the org's partition, where the org stage holds the alert; acknowledge, snooze and the resolve of
a new normal act on the org stage's engine, and the detector part (``rebase()``, the raised floor
of "not an anomaly") goes to the series' own judge partition and is applied there once
(tests/integration/test_placement.py presses the buttons of a real worker)."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from aiokafka.errors import KafkaTimeoutError

from streams.common.metrics import Metrics
from streams.common.partitioning import judge_partition, series_partition
from streams.ingest.windows import Partial
from streams.worker.feedback import FeedbackWorker, answers_by_incident, feedback_rows
from tests.streams.worker.fakes import MemoryTable, Topic
from tests.streams.worker.test_judging import T0, Q, W, sent
from tests.streams.worker.test_organizing import Apart, by_series, messages

SERIES = "team=web"  # judged on partition 1; its org's stage is on Q
assert (series_partition(SERIES, 2), judge_partition(SERIES, 2)) == (1, Q)


async def firing() -> tuple[Apart, FeedbackWorker, Topic, str]:
    """team=web spiking from window 20 on, its alert firing on the org stage (the org series
    left out, whose alert would inhibit it); the feedback worker, the feedback topic it forwards
    to, and the alert's key."""
    w = Apart()
    for i, msg in enumerate(messages(24, spike=range(20, 60))):
        msg["partials"] = [r for r in msg["partials"] if Partial.from_wire(r).series != "org"]
        await w.feed(msg, i)
    [key] = {n["key"] for n in sent(w.outbox) if n["kind"] == "spike" and n["action"] == "trigger"}
    assert key == f"cost_spike:{SERIES}" and w.org.orgs[Q].engine.tracks(key)
    topic = Topic()
    fb = FeedbackWorker(Metrics(), MemoryTable(), w.judging, organizing=w.org,
                        forward=lambda q, k, v: topic.send(k, v, q), clock=w.clock)
    return w, fb, topic, key


def event(action: str, key: str, n: int = 1) -> dict[str, Any]:
    return {"id": f"slack:C1:1.0001:U1:{n}", "action": action, "key": key, "series": SERIES,
            "started_at": float(T0 + 20 * W), "window_end": float(T0 + 21 * W), "user_id": "U1", "user": "ana",
            "channel": "C1", "message_ts": "1.0001", "at": float(T0 + 22 * W), "source": "slack"}


async def test_new_normal_resolves_on_the_org_stage_and_rebases_on_the_series_judge() -> None:
    w, fb, topic, key = await firing()
    rebased: list[str] = []
    det = w.judging.judges[1].detectors[SERIES]
    real = det.rebase
    det.rebase = lambda: (rebased.append(SERIES), real())[1]  # type: ignore[method-assign]
    rec = await fb.apply(Q, event("tokenpulse_new_normal", key))
    assert rec is not None and rec["outcome"].endswith("resolved") and rec["team"] == "web", rec
    assert not w.org.orgs[Q].engine.tracks(key)
    resolve = sent(w.outbox)[-1]
    assert (resolve["key"], resolve["action"], w.outbox.sent[-1][2]) == (key, "resolve", Q)
    assert f"{Q}|alert|{key}" not in w.org_table.data  # the org stage's checkpoint has the resolve
    assert rebased == []  # not on the org's partition: the series is judged elsewhere
    # the detector part, on the series' judge partition, once
    [(k, v, q)] = topic.sent
    part = orjson.loads(v)
    assert (k, q, part["part"], part["series"]) == (SERIES.encode(), 1, "detector", SERIES)
    got = await fb.apply(1, part)
    assert got is not None and got["outcome"] == "rebased" and rebased == [SERIES]
    assert await fb.apply(1, part) is None and rebased == [SERIES]  # read again: applied once
    counters = fb.metrics.counters
    assert counters["feedback_detector_total"]['{action="tokenpulse_new_normal",outcome="rebased"}'] == 1
    # the answer is listed once, as on-call gave it
    assert [r["id"] for r in feedback_rows(fb.table.data.items())] == [event("x", key)["id"]]
    assert [len(a) for a in answers_by_incident(fb.table.data.values()).values()] == [1]
    # the answer again (a redelivery): nothing resolved or sent twice
    n_out = len(w.outbox.sent)
    assert await fb.apply(Q, event("tokenpulse_new_normal", key)) is None
    assert len(w.outbox.sent) == n_out and len(topic.sent) == 1


async def test_a_new_normal_is_not_undone_by_a_window_judged_before_the_rebase() -> None:
    """The answer comes while team=web's next hot window is judged on partition 1 (with the
    old baseline: the detector part is not there yet) and its verdicts are on the way to the
    org stage. On-call called that level normal: the alert stays resolved (it was raised again
    before the judge marked its rebases: tests/integration/test_placement.py's answers test
    failed so under load), and once the judge's mark is back the series' windows count again."""
    w, fb, topic, key = await firing()
    hot = [{**m, "partials": [r for r in m["partials"] if Partial.from_wire(r).series != "org"]}
           for m in messages(40, spike=range(20, 60))]
    for i, msg in enumerate(hot[48:50], 48):  # window 24, both sources
        for q, part in by_series(msg).items():
            await w.judging.receive(q, part, ("windows", q, i))
    rec = await fb.apply(Q, event("tokenpulse_new_normal", key))
    assert rec is not None and rec["outcome"].endswith("resolved"), rec
    for _, v, p in w.verdicts.sent[w.fed:]:  # the verdicts of window 24 arrive
        assert p is not None
        await w.org.receive(p, orjson.loads(v), ("verdicts", p, w.fed))
        w.fed += 1
    spikes = [n["action"] for n in sent(w.outbox) if n["kind"] == "spike" and n["key"] == key]
    assert spikes.count("trigger") == 1 and spikes[-1] == "resolve", spikes  # was: [..., "resolve", "trigger"]
    counters = w.judging.metrics.counters
    assert counters["org_signals_before_rebase_total"][""] >= 1
    assert w.org.orgs[Q].rebasing[SERIES].holds(T0 + 24 * W)
    # the detector part reaches the judge: its next verdicts carry the mark, the level is normal now
    [(_, v, q)] = topic.sent
    assert (await fb.apply(q, orjson.loads(v)) or {}).get("outcome") == "rebased"
    for i, msg in enumerate(hot[50:], 50):
        await w.feed(msg, i)
    assert counters["org_rebase_marks_total"]['{outcome="matched"}'] == 1
    assert SERIES not in w.org.orgs[Q].rebasing  # every window judged before the rebase is stepped
    spikes = [n["action"] for n in sent(w.outbox) if n["kind"] == "spike" and n["key"] == key]
    assert spikes.count("trigger") == 1 and spikes[-1] == "resolve", spikes


async def test_a_detector_part_not_sent_stops_the_wait_for_its_rebase_mark_at_once() -> None:
    """The feedback topic refused the new normal's detector part: no judge rebases, so no mark
    will come. The org stage stops waiting for it at once (it held the series' flagged windows
    back for an hour before, a real spike unpaged), and says so; the alert stays resolved."""
    w, fb, _, key = await firing()

    async def refused(q: int, k: bytes, v: bytes) -> asyncio.Future[None]:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        fut.set_exception(KafkaTimeoutError("the feedback topic is down"))
        return fut

    fb.forward = refused
    rec = await fb.apply(Q, event("tokenpulse_new_normal", key))
    assert rec is not None and rec["outcome"].endswith("resolved"), rec
    assert not w.org.orgs[Q].engine.tracks(key)  # the alert part stays applied
    assert SERIES not in w.org.orgs[Q].rebasing  # was: waiting an hour of event time
    assert w.org_table.data.get(f"{Q}|rebasing|{SERIES}") is None  # and the checkpoint says so
    assert fb.metrics.counters["feedback_total"]['{action="tokenpulse_new_normal",outcome="detector_not_sent"}'] == 1
    assert w.org.metrics.counters["org_rebase_marks_total"]['{outcome="not_sent"}'] == 1
    # the detector was not rebased, so the spike goes on: its next flagged windows page again
    for i, msg in enumerate(messages(40, spike=range(20, 60))[48:], 48):
        msg["partials"] = [r for r in msg["partials"] if Partial.from_wire(r).series != "org"]
        await w.feed(msg, i)
    spikes = [n["action"] for n in sent(w.outbox) if n["kind"] == "spike" and n["key"] == key]
    assert spikes[-2:] == ["resolve", "trigger"], spikes  # was: held back, unpaged for an hour
    assert "org_signals_before_rebase_total" not in w.judging.metrics.counters


async def test_acknowledge_and_snooze_act_on_the_org_stage() -> None:
    w, fb, topic, key = await firing()
    rec = await fb.apply(Q, event("tokenpulse_ack", key, 1))
    assert rec is not None and rec["outcome"].startswith("acknowledged"), rec
    assert w.org_table.data[f"{Q}|alert|{key}"]["acknowledged_by"] == "ana"
    rec = await fb.apply(Q, event("tokenpulse_snooze_4h", key, 2))
    assert rec is not None and rec["outcome"] == "silenced for 4 h", rec
    [s] = fb.silences()
    assert s in w.org.orgs[Q].engine.policy.silences
    assert topic.sent == []  # neither has a detector part


async def test_not_an_anomaly_raises_the_floor_on_the_series_judge() -> None:
    w, fb, topic, key = await firing()
    rec = await fb.apply(Q, event("tokenpulse_not_anomaly", key))
    assert rec is not None and rec["outcome"].startswith("recorded; the alert floor raise sent"), rec
    [(_, v, q)] = topic.sent
    got = await fb.apply(q, orjson.loads(v))
    assert got is not None and got["outcome"] == "raised", got
    assert SERIES in w.judging.judges[1].raises()
