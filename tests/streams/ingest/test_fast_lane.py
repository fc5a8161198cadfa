"""The fast lane (msgspec structs, IngestPartition.add_events) against the general path.

Random streams with duplicates, late events, every accepted shape and bad lines: whatever the
fast lane accepts it must turn into the very event the general path would, and counting a run
of events at once must leave the partition exactly as counting them one by one.
"""

from __future__ import annotations

import copy
import math
import random
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from streams.ingest.normalize import (
    ONE_CANONICAL,
    CanonicalEvent,
    DecodeError,
    Rejected,
    _fast_canonical,
    canonical_event,
    decode_canonical,
    decode_message,
    normalize,
    tidy_canonical,
    tidy_canonicals,
)
from streams.ingest.pipeline import count_message
from streams.ingest.pricing import Pricer
from streams.ingest.records import UsageEvent
from streams.ingest.windows import Implausible, IngestPartition

T0 = 1_767_600_000.0
TEAMS = ["ads", "search", "legal"]
MODELS = [("openai", "gpt-4o"), ("anthropic", "claude-sonnet-4-20250514"), ("google", "gemini-2.0-flash"),
          ("acme-internal", "llama-internal")]


def canonical(rnd: random.Random, i: int, ts: float) -> dict[str, Any]:
    provider, model = rnd.choice(MODELS)
    inp = rnd.randrange(0, 5000)
    cr = rnd.randrange(0, inp + 1) if rnd.random() < 0.5 else 0
    return {
        "event_id": f"e{i}", "ts": round(ts, 3), "org": "acme", "team": rnd.choice(TEAMS),
        "user": f"u{rnd.randrange(6)}", "provider": provider, "model": model, "tool": "agent",
        "input_tokens": inp, "output_tokens": rnd.randrange(0, 900), "cache_read_tokens": cr,
        "cache_write_tokens": rnd.randrange(0, inp - cr + 1) if rnd.random() < 0.2 else 0,
    }


# Each mutation keeps or breaks the fast lane; the general path decides what is right.
MUTATIONS: list[Callable[[random.Random, dict[str, Any]], Any]] = [
    lambda r, e: e,
    lambda r, e: e,
    lambda r, e: e,
    lambda r, e: {**e, "cost_usd": round(r.random(), 6)},
    lambda r, e: {**e, "cost_usd": 0},
    lambda r, e: {**e, "cost_usd": -0.0},
    lambda r, e: {**e, "cost_usd": "0.5"},
    lambda r, e: {**e, "cost_usd": -1.0},
    lambda r, e: {**e, "cost_usd": None},
    lambda r, e: {**e, "ts": int(e["ts"])},
    lambda r, e: {**e, "ts": int(e["ts"] * 1000)},
    lambda r, e: {**e, "ts": datetime.fromtimestamp(e["ts"], UTC).isoformat()},
    lambda r, e: {**e, "ts": 5},
    lambda r, e: {**e, "ts": True},
    lambda r, e: {**e, "team": " " + e["team"]},
    lambda r, e: {**e, "team": e["team"] + "\t"},
    lambda r, e: {**e, "team": ""},
    lambda r, e: {**e, "user": ""},
    lambda r, e: {**e, "org": "x" * 256},
    lambda r, e: {**e, "org": "x" * 257},
    lambda r, e: {**e, "model": "é" * 256},
    lambda r, e: {**e, "event_id": "é" * 257},
    lambda r, e: {**e, "event_id": 12345},
    lambda r, e: {**e, "event_id": e["event_id"] + "\u2028"},
    lambda r, e: {**e, "provider": "OpenAI"},
    lambda r, e: {**e, "provider": " vertex_ai "},
    lambda r, e: {**e, "provider": "   "},
    lambda r, e: {**e, "tool": None},
    lambda r, e: {**e, "tool": "  spaced  "},
    lambda r, e: {**e, "tool": 7},
    lambda r, e: {k: v for k, v in e.items() if k != "tool"},
    lambda r, e: {k: v for k, v in e.items() if k != "org"},
    lambda r, e: {k: v for k, v in e.items() if k != "cache_read_tokens"},
    lambda r, e: {**e, "cache_read_tokens": None},
    lambda r, e: {**e, "input_tokens": float(e["input_tokens"])},
    lambda r, e: {**e, "input_tokens": -1},
    lambda r, e: {**e, "input_tokens": True},
    lambda r, e: {**e, "input_tokens": 2**63 - 1},
    lambda r, e: {**e, "input_tokens": 2**63},
    lambda r, e: {**e, "cache_read_tokens": e["input_tokens"] + 1},
    lambda r, e: {**e, "labels": {"env": "prod", "n": [1, 2.5, None]}},
    lambda r, e: {**e, "labels": [1]},
    # the name rule (the same in every lane): separators, unsafe characters, NFC, lengths
    lambda r, e: {**e, "team": e["team"] + "|model=gpt-4o"},
    lambda r, e: {**e, "user": "a=b"},
    lambda r, e: {**e, "model": "ft:gpt-4o:org:x"},
    lambda r, e: {**e, "model": "anthropic.claude-3-5-sonnet-20240620-v1:0"},
    lambda r, e: {**e, "team": "a\u202eds"},
    lambda r, e: {**e, "org": "\ufeffacme"},
    lambda r, e: {**e, "user": "u\u200b1"},
    lambda r, e: {**e, "team": "e\u0301quipe"},
    lambda r, e: {**e, "team": "\u00e9quipe"},
    lambda r, e: {**e, "model": "x\x1b[2J"},
    lambda r, e: {**e, "provider": "open|ai"},
    lambda r, e: {**e, "provider": "\u0130" * 200},
    lambda r, e: {**e, "tool": "t" * 256},
    lambda r, e: {**e, "tool": "t" * 257},
    lambda r, e: {**e, "tool": ""},
    lambda r, e: {**e, "tool": "a\nb"},
    lambda r, e: {**e, "labels": {"env": "x" * 256, "n": 2**63, "f": 1.5, "b": True, "z": None}},
    lambda r, e: {**e, "labels": {"env": "x" * 257}},
    lambda r, e: {**e, "labels": {f"k{i}": i for i in range(32)}},
    lambda r, e: {**e, "labels": {f"k{i}": i for i in range(33)}},
    lambda r, e: {**e, "labels": {" env ": 1}},
    lambda r, e: {**e, "labels": {"a|b": 1}},
    lambda r, e: {**e, "labels": {"": 1}},
    lambda r, e: {**e, "labels": {"k": {"nested": 1}}},
    lambda r, e: {**e, "labels": None},
    lambda r, e: {**e, "extra": 1},
    lambda r, e: {"usage": {"prompt_tokens": e["input_tokens"], "completion_tokens": e["output_tokens"]},
                  **{k: v for k, v in e.items() if not k.endswith("tokens")}},
    lambda r, e: {"usage": {"input_tokens": 10, "output_tokens": 5, "cache_read_input_tokens": 3},
                  **{k: v for k, v in e.items() if not k.endswith("tokens")}, "provider": "anthropic"},
    lambda r, e: {"attributes": {"gen_ai.usage.input_tokens": 10, "gen_ai.usage.output_tokens": 2,
                                 "gen_ai.request.model": e["model"], "tokenpulse.team": e["team"]},
                  "event_id": e["event_id"], "ts": e["ts"]},
    lambda r, e: {"request_id": e["event_id"], "startTime": e["ts"], "model": e["model"], "prompt_tokens": 10,
                  "completion_tokens": 3, "spend": 0.0, "team_id": e["team"], "user": e["user"]},
]

RAW_MUTATIONS: list[Callable[[bytes], bytes]] = [
    lambda b: b,
    lambda b: b,
    lambda b: b,
    lambda b: b + b"\n",
    lambda b: b + b"\r\n",
    lambda b: b"  " + b,
    lambda b: b"{not json" + b[:10],
    lambda b: b + b" x",
    lambda b: b + b"," + b,
    lambda b: b + b"\n" + b,  # NDJSON in one message
    lambda b: b"",
    lambda b: b"   ",
    lambda b: b"5",
    lambda b: b"[]",
    lambda b: b"[" + b + b"]",
    lambda b: b"[" + b + b"," + b + b"]",
    lambda b: b"[" + b + b",5]",
    lambda b: b"\xef\xbb\xbf" + b,
    lambda b: b.replace(b'"e', b'"\\ud800e', 1),
    lambda b: b.replace(b'"e', b'"\\u00e9e', 1),
    lambda b: b[:-1] + b',"event_id":"dup-key"}',
    lambda b: b[:-1] + b',"x":1e999}',
    lambda b: b[:-1] + b',"labels":{"big":18446744073709551617}}',
    lambda b: b[:-1] + b',"labels":{"big":18446744073709551615,"neg":-9223372036854775809}}',
]


def messages(seed: int, n: int = 3000) -> list[bytes]:
    """A random stream: mostly in order, some late, some duplicated, all sorts of shapes."""
    rnd = random.Random(seed)
    out: list[bytes] = []
    sent: list[bytes] = []
    ts = T0
    for i in range(n):
        ts += rnd.expovariate(1 / 1.5)
        when = ts - rnd.choice([5, 30, 65, 90, 200, 900]) if rnd.random() < 0.06 else ts
        ev = canonical(rnd, i, when)
        if rnd.random() < 0.4:
            ev = rnd.choice(MUTATIONS)(rnd, ev)
        raw = orjson.dumps(ev)
        if rnd.random() < 0.25:
            raw = rnd.choice(RAW_MUTATIONS)(raw)
        if sent and rnd.random() < 0.05:
            raw = rnd.choice(sent[-100:] if rnd.random() < 0.8 else sent)
        sent.append(raw)
        out.append(raw)
    return out


# ------------------------------------------------------------- the general path, as before
def general_events(raw: bytes) -> list[UsageEvent | str] | str:
    """What the general path makes of a message: its events, or the reason it is rejected
    (per item too)."""
    try:
        items = decode_message(raw)
    except Rejected as exc:
        return exc.reason
    out: list[UsageEvent | str] = []
    for item in items:
        ev = _fast_canonical(item, "default") if type(item) is dict else None
        if ev is None:
            if type(item) is Rejected:
                out.append(item.reason)
                continue
            try:
                ev = normalize(item)
            except Rejected as exc:
                out.append(exc.reason)
                continue
        out.append(ev)
    return out


def count_message_general(core: IngestPartition, raw: bytes, pricer: Pricer, now: float, on_reject: Any) -> None:
    """count_message as it was before the fast lane: decode_message, normalize, add(); an
    element add() finds implausible is rejected with add()'s reason. A single-element
    message is dead-lettered as it came, an element of a batch as JSON of its own."""
    try:
        items = decode_message(raw)
    except Rejected as exc:
        core.counters.rejected += 1
        on_reject(raw, exc.reason, None)
        return
    many = len(items) > 1
    for i, item in enumerate(items):
        ev = _fast_canonical(item, "default") if type(item) is dict else None
        if ev is None:
            if type(item) is Rejected:
                core.counters.rejected += 1
                on_reject(item.raw or b"", item.reason, i)
                continue
            try:
                ev = normalize(item)
            except Rejected as exc:
                core.counters.rejected += 1
                on_reject(orjson.dumps(item) if many else raw, exc.reason, i if many else None)
                continue
        if ev.cost_usd is None:
            ev.cost_usd = pricer.price(ev)
        try:
            core.add(ev, now)
        except Implausible as exc:
            on_reject(orjson.dumps(item) if many else raw, exc.reason, i if many else None)


FIELDS = ["event_id", "ts", "org", "team", "user", "provider", "model", "tool", "input_tokens",
          "output_tokens", "cache_read_tokens", "cache_write_tokens", "cost_usd"]


def as_tuple(ev: UsageEvent | CanonicalEvent) -> tuple[Any, ...]:
    vals = [getattr(ev, f) for f in FIELDS]
    vals[FIELDS.index("tool")] = vals[FIELDS.index("tool")] or ""
    return (*vals, repr(type(vals[1])), math.copysign(1.0, ev.cost_usd) if ev.cost_usd is not None else None)


def state(core: IngestPartition) -> dict[str, Any]:
    return {
        "windows": core.windows, "late_cells": core.late_cells, "ids": core.ids, "new_ids": core._new_ids,
        "counters": core.counters.to_dict(), "max_ts": core.max_ts, "wall_at_max": core.wall_at_max,
        "closed_until": core.closed_until, "dirty": core._dirty_windows, "dropped": core._dropped_windows,
    }


# ------------------------------------------------------------------------------ tests
@pytest.mark.parametrize("seed", range(6))
def test_the_fast_lane_takes_only_what_the_general_path_makes_the_same(seed: int) -> None:
    taken = 0
    for raw in messages(seed):
        fast = decode_canonical(raw)
        one = canonical_event(raw)
        want = general_events(raw)
        if one is not None:
            assert fast is not None and len(fast) == 1 and as_tuple(fast[0]) == as_tuple(one)
        if fast is None:
            continue
        taken += 1
        assert isinstance(want, list) and len(want) == len(fast), raw
        for got, ref in zip(fast, want):
            assert isinstance(ref, UsageEvent), (raw, ref)
            assert as_tuple(got) == as_tuple(ref), raw
            assert (got.labels or {}) == ref.labels, raw
    assert taken > 500  # the common shapes do take the fast lane


# What breaks (or keeps) the tidy checks of a decoded event, beyond MUTATIONS' shapes.
TIDY_MUTATIONS: list[Callable[[random.Random, dict[str, Any]], Any]] = [
    lambda r, e: {**e, "team": " " + e["team"]},
    lambda r, e: {**e, "user": e["user"] + "\u3000"},
    lambda r, e: {**e, "model": "a|b"},
    lambda r, e: {**e, "org": "\u00e9quipe"},
    lambda r, e: {**e, "event_id": " " + e["event_id"]},
    lambda r, e: {**e, "event_id": e["event_id"] + "\u00a0"},
    lambda r, e: {**e, "tool": None},
    lambda r, e: {k: v for k, v in e.items() if k != "tool"},
    lambda r, e: {**e, "tool": ""},
    lambda r, e: {**e, "tool": "x=y"},
    lambda r, e: {**e, "tool": f"t{r.randrange(3)}"},
    lambda r, e: {**e, "provider": "OpenAI"},
    lambda r, e: {**e, "provider": "gemini"},
    lambda r, e: {**e, "provider": "  "},
    lambda r, e: {**e, "ts": 0.0},
    lambda r, e: {**e, "ts": 5e9},
    lambda r, e: {**e, "cache_read_tokens": e["input_tokens"] + 1},
    lambda r, e: {**e, "labels": {"env": "prod", "n": 3, "ok": True, "x": None, "f": 1.5}},
    lambda r, e: {**e, "labels": {"bad|key": "v"}},
    lambda r, e: {**e, "labels": {"k": 2**64 - 1}},
    lambda r, e: {**e, "labels": {}},
]


@pytest.mark.parametrize("seed", range(4))
def test_tidy_canonicals_is_tidy_canonical_on_each(seed: int) -> None:
    """The replay's one call per chunk gives what the lanes' call per event gives: the same
    answer, stopping at the same event, and the events normalised in place alike."""
    rnd = random.Random(seed)
    structs = []
    for raw in messages(seed, 1500):
        if rnd.random() < 0.05:
            ev = canonical(rnd, len(structs), T0 + len(structs))
            raw = orjson.dumps(rnd.choice(TIDY_MUTATIONS)(rnd, ev))
        try:
            structs.append(ONE_CANONICAL.decode(raw))
        except DecodeError:
            continue
    answers = set()
    i = 0
    while i < len(structs):
        chunk = structs[i:i + rnd.choice([1, 3, 8, 20])]
        i += len(chunk)
        each = copy.deepcopy(chunk)
        want = all(map(tidy_canonical, each))
        got = tidy_canonicals(chunk)
        answers.add(got)
        assert got == want
        assert [(as_tuple(e), e.labels) for e in chunk] == [(as_tuple(e), e.labels) for e in each]
        assert [e.tool for e in chunk] == [e.tool for e in each]
    assert answers == {True, False}


@pytest.mark.parametrize("seed", range(6))
def test_count_message_counts_exactly_as_the_general_path(seed: int) -> None:
    """Same counters, windows, late cells, dedupe ids, rejects (and their order), pricing."""
    lines = messages(seed)
    cores = [IngestPartition(partition=0, window_seconds=60, lateness=20, idle_grace=5) for _ in range(2)]
    pricers = [Pricer({"llama-internal": {"input": 0.5, "output": 1.0}}) for _ in range(2)]
    rejects: list[list[tuple[Any, ...]]] = [[], []]
    partials: list[list[list[Any]]] = [[], []]
    for k, count in enumerate((count_message, count_message_general)):
        core = cores[k]
        for n, raw in enumerate(lines):
            now = core.max_ts or 0.0
            count(core, raw, pricers[k], now, lambda b, reason, idx, k=k, n=n: rejects[k].append((n, b, reason, idx)))
            if n % 7 == 0:  # close windows as the stream goes, so later events can be late
                partials[k] += [p.to_wire() for p in core.advance(now)]
        partials[k] += [p.to_wire() for p in core.advance((core.max_ts or 0.0) + 10_000)]
    assert rejects[0] == rejects[1]
    assert state(cores[0]) == state(cores[1])
    assert partials[0] == partials[1]
    assert pricers[0].unpriced == pricers[1].unpriced
    c = cores[0].counters
    assert c.duplicate > 50 and c.late > 50 and c.rejected > 50 and c.accepted > 2000


@pytest.mark.parametrize("seed", range(4))
def test_add_events_is_add_one_by_one(seed: int) -> None:
    rnd = random.Random(seed)
    events = [ev for raw in messages(seed, 2000) if (evs := decode_canonical(raw)) for ev in evs]
    pricer = [Pricer(), Pricer()]
    one = IngestPartition(partition=0, window_seconds=60, lateness=15, idle_grace=5)
    many = copy.deepcopy(one)
    a = [copy.copy(e) for e in events]
    b = [copy.copy(e) for e in events]
    i = 0
    while i < len(a):
        r = rnd.random()
        until = math.inf if r < 0.02 else -math.inf if r < 0.1 else a[i].ts + rnd.choice([0.0, 30.0, 120.0])
        # one by one, as count_message did: price, add, stop once max_ts reaches `until`
        j = i
        rejects: list[list[tuple[int, str]]] = [[], []]
        while j < len(a):
            if a[j].cost_usd is None:
                a[j].cost_usd = pricer[0].price(a[j])  # type: ignore[arg-type]
            before = one.max_ts
            try:
                one.add(a[j], 7.0)  # type: ignore[arg-type]
            except Implausible as exc:
                rejects[0].append((j, exc.reason))
            j += 1
            if one.max_ts is not None and one.max_ts != before and one.max_ts >= until:
                break
        k = many.add_events(b, 7.0, pricer[1], i, until,  # type: ignore[arg-type]
                            on_reject=lambda idx, reason, rejects=rejects: rejects[1].append((idx, reason)))
        assert k == j
        assert rejects[0] == rejects[1]
        assert state(one) == state(many)
        assert [e.cost_usd for e in a[:j]] == [e.cost_usd for e in b[:j]]
        assert pricer[0].unpriced == pricer[1].unpriced
        if rnd.random() < 0.5:  # close what the event clock has passed, as the replay does
            one.wall_at_max = one.max_ts
            many.wall_at_max = many.max_ts
            assert [p.to_wire() for p in one.advance(one.max_ts or 0)] == [p.to_wire() for p in many.advance(many.max_ts or 0)]
            assert state(one) == state(many)
        i = j
    assert [as_tuple(x) for x in a] == [as_tuple(x) for x in b]
    assert one.counters.late > 0 and one.counters.duplicate > 0


def test_add_events_puts_times_on_a_window_edge_where_add_does() -> None:
    """Times exactly on a window's edge and one ulp either side land in the same window with
    add_events (which skips the division while an event is in the last one's window) as
    with add, in runs that go back and forth across edges."""
    rnd = random.Random(7)
    base = math.floor(T0 / 60) * 60
    times = []
    for m in range(6):
        edge = float(base + 60 * m)
        times += [edge, math.nextafter(edge, -math.inf), math.nextafter(edge, math.inf), edge + 59.999, edge - 0.001]
    events = []
    for i in range(400):
        raw = orjson.dumps(canonical(rnd, i, rnd.choice(times)))
        events += decode_canonical(raw) or []
    one = IngestPartition(partition=0, window_seconds=60, lateness=600, idle_grace=5)
    many = copy.deepcopy(one)
    for ev in copy.deepcopy(events):
        ev.cost_usd = Pricer().price(ev)
        one.add(ev, 7.0)
    assert many.add_events(events, 7.0, Pricer()) == len(events)
    assert state(one) == state(many)
    assert {w: list(cells) for w, cells in one.windows.items()} == {w: list(cells) for w, cells in many.windows.items()}
    assert len(one.windows) == 7


@pytest.mark.parametrize("name", ["\u00a0ads", "ads\u3000", "\u2003ads\u2003", "ads\x85", "équipe", "データ", "a"])
def test_names_are_stripped_of_unicode_whitespace_whichever_lane_takes_them(name: str) -> None:
    """str.strip() removes NBSP and the Unicode spaces too: a team sent as "\\u00a0ads" is team
    "ads" on every lane, not a series of its own."""
    obj = {"event_id": name, "ts": 1_767_800_000.0, "org": name, "team": name, "user": name,
           "provider": "openai", "model": name, "input_tokens": 1, "output_tokens": 1}
    general = normalize(dict(obj))
    assert (general.team, general.event_id, general.model) == (name.strip(),) * 3
    fast = canonical_event(orjson.dumps(obj))
    if fast is not None:
        assert (fast.team, fast.org, fast.user, fast.model, fast.event_id) == (name,) * 5 == (name.strip(),) * 5
    direct = _fast_canonical(dict(obj), "default")
    if direct is not None:
        assert direct.team == name.strip()


def test_inline_flat_rate_pricing_is_price_to_the_last_bit() -> None:
    """add_events prices flat-rate models inline; tiered (gemini-2.5-pro), overridden, unknown
    models and producer-sent costs go through Pricer.price. Same floats, same unpriced counts."""
    rnd = random.Random(11)
    models = [("anthropic", "claude-sonnet-4-20250514"), ("google", "gemini-2.5-pro"), ("openai", "gpt-4o"),
              ("acme", "acme-llama"), ("x", "no-such-model"), ("google", "gemini-2.0-flash")]
    events = []
    for k in range(3000):
        prov, model = rnd.choice(models)
        i = rnd.choice([0, 1, 999, 200_001, rnd.randrange(10**7)])
        cr = rnd.randrange(i + 1) if rnd.random() < 0.5 else 0
        cw = rnd.randrange(i - cr + 1) if rnd.random() < 0.3 else 0
        cost = rnd.choice([None, None, None, 0.0, 1e-9 * rnd.random()])
        events.append(CanonicalEvent(event_id=f"e{k}", ts=1_767_800_000.0 + k, org="o", team="t", user="u",
                                     provider=prov, model=model, input_tokens=i, output_tokens=rnd.randrange(10**6),
                                     cache_read_tokens=cr, cache_write_tokens=cw, cost_usd=cost))
    overrides = {"acme-llama": {"input": 0.3, "output": 0.9}}
    ref, inline = Pricer(overrides), Pricer(overrides)
    want = [e.cost_usd if e.cost_usd is not None else ref.price(e) for e in events]  # type: ignore[arg-type]
    core = IngestPartition(partition=0, window_seconds=60, lateness=15, idle_grace=5)
    got = [copy.copy(e) for e in events]
    assert core.add_events(got, 0.0, inline) == len(events)  # type: ignore[arg-type]
    assert [e.cost_usd for e in got] == want
    assert inline.unpriced == ref.unpriced and ref.unpriced["no-such-model"] > 0
    assert inline.flat_rates("google", "gemini-2.5-pro") is None  # tiered: priced per event
