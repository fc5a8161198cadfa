"""Property-based fuzzing (hypothesis) of normalisation and the ingest lanes.

Inputs: JSON-like values of any shape and nesting, huge numbers, odd Unicode, and every
accepted event shape (canonical, OpenAI and Anthropic ``usage``, OpenTelemetry attributes flat,
nested and as OTLP lists, LiteLLM spend logs) mutated field by field, alone and in batches,
as JSON and as raw bytes.

Invariants:

- nothing raises out of :func:`streams.ingest.pipeline.count_message`, :func:`normalize` (but
  :class:`Rejected`) or the replay, and nothing is an "internal error" (``counters.failed``);
- every lane agrees with the general lane alone (no fast lane): the same events accepted with
  the same canonical values, the same rejects with the same reasons, the same state;
- an accepted event's cost is finite, non-negative and within the policy's limits;
- rejecting an element never loses a good element of the same batch: a batch counts exactly
  what its elements count one message each;
- the counted totals are the sums of the accepted events.

The normal suite runs a few hundred examples per test, derandomised (the same examples on every
run); ``make fuzz`` runs the ``fuzz`` profile (``HYPOTHESIS_PROFILE=fuzz``: 100,000 examples per
test, random), see docs/fuzzing.md.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from collections.abc import Iterator
from typing import Any

import orjson
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

import streams.ingest.normalize as nz
from streams.common.config import IngestLimits
from streams.ingest.normalize import Rejected, canonical_event, decode_canonical, decode_message, normalize
from streams.ingest.pipeline import count_message
from streams.ingest.pricing import Pricer
from streams.ingest.records import UsageEvent
from streams.ingest.windows import NANO, Implausible, IngestPartition

settings.register_profile("default", max_examples=300, deadline=None, derandomize=True, database=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("fuzz", max_examples=int(os.environ.get("FUZZ_EXAMPLES", "100000")), deadline=None,
                          database=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

T0 = 1_767_600_000.0
LIMITS = IngestLimits(max_tokens_per_request=10_000_000, max_cost_usd_per_request=500.0)
PRICES = {"acme-llama": {"input": 0.5, "output": 1.5}}

# ----------------------------------------------------------------------------- strategies

EDGE_INTS = [0, 1, -1, 2**31, 2**53 + 1, 2**63 - 1, 2**63, 2**64 - 1, 2**64, -(2**63), -(2**63) - 1, 10**30,
             10_000_000, 10_000_001, 9_999_999]
# characters that matter to the name rule and to terminals
ODD_CHARS = ["\x00", "\x1b", "\r", "\n", "\t", "\x7f", "\x85", "\x9b", "\u00a0", "\u00ad", "\u0301", "\u200b",
             "\u200d", "\u2028", "\u202e", "\u2060", "\u2066", "\u3000", "\ufeff", "\U000e0041", "|", "=", ":",
             "é", "e", "İ", "ß", "ﬃ", "データ", " ", "/"]

odd_text = st.lists(st.one_of(st.sampled_from(ODD_CHARS), st.characters(blacklist_categories=["Cs"]),
                              st.text(alphabet="abcxyz-_.", min_size=1, max_size=4)), max_size=12).map("".join)
any_text = st.one_of(odd_text, st.text(max_size=20), st.sampled_from(["", " ", "ads", "gpt-4o", "openai"]),
                     st.integers(min_value=250, max_value=270).map(lambda n: "x" * n),
                     st.integers(min_value=0, max_value=5).map(lambda n: "9" * (18 + n)),
                     st.just("9" * 5000), st.just("t" * 100_000))
any_int = st.one_of(st.integers(), st.sampled_from(EDGE_INTS), st.integers(min_value=0, max_value=10**7))
any_float = st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.sampled_from(
    [0.0, -0.0, 1e308, 1.7976931348623157e308, 1e20, 1001.0, 500.0, 500.0000001, 1e-300, 2.0**63, 2.0**64, 1e30,
     1.5, 12.0]))
scalars = st.one_of(st.none(), st.booleans(), any_int, any_float, any_text)
json_values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(any_text, inner, max_size=4)), max_leaves=12)


def nested(depth: int, leaf: str = "{}") -> str:
    return '{"a":' * depth + leaf + "}" * depth


deep_labels = st.integers(min_value=1, max_value=1100).map(lambda d: nested(d))

NAMES = ["ads", "search", "legal", " ads ", "équipe", "e\u0301quipe", "ads|model=gpt-4o", "a=b", "x\u202ey",
         "ft:gpt-4o:acme:x", "anthropic.claude-3-5-sonnet-20240620-v1:0", "z\u200bz", "\ufeffbom"]
MODELS = [("openai", "gpt-4o"), ("anthropic", "claude-sonnet-4-20250514"), ("google", "gemini-2.5-pro"),
          ("acme", "acme-llama"), ("openai", "gpt-4o-mini"), ("x", "no-such-model"), ("aws", "ft:gpt-4o:acme:x")]
name = st.one_of(st.sampled_from(NAMES), any_text)
# boundaries first: hypothesis draws the first alternatives of one_of more often
tokens = st.one_of(st.sampled_from(EDGE_INTS), st.integers(min_value=0, max_value=20_000), any_int,
                   any_float.filter(lambda f: f >= 0),
                   st.integers(min_value=0, max_value=2**70).map(str), st.sampled_from(["12", " 7 ", "1e3", "-1", "x"]))
ts = st.one_of(st.floats(min_value=T0, max_value=T0 + 600), st.integers(min_value=int(T0), max_value=int(T0) + 600),
               st.sampled_from([T0 * 1000, T0 * 1e9, "2026-01-05T08:00:00Z", "2026-01-05T08:00:00", "0001-01-01T00:00:00+01:00",
                                "9999-12-31T23:59:59-23:59", "nan", "inf", "1e400", 5, -1, True]))
cost = st.one_of(st.none(), st.floats(min_value=0, max_value=10), any_float, st.sampled_from(["0.5", "1e400", "nan", "x"]))
labels = st.one_of(st.none(), st.dictionaries(name, scalars, max_size=5), json_values,
                   st.dictionaries(st.text(max_size=3), st.integers(), min_size=30, max_size=40))


@st.composite
def canonical(draw: Any) -> dict[str, Any]:
    provider, model = draw(st.sampled_from(MODELS))
    inp = draw(st.integers(min_value=0, max_value=50_000))
    cr = draw(st.integers(min_value=0, max_value=inp))
    ev: dict[str, Any] = {
        "event_id": f"e{draw(st.integers(min_value=0, max_value=40))}", "ts": draw(st.floats(min_value=T0, max_value=T0 + 600)),
        "org": "acme", "team": draw(st.sampled_from(["ads", "search", "legal"])), "user": f"u{draw(st.integers(0, 3))}",
        "provider": provider, "model": model, "tool": draw(st.sampled_from(["agent", "chat", ""])),
        "input_tokens": inp, "output_tokens": draw(st.integers(min_value=0, max_value=5000)), "cache_read_tokens": cr,
    }
    if draw(st.booleans()):
        ev["cost_usd"] = draw(st.floats(min_value=0, max_value=2))
    if draw(st.booleans()):
        ev["labels"] = {"env": "prod", "n": 3}
    return ev


def openai_usage(ev: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in ev.items() if not k.endswith("tokens")}
    out["usage"] = {"prompt_tokens": ev["input_tokens"], "completion_tokens": ev["output_tokens"],
                    "prompt_tokens_details": {"cached_tokens": ev["cache_read_tokens"]}}
    return out


def anthropic_usage(ev: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in ev.items() if not k.endswith("tokens")} | {"provider": "anthropic"}
    out["usage"] = {"input_tokens": ev["input_tokens"] - ev["cache_read_tokens"], "output_tokens": ev["output_tokens"],
                    "cache_read_input_tokens": ev["cache_read_tokens"], "cache_creation_input_tokens": 0}
    return out


def otel_attrs(ev: dict[str, Any]) -> dict[str, Any]:
    return {"gen_ai.usage.input_tokens": ev["input_tokens"], "gen_ai.usage.output_tokens": ev["output_tokens"],
            "gen_ai.usage.cache_read.input_tokens": ev["cache_read_tokens"], "gen_ai.request.model": ev["model"],
            "gen_ai.provider.name": ev["provider"], "tokenpulse.team": ev["team"], "user.id": ev["user"]}


def otel_flat(ev: dict[str, Any]) -> dict[str, Any]:
    return {"event_id": ev["event_id"], "ts": ev["ts"], **otel_attrs(ev)}


def otel_nested(ev: dict[str, Any]) -> dict[str, Any]:
    return {"span_id": ev["event_id"], "trace_id": "t1", "end_time_unix_nano": int(ev["ts"] * 1e9),
            "attributes": otel_attrs(ev)}


def otlp_list(ev: dict[str, Any]) -> dict[str, Any]:
    def value(v: Any) -> dict[str, Any]:
        return {"intValue": str(v)} if isinstance(v, int) else {"stringValue": v}

    return {"spanId": ev["event_id"], "traceId": "t1", "endTimeUnixNano": str(int(ev["ts"] * 1e9)),
            "attributes": [{"key": k, "value": value(v)} for k, v in otel_attrs(ev).items()]}


def litellm(ev: dict[str, Any]) -> dict[str, Any]:
    return {"request_id": ev["event_id"], "startTime": ev["ts"], "model": ev["model"],
            "custom_llm_provider": ev["provider"], "prompt_tokens": ev["input_tokens"],
            "completion_tokens": ev["output_tokens"], "spend": ev.get("cost_usd", 0.0), "team_id": ev["team"],
            "user": ev["user"], "metadata": {"usage_object": {"prompt_tokens_details": {"cached_tokens": ev["cache_read_tokens"]}}}}


# the canonical shape three times: it has the most fields and the most lanes
SHAPES = [lambda e: e, lambda e: e, lambda e: e, openai_usage, anthropic_usage, otel_flat, otel_nested, otlp_list,
          litellm]
FIELD_VALUES = {
    "event_id": name, "ts": ts, "org": name, "team": name, "user": name, "provider": name, "model": name,
    "tool": name, "input_tokens": tokens, "output_tokens": tokens, "cache_read_tokens": tokens,
    "cache_write_tokens": tokens, "cost_usd": cost, "labels": labels, "spend": cost, "prompt_tokens": tokens,
    "completion_tokens": tokens, "usage": json_values, "attributes": json_values, "metadata": json_values,
}


def paths(obj: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every path to a value inside a shape (keys of objects, indices of lists)."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield (*prefix, k)
            yield from paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield (*prefix, i)
            yield from paths(v, (*prefix, i))


def set_path(obj: Any, path: tuple[Any, ...], value: Any, delete: bool) -> Any:
    obj = json.loads(json.dumps(obj))
    cur = obj
    for p in path[:-1]:
        cur = cur[p]
    if delete and isinstance(cur, dict):
        del cur[path[-1]]
    else:
        cur[path[-1]] = value
    return obj


@st.composite
def event(draw: Any) -> Any:
    """An accepted shape, as it is, with one of its own fields set to a value of that field's
    kind (the boundaries first), or mutated anywhere at a few paths."""
    obj = draw(st.sampled_from(SHAPES))(draw(canonical()))
    mode = draw(st.sampled_from(["one-field", "one-field", "paths", "as-is"]))
    if mode == "one-field":
        key = draw(st.sampled_from(sorted(obj)))
        obj = {**obj, key: draw(FIELD_VALUES.get(key, json_values))}
    elif mode == "paths":
        for _ in range(draw(st.integers(min_value=1, max_value=3))):
            path = draw(st.sampled_from(list(paths(obj))))
            key = path[-1]
            strat = FIELD_VALUES.get(key if isinstance(key, str) else "", json_values)
            if isinstance(key, str) and key.startswith("gen_ai.usage"):
                strat = tokens
            obj = set_path(obj, path, draw(strat), delete=draw(st.integers(0, 9)) == 0)
    if draw(st.integers(0, 4)) == 0:
        obj = {**obj, draw(any_text): draw(json_values)}  # an unknown key
    return obj


def dumps(value: Any, draw_style: int) -> bytes:
    """JSON bytes of any value; stdlib json writes what orjson cannot (integers beyond 64
    bits, NaN and Infinity as the invalid tokens producers send)."""
    if draw_style == 0:
        try:
            return orjson.dumps(value)
        except TypeError:
            pass
    return json.dumps(value, ensure_ascii=draw_style == 1).encode("utf-8", "surrogatepass")


@st.composite
def message(draw: Any) -> bytes:
    """One Kafka message: an event, a batch, NDJSON, a deep or arbitrary value, or bytes."""
    kind = draw(st.integers(min_value=0, max_value=9))
    style = draw(st.integers(0, 2))
    if kind <= 3:
        return dumps(draw(event()), style)
    if kind <= 5:
        return dumps(draw(st.lists(event(), min_size=1, max_size=6)), style)
    if kind == 6:
        return b"\n".join(dumps(e, style) for e in draw(st.lists(event(), min_size=2, max_size=4)))
    if kind == 7:
        ev = draw(canonical())
        raw = orjson.dumps({k: v for k, v in ev.items() if k != draw(st.sampled_from(["team", "labels"]))})
        return raw[:-1] + b',"labels":' + draw(deep_labels).encode() + b"}"
    if kind == 8:
        return dumps(draw(json_values), style)
    return draw(st.binary(max_size=64))


# ----------------------------------------------------------------------------- references


@contextlib.contextmanager
def general_lane_only() -> Iterator[None]:
    """The general lane alone: _fast_canonical, as normalize calls it, finds nothing tidy."""
    saved = nz._fast_canonical
    nz._fast_canonical = lambda o, d: None  # type: ignore[assignment]
    try:
        yield
    finally:
        nz._fast_canonical = saved


def count_general(core: IngestPartition, raw: bytes, pricer: Pricer, rejects: list[Any]) -> None:
    """count_message without any fast lane: decode_message, normalize, price, add()."""
    try:
        items = decode_message(raw)
    except Rejected as exc:
        core.counters.rejected += 1
        rejects.append((exc.reason, None))
        return
    many = len(items) > 1
    for i, item in enumerate(items):
        if type(item) is Rejected:
            core.counters.rejected += 1
            rejects.append((item.reason, i))
            continue
        try:
            with general_lane_only():
                ev = normalize(item)
        except Rejected as exc:
            core.counters.rejected += 1
            rejects.append((exc.reason, i if many else None))
            continue
        if ev.cost_usd is None:
            ev.cost_usd = pricer.price(ev)
        try:
            core.add(ev, T0)
        except Implausible as exc:
            rejects.append((exc.reason, i if many else None))


def new_core() -> IngestPartition:
    return IngestPartition(partition=0, window_seconds=60, lateness=5, idle_grace=5, limits=LIMITS)


def state(core: IngestPartition) -> dict[str, Any]:
    return {"windows": core.windows, "late": core.late_cells, "ids": core.ids, "counters": core.counters.to_dict(),
            "max_ts": core.max_ts}


FIELDS = ["event_id", "ts", "org", "team", "user", "provider", "model", "tool", "input_tokens", "output_tokens",
          "cache_read_tokens", "cache_write_tokens", "cost_usd"]


def values(ev: Any) -> tuple[Any, ...]:
    vals = [getattr(ev, f) for f in FIELDS]
    vals[FIELDS.index("tool")] = vals[FIELDS.index("tool")] or ""
    return (*vals, ev.labels or {})


# ----------------------------------------------------------------------------- properties


def _canon(**kw: Any) -> dict[str, Any]:
    return {"event_id": "x", "ts": T0, "org": "acme", "team": "ads", "user": "u", "provider": "openai", "model": "gpt-4o",
            "input_tokens": 10, "output_tokens": 1, **kw}


# the boundaries found so far, always tried (the random examples then explore around them)
EDGES = [orjson.dumps(_canon(input_tokens=2**63)), orjson.dumps([_canon(), _canon(output_tokens=2**64 - 1)]),
         orjson.dumps(_canon(cache_read_tokens=2**63, input_tokens=2**63 - 1)), orjson.dumps(_canon(cost_usd=1e308)),
         orjson.dumps(_canon(input_tokens=float(2**63))), orjson.dumps(_canon(input_tokens="9" * 5000)),
         orjson.dumps(_canon(team="ads|model=gpt-4o")), orjson.dumps(_canon(tool="t" * 300)),
         orjson.dumps(_canon(provider="İ" * 200)), orjson.dumps(_canon(labels={"n": 2**64 - 1, "m": -(2**63)})),
         json.dumps(_canon(labels={"n": 2**64})).encode(), orjson.dumps(_canon(team="e\u0301quipe")),
         b'{"x":' * 300 + b"1" + b"}" * 300]


def with_edges(test: Any) -> Any:
    for raw in EDGES:
        test = example(raw)(test)
    return test


@with_edges
@given(message())
def test_every_lane_counts_as_the_general_lane_alone_and_never_fails(raw: bytes) -> None:
    fast, ref = new_core(), new_core()
    got: list[Any] = []
    want: list[Any] = []
    count_message(fast, raw, Pricer(PRICES), T0, lambda b, reason, i: got.append((reason, i)))
    count_general(ref, raw, Pricer(PRICES), want)
    assert got == want
    assert state(fast) == state(ref)
    c = fast.counters
    assert c.failed == 0, got
    assert len(got) == c.rejected + c.implausible
    for b, reason in [(b, r) for b, r in [(raw, g[0]) for g in got]]:
        assert isinstance(reason, str) and 0 < len(reason) < 1000 and isinstance(b, bytes)


@with_edges
@given(message())
def test_the_fast_lanes_take_only_what_the_general_lane_makes_the_same(raw: bytes) -> None:
    fast = decode_canonical(raw)
    one = canonical_event(raw)
    if one is not None:
        assert fast is not None and [values(e) for e in fast] == [values(one)]
    try:
        items = decode_message(raw)
    except Rejected:
        assert fast is None
        return
    if fast is not None:
        assert len(items) == len(fast)
    for k, item in enumerate(items):
        direct = nz._fast_canonical(item, "default") if type(item) is dict else None
        try:
            with general_lane_only():
                ref: UsageEvent | None = normalize(item) if type(item) is not Rejected else None
        except Rejected:
            ref = None
        for lane in ([fast[k]] if fast is not None else []) + ([direct] if direct is not None else []):
            assert ref is not None, (raw, item)
            assert values(lane) == values(ref), raw


@given(json_values)
def test_normalize_of_any_value_accepts_or_rejects_with_a_reason(value: Any) -> None:
    try:
        ev = normalize(value)
    except Rejected as exc:
        assert 0 < len(exc.reason) < 1000
        return
    assert isinstance(ev, UsageEvent)


@given(st.lists(event(), min_size=1, max_size=8), st.sampled_from([0, 1]))
def test_a_batch_counts_exactly_what_its_elements_count_alone(events: list[Any], style: int) -> None:
    """Rejecting an element loses nothing else of the batch, and the totals are the sums of the
    accepted events (cost within the limits)."""
    raws = [dumps(e, style) for e in events]
    whole, alone = new_core(), new_core()
    count_message(whole, b"[" + b",".join(raws) + b"]", Pricer(PRICES), T0, lambda *a: None)
    accepted: list[UsageEvent] = []
    for r in raws:
        count_message(alone, r, Pricer(PRICES), T0, lambda *a: None)
        # the events it accepted, as the general lane makes them
        for item in (decode_message(r) if _decodes(r) else []):
            try:
                ev = normalize(item)
            except Rejected:
                continue
            if ev.cost_usd is None:
                ev.cost_usd = Pricer(PRICES).price(ev)
            accepted.append(ev)
    assert state(whole)["windows"] == state(alone)["windows"]
    assert whole.counters.to_dict() == alone.counters.to_dict()
    # totals: the plausible events, each id once per window
    seen: set[tuple[int, str]] = set()
    nusd = events_n = tok_in = 0
    for ev in accepted:
        cost = ev.cost_usd or 0.0
        if ev.input_tokens + ev.output_tokens > LIMITS.max_tokens_per_request or not 0 <= cost <= LIMITS.max_cost_usd_per_request:
            continue
        assert math.isfinite(cost)
        key = (int(ev.ts // 60) * 60, ev.event_id)
        if key in seen:
            continue
        seen.add(key)
        nusd += int(cost * NANO + 0.5)
        events_n += 1
        tok_in += ev.input_tokens
    sums = [0] * 6
    for cells in list(whole.windows.values()) + list(whole.late_cells.values()):
        for k, s in cells.items():
            if len(k) == 5:  # the cells (the tool cells hold the same spend again, by tool)
                sums = [a + b for a, b in zip(sums, s)]
    assert (sums[0], sums[1], sums[5]) == (nusd, tok_in, events_n)
    assert events_n == whole.counters.accepted


def _decodes(raw: bytes) -> bool:
    try:
        decode_message(raw)
    except Rejected:
        return False
    return True


@given(st.lists(message(), min_size=1, max_size=6))
def test_an_accepted_events_cost_is_finite_and_within_the_limits(raws: list[bytes]) -> None:
    core = new_core()
    for raw in raws:
        count_message(core, raw, Pricer(PRICES), T0, lambda *a: None)
    for cells in list(core.windows.values()) + list(core.late_cells.values()):
        for s in cells.values():
            n = s[5]
            assert n > 0 and all(x >= 0 for x in s)
            assert s[0] <= n * int(LIMITS.max_cost_usd_per_request * NANO + 0.5)
            assert s[1] + s[2] <= n * LIMITS.max_tokens_per_request
    for p in core.advance(T0 + 10_000):
        orjson.dumps(p.to_wire())  # every sum can be emitted


@settings(max_examples=max(1, settings().max_examples // 5))  # a replay builds its detectors: dearer
@given(st.lists(message(), min_size=1, max_size=5))
def test_the_replay_never_fails_and_counts_as_the_worker(raws: list[bytes]) -> None:
    from tokenpulse.policy import Policy
    from tokenpulse.replay import replay_lines
    from tokenpulse.runtime import stream_config
    from tokenpulse.settings import Settings

    assume(all(b"\n" not in r for r in raws))  # a line is a message
    res = replay_lines(raws, stream_config(Settings(), Policy(), bootstrap="", partitions=1), fork=False)
    core = IngestPartition(partition=0, window_seconds=60)
    for raw in raws:
        if raw.strip():
            count_message(core, raw, Pricer(), T0, lambda *a: None)
    want = core.counters.to_dict()
    got = res.counters
    for k in ("accepted", "rejected", "implausible", "duplicate"):
        assert got[k] == want[k], (k, got, want)
    assert got["failed"] == 0
