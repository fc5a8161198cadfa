"""Vectors for every accepted usage shape, with cached tokens in each.

Cached-token accounting differs per producer (subset vs. addend); each vector pins the
canonical result so a wrong convention shows up as a precise token mismatch.
"""

from __future__ import annotations

import math

import orjson
import pytest

from streams.ingest.normalize import Rejected, decode_message, normalize

T0 = 1_748_779_200.0  # 2025-06-01T12:00:00Z

ENVELOPE = {"event_id": "e-1", "ts": T0, "org": "acme", "team": "search", "user": "alice",
            "tool": "claude-code"}


def canon(**over):
    base = dict(ENVELOPE, provider="anthropic", model="claude-sonnet-4", input_tokens=12_000,
                output_tokens=800, cache_read_tokens=9_000, cache_write_tokens=1_000)
    base.update(over)
    return base


def tokens(ev):
    return (ev.input_tokens, ev.output_tokens, ev.cache_read_tokens, ev.cache_write_tokens)


# --------------------------------------------------------------------------- shapes

SHAPES = [
    pytest.param(canon(), "anthropic", "claude-sonnet-4", (12_000, 800, 9_000, 1_000), id="canonical"),
    pytest.param(
        dict(ENVELOPE, provider="openai", model="gpt-4o",
             usage={"prompt_tokens": 2_000, "completion_tokens": 300, "total_tokens": 2_300,
                    "prompt_tokens_details": {"cached_tokens": 1_536, "audio_tokens": 0},
                    "completion_tokens_details": {"reasoning_tokens": 0}}),
        "openai", "gpt-4o", (2_000, 300, 1_536, 0), id="openai-chat-cached-is-subset"),
    pytest.param(
        dict(ENVELOPE, provider="openai", model="gpt-4.1",
             usage={"input_tokens": 5_000, "output_tokens": 120, "total_tokens": 5_120,
                    "input_tokens_details": {"cached_tokens": 4_096},
                    "output_tokens_details": {"reasoning_tokens": 64}}),
        "openai", "gpt-4.1", (5_000, 120, 4_096, 0), id="openai-responses-cached-is-subset"),
    pytest.param(
        dict(ENVELOPE, provider="anthropic", model="claude-sonnet-4-20250514",
             usage={"input_tokens": 50, "output_tokens": 400, "cache_read_input_tokens": 10_000,
                    "cache_creation_input_tokens": 2_000}),
        "anthropic", "claude-sonnet-4-20250514", (12_050, 400, 10_000, 2_000),
        id="anthropic-cache-is-addend"),
    pytest.param(
        dict(ENVELOPE, provider="aws", model="anthropic.claude-3-5-sonnet-20241022-v2:0",
             usage={"input_tokens": 7, "output_tokens": 9, "cache_read_input_tokens": 100,
                    "cache_creation_input_tokens": 0}),
        "aws", "anthropic.claude-3-5-sonnet-20241022-v2:0", (107, 9, 100, 0),
        id="anthropic-on-bedrock-detected-by-keys"),
    pytest.param(
        dict(ENVELOPE, provider="anthropic", model="claude-3-5-haiku",
             usage={"input_tokens": 30, "output_tokens": 10}),
        "anthropic", "claude-3-5-haiku", (30, 10, 0, 0), id="anthropic-no-cache-keys"),
    pytest.param(
        # LiteLLM's OpenAI-shaped usage for an Anthropic model: cache keys are copied in but
        # already folded into prompt_tokens.
        dict(ENVELOPE, provider="anthropic", model="claude-sonnet-4",
             usage={"prompt_tokens": 12_050, "completion_tokens": 400,
                    "cache_read_input_tokens": 10_000, "cache_creation_input_tokens": 2_000,
                    "prompt_tokens_details": {"cached_tokens": 10_000}}),
        "anthropic", "claude-sonnet-4", (12_050, 400, 10_000, 2_000),
        id="openai-shaped-usage-with-anthropic-cache-keys"),
    pytest.param(
        {"span_id": "00f067aa0ba902b7", "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
         "end_time_unix_nano": 1_748_779_200_000_000_000,
         "attributes": {"gen_ai.provider.name": "anthropic", "gen_ai.request.model": "claude-sonnet-4",
                        "gen_ai.usage.input_tokens": 12_000, "gen_ai.usage.output_tokens": 800,
                        "gen_ai.usage.cache_read.input_tokens": 9_000,
                        "gen_ai.usage.cache_creation.input_tokens": 1_000,
                        "tokenpulse.team": "search", "user.id": "alice"}},
        "anthropic", "claude-sonnet-4", (12_000, 800, 9_000, 1_000), id="otel-attributes-dict"),
    pytest.param(
        {"event_id": "e-1", "ts": "2025-06-01T12:00:00Z", "team": "search", "enduser.id": "alice",
         "gen_ai.system": "openai", "gen_ai.response.model": "gpt-4o-2024-08-06",
         "gen_ai.usage.input_tokens": 2_000, "gen_ai.usage.output_tokens": 300,
         "gen_ai.usage.cache_read.input_tokens": 1_536},
        "openai", "gpt-4o-2024-08-06", (2_000, 300, 1_536, 0), id="otel-flat-old-gen_ai.system"),
    pytest.param(
        {"spanId": "00f067aa0ba902b7", "traceId": "4bf92f3577b34da6a3ce929d0e0e4736",
         "endTimeUnixNano": "1748779200000000000",
         "attributes": [
             {"key": "gen_ai.provider.name", "value": {"stringValue": "gcp.gemini"}},
             {"key": "gen_ai.request.model", "value": {"stringValue": "gemini-2.5-pro"}},
             {"key": "gen_ai.usage.input_tokens", "value": {"intValue": "300000"}},
             {"key": "gen_ai.usage.output_tokens", "value": {"intValue": "1000"}},
             {"key": "gen_ai.usage.cache_read.input_tokens", "value": {"intValue": "250000"}},
             {"key": "team", "value": {"stringValue": "search"}},
         ]},
        "google", "gemini-2.5-pro", (300_000, 1_000, 250_000, 0), id="otlp-json-attribute-list"),
    pytest.param(
        {"request_id": "chatcmpl-123", "call_type": "acompletion", "spend": 0.0123,
         "total_tokens": 2_300, "prompt_tokens": 2_000, "completion_tokens": 300,
         "startTime": "2025-06-01 11:59:58.123", "endTime": "2025-06-01 12:00:00.000",
         "model": "gpt-4o", "custom_llm_provider": "openai", "user": "alice", "team_id": "t-42",
         "metadata": {"user_api_key_team_alias": "search",
                      "usage_object": {"prompt_tokens": 2_000, "completion_tokens": 300,
                                       "prompt_tokens_details": {"cached_tokens": 1_536}}}},
        "openai", "gpt-4o", (2_000, 300, 1_536, 0), id="litellm-spendlogs-row"),
    pytest.param(
        {"id": "b980db26", "trace_id": "t", "call_type": "completion", "response_cost": 0.0456,
         "prompt_tokens": 12_050, "completion_tokens": 400, "startTime": 1_748_779_198.5,
         "endTime": 1_748_779_200.0, "model": "claude-sonnet-4-20250514",
         "custom_llm_provider": "anthropic",
         "metadata": {"user_api_key_team_alias": "search", "user_api_key_user_id": "alice",
                      "user_api_key_org_id": "acme",
                      "usage_object": {"prompt_tokens": 12_050, "completion_tokens": 400,
                                       "cache_read_input_tokens": 10_000,
                                       "cache_creation_input_tokens": 2_000}}},
        "anthropic", "claude-sonnet-4-20250514", (12_050, 400, 10_000, 2_000),
        id="litellm-standard-logging-payload"),
]


@pytest.mark.parametrize("obj, provider, model, expected", SHAPES)
def test_shapes_map_to_canonical_tokens(obj, provider, model, expected):
    ev = normalize(obj)
    assert tokens(ev) == expected
    assert ev.provider == provider
    assert ev.model == model
    assert ev.team == "search"
    assert ev.ts == T0
    assert ev.cache_read_tokens + ev.cache_write_tokens <= ev.input_tokens


def test_canonical_fields_and_defaults():
    ev = normalize(canon(labels={"env": "prod"}))
    assert (ev.event_id, ev.org, ev.team, ev.user, ev.tool) == ("e-1", "acme", "search", "alice", "claude-code")
    assert ev.cost_usd is None
    assert ev.labels == {"env": "prod"}

    bare = normalize({"event_id": 7, "ts": T0, "team": " search ", "model": "my-llm", "input_tokens": 1})
    assert (bare.event_id, bare.org, bare.user, bare.tool, bare.provider) == ("7", "default", "unknown", "", "unknown")
    assert bare.team == "search"
    assert normalize({"event_id": 7, "ts": T0, "team": "t", "model": "m", "input_tokens": 1},
                     default_org="acme").org == "acme"


def test_canonical_cost_is_carried_and_unknown_keys_ignored():
    ev = normalize(canon(cost_usd=0.5, some_future_field={"x": 1}))
    assert ev.cost_usd == 0.5


def test_litellm_details():
    row = SHAPES[10].values[0]
    ev = normalize(row)
    assert ev.event_id == "chatcmpl-123"
    assert ev.cost_usd == pytest.approx(0.0123)
    assert ev.user == "alice"
    assert ev.team == "search"  # the alias wins over the opaque team_id
    assert normalize({**row, "metadata": {}}).team == "t-42"

    payload = SHAPES[11].values[0]
    ev = normalize(payload)
    assert (ev.event_id, ev.user, ev.org, ev.cost_usd) == ("b980db26", "alice", "acme", 0.0456)


def test_litellm_zero_spend_is_left_for_our_pricer():
    row = dict(SHAPES[10].values[0], spend=0.0)
    assert normalize(row).cost_usd is None
    empty = dict(row, prompt_tokens=0, completion_tokens=0, metadata={})
    assert normalize(empty).cost_usd == 0.0


def test_otel_ids_and_resource():
    ev = normalize(SHAPES[7].values[0])
    assert ev.event_id == "4bf92f3577b34da6a3ce929d0e0e4736:00f067aa0ba902b7"
    assert ev.user == "alice"
    obj = {"span_id": "s1", "start_time_unix_nano": 1_748_779_200_000_000_000,
           "attributes": {"gen_ai.request.model": "gpt-4o", "gen_ai.usage.input_tokens": 5,
                          "gen_ai.usage.output_tokens": 1},
           "resource": {"attributes": {"tokenpulse.team": "infra", "service.name": "batch-summariser"}}}
    ev = normalize(obj)
    assert (ev.event_id, ev.team, ev.tool, ev.provider) == ("s1", "infra", "batch-summariser", "openai")


@pytest.mark.parametrize("ts", [
    "2025-06-01T12:00:00Z",
    "2025-06-01T12:00:00.000Z",
    "2025-06-01T14:00:00+02:00",
    "2025-06-01T07:00:00-05:00",
    "2025-06-01 12:00:00",  # naive: UTC
    1_748_779_200,
    1_748_779_200.0,
    1_748_779_200_000,  # ms
    "1748779200",
])
def test_timestamp_forms(ts):
    assert normalize(canon(ts=ts)).ts == T0


@pytest.mark.parametrize("model, provider", [
    ("claude-3-5-haiku-latest", "anthropic"),
    ("gpt-4o-mini", "openai"),
    ("o1", "openai"),
    ("o3-mini", "openai"),
    ("o4-mini-2025-04-16", "openai"),
    ("gemini-2.0-flash", "google"),
    ("openai/gpt-4o", "openai"),
    ("llama-3.1-70b", "unknown"),
    ("omni-thing", "unknown"),
])
def test_provider_inferred_from_model(model, provider):
    obj = canon(model=model)
    del obj["provider"]
    assert normalize(obj).provider == provider


@pytest.mark.parametrize("given, expected", [
    ("Anthropic", "anthropic"), ("gcp.vertex_ai", "google"), ("aws.bedrock", "aws"),
    ("azure.ai.openai", "azure"), ("vertex_ai", "google"), ("internal-vllm", "internal-vllm"),
])
def test_provider_aliases(given, expected):
    assert normalize(canon(provider=given)).provider == expected


def test_token_count_coercions():
    ev = normalize(canon(input_tokens=12_000.0, output_tokens="800", cache_read_tokens=None))
    assert tokens(ev) == (12_000, 800, 0, 1_000)
    assert type(ev.input_tokens) is int and type(ev.output_tokens) is int


# --------------------------------------------------------------------------- rejections

REJECTIONS = [
    pytest.param([1, 2], "event must be a JSON object, got list", id="list"),
    pytest.param("hello", "event must be a JSON object, got str", id="str"),
    pytest.param(None, "event must be a JSON object, got null", id="null"),
    pytest.param(3, "event must be a JSON object, got number", id="number"),
    pytest.param({k: v for k, v in canon().items() if k != "team"}, "missing field 'team'", id="no-team"),
    pytest.param(canon(team="   "), "missing field 'team'", id="blank-team"),
    pytest.param({k: v for k, v in canon().items() if k != "event_id"}, "missing field 'event_id'", id="no-id"),
    pytest.param({k: v for k, v in canon().items() if k != "ts"}, "missing field 'ts'", id="no-ts"),
    pytest.param({k: v for k, v in canon().items() if k != "model"}, "missing field 'model'", id="no-model"),
    pytest.param(canon(input_tokens=-3), "input_tokens must be a non-negative integer, got -3", id="negative"),
    pytest.param(canon(output_tokens=1.5), "output_tokens must be a non-negative integer, got 1.5", id="fraction"),
    pytest.param(canon(output_tokens=math.nan), "output_tokens must be a non-negative integer, got nan", id="nan"),
    pytest.param(canon(output_tokens=True), "output_tokens must be a non-negative integer, got True", id="bool"),
    pytest.param(canon(output_tokens="12k"), "output_tokens must be a non-negative integer, got '12k'", id="non-int-str"),
    pytest.param(canon(cache_read_tokens=-1), "cache_read_tokens must be a non-negative integer, got -1", id="neg-cache"),
    pytest.param(canon(cache_read_tokens=11_500),
                 "cache_read_tokens (11500) + cache_write_tokens (1000) exceed input_tokens (12000); "
                 "input_tokens must include cached tokens", id="cache-exceeds-input"),
    pytest.param(dict(ENVELOPE, model="gpt-4o", usage={"prompt_tokens": 100, "completion_tokens": 1,
                                                        "prompt_tokens_details": {"cached_tokens": 200}}),
                 "cache_read_tokens (200) + cache_write_tokens (0) exceed input_tokens (100); "
                 "input_tokens must include cached tokens", id="openai-cached-exceeds-prompt"),
    pytest.param(canon(cost_usd=-0.01), "cost_usd must be a finite non-negative number, got -0.01", id="neg-cost"),
    pytest.param(canon(cost_usd=math.inf), "cost_usd must be a finite non-negative number, got inf", id="inf-cost"),
    pytest.param(canon(cost_usd="free"), "cost_usd must be a finite non-negative number, got 'free'", id="str-cost"),
    pytest.param(canon(ts="yesterday"), "ts is not RFC 3339, got 'yesterday'", id="bad-ts"),
    pytest.param(canon(ts=0), "ts out of range (must be between years 2000 and 2100), got 0", id="epoch-zero"),
    pytest.param(canon(ts="2150-01-01T00:00:00Z"),
                 "ts out of range (must be between years 2000 and 2100), got '2150-01-01T00:00:00Z'", id="far-future"),
    pytest.param(canon(ts=[1]), "ts must be an RFC 3339 string or epoch number, got list", id="ts-list"),
    pytest.param(canon(team="x" * 257), "team is longer than 256 characters (257)", id="long-team"),
    pytest.param(canon(user="u" * 300), "user is longer than 256 characters (300)", id="long-user"),
    pytest.param(canon(model="m" * 257), "model is longer than 256 characters (257)", id="long-model"),
    pytest.param(canon(team={"name": "x"}), "team must be a string, got object", id="team-object"),
    pytest.param(canon(labels=["a"]), "labels must be a JSON object, got list", id="labels-list"),
    pytest.param(dict(ENVELOPE, model="gpt-4o"),
                 "missing token counts: need input_tokens/output_tokens, a usage object, or cost_usd",
                 id="no-tokens"),
    pytest.param(dict(ENVELOPE, model="gpt-4o", usage="lots"), "usage must be a JSON object, got str",
                 id="usage-not-object"),
    pytest.param({"attributes": {"gen_ai.request.model": "gpt-4o"}, "team": "t", "event_id": "e", "ts": T0},
                 "missing token counts: no gen_ai.usage.input_tokens or gen_ai.usage.output_tokens",
                 id="otel-no-usage"),
]


@pytest.mark.parametrize("obj, reason", REJECTIONS)
def test_rejections(obj, reason):
    with pytest.raises(Rejected) as info:
        normalize(obj)
    assert info.value.reason == reason
    assert str(info.value) == reason


# --------------------------------------------------------------------------- decoding

ONE = {"event_id": "a", "ts": T0, "team": "t", "model": "gpt-4o", "input_tokens": 1}
TWO = dict(ONE, event_id="b")


@pytest.mark.parametrize("raw, expected", [
    pytest.param(orjson.dumps(ONE), [ONE], id="object"),
    pytest.param(orjson.dumps(ONE) + b"\n", [ONE], id="object-trailing-newline"),
    pytest.param(orjson.dumps([ONE, TWO]), [ONE, TWO], id="array"),
    pytest.param(orjson.dumps(ONE) + b"\n" + orjson.dumps(TWO), [ONE, TWO], id="ndjson"),
    pytest.param(b"\n" + orjson.dumps(ONE) + b"\r\n\n  \n" + orjson.dumps(TWO) + b"\r\n", [ONE, TWO],
                 id="ndjson-blank-lines-crlf"),
    pytest.param(b"[]", [], id="empty-array"),
    pytest.param(b'"just a string"', ["just a string"], id="scalar-is-returned-for-normalize-to-reject"),
])
def test_decode(raw, expected):
    assert decode_message(raw) == expected


def test_bad_ndjson_line_does_not_poison_the_rest():
    bad = b'{"event_id": "c", "team": '
    items = decode_message(orjson.dumps(ONE) + b"\n" + bad + b"\n" + orjson.dumps(TWO))
    assert items[0] == ONE and items[2] == TWO
    assert isinstance(items[1], Rejected)
    assert items[1].raw == bad
    assert items[1].reason.startswith("invalid JSON: ")
    assert [normalize(i).event_id for i in (items[0], items[2])] == ["a", "b"]


@pytest.mark.parametrize("raw", [
    pytest.param(b"{not json", id="garbage"),
    pytest.param(b"", id="empty"),
    pytest.param(b"  \n \n", id="blank-lines"),
    pytest.param(b"{bad\n{worse", id="all-lines-bad"),
    pytest.param(b"\xff\xfe{}", id="not-utf8"),
])
def test_undecodable_message(raw):
    with pytest.raises(Rejected) as info:
        decode_message(raw)
    assert info.value.reason.startswith("invalid JSON: ")
    assert info.value.raw == raw


def test_fast_path_and_general_path_agree(monkeypatch):
    """The canonical fast path must accept and produce exactly what the general path does."""
    import streams.ingest.normalize as n
    from tokenpulse.simulate import Simulator

    start = 1767621600
    items = list(Simulator(rate=200, seed=3).between(start, start + 20))[:2000]
    variants = [
        {**items[0], "org": "  "},
        {**items[1], "provider": "Anthropic"},
        {**items[2], "team": " ads "},
        {**items[3], "ts": items[3]["ts"] * 1000},
        {**items[4], "cost_usd": 0.5, "labels": {"env": "prod"}},
        {**items[5], "input_tokens": True},
        {**items[6], "cache_read_tokens": 10**9},
        {**items[7], "tool": None},
    ]
    fast = []
    for x in items + variants:
        try:
            fast.append(n.normalize(x, default_org="d"))
        except n.Rejected as exc:
            fast.append(exc.reason)
    monkeypatch.setattr(n, "_fast_canonical", lambda o, default_org: None)
    slow = []
    for x in items + variants:
        try:
            slow.append(n.normalize(x, default_org="d"))
        except n.Rejected as exc:
            slow.append(exc.reason)
    assert fast == slow
