"""Issue 10's hostile payloads, one line each, through every lane that counts usage events.

Each of these killed the worker (and every restart of it, the message being at the head of its
partition), ``tokenpulse normalize`` or ``tokenpulse replay``, or was counted in spend. Whatever
the lane, each must now be dead-lettered with a reason, exactly once, never counted, and leave
the good events around it counted exactly.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from streams.ingest.pipeline import count_message, dead_letter_record
from streams.ingest.pricing import Pricer
from streams.ingest.records import UsageEvent
from streams.ingest.windows import IngestPartition

T = 1_767_600_000.0


def good(i: int, ts: float = T, **kw: Any) -> dict[str, Any]:
    return {"event_id": f"good-{i}", "ts": ts, "org": "default", "team": "ads", "user": "u1", "provider": "openai",
            "model": "gpt-4o", "input_tokens": 1000, "output_tokens": 100, "cost_usd": 0.25, **kw}


def nested(depth: int) -> bytes:
    """A JSON object nested ``depth`` deep (orjson writes at most 255 levels, so by hand)."""
    return b'{"a":' * depth + b"{}" + b"}" * depth


def without_team(labels: bytes, event_id: str = "bad") -> bytes:
    ev = {k: v for k, v in {**good(0), "event_id": event_id}.items() if k != "team"}
    return orjson.dumps(ev)[:-1] + b',"labels":' + labels + b"}"


def _bad(**kw: Any) -> bytes:
    return orjson.dumps({**good(0), "event_id": "bad", **kw})


# (name, message bytes, a word the reason must carry)
CRASHES: list[tuple[str, bytes, str]] = [
    # a rejected event (no team) whose labels are nested 300 deep: orjson.dumps of the DLQ copy
    ("deep-labels-rejected", without_team(nested(300)), "team"),
    # the int-string limit, in normalize's _count
    ("5000-digit-tokens", _bad(input_tokens="9" * 5000), "input_tokens"),
    # OverflowError converting to nano-dollars, in ingest
    ("cost-1e308", _bad(cost_usd=1e308), "cost_usd"),
    # accepted, then the window's sums were beyond 64 bits when it was emitted
    ("tokens-2^64", b'{"event_id":"bad","ts":1767600000,"org":"acme","team":"ads","user":"u1","provider":"openai",'
                    b'"model":"gpt-4o","input_tokens":18446744073709551616,"output_tokens":1}', "input_tokens"),
    ("tokens-1e30", _bad(input_tokens=1e30), "input_tokens"),
    ("tokens-2^64-in-a-batch", b"[" + orjson.dumps(good(7, event_id="good-in-batch")) + b',{"event_id":"bad","ts":1767600000,"org":"acme",'
                               b'"team":"ads","user":"u1","provider":"openai","model":"gpt-4o",'
                               b'"input_tokens":18446744073709551615,"output_tokens":1}]', "tokens"),
]

# Counted in spend before, though no single request costs that much.
IMPLAUSIBLE: list[tuple[str, bytes, str]] = [
    ("cost-1e20", _bad(cost_usd=1e20), "cost"),
    ("cost-1001", _bad(cost_usd=1001.0), "cost"),
    ("litellm-spend-1e308", orjson.dumps({"request_id": "bad", "startTime": "2026-01-05T08:00:00Z", "model": "gpt-4o",
                                          "prompt_tokens": 10, "completion_tokens": 3, "spend": 1e308,
                                          "team_id": "ads", "user": "u1"}), "cost"),
    ("output-2^63-1-priced", _bad(cost_usd=None, output_tokens=2**63 - 1), "tokens"),
    ("input-11M", _bad(input_tokens=11_000_000, output_tokens=0), "tokens"),
]

# Names that would have landed in another series, or shown as look-alikes.
BAD_NAMES: list[tuple[str, bytes, str]] = [
    ("team-with-separators", _bad(team="ads|model=gpt-4o"), "team"),
    ("user-with-equals", _bad(user="a=b"), "user"),
    ("team-nul", _bad(team="a\x00ds"), "team"),
    ("team-esc", _bad(team="ads\x1b]0;pwned\x07"), "team"),
    ("model-crlf", _bad(model="gpt\r\n4o"), "model"),
    ("team-rlo", _bad(team="ads\u202egnp"), "team"),
    ("team-zwsp", _bad(team="a\u200bds"), "team"),
    ("org-bom", _bad(org="\ufeffacme"), "org"),
    # an org is part of its series' names (org=acme|team=ads): one with a separator would be another's
    ("org-with-separators", _bad(org="acme|team=ads"), "org"),
    ("org-with-equals", _bad(org="a=b"), "org"),
    ("tool-10mb", _bad(tool="t" * 10_000_000), "tool"),
    ("provider-bidi", _bad(provider="open\u2066ai"), "provider"),
    ("label-key-bad", _bad(labels={"a|b": "x"}), "labels"),
    ("labels-too-many", _bad(labels={f"k{i}": i for i in range(1000)}), "labels"),
]

ALL = CRASHES + IMPLAUSIBLE + BAD_NAMES


def run(messages: list[bytes]) -> tuple[IngestPartition, list[tuple[int, bytes, str, int | None]]]:
    core = IngestPartition(partition=0, window_seconds=60, lateness=0, idle_grace=0)
    pricer = Pricer()
    rejects: list[tuple[int, bytes, str, int | None]] = []
    for n, raw in enumerate(messages):
        count_message(core, raw, pricer, T, lambda b, reason, idx, n=n: rejects.append((n, b, reason, idx)))
    return core, rejects


@pytest.mark.parametrize(("name", "raw", "word"), ALL, ids=[c[0] for c in ALL])
def test_a_poison_message_between_good_ones_is_dead_lettered_once_and_the_good_ones_counted(
        name: str, raw: bytes, word: str) -> None:
    core, rejects = run([orjson.dumps(good(1)), raw, orjson.dumps(good(2)), raw])
    # the bad element of each copy is rejected, once per copy, with its reason; nothing else
    reasons = [r for _, _, r, _ in rejects]
    assert [n for n, *_ in rejects] == [1, 3], rejects
    assert reasons[0] == reasons[1] and word in reasons[0], reasons[0]
    assert all(len(r) < 600 for r in reasons)
    # the second copy is not "a duplicate": a rejected event is not remembered as seen (only
    # the good element of a batch is, and is a duplicate the second time)
    batch = name == "tokens-2^64-in-a-batch"
    assert core.counters.duplicate == (1 if batch else 0)
    assert "bad" not in {i for ids in core.ids.values() for i in ids}
    partials = core.advance(T + 3600)
    # whatever was counted can be emitted: every sum fits in 64 bits
    for p in partials:
        orjson.dumps(p.to_wire())
    org = [p for p in partials if p.series == "org"]
    good_count = 3 if batch else 2
    assert org[0].sums[5] == good_count and org[0].sums[0] == good_count * 250_000_000, org[0].sums


def test_the_rejected_copy_of_a_deeply_nested_element_is_the_original_message() -> None:
    """orjson.dumps cannot write an element nested deeper than 255: its DLQ bytes are the
    message it came in, with its index."""
    raw = b"[" + orjson.dumps(good(1)) + b"," + without_team(nested(300)) + b"]"
    core, rejects = run([raw])
    [(_, b, reason, idx)] = rejects
    assert idx == 1 and b == raw and "team" in reason
    assert core.counters.accepted == 1


class BrokenPricer(Pricer):
    """A pricer with a bug for one model: what an error of our own looks like to the pipeline."""

    def price(self, ev: UsageEvent) -> float:
        if ev.model == "boom":
            raise ZeroDivisionError("a bug")
        return super().price(ev)

    def flat_rates(self, provider: str, model: str) -> Any:
        return None if model == "boom" else super().flat_rates(provider, model)


@pytest.mark.parametrize("shape", ["batch", "single", "general"])
def test_an_error_of_our_own_dead_letters_that_event_and_counts_the_rest(shape: str) -> None:
    boom = good(9, cost_usd=None, model="boom")
    if shape == "general":  # an OpenAI usage object: the general lane
        boom = {k: v for k, v in boom.items() if not k.endswith("tokens")} | {"usage": {"prompt_tokens": 5}}
    msgs = ([orjson.dumps([good(1), boom, good(2)])] if shape == "batch"
            else [orjson.dumps(good(1)), orjson.dumps(boom), orjson.dumps(good(2))])
    core = IngestPartition(partition=0, window_seconds=60, lateness=0, idle_grace=0)
    rejects: list[tuple[bytes, str, int | None]] = []
    for raw in msgs:
        count_message(core, raw, BrokenPricer(), T, lambda b, reason, idx: rejects.append((b, reason, idx)))
    [(b, reason, idx)] = rejects
    assert reason == "internal error: ZeroDivisionError: a bug"
    assert orjson.loads(b)["model"] == "boom" and idx == (1 if shape == "batch" else None)
    assert core.counters.accepted == 2 and core.counters.failed == 1
    assert "good-9" not in {i for ids in core.ids.values() for i in ids}


def test_a_failing_reject_sink_does_not_stop_the_message() -> None:
    core = IngestPartition(partition=0)

    def sink(raw: bytes, reason: str, index: int | None) -> None:
        raise RuntimeError("the sink is down")

    count_message(core, b"[" + orjson.dumps(good(1)) + b',{"no": 1},' + orjson.dumps(good(2)) + b"]", Pricer(), T, sink)
    assert core.counters.accepted == 2 and core.counters.rejected == 1


def test_the_dead_letter_record_is_cut_to_the_cap_and_says_so() -> None:
    value, headers = dead_letter_record(b"x" * 5000, "tool is longer than 256 characters", "p.usage/3/17", 2, 1024)
    h = dict(headers)
    assert value == b"x" * 1024
    assert h == {"tokenpulse.reason": b"tool is longer than 256 characters", "tokenpulse.source": b"p.usage/3/17",
                 "tokenpulse.index": b"2", "tokenpulse.truncated": b"5000"}
    value, headers = dead_letter_record(b"{}", "x", "p.usage/0/1")
    assert value == b"{}" and "tokenpulse.truncated" not in dict(headers) and "tokenpulse.index" not in dict(headers)


@pytest.mark.parametrize("reason", ["r" * 100_000, "lone \udc80 surrogate", 12345, None])
def test_building_the_dead_letter_record_never_fails(reason: Any) -> None:
    value, headers = dead_letter_record(bytearray(b"abc"), reason, "p.usage/0/1", None, 2)  # type: ignore[arg-type]
    h = dict(headers)
    assert value == b"ab" and h["tokenpulse.truncated"] == b"3"
    assert 0 < len(h["tokenpulse.reason"]) <= 3000


def test_a_record_without_a_value_is_rejected_not_an_error() -> None:
    core = IngestPartition(partition=0)
    rejects: list[tuple[bytes, str, int | None]] = []
    count_message(core, None, Pricer(), T, lambda b, reason, i: rejects.append((b, reason, i)))  # type: ignore[arg-type]
    assert rejects == [(b"", "empty message: the record has no value", None)]
    assert core.counters.rejected == 1 and core.counters.failed == 0
