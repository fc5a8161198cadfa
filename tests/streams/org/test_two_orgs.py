"""Work in progress (issue 15 item 3, step 2): two orgs, each series judged on the partition its
name hashes to, each org's verdicts routed to its org stage (:func:`for_org_partitions`): the
alerts and budget totals of today's placement, where each org is judged on its own partition."""

from __future__ import annotations

import random
import zlib
from typing import Any

from alerts import AlertEngine, AlertPolicy
from streams.budgets.ledger import BudgetLedger, BudgetSpec, budgets_for_partition
from streams.common.partitioning import judge_partition, org_partition
from streams.ingest.windows import NANO, Partial
from streams.judge.step import judge_step
from streams.org.core import OrgCore
from streams.org.verdicts import Verdicts, for_org_partitions
from tests.streams.org import test_org_core as base

N = 2
W = base.W
POLICY: dict[str, Any] = {**base.POLICY, "inhibit_by_org": True}
BUDGETS = [BudgetSpec("default", (), "usd", 300 * NANO, period="day"),
           BudgetSpec("acme", (("org", "acme"),), "usd", 300 * NANO, period="day"),
           BudgetSpec("acme-ads", (("org", "acme"), ("team", "ads")), "usd", 90 * NANO, period="day")]


def stream(seed: int) -> list[base.Msg]:
    """Two orgs' series (the default org's and acme's) from two sources; ads spikes in each."""
    rnd = random.Random(seed)
    msgs: list[base.Msg] = []
    for i in range(80):
        for src in (0, 1):
            parts = []
            for org, spike in (("default", 30), ("acme", 50)):
                pre, extra = ("", {}) if org == "default" else ("org=acme|", {"org": "acme"})
                tot = [0, 0, 0, 0, 0, 0]
                for team in ("ads", "search"):
                    usd = rnd.uniform(0.5, 1.5) * (40 if team == "ads" and spike <= i < spike + 4 else 1)
                    n = int(usd * NANO)
                    parts.append(Partial(f"{pre}team={team}", {**extra, "team": team}, i * W, [n, 10, 2, 0, 0, 3],
                                         {"user:u": n}, True))
                    tot = [a + b for a, b in zip(tot, [n, 10, 2, 0, 0, 3])]
                parts.append(Partial("org" if org == "default" else "org=acme", {"org": org}, i * W, tot,
                                     {"user:u": tot[0]}, True))
            msgs.append((src, (i + 1) * W, i * 2 + src, parts))
    return msgs


def judge(q: int, local: int = 0) -> Any:
    j = base.judge(q)
    j.engine = AlertEngine(AlertPolicy(**POLICY))
    j.local_tracking = local
    return j


def series_home(series: str) -> int:
    return zlib.crc32(series.encode()) % N


def test_two_orgs_judged_by_series_decide_as_judged_by_org() -> None:
    assert org_partition("default", N) != org_partition("acme", N)
    msgs = stream(0)
    homes = {p.series for _, _, _, parts in msgs for p in parts}
    assert {series_home(s) for s in homes} == {0, 1}
    # today: each org's series on the org's partition, its org stage beside the judge
    today = {q: judge(q) for q in range(N)}
    led_today = {q: BudgetLedger(W, budgets_for_partition(BUDGETS, q, N)) for q in range(N)}
    want: dict[int, list[dict[str, Any]]] = {q: [] for q in range(N)}
    for src, closed, seq, parts in msgs:
        for q, j in today.items():
            mine = [p for p in base.copies(parts) if judge_partition(p.series, N) == q]
            step = judge_step(j, led_today[q], None, src, 2, closed, mine, seq)
            want[q] += [n.to_dict() for n in step.judged.notifications]
    assert all(any(n["action"] == "trigger" for n in notes) for notes in want.values())
    # series placement: judges by series name, verdicts routed to the org stages
    judges = {q: judge(q, local=POLICY["resolve_after_windows"]) for q in range(N)}
    orgs = {p: OrgCore(p, W, AlertEngine(AlertPolicy(**POLICY)), n_judges=N) for p in range(N)}
    leds = {p: BudgetLedger(W, budgets_for_partition(BUDGETS, p, N)) for p in range(N)}
    queues: dict[int, list[Verdicts]] = {p: [] for p in range(N)}
    sent = dict.fromkeys(range(N), 0)
    for src, closed, seq, parts in msgs:
        for q, j in judges.items():
            mine = [p for p in base.copies(parts) if series_home(p.series) == q]
            step = judge_step(j, None, None, src, 2, closed, mine, seq)
            for p, v in for_org_partitions(step.verdicts(q, sent[q]), N).items():
                queues[p].append(v)
            sent[q] += 1
    got = {p: base.feed(orgs[p], base.interleave({0: [v for v in queues[p] if v.judge == 0],
                                                   1: [v for v in queues[p] if v.judge == 1]}, random.Random(p)),
                        leds[p]) for p in range(N)}
    assert got == want
    assert {p: base.totals(leds[p]) for p in range(N)} == {q: base.totals(led_today[q]) for q in range(N)}
