"""A raised alert floor comes down (streams.judge.raising): without another "not an anomaly"
answer it halves every half-life of event time, from when it was last set; a new answer raises
it from where it has come down to; and the decayed floor is a function of the checkpointed
state, so it is the same to the bit after a restart."""

from __future__ import annotations

import orjson

from streams.judge.raising import SeriesRaise

DAY = 86400.0
HALF = 14 * DAY
T0 = 1_767_571_200.0


def raised(peak: float = 40.0, at: float = T0) -> SeriesRaise:
    r = SeriesRaise()
    assert r.add(peak, 1.5, 4.0, {"id": "a1", "window_end": at}, at=at, half_life_s=HALF)
    return r


def test_the_floor_halves_every_half_life_without_another_answer() -> None:
    r = raised()
    assert r.floor_usd == 60.0 and r.since == T0
    assert [r.floor_at(T0 + d * DAY, HALF) for d in (0, 7, 14, 28)] == [60.0, 60.0 * 0.5 ** 0.5, 30.0, 15.0]
    assert r.floor_at(T0 - DAY, HALF) == 60.0  # never above what was set
    assert r.floor_at(T0 + 365 * DAY, 0.0) == 60.0  # half-life 0: it never comes down


def test_a_new_answer_raises_from_the_decayed_floor_and_starts_the_halving_over() -> None:
    r = raised()
    later = T0 + 28 * DAY  # the floor has come down to 15
    assert r.add(8.0, 1.5, 4.0, {"id": "a2"}, at=later, half_life_s=HALF)
    assert (r.floor_usd, r.since) == (15.0, later)  # 1.5 x 8 = 12 is below where it stands
    assert r.floor_at(later + HALF, HALF) == 7.5
    assert r.add(20.0, 1.5, 4.0, {"id": "a3"}, at=later + HALF, half_life_s=HALF)
    assert r.floor_usd == 30.0 and r.ref_usd == 40.0  # a larger incident: 1.5 x its peak
    # the same answer again (a crash before its record) changes nothing, time included
    assert r.add(20.0, 1.5, 4.0, {"id": "a3"}, at=later + 3 * HALF, half_life_s=HALF)
    assert (r.floor_usd, r.since) == (30.0, later + HALF)


def test_the_floor_holds_while_the_answered_incident_runs_and_decays_from_its_end() -> None:
    r = SeriesRaise()
    assert r.add(10.0, 1.5, 4.0, {"id": "a1"}, running=True, at=T0, half_life_s=HALF)
    r.follow(30.0, T0 + 600)  # the incident grew for ten more minutes
    assert (r.floor_usd, r.since, r.ref_usd) == (45.0, T0 + 600, 30.0)
    assert r.floor_at(T0 + 600 + HALF, HALF) == 22.5


def test_the_decayed_floor_is_exact_across_a_checkpoint() -> None:
    r = raised(peak=37.123456789, at=T0 + 0.5)
    back = SeriesRaise.from_state(orjson.loads(orjson.dumps(r.to_state())))
    assert back == r
    for t in (T0 + 1, T0 + 3.3 * DAY, T0 + 100 * DAY):
        assert back.floor_at(t, HALF) == r.floor_at(t, HALF)


def test_state_from_before_the_decay_counts_from_the_last_answer() -> None:
    old = {"floor_usd": 60.0, "ref_usd": 40.0, "count": 2, "step": 1.5, "max_raise": 4.0, "following": False,
           "answers": [{"id": "a1", "window_end": T0 - DAY}, {"id": "a2", "window_end": T0}]}
    r = SeriesRaise.from_state(old)
    assert r.since == T0 and r.floor_at(T0 + HALF, HALF) == 30.0
    assert SeriesRaise.from_state({**old, "answers": []}).floor_at(T0 + HALF, HALF) == 60.0  # no time known: held
