"""Two workers in one group on Apache Kafka, one SIGKILLed while events stream (issue 15, item 8).

Two real ``tokenpulse worker`` processes share a 4-partition usage topic (the ingest group and the
Faust group each balance their partitions). A producer streams live events (event time = wall
clock) for several teams with known exact totals; a spike on ``ads`` pages. Once the page is
delivered, the worker that judges ``team=ads`` (found through the API, not assumed: which worker
judges what is the partitioning's business) is SIGKILLed while traffic keeps flowing. Then:

- the survivor holds every usage partition (the group rebalanced to it);
- it judges the dead worker's series after the kill, each of its two groups rebalanced once
  (no second session timeout): the time is printed against the issue's target, the session
  timeout plus one window (``TOKENPULSE_KAFKA_SESSION_TIMEOUT_SECONDS=6``, the least Apache
  Kafka accepts by default), not asserted;
- its spend per team and the ``ads`` budget ledger equal the produced totals exactly;
- PagerDuty got one trigger for the incident's dedup key (the kill comes after the deliveries
  table recorded it, past several checkpoints) and one resolve, sent by the survivor.

It runs with both placements (``TOKENPULSE_PLACEMENT``, docs/deploying.md#placement). With
``series`` the default org's series are judged on the partitions their names hash to (``team=ads``
and the org's own series on partition 0, the others on 1 and 2), and the org stage -- the alert
engine that pages and the budget ledger, fed over the verdicts topic -- runs on the org's
partition, 0, which the worker judging ``ads`` holds: the kill takes the org stage down with
the judge, and the survivor must take over both (its ``tokenpulse_org_verdicts_total`` grows
only then).

What the product guarantees for pages: delivery is recorded per alert key and seq in the
``deliveries`` table, so a redelivered outbox record or a re-judged window sends nothing again;
only a crash between PagerDuty's 202 and that record's changelog write reaching the broker
(milliseconds) can send a trigger twice, and then with the same ``dedup_key`` (PagerDuty folds it
into the open incident). This test kills outside that gap, so it asserts exactly one trigger.
"""

from __future__ import annotations

import os
import random
import threading
import time
import urllib.error
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import orjson
import pytest

from streams.common.dimensions import DEFAULT_ORG
from streams.common.partitioning import org_partition, series_partition
from streams.ingest.windows import NANO, to_nusd
from tests.integration import apache_kafka
from tests.integration.harness import DETECTOR_POLICY, Worker, deployment_env, get_json, get_text, settled, wait_until
from tests.integration.test_budgets import noon_zone
from tests.integration.test_spine import PD_KEY, Ledger, event

pytestmark = pytest.mark.integration

W = 2  # window seconds
PARTITIONS = 4
# TOKENPULSE_KAFKA_SESSION_TIMEOUT_SECONDS of both workers: the least a default Apache Kafka
# broker accepts (group.min.session.timeout.ms), and the product's default
SESSION_TIMEOUT = 6.0
TEAMS = ("ads", "search", "infra", "data", "web", "mobile")
SPIKE = "ads"
DEDUP = f"cost_spike:team={SPIKE}"


def policy_text(tz: str) -> str:
    return f"""
watch: [team]
{DETECTOR_POLICY}alerts:
  warning_excess_usd: 2
  page_min_excess_usd: 5
  resolve_after_windows: 2
  group_keep_firing_s: 0  # flap damping off: this test waits for the team's resolve (as tests/alerts/policies.py)
budget_timezone: {tz}
budgets:
  - name: ads-daily
    scope: {{team: ads}}
    amount: 100000
    period: day
    thresholds: [100]
    forecast: {{enabled: false}}
"""


class Stream:
    """A producer thread sending every team's events in real time (twice a window), a spike on
    ``SPIKE`` while ``spiking`` is set; every event sent is in ``ledger``."""

    def __init__(self, bootstrap: str, topic: str, ledger: Ledger, rng: random.Random) -> None:
        from kafka import KafkaProducer

        self.producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks="all")
        self.topic, self.ledger, self.rng = topic, ledger, rng
        # nano-dollars per window start and team: which windows a wrong total misses
        self.by_window: dict[int, Counter[str]] = {}
        self.spiking = threading.Event()
        self.stopped = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="failover-producer", daemon=True)

    def send(self, team: str, evs: list[dict[str, Any]]) -> None:
        for e in evs:
            self.ledger.add(e)
            self.by_window.setdefault(int(e["ts"] // W) * W, Counter())[team] += to_nusd(e["cost_usd"])
        # keyed by team, each team on a partition of its own choosing so that every usage
        # partition has traffic: an idle one would hold judging back by the idle grace after
        # the takeover, which is not what this test measures
        self.producer.send(self.topic, key=team.encode(), value=orjson.dumps(evs),
                           partition=TEAMS.index(team) % PARTITIONS)

    def _run(self) -> None:
        try:
            while not self.stopped.is_set():
                t = time.time()
                for team in TEAMS:
                    n, cost = (30, 0.5) if team == SPIKE and self.spiking.is_set() else (3, 0.05)
                    self.send(team, [event(team, t, round(cost * self.rng.uniform(0.9, 1.1), 6), self.rng)
                                     for _ in range(n)])
                self.producer.flush(10)
                self.stopped.wait(max(0.0, W / 2 - (time.time() - t)))
        except BaseException as exc:  # noqa: BLE001 - reported by stop()
            self.error = exc

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join(30)
        self.producer.flush(10)
        self.producer.close(10)
        if self.error is not None:
            raise AssertionError(f"the producer failed: {self.error!r}")


def judged(worker: Worker) -> dict[str, list[dict[str, Any]]]:
    """The series this worker judges, with their last judged windows ({} when it is down)."""
    try:
        return get_json(f"{worker.url}/api/windows", timeout=2, local=True)["series"]
    except (OSError, urllib.error.URLError):
        return {}


def spend_diff(worker: Worker, by_window: dict[int, Counter[str]], since: float = 0, until: float = 2e9,
               local: bool = False) -> list[str]:
    """The windows in ``[since, until)`` whose spend per team on ``worker`` differs from what
    was sent (``Stream.by_window``), one line each, for a failing test's output: a window missing
    whole says a lost windows message or spend record, a short one a lost usage message."""
    windows = sorted(x for x in by_window if since <= x < until)
    if not windows:
        return []
    want_all = sum((by_window[w] for w in windows), Counter())
    rows = get_json(f"{worker.url}/api/spend?group_by=team&since={windows[0]}&until={windows[-1] + W}", timeout=2,
                    local=local)["rows"]
    if {r["team"]: round(r["cost_usd"] * NANO) for r in rows} == dict(want_all):
        return []  # one request when every window is right
    out = []
    for w in windows:
        try:
            rows = get_json(f"{worker.url}/api/spend?group_by=team&since={w}&until={w + W}", timeout=2,
                            local=local)["rows"]
        except Exception as exc:  # noqa: BLE001 - a diagnostic: say so and go on
            out.append(f"window {w}: {exc!r}")
            continue
        got = {r["team"]: round(r["cost_usd"] * NANO) for r in rows}
        want = dict(by_window[w])
        if got != want:
            out.append(f"window {w} ({time.strftime('%H:%M:%S', time.gmtime(w))} UTC): "
                       f"got {got}, want {want}")
    return out


def exact_spend(survivor: Worker, ledger: Ledger, by_window: dict[int, Counter[str]],
                history_before_kill: list[str] | None) -> None:
    """Wait for the survivor's spend per team to equal what was sent; when it does not, print
    which windows differ there and (``history_before_kill``, placement org) which history
    windows already differed on the dead worker before the kill."""
    try:
        wait_until(lambda: ledger.matches(get_json(f"{survivor.url}/api/spend?group_by=team")["rows"]), 40,
                   "the exact spend per team on the survivor")
    except AssertionError:
        print("windows whose spend differs on the survivor:", *spend_diff(survivor, by_window), sep="\n  ")
        if history_before_kill is not None:
            print("history windows that differed on the owner before the kill:",
                  *(history_before_kill or ["none"]), sep="\n  ")
        raise


def partitions(worker: Worker) -> list[int]:
    return get_json(f"{worker.url}/healthz", timeout=2)["usage_partitions"]


def _apache_kafka_only() -> list[Any]:
    """The ``broker`` fixture on Apache Kafka only (skipped as conftest skips that tier)."""
    why = apache_kafka.available()
    if why is True or os.environ.get("CI"):
        return ["kafka"]
    return [pytest.param("kafka", marks=pytest.mark.skip(reason=f"Apache Kafka tier: {why}"))]


@pytest.fixture
def workers() -> Iterator[list[Worker]]:
    made: list[Worker] = []
    yield made
    for w in made:  # process groups, also when the test failed half-way
        w.kill()


def org_verdicts(worker: Worker) -> float:
    """The verdicts messages ``worker``'s org stage has received (``TOKENPULSE_PLACEMENT=series``;
    0 on a worker that never held an org partition)."""
    return sum(float(line.rsplit(" ", 1)[1]) for line in get_text(f"{worker.url}/metrics", timeout=2).splitlines()
               if line.startswith("tokenpulse_org_verdicts_total{"))


@pytest.mark.parametrize("placement", ["org", "series"])
@pytest.mark.parametrize("broker", _apache_kafka_only(), indirect=True)
def test_sigkilled_worker_is_taken_over_exactly(broker: Any, pagerduty: Any, workdir: Path,
                                                workers: list[Worker], placement: str) -> None:
    if placement == "series":  # ads and the org stage on one partition: the kill takes both
        assert series_partition(f"team={SPIKE}", PARTITIONS) == org_partition(DEFAULT_ORG, PARTITIONS)
    began = time.monotonic()
    rng = random.Random(815)
    policy = workdir / "policy.yaml"
    policy.write_text(policy_text(noon_zone(time.time())))
    env = deployment_env(broker, workdir, PARTITIONS, tag="fo", window_seconds=W, lateness_seconds=0.5,
                         idle_grace_seconds=1, checkpoint_seconds=0.2, kafka_session_timeout_seconds=SESSION_TIMEOUT,
                         policy=policy, placement=placement,
                         pagerduty_routing_key=PD_KEY, pagerduty_url=pagerduty.enqueue_url)
    usage = f"{env['TOKENPULSE_TOPIC_PREFIX']}.usage"
    ledger = Ledger()
    marks: dict[str, float] = {}

    def mark(what: str) -> None:
        marks[what] = round(time.monotonic() - began, 1)

    # a quiet history the detectors learn from (30 windows), on the usage topic before the
    # workers start (docs/deploying.md#backfills): sent once they had read their empty
    # partitions (idle, left out of the judges' watermark), it was judged by whichever
    # partition's worker read its part first, the rest counted as late and never judged
    stream = Stream(broker.bootstrap, usage, ledger, rng)
    t0 = int(time.time() // W) * W - 30 * W
    for i in range(2 * 30):  # the live rate: 3 events per team twice a window
        for team in TEAMS:
            stream.send(team, [event(team, t0 + i * W / 2 + rng.random() * W * 0.45,
                                     round(0.05 * rng.uniform(0.9, 1.1), 6), rng) for _ in range(3)])
    stream.producer.flush(30)

    for k in (1, 2):
        workers.append(Worker({**env, "TOKENPULSE_DATA_DIR": str(workdir / f"data{k}")}, workdir / f"worker{k}.log"))
    with ThreadPoolExecutor(2) as pool:  # both join the group at once: 2 usage partitions each
        for f in [pool.submit(w.start, PARTITIONS // 2) for w in workers]:
            f.result()
    # Faust's group (the judge) settles a moment after the ingest group that start() waits for,
    # and longer on a loaded machine; the live traffic comes once both have (this test is about
    # the takeover after a SIGKILL)
    settled(workers, PARTITIONS)
    mark("started")

    try:
        stream.start()
        series = f"team={SPIKE}"
        owner = wait_until(lambda: next((w for w in workers if series in judged(w)), None), 30,
                           f"a worker judging {series}")
        # live windows judged (and checkpointed every 0.2 s) before the spike
        live = time.time()
        wait_until(lambda: max(r["window_start"] for r in judged(owner)[series]) >= live, 20, "a live window judged")
        mark("judging")

        spike_start = int(time.time() // W) * W + W
        time.sleep(max(0.0, spike_start - time.time()))
        stream.spiking.set()
        wait_until(lambda: [e for e in pagerduty.events() if e["event_action"] == "trigger"], 30, "the page")
        mark("paged")
        stream.spiking.clear()
        time.sleep(1.0)  # five checkpoints: the deliveries table has recorded the trigger

        [survivor] = [w for w in workers if w is not owner]
        theirs = set(judged(owner))
        moving = theirs - set(judged(survivor))  # the series that must move to the survivor
        assert series in moving, (sorted(theirs), sorted(judged(survivor)))
        # the survivor's count so far: from a moment of the first rebalance at most (settled()
        # saw the org partition on the owner), and it grows from the kill on only if it took over
        before = org_verdicts(survivor)
        # the history as the owner (windows partition 0 with placement org) holds it before the
        # kill: tells a spend record lost at the start from one lost in the takeover
        history_before_kill = (spend_diff(owner, stream.by_window, until=t0 + 30 * W, local=True)
                               if placement == "org" else [])
        if placement == "series":
            assert org_verdicts(owner), "the org stage is not on the worker judging ads"
        log_at_kill = survivor.log_path.stat().st_size  # the survivor's rebalances after it: below
        owner.kill()  # SIGKILL to its process group, traffic still flowing
        killed = time.time()
        mark("killed")

        first = wait_until(lambda: moving & set(judged(survivor)), 60, "the survivor judging the dead worker's series")
        resumed = time.time() - killed
        mark("resumed")
        # both groups rebalanced to the survivor: the ingest group's usage partitions and the
        # Faust group's judge (windows) partitions
        wait_until(lambda: len(partitions(survivor)) == PARTITIONS, 30, "every usage partition on the survivor")
        wait_until(lambda: len(get_json(f"{survivor.url}/api/status", local=True)["judge"]) == PARTITIONS, 30,
                   "every judge partition on the survivor")
        if placement == "series":
            wait_until(lambda: org_verdicts(survivor) > before, 30, "the org stage on the survivor")
        mark("rebalanced")
        print(f"judging resumed {resumed:.1f}s after the kill (first: {sorted(first)}); "
              f"target: session timeout {SESSION_TIMEOUT:.0f}s + one window {W}s")

        # back to normal on the survivor: the incident resolves there, once
        wait_until(lambda: [e for e in pagerduty.events() if e["event_action"] == "resolve"], 40, "the resolve")
        mark("resolved")
        stream.stop()
        exact_spend(survivor, ledger, stream.by_window, history_before_kill if placement == "org" else None)
        mark("exact")

        def spent() -> list[int]:
            spent.last = get_json(f"{survivor.url}/api/budgets")["budgets"]  # type: ignore[attr-defined]
            return [r["spent_base"] for r in spent.last if r["budget"] == "ads-daily"]  # type: ignore[attr-defined]

        try:
            wait_until(lambda: spent() == [ledger.nusd[SPIKE]], 30, "the exact ads budget on the survivor")
        except AssertionError:
            print("budgets:", spent.last, "want", ledger.nusd[SPIKE])  # type: ignore[attr-defined]
            raise
        mark("budget")

        time.sleep(1.0)  # room for a late duplicate page to show up
        pages = Counter((e["dedup_key"], e["event_action"]) for e in pagerduty.events())
        assert pages == Counter({(DEDUP, "trigger"): 1, (DEDUP, "resolve"): 1}), pages
        # Issue 15 asks for the session timeout plus one window (8 s). Measured on the shared
        # 2-core machine: 6.8-10.1 s in 14 runs (median 7.4 s, 9 within 8 s; docs/deploying.md,
        # "Failover"). A timing is measured, not asserted (the project's rule for timed tests),
        # and the printed line reports it against the target. What a slow takeover must not
        # hide is asserted instead: a stuck partition fails the waits above, and a second
        # session timeout (the survivor dropped from a group too, or the dead worker expired
        # twice) shows as a second rebalance of a group on the survivor. A time bound stood
        # for both and failed on load alone: 14.1 s against 2 x 6 s + 2 s at load 22, with one
        # rebalance of each group (Faust's table recovery took 6-8 s of it).
        after_kill = survivor.log_path.read_bytes()[log_at_kill:].decode(errors="replace")
        rebalances = {group: after_kill.count(f"] {group} partitions assigned:") for group in ("judge", "usage")}
        assert rebalances == {"judge": 1, "usage": 1}, (f"the survivor's groups rebalanced {rebalances} times "
                                                        f"after the kill (judging resumed {resumed:.1f}s after it)")
        assert survivor.proc is not None and survivor.proc.poll() is None
        print(f"failover test: steps at {marks}s; {ledger.last}")
    except BaseException:
        stream.stopped.set()
        for w in workers:
            print(f"--- {w.log_path.name}")
            print(w.diagnostics() if w.proc is not None and w.proc.poll() is None else w.log_tail(150))
        print(getattr(ledger, "last", None), marks)
        raise
    finally:
        stream.stopped.set()
        for w in workers:
            w.stop()
