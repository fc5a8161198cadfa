"""The single entry point: ``tokenpulse dev | worker | simulate | normalize | replay | tune | report | policy |
feedback export``."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
import yaml

from tokenpulse.policy import PolicyError, load_policy
from tokenpulse.settings import SettingsError, load_settings

app = typer.Typer(
    help="tokenpulse: real-time governance of LLM token spend.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _fail(msg: str, code: int = 2) -> None:
    from streams.common.text import terminal_safe

    # line by line: a message of several errors keeps its lines, a value in it cannot add any
    typer.echo("error: " + "\n".join(terminal_safe(line) for line in str(msg).split("\n")), err=True)
    raise typer.Exit(code)


def _load(policy: Path | None = None, *, deliver: bool = False):
    # deliver: the command sends notifications, so every route's target must have its secret
    # in the settings (a replay or a report on an analyst's machine needs none)
    try:
        settings = load_settings()
    except SettingsError as exc:
        _fail(str(exc))
    try:
        pol = load_policy(policy or settings.policy, receivers=settings.receivers() if deliver else None)
    except PolicyError as exc:
        _fail(str(exc))
    return settings, pol


def _gate_text(pol: Any) -> str:
    """The default detector's money gate as the policy sets it, in words (for ``tokenpulse dev``)."""
    import inspect

    from detectors.combined import Combined

    if pol.detector.name not in ("default", "combined"):
        return f"set by the {pol.detector.name} detector"
    defaults = {k: v.default for k, v in inspect.signature(Combined).parameters.items()}
    p = {**defaults, **pol.detector.params}
    minutes, root, usd = float(p["min_excess_minutes"]), float(p["min_excess_root"]), float(p["min_excess_usd"])
    parts = []
    if minutes:
        parts.append(f"{minutes:g} minutes of the series' expected spend")
    if root:
        parts.append(f"{root:g} x sqrt(its usual daily $)")
    if not parts:
        return f"${usd:g} over expected (plain)"
    return " or ".join(parts) + f", at least ${usd:g}, and {float(p['min_excess_pct']):g}% over expected"


def _refuse_exposure(settings: Any) -> None:
    """A worker serving every team's spend to the network without a token does not start."""
    why = settings.exposure_error()
    if why is not None:
        _fail(why)


@app.command()
def worker(
    loglevel: Annotated[str, typer.Option(help="Log level.")] = "info",
) -> None:
    """Run the stream worker against the Kafka in TOKENPULSE_KAFKA_BOOTSTRAP."""
    from tokenpulse.broker import BrokerError
    from tokenpulse.placement import PlacementError
    from tokenpulse.runtime import policy_source, prepare_topics, run_worker, stream_config

    settings, pol = _load(deliver=True)
    _refuse_exposure(settings)
    if not settings.kafka_bootstrap:
        _fail("TOKENPULSE_KAFKA_BOOTSTRAP is not set (use `tokenpulse dev` to run on an embedded broker)")
    bootstrap = settings.kafka_bootstrap
    assert bootstrap is not None
    try:
        n = prepare_topics(settings, bootstrap)
    except (BrokerError, PlacementError) as exc:  # refused credentials, an untrusted certificate, a silent
        _fail(str(exc))                              # switch of the placement: what to set, in one message
    except Exception as exc:  # noqa: BLE001 - report any connection failure plainly
        _fail(f"cannot reach Kafka at {bootstrap}: {exc}")
    run_worker(stream_config(settings, pol, bootstrap, n), loglevel=loglevel,
               reload=policy_source(settings, bootstrap, n))


@app.command()
def dev(
    backfill_hours: Annotated[float, typer.Option(help="Hours of past traffic to write first, so detectors have a baseline.")] = 3.0,
    rate: Annotated[float, typer.Option(help="Simulated events/s at the weekday peak.")] = 20.0,
    spike: Annotated[
        Optional[list[str]], typer.Option(help="Incident to inject, e.g. team=ads,factor=8,minutes=15,delay=300.")
    ] = None,
    simulate: Annotated[bool, typer.Option(help="Run the traffic simulator.")] = True,
    policy: Annotated[Optional[Path], typer.Option(help="Your own policy file (default: TOKENPULSE_POLICY; neither: the demo policy).")] = None,
    demo_policy: Annotated[bool, typer.Option(help="With no policy of your own, run the demo policy (budgets, the in-house model, team channels); --no-demo-policy: the defaults.")] = True,
    inbox: Annotated[bool, typer.Option(help="With no Slack token (or no PagerDuty key), deliver to the dev inbox: the dashboard's Notifications panel shows each message as Slack would.")] = True,
) -> None:
    """Embedded broker + worker + simulated traffic + API, all on this machine. Ctrl-C stops all."""
    from tokenpulse.broker import BrokerError, EmbeddedBroker
    from tokenpulse.placement import PlacementError
    from tokenpulse.runtime import policy_source, prepare_topics, run_worker, stream_config

    settings, pol = _load(policy, deliver=True)
    _refuse_exposure(settings)
    if policy is not None:
        settings = settings.model_copy(update={"policy": policy})
    demo = demo_policy and settings.policy is None and simulate
    if demo:
        settings, pol = _demo_policy(settings, backfill_hours, rate, spike)
    settings, inbox_spec = _dev_inbox(settings) if inbox else (settings, None)
    if settings.kafka_bootstrap:
        bootstrap = settings.kafka_bootstrap
        broker = None
    else:
        if settings.kafka_security().protocol != "PLAINTEXT":
            _fail("TOKENPULSE_KAFKA_SECURITY_PROTOCOL is for the cluster of TOKENPULSE_KAFKA_BOOTSTRAP; "
                  "the embedded broker speaks PLAINTEXT")
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        broker = EmbeddedBroker(log_path=settings.data_dir / "broker.log")
        try:
            bootstrap = broker.start()
        except BrokerError as exc:
            _fail(str(exc))
        settings = settings.model_copy(update={"kafka_flavor": "tansu"})
    sim_proc = None
    try:
        try:
            n = prepare_topics(settings, bootstrap)
        except PlacementError as exc:  # TOKENPULSE_KAFKA_BOOTSTRAP's deployment was written with the other one
            _fail(str(exc))
        if simulate:
            spikes = spike if spike is not None else ["team=ads,factor=8,minutes=15,delay=240"]
            cmd = [sys.executable, "-m", "tokenpulse", "simulate", "--bootstrap", bootstrap, "--rate", str(rate),
                   "--backfill", str(backfill_hours / 24), "--teams", "demo" if demo else "default"]
            for s in spikes:
                cmd += ["--spike", s]
            log = open(settings.data_dir / "simulate.log", "ab")  # noqa: SIM115
            sim_proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        url = f"http://{settings.web_host}:{settings.web_port}"
        typer.echo(
            "\n".join(
                [
                    "tokenpulse dev",
                    f"  broker     {bootstrap}" + (" (embedded Tansu, memory only)" if broker else ""),
                    f"  dashboard  {url}/dashboard",
                    f"  api        {url}/api/spend?group_by=team   {url}/api/alerts   {url}/metrics",
                    f"  simulator  {'on, log in ' + str(settings.data_dir / 'simulate.log') if sim_proc else 'off'}",
                    f"  policy     {settings.policy or 'none (the defaults)'}"
                    + (" (the demo: edit it and it reloads; TOKENPULSE_POLICY=FILE runs yours)" if demo else ""),
                    f"  detector   money gate {_gate_text(pol)}",
                    *_receiver_lines(settings, inbox_spec),
                    "  Ctrl-C stops everything.",
                ]
            )
        )
        cfg = dataclasses.replace(stream_config(settings, pol, bootstrap, n), dev_inbox=inbox_spec)
        run_worker(cfg, reload=policy_source(settings, bootstrap, n))
    finally:
        if sim_proc is not None and sim_proc.poll() is None:
            os.killpg(sim_proc.pid, signal.SIGTERM)
            try:
                sim_proc.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(sim_proc.pid, signal.SIGKILL)
        if broker is not None:
            broker.stop()


def _demo_policy(settings: Any, backfill_hours: float, rate: float, spike: list[str] | None) -> Any:
    """The demo policy written to the data directory (its team daily budget fitted to the
    simulated traffic, see tokenpulse.demo) and loaded from there, so that it reloads on edit."""
    from tokenpulse.demo import write_demo_policy
    from tokenpulse.simulate import Spike

    path = settings.data_dir / "demo-policy.yaml"
    try:
        # only a spike on the fitted team changes its spend (the demo's own is on ads)
        spikes = [Spike.parse(s) for s in spike or []]
    except ValueError as exc:
        _fail(str(exc))
    write_demo_policy(path, now=time.time(), backfill_hours=backfill_hours, rate=rate, spikes=spikes)
    _, pol = _load(path, deliver=True)
    return settings.model_copy(update={"policy": path}), pol


def _dev_inbox(settings: Any) -> tuple[Any, Any]:
    """Slack and PagerDuty pointed at the dev inbox (streams.worker.inbox) when the settings
    turn neither on, with made-up credentials; (settings, None) when both are real."""
    from alerts.receivers.pagerduty.config import PagerDutyConfig
    from alerts.receivers.slack.config import SlackConfig
    from streams.worker.inbox import PAGERDUTY_PATH, SLACK_PATH, DevInboxSpec

    on = settings.receivers()
    if "slack" in on and "pagerduty" in on:
        return settings, None
    spec = DevInboxSpec.new()
    base = spec.base_url(settings.web_host, settings.web_port)
    stand_in: dict[str, Any] = {}
    if "slack" not in on:
        # with a made-up signing secret: the alerts carry the answer buttons, pressed in the dashboard
        stand_in["slack"] = SlackConfig(token=spec.slack_token, api_url=base + SLACK_PATH,  # type: ignore[arg-type]
                                        signing_secret=spec.signing_secret)  # type: ignore[arg-type]
    if "pagerduty" not in on:
        stand_in["pagerduty"] = PagerDutyConfig(routing_key=spec.pagerduty_key, url=base + PAGERDUTY_PATH)  # type: ignore[arg-type]
    return settings.with_receivers(**stand_in), spec


def _receiver_lines(settings: Any, inbox: Any = None) -> list[str]:
    """One line per receiver of the registry for ``tokenpulse dev``: where it sends, the dev
    inbox, or how to turn it on (never a secret)."""
    from alerts.receivers import RECEIVERS

    on = settings.receivers()

    def line(name: str, r: Any) -> str:
        cfg = on.get(name)
        if cfg is None:
            return "off (set " + r.enable_hint() + ")"
        if inbox is not None and DEV_INBOX_MARK in str(getattr(cfg, "api_url", getattr(cfg, "url", ""))):
            return f"dev inbox: the dashboard's Notifications panel (set {r.enable_hint()} for the real one)"
        return cfg.describe()

    return [f"  {name:<10} {line(name, r)}" for name, r in RECEIVERS.items()]


DEV_INBOX_MARK = "/dev/"  # in the URL of a receiver pointed at the dev inbox


@app.command("simulate")
def simulate_cmd(
    bootstrap: Annotated[Optional[str], typer.Option(envvar="TOKENPULSE_KAFKA_BOOTSTRAP", help="Kafka bootstrap servers.")] = None,
    topic: Annotated[str, typer.Option(help="Usage topic.")] = "tokenpulse.usage",
    rate: Annotated[float, typer.Option(help="Events/s for the whole org at a weekday peak.")] = 20.0,
    spike: Annotated[Optional[list[str]], typer.Option(help="team=ads,factor=8,minutes=15[,delay=S][,model=M]; repeatable.")] = None,
    backfill: Annotated[float, typer.Option(help="Days of past event time to write at full speed first.")] = 0.0,
    duration: Annotated[Optional[float], typer.Option(help="Seconds of live traffic (default: until Ctrl-C; 0: none).")] = None,
    batch: Annotated[int, typer.Option(help="Events per Kafka message (1 = one JSON object per message).")] = 100,
    seed: Annotated[int, typer.Option(help="Random seed (the eval scenario: same seed, same events and labels).")] = 7,
    out: Annotated[Optional[Path], typer.Option(help="Write the --backfill days (or the eval scenario) as JSONL here instead of to Kafka (for `tokenpulse replay`).")] = None,
    labels_out: Annotated[Optional[Path], typer.Option("--labels-out", help="With --out: write the injected spikes (or the eval scenario's incidents) as labelled incidents.")] = None,
    scenario: Annotated[str, typer.Option(help="'spikes': steady traffic plus the --spike incidents (to Kafka, or --backfill days to --out). 'eval': the labelled evaluation workload of tokenpulse.workload (7 teams, runaway loops, model switches, bursts, night spikes and look-alikes that must not page) written to --out, labels to --labels-out.")] = "spikes",
    days: Annotated[float, typer.Option(help="--scenario eval: days of history (the first 7, or a quarter of a shorter history, are burn-in: do not score firings there).")] = 21.0,
    burn_in_days: Annotated[Optional[float], typer.Option("--burn-in-days", help="--scenario eval: override the burn-in (days).")] = None,
    teams: Annotated[str, typer.Option(help="'default': five teams on third-party models; 'demo': the same teams also calling the in-house model acme-llama-70b in different shares (tokenpulse dev's demo policy prices it).")] = "default",
) -> None:
    """Produce simulated usage events with kafka-python (or write them to a file with --out).

    \b
    Examples:
      tokenpulse simulate --backfill 2 --spike team=ads,factor=8 --out h.jsonl --labels-out l.jsonl
      tokenpulse simulate --scenario eval --seed 1 --days 21 --out h.jsonl --labels-out l.jsonl
      tokenpulse replay h.jsonl --labels l.jsonl
    """
    from tokenpulse.simulate import TEAM_SETS, KafkaSink, Simulator, Spike, run

    if scenario not in ("spikes", "eval"):
        _fail(f"--scenario must be 'spikes' or 'eval', got {scenario!r}")
    if scenario == "eval":
        _simulate_eval(seed, days, burn_in_days, out, labels_out, spike)
        return
    try:
        spikes = [Spike.parse(s) for s in spike or []]
        if teams not in TEAM_SETS:
            raise ValueError(f"--teams must be {' or '.join(TEAM_SETS)}, got {teams!r}")
        sim = Simulator(rate=rate, spikes=spikes, seed=seed, teams=TEAM_SETS[teams])
    except ValueError as exc:
        _fail(str(exc))
    if out is not None:
        import orjson

        if backfill <= 0:
            _fail("--out writes past traffic: give --backfill DAYS")
        end = float(int(time.time()))
        start = end - backfill * 86400
        n = 0
        with open(out, "wb") as f:
            for ev in sim.between(start, end, sim_start=start):
                f.write(orjson.dumps(ev) + b"\n")
                n += 1
        if labels_out is not None:
            with open(labels_out, "wb") as f:
                for sp in spikes:
                    t0 = sp.start if sp.start is not None else start + sp.delay
                    f.write(orjson.dumps({"team": sp.team, "start": t0, "end": t0 + sp.minutes * 60,
                                          "should_alert": True, "name": f"spike x{sp.factor:g}"}) + b"\n")
        typer.echo(f"wrote {n:,} events to {out}", err=True)
        return
    if not bootstrap:
        _fail("no Kafka: pass --bootstrap or set TOKENPULSE_KAFKA_BOOTSTRAP")
    assert bootstrap is not None
    stopping = {"now": False}
    signal.signal(signal.SIGTERM, lambda *_: stopping.__setitem__("now", True))
    try:  # TLS/SASL: the same TOKENPULSE_KAFKA_* settings as the worker's
        security = load_settings().kafka_security()
    except SettingsError as exc:
        _fail(str(exc))
    sink = KafkaSink(bootstrap, topic, batch=batch, security=security)
    try:
        run(sim, sink, backfill_days=backfill, duration=duration, progress=lambda m: typer.echo(m, err=True),
            stop=lambda: stopping["now"])
    except KeyboardInterrupt:
        pass
    finally:
        sink.close()
        typer.echo(f"sent {sink.sent_events:,} events in {sink.sent_messages:,} messages", err=True)


def _simulate_eval(seed: int, days: float, burn_in_days: float | None, out: Path | None,
                   labels_out: Path | None, spike: list[str] | None) -> None:
    from collections import Counter

    from tokenpulse.replay import rfc3339
    from tokenpulse.workload import generate

    if out is None:
        _fail("--scenario eval writes a file: give --out FILE.jsonl (and --labels-out LABELS.jsonl)")
    if spike:
        _fail("--spike does not apply to --scenario eval (its incidents are part of the workload)")
    try:
        wl = generate(seed, days, burn_in_days=burn_in_days)
    except ValueError as exc:
        _fail(str(exc))
    assert out is not None
    n = wl.write_jsonl(out, labels_out)
    kinds = Counter(f"{lab['kind']}{'' if lab['should_alert'] else ' (no page)'}" for lab in wl.labels)
    typer.echo(f"wrote {n:,} events to {out} ({rfc3339(wl.start)} .. {rfc3339(wl.end)}, seed {seed})", err=True)
    if labels_out is not None:
        typer.echo(f"wrote {len(wl.labels)} labels to {labels_out}: " + ", ".join(f"{v} {k}" for k, v in sorted(kinds.items())),
                   err=True)
    typer.echo(f"burn-in until {rfc3339(wl.scored_from)}: firings before it are warm-up, not false alerts", err=True)


@app.command()
def normalize(
    policy: Annotated[Optional[Path], typer.Option(help="Policy file (for price overrides).")] = None,
    price: Annotated[bool, typer.Option(help="Compute cost_usd when absent.")] = True,
) -> None:
    """Payloads on stdin (JSONL, any accepted shape) -> canonical events on stdout; rejects on stderr.

    An event over the policy's ``limits`` is rejected as the worker would (reason
    ``implausible: …``); a line that fails in any other way is rejected with its reason and the
    next one is read."""
    import orjson

    from streams.common.config import IngestLimits
    from streams.common.text import terminal_safe
    from streams.ingest.normalize import Rejected, decode_message
    from streams.ingest.normalize import normalize as norm
    from streams.ingest.pricing import Pricer
    from streams.ingest.windows import failure_reason, implausible_reason

    _, pol = _load(policy)
    pricer = Pricer(pol.price_overrides())
    limits = IngestLimits(max_tokens_per_request=pol.limits.max_tokens_per_request,
                          max_cost_usd_per_request=pol.limits.max_cost_usd_per_request)
    out = sys.stdout.buffer
    ok = bad = 0

    def reject(lineno: int, reason: str) -> None:
        nonlocal bad
        bad += 1
        sys.stderr.write(orjson.dumps({"line": lineno, "reason": terminal_safe(reason)}).decode() + "\n")

    for lineno, line in enumerate(sys.stdin.buffer, 1):
        if not line.strip():
            continue
        try:
            items = decode_message(line)
        except Rejected as exc:
            items = [exc]
        except Exception as exc:  # noqa: BLE001 - one line's failure stops no other
            reject(lineno, failure_reason(exc))
            continue
        for item in items:
            try:
                if isinstance(item, Rejected):
                    raise item
                ev = norm(item)
                if price and ev.cost_usd is None:
                    ev.cost_usd = pricer.price(ev)
                why = implausible_reason(ev.input_tokens, ev.output_tokens, ev.cost_usd or 0.0, limits)
                if why is not None:
                    raise Rejected(why)
                body = orjson.dumps(ev.to_dict()) + b"\n"
            except Rejected as exc:
                reject(lineno, exc.reason)
                continue
            except Exception as exc:  # noqa: BLE001
                reject(lineno, failure_reason(exc))
                continue
            ok += 1
            out.write(body)
    out.flush()
    typer.echo(f"{ok} accepted, {bad} rejected", err=True)
    if bad and not ok:
        raise typer.Exit(1)


@app.command()
def replay(
    events: Annotated[Path, typer.Argument(help="JSONL file of usage events (any accepted shape; '-' for stdin).")],
    policy: Annotated[Optional[Path], typer.Option(help="Policy file (default: TOKENPULSE_POLICY).")] = None,
    labels: Annotated[Optional[Path], typer.Option(help="Labelled incidents (JSONL: team, start, end, should_alert).")] = None,
    alerts_out: Annotated[Optional[Path], typer.Option("--alerts-out", help="Write one JSON line per alert firing here (then one per budget notification, kind budget_threshold or budget_forecast).")] = None,
    grace: Annotated[float, typer.Option(help="Seconds after an incident's end in which a firing still detects it.")] = 900.0,
    progress: Annotated[bool, typer.Option(help="Show progress on stderr.")] = True,
    report_out: Annotated[Optional[Path], typer.Option("--report", help="Write a self-contained HTML report here: a chart per series that alerted or is labelled (observed, expected, bound, alerts and incidents shaded), the score, every alert with its explanation.")] = None,
    feedback: Annotated[Optional[Path], typer.Option(help="On-call's answers (JSONL, as `tokenpulse feedback export` writes): each 'not an anomaly' raises its series' alert floor at its time, as the worker does.")] = None,
) -> None:
    """Replay history through the worker's own windows, detectors and alert lifecycle."""
    from tokenpulse.replay import load_feedback_answers, load_labels, read_lines, replay_lines, score, write_firings
    from tokenpulse.runtime import stream_config

    settings, pol = _load(policy)
    if str(events) != "-" and not events.is_file():
        _fail(f"{events}: no such file")
    incidents = None
    if labels is not None:
        try:
            incidents = load_labels(labels)
        except (OSError, ValueError) as exc:
            _fail(str(exc))
    answers = []
    if feedback is not None:
        try:
            answers = load_feedback_answers(feedback)
        except (OSError, ValueError) as exc:
            _fail(str(exc))
    cfg = stream_config(settings, pol, bootstrap="", partitions=1)
    total = events.stat().st_size if str(events) != "-" else 0

    def report(done: int, of: int) -> None:
        pct = f"{100 * done / of:5.1f}% " if of else ""
        typer.echo(f"replay {pct}{done / 1e6:,.1f} MB", err=True)

    trace = _report_trace(report_out)
    res = replay_lines(read_lines(events), cfg, progress=report if progress else None, total_bytes=total,
                       trace=trace, feedback=answers)
    if alerts_out is not None:
        with open(alerts_out, "wb") as f:
            write_firings(res.firings, f)
            write_firings(res.budget_firings, f)
    summary: dict[str, object] = {
        "events": res.counters,
        "windows_judged": res.windows_judged,
        "firings": len(res.firings),
        "notifications": len(res.notifications),
        "held_back": res.skipped,
        "budget_notifications": len(res.budget_firings),
        "budgets": res.budgets,
        "teams": sorted(res.teams),
        "seconds": round(res.seconds, 3),
        "mb_per_s": round(res.bytes_read / 1e6 / res.seconds, 2) if res.seconds else None,
        "rejects_sample": [{"line": n, "reason": r} for n, r in res.rejects[:10]],
    }
    if feedback is not None:
        summary["feedback"] = res.feedback
    if incidents is not None:
        summary["score"] = score(res.firings, incidents, res.teams, res.first_ts, res.last_ts, grace)
    import orjson

    from streams.common.text import json_safe

    sys.stdout.buffer.write(json_safe(orjson.dumps(summary, option=orjson.OPT_INDENT_2).decode()).encode() + b"\n")
    if report_out is not None:
        _write_replay_report(report_out, res, cfg, summary, incidents, str(events))


@app.command()
def tune(
    events: Annotated[Path, typer.Argument(help="JSONL history of usage events (any accepted shape).")],
    labels: Annotated[Optional[Path], typer.Option(help="Labelled incidents (JSONL: team, start, end, should_alert), as for replay.")] = None,
    feedback: Annotated[Optional[Path], typer.Option(help="On-call feedback (JSONL: team, at, useful): useful alerts count as incidents.")] = None,
    max_alerts_per_team_week: Annotated[float, typer.Option("--max-alerts-per-team-week", help="The alert budget the recommendation stays under.")] = 1.0,
    policy: Annotated[Optional[Path], typer.Option(help="Policy file (default: TOKENPULSE_POLICY): watched series, prices, detector parameters and overrides.")] = None,
    out: Annotated[Path, typer.Option(help="Write the recommended detector section (a policy patch) here.")] = Path("tune-patch.yaml"),
    jobs: Annotated[int, typer.Option(help="Processes running the models.")] = min(2, os.cpu_count() or 1),
    burn_in_days: Annotated[Optional[float], typer.Option("--burn-in-days", help="Alerts before this are not counted (default: 7 days, or a quarter of a history shorter than 14).")] = None,
    top: Annotated[int, typer.Option(help="Settings shown per team (best recall, then fewest alerts), plus the current and the recommended one.")] = 6,
    cache: Annotated[bool, typer.Option(help="Keep the history's windows in the data dir (tune/) for the next run.")] = True,
    progress: Annotated[bool, typer.Option(help="Show a progress bar on stderr.")] = True,
) -> None:
    """Sweep the default detector's alert settings over a history and recommend one per team.

    The history is parsed once into window aggregates (cached), each team's detector runs once
    per score threshold, and 24 settings (score_threshold x min_excess_minutes x min_excess_pct)
    are replayed on what the gate saw. Prints a table per team (alerts per week; recall and
    delay where there are labels or feedback) and writes the detector section with the best
    recall under the alert budget, as overrides per team (see docs/tune.md).
    """
    from rich.console import Console

    from tokenpulse.runtime import stream_config
    from tokenpulse.tune import load_feedback, load_tune_labels, run_tune

    settings, pol = _load(policy)
    if not events.is_file():
        _fail(f"{events}: no such file")
    if max_alerts_per_team_week < 0:
        _fail("--max-alerts-per-team-week must be >= 0")
    if not out.parent.is_dir():
        _fail(f"--out {out}: no such directory {out.parent}")
    got = []
    try:
        if labels is not None:
            got += load_tune_labels(labels)
        if feedback is not None:
            got += load_feedback(feedback)
    except (OSError, ValueError) as exc:
        _fail(str(exc))
    cfg = stream_config(settings, pol, bootstrap="", partitions=1)
    try:
        run_tune(events, cfg, data_dir=settings.data_dir if cache else None, labels=got,
                 budget=max_alerts_per_team_week, out=out, jobs=max(1, jobs), burn_in_days=burn_in_days, top=top,
                 console=Console(width=None if sys.stdout.isatty() else 120),
                 err_console=Console(stderr=True, width=None if sys.stderr.isatty() else 120), progress=progress)
    except ValueError as exc:
        _fail(str(exc))


def _report_trace(report_out: Path | None) -> Any:
    """What ``replay --report`` needs collected during the replay (None: no report asked)."""
    if report_out is None:
        return None
    if not report_out.parent.is_dir():  # said before the replay, not after it
        _fail(f"--report {report_out}: no such directory {report_out.parent}")
    from tokenpulse.report_html import WindowTrace

    return WindowTrace()


def _write_replay_report(path: Path, res: Any, cfg: Any, summary: dict[str, object], incidents: Any,
                         source: str) -> None:
    from streams.common.text import terminal_safe
    from tokenpulse.report_html import write_report

    detector = {"detector": cfg.detector_name, "params": cfg.detector_params,
                "overrides": [{"match": m, "params": p} for m, p in cfg.detector_overrides],
                "alerts": {k: v for k, v in cfg.alert_policy.items() if k != "silences"}}
    try:
        n, took = write_report(path, res, res.trace, window_seconds=cfg.window_seconds, summary=summary,
                               incidents=incidents, detector=detector, source=Path(source).name)
    except OSError as exc:
        _fail(f"{path}: cannot write the report: {exc}")
    typer.echo(terminal_safe(f"wrote {path}: {n} chart(s) in {took:.1f} s"), err=True)


alerts_app = typer.Typer(help="Alert delivery tools.", no_args_is_help=True)
app.add_typer(alerts_app, name="alerts")


@alerts_app.command("test")
def alerts_test(
    to: Annotated[str, typer.Option("--to", help="The receiver: one of alerts.receivers.RECEIVERS (slack, pagerduty, webhook, opsgenie).")],
    target: Annotated[Optional[str], typer.Option("--target", help="Its target: a Slack channel, the name of a PagerDuty routing key or Opsgenie API key (default: the receiver's default target).")] = None,
    resolve: Annotated[bool, typer.Option(help="Also send the resolve (threaded in Slack, resolving the PagerDuty incident, closing the Opsgenie alert, a second webhook request).")] = True,
) -> None:
    """Send a test notification through one receiver, with the worker's own code."""
    import asyncio

    from alerts.model import SpikeNotification
    from alerts.receivers import RECEIVERS
    from alerts.retry import deliver_with_retry

    settings, _ = _load()
    receiver = RECEIVERS.get(to)
    if receiver is None:
        _fail(f"--to must be {' or '.join(', '.join(RECEIVERS).rsplit(', ', 1))}, got {to!r}")
    assert receiver is not None
    cfg = settings.receivers().get(to)
    if cfg is None:
        _fail(f"{receiver.enable_hint()} is not set")
    assert cfg is not None
    defaults = cfg.default_targets()
    dest = target or (defaults[0] if defaults else next(iter(sorted(cfg.targets() or ())), None))
    if dest is None:
        _fail(f"{to} has no default target: give --target")
    assert dest is not None
    why = cfg.target_error(dest)
    if why is not None:
        _fail(why)
    now = time.time()
    base = dict(
        key=f"test:tokenpulse-{int(now)}", seq=int(now * 1000), action="trigger", severity="info", reason="first",
        series="test", labels={"team": "tokenpulse-test"}, title="tokenpulse test notification",
        observed_usd=12.5, expected_usd=2.5, excess_usd=10.0, excess_pct=400.0,
        top_contributors=[{"kind": "user", "name": "test-user", "usd": 10.0}],
        window_start=now - 60, window_end=now, started_at=now - 60, fired_at=now, page=True,
        dashboard_url=settings.dashboard_url, rule="test",
    )

    async def send() -> list[str]:
        import aiohttp

        lines = []
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            conn = receiver.connect(cfg, session)
            try:
                sink = conn.sink(dest)
                prior = None
                actions = ["trigger", "resolve"] if resolve else ["trigger"]
                for i, action in enumerate(actions):
                    n = SpikeNotification(**{**base, "action": action, "seq": base["seq"] + i,
                                        "reason": "resolved" if action == "resolve" else "first",
                                        "ended_at": now if action == "resolve" else None})
                    res = await deliver_with_retry(sink, n, prior, max_attempts=3)
                    lines.append(f"{to} {action}: {'ok' if res.ok else 'FAILED'} {res.detail}".rstrip())
                    if not res.ok:
                        break
                    prior = res.state
            finally:
                await conn.close()
        return lines

    from streams.common.text import terminal_safe

    results = asyncio.run(send())
    for line in results:
        typer.echo(terminal_safe(line))  # a receiver's answer is in it
    if any("FAILED" in line for line in results):
        raise typer.Exit(1)


feedback_app = typer.Typer(help="On-call's answers to alerts (the Slack buttons, PagerDuty).", no_args_is_help=True)
app.add_typer(feedback_app, name="feedback")


@feedback_app.command("export")
def feedback_export(
    out: Annotated[Path, typer.Option("--out", help="Write the labels here (JSONL; '-' for stdout).")],
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the broker before giving up.")] = 30.0,
    progress: Annotated[bool, typer.Option(help="Show progress on stderr.")] = True,
) -> None:
    """Read every answer from the feedback topic (<prefix>.feedback on TOKENPULSE_KAFKA_BOOTSTRAP;
    no worker needed) and write one label per answered incident, in the format that
    `tokenpulse replay --labels`, `replay --feedback` and `tune --feedback` read."""
    from streams.common.text import terminal_safe
    from tokenpulse.feedback_export import ExportError, labels_from_answers, read_feedback, write_labels

    settings, _ = _load()
    if not settings.kafka_bootstrap:
        _fail("TOKENPULSE_KAFKA_BOOTSTRAP is not set: the feedback topic is on the broker the workers use")
    topic = f"{settings.topic_prefix}.feedback"
    warned = 0

    def warn(msg: str) -> None:
        nonlocal warned
        warned += 1
        typer.echo("warning: " + terminal_safe(msg), err=True)

    def report(done: int, of: int) -> None:
        typer.echo(f"feedback: {done:,} of ~{of:,} records read", err=True)

    try:
        answers = read_feedback(str(settings.kafka_bootstrap), topic, settings.kafka_security(), timeout=timeout,
                                progress=report if progress else None, warn=warn)
    except ExportError as exc:
        _fail(str(exc), 1)
    rows = labels_from_answers(answers, warn)
    try:
        if str(out) == "-":
            write_labels(rows, sys.stdout.buffer)
            sys.stdout.buffer.flush()
        else:
            with open(out, "wb") as f:
                write_labels(rows, f)
    except OSError as exc:
        _fail(f"{out}: {exc.strerror or exc}", 1)
    false = sum(1 for r in rows if not r["should_alert"])
    typer.echo(f"{len(answers)} answers, {len(rows)} incidents ({false} not an anomaly)"
               + (f", {warned} left out (see the warnings)" if warned else "")
               + ("" if str(out) == "-" else f" -> {out}"), err=True)


@app.command("report")
def report_cmd(
    period: Annotated[Optional[str], typer.Option(help="day or week: the last one that ended by --at.")] = None,
    at: Annotated[Optional[str], typer.Option(help="RFC 3339 or epoch seconds (default: now).")] = None,
    team: Annotated[Optional[str], typer.Option(help="Only this team's spend and budgets.")] = None,
    report: Annotated[Optional[str], typer.Option("--report", help="A report of the policy by name (its period, team and timezone), e.g. 'weekly:#finops'.")] = None,
    tz: Annotated[Optional[str], typer.Option(help="Time zone of the calendar period (default: the policy's budget_timezone).")] = None,
    policy: Annotated[Optional[Path], typer.Option(help="Policy file (default: TOKENPULSE_POLICY): checks --report and gives the time zone.")] = None,
    api: Annotated[Optional[str], typer.Option(envvar="TOKENPULSE_API_URL", help="The worker's API (default: http://TOKENPULSE_WEB_HOST:TOKENPULSE_WEB_PORT).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON instead of text.")] = False,
) -> None:
    """Print the spend report of the last closed day or week from a running worker's API."""
    import json
    import urllib.error
    import urllib.parse
    import urllib.request

    from alerts.report import report_text
    from streams.common.text import json_safe, safe_strings

    settings, pol = _load(policy)
    query: dict[str, str] = {}
    if report is not None:
        names = [r.report_name() for r in pol.reports]
        if report not in names:
            _fail(f"no report {report!r} in the policy; it has: {', '.join(names) or 'none'}")
        if period is not None or team is not None or tz is not None:
            _fail("--report takes its period, team and time zone from the policy: drop --period/--team/--tz")
        query["report"] = report
    else:
        if period not in ("day", "week", "daily", "weekly"):
            _fail("give --period day or --period week (or --report NAME)")
        assert period is not None
        query["period"] = period
        query["tz"] = tz or pol.budget_timezone
        if team:
            query["team"] = team
    if at:
        query["at"] = at
    base = (api or f"http://{settings.web_host}:{settings.web_port}").rstrip("/")
    url = f"{base}/api/report?{urllib.parse.urlencode(query)}"
    req = urllib.request.Request(url, headers={"Accept": "application/json"})
    token = settings.secret("api_token")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            body = json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        try:
            why = json.loads(exc.read()).get("error", exc.reason)
        except ValueError:
            why = exc.reason
        _fail(f"{base}: {why}")
    except (urllib.error.URLError, OSError) as exc:
        _fail(f"cannot reach the worker's API at {base}: {getattr(exc, 'reason', exc)}")
    if not body.get("complete", True):
        typer.echo(f"note: built from judge partitions {body.get('partitions')} only (this worker does not hold "
                   "all of them): totals are partial", err=True)
    # Names in the report come from usage events (and the worker's API may be older than the
    # name rule): nothing in them may drive the terminal or start a line of its own.
    if as_json:
        typer.echo(json_safe(json.dumps(body["report"], indent=2, ensure_ascii=False)))
    else:
        typer.echo(report_text(safe_strings(body["report"])), nl=False)


@app.command("policy")
def policy_cmd(path: Annotated[Path, typer.Argument(help="Policy YAML file to check.")]) -> None:
    """Validate a policy file; print the normalised policy or the lines at fault."""
    try:
        pol = load_policy(path)
    except PolicyError as exc:
        _fail(str(exc))
    typer.echo(yaml.dump(pol.model_dump(), Dumper=_PolicyDumper, sort_keys=False, allow_unicode=True))


def _yaml_decimal(dumper: Any, value: Decimal) -> Any:
    """Budget amounts are Decimals (exact): written as the number they are, digits kept."""
    text = format(value, "f")
    tag = "tag:yaml.org,2002:int" if value == value.to_integral_value() and "." not in text else "tag:yaml.org,2002:float"
    return dumper.represent_scalar(tag, text)


class _PolicyDumper(yaml.SafeDumper):
    pass


_PolicyDumper.add_representer(Decimal, _yaml_decimal)


@app.command()
def broker() -> None:
    """Run the embedded Tansu broker in the foreground (memory storage) until Ctrl-C."""
    from tokenpulse.broker import EmbeddedBroker

    def _interrupt(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _interrupt)  # so `kill` also stops the broker child
    b = EmbeddedBroker(port=9092)
    typer.echo(f"Tansu on {b.start()}; Ctrl-C stops it")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        b.stop()


def main() -> None:
    from streams.common.text import install_safe_logging

    install_safe_logging()  # names and reasons in log lines cannot forge a line or drive the terminal
    app()


if __name__ == "__main__":
    main()
