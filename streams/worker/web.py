"""JSON API and Prometheus metrics served by the worker (Faust's web server).

Every view declares its query parameters (:func:`streams.worker.query.takes`): a bad value, an unknown
or repeated parameter gets HTTP 400 ``{"error": "<param>: <why>", "param": "<param>"}``.

- ``/dashboard``                   one page over all of the below (``?series=`` opens a series)
- ``/assets/<file>``               the dashboard's script, style sheet and charting library
- ``/healthz``                     liveness and assigned partitions
- ``/metrics``                     Prometheus text
- ``/api/spend?group_by=&since=&until=``  exact sums over closed windows
- ``/api/alerts``                  latest state of every alert, with delivery status and on-call's answers
- ``/api/sinks``                   health of every configured receiver
- ``/api/budgets[?budget=&at=]``   every budget of this worker's partitions in its current period
- ``/api/policy``                  the policy file, when it was loaded, the last reload and its result
- ``/api/report?period=|report=``  a spend report computed on demand (:func:`register_report_view`)
- ``/api/digests``                 the Slack digests waiting and sent (:func:`register_digest_view`)
- ``/api/inbox``                   the dev inbox: what Slack and PagerDuty would have received
- ``/api/feedback[?team=&at=]``    on-call's answers to alerts (Slack buttons), newest first, per
                                   team the last 30 days' alerts and answers (the precision on-call sees),
                                   and the series whose alert floor "not an anomaly" answers raised
- ``/api/timeseries?by=&range=``   spend over time by team, model, provider or tool, with alert markers
- ``/api/burndown[?budget=]``      each budget's cumulative spend over its period, limit and forecast
- ``/api/inhouse?range=``          per team, the in-house share of spend over time
- ``/api/top_users?range=&limit=`` users by spend and by excess over their usual

Any worker answers for the whole deployment (:func:`anyworker`): it asks the peers holding the
judge partitions it lacks (:mod:`streams.worker.peers`) and merges their answers with the
endpoint's rule (:data:`streams.worker.merge.MERGES`); every merged answer says ``complete`` and
names what is ``missing`` (a peer that did not answer within ``TOKENPULSE_PEER_TIMEOUT_SECONDS``).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from importlib.resources import files
from typing import Any

import orjson

from streams.budgets.mix import mix_rows
from streams.common.dimensions import ALIASES, NAMES, TEAM_MODEL, USER, parse_series
from streams.common.periods import Period, rfc3339
from streams.common.spend import coarsest, spend_windows
from streams.delivery.digests import Digester
from streams.ingest.windows import NANO
from streams.reports.core import REPORT_PERIODS, ReportSpec, build_report
from streams.reports.reporting import Reporting
from streams.worker.charts import RANGES, STACK_BY, TOP_SERIES, burn_down, inhouse_over_time, spend_over_time, top_users
from streams.worker.feedback import SUMMARY_DAYS, answers_by_incident, feedback_rows, feedback_summary
from streams.worker.lifecycle import ALERT_STATES, lifecycle, wanted
from streams.worker.merge import MERGES, merge
from streams.worker.peers import FORWARDED, PARTITIONS_HEADER, format_partitions
from streams.worker.query import Choice, Int, Name, ParamError, Query, Series, Time, Zone, shown, takes
from streams.worker.state import WorkerState

# What each view takes; streams.worker.query refuses anything else with a 400 naming the parameter.
NOTHING = Query()
SPEND_QUERY = Query(group_by=Choice(default="team", choices=NAMES, aliases=ALIASES),
                    since=Time(), until=Time())
MIX_QUERY = Query(since=Time(), until=Time())
WINDOWS_QUERY = Query(series=Series())
ALERTS_QUERY = Query(state=Choice(choices=ALERT_STATES))
BUDGETS_QUERY = Query(budget=Name(), at=Time())
DASHBOARD_QUERY = Query(series=Series())  # read by the page's script: checked here all the same
REPORT_QUERY = Query(period=Choice(choices=("day", "week"), aliases={"daily": "day", "weekly": "week"}),
                     report=Name(), at=Time(), tz=Zone(), team=Name(forbid="|="))
RANGE = Choice(default="24h", choices=tuple(RANGES))
TIMESERIES_QUERY = Query(by=Choice(default="team", choices=STACK_BY), range=RANGE, until=Time())
BURNDOWN_QUERY = Query(budget=Name(), at=Time())
INHOUSE_QUERY = Query(range=RANGE, until=Time())
FEEDBACK_QUERY = Query(team=Name(forbid="|="), at=Time())
TOP_USERS_QUERY = Query(range=RANGE, until=Time(), limit=Int(default=10, lo=1, hi=100))
FIELDS = ("cost_usd", "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "events")

# The dashboard's own files (streams/worker/assets/), served under /assets/ with their types:
# the page's CSP allows scripts and styles from the worker itself only.
ASSETS = {
    "dashboard.js": "text/javascript; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
    "uplot.min.js": "text/javascript; charset=utf-8",  # uPlot 1.6.32 (MIT, uplot.LICENSE), from npm
    "uplot.min.css": "text/css; charset=utf-8",
    "uplot.LICENSE": "text/plain; charset=utf-8",
}


def asset(name: str) -> str:
    """The text of one of :data:`ASSETS`."""
    return files("streams.worker").joinpath("assets", name).read_text(encoding="utf-8")


def dashboard_html() -> str:
    """The dashboard page (``streams/worker/dashboard.html``): static, it reads the JSON API below
    and inserts every value as text."""
    return files("streams.worker").joinpath("dashboard.html").read_text(encoding="utf-8")


def _group_key(series: str, group_by: str) -> tuple[str | None, str] | None:
    """The row of ``/api/spend?group_by=`` that ``series`` is summed into: its org (None: the
    default org) and its value in that dimension (the whole key for team×model and for an org),
    or None when it is a series of another dimension. Two orgs' teams of one name are two rows."""
    got = parse_series(series)
    if got is None or got[0].name != group_by:
        return None
    dim, labels = got
    org = labels.get("org")
    if len(dim.labels) == 1:
        return org, labels[dim.labels[0]]
    return org, series


def spend_rows(
    items: Any, group_by: str, since: float | None, until: float | None
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    acc: dict[tuple[str | None, str], list[int]] = {}
    for series, w, _, sums in spend_windows(items, 0):  # windows, hours and days alike
        if since is not None and w < since:
            continue
        if until is not None and w >= until:
            continue
        g = _group_key(series, group_by)
        if g is None:
            continue
        cur = acc.setdefault(g, [0, 0, 0, 0, 0, 0])
        for i in range(6):
            cur[i] += sums[i]
    total = [0, 0, 0, 0, 0, 0]
    rows = []
    for g, s in sorted(acc.items(), key=lambda kv: -kv[1][0]):
        for i in range(6):
            total[i] += s[i]
        org, value = g
        # another org's row names it (the default org's rows read as they always did)
        rows.append({group_by: value, **({} if org is None or group_by == "org" else {"org": org}), **_as_fields(s)})
    return rows, _as_fields(total)


def _as_fields(s: list[int]) -> dict[str, Any]:
    return {
        "cost_usd": round(s[0] / NANO, 9),
        "input_tokens": s[1],
        "output_tokens": s[2],
        "cache_read_tokens": s[3],
        "cache_write_tokens": s[4],
        "events": s[5],
    }


def budget_rows(ledgers: dict[int, Any], specs: Any, now: float, budget: str | None = None) -> list[dict[str, Any]]:
    """Where each budget held by ``ledgers`` stands at ``now``, in the period holding ``now``.

    ``spent_base`` / ``limit_base`` are the ledger's exact integers (nano-dollars or tokens);
    ``unallocated`` (org budgets only) is the limit minus every share of it, read from the
    whole policy (``specs``) since the shares' ledgers may sit on other partitions.
    """
    all_specs = list(specs)
    rows: list[dict[str, Any]] = []
    for q, led in sorted(ledgers.items()):
        for name, spec in sorted(led.budgets.items()):
            if budget is not None and name != budget:
                continue
            st = led.status(name, now)
            fc = st.forecast
            spent_base = led.spent(name, st.period_id)
            row: dict[str, Any] = {
                "budget": name,
                "series": spec.series,
                "scope": spec.labels,
                "parent": spec.parent,
                "partition": q,
                "unit": spec.unit,
                "period": spec.period,
                "tz": spec.tz,
                "period_id": st.period_id,
                "period_start": rfc3339(st.period_start),
                "period_end": rfc3339(st.period_end),
                "spent": round(st.spent, 9),
                "spent_base": spent_base,
                "limit": st.limit,
                "limit_base": spec.limit,
                "pct_used": round(st.pct_used, 4),
                "days_left": round(st.days_left, 4),
                "thresholds": st.thresholds,
                "fired": st.fired,
                "forecast": {
                    "projected_total": round(fc.projected_total, 9),
                    "projected_pct": round(fc.projected_pct, 4),
                    "exhaustion_at": None if st.exhaustion_ts is None else rfc3339(st.exhaustion_ts),
                    "breach": st.forecast_breach,
                    "method": fc.method,
                    "note": fc.note,
                },
            }
            if not spec.scope:
                shares = sum(s.limit for s in all_specs if s.parent == name)
                row["unallocated"] = spec.to_display(spec.limit - shares)
                row["unallocated_base"] = spec.limit - shares
            if budget is not None:
                row["periods"] = led.periods(name)
                row["changes"] = led.change_log(name)
            rows.append(row)
    return rows


# Counters of the ingest partitions that are reasons of tokenpulse_events_rejected_total
REJECT_REASONS = {"rejected": "invalid", "implausible": "implausible", "failed": "error"}


def ingest_totals(cores: Any) -> dict[str, int]:
    """The ingest partitions' counters (:class:`streams.ingest.windows.Counters`) summed."""
    total: dict[str, int] = {}
    for core in list(cores):
        for name, value in core.counters.to_dict().items():
            total[name] = total.get(name, 0) + value
    return total


def ingest_metrics(totals: dict[str, int]) -> tuple[dict[str, float], dict[str, list[tuple[dict[str, str], float]]]]:
    """The ingest counters as metrics: ``events_<name>_total`` and ``windows_closed_total``,
    and the three reasons of ``events_rejected_total`` (invalid, implausible, error).

    >>> plain, labelled = ingest_metrics({"accepted": 5, "rejected": 2, "implausible": 1, "failed": 0})
    >>> plain, labelled["events_rejected_total"]
    ({'events_accepted_total': 5.0}, [({'reason': 'invalid'}, 2.0), ({'reason': 'implausible'}, 1.0), ({'reason': 'error'}, 0.0)])
    """
    plain: dict[str, float] = {}
    for name, value in totals.items():
        if name not in REJECT_REASONS:
            plain["windows_closed_total" if name == "windows_closed" else f"events_{name}_total"] = float(value)
    rejected = [({"reason": reason}, float(totals.get(name, 0))) for name, reason in REJECT_REASONS.items()]
    return plain, {"events_rejected_total": rejected}


def forwarded(request: Any) -> bool:
    """Whether ``request`` was forwarded by another worker (:data:`streams.worker.peers.FORWARDED`):
    answer from this worker's partitions only, uncut where the asker's merge cuts."""
    return bool(request.headers.get(FORWARDED))


def anyworker(state: WorkerState, path: str) -> Callable[[Any], Any]:
    """Decorate a view ``(web, request)`` of an endpoint of :data:`MERGES` so that any worker
    gives the deployment's answer: the view answers from this worker's partitions, the peers
    holding the others are asked the same (in parallel, once each, with a short timeout), and
    the answers are merged with the endpoint's rule, plus ``complete`` and ``missing``.

    A request forwarded by a peer is answered from this worker's partitions alone, with the
    partitions it covers in :data:`PARTITIONS_HEADER`. A refused request (400) is refused here,
    before any peer is asked. A 404 here (a budget or series this worker does not hold) is
    asked of the peers too; it stands only if none of them has it."""

    def decorate(view: Any) -> Any:
        @functools.wraps(view)
        async def any_view(web: Any, request: Any) -> Any:
            resp = await view(web, request)
            peers = state.peers
            if peers is None:
                return resp
            if forwarded(request):
                resp.headers[PARTITIONS_HEADER] = format_partitions(peers.held())
                return resp
            if resp.status not in (200, 404):
                return resp
            local = orjson.loads(resp.body) if resp.status == 200 else None
            fanned = await peers.ask(request.path_qs, local)
            if not fanned.bodies:  # nobody holds it: the local 404, saying whether everyone was asked
                body = {**orjson.loads(resp.body), "complete": fanned.complete, "missing": fanned.missing}
                return web.json(body, status=resp.status)
            return web.json({**merge(path, fanned.bodies), "complete": fanned.complete, "missing": fanned.missing})

        return any_view

    return decorate


Page = Callable[[str], Callable[[Any], Any]]
"""What :func:`pages` returns: ``page(path)`` decorates a view and registers it at ``path``."""


def pages(app: Any, state: WorkerState) -> Page:
    """``app.page`` for this worker's views: an endpoint with a merge rule is answered for the
    whole deployment (:func:`anyworker`), the others (:data:`streams.worker.merge.LOCAL`) as they are."""

    def page(path: str) -> Callable[[Any], Any]:
        def register(view: Any) -> Any:
            return app.page(path)(anyworker(state, path)(view) if path in MERGES else view)

        return register

    return page


def register_views(app: Any, state: WorkerState) -> None:
    """Every view above on ``app``, reading the running worker's ``state``: the hot path's
    cores (checkpoints, lag), the judges and budget ledgers by judge partition, the tables,
    the receivers' health, the config in force (a policy reload changes budgets and silences)
    and the reloader's status. One ``register_*`` function an area (the dashboard, health,
    spend, status, alerts, budgets and policy, on-call's answers, charts, report, digests),
    each taking from ``state`` at registration the objects its views read."""
    page = pages(app, state)
    register_dashboard_views(app, page)
    register_health_views(app, state, page)
    register_spend_views(state, page)
    register_status_views(state, page)
    register_alert_views(state, page)
    register_policy_views(state, page)
    register_answer_views(state, page)
    register_chart_views(app, state)
    register_report_view(app, state.reporting, lambda: state.peers)
    register_digest_view(app, state.tables.digests, page)


def register_dashboard_views(app: Any, page: Page) -> None:
    """``/dashboard`` (the page, read once here) and its static files under ``/assets/``."""
    html = dashboard_html()

    @page("/dashboard")
    @takes(DASHBOARD_QUERY)
    async def dashboard_view(web: Any, request: Any, args: dict[str, Any]) -> Any:
        return web.html(html)

    for name, ctype in ASSETS.items():
        _asset_view(app, name, ctype)


def register_health_views(app: Any, state: WorkerState, page: Page) -> None:
    """``/healthz`` (liveness, partitions, whether the judge is settling) and ``/metrics``."""
    metrics, ingest, pricer, started = state.metrics, state.ingest, state.pricer, state.started
    cores: dict[int, Any] = ingest.cores

    @page("/healthz")
    @takes(NOTHING)
    async def healthz(web: Any, request: Any, args: dict[str, Any]) -> Any:
        assigned = sorted(ingest.assigned)
        # the judge's (Faust's) group settles apart from the hot path's: both say where they stand
        judging = state.judging.owned()
        watch, now = state.settle, time.monotonic()
        watch.poll(now)
        stalled = watch.stalled(now)
        body = {"status": "stalled" if stalled else "ok", "uptime_s": round(time.time() - started, 1),
                "usage_partitions": assigned, "judge_partitions": None if judging is None else sorted(judging),
                # true from a rebalance's start until its tables are recovered
                "judge_settling": bool(getattr(app, "rebalancing", False)),
                "judge_settling_s": round(watch.settling_for(now), 1)}
        if stalled:  # a liveness probe restarts the worker (TOKENPULSE_JUDGE_STALL_SECONDS)
            body["reason"] = (f"the judge has been rebalancing or recovering its tables for "
                              f"{watch.stalled_for(now):.0f} s without reading a changelog record")
            return web.json(body, status=503)
        return web.json(body)

    @page("/metrics")
    @takes(NOTHING)
    async def metrics_view(web: Any, request: Any, args: dict[str, Any]) -> Any:
        extra, labelled = ingest_metrics(ingest_totals(cores.values()))
        extra["events_unpriced_total"] = float(sum(pricer.unpriced.values()))
        for p in list(cores):
            lag = ingest.lag(p)
            if lag is not None:
                metrics.set("consumer_lag", lag, {"partition": str(p)})
        return web.text(metrics.render(extra, labelled), content_type="text/plain; version=0.0.4")


def register_spend_views(state: WorkerState, page: Page) -> None:
    """``/api/spend`` and ``/api/mix``: sums over the closed windows of the spend table."""
    cfg, spend_t = state.cfg, state.tables.spend

    @page("/api/spend")
    @takes(SPEND_QUERY)
    async def spend_view(web: Any, request: Any, args: dict[str, Any]) -> Any:
        group_by, since, until = args["group_by"], args["since"], args["until"]
        if since is not None and until is not None and since >= until:
            raise ParamError("since", "must be before until")
        items = list(spend_t.data.items())
        rows, total = spend_rows(items, group_by, since, until)
        return web.json(
            {
                "group_by": group_by,
                "since": since,
                "until": until,
                "window_seconds": cfg.window_seconds,
                # the longest span of the records summed: older spend is kept by the hour, then the day
                "resolution_seconds": coarsest(items, cfg.window_seconds, since, until, group_by),
                "note": "closed windows only; since/until select windows by their start",
                "rows": rows,
                "total": total,
            }
        )

    @page("/api/mix")
    @takes(MIX_QUERY)
    async def mix_view(web: Any, request: Any, args: dict[str, Any]) -> Any:
        """Per team: spend on internal vs third-party models (policy ``mix.internal_models``)
        over ``[since, until)`` (default: the last 7 days), and the change against the
        previous period of the same length."""
        until = args["until"] if args["until"] is not None else time.time()
        since = args["since"] if args["since"] is not None else until - 7 * 86400
        if since >= until:
            raise ParamError("since", "must be before until" + ("" if args["until"] is not None else " (now)"))
        items = list(spend_t.data.items())
        rows = mix_rows(items, cfg.internal_models, since, until)
        return web.json({"since": rfc3339(since), "until": rfc3339(until), "internal_models": list(cfg.internal_models),
                         "resolution_seconds": coarsest(items, cfg.window_seconds, since - (until - since), until,
                                                        TEAM_MODEL.name),
                         "note": "closed windows only; internal = a model matching mix.internal_models",
                         "teams": rows})


def register_status_views(state: WorkerState, page: Page) -> None:
    """``/api/status`` and ``/api/windows``: where the hot path's cores and the judges stand."""
    cfg, ingest, judges = state.cfg, state.ingest, state.judging.judges
    cores: dict[int, Any] = ingest.cores

    @page("/api/status")
    @takes(NOTHING)
    async def status_view(web: Any, request: Any, args: dict[str, Any]) -> Any:
        """Where each partition's clock and watermarks stand: what an operator asks first
        when alerts seem late."""
        now = time.time()
        parts = {}
        for p, core in sorted(cores.items()):
            parts[str(p)] = {
                "max_ts": core.max_ts,
                "clock": core.clock(now) if core.max_ts is not None else None,
                "closed_until": core.closed_until,
                "applied_offset": core.applied_offset,
                "open_windows": sorted(core.windows),
                "last_checkpoint_age_s": round(now - ingest.last_ckpt.get(p, 0.0), 3),
                "checkpoint_in_progress": p in ingest.in_ckpt,
                "counters": core.counters.to_dict(),
            }
        judge = {}
        for q, j in sorted(judges.items()):
            judge[str(q)] = {
                "source_watermarks": {str(k): v for k, v in sorted(j.src_wm.items())},
                "sources_expected": j.n_src,
                "watermark": j.watermark(),
                "done_until": j.done_until,
                "pending_windows": sorted(j.pending),
                "series": len(j.series),
            }
        body = {"now": now, "ingest": parts, "ingest_totals": ingest_totals(cores.values()), "judge": judge}
        if state.organizing is not None:
            # the org stage apart (TOKENPULSE_PLACEMENT=series): how far it has merged its judges'
            # verdicts, which can trail the judges' own done_until (an answer acts at this point)
            body["org"] = {str(p): {"judge_watermarks": {str(k): v for k, v in sorted(o.judge_wm.items())},
                                    "judges_expected": o.n_judges, "watermark": o.watermark(),
                                    "done_until": o.done_until, "pending_windows": sorted(o.pending)}
                           for p, o in sorted(state.organizing.orgs.items())}
        return web.json(body)

    @page("/api/windows")
    @takes(WINDOWS_QUERY)
    async def windows_view(web: Any, request: Any, args: dict[str, Any]) -> Any:
        """The last judged windows of a series: observed vs expected vs the alert bound."""
        series = args["series"]
        out = {}
        for j in list(judges.values()):
            if series is not None:  # a parked series' waiting empty windows, judged now
                j.settle(series)
            for name, rec in list(j.recent.items()):
                if series is None or name == series:
                    out[name] = list(rec)
        if series is not None and not out:
            raise ParamError("series", f"no judged windows for series {shown(series)} on this worker", status=404)
        return web.json({"window_seconds": cfg.window_seconds, "series": out})


def register_alert_views(state: WorkerState, page: Page) -> None:
    """``/api/silences``, ``/api/alerts`` (with delivery and on-call's answers) and ``/api/sinks``."""
    alerts_t, deliveries_t = state.tables.alerts, state.tables.deliveries

    @page("/api/silences")
    @takes(NOTHING)
    async def silences_view(web: Any, request: Any, args: dict[str, Any]) -> Any:
        now = time.time()
        out = []
        snoozes = [] if state.feedback is None else [s.to_dict() for s in state.feedback.silences()]
        for s in [*(state.live.alert_policy.get("silences") or ()), *snoozes]:
            ends = s.get("ends_at")
            phase = "pending" if now < s["starts_at"] else "expired" if ends is not None and now >= ends else "active"
            out.append({**s, "starts_at": rfc3339(s["starts_at"]), "ends_at": None if ends is None else rfc3339(ends),
                        "state": phase})
        return web.json({"silences": out})

    @page("/api/alerts")
    @takes(ALERTS_QUERY)
    async def alerts_view(web: Any, request: Any, args: dict[str, Any]) -> Any:
        out = []
        answers = {} if state.feedback is None else answers_by_incident(list(state.feedback.table.data.values()))
        # a snooze is a silence on the series: the alert's state while it holds (the clock of /api/silences)
        snoozes = [] if state.feedback is None else state.feedback.silences()
        now = time.time()
        for key, rec in list(alerts_t.data.items()):
            if rec is None:
                continue
            item = dict(rec)
            started = rec.get("started_at")
            mine = answers.get((key, float(started) if isinstance(started, int | float) else None), [])
            item.update(lifecycle(rec, mine, snoozes, now))
            item["feedback"] = [{**a, "at": rfc3339(a["at"]) if isinstance(a.get("at"), int | float) else a.get("at")}
                                for a in mine]
            d = deliveries_t.data.get(key) or {}
            item["delivery"] = {sink: {k: v for k, v in st.items() if k in ("ok", "seq", "detail", "attempts")}
                                for sink, st in d.items()}
            out.append(item)
        out = [a for a in out if wanted(a["state"], args["state"])]
        out.sort(key=lambda a: a.get("fired_at") or 0, reverse=True)
        return web.json({"alerts": out})

    @page("/api/sinks")
    @takes(NOTHING)
    async def sinks_view(web: Any, request: Any, args: dict[str, Any]) -> Any:
        """Per receiver: up or failing, consecutive failures, the last error (never a secret),
        the last success, and the notifications waiting to be retried."""
        rows = state.delivery.sinks_status()
        now = time.time()
        out = []
        for row in rows:
            item = dict(row)
            for k in ("last_error_at", "last_success_at"):
                item[k] = None if item.get(k) is None else rfc3339(item[k])
            out.append(item)
        return web.json({"now": rfc3339(now), "sinks": out})


def register_policy_views(state: WorkerState, page: Page) -> None:
    """``/api/budgets`` (the ledgers of this worker's judge partitions) and ``/api/policy``."""
    ledgers, started = state.judging.ledgers, state.started

    @page("/api/budgets")
    @takes(BUDGETS_QUERY)
    async def budgets_view(web: Any, request: Any, args: dict[str, Any]) -> Any:
        """Each budget owned by this worker's judge partitions, in its current period (event
        time ``at``, default now): spent of limit, % used, days left, forecast, fired
        thresholds; ``?budget=`` also lists its periods with a ledger and its change log."""
        now = time.time() if args["at"] is None else args["at"]
        name = args["budget"]
        specs = state.live.budgets
        rows = budget_rows(dict(ledgers), specs, now, name)
        if name is not None and not rows:
            known = any(s.name == name for s in specs)
            why = "is held by another worker's partition" if known else "is not in the policy"
            raise ParamError("budget", f"budget {shown(name)} {why}", status=404)
        return web.json({"at": rfc3339(now), "partitions": sorted(ledgers), "budgets": rows})

    @page("/api/policy")
    @takes(NOTHING)
    async def policy_view(web: Any, request: Any, args: dict[str, Any]) -> Any:
        """The policy file in force, when it was loaded, and the last reload: its time, result
        and error (file and line), the sections it applied and those waiting for a restart.
        Only the policy's own state: never a setting."""
        if state.reloader is None:
            return web.json({"path": None, "loaded_at": rfc3339(started), "last_reload": None, "restart_required": [],
                             "note": "no policy file (TOKENPULSE_POLICY): the defaults are in force, nothing to reload"})
        st = state.reloader.status()
        last = st.get("last_reload")
        if last is not None:
            last = {**last, "at": rfc3339(last["at"])}
        return web.json({**st, "loaded_at": rfc3339(st["loaded_at"]), "last_reload": last})


def register_answer_views(state: WorkerState, page: Page) -> None:
    """``/api/inbox`` (what the receivers would have got) and ``/api/feedback`` (on-call's answers)."""
    judges, alerts_t = state.judging.judges, state.tables.alerts

    @page("/api/inbox")
    @takes(NOTHING)
    async def inbox_view(web: Any, request: Any, args: dict[str, Any]) -> Any:
        """The dev inbox (:mod:`streams.worker.inbox`): Slack messages as posted, with their
        thread replies and rewrites, and PagerDuty events; ``enabled: false`` when the
        receivers are real."""
        if state.inbox is None:
            return web.json({"enabled": False, "slack": [], "pagerduty": [],
                             "note": "no dev inbox: notifications go to the receivers in /api/sinks"})
        return web.json(state.inbox.view())

    @page("/api/feedback")
    @takes(FEEDBACK_QUERY)
    async def feedback_view(web: Any, request: Any, args: dict[str, Any]) -> Any:
        """On-call's answers to alerts on this worker's partitions (Slack buttons): what, on
        which alert, by whom, when, the message answered and what it did; ``?team=`` filters.
        ``summary``: per team, the incidents of the 30 days before ``at`` (default now) and how
        many were acknowledged, called a new normal or not an anomaly
        (:func:`streams.worker.feedback.feedback_summary`). ``raised``: each series of this
        worker's judges whose alert floor "not an anomaly" answers raised
        (:mod:`streams.judge.raising`): the floor, how many answers, the last few with who and
        when (the reason), and the bounds in force."""
        until = time.time() if args["at"] is None else args["at"]
        values = [] if state.feedback is None else list(state.feedback.table.data.values())
        summary = {"days": SUMMARY_DAYS, "since": rfc3339(until - SUMMARY_DAYS * 86400), "until": rfc3339(until),
                   "teams": feedback_summary(list(alerts_t.data.values()), values, until, team=args["team"])}
        if state.feedback is None:
            return web.json({"enabled": False, "feedback": [], "summary": summary,
                             "note": "no Slack signing secret (TOKENPULSE_SLACK_SIGNING_SECRET): no answer buttons"})
        rows = feedback_rows(list(state.feedback.table.data.items()), args["team"])
        for r in rows:
            for k in ("at", "applied_at"):
                if isinstance(r.get(k), int | float):
                    r[k] = rfc3339(r[k])
        live = state.judging.live
        raised = raised_rows(judges, args["team"])
        return web.json({"enabled": True, "feedback": rows, "summary": summary, "raised": raised,
                         "bounds": {"not_anomaly_step": live.not_anomaly_step, "max_raise": live.not_anomaly_max_raise,
                                    "floor_half_life_days": live.not_anomaly_half_life_days}})


def raised_rows(judges: dict[int, Any], team: str | None = None) -> list[dict[str, Any]]:
    """``GET /api/feedback``'s ``raised``: per series whose alert floor on-call's "not an
    anomaly" answers raised, the floor and why (the last answers), ``team``'s only when given."""
    out = []
    for j in list(judges.values()):
        for series, r in j.raises().items():
            labels = j.series[series].labels if series in j.series else {}
            if team is not None and labels.get("team") != team:
                continue
            answers = [{**a, **{k: rfc3339(a[k]) for k in ("at", "window_end") if isinstance(a.get(k), int | float)}}
                       for a in r.answers]
            out.append({"series": series, "team": labels.get("team"), "floor_usd": round(j.floor_now(r), 6),
                        "first_excess_usd": round(r.ref_usd, 6), "answers_total": r.count, "answers": answers})
    return sorted(out, key=lambda x: x["series"])


def _asset_view(app: Any, name: str, content_type: str) -> None:
    body = asset(name)

    async def asset_view(web: Any, request: Any, args: dict[str, Any]) -> Any:
        resp = web.text(body, content_type=content_type.partition(";")[0])
        resp.headers["Cache-Control"] = "no-cache"  # revalidated: a new version shows at once
        return resp

    asset_view.__name__ = asset_view.__qualname__ = "asset_" + name.replace(".", "_").replace("-", "_")
    app.page(f"/assets/{name}")(takes(NOTHING)(asset_view))


def alert_markers(records: Any, since: float, until: float) -> list[dict[str, Any]]:
    """Where alerts started and ended within ``[since, until)``, for the charts' markers: the
    latest notification of each alert key (the ``alerts`` table's values)."""
    out = []
    for rec in records:
        if rec is None:
            continue
        for at, state in ((rec.get("started_at"), "started"), (rec.get("ended_at"), "resolved")):
            if isinstance(at, (int, float)) and since <= at < until:
                out.append({"at": at, "state": state, "kind": rec.get("kind"), "key": rec.get("key"),
                            "series": rec.get("series"), "severity": rec.get("severity"), "title": rec.get("title")})
    out.sort(key=lambda m: m["at"])
    return out


def register_chart_views(app: Any, state: WorkerState) -> None:
    """The dashboard's charts (:mod:`streams.worker.charts`), over this worker's spend table:
    closed windows only, like ``/api/spend``."""
    cfg, tables = state.cfg, state.tables
    page = pages(app, state)

    def span(args: dict[str, Any]) -> tuple[float, float, int]:
        until = time.time() if args["until"] is None else args["until"]
        seconds, step = RANGES[args["range"]]
        return until - seconds, until, max(step, cfg.window_seconds)

    @page("/api/timeseries")
    @takes(TIMESERIES_QUERY)
    async def timeseries_view(web: Any, request: Any, args: dict[str, Any]) -> Any:
        """Spend per time bucket, one line per team, model, provider or tool (``by``), over the last
        ``range`` (1h, 24h, 7d, 30d) before ``until``, and the alerts that started or ended in it."""
        since, until, step = span(args)
        items = list(tables.spend.data.items())
        # uncut when merged (streams.worker.merge.timeseries ranks every worker's lines together and cuts)
        top = TOP_SERIES if state.peers is None else 2**31
        out = spend_over_time(items, args["by"], since, until, step, top=top)
        markers = alert_markers(list(tables.alerts.data.values()), since, until)
        return web.json({"by": args["by"], "range": args["range"], "since": since, "until": until,
                         "resolution_seconds": coarsest(items, cfg.window_seconds, since, until, args["by"]),
                         "note": "closed windows only; USD per bucket", **out, "alerts": markers})

    def curve(items: list[tuple[str, Any]], series: str, unit: str, start: float, end: float,
              now: float) -> dict[str, Any]:
        step = max(cfg.window_seconds, int((end - start) / 120) // cfg.window_seconds * cfg.window_seconds)
        return burn_down(items, series, unit, start, min(now, end), step)

    @page("/api/burndown")
    @takes(BURNDOWN_QUERY)
    async def burndown_view(web: Any, request: Any, args: dict[str, Any]) -> Any:
        """Each budget held by this worker (or ``budget``) in the period holding ``at``: its
        cumulative spend over the period, limit, thresholds, and the forecast's line to the
        period's end and run-out date.

        The ledger and the spend records of a budget's series can be on two workers (with
        ``TOKENPULSE_PLACEMENT=series`` the series is judged on its own partition, the ledger
        kept on its org's): with peers, this worker also answers ``parts``, the curve from its
        own spend records of each budget of the policy whose ledger it does not hold, and the
        merge (:func:`streams.worker.merge.burndown`) adds them to the ledger owner's row."""
        now = time.time() if args["at"] is None else args["at"]
        rows = budget_rows(dict(state.judging.ledgers), state.live.budgets, now, args["budget"])
        items = list(tables.spend.data.items())
        parts = []
        if state.peers is not None:
            held = {b["budget"] for b in rows}
            for spec in state.live.budgets:
                if spec.name in held or args["budget"] not in (None, spec.name):
                    continue
                first, last = Period(spec.period, spec.tz).bounds(now)
                part = curve(items, spec.series, spec.unit, first, last, now)
                if any(part["cumulative"]):
                    parts.append({"budget": spec.name, **part})
        if args["budget"] is not None and not rows and not parts:
            raise ParamError("budget", f"budget {shown(args['budget'])} is not held by this worker", status=404)
        out = []
        for b in rows:
            start = b["period_start_ts"] = _ts(b["period_start"])
            end = _ts(b["period_end"])
            out.append({k: b[k] for k in ("budget", "series", "unit", "period", "tz", "period_id", "period_start",
                                         "period_end", "spent", "limit", "pct_used", "thresholds", "fired",
                                         "forecast")}
                       | {"period_start_ts": start, "period_end_ts": end, "now": now,
                          **curve(items, b["series"], b["unit"], start, end, now)})
        return web.json({"at": rfc3339(now), "budgets": out, **({"parts": parts} if state.peers is not None else {})})

    @page("/api/inhouse")
    @takes(INHOUSE_QUERY)
    async def inhouse_view(web: Any, request: Any, args: dict[str, Any]) -> Any:
        """Per team, the in-house share of its spend per time bucket (policy ``mix.internal_models``)."""
        since, until, step = span(args)
        models = state.live.internal_models
        items = list(tables.spend.data.items())
        out = inhouse_over_time(items, models, since, until, step)
        return web.json({"range": args["range"], "since": since, "until": until, "internal_models": list(models),
                         "resolution_seconds": coarsest(items, cfg.window_seconds, since, until, TEAM_MODEL.name),
                         "note": "closed windows only; percent of each team's spend per bucket", **out})

    @page("/api/top_users")
    @takes(TOP_USERS_QUERY)
    async def top_users_view(web: Any, request: Any, args: dict[str, Any]) -> Any:
        """Users over the last ``range``: spend, requests and tokens, by spend and by excess
        over their usual (their mean over up to 7 spans of the same length before it)."""
        since, until, _ = span(args)
        items = list(tables.spend.data.items())
        out = top_users(items, since, until, limit=args["limit"])
        return web.json({"range": args["range"], "since": since, "until": until,
                         "resolution_seconds": coarsest(items, cfg.window_seconds, since, until, USER.name), **out})


def _ts(text: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def register_report_view(app: Any, reporting: Reporting, peers_of: Callable[[], Any] = lambda: None) -> None:
    """``GET /api/report``: the spend report of the last day or week that ended by ``at``,
    computed on demand from the parts of every judge partition (:meth:`Reporting.part`): this
    worker's own, and those of the peers (``peers_of()``: :class:`streams.worker.peers.Peers`),
    who answer a forwarded request with their parts (``parts``), not a report. Complete when
    every partition answered; else ``missing`` names the rest (a peer slower than its timeout)."""
    cfg = reporting.cfg

    @app.page("/api/report")
    @takes(REPORT_QUERY)
    async def report_view(web: Any, request: Any, args: dict[str, Any]) -> Any:
        """The spend report of the last day or week that ended by ``at`` (default now),
        computed from every judge partition's part: ``?period=day|week`` (or
        ``?report=NAME`` of the policy), ``&team=`` for one team, ``&tz=`` (default: the
        policy's ``budget_timezone``)."""
        name = args["report"]
        now = time.time() if args["at"] is None else args["at"]
        if name is not None:
            for extra in ("period", "team", "tz"):
                if args[extra] is not None:
                    raise ParamError(extra, "not with report= (a report of the policy has its own period, "
                                            "team and time zone)")
            spec = reporting.specs.get(name)
            if spec is None:
                raise ParamError("report", f"report {shown(name)} is not in the policy", status=404)
        else:
            if args["period"] is None:
                raise ParamError("period", "required: day or week (or report=NAME)")
            spec = ReportSpec(name=f"api:{args['period']}", channel="", period=REPORT_PERIODS[args["period"]],
                              tz=args["tz"] or cfg.report_timezone, team=args["team"])
        due = spec.closed(now)
        parts = {p: reporting.part(p, spec, due, now) for p in sorted(reporting.judges)}
        peers = peers_of()
        if forwarded(request):  # a peer builds the report: this worker's parts, for it to merge
            resp = web.json({"at": now, "parts": {str(q): part for q, part in parts.items()}})
            if peers is not None:
                resp.headers[PARTITIONS_HEADER] = format_partitions(peers.held())
            return resp
        missing: list[dict[str, Any]] = []
        if peers is not None:
            fanned = await peers.ask(request.path_qs, None)
            missing = fanned.missing
            for body in fanned.bodies:
                for q, part in (body.get("parts") or {}).items():
                    if q.isdigit() and int(q) < reporting.n:
                        parts.setdefault(int(q), part)
        held = sorted(parts)
        report = build_report(spec, due, [parts[q] for q in held], cfg.internal_models)
        return web.json({
            "at": now,
            "partitions": held,
            "complete": len(held) == reporting.n,
            "missing": missing if peers is not None else [{"partitions": sorted(set(range(reporting.n)) - set(held)),
                                                           "peer": None, "reason": "not held by this worker"}]
            if len(held) < reporting.n else [],
            "note": "closed windows of every judge partition that answered; complete when all of them did",
            "report": report,
        })


def register_digest_view(app: Any, digests_t: Any, page: Page | None = None) -> None:
    """``GET /api/digests``: per digest channel, what is waiting and what was sent (``page``:
    :func:`pages`, which merges every worker's channels)."""

    @(page or app.page)("/api/digests")
    @takes(NOTHING)
    async def digests_view(web: Any, request: Any, args: dict[str, Any]) -> Any:
        rows = [Digester.status(ch, book) for ch, book in sorted(list(digests_t.data.items())) if book]
        return web.json({"digests": rows})
