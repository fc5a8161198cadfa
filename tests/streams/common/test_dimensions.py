"""The dimensions, defined once: every series the ingest emits parses back to its dimension and
labels, the API and the policy take exactly the dimensions' names, and a plain tuple (what the
hot path builds) is the same dict key as the Cell it stands for."""

from __future__ import annotations

import pytest

from streams.common.config import StreamConfig
from streams.common.dimensions import (
    ALIASES,
    DEFAULT_ORG,
    DEFAULT_WATCHED,
    DIMENSIONS,
    NAMES,
    TEAM_MODEL,
    TOOL,
    Cell,
    ToolCell,
    dimension,
    org_of,
    org_series,
    parse_series,
    series_key,
    series_of,
)
from streams.ingest.records import UsageEvent
from streams.ingest.windows import IngestPartition
from streams.worker.query import Series
from streams.worker.web import SPEND_QUERY
from tokenpulse.policy import Policy

CELL = Cell("default", "ads", "openai", "gpt-4o", "bob")
ACME = Cell("acme", "ads", "openai", "gpt-4o", "bob")  # another org, with a team of the same name


@pytest.mark.parametrize("cell", [CELL, ACME], ids=["default-org", "another-org"])
def test_every_key_parses_back_to_its_dimension_and_labels(cell: Cell) -> None:
    for d in DIMENSIONS:
        labels = d.labels_of(ToolCell(cell.org, "ide") if d is TOOL else cell)
        key = series_key(labels)
        got = parse_series(key)
        assert got is not None and got[0] is d
        assert got[1] == ({} if key == "org" else labels)
        assert Series().parse(key) == key  # the API takes every key the worker writes


def test_two_orgs_with_a_team_of_one_name_share_no_series() -> None:
    ours = [key for c in (CELL, ToolCell(CELL.org, "")) for key, *_ in series_of(c, DEFAULT_WATCHED)]
    theirs = [key for c in (ACME, ToolCell(ACME.org, "")) for key, *_ in series_of(c, DEFAULT_WATCHED)]
    assert not set(ours) & set(theirs)
    assert theirs == ["org=acme", "org=acme|team=ads", "org=acme|team=ads|model=gpt-4o", "org=acme|provider=openai",
                      "org=acme|model=gpt-4o", "org=acme|user=bob", "org=acme|tool=(none)"]
    assert {org_of(k) for k in ours} == {DEFAULT_ORG} and {org_of(k) for k in theirs} == {"acme"}
    assert org_series("acme") == "org=acme" and org_series(DEFAULT_ORG) == "org"


@pytest.mark.parametrize("key", ["", "evil", "team=", "=ads", "team=ads|user=bob", "model=m|team=t", "team=a|team=b",
                                 "team=a|model=b|user=c", "project=x", "org=", "org=default", "org=default|team=ads",
                                 "team=ads|org=acme", "org=acme|org=b", "org=acme|team=a|model=b|user=c"])
def test_what_is_no_series_key(key: str) -> None:
    assert parse_series(key) is None


def test_the_series_of_a_cell_and_who_contributes() -> None:
    rows = {key: (labels, watched, contrib) for key, labels, watched, contrib in series_of(CELL, DEFAULT_WATCHED)}
    rows.update({key: (labels, watched, contrib)
                 for key, labels, watched, contrib in series_of(ToolCell(CELL.org, "ide"), DEFAULT_WATCHED)})
    assert list(rows) == ["org", "team=ads", "team=ads|model=gpt-4o", "provider=openai", "model=gpt-4o", "user=bob",
                          "tool=ide"]
    assert rows["org"] == ({"org": "default"}, True, (("team", "ads"), ("model", "gpt-4o")))
    assert rows["team=ads"][2] == (("user", "bob"), ("model", "gpt-4o"))
    assert rows["team=ads|model=gpt-4o"][2] == (("user", "bob"),)
    assert [k for k, (_, watched, _) in rows.items() if not watched] == ["model=gpt-4o", "user=bob", "tool=ide"]


def test_the_ingest_emits_the_series_of_every_dimension() -> None:
    core = IngestPartition(partition=0, window_seconds=60, lateness=0, idle_grace=0)
    ev = UsageEvent(event_id="e1", ts=1_767_600_000.0, org=CELL.org, team=CELL.team, user=CELL.user,
                    provider=CELL.provider, model=CELL.model, tool="ide", input_tokens=10, output_tokens=1, cost_usd=0.5)
    core.add(ev, 1_767_600_000.0)
    parts = core.advance(1_767_600_200.0)
    assert {parse_series(p.series)[0].name for p in parts} == set(NAMES)  # type: ignore[index]
    # the hot path's cells are plain tuples: the same keys as Cells
    cell, tool_cell = core._plans
    assert type(cell) is tuple and Cell._make(cell) == cell and hash(Cell._make(cell)) == hash(cell)
    assert Cell._make(cell) == CELL
    assert type(tool_cell) is tuple and ToolCell._make(tool_cell) == ToolCell(CELL.org, "ide") == tool_cell


def test_one_set_of_names_and_aliases_for_the_policy_the_config_and_the_api() -> None:
    assert Policy().watch == [n for n in NAMES if n in DEFAULT_WATCHED]
    assert StreamConfig(bootstrap="x").watched == DEFAULT_WATCHED
    assert SPEND_QUERY.params["group_by"].choices == NAMES  # type: ignore[attr-defined]
    for alias, name in ALIASES.items():
        assert dimension(alias) is TEAM_MODEL and name == TEAM_MODEL.name
        assert Policy(watch=[alias]).watch == [TEAM_MODEL.name]
        assert SPEND_QUERY.parse({"group_by": alias})["group_by"] == TEAM_MODEL.name
