"""Which judge partition (of the windows topic) judges a series: its org's.

Every series of one organisation is judged on one partition, the org's, so that the alert
engine sees the verdicts of the org and of its teams for a window together, in one step
(inhibition by the org alert, grouping per team: :meth:`alerts.engine.AlertEngine.observe_window`),
and so that each budget (org, team or user of that org, with the org budget's allocations) has
exactly one owner (:func:`streams.budgets.ledger.budgets_for_partition`).

Series names carry their org (:mod:`streams.common.dimensions`: ``org=acme|team=ads``; the
default org's have short names), so the partition is the hash of the org's own series key:
``org`` for the default org -- the partition that judged every series before orgs were named,
so its detector state stays where it was -- and ``org=acme`` for acme. Several orgs therefore
spread over the partitions, one org per partition, and over the workers that hold them.

What it costs: the judging of one org runs on one partition, i.e. on one worker. Judging is per
series and window, not per event (about 33 µs per series-window: 10,000 watched series take
0.3 s of a 60 s window), while the hot path that counts events stays spread over every
partition. Judging each series on the partition its own name hashes to, with the stages that
need an org's series together keyed by org, is designed in docs/architecture.md (Scale); this
function is the one place that would then hash the series' name instead of its org's.
"""

from __future__ import annotations

import zlib

from streams.common.dimensions import DEFAULT_ORG, org_of, org_series


def org_partition(org: str, n: int) -> int:
    """The judge partition of ``org`` among ``n``: where all of its series are judged.

    Stable across processes and Python versions (crc32, not ``hash()``).

    >>> org_partition("default", 4), org_partition("acme", 4), org_partition("globex", 4)
    (0, 3, 1)
    """
    return zlib.crc32(org_series(org).encode()) % n


def judge_partition(series: str, n: int) -> int:
    """The judge partition of ``series`` among ``n``: its org's, for every series of the org.

    >>> {judge_partition(s, 4) for s in ("org", "team=ads", "team=ads|model=x", "user=bob")}
    {0}
    >>> {judge_partition(s, 4) for s in ("org=acme", "org=acme|team=ads", "org=acme|user=bob")}
    {3}
    """
    return org_partition(org_of(series), n)


def series_partition(series: str, n: int) -> int:
    """The judge partition of ``series`` among ``n`` with ``TOKENPULSE_PLACEMENT=series``: the
    hash of its own name, so that one org's series spread over every partition (its org stage
    then runs on :func:`org_partition`, fed by the verdicts topic: docs/architecture.md).

    >>> sorted({series_partition(s, 2) for s in ("org=acme", "org=acme|team=ads", "org=acme|team=search")})
    [0, 1]
    """
    return zlib.crc32(series.encode()) % n


PLACEMENTS = ("org", "series")


def placed_partition(series: str, n: int, placement: str = "org") -> int:
    """The judge partition of ``series`` under ``placement`` (``TOKENPULSE_PLACEMENT``): its
    org's (:func:`judge_partition`, the default) or its own name's (:func:`series_partition`)."""
    return series_partition(series, n) if placement == "series" else judge_partition(series, n)


def judging_partitions(n: int) -> set[int]:
    """The partitions among ``n`` that judge the default org's series; what a worker must hold
    to see all of that org's spend (the third-party share reads it: it is the default org's).

    >>> judging_partitions(4)
    {0}
    """
    return {org_partition(DEFAULT_ORG, n)}
