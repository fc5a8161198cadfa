"""Issue 10's hostile payloads through ``tokenpulse normalize`` and ``tokenpulse replay``: each
line is rejected with its line number and reason, the good lines around it are kept, and
nothing raw reaches the terminal."""

from __future__ import annotations

import json

import orjson
import pytest
from typer.testing import CliRunner

from tests.streams.ingest.test_poison import ALL, good
from tokenpulse.cli import app
from tokenpulse.policy import Policy
from tokenpulse.replay import replay_lines
from tokenpulse.runtime import stream_config
from tokenpulse.settings import Settings

runner = CliRunner()
pytestmark = pytest.mark.usefixtures("clean_env")


def lines() -> tuple[list[bytes], list[int]]:
    """Good events with every hostile payload between them; the hostile lines' numbers."""
    out: list[bytes] = []
    bad: list[int] = []
    for n, (_, raw, _) in enumerate(ALL):
        out.append(orjson.dumps(good(n, ts=1_767_600_000.0 + n)))
        out.append(raw)
        bad.append(len(out))
    out.append(orjson.dumps(good(999, ts=1_767_600_999.0)))
    return out, bad


def test_normalize_rejects_each_hostile_line_and_keeps_the_good_ones() -> None:
    body, bad = lines()
    res = runner.invoke(app, ["normalize"], input=b"\n".join(body) + b"\n")
    assert res.exit_code == 0, res.output
    out = [json.loads(x) for x in res.stdout.splitlines()]
    want = [f"good-{n}" for n in range(len(ALL))] + ["good-999"]
    want.insert(want.index("good-6"), "good-in-batch")  # the good element of the batch on line 12
    assert [e["event_id"] for e in out] == want
    errors = [json.loads(x) for x in res.stderr.splitlines()[:-1]]
    # one reject per hostile line (a batch's good element is kept), in order
    assert [e["line"] for e in errors] == bad
    for e, (_, _, word) in zip(errors, ALL):
        assert word in e["reason"]
    assert f"{len(ALL) + 2} accepted, {len(ALL)} rejected" in res.stderr  # + the batch's good element
    assert all(c == "\n" or c >= " " for c in res.stderr)


def test_replay_rejects_each_hostile_line_and_counts_the_good_ones_exactly() -> None:
    body, bad = lines()
    res = replay_lines(body, stream_config(Settings(), Policy(), bootstrap="", partitions=1), fork=False)
    assert [n for n, _ in res.rejects] == bad
    assert res.counters["accepted"] == len(ALL) + 2
    assert res.counters["duplicate"] == 0
