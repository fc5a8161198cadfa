"""benchmarks.scale --breakdown: one detector's bytes by component (docs/benchmarks.md#state-deflated)."""

from __future__ import annotations

import gc
from array import array
from typing import Any

from benchmarks.scale import breakdown, print_breakdown


class Holder:
    __slots__ = ("x", "y", "z", "__dict__")

    def __init__(self, shared: list[float]) -> None:
        self.x = array("f", [0.0]) * 100
        self.y = self.x  # the same array again: counted once
        self.z = shared


def test_breakdown_counts_each_object_once_and_leaves_shared_out() -> None:
    shared = [1.5, 2.5]
    obj = Holder(shared)
    obj.late = [0.0] * 50  # type: ignore[attr-defined]  # not a slot: in the instance values
    rows = breakdown(obj, {id(shared)})
    assert rows["x"] >= 400
    assert rows["y"] == 0
    assert rows["z"] == 0
    assert rows["(other attributes)"] >= 400  # counted even where no name was found


def test_the_walk_does_not_build_instance_dicts() -> None:
    from detectors import make_detector

    det = make_detector("default", window_seconds=60)
    det.update(60.0, 1.0, 3.0)
    breakdown(det, set())
    models: list[Any] = det._models  # type: ignore[attr-defined]
    # a materialised instance dict is a dict among the object's referents (3.11+)
    assert not any(isinstance(r, dict) for m in models for r in gc.get_referents(m))


def test_print_breakdown_of_the_default_detector() -> None:
    tables = print_breakdown("default", 0.05, 60, 7)  # 72 windows: milliseconds
    assert set(tables) == {"sparse user", "busy team"}
    for t in tables.values():
        assert t["seasonal._loc_dev"] >= 2 * 193 * 4  # the dense profile, allocated whatever the activity
        assert 4000 < sum(t.values()) < 40000
