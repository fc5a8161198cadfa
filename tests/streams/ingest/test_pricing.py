"""Pricing: override arithmetic, genai-prices conventions, cache discounts, unknown models.

The fast per-model rates must agree with ``genai_prices.calc_price`` (the slow, authoritative
path), so several tests price the same usage both ways.
"""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from genai_prices import Usage, calc_price

from streams.ingest.normalize import normalize
from streams.ingest.pricing import Pricer, Rates
from streams.ingest.records import UsageEvent

T0 = 1_748_779_200.0  # 2025-06-01T12:00:00Z


def ev(model="claude-sonnet-4", provider="anthropic", i=0, o=0, cr=0, cw=0, ts=T0, cost=None):
    return UsageEvent(event_id="e", ts=ts, org="acme", team="search", user="alice", provider=provider,
                      model=model, input_tokens=i, output_tokens=o, cache_read_tokens=cr,
                      cache_write_tokens=cw, cost_usd=cost)


def reference(e: UsageEvent) -> float:
    """genai-prices' own answer; its input_tokens is the total, like ours."""
    usage = Usage(input_tokens=e.input_tokens, output_tokens=e.output_tokens,
                  cache_read_tokens=e.cache_read_tokens, cache_write_tokens=e.cache_write_tokens)
    when = datetime.fromtimestamp(e.ts, timezone.utc)
    return float(calc_price(usage, model_ref=e.model, provider_id=e.provider,
                            genai_request_timestamp=when).total_price)


# --------------------------------------------------------------------------- overrides

OVERRIDES = {
    "acme-llm-70b": {"input": 0.5, "output": 1.5, "cache_read": 0.05, "cache_write": 0.625},
    "acme-embed": {"input": 0.02},
    "vllm/llama-3.1-8b": {"input": 0.1, "output": 0.2},
    "llama-3.1-8b": {"input": 9.0, "output": 9.0},
}


@pytest.mark.parametrize("event, expected", [
    # 1M uncached input at 0.5 + 1M output at 1.5
    (ev("acme-llm-70b", "internal", i=1_000_000, o=1_000_000), 2.0),
    # input 4M of which 2M cache reads, 1M cache writes: 1M*0.5 + 2M*0.05 + 1M*0.625 = 1.225
    (ev("acme-llm-70b", "internal", i=4_000_000, cr=2_000_000, cw=1_000_000), 1.225),
    (ev("acme-llm-70b", "internal", i=1_000, o=100, cr=600, cw=200),
     (200 * 0.5 + 600 * 0.05 + 200 * 0.625 + 100 * 1.5) / 1e6),
    # no cache rates given: cached tokens bill as plain input; no output rate: output is free
    (ev("acme-embed", "internal", i=2_000_000, cr=1_000_000, o=5), 0.04),
    # "provider/model" beats the bare model name
    (ev("llama-3.1-8b", "vllm", i=1_000_000, o=1_000_000), 0.3),
    (ev("llama-3.1-8b", "ollama", i=1_000_000), 9.0),
    (ev("acme-llm-70b", "internal"), 0.0),
])
def test_override_arithmetic(event, expected):
    assert Pricer(OVERRIDES).price(event) == expected


def test_override_beats_genai_prices():
    p = Pricer({"gpt-4o": {"input": 1.0, "output": 1.0}})
    assert p.price(ev("gpt-4o", "openai", i=1_000_000)) == 1.0


@pytest.mark.parametrize("spec, message", [
    ({"input": 1, "ouput": 2}, "unknown keys ['ouput']"),
    ({"input": -1}, "input must be a finite non-negative number"),
    ({"input": float("nan")}, "input must be a finite non-negative number"),
    ({"input": "1"}, "input must be a finite non-negative number"),
    ({"cache_read": 0.1}, "needs at least 'input' or 'output'"),
])
def test_bad_override_fails_loudly(spec, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        Pricer({"m": spec})


# --------------------------------------------------------------------------- genai-prices


@pytest.mark.parametrize("model, provider", [("claude-sonnet-4", "anthropic"), ("gpt-4o", "openai")])
def test_known_model_cache_reads_cheaper_than_input(model, provider):
    rates = Pricer().rates_for(provider, model, T0)
    assert rates is not None
    assert 0 < rates.cache_read < rates.input < rates.output


def test_claude_sonnet_4_rates_and_cost():
    rates = Pricer().rates_for("anthropic", "claude-sonnet-4", T0)
    assert (rates.input, rates.output, rates.cache_read, rates.cache_write) == (3.0, 15.0, 0.3, 3.75)
    # 2000 uncached*3 + 9000 reads*0.3 + 1000 writes*3.75 + 800 out*15, per million
    e = ev(i=12_000, o=800, cr=9_000, cw=1_000)
    assert Pricer().price(e) == pytest.approx(0.02445, rel=1e-12)


@pytest.mark.parametrize("model, provider", [
    ("claude-sonnet-4", "anthropic"),
    ("claude-3-5-haiku-latest", "anthropic"),
    ("gpt-4o", "openai"),
    ("gpt-4.1-mini", "openai"),
])
def test_cached_event_cheaper_than_same_tokens_uncached(model, provider):
    p = Pricer()
    cached = p.price(ev(model, provider, i=100_000, o=1_000, cr=90_000))
    uncached = p.price(ev(model, provider, i=100_000, o=1_000))
    assert 0 < cached < uncached


@pytest.mark.parametrize("model, provider, i, o, cr, cw, ts", [
    ("claude-sonnet-4-20250514", "anthropic", 12_000, 800, 9_000, 1_000, T0),
    ("claude-3-5-haiku-latest", "anthropic", 5_000, 100, 0, 4_000, T0),
    ("gpt-4o", "openai", 2_000, 300, 1_536, 0, T0),
    ("gpt-4o-mini", None, 2_000, 300, 1_536, 0, T0),
    # tiered: over 200k input the whole request moves to the higher tier, output included
    ("gemini-2.5-pro", "google", 150_000, 2_000, 100_000, 0, T0),
    ("gemini-2.5-pro", "google", 300_000, 2_000, 250_000, 0, T0),
    # o3's price dropped on 2025-06-10: the event time picks the price
    ("o3", "openai", 10_000, 1_000, 5_000, 0, 1_748_000_000.0),
    ("o3", "openai", 10_000, 1_000, 5_000, 0, 1_750_000_000.0),
    # DeepSeek off-peak discount depends on the time of day (UTC)
    ("deepseek-chat", "deepseek", 10_000, 1_000, 5_000, 0, 1_748_779_200.0),  # 12:00
    ("deepseek-chat", "deepseek", 10_000, 1_000, 5_000, 0, 1_748_800_800.0),  # 18:00
])
def test_fast_rates_match_genai_prices(model, provider, i, o, cr, cw, ts):
    e = ev(model, provider or "unknown", i=i, o=o, cr=cr, cw=cw, ts=ts)
    expected = reference(ev(model, provider, i=i, o=o, cr=cr, cw=cw, ts=ts))
    assert expected > 0
    assert Pricer().price(e) == pytest.approx(expected, rel=1e-12)


def test_time_dependent_prices_really_differ():
    p = Pricer()
    before = p.price(ev("o3", "openai", i=10_000, ts=1_748_000_000.0))
    after = p.price(ev("o3", "openai", i=10_000, ts=1_750_000_000.0))
    assert after < before
    peak = p.price(ev("deepseek-chat", "deepseek", i=10_000, ts=1_748_779_200.0))
    off_peak = p.price(ev("deepseek-chat", "deepseek", i=10_000, ts=1_748_800_800.0))
    assert off_peak < peak


@pytest.mark.parametrize("model, provider", [
    ("gpt-4o", "unknown"),          # provider not sent: matched on the model name
    ("gpt-4o", "some-gateway"),     # provider genai-prices does not know
    ("openai/gpt-4o", "openai"),    # router-style prefixed name
])
def test_lookup_fallbacks(model, provider):
    p = Pricer()
    assert p.price(ev(model, provider, i=1_000_000)) == pytest.approx(2.5)
    assert p.unpriced == {}


# --------------------------------------------------------------------------- bookkeeping


def test_unknown_model_costs_zero_and_is_counted():
    p = Pricer()
    for _ in range(3):
        assert p.price(ev("acme-secret-model", "internal", i=1_000, o=10)) == 0.0
    assert p.price(ev("other-mystery", "unknown", i=1)) == 0.0
    assert p.unpriced == {"acme-secret-model": 3, "other-mystery": 1}


def test_producer_cost_wins_and_is_not_counted():
    p = Pricer({"gpt-4o": {"input": 100.0}})
    assert p.price(ev("gpt-4o", "openai", i=1_000_000, cost=0.123)) == 0.123
    assert p.price(ev("nobody-knows", "x", i=1, cost=0.0)) == 0.0
    assert p.unpriced == {}


def test_rates_for_unknown_is_none():
    assert Pricer().rates_for("internal", "nope") is None
    assert isinstance(Pricer(OVERRIDES).rates_for("internal", "acme-llm-70b"), Rates)


# --------------------------------------------------------------------------- end to end


@pytest.mark.parametrize("obj", [
    # the same Anthropic call reported three ways must cost the same
    {"event_id": "e", "ts": T0, "team": "t", "provider": "anthropic", "model": "claude-sonnet-4",
     "usage": {"input_tokens": 50, "output_tokens": 400, "cache_read_input_tokens": 10_000,
               "cache_creation_input_tokens": 2_000}},
    {"event_id": "e", "ts": T0, "team": "t", "provider": "anthropic", "model": "claude-sonnet-4",
     "input_tokens": 12_050, "output_tokens": 400, "cache_read_tokens": 10_000, "cache_write_tokens": 2_000},
    {"span_id": "e", "time_unix_nano": int(T0 * 1e9), "team": "t",
     "attributes": {"gen_ai.provider.name": "anthropic", "gen_ai.request.model": "claude-sonnet-4",
                    "gen_ai.usage.input_tokens": 12_050, "gen_ai.usage.output_tokens": 400,
                    "gen_ai.usage.cache_read.input_tokens": 10_000,
                    "gen_ai.usage.cache_creation.input_tokens": 2_000}},
])
def test_same_call_in_every_shape_costs_the_same(obj):
    # 50*3 + 10000*0.3 + 2000*3.75 + 400*15 = 16650 micro-dollars
    assert Pricer().price(normalize(obj)) == pytest.approx(0.01665, rel=1e-12)
