"""Top contributors of an excess: each contributor's usual share, learnt from normal windows."""

from __future__ import annotations

import json

from alerts.receivers.pagerduty import pagerduty_event
from alerts.receivers.slack import slack_blocks
from streams.judge.contrib import MAX_TRACKED, ContributorMix, top_spenders
from streams.ingest.windows import NANO, Partial
from tests.streams.judge.test_judge import W, judge

DAY = 86_400


def nusd(usd: float) -> int:
    return int(round(usd * NANO))


def test_without_history_the_top_spenders_are_shown() -> None:
    mix = ContributorMix()
    window = {"user:a": nusd(1), "user:b": nusd(5), "model:m": nusd(6)}
    assert mix.excess(window, 2.0) == top_spenders(window)
    assert [c["name"] for c in mix.excess(window, 2.0)] == ["m", "b", "a"]


def test_the_usual_big_spender_is_not_named_for_someone_elses_excess() -> None:
    mix = ContributorMix()
    for w in range(0, 6 * 3600, 60):  # the batch user is 90 % of a normal window
        mix.learn(w, {"user:batch": nusd(9), "user:alice": nusd(1)}, nusd(10))
    # alice's loop: $8 above her usual $1, while the batch user still spends the most
    top = mix.excess({"user:batch": nusd(9.5), "user:alice": nusd(9)}, 10.0)
    assert [(c["name"], c["excess_usd"]) for c in top] == [("alice", 8.0), ("batch", 0.5)]
    assert top[0]["expected_usd"] == 1.0 and top[0]["usd"] == 9.0
    # a newcomer has no usual share: all it spends is excess
    top = mix.excess({"user:batch": nusd(9), "user:alice": nusd(1), "user:new": nusd(3)}, 10.0)
    assert [(c["name"], c["excess_usd"]) for c in top] == [("new", 3.0)]


def test_yesterday_counts_the_day_before_does_not() -> None:
    mix = ContributorMix()
    mix.learn(0, {"user:old": nusd(5)}, nusd(5))
    mix.learn(DAY, {"user:new": nusd(5)}, nusd(5))
    assert mix.prev == {"user:old": nusd(5)} and mix.cur == {"user:new": nusd(5)}
    mix.learn(3 * DAY, {"user:x": nusd(1)}, nusd(1))  # a silent day in between
    assert mix.prev == {} and mix.cur == {"user:x": nusd(1)}
    mix.learn(DAY, {"user:late": nusd(1)}, nusd(1))  # never rewrites the past
    assert "user:late" not in mix.cur


def test_state_is_bounded_and_round_trips_through_json() -> None:
    mix = ContributorMix()
    mix.learn(0, {f"user:u{i}": 1 for i in range(MAX_TRACKED + 10)}, MAX_TRACKED + 10)
    assert len(mix.cur) == MAX_TRACKED and mix.cur_total == MAX_TRACKED + 10
    back = ContributorMix.from_state(json.loads(json.dumps(mix.to_state())))
    assert back.to_state() == mix.to_state()
    assert ContributorMix.from_state(None).to_state() == ContributorMix().to_state()


def part(w: int, contrib: dict[str, float]) -> Partial:
    c = {k: nusd(v) for k, v in contrib.items()}
    total = sum(v for k, v in c.items() if k.startswith("user:"))
    return Partial("team=ads", {"team": "ads"}, w, [total, 10, 1, 0, 0, 5], c, True)


def test_the_judge_names_the_runaway_user_not_the_biggest_spender_and_does_not_learn_the_incident() -> None:
    j = judge()
    normal = {"user:batch": 9.0, "user:alice": 1.0, "model:big": 9.0, "model:small": 1.0}
    for i in range(60):
        j.receive(0, 1, (i + 1) * W, [part(i * W, normal)])
    loop = {"user:batch": 9.0, "user:alice": 40.0, "model:big": 9.0, "model:small": 40.0}
    out = j.receive(0, 1, 61 * W, [part(60 * W, loop)])
    [note] = out.notifications
    assert note.action == "trigger"
    names = [(c["kind"], c["name"]) for c in note.top_contributors]
    assert names[:2] in ([("user", "alice"), ("model", "small")], [("model", "small"), ("user", "alice")])
    assert all(c["excess_usd"] > 30 for c in note.top_contributors[:2])
    learnt = j.series["team=ads"].mix.to_state()
    j.receive(0, 1, 64 * W, [part(w * W, loop) for w in (61, 62, 63)])  # the incident goes on
    assert j.series["team=ads"].mix.to_state() == learnt  # ... and is not the usual mix
    # Slack says what alice usually spends; PagerDuty carries the numbers
    text = json.dumps(slack_blocks(note))
    assert "alice" in text and "usually" in text
    details = pagerduty_event(note, "rk")["payload"]["custom_details"]
    assert details["top_contributors"][0]["excess_usd"] > 30


def test_the_mix_survives_a_restart() -> None:
    j = judge()
    for i in range(10):
        j.receive(0, 1, (i + 1) * W, [part(i * W, {"user:a": 1.0, "user:b": 3.0})])
    changes = j.checkpoint()
    k = judge()
    k.restore(changes.items())
    assert k.series["team=ads"].mix.to_state() == j.series["team=ads"].mix.to_state()
    assert k.series["team=ads"].mix.cur == {"user:a": nusd(10), "user:b": nusd(30)}
