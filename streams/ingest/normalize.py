"""Decode Kafka message bytes and map every accepted usage shape onto :class:`UsageEvent`.

Pure functions, no Faust or Kafka: the worker, the offline replay and the tests share them.

Producers do not agree on how to count cached prompt tokens, and that disagreement is the
most common source of wrong LLM bills. This module is the one place that resolves it, so
downstream code can rely on a single convention (OpenTelemetry's): ``input_tokens`` counts
*all* input tokens and ``cache_read_tokens`` / ``cache_write_tokens`` are parts of it.

=====================  =====================================================================
shape                  how cached tokens relate to the input count
=====================  =====================================================================
canonical              parts of ``input_tokens``
OpenAI ``usage``       ``prompt_tokens_details.cached_tokens`` is a subset of ``prompt_tokens``
                       (Responses API: ``input_tokens_details.cached_tokens`` of
                       ``input_tokens``)
Anthropic ``usage``    ``cache_read_input_tokens`` / ``cache_creation_input_tokens`` come *on
                       top of* ``input_tokens``
OpenTelemetry GenAI    ``gen_ai.usage.cache_*.input_tokens`` are parts of
                       ``gen_ai.usage.input_tokens``
LiteLLM spend log      OpenAI convention (LiteLLM folds cache tokens into ``prompt_tokens``)
=====================  =====================================================================
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated, Any

import msgspec
import orjson

from streams.common.dimensions import DEFAULT_ORG
from streams.common.text import first_unsafe
from streams.ingest.records import UsageEvent

__all__ = [
    "ONE_CANONICAL",
    "CanonicalEvent",
    "DecodeError",
    "Rejected",
    "canonical_event",
    "decode_canonical",
    "decode_message",
    "normalize",
    "tidy_canonical",
    "tidy_canonicals",
]

MAX_STR = 256  # characters of an event_id or a name (team, user, model, provider, tool, org, label key)
MAX_LABELS = 32  # entries of ``labels``; each value a string of at most MAX_STR, a number, a bool or null
MAX_INT = 2**63 - 1  # token counts: int64, as in OTLP, so every window sum of bounded events fits
_TWO_63 = 2**63
_TWO_64 = 2**64
_MAX_NUMBER_TEXT = 64  # a number or time sent as a string: longer is no number we take
_MAX_REASON_SNIPPET = 160

# 2000-01-01T00:00:00Z and 2100-01-01T00:00:00Z: anything outside is a unit mistake
# (ms sent as s, a zero default, a uint overflow), not a real LLM call.
_TS_MIN = 946_684_800.0
_TS_MAX = 4_102_444_800.0
_UTC = UTC

# Keys whose presence at the top level identifies a LiteLLM spend-log row or
# StandardLoggingPayload (neither uses canonical ``input_tokens``).
_LITELLM_MARKERS = ("prompt_tokens", "spend", "response_cost", "startTime", "endTime",
                    "custom_llm_provider", "request_id")

# One provider vocabulary for dashboards and for genai-prices' provider ids, whichever
# producer sent the event (OTel ``gen_ai.provider.name`` values, LiteLLM
# ``custom_llm_provider`` values).
_PROVIDER_ALIASES = {
    "gcp.gemini": "google",
    "gcp.vertex_ai": "google",
    "gcp.gen_ai": "google",
    "vertex_ai": "google",
    "vertex_ai_beta": "google",
    "gemini": "google",
    "aws.bedrock": "aws",
    "bedrock": "aws",
    "bedrock_converse": "aws",
    "azure.ai.openai": "azure",
    "azure.ai.inference": "azure",
    "azure_ai": "azure",
    "az.ai.openai": "azure",
    "az.ai.inference": "azure",
    "x_ai": "x-ai",
    "xai": "x-ai",
    "mistral_ai": "mistral",
    "mistralai": "mistral",
}

_OPENAI_MODEL = re.compile(r"^(gpt|chatgpt|o[1-9](?:$|-)|text-embedding|davinci|babbage|dall-e|whisper|tts)")


class Rejected(Exception):
    """An input that cannot become a UsageEvent; ``reason`` is short and meant for humans.

    ``raw`` carries the offending bytes when only part of a message was bad (one NDJSON
    line), so the caller can dead-letter exactly that part and keep the rest.
    """

    def __init__(self, reason: str, raw: bytes | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.raw = raw

    def __repr__(self) -> str:
        return f"Rejected({self.reason!r})"


# --------------------------------------------------------------------------- decoding


def decode_message(raw: bytes) -> list[Any]:
    """Split one Kafka message into its JSON items.

    A message may hold one object, an array of objects, or NDJSON. The whole-message parse
    is tried first because it is by far the common case and costs a single C call; lines
    are only split when that fails. A bad NDJSON line is returned as a :class:`Rejected`
    *instance* in its place so it does not poison the good lines around it.
    """
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return _decode_lines(raw, exc)
    if type(value) is list:
        return value
    return [value]


def _decode_lines(raw: bytes, whole_error: Exception) -> list[Any]:
    if isinstance(raw, str):
        raw = raw.encode("utf-8", "surrogatepass")
    elif not isinstance(raw, bytes):
        raw = bytes(raw)
    lines = [line for line in raw.split(b"\n") if line.strip()]
    if not lines:
        raise Rejected("invalid JSON: empty message", raw)
    if len(lines) == 1:
        raise Rejected(_invalid_json(whole_error), raw)
    items: list[Any] = []
    good = 0
    for line in lines:
        try:
            items.append(orjson.loads(line))
            good += 1
        except orjson.JSONDecodeError as exc:
            items.append(Rejected(_invalid_json(exc), line))
    if not good:
        # Nothing salvageable: treat it as one bad message rather than N bad lines.
        raise Rejected(_invalid_json(whole_error), raw)
    return items


def _invalid_json(exc: Exception) -> str:
    return "invalid JSON: " + str(exc)[:_MAX_REASON_SNIPPET]


# --------------------------------------------------------------------------- normalising


def normalize(obj: Any, *, default_org: str = DEFAULT_ORG) -> UsageEvent:
    """Map one decoded item, whatever its accepted shape, onto the canonical UsageEvent.

    ``cost_usd`` is carried over when the producer sent it and left ``None`` otherwise;
    pricing is a separate step (:mod:`streams.ingest.pricing`). Raises :class:`Rejected`.
    """
    if not isinstance(obj, dict):
        raise Rejected(f"event must be a JSON object, got {_json_type(obj)}")
    # Canonical first and without scanning keys: it is what our own SDKs send.
    if "input_tokens" in obj or "output_tokens" in obj:
        return _from_canonical(obj, default_org)
    usage = obj.get("usage")
    if isinstance(usage, dict):
        return _from_usage_envelope(obj, usage, default_org)
    if _looks_like_otel(obj):
        return _from_otel(obj, default_org)
    for key in _LITELLM_MARKERS:
        if key in obj:
            return _from_litellm(obj, default_org)
    if "usage" in obj and obj["usage"] is not None:
        raise Rejected(f"usage must be a JSON object, got {_json_type(obj['usage'])}")
    return _from_canonical(obj, default_org)


_PROVIDER_CACHE: dict[str, str] = {}


def _fast_canonical(o: dict[str, Any], default_org: str) -> UsageEvent | None:
    """The dict lane: a canonical event already decoded to a dict, every field of its exact type
    and tidy, mapped in one pass.

    Returns None as soon as anything needs the general path (which then gives the precise
    error or does the coercion), so both paths accept exactly the same events.

    Why a third lane beside the msgspec one (:func:`decode_canonical`) and the general one
    (:func:`_build`): the msgspec lane takes a message only when all of it is tidy canonical
    JSON (one event or an array). NDJSON messages, an array with one untidy element, an event
    with a key the struct does not know come here element by element, and here an event costs
    4.9 µs against 6.6 µs through ``_build`` (``python -m benchmarks.lanes``: ``ndjson`` vs
    ``ndjson-slow``, 2 cores, Dec 2026). The throughput benchmark (arrays of tidy events) never
    reaches it, so dropping it would keep that figure, but cost producers that send NDJSON or
    mixed batches a quarter of their speed. tests/streams/ingest/test_fast_lane.py and
    tests/streams/ingest/test_fuzz.py hold the three lanes to the same answers.
    """
    try:  # subscripts, not .get(): this runs for every event
        eid = o["event_id"]
        ts = o["ts"]
        team = o["team"]
        model = o["model"]
        user = o["user"]
        org = o["org"]
        provider = o["provider"]
        i = o["input_tokens"]
        out = o["output_tokens"]
    except KeyError:
        return None
    g = o.get
    tool = g("tool")
    cr = g("cache_read_tokens", 0)
    cw = g("cache_write_tokens", 0)
    cost = g("cost_usd")
    labels = g("labels")
    tts = type(ts)
    if not (
        type(eid) is str and type(team) is str and type(model) is str and type(user) is str
        and type(org) is str and type(provider) is str
        and (tts is float or tts is int)
        and type(i) is int and type(out) is int and type(cr) is int and type(cw) is int
        and (tool is None or type(tool) is str)
        and (cost is None or type(cost) is float)
        and (labels is None or type(labels) is dict)
    ):
        return None
    if not (
        0 < len(eid) <= MAX_STR and 0 < len(team) <= MAX_STR and 0 < len(model) <= MAX_STR
        and 0 < len(user) <= MAX_STR and 0 < len(org) <= MAX_STR and 0 < len(provider) <= MAX_STR
        and _TS_MIN <= ts < _TS_MAX
        and i >= 0 and out >= 0 and cr >= 0 and cw >= 0 and cr + cw <= i
        and i | out | cr | cw <= MAX_INT  # orjson reads integers up to 2^64-1
        and (cost is None or 0.0 <= cost < math.inf)
    ):
        return None
    # names that need stripping or normalising, or that break the rule, go the general way
    # (it gives the reason); the rule's verdict on a name is cached in _TIDY_NAMES
    if not _tidy_strings(eid, team, model, user, org):
        return None
    if tool and tool not in _TIDY_NAMES and not _tidy_names(tool):
        return None
    if labels and not _tidy_labels(labels):
        return None
    prov = _PROVIDER_CACHE.get(provider)
    if prov is None:
        prov = _provider_of(provider)
        if prov is None:
            return None
    return UsageEvent(
        eid, float(ts), org, team, user, prov, model, tool or "", i, out, cr, cw, cost,
        {} if labels is None else labels,
    )


# --------------------------------------------------------------------------- the fast lane
#
# Most messages are one canonical event (or an array of them) whose fields are already of
# their exact type and tidy: msgspec decodes and type-checks those straight into a struct, in
# C, without building a dict. Anything it does not take -- another shape, a coercion, an
# unknown key, a bad line -- goes the general way (decode_message + normalize), which gives
# the precise error. So the fast lane accepts a subset of what _fast_canonical accepts, with
# the same values; tests/streams/ingest/test_fast_lane.py holds the two to that on random input.

_Name = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_STR)]
# orjson turns integers beyond 64 bits into floats (which the general path then rounds), so
# those take the general path; ge=0 is the non-negativity check.
_Tokens = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]
_Cost = Annotated[float, msgspec.Meta(ge=0.0)]
# (msgspec bounds integers to int64 only: _tidy_labels checks the range orjson reads as integers)
_LabelValue = Annotated[str, msgspec.Meta(max_length=MAX_STR)] | int | float | bool | None
_Labels = Annotated[dict[Annotated[str, msgspec.Meta(max_length=MAX_STR)], _LabelValue], msgspec.Meta(max_length=MAX_LABELS)]


class CanonicalEvent(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """A canonical usage event as decoded by the fast lane; stands in for :class:`UsageEvent`
    wherever an event is priced and counted (same attribute names and meanings)."""

    event_id: _Name
    ts: float
    org: _Name
    team: _Name
    user: _Name
    provider: _Name
    model: _Name
    input_tokens: _Tokens
    output_tokens: _Tokens
    cache_read_tokens: _Tokens = 0
    cache_write_tokens: _Tokens = 0
    tool: str | None = None
    cost_usd: _Cost | None = None
    # Their values are not used in counting, but both lanes take the same labels: at most
    # MAX_LABELS, each a short string, a number or a literal (an integer beyond what orjson
    # reads as an integer goes the general way, which reads it as a float); the keys pass
    # the name rule in tidy_canonical.
    labels: _Labels | None = None


_CANONICAL = msgspec.json.Decoder(CanonicalEvent | list[CanonicalEvent])
ONE_CANONICAL = msgspec.json.Decoder(CanonicalEvent)
"""Decodes one canonical event (raises :data:`DecodeError`); :func:`tidy_canonical` must then
pass it before it is counted. :func:`canonical_event` does both."""
DecodeError = msgspec.DecodeError


def decode_canonical(raw: bytes) -> list[CanonicalEvent] | None:
    """The events of a message that is one tidy canonical event or an array of them, ready to
    price and count; None when any part of it needs the general path."""
    try:
        value = _CANONICAL.decode(raw)
    except DecodeError:
        return None
    if isinstance(value, list):
        return value if tidy_canonicals(value) else None
    return [value] if tidy_canonical(value) else None


def canonical_event(raw: bytes) -> CanonicalEvent | None:
    """:func:`decode_canonical` for a message that is a single event (the common case)."""
    try:
        ev = ONE_CANONICAL.decode(raw)
        return ev if tidy_canonical(ev) else None
    except Exception:  # noqa: BLE001 - DecodeError; anything else: the general path says what
        return None


def tidy_canonical(ev: CanonicalEvent) -> bool:
    """The checks msgspec's types do not express, as in _fast_canonical; normalises the
    provider in place (:func:`tidy_canonicals` of one event)."""
    return tidy_canonicals((ev,))


def tidy_canonicals(events: Sequence[CanonicalEvent]) -> bool:
    """Whether every event passes the checks msgspec's types do not express (as in
    _fast_canonical), in one loop: each event's provider normalised in place and its missing
    tool set to "", stopping at the first event that is not tidy. One call per chunk of the
    replay instead of one per event (python -m benchmarks.replay); the worker's lanes call it
    per event through :func:`tidy_canonical`."""
    names = _TIDY_NAMES
    providers = _PROVIDER_CACHE
    for ev in events:
        eid = ev.event_id
        team = ev.team
        model = ev.model
        user = ev.user
        org = ev.org
        if not (_TS_MIN <= ev.ts < _TS_MAX and ev.cache_read_tokens + ev.cache_write_tokens <= ev.input_tokens):
            return False
        # _tidy_strings, inline
        c0 = eid[0]
        c1 = eid[-1]
        if not (" " < c0 < "\x7f" and " " < c1 < "\x7f") and _strippable(c0 + c1):
            return False
        if not (team in names and model in names and user in names and org in names) and not _tidy_names(
            team, model, user, org
        ):
            return False
        tool = ev.tool
        if tool:
            if tool not in names and not _tidy_names(tool):
                return False
        elif tool is None:
            ev.tool = ""
        labels = ev.labels
        if labels and not _tidy_labels(labels):
            return False
        provider = ev.provider
        prov = providers.get(provider)
        if prov is None:
            prov = _provider_of(provider)
            if prov is None:
                return False
        ev.provider = prov
    return True


def _strippable(edges: str) -> bool:
    """Whether any of these first/last characters makes a string need the general path: one
    str.strip() removes (beyond ASCII that includes NBSP and the Unicode spaces) or a control
    character (the general path's reasons are exact for those)."""
    return any(c <= " " or c.isspace() for c in edges)


# Names already known to pass the name rule as they are (stripped, NFC, no unsafe character
# or separator, not too long). They repeat on nearly every event, so one set lookup each
# replaces checking them.
_TIDY_NAMES: set[str] = set()
_TIDY_NAMES_MAX = 1 << 16
SEPARATORS = ("|", "=")  # of series keys (team=ads|model=gpt-4o): refused in names


def _tidy_strings(eid: str, team: str, model: str, user: str, org: str) -> bool:
    """Whether none of an event's strings needs the general path (then both lanes keep them
    as sent): the id's first and last characters, and the names through :data:`_TIDY_NAMES`."""
    c0 = eid[0]
    c1 = eid[-1]
    if not (" " < c0 < "\x7f" and " " < c1 < "\x7f") and _strippable(c0 + c1):
        return False
    names = _TIDY_NAMES
    return (team in names and model in names and user in names and org in names) or _tidy_names(
        team, model, user, org
    )


def _tidy_names(*names: str) -> bool:
    """Whether every one of ``names`` passes the name rule as it is; remembers those that do."""
    for name in names:
        if name not in _TIDY_NAMES:
            if not (0 < len(name) <= MAX_STR and not _strippable(name[0] + name[-1])
                    and (name.isascii() or unicodedata.is_normalized("NFC", name))
                    and _name_problem(name) is None):
                return False
            _remember(name)
    return True


def _remember(name: str) -> None:
    if len(_TIDY_NAMES) >= _TIDY_NAMES_MAX:
        _TIDY_NAMES.clear()
    _TIDY_NAMES.add(name)


def _name_problem(s: str) -> str | None:
    """What is wrong with ``s`` (stripped, NFC) as a name, or None: the part of the reason
    after the field's name."""
    if len(s) > MAX_STR:
        return f"is longer than {MAX_STR} characters ({len(s)})"
    i = first_unsafe(s)
    if i >= 0:
        return (f"contains a control, format or line-separator character (U+{ord(s[i]):04X}) at "
                f"position {i}: names may not hold invisible or terminal-control characters")
    for sep in SEPARATORS:
        if sep in s:
            return f"contains {sep!r}, which separates series keys (team=ads|model=gpt-4o)"
    return None


def _tidy_labels(labels: dict[str, Any]) -> bool:
    """Whether ``labels`` pass the labels rule as they are (the general path's
    :func:`_labels` would keep them unchanged)."""
    if len(labels) > MAX_LABELS:
        return False
    names = _TIDY_NAMES
    for k, v in labels.items():
        if k not in names and not (type(k) is str and _tidy_names(k)):
            return False
        t = type(v)
        if t is str:
            if len(v) > MAX_STR:
                return False
        elif t is int:
            if not -_TWO_63 <= v < _TWO_64:
                return False
        elif t is float:
            if not math.isfinite(v):
                return False
        elif not (t is bool or v is None):
            return False
    return True


def _provider_of(provider: str) -> str | None:
    """The normalised provider name (cached), or None when it needs the general path (only
    whitespace, or a name the rule refuses: the general path says why)."""
    try:
        prov = _provider_name(provider)
    except Rejected:
        return None
    if prov is not None and len(_PROVIDER_CACHE) < 1024:
        _PROVIDER_CACHE[provider] = prov
    return prov


def _provider_name(v: Any) -> str | None:
    """The provider as a name (the rule), lower-cased and mapped onto one vocabulary; None
    when absent (then it is inferred from the model)."""
    s = _name(v, "provider")
    if s is None:
        return None
    low = s.lower()
    if not low.isascii():
        low = unicodedata.normalize("NFC", low)
        why = _name_problem(low)  # lower() can lengthen a name ("İ" is two characters lower-cased)
        if why is not None:
            raise Rejected(f"provider {why}")
    return _PROVIDER_ALIASES.get(low, low)


def _from_canonical(o: dict[str, Any], default_org: str) -> UsageEvent:
    fast = _fast_canonical(o, default_org)
    if fast is not None:
        return fast
    g = o.get
    inp = g("input_tokens")
    out = g("output_tokens")
    cost = g("cost_usd")
    if inp is None and out is None and cost is None:
        raise Rejected("missing token counts: need input_tokens/output_tokens, a usage "
                       "object, or cost_usd")
    return _build(
        event_id=g("event_id"), ts=g("ts"), org=g("org"), team=g("team"), user=g("user"),
        provider=g("provider"), model=g("model"), tool=g("tool"),
        inp=inp, out=out, cache_read=g("cache_read_tokens"), cache_write=g("cache_write_tokens"),
        cost=cost, labels=g("labels"), default_org=default_org,
    )


def _from_usage_envelope(o: dict[str, Any], usage: dict[str, Any], default_org: str) -> UsageEvent:
    g = o.get
    provider = g("provider")
    inp, out, cr, cw = _usage_tokens(usage, provider)
    return _build(
        event_id=g("event_id"), ts=g("ts"), org=g("org"), team=g("team"), user=g("user"),
        provider=provider, model=g("model"), tool=g("tool"),
        inp=inp, out=out, cache_read=cr, cache_write=cw,
        cost=g("cost_usd"), labels=g("labels"), default_org=default_org,
    )


def _usage_tokens(u: dict[str, Any], provider: Any) -> tuple[int, int, int, int]:
    """Turn a provider-native ``usage`` object into canonical (input, output, cr, cw)."""
    if "prompt_tokens" in u:
        # OpenAI Chat Completions, and LiteLLM's OpenAI-shaped usage for every provider.
        # LiteLLM also copies Anthropic's cache_* keys here, but has already folded them
        # into prompt_tokens, so they are subsets, never addends.
        inp = _count(u["prompt_tokens"], "usage.prompt_tokens")
        out = _count(u.get("completion_tokens"), "usage.completion_tokens")
        details = u.get("prompt_tokens_details")
        cached = details.get("cached_tokens") if isinstance(details, dict) else None
        if cached is None:
            cached = u.get("cache_read_input_tokens")
        cr = _count(cached, "usage.prompt_tokens_details.cached_tokens")
        cw = _count(u.get("cache_creation_input_tokens"), "usage.cache_creation_input_tokens")
        return inp, out, cr, cw

    anthropic = "cache_read_input_tokens" in u or "cache_creation_input_tokens" in u
    if not anthropic and "input_tokens_details" not in u and isinstance(provider, str):
        anthropic = provider.strip().lower() == "anthropic"
    base = _count(u.get("input_tokens"), "usage.input_tokens")
    out = _count(u.get("output_tokens"), "usage.output_tokens")
    if anthropic:
        # Anthropic bills cache reads/writes on top of input_tokens; canonical input is the sum.
        cr = _count(u.get("cache_read_input_tokens"), "usage.cache_read_input_tokens")
        cw = _count(u.get("cache_creation_input_tokens"), "usage.cache_creation_input_tokens")
        return base + cr + cw, out, cr, cw
    # OpenAI Responses API: cached tokens are already inside input_tokens.
    details = u.get("input_tokens_details")
    cached = details.get("cached_tokens") if isinstance(details, dict) else None
    cr = _count(cached, "usage.input_tokens_details.cached_tokens")
    return base, out, cr, 0


# ----- OpenTelemetry GenAI


def _looks_like_otel(o: dict[str, Any]) -> bool:
    attrs = o.get("attributes")
    if isinstance(attrs, dict) and any(k.startswith("gen_ai.") for k in attrs):
        return True
    if isinstance(attrs, list):
        return True
    return any(k.startswith("gen_ai.") for k in o)


def _otlp_value(v: Any) -> Any:
    """Unwrap an OTLP/JSON AnyValue (``{"intValue": "12"}``) into a plain value.

    int64 stays a string there (JSON numbers lose precision); _count/_ts accept that.
    """
    if isinstance(v, dict) and len(v) == 1:
        (kind, inner), = v.items()
        if kind in ("stringValue", "intValue", "doubleValue", "boolValue"):
            return inner
    return v


def _attr_dict(attrs: Any) -> dict[str, Any]:
    if isinstance(attrs, dict):
        return attrs
    if isinstance(attrs, list):
        # OTLP/JSON form: [{"key": "...", "value": {"intValue": "12"}}, ...]
        out: dict[str, Any] = {}
        for kv in attrs:
            if isinstance(kv, dict) and isinstance(kv.get("key"), str):
                out[kv["key"]] = _otlp_value(kv.get("value"))
        return out
    return {}


def _from_otel(o: dict[str, Any], default_org: str) -> UsageEvent:
    attrs = _attr_dict(o.get("attributes"))
    resource = o.get("resource")
    res_attrs = _attr_dict(resource.get("attributes")) if isinstance(resource, dict) else {}
    # Span attributes are the most specific, then the object itself, then the resource.
    scopes = (attrs, o, res_attrs)

    def pick(*keys: str) -> Any:
        for scope in scopes:
            for k in keys:
                v = scope.get(k)
                if v is not None and v != "":
                    return v
        return None

    inp = pick("gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens")
    out = pick("gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens")
    if inp is None and out is None:
        raise Rejected("missing token counts: no gen_ai.usage.input_tokens or "
                       "gen_ai.usage.output_tokens")

    event_id = pick("event_id")
    if event_id is None:
        span_id = pick("span_id", "spanId")
        trace_id = pick("trace_id", "traceId")
        # only ids are joined (formatting an arbitrary value could recurse, or be huge)
        if _is_id(span_id) and _is_id(trace_id):
            event_id = f"{trace_id}:{span_id}"
        else:
            event_id = span_id

    ts = pick("ts")
    if ts is None:
        nanos = pick("time_unix_nano", "timeUnixNano", "end_time_unix_nano", "endTimeUnixNano",
                     "start_time_unix_nano", "startTimeUnixNano")
        if nanos is not None:
            ts = _nanos_to_seconds(nanos)

    labels = o.get("labels")
    return _build(
        event_id=event_id, ts=ts,
        org=pick("org", "tokenpulse.org"),
        team=pick("team", "tokenpulse.team"),
        user=pick("user", "tokenpulse.user", "user.id", "enduser.id"),
        provider=pick("provider", "gen_ai.provider.name", "gen_ai.system"),
        model=pick("model", "gen_ai.request.model", "gen_ai.response.model"),
        tool=pick("tool", "tokenpulse.tool", "service.name"),
        inp=inp, out=out,
        cache_read=pick("gen_ai.usage.cache_read.input_tokens"),
        cache_write=pick("gen_ai.usage.cache_creation.input_tokens"),
        cost=pick("cost_usd", "tokenpulse.cost_usd"), labels=labels, default_org=default_org,
    )


def _is_id(v: Any) -> bool:
    return type(v) is str or (type(v) is int and -_TWO_63 <= v < _TWO_64)


def _nanos_to_seconds(v: Any) -> float:
    n = _count(v, "time_unix_nano")
    return n / 1e9


# ----- LiteLLM


def _from_litellm(o: dict[str, Any], default_org: str) -> UsageEvent:
    g = o.get
    md = g("metadata")
    if not isinstance(md, dict):
        md = {}
    mg = md.get

    inp = _count(g("prompt_tokens"), "prompt_tokens")
    out = _count(g("completion_tokens"), "completion_tokens")
    usage_obj = mg("usage_object")
    cr_raw = cw_raw = None
    if isinstance(usage_obj, dict):
        details = usage_obj.get("prompt_tokens_details")
        if isinstance(details, dict):
            cr_raw = details.get("cached_tokens")
        if cr_raw is None:
            cr_raw = usage_obj.get("cache_read_input_tokens")
        cw_raw = usage_obj.get("cache_creation_input_tokens")
    if cr_raw is None:
        cr_raw = g("cache_read_input_tokens")
    if cw_raw is None:
        cw_raw = g("cache_creation_input_tokens")

    cost = g("spend")
    if cost is None:
        cost = g("response_cost")
    # LiteLLM logs 0 when it has no price for the model (self-hosted/internal models). Keep
    # the event unpriced so our overrides can price it rather than trusting that zero.
    if cost is not None and not isinstance(cost, bool) and cost == 0 and (inp or out):
        cost = None

    model = g("model")
    provider = g("custom_llm_provider")
    if provider in (None, "") and isinstance(model, str) and "/" in model:
        provider = model.split("/", 1)[0]

    ts = g("endTime")
    if ts in (None, ""):
        ts = g("startTime")

    team = _first(mg("user_api_key_team_alias"), g("team_id"), mg("user_api_key_team_id"), g("team"))
    user = _first(g("user"), mg("user_api_key_user_id"), g("end_user"))
    org = _first(g("org"), mg("user_api_key_org_id"), g("organization_id"))
    labels = g("labels")
    return _build(
        event_id=_first(g("request_id"), g("id")), ts=ts, org=org, team=team, user=user,
        provider=provider, model=model, tool=g("tool"),
        inp=inp, out=out, cache_read=cr_raw, cache_write=cw_raw,
        cost=cost, labels=labels, default_org=default_org,
    )


def _first(*values: Any) -> Any:
    for v in values:
        if v is not None and v != "":
            return v
    return None


# --------------------------------------------------------------------------- validation


def _build(
    *, event_id: Any, ts: Any, org: Any, team: Any, user: Any, provider: Any, model: Any,
    tool: Any, inp: Any, out: Any, cache_read: Any, cache_write: Any, cost: Any, labels: Any,
    default_org: str,
) -> UsageEvent:
    """Validate mapped fields and construct the event; the single gate every shape passes."""
    eid = _str(event_id, "event_id")
    if eid is None:
        raise Rejected("missing field 'event_id'")
    if ts is None or ts == "":
        raise Rejected("missing field 'ts'")
    when = _ts(ts)
    team_s = _name(team, "team")
    if team_s is None:
        raise Rejected("missing field 'team'")
    model_s = _name(model, "model")
    if model_s is None:
        raise Rejected("missing field 'model'")

    i = _count(inp, "input_tokens")
    o = _count(out, "output_tokens")
    cr = _count(cache_read, "cache_read_tokens")
    cw = _count(cache_write, "cache_write_tokens")
    if cr + cw > i:
        raise Rejected(
            f"cache_read_tokens ({cr}) + cache_write_tokens ({cw}) exceed input_tokens ({i}); "
            "input_tokens must include cached tokens"
        )

    prov = _provider_name(provider) or _infer_provider(model_s)
    labels = _labels(labels)

    return UsageEvent(
        event_id=eid,
        ts=when,
        org=_name(org, "org") or default_org,
        team=team_s,
        user=_name(user, "user") or "unknown",
        provider=prov,
        model=model_s,
        tool=_name(tool, "tool") or "",
        input_tokens=i,
        output_tokens=o,
        cache_read_tokens=cr,
        cache_write_tokens=cw,
        cost_usd=None if cost is None else _cost(cost),
        labels=labels,
    )


def _name(v: Any, field: str) -> str | None:
    """A name (team, user, model, provider, tool, org, label key) by the one rule of every
    lane: stripped, NFC-normalised, at most :data:`MAX_STR` characters, no control, format
    (bidi, zero-width, BOM) or line-separator character, no ``|`` or ``=`` (they separate
    series keys). None when absent or empty; :class:`Rejected` naming ``field`` otherwise.
    Names sent as integers are taken as their digits (as ids are)."""
    if v is None:
        return None
    t = type(v)
    if t is str:
        if v in _TIDY_NAMES:
            return v
        s = v.strip()
    elif t is int and -_TWO_63 <= v < _TWO_64:
        s = str(v)
    else:
        raise Rejected(f"{field} must be a string, got {_json_type(v)}")
    if not s:
        return None
    if len(s) > 4 * MAX_STR:  # not worth normalising: NFC shortens a name by a few characters at most
        raise Rejected(f"{field} is longer than {MAX_STR} characters ({len(s)})")
    if not s.isascii():
        s = unicodedata.normalize("NFC", s)
    why = _name_problem(s)
    if why is not None:
        raise Rejected(f"{field} {why}")
    _remember(s)
    return s


def _labels(v: Any) -> dict[str, Any]:
    """Labels by the labels rule: a JSON object of at most :data:`MAX_LABELS` entries whose
    keys are names and whose values are strings of at most :data:`MAX_STR` characters,
    numbers, booleans or null."""
    if v is None:
        return {}
    if not isinstance(v, dict):
        raise Rejected(f"labels must be a JSON object, got {_json_type(v)}")
    if len(v) > MAX_LABELS:
        raise Rejected(f"labels has {len(v)} entries, at most {MAX_LABELS}")
    out: dict[str, Any] = {}
    for k, val in v.items():
        key = _name(k, "labels key") if type(k) is str else None
        if key is None:
            raise Rejected(f"labels key must be a non-empty string, got {_short(k)}")
        if key in out:
            raise Rejected(f"labels key {_short(key)} is given twice (after normalising)")
        t = type(val)
        if t is str:
            if len(val) > MAX_STR:
                raise Rejected(f"labels.{key} is longer than {MAX_STR} characters ({len(val)})")
        elif t is int:
            if not -_TWO_63 <= val < _TWO_64:
                raise Rejected(f"labels.{key} is out of range, got {_short(val)}")
        elif t is float:
            if not math.isfinite(val):
                raise Rejected(f"labels.{key} must be a finite number, got {_short(val)}")
        elif not (t is bool or val is None):
            raise Rejected(f"labels.{key} must be a string, number, boolean or null, got {_json_type(val)}")
        out[key] = val
    return out


def _str(v: Any, name: str) -> str | None:
    """Stripped non-empty string, or None when absent: the event id (not a name: it is never
    shown, keyed on or split). Ids sent as numbers are accepted."""
    if v is None:
        return None
    t = type(v)
    if t is str:
        s = v.strip()
    elif t is int and -_TWO_63 <= v < _TWO_64:  # a 64-bit id; str() of a huge int raises
        s = str(v)
    else:
        raise Rejected(f"{name} must be a string, got {_json_type(v)}")
    if not s:
        return None
    if len(s) > MAX_STR:
        raise Rejected(f"{name} is longer than {MAX_STR} characters ({len(s)})")
    return s


def _count(v: Any, name: str) -> int:
    """A token count: a non-negative integer up to 2^63-1; missing means 0.

    Whole floats (``12.0``, common after a JS or pandas round trip) and integer strings
    (OTLP/JSON encodes int64 as strings) are accepted; bools, fractions, NaN are not. The
    bound is checked before any conversion, so a 5,000-digit string or ``1e30`` is a reject,
    never Python's int-string limit or a sum too big for the windows.
    """
    t = type(v)
    if t is int:
        if 0 <= v <= MAX_INT:
            return v
        if v > MAX_INT:
            raise Rejected(f"{name} is too large (at most 2^63-1), got {_short(v)}")
    elif v is None:
        return 0
    elif t is float:
        if v >= 0 and v.is_integer():
            if v < _TWO_63:
                return int(v)
            raise Rejected(f"{name} is too large (at most 2^63-1), got {_short(v)}")
    elif t is str:
        s = v.strip()
        if s.isdigit() and s.isascii():
            # the length first: int() of a long string raises (Python's int-string limit)
            if len(s) <= 19 and int(s) <= MAX_INT:
                return int(s)
            raise Rejected(f"{name} is too large (at most 2^63-1), got {_short(v)}")
    raise Rejected(f"{name} must be a non-negative integer, got {_short(v)}")


def _cost(v: Any) -> float:
    t = type(v)
    c = math.nan
    if t is float:
        c = v
    elif t is int:
        if abs(v) <= MAX_INT:  # float() of a huge int raises
            c = float(v)
    elif t is str and len(v) <= _MAX_NUMBER_TEXT:
        try:
            c = float(v)
        except ValueError:
            pass
    if not (c >= 0 and c != math.inf):
        raise Rejected(f"cost_usd must be a finite non-negative number, got {_short(v)}")
    return c


def _ts(v: Any) -> float:
    """Event time as epoch seconds (UTC), from RFC 3339 or epoch s/ms/µs/ns."""
    t = type(v)
    if t is float:
        secs = v
    elif t is int:
        secs = float(v) if abs(v) <= MAX_INT else math.inf  # float() of a huge int raises
    elif t is str:
        secs = _parse_ts_str(v)
    else:
        raise Rejected(f"ts must be an RFC 3339 string or epoch number, got {_json_type(v)}")
    if secs != secs:
        raise Rejected("ts must be a finite number, got NaN")
    # Scale by magnitude: a present-day time in ms is ~1.7e12, in µs ~1.7e15, in ns ~1.7e18,
    # none of which is a plausible time in seconds.
    if secs > 1e17:
        secs /= 1e9
    elif secs > 1e14:
        secs /= 1e6
    elif secs > 1e11:
        secs /= 1e3
    if not (_TS_MIN <= secs < _TS_MAX):
        raise Rejected(f"ts out of range (must be between years 2000 and 2100), got {_short(v)}")
    return secs


def _parse_ts_str(s: str) -> float:
    s = s.strip()
    if len(s) > _MAX_NUMBER_TEXT:
        raise Rejected(f"ts is not RFC 3339, got {_short(s)}")
    try:
        return float(s)
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(s)
        if dt.tzinfo is None:
            # LiteLLM's SpendLogs stores naive UTC timestamps; naive means UTC everywhere here.
            dt = dt.replace(tzinfo=_UTC)
        return dt.timestamp()
    except (ValueError, OverflowError):  # OverflowError: year 1 or 9999 shifted by its offset
        raise Rejected(f"ts is not RFC 3339, got {_short(s)}") from None


def _infer_provider(model: str) -> str:
    name = model.rsplit("/", 1)[-1].lower()
    if name.startswith("claude"):
        return "anthropic"
    if name.startswith("gemini"):
        return "google"
    if _OPENAI_MODEL.match(name):
        return "openai"
    return "unknown"


def _json_type(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, str):
        return "str"
    if isinstance(v, (list, tuple)):
        return "list"
    if isinstance(v, dict):
        return "object"
    return type(v).__name__


def _short(v: Any) -> str:
    """At most 60 characters showing a value in a reason; never raises (a huge int, a deep or
    long container, a 10 MB string are summarised before anything is formatted)."""
    t = type(v)
    if t is str:
        r = repr(v[:61])
    elif t is int:
        r = repr(v) if abs(v) < 10**60 else f"an integer of {v.bit_length()} bits"
    elif t is float or t is bool or v is None:
        r = repr(v)
    elif t is list or t is dict:
        return f"{_json_type(v)} of {len(v)} items"
    else:
        return _json_type(v)
    return r if len(r) <= 60 else r[:57] + "..."
