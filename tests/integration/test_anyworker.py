"""One answer from any worker (issue 15 item 4), on a real broker: two workers share two
partitions (one org each), and each answers ``/api/*`` for both, by asking the other over HTTP
(streams.worker.peers) and merging (streams.worker.merge): the same spend, alerts, time series
and top users whichever is asked, equal to what was sent. A peer that does not answer (SIGSTOP)
costs at most the peer timeout: the answer says ``complete: false`` and names its partition.

On Tansu and Apache Kafka."""

from __future__ import annotations

import json
import os
import random
import signal
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from streams.common.partitioning import org_partition, series_partition
from streams.ingest.windows import NANO
from streams.worker.peers import FORWARDED
from tests.integration.harness import Worker, produce, start_together, wait_until, workers_of
from tests.integration.test_spine import POLICY, W, worker_env
from tests.integration.test_spread import ORGS, PARTITIONS, two_orgs_history

pytestmark = pytest.mark.integration

TOKEN = "api-token-for-the-peers-0123456789"
PEER_TIMEOUT = 1.5


def ask(base: str, path: str, timeout: float = 10.0, local: bool = False) -> tuple[int, Any]:
    """GET ``path`` with the API token; ``local``: as a peer asks (this worker's partitions only)."""
    headers = {"Authorization": f"Bearer {TOKEN}", **({FORWARDED: "1"} if local else {})}
    req = urllib.request.Request(base + path, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def test_every_worker_answers_for_all_partitions_and_names_a_silent_peer(broker: Any, slack: Any, pagerduty: Any,
                                                                         workdir: Path) -> None:
    assert sorted(org_partition(o, PARTITIONS) for o in ORGS) == [0, 1]
    env, topics = worker_env(broker, slack, pagerduty, workdir)
    (workdir / "policy.yaml").write_text(POLICY.replace("watch: [team]", "watch: [team, user]"))
    env.update({"TOKENPULSE_API_TOKEN": TOKEN, "TOKENPULSE_PEER_TIMEOUT_SECONDS": str(PEER_TIMEOUT)})
    workers = workers_of(env, workdir)
    rng = random.Random(4)
    want: dict[tuple[str | None, str], list[int]] = {}
    # The history is on the usage topic before the workers start (docs/deploying.md#backfills;
    # as tests/integration/test_spread.py): sent once both had read their empty partitions, it
    # would find them idle, left out of the judges' watermark, and part of it judged as late.
    t0 = int(time.time() // W) * W - 40 * W
    produce(broker.bootstrap, topics["usage"], two_orgs_history(t0, rng, want))
    try:
        start_together(workers)
        # Faust's group (the judge) settles a moment after the ingest group that start() waits for
        wait_until(lambda: all(ask(w.url, "/api/status")[1]["complete"] for w in workers), 60,
                   "both workers to answer /api/status for both judge partitions")
        wait_until(lambda: [e for e in pagerduty.events() if e["event_action"] == "resolve"], 90, "a PagerDuty resolve")

        def spend(w: Worker) -> dict[tuple[str | None, str], list[int]] | None:
            status, body = ask(w.url, "/api/spend?group_by=team")
            if status != 200 or not body["complete"]:
                return None
            return {(r.get("org"), r["team"]): [round(r["cost_usd"] * NANO), r["events"]] for r in body["rows"]}

        # each worker alone holds one org's series; each answers for both, exactly
        wait_until(lambda: all(spend(w) == want for w in workers), 60, "exact spend of both orgs from each worker")
        until = t0 + 41 * W
        questions = ["/api/spend?group_by=team", "/api/spend?group_by=user", "/api/alerts",
                     f"/api/timeseries?by=team&range=1h&until={until}", f"/api/top_users?range=1h&until={until}",
                     "/api/silences", "/api/digests", f"/api/report?period=day&at={until + 86400}"]

        def same(path: str) -> bool:
            got = [ask(w.url, path) for w in workers]
            same.last = got  # type: ignore[attr-defined]
            return all(s == 200 and b["complete"] and b["missing"] == [] for s, b in got) and got[0] == got[1]

        for path in questions:
            wait_until(lambda p=path: same(p), 20, f"the same complete answer to {path} from both workers")  # type: ignore[misc]
        _, alerts = ask(workers[0].url, "/api/alerts")
        keys = {a["key"] for a in alerts["alerts"]}  # acme's ads team and its users spiked, on one worker
        assert "cost_spike:org=acme|team=ads" in keys and all(k.startswith("cost_spike:org=acme|") for k in keys), keys
        _, ts = ask(workers[1].url, f"/api/timeseries?by=team&range=1h&until={until}")
        assert {s["name"] for s in ts["series"]} == {"ads", "search"}, ts  # both orgs' teams, summed by name
        total = sum(round(s["total_usd"] * 1_000_000) for s in ts["series"])
        assert abs(total - sum(v[0] for v in want.values()) // 1000) <= len(ts["t"]) * 4, ts
        _, report = ask(workers[1].url, f"/api/report?period=day&at={until + 86400}")
        # the default org's report (its spend on one worker's partition), the same from both (above)
        assert report["partitions"] == [0, 1] and report["complete"] and report["report"]["total"]["nusd"] == sum(
            v[0] for (org, _), v in want.items() if org is None), report["report"]["total"]
        _, users = ask(workers[0].url, f"/api/top_users?range=1h&until={until}&limit=100")
        assert users["users"] == 6 == len(users["by_spend"]), users  # ads-u0..2, search-u0..2 of the two orgs
        for w in workers:  # a budget or series held by the other worker is found there, not 404
            status, body = ask(w.url, "/api/windows?series=org%3Dacme%7Cteam%3Dads")
            assert status == 200 and list(body["series"]) == ["org=acme|team=ads"] and body["complete"], body

        # the worker holding acme's partition stops answering: the other answers within the timeout,
        # with what it has, saying what is missing
        held = {int(q) for q in ask(workers[1].url, "/api/status", local=True)[1]["judge"]}
        assert len(held) == 1
        pid = workers[1].proc.pid  # type: ignore[union-attr]
        os.killpg(pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            status, body = ask(workers[0].url, "/api/spend?group_by=team")
            took = time.monotonic() - started
        finally:
            os.killpg(pid, signal.SIGCONT)
        assert status == 200 and body["complete"] is False, body
        assert [m["partitions"] for m in body["missing"]] == [sorted(held)], body
        assert body["missing"][0]["peer"] == workers[1].url and "1.5 s" in body["missing"][0]["reason"], body
        assert took < PEER_TIMEOUT + 1.5, took
        # the rows of the series judged on the partition that answered: with TOKENPULSE_PLACEMENT=org
        # one org's teams, with series the teams whose series names hash there (the status has "org")
        apart = "org" in ask(workers[0].url, "/api/status", local=True)[1]
        left = {(org, team) for org, team in want
                if (series_partition(f"org={org}|team={team}" if org else f"team={team}", PARTITIONS) if apart
                    else org_partition(org or "default", PARTITIONS)) not in held}
        assert {(r.get("org"), r["team"]) for r in body["rows"]} == left, body
        for w in workers:  # the token went to the peer only: never in a log line or an answer
            assert TOKEN not in w.log_path.read_text(errors="replace")
        assert TOKEN not in json.dumps(body)
    except BaseException:
        for w in workers:
            print(w.log_tail(80))
        raise
    finally:
        for w in workers:
            w.stop()
