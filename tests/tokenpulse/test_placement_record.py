"""The start-up rule of the recorded placement (tokenpulse.placement.decide, docs/deploying.md#placement):
a new deployment records what it is given, a recorded one goes on, and a switch happens only when
TOKENPULSE_PLACEMENT is given explicitly -- never because the default changed. The broker side runs
in tests/integration/test_placement_record.py."""

from __future__ import annotations

import pytest

from tokenpulse.placement import PlacementDecision, PlacementError, decide
from tokenpulse.settings import Settings

pytestmark = pytest.mark.usefixtures("clean_env")


@pytest.mark.parametrize(("recorded", "has_state", "configured", "explicit", "want"), [
    # a new deployment: nothing recorded, nothing written; what it is given is recorded
    (None, False, "org", False, PlacementDecision("org", write=True)),
    (None, False, "series", False, PlacementDecision("series", write=True)),
    (None, False, "series", True, PlacementDecision("series", write=True)),
    # as recorded: nothing to write, given or not
    ("org", True, "org", False, PlacementDecision("org", write=False)),
    ("series", True, "series", False, PlacementDecision("series", write=False)),
    ("series", False, "series", True, PlacementDecision("series", write=False)),
    # a deployment of a version before the record: its state counts as org, recorded now
    (None, True, "org", False, PlacementDecision("org", write=True, unrecorded=True)),
    (None, True, "org", True, PlacementDecision("org", write=True, unrecorded=True)),
    # an explicit switch, either way, and from the unrecorded state
    ("org", True, "series", True, PlacementDecision("series", write=True, previous="org")),
    ("series", True, "org", True, PlacementDecision("org", write=True, previous="series")),
    (None, True, "series", True, PlacementDecision("series", write=True, previous="org", unrecorded=True)),
])
def test_the_decision(recorded: str | None, has_state: bool, configured: str, explicit: bool,
                      want: PlacementDecision) -> None:
    assert decide(recorded, has_state, configured, explicit) == want


@pytest.mark.parametrize(("recorded", "has_state", "configured", "why"), [
    ("org", True, "series", "as recorded on the broker"),
    ("series", True, "org", "as recorded on the broker"),
    ("org", False, "series", "as recorded on the broker"),  # recorded, no state yet: still that deployment's
    # the upgrade this exists for: a deployment of the previous version meets the flipped default
    (None, True, "series", "state written before the placement was recorded"),
])
def test_a_switch_by_default_is_refused_naming_both_placements_and_the_setting(
        recorded: str | None, has_state: bool, configured: str, why: str) -> None:
    previous = recorded or "org"
    with pytest.raises(PlacementError) as err:
        decide(recorded, has_state, configured, explicit=False)
    msg = str(err.value)
    assert f"written with TOKENPULSE_PLACEMENT={previous}" in msg and why in msg
    assert f"set TOKENPULSE_PLACEMENT={previous}" in msg  # to keep it
    assert f"TOKENPULSE_PLACEMENT={configured} explicitly" in msg  # to switch
    assert "docs/deploying.md#placement" in msg


def test_a_placement_is_explicit_when_given_in_the_environment_or_as_a_setting(
        monkeypatch: pytest.MonkeyPatch) -> None:
    assert not Settings().placement_explicit
    assert Settings(placement="org").placement_explicit  # even when it equals the default
    monkeypatch.setenv("TOKENPULSE_PLACEMENT", "org")
    assert Settings().placement_explicit
    monkeypatch.setenv("TOKENPULSE_PLACEMENT", "")  # an empty variable is unset (env_ignore_empty)
    assert not Settings().placement_explicit
