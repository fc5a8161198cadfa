"""Judging spread over two workers on a real broker: two orgs, each with teams ``ads`` and
``search``, are judged on their orgs' partitions (streams.common.partitioning), which two
workers share; each worker judges half of the series, a spike of one org's ads team is one
page (none for the other org's ads), and spend comes out exact per org and team."""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from streams.common.partitioning import org_partition
from streams.ingest.windows import NANO, to_nusd
from tests.integration.harness import (
    get_json,
    produce,
    settled,
    start_together,
    stop_all,
    wait_until,
    workers_of,
)
from tests.integration.test_spine import PD_KEY, W, event, worker_env

pytestmark = pytest.mark.integration

PARTITIONS = 2
ORGS = ("default", "acme")  # on partitions 0 and 1 of 2: one org per worker


def two_orgs_history(t0: int, rng: random.Random, want: dict[tuple[str | None, str], list[int]]) -> list[tuple[bytes, bytes]]:
    """40 windows from ``t0`` of both orgs' teams ``ads`` and ``search``, the usage messages;
    acme's ads spikes in windows 28-30. Adds each (org or None, team)'s nano-dollars and events
    to ``want``."""
    msgs: list[tuple[bytes, bytes]] = []
    for i in range(40):
        for org in ORGS:
            for team in ("ads", "search"):
                spike = org == "acme" and team == "ads" and i in range(28, 31)
                n, lo, hi = (40, 0.4, 0.6) if spike else (6, 0.05, 0.15)
                evs = [event(team, t0 + i * W + rng.random() * W * 0.9, round(rng.uniform(lo, hi), 6), rng,
                             org=org) for _ in range(n)]
                acc = want.setdefault((None if org == "default" else org, team), [0, 0])
                acc[0] += sum(to_nusd(e["cost_usd"]) for e in evs)
                acc[1] += len(evs)
                msgs.append((f"{org}/{team}".encode(), orjson.dumps(evs)))
    return msgs


def test_two_workers_each_judge_one_org_one_page_exact_spend(broker: Any, slack: Any, pagerduty: Any,
                                                              workdir: Path) -> None:
    assert sorted(org_partition(o, PARTITIONS) for o in ORGS) == [0, 1]
    env, topics = worker_env(broker, slack, pagerduty, workdir)
    workers = workers_of(env, workdir)
    rng = random.Random(15)
    want: dict[tuple[str | None, str], list[int]] = {}
    # The history is on the usage topic before the workers start (as docs/deploying.md#backfills
    # asks): a partition that has read its empty log is idle, left out of the judges' watermark,
    # and history sent to every partition only then is judged by whichever partition's worker
    # reads its part first, the rest counted as late and not judged (no page, or no resolve).
    # The workers then take it over while their groups rebalance.
    t0 = int(time.time() // W) * W - 40 * W
    produce(broker.bootstrap, topics["usage"], two_orgs_history(t0, rng, want))
    try:
        start_together(workers)  # one rebalance, not two
        # Faust's group (the judge) settles a moment after the ingest group that start() waits
        # for, and longer on a loaded machine (this test is about where series are judged)
        settled(workers, PARTITIONS)

        wait_until(lambda: [e for e in pagerduty.events() if e["event_action"] == "resolve"], 90, "a PagerDuty resolve")

        def spend() -> dict[tuple[str | None, str], list[int]]:
            # what each worker holds alone (local=True; either one answers for both, test_anyworker)
            got: dict[tuple[str | None, str], list[int]] = {}
            for w in workers:
                for r in get_json(f"{w.url}/api/spend?group_by=team", local=True)["rows"]:
                    acc = got.setdefault((r.get("org"), r["team"]), [0, 0])
                    acc[0] += round(r["cost_usd"] * NANO)
                    acc[1] += r["events"]
            return got

        wait_until(lambda: spend() == want, 60, "exact spend per org and team across both workers")
        pd = pagerduty.events()
        assert [(e["event_action"], e["dedup_key"]) for e in pd] == [
            ("trigger", "cost_spike:org=acme|team=ads"), ("resolve", "cost_spike:org=acme|team=ads")], pd

        status = [get_json(f"{w.url}/api/status", local=True) for w in workers]
        judged = [{q: s["series"] for q, s in st["judge"].items() if s["series"]} for st in status]
        print("series judged per worker:", judged)
        if any("org" in st for st in status):  # TOKENPULSE_PLACEMENT=series: by series name (3 and 1 of 4 here)
            assert sum(sum(j.values()) for j in judged) == 4 and all(judged), judged
        else:
            assert sorted(sum(j.values()) for j in judged) == [2, 2], judged  # team=ads, team=search of one org each
        assert set(judged[0]).isdisjoint(judged[1])
        for w in workers:
            log = w.log_path.read_text(errors="replace")
            assert PD_KEY not in log and slack.token not in log
    except BaseException:
        for w in workers:  # logs, task stacks, /api/status and /metrics of each
            print(f"--- {w.log_path.name}")
            print(w.diagnostics() if w.proc is not None and w.proc.poll() is None else w.log_tail(150))
            for path in ("/api/windows", "/api/spend?group_by=team"):
                try:
                    print(f"--- {path}\n{get_json(w.url + path, timeout=3, local=True)}")
                except Exception as exc:  # noqa: BLE001 - diagnostics only
                    print(f"--- {path}: {exc!r}")
        raise
    finally:
        stop_all(workers)
