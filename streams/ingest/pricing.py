"""Price canonical usage events in USD.

Order of authority: a ``cost_usd`` the producer already sent, then the policy's per-model
overrides (internal models at internal cost), then the genai-prices bundled snapshot.

``genai_prices.calc_price`` validates and walks its whole unit registry on every call
(tens of microseconds to milliseconds), far too slow for the stream. So each
(provider, model) is resolved once into plain float rates and every later event is a
handful of multiplications. The arithmetic mirrors genai-prices' own rules, which the
tests check against ``calc_price``:

* its ``input_tokens`` is the *total* input, like ours, and cache reads/writes are carved
  out of it and billed at their own rates;
* a cache rate the model lacks is not carved out, i.e. those tokens bill at the input rate;
* tiered prices are "cliffs": once total input tokens exceed a tier's start, that tier's
  rate applies to *all* tokens of that kind, output included;
* prices may change over time (``ConditionalPrice``); the event time picks the price.

Prices never come from the network: only the snapshot shipped with the package is used.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from streams.ingest.records import UsageEvent

__all__ = ["Pricer", "Rates"]

_PER_MTOK = 1_000_000.0
_OVERRIDE_KEYS = frozenset({"input", "output", "cache_read", "cache_write"})
# Resolved-rate and unpriced-model tables are keyed by producer-supplied strings; cap them
# so a producer spraying random model names cannot grow the worker without bound.
_MAX_CACHE = 4096
_MAX_UNPRICED = 1000
_OTHER = "<other>"

# A rate is a base price per million tokens plus (start, price) tiers, ascending.
_Tiers = tuple[tuple[int, float], ...]


@dataclass(frozen=True, slots=True)
class Rates:
    """USD per million tokens for one model; cache rates already defaulted."""

    input: float
    output: float
    cache_read: float
    cache_write: float
    input_tiers: _Tiers = ()
    output_tiers: _Tiers = ()
    cache_read_tiers: _Tiers = ()
    cache_write_tiers: _Tiers = ()
    per_request: float = 0.0  # USD per call, for the few models billed per request

    def cost(self, ev: UsageEvent) -> float:
        i = ev.input_tokens
        cr = ev.cache_read_tokens
        cw = ev.cache_write_tokens
        if self.input_tiers or self.output_tiers or self.cache_read_tiers or self.cache_write_tiers:
            r_in = _tier(self.input, self.input_tiers, i)
            r_out = _tier(self.output, self.output_tiers, i)
            r_cr = _tier(self.cache_read, self.cache_read_tiers, i)
            r_cw = _tier(self.cache_write, self.cache_write_tiers, i)
        else:
            r_in, r_out, r_cr, r_cw = self.input, self.output, self.cache_read, self.cache_write
        # One division at the end keeps exact-looking rates exact for round token counts.
        micro = (i - cr - cw) * r_in + cr * r_cr + cw * r_cw + ev.output_tokens * r_out
        return micro / _PER_MTOK + self.per_request


def _tier(base: float, tiers: _Tiers, total_input: int) -> float:
    rate = base
    for start, price in tiers:
        if total_input > start:
            rate = price
        else:
            break
    return rate


class Pricer:
    """Computes ``cost_usd`` for events that arrive without one.

    ``overrides`` maps a model name, or ``"provider/model"`` (checked first, for when one
    name means different things at different providers), to USD per million tokens under
    ``input``, ``output``, ``cache_read``, ``cache_write``. Missing cache rates default to
    the input rate: an internal model without a prompt cache bills cached tokens as input.

    Models with no known price cost 0.0 and are counted in :attr:`unpriced` (model ->
    events) for the worker to expose; pricing never raises on data.
    """

    def __init__(self, overrides: Mapping[str, Mapping[str, float]] | None = None) -> None:
        self._overrides: dict[str, Rates] = {
            str(name).strip(): _override_rates(name, spec) for name, spec in (overrides or {}).items()
        }
        self._resolved: dict[tuple[str, str], _Resolved | None] = {}
        self.unpriced: dict[str, int] = {}
        # IngestPartition.add_events' cache of flat_rates: model -> (provider, flat_rates of
        # both), which never change for a pricer (at most 4096 models, then it starts over)
        self.flat_of_model: dict[str, tuple[str, tuple[float, float, float, float, float] | None]] = {}

    def price(self, ev: UsageEvent) -> float:
        """USD cost of one event; the producer's own figure wins when it sent one."""
        if ev.cost_usd is not None:
            return ev.cost_usd
        key = (ev.provider, ev.model)
        try:
            resolved = self._resolved[key]
        except KeyError:
            if len(self._resolved) >= _MAX_CACHE:
                self._resolved.clear()
            resolved = self._resolved[key] = self._resolve(ev.provider, ev.model)
        cost = None if resolved is None else resolved.cost(ev)
        if cost is None:
            self._count_unpriced(ev.model)
            return 0.0
        return cost

    def flat_rates(self, provider: str, model: str) -> tuple[float, float, float, float, float] | None:
        """(input, output, cache read, cache write per million tokens, per request USD) when
        the model's price is one fixed price without tiers, so a caller pricing many events
        can do :meth:`Rates.cost`'s arithmetic inline (the same expression, the same float
        result); None when :meth:`price` must decide per event (tiers, prices that change over
        time, unknown models, which it also counts)."""
        key = (provider, model)
        try:
            resolved = self._resolved[key]
        except KeyError:
            if len(self._resolved) >= _MAX_CACHE:
                self._resolved.clear()
            resolved = self._resolved[key] = self._resolve(provider, model)
        r = None if resolved is None else resolved.fixed
        if r is None or r.input_tiers or r.output_tiers or r.cache_read_tiers or r.cache_write_tiers:
            return None
        return (r.input, r.output, r.cache_read, r.cache_write, r.per_request)

    def rates_for(self, provider: str, model: str, ts: float | None = None) -> Rates | None:
        """The rates that apply to a model at ``ts`` (default: now); for diagnostics and tests."""
        resolved = self._resolve(provider, model)
        if resolved is None:
            return None
        return resolved.pick(time.time() if ts is None else ts)

    # ------------------------------------------------------------------ internals

    def _count_unpriced(self, model: str) -> None:
        unpriced = self.unpriced
        if model not in unpriced and len(unpriced) >= _MAX_UNPRICED:
            model = _OTHER
        unpriced[model] = unpriced.get(model, 0) + 1

    def _resolve(self, provider: str, model: str) -> _Resolved | None:
        ov = self._overrides
        override = ov.get(f"{provider}/{model}") or ov.get(model)
        if override is not None:
            return _Resolved(override)
        return _from_genai_prices(provider, model)


def _override_rates(name: Any, spec: Mapping[str, float]) -> Rates:
    """Validate one policy override loudly: a typo here would silently misprice a team."""
    unknown = set(spec) - _OVERRIDE_KEYS
    if unknown:
        raise ValueError(f"price override for {name!r}: unknown keys {sorted(unknown)}; "
                         f"expected {sorted(_OVERRIDE_KEYS)}")
    vals: dict[str, float] = {}
    for k in _OVERRIDE_KEYS:
        v = spec.get(k)
        if v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
            raise ValueError(f"price override for {name!r}: {k} must be a finite non-negative "
                             f"number (USD per million tokens), got {v!r}")
        vals[k] = float(v)
    if "input" not in vals and "output" not in vals:
        raise ValueError(f"price override for {name!r}: needs at least 'input' or 'output'")
    inp = vals.get("input", 0.0)
    return Rates(
        input=inp,
        output=vals.get("output", 0.0),
        cache_read=vals.get("cache_read", inp),
        cache_write=vals.get("cache_write", inp),
    )


@dataclass(frozen=True, slots=True)
class _Resolved:
    """Rates for one model: fixed, or chosen per event when the price changes over time.

    ``conditional`` is latest-listed first, mirroring genai-prices (the last active
    ConditionalPrice wins, else the first listed). Each entry is (start epoch seconds, or
    None for a time-of-day window; that window's constraint; rates). Start dates become
    float comparisons; only time-of-day windows (off-peak discounts) build a datetime.
    """

    fixed: Rates | None
    conditional: tuple[tuple[float | None, Any, Rates], ...] = ()
    fallback: Rates | None = None

    def cost(self, ev: UsageEvent) -> float | None:
        fixed = self.fixed
        if fixed is not None:
            return fixed.cost(ev)
        rates = self.pick(ev.ts)
        return None if rates is None else rates.cost(ev)

    def pick(self, ts: float) -> Rates | None:
        if self.fixed is not None:
            return self.fixed
        when = None
        for start, window, rates in self.conditional:
            if start is not None:
                if ts >= start:
                    return rates
            else:
                if when is None:
                    when = datetime.fromtimestamp(ts, UTC)
                if window.active(when):
                    return rates
        return self.fallback


def _from_genai_prices(provider: str, model: str) -> _Resolved | None:
    from genai_prices import data_snapshot, types

    snapshot = data_snapshot.get_snapshot()
    found = None
    candidates = [model]
    if "/" in model:
        # "openai/gpt-4o" style names from routers: the part after the slash is the model.
        candidates.append(model.rsplit("/", 1)[1])
    # The event's provider disambiguates first; a provider genai-prices does not know
    # ("unknown", a gateway name) falls back to matching on the model name alone.
    providers = (provider, None) if provider and provider != "unknown" else (None,)
    for ref in candidates:
        for pid in providers:
            try:
                found = snapshot.find_provider_model(ref, None, pid, None)
            except LookupError:
                continue
            break
        if found is not None:
            break
    if found is None:
        return None
    _, info = found

    if isinstance(info.prices, types.ModelPrice):
        r = _rates_from_model_price(info.prices)
        return _Resolved(r) if r is not None else None

    conditional: list[tuple[float | None, Any, Rates]] = []
    for cp in reversed(info.prices):
        r = _rates_from_model_price(cp.prices)
        if r is None:
            continue
        c = cp.constraint
        if c is None:
            conditional.append((-math.inf, None, r))
        elif isinstance(c, types.StartDateConstraint):
            conditional.append((_utc_midnight(c.start_date), None, r))
        else:
            conditional.append((None, c, r))
    fallback = _rates_from_model_price(info.prices[0].prices)
    if not conditional and fallback is None:
        return None
    return _Resolved(None, tuple(conditional), fallback)


def _utc_midnight(d: date) -> float:
    return datetime(d.year, d.month, d.day, tzinfo=UTC).timestamp()


def _rates_from_model_price(mp: Any) -> Rates | None:
    inp = _split(getattr(mp, "input_mtok", None))
    out = _split(getattr(mp, "output_mtok", None))
    req = getattr(mp, "requests_kcount", None)
    if inp is None and out is None and req is None:
        return None  # priced only in units we do not carry (audio hours, pages, ...)
    inp = inp or (0.0, ())
    out = out or (0.0, ())
    cr = _split(getattr(mp, "cache_read_mtok", None)) or inp
    cw = _split(getattr(mp, "cache_write_mtok", None)) or inp
    return Rates(
        input=inp[0], output=out[0], cache_read=cr[0], cache_write=cw[0],
        input_tiers=inp[1], output_tiers=out[1], cache_read_tiers=cr[1], cache_write_tiers=cw[1],
        per_request=float(req) / 1000.0 if req is not None and not hasattr(req, "tiers") else 0.0,
    )


def _split(price: Any) -> tuple[float, _Tiers] | None:
    if price is None:
        return None
    tiers = getattr(price, "tiers", None)
    if tiers is None:
        return float(price), ()
    return float(price.base), tuple((int(t.start), float(t.price)) for t in sorted(tiers, key=lambda t: t.start))
