"""What the judge keeps per series besides its detector: labels read from the series' name."""

from __future__ import annotations

from streams.judge.core import SeriesInfo


def test_labels_its_name_says_are_not_held_twice() -> None:
    info = SeriesInfo({"user": "u1"}, name="user=u1")
    assert info.labels == {"user": "u1"}
    assert info._labels is None  # read from the name: no dict and value string per series
    assert not hasattr(info, "__dict__")  # slotted


def test_labels_other_than_the_name_says_are_kept() -> None:
    for name, labels in (("user=u1", {"user": "u1", "extra": "x"}), ("not a key", {"user": "u1"}),
                         ("", {"team": "ads"})):
        info = SeriesInfo(labels, name=name)
        assert info.labels == labels and info.labels is labels
