from __future__ import annotations

import pytest

from tokenpulse.simulate import Simulator, Spike, diurnal


def test_spike_parse():
    s = Spike.parse("team=ads,factor=8,minutes=15,delay=60,model=gpt-4o")
    assert (s.team, s.factor, s.minutes, s.delay, s.model) == ("ads", 8.0, 15.0, 60.0, "gpt-4o")


@pytest.mark.parametrize("text", ["factor=8", "team=ads,factor=lots", "team=ads,colour=red", "team=ads,oops"])
def test_spike_parse_errors(text: str):
    with pytest.raises(ValueError, match="spike"):
        Spike.parse(text)


def test_daily_shape_quiet_nights_and_weekends():
    monday_2pm, monday_3am, saturday_2pm = 1767571200 + 14 * 3600, 1767571200 + 3 * 3600, 1767571200 + 5 * 86400 + 14 * 3600
    assert diurnal(monday_2pm) > 3 * diurnal(monday_3am)
    assert diurnal(monday_2pm) > 2 * diurnal(saturday_2pm)
    # no step at midnight between a weekend and a weekday (the demo alerted on it)
    monday_0am = monday_2pm - 14 * 3600
    assert abs(diurnal(monday_0am - 1) - diurnal(monday_0am)) < 0.05 * diurnal(monday_0am)  # was 2.9x


def test_generator_is_deterministic_and_spikes_multiply_a_team():
    start = 1767571200 + 14 * 3600
    a = list(Simulator(rate=50, seed=1).between(start, start + 60))
    b = list(Simulator(rate=50, seed=1).between(start, start + 60))
    assert a == b and len({e["event_id"] for e in a}) == len(a)
    spiked = list(Simulator(rate=50, seed=1, spikes=[Spike("ads", factor=10, minutes=1, start=start)]).between(start, start + 60))
    def ads(evs: list[dict[str, object]]) -> int:
        return sum(1 for e in evs if e["team"] == "ads")

    assert ads(spiked) > 5 * ads(a)


def test_unknown_spike_team_is_an_error():
    with pytest.raises(ValueError, match="not simulated"):
        Simulator(spikes=[Spike("nobody")])


class _Collect:
    """Stands in for KafkaSink's add/flush: what run() produced, in order."""

    def __init__(self) -> None:
        self.events: list[dict] = []
        self.sent_events = self.sent_messages = 0

    def add(self, ev: dict) -> None:
        self.events.append(ev)

    def flush(self) -> None:
        pass


def test_a_delayed_spike_happens_in_the_live_traffic_not_in_the_backfill():
    """tokenpulse dev backfills history and then, four minutes in, injects the spike: a spike
    in the backfill would be learnt during cold start and hide the real one."""
    import time

    from tokenpulse.simulate import run

    def ads_per_second(delay: float, duration: float | None) -> tuple[float, float]:
        sim = Simulator(rate=20.0, spikes=[Spike("ads", factor=20, minutes=1, delay=delay)], seed=3)
        sink = _Collect()
        now = time.time()
        run(sim, sink, backfill_days=600 / 86400, duration=duration)  # type: ignore[arg-type]
        early = [e for e in sink.events if e["team"] == "ads" and e["ts"] < now - 500]
        rest = [e for e in sink.events if e["team"] == "ads" and now - 500 <= e["ts"] < now - 60]
        return len(early) / 100, len(rest) / 440

    early, rest = ads_per_second(delay=0, duration=1)  # live: the spike is after the backfill
    assert early < 3 * rest
    early, rest = ads_per_second(delay=0, duration=0)  # backfill only: it is at its start
    assert early > 5 * rest
