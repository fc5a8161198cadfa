"""Policies for tests whose subject is not flap damping.

Flap damping is on by default (``AlertPolicy.group_keep_firing_s``, 1800 s): a team's group
sends its resolve half an hour of event time after its last member resolved. Tests of the
alert lifecycle, the sinks, digests, the new-series rule and the like expect the resolve a few
windows after a spike, when the member resolves; they take their policy from here, with the hold
off (``group_keep_firing_s: 0``), said once. The default hold itself is tested in
``tests/alerts/test_grouping.py`` (and the worker's path in ``tests/streams/org``).
"""

from __future__ import annotations

from typing import Any

from alerts import AlertPolicy

NO_HOLD: dict[str, Any] = {"group_keep_firing_s": 0.0}
"""The ``alerts:`` keys that turn flap damping off (merge into a test's policy dict)."""


def no_hold(**kw: Any) -> AlertPolicy:
    """``AlertPolicy(**kw)`` with flap damping off (unless ``kw`` sets it)."""
    return AlertPolicy(**{**NO_HOLD, **kw})
