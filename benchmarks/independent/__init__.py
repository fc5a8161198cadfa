"""A second, independent labelled workload generator (see ``SPEC.md`` beside this file).

Written from a spec and the event-shape docs only, not from the project's own generator or
detectors, so that detection can be judged on data shaped differently. Use
:func:`generate` in Python or ``python -m benchmarks.independent`` for JSONL files.
"""

from __future__ import annotations

from .generator import ARCHETYPES, Events, generate
from .prices import MODELS, cost
from .teams import DEFAULT_TEAMS, JobSpec, TeamsFileError, TeamSpec, ToolSpec, load_teams

__all__ = ["ARCHETYPES", "DEFAULT_TEAMS", "Events", "JobSpec", "MODELS", "TeamSpec", "TeamsFileError",
           "ToolSpec", "cost", "generate", "load_teams"]
