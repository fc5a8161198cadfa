"""benchmarks.scale --breakdown: one detector's bytes by component (docs/benchmarks.md#state-deflated)."""

from __future__ import annotations

from array import array

from benchmarks.scale import breakdown, print_breakdown


class Part:
    __slots__ = ("bins", "n")

    def __init__(self) -> None:
        self.bins = array("f", [0.0]) * 100
        self.n = 3


def test_breakdown_counts_each_object_once_and_leaves_shared_out() -> None:
    part = Part()
    shared_list = [1.5, 2.5]
    out = breakdown({"a": part}, set())  # a dict is not a detector object: one row for all of it
    assert out["(object)"] > 0
    obj = type("Holder", (), {})()
    obj.x = array("f", [0.0]) * 100
    obj.y = obj.x  # the same array again: counted once
    obj.z = shared_list
    rows = breakdown(obj, {id(shared_list)})
    assert rows["x"] >= 400
    assert rows["y"] == 0
    assert rows["z"] == 0


def test_print_breakdown_of_the_default_detector(capsys: object) -> None:
    tables = print_breakdown("default", 0.05, 60, 7)  # 72 windows: milliseconds
    assert set(tables) == {"sparse user", "busy team"}
    for t in tables.values():
        assert t["seasonal._loc"] >= 193 * 4  # the dense profile, allocated whatever the activity
        assert 4000 < sum(t.values()) < 40000
