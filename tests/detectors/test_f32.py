"""Single-precision arrays in detector states (detectors.f32)."""

from __future__ import annotations

import math
from array import array

import pytest

from detectors.f32 import pack_f32, unpack_f32


def test_round_trip_is_exact() -> None:
    values = array("f", [0.0, -2.995732307434082, 1e-30, 3.4e38, -0.0, math.pi])
    text = pack_f32(values)
    assert isinstance(text, str) and len(text) == 32  # 24 bytes as base64
    assert unpack_f32(text) == values.tolist()
    assert pack_f32(array("f")) == "" and unpack_f32("") == []


def test_lists_of_numbers_of_older_states_still_load() -> None:
    assert unpack_f32([1, 2.5, -3e-7]) == [1.0, 2.5, -3e-7]


@pytest.mark.parametrize("bad", ["not base64!", "AAA=", 3.0, None, {"a": 1}])
def test_anything_else_is_a_clear_value_error(bad: object) -> None:
    with pytest.raises(ValueError, match="single-precision field"):
        unpack_f32(bad)


def test_only_single_precision_arrays_are_packed() -> None:
    with pytest.raises(TypeError, match="array\\('f'\\)"):
        pack_f32(array("d", [1.0]))  # a double would be rounded
