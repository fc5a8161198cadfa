"""benchmarks.count_loop: a copy of the windows module counts the same as the module itself."""

from __future__ import annotations

from pathlib import Path

import streams.ingest.windows as windows
from benchmarks import count_loop as cl
from benchmarks.replay import write_history


def test_a_copy_of_the_module_counts_what_the_module_counts(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    n = write_history(path, 0.02, 50.0)
    chunks = cl.load(path, 5000)
    assert sum(map(len, chunks)) == min(n, 5000)
    copy = cl.variant(windows.__file__)
    assert copy is not windows.IngestPartition
    _, _, want = cl.count(windows.IngestPartition, cl.decode(chunks))
    _, _, got = cl.count(copy, cl.decode(chunks))
    partials, counters, checkpoint = want
    assert counters["accepted"] == min(n, 5000) and partials and checkpoint
    assert got == want
