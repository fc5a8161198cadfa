"""A detector built from its pickle (a parked series woken) holds its parameters and derived
constants as the process's one object of each value, not copies of its own; and judges as the
detector it was pickled from."""

from __future__ import annotations

import pickle

import orjson

from detectors import make_detector


def _run(det: object, days: float, seed: int) -> None:
    t0 = 1_767_571_200
    for i in range(int(days * 1440)):
        x = 0.05 * (1 + (i * seed) % 7) if (i * seed) % 10 == 0 else 0.0
        det.update(t0 + 60 * (i + 1), x, 1.0 if x else 0.0)  # type: ignore[attr-defined]


def test_woken_detectors_share_parameters_and_constants() -> None:
    proto = make_detector("default", window_seconds=60)
    a, b = proto.clone(), proto.clone()
    _run(a, 1, 3)
    _run(b, 1, 7)
    wa, wb = pickle.loads(pickle.dumps(a, protocol=5)), pickle.loads(pickle.dumps(b, protocol=5))
    for x, y, clone in ((wa, wb, a), (wa._models[0], wb._models[0], a._models[0])):  # type: ignore[attr-defined]
        for name in type(x)._param_names():
            assert getattr(x, name) is getattr(y, name), name
        assert x.to_state() == clone.to_state()
    sa, sb, sc = wa._models[0], wb._models[0], a._models[0]  # type: ignore[attr-defined]
    # derived in __init__ through detectors.compact.shared: the very object the clones hold
    assert sa._alpha_window is sb._alpha_window is sc._alpha_window
    assert sa._log_floor is sc._log_floor
    assert orjson.dumps(wa.to_state()) == orjson.dumps(a.to_state())  # type: ignore[attr-defined]
    t = 1_767_571_200 + 86400
    for i in range(1, 200):
        x = 3.0 if i == 100 else 0.05 * (i % 4)
        assert wa.update(t + 60 * i, x, 2.0) == a.update(t + 60 * i, x, 2.0)  # type: ignore[attr-defined]
