"""Replaying a file and streaming the same events through the worker give the same alerts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.integration.harness import Worker, deployment_env, get_json, produce, wait_until
from tests.tokenpulse.test_replay import SPIKE_AT, history
from tokenpulse.policy import Policy
from tokenpulse.replay import replay_lines
from tokenpulse.runtime import stream_config
from tokenpulse.settings import Settings

pytestmark = pytest.mark.integration

PARTITIONS = 2


def test_worker_and_replay_raise_the_same_alerts(broker: Any, workdir: Path) -> None:
    lines = history()
    settings = Settings(idle_grace_seconds=2, lateness_seconds=10)
    replayed = replay_lines(lines, stream_config(settings, Policy(), bootstrap="", partitions=1))
    # /api/alerts keeps the latest incident of each key, and its latest notification
    latest: dict[str, float] = {}
    last: dict[str, tuple[Any, ...]] = {}
    for n in replayed.notifications:
        if n["action"] == "trigger":
            latest[n["key"]] = max(latest.get(n["key"], 0.0), n["started_at"])
        last[n["key"]] = told(n)
    want = set(latest.items())
    # the spike of team ads: the org's alert, which names team=ads (at 30x on a third of the org
    # both reach their gates, relative to their own expected spend, in the spike's first window,
    # and the org's alert inhibits the team's own)
    spike = [n for n in replayed.notifications if n["action"] == "trigger" and n["started_at"] >= SPIKE_AT]
    assert spike[0]["key"] == "cost_spike:org" and "team=ads" in [m["series"] for m in spike[0]["members"]]

    env = deployment_env(broker, workdir, PARTITIONS, tag="eq", idle_grace_seconds=2, lateness_seconds=10)
    prefix = env["TOKENPULSE_TOPIC_PREFIX"]
    worker = Worker(env, workdir / "worker.log")
    try:
        # the file's order, one event per message keyed by team (batching per team would
        # reorder events across teams sharing a partition, and some would then be late)
        msgs = [(orjson.loads(line)["team"].encode(), line) for line in lines]
        # History first, then the worker: a partition that is idle when the worker starts and
        # only later receives old events is judged from then on (its older windows count in
        # spend only) -- see docs/architecture.md, "Time", on idle partitions.
        produce(broker.bootstrap, f"{prefix}.usage", msgs)
        worker.start(PARTITIONS)
        last_window = int(replayed.last_ts // 60) * 60

        def judged_all() -> bool:
            st = get_json(f"{worker.url}/api/status")
            # placement org: every series of the org is judged on the org's partition, the others
            # only see watermarks (and judge nothing); series: on the partitions their names hash
            # to, and the org stage, which raises the alerts, must have merged them all
            busy = [j for j in st["judge"].values() if j["series"]]
            apart = list(st.get("org", {}).values())
            return (len(st["judge"]) == PARTITIONS and (len(busy) == 1 or bool(apart))
                    and all(j["done_until"] > last_window for j in busy)
                    and all((o["done_until"] or 0) > last_window for o in apart))

        wait_until(judged_all, 90, "every window judged")
        alerts = get_json(f"{worker.url}/api/alerts")["alerts"]
        got = {(a["key"], a["started_at"]) for a in alerts}
        assert got == want
        assert {a["key"]: told(a) for a in alerts} == last  # the same numbers, members and reasons
        # spend is published at the judge's next checkpoint
        wait_until(lambda: get_json(f"{worker.url}/api/spend?group_by=team")["total"]["events"]
                   == replayed.counters["accepted"], 30, "the same spend as the replay")
        assert get_json(f"{worker.url}/api/status")  # still answering
    except BaseException:
        print(worker.diagnostics())
        raise
    finally:
        worker.stop()


def told(n: dict[str, Any]) -> tuple[Any, ...]:
    """What a notification tells on-call (not how it was delivered)."""
    return (n["seq"], n["action"], n["reason"], n["severity"], round(n["excess_usd"], 6),
            [(m["series"], m["status"], round(m["excess_usd"], 6)) for m in n.get("members") or ()])
