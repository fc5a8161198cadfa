"""From a policy's detector section to constructor arguments (pure; no I/O).

The YAML a person writes groups a combiner's component settings under the component's name::

    params:
      min_excess_usd: 20
      seasonal: {threshold: 6}
    overrides:
      - match: {team: legal}
        params: {min_excess_usd: 10}

:func:`detector_kwargs` turns such ``params`` into the detector's constructor arguments, and
:func:`params_for` applies the overrides whose ``match`` labels a series has.

>>> detector_kwargs("default", {"min_excess_usd": 20, "seasonal": {"threshold": 6}})
{'min_excess_usd': 20, 'component_params': {'seasonal': {'threshold': 6}}}
>>> overrides = [({"team": "legal"}, {"min_excess_usd": 10, "seasonal": {"min_history": 5}})]
>>> params_for({"min_excess_usd": 20, "seasonal": {"threshold": 6}}, overrides, {"team": "legal"})
{'min_excess_usd': 10, 'seasonal': {'threshold': 6, 'min_history': 5}}
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["detector_kwargs", "merge_params", "params_for"]


def merge_params(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``extra`` on top; component sections (mappings) are merged key by key."""
    out = dict(base)
    for k, v in extra.items():
        cur = out.get(k)
        out[k] = {**cur, **v} if isinstance(v, Mapping) and isinstance(cur, Mapping) else v
    return out


def params_for(
    params: Mapping[str, Any],
    overrides: Iterable[tuple[Mapping[str, str], Mapping[str, Any]]],
    labels: Mapping[str, str],
) -> dict[str, Any]:
    """``params`` plus every override whose ``match`` labels all equal the series' labels,
    later overrides winning."""
    out = dict(params)
    for match, extra in overrides:
        if all(labels.get(k) == v for k, v in match.items()):
            out = merge_params(out, extra)
    return out


def detector_kwargs(name: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """Policy params -> constructor arguments of detector ``name``: for the combiner, the
    sections named after a registered model are gathered into ``component_params``."""
    from detectors import DEFAULT_DETECTOR, DETECTORS
    from detectors.combined import Combined

    if DETECTORS.get(DEFAULT_DETECTOR if name == "default" else name) is not Combined:
        return dict(params)
    out: dict[str, Any] = {}
    comps: dict[str, Any] = dict(params.get("component_params") or {})
    for k, v in params.items():
        if k == "component_params":
            continue
        if k in DETECTORS and isinstance(v, Mapping):
            comps[k] = {**comps.get(k, {}), **v}
        else:
            out[k] = v
    if comps:
        out["component_params"] = comps
    return out
