"""Top contributors of an excess: each contributor's usual share, learnt from normal windows."""

from __future__ import annotations

import json
import random

from alerts.receivers.pagerduty import pagerduty_event
from alerts.receivers.slack import slack_blocks
from streams.ingest.windows import NANO, Partial
from streams.judge.contrib import MAX_TRACKED, ContributorMix, top_spenders
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


class _DictMix:
    """The mix as two dicts of Python ints (as it was held before its compact form): the
    reference the compact one must match, answer for answer and state for state."""

    def __init__(self) -> None:
        self.day: int | None = None
        self.cur: dict[str, int] = {}
        self.cur_total = 0
        self.prev: dict[str, int] = {}
        self.prev_total = 0

    def learn(self, window_start: int, contrib: dict[str, int], total_nusd: int) -> None:
        day = window_start // DAY
        if day != self.day:
            if self.day is not None and day < self.day:
                return
            if self.day is not None and day == self.day + 1:
                self.prev, self.prev_total = self.cur, self.cur_total
            else:
                self.prev, self.prev_total = {}, 0
            self.cur, self.cur_total = {}, 0
            self.day = day
        if not total_nusd:
            return
        self.cur_total += total_nusd
        for name, n in contrib.items():
            if name in self.cur:
                self.cur[name] += n
            elif len(self.cur) < MAX_TRACKED:
                self.cur[name] = n

    def to_state(self) -> dict[str, object]:
        return {"day": self.day, "cur": dict(self.cur), "cur_total": self.cur_total,
                "prev": dict(self.prev), "prev_total": self.prev_total}


def test_the_compact_mix_learns_ranks_and_saves_as_the_dicts_did() -> None:
    rng = random.Random(5)
    names = [f"user:u{i}" for i in range(MAX_TRACKED + 20)]
    for trial in range(30):
        mix, ref = ContributorMix(), _DictMix()
        w = rng.randrange(0, 3 * DAY)
        huge = trial % 5 == 4  # sums past 64 bits: held on in a list
        for _ in range(300):
            w += rng.choice((60, 60, 600, 3 * 3600, DAY, 2 * DAY + 60, -DAY))
            pool = names[:rng.choice((1, 3, MAX_TRACKED + 20))]
            contrib = {n: rng.choice((0, rng.randrange(1, 10**9), 2**62 if huge else 7))
                       for n in rng.sample(pool, rng.randint(0, min(5, len(pool))))}
            total = sum(contrib.values()) + rng.choice((0, 0, 5))
            mix.learn(w, contrib, total)
            ref.learn(w, contrib, total)
            assert json.dumps(mix.to_state()) == json.dumps(ref.to_state())  # the same order too
            probe = {n: rng.randrange(0, 5 * 10**9) for n in rng.sample(pool, min(4, len(pool)))}
            want = _ref_excess(ref, probe, 3.0)
            assert mix.excess(probe, 3.0) == want
            back = ContributorMix.from_state(json.loads(json.dumps(mix.to_state())))
            assert json.dumps(back.to_state()) == json.dumps(ref.to_state())
        # held as one array of sums (a list once a sum passed 64 bits), not two dicts of ints
        assert type(mix._v).__name__ == ("list" if huge and mix.cur_total >= 2**63 else "array")


def _ref_excess(ref: _DictMix, contrib: dict[str, int], expected_usd: float, k: int = 5) -> list[object]:
    """What excess answered from the two dicts."""
    total = ref.cur_total + ref.prev_total
    if total <= 0 or not contrib:
        return list(top_spenders(contrib, k))
    scale = expected_usd / total
    ranked = []
    for name, n in contrib.items():
        expected = (ref.cur.get(name, 0) + ref.prev.get(name, 0)) * scale
        excess = n / NANO - expected
        if excess > 0:
            ranked.append((-excess, name, n, expected))
    if not ranked:
        return list(top_spenders(contrib, k))
    out: list[object] = []
    for neg, name, n, expected in sorted(ranked)[:k]:
        kind, _, who = name.partition(":")
        out.append({"kind": kind, "name": who, "usd": round(n / NANO, 6),
                    "expected_usd": round(expected, 6), "excess_usd": round(-neg, 6)})
    return out
