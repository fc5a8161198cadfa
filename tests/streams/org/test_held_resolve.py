"""Flap damping's held resolve goes out when the traffic stops (``alerts.group_keep_firing_s``).

The engine's clock is event time: a team's group holding its resolve sends it at the first
window end past the hold (``AlertEngine._group_step``, run for every window even one without
signals). When no event comes any more, windows still close: an ingest partition that has been
quiet for ``idle_grace`` seconds moves its clock with the wall clock (``IngestPartition.clock``),
and the ingest loop's checkpoint timer (``IngestLoop.checkpoint``, every ``checkpoint_seconds``)
closes the windows it passes and sends them on; the judge judges them (empty) and lists each to
the org stage, beside it or apart (``WindowVerdict``: a window without signals still drives the
group timers). So the resolve goes out about ``group_keep_firing_s`` of wall-clock time after
the team was back to normal, with no new event -- driven here as the worker drives it."""

from __future__ import annotations

from alerts import AlertEngine, AlertPolicy
from streams.ingest.records import UsageEvent
from streams.ingest.windows import IngestPartition
from streams.judge.step import judge_step
from streams.org.core import OrgCore
from tests.streams.org.test_org_core import POLICY, W, judge

KEY = "cost_spike:team=ads"
START = 1_000_000 * W  # on a window's edge
STOP = 40  # the last window with traffic: the spike is windows 30-32


def event(i: int, ts: float, usd: float) -> UsageEvent:
    return UsageEvent(event_id=str(i), ts=ts, org="default", team="ads", user="u1", provider="openai",
                      model="gpt-4o", input_tokens=100, output_tokens=10, cache_read_tokens=0, cost_usd=usd)


def test_a_held_resolve_goes_out_on_the_idle_clock_with_no_new_event() -> None:
    assert AlertPolicy(**POLICY).group_keep_firing_s == 1800  # the default hold
    core = IngestPartition(partition=0, window_seconds=W, lateness=5, idle_grace=10)
    beside = judge()  # the org stage beside the judge (TOKENPULSE_PLACEMENT=org)
    apart = OrgCore(partition=0, window_seconds=W, engine=AlertEngine(AlertPolicy(**POLICY)))  # =series
    got: dict[str, list[tuple[str, float, float]]] = {"beside": [], "apart": []}
    seq, n = 0, 0

    def tick(wall: float) -> None:
        """The ingest loop's checkpoint at wall-clock ``wall``: what closed goes to the judge."""
        nonlocal seq
        before = core.closed_until
        partials = core.advance(wall)
        if not partials and core.closed_until == before:
            return
        seq += 1
        step = judge_step(beside, None, None, 0, 1, core.closed_until, partials, seq)
        got["beside"] += [(x.action, x.fired_at, wall) for x in step.judged.notifications if x.key == KEY]
        out = apart.receive(step.verdicts(0, seq))
        got["apart"] += [(x.action, x.fired_at, wall) for x in out.notifications if x.key == KEY]

    for i in range(STOP + 1):  # live traffic: the wall clock is the events' time
        usd = 10.0 if 30 <= i <= 32 else 0.2
        for k in range(5):
            n += 1
            ts = START + i * W + 10 * k + 5
            core.add(event(n, ts, usd), wall_now=ts)
            tick(ts)
    last_event = core.max_ts
    assert last_event is not None
    assert [a for a, _, _ in got["beside"]] == ["trigger"]  # fired on the spike; resolved, held
    held = beside.org.engine.group_state_for("team=ads")
    assert held is not None and held["quiet_since"] is not None
    due = held["quiet_since"] + 1800
    wall = last_event
    while wall < last_event + 2400:  # then no event at all: the timer alone, once a second
        wall += 1.0
        tick(wall)
    assert core.max_ts == last_event  # nothing came
    for where in ("beside", "apart"):
        (a0, _, _), (a1, fired, sent_at) = got[where]
        assert (a0, a1) == ("trigger", "resolve"), where
        # at the first window end past the hold, sent once the idle clock has closed that window:
        # the wall clock (here the event clock's twin until the traffic stopped) past its end by
        # the idle grace (10 s) and the lateness (5 s), to the timer's second
        assert due <= fired < due + W, where
        assert fired + 10 + 5 <= sent_at <= fired + 10 + 5 + 1, where
    assert beside.org.engine.group_state_for("team=ads") is None
