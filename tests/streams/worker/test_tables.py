"""What this worker writes to a table (:func:`streams.worker.tables.persist`) goes with its
partition when a rebalance moves the partition to another worker, as what Faust recovered from
the changelog does: else the API's merged answers read a stale copy beside the new owner's."""

from __future__ import annotations

import faust
from faust.types import TP

from streams.worker.tables import persist


async def test_a_written_key_goes_with_its_partition_after_a_rebalance() -> None:
    app = faust.App("tables-test", store="memory://", broker="kafka://unused:9092")
    table = app.Table("alerts", default=None, partitions=2)
    table.send_changelog = lambda partition, key, value: None  # type: ignore[method-assign]  # no broker here
    persist(table, 0, "cost_spike:team=ads", {"action": "trigger"})
    persist(table, 1, "cost_spike:org=acme|team=ads", {"action": "trigger"})
    persist(table, 1, "gone", {"action": "trigger"})
    persist(table, 1, "gone", None)  # deleted: nothing left to forget
    # the recovery of a rebalance that left this worker partition 0 only (Faust's own call)
    await table.data.on_recovery_completed({TP("tables-test-alerts-changelog", 0)}, set())
    assert dict(table.data.data) == {"cost_spike:team=ads": {"action": "trigger"}}
    assert dict(table.data._key_partition) == {"cost_spike:team=ads": 0}
