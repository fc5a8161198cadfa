"""The canonical usage event and the small records passed between stream stages.

Pure Python (no Faust): the worker, the offline replay and the tests all share these.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class UsageEvent:
    """One LLM call, after normalisation.

    ``input_tokens`` counts *all* input tokens (OpenTelemetry's convention);
    ``cache_read_tokens`` and ``cache_write_tokens`` are the parts of it read from and
    written to a prompt cache. ``cost_usd`` is always set after pricing.
    """

    event_id: str
    ts: float  # event time, epoch seconds (UTC)
    org: str
    team: str
    user: str
    provider: str
    model: str
    tool: str = ""
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cost_usd: float | None = None
    labels: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "ts": self.ts,
            "org": self.org,
            "team": self.team,
            "user": self.user,
            "provider": self.provider,
            "model": self.model,
            "tool": self.tool,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cache_read_tokens": self.cache_read_tokens,
            "cache_write_tokens": self.cache_write_tokens,
            "cost_usd": self.cost_usd,
            "labels": self.labels,
        }
