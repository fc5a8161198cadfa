"""This generator's own price table (SPEC.md §2), in USD per million tokens.

Deliberately separate from the project's pricing (``streams.ingest.pricing`` / genai-prices): the
point of an independent workload is that its ``cost_usd`` comes from a table nobody tuned
the service to. Use :func:`cost` on canonical token counts (``input`` includes the cached
parts); it works on scalars and on numpy arrays alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Model:
    name: str
    provider: str
    input: float
    output: float
    cache_read: float
    # None: the provider does not bill cache writes (only Anthropic does); such a model never
    # carries cache_write_tokens, since OpenAI-style usage objects cannot express them.
    cache_write: float | None
    window: int

    @property
    def writes_cache(self) -> bool:
        return self.cache_write is not None


MODELS: dict[str, Model] = {m.name: m for m in [
    Model("gpt-4.1-mini", "openai", 0.40, 1.60, 0.04, None, 1_000_000),
    Model("gemini-2.5-flash", "google", 0.30, 2.50, 0.03, None, 1_000_000),
    Model("claude-3-5-haiku", "anthropic", 0.80, 4.00, 0.08, 1.00, 200_000),
    Model("gpt-4.1", "openai", 2.00, 8.00, 0.20, None, 1_000_000),
    Model("gemini-2.5-pro", "google", 1.25, 10.00, 0.125, None, 1_000_000),
    Model("claude-sonnet-4", "anthropic", 3.00, 15.00, 0.30, 3.75, 200_000),
    Model("claude-sonnet-4-1m", "anthropic", 6.00, 22.50, 0.60, 7.50, 1_000_000),
    Model("claude-opus-4", "anthropic", 15.00, 75.00, 1.50, 18.75, 200_000),
    # In-house: GPU hours amortised over the model's throughput.
    Model("llama-3.3-70b-internal", "internal", 0.60, 1.20, 0.06, None, 128_000),
]}

MODEL_NAMES: list[str] = list(MODELS)

# Per-model price vectors, indexed like MODEL_NAMES, for vectorised pricing.
P_IN = np.array([MODELS[n].input for n in MODEL_NAMES])
P_OUT = np.array([MODELS[n].output for n in MODEL_NAMES])
P_CR = np.array([MODELS[n].cache_read for n in MODEL_NAMES])
P_CW = np.array([MODELS[n].cache_write if MODELS[n].cache_write is not None else MODELS[n].input
                 for n in MODEL_NAMES])
WRITES_CACHE = np.array([MODELS[n].writes_cache for n in MODEL_NAMES])
WINDOW = np.array([MODELS[n].window for n in MODEL_NAMES], dtype=np.int64)


def cost(model: str, input_tokens: Any, output_tokens: Any, cache_read_tokens: Any = 0,
         cache_write_tokens: Any = 0) -> Any:
    """USD of one call (or arrays of calls) on ``model``, tokens in canonical terms.

    >>> round(cost("claude-sonnet-4", 10_000, 500, cache_read_tokens=8_000, cache_write_tokens=2_000), 6)
    0.0174
    """
    m = MODELS[model]
    cw_price = m.cache_write if m.cache_write is not None else m.input
    uncached = input_tokens - cache_read_tokens - cache_write_tokens
    return (uncached * m.input + cache_read_tokens * m.cache_read + cache_write_tokens * cw_price
            + output_tokens * m.output) / 1e6


def cost_idx(model_idx: np.ndarray, inp: np.ndarray, out: np.ndarray, cr: np.ndarray,
             cw: np.ndarray) -> np.ndarray:
    """Vectorised :func:`cost` over calls whose model is an index into MODEL_NAMES."""
    u = inp - cr - cw
    return (u * P_IN[model_idx] + cr * P_CR[model_idx] + cw * P_CW[model_idx]
            + out * P_OUT[model_idx]) / 1e6
