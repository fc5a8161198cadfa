"""A tiny Prometheus text-format registry (counters and gauges), no client library needed."""

from __future__ import annotations

from collections import defaultdict

HELP = {
    "events_accepted_total": "Usage events counted in a window.",
    "events_rejected_total": ("Usage events sent to the dead-letter topic, by reason (invalid: not a usage event; "
                              "implausible: over the policy's limits; error: an error of tokenpulse's own)."),
    "events_duplicate_total": "Usage events dropped as duplicates of an event_id already counted.",
    "events_late_total": "Usage events that arrived after their window closed (counted in spend, not judged).",
    "windows_closed_total": "Windows closed by the ingest partitions.",
    "windows_judged_total": "Windows judged by the detectors.",
    "judge_settling_seconds": ("How long the judge's group has been rebalancing or recovering its tables (0: "
                               "settled); /healthz answers 503 after TOKENPULSE_JUDGE_STALL_SECONDS without progress."),
    "org_verdicts_total": ("Verdicts messages the org stage received on the verdicts topic, by judge partition "
                           "(duplicate: a judge partition's message applied before; TOKENPULSE_PLACEMENT=series)."),
    "judge_partials_total": ("Series-window partials the judges received from the windows topic, by source (usage) "
                             "partition (a message read again after a restart or rebalance counts again)."),
    "judge_late_partials_total": ("Series-window partials that reached their judge after it had judged the window, "
                                  "by source (usage) partition: counted in spend, never judged. A backfill into idle "
                                  "partitions shows here (docs/deploying.md#backfills), and so does a message read "
                                  "again after a restart or rebalance."),
    "alerts_raised_total": "Notifications decided by the alert engine.",
    "team_scale_gated_total": ("Flagged team x model windows the team-scale gate turned normal: the incident's excess "
                               "was under detector.team_scale_minutes of its team's expected spend (logged at debug)."),
    "team_uncorroborated_total": ("Flagged team x model windows that would have started an alert, turned normal by the "
                                  "team corroboration: the team series' surprise p in the window was above "
                                  "detector.team_corroboration_p (logged at debug)."),
    "shift_unconfirmed_total": ("Flagged team and team x model windows led by the sustained-shift model (changepoint) "
                                "that would have started an alert, turned normal by the week-ago check: the team's "
                                "last hour was under detector.shift_week_ratio times the same hours a week before "
                                "(logged at debug)."),
    "alerts_sent_total": "Notifications delivered to a sink.",
    "alerts_skipped_total": "Notifications the lifecycle decided on but held back, by reason (silenced).",
    "alerts_failed_total": "Delivery attempts that failed after retries (the notification stays pending).",
    "sink_up": "1 when the sink's last delivery succeeded (or none failed yet), 0 while it keeps failing.",
    "sink_consecutive_failures": "Deliveries to the sink that failed in a row since its last success.",
    "sink_pending_notifications": "Notifications the sink has not taken yet, waiting to be retried.",
    "digest_notifications_total": "Notifications collected for a Slack digest, by mode (hourly, daily).",
    "digest_duplicates_total": "Notifications the digest collector had already (a redelivery), skipped.",
    "digest_records_rejected_total": "Records on the digest topic that could not be read (skipped, logged).",
    "digests_sent_total": "Digest messages posted to Slack, by mode.",
    "digests_failed_total": "Digest posts that failed after retries, by mode (retried next tick unless permanent).",
    "digest_waiting_notifications": "Notifications collected for a channel's digests not posted yet.",
    "http_unauthorized_total": ("Requests refused with 401 (no or a wrong token), by what they asked for "
                                "(api, metrics, login)."),
    "slack_actions_total": "Slack button presses accepted by POST /slack/actions, by answer.",
    "slack_actions_rejected_total": ("Requests to POST /slack/actions refused, by reason (missing, malformed, stale, "
                                     "forged, replay: the signature check; too_large; invalid: not a press of ours)."),
    "feedback_total": ("On-call's answers to alerts by action and outcome (applied; duplicate: applied before; "
                       "unreadable: skipped; not_sent: the press did not reach the feedback topic)."),
    "feedback_answers_total": "Slack messages rewritten after an answer, by whether Slack took the rewrite (ok).",
    "consumer_lag": "Messages not yet consumed, per usage partition.",
    "events_unpriced_total": "Events of models without a known price (counted at $0).",
    "policy_reloads_total": (
        "Policy reloads by result (ok: the new policy is in force; error: it was invalid, the running one stays)."),
    "policy_last_reload_successful": "1 when the last policy reload succeeded (or none was tried), 0 after a failed one.",
}


def _fmt_labels(labels: dict[str, str] | None) -> str:
    if not labels:
        return ""
    inner = ",".join(
        f'{k}="{str(v).replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34)).replace(chr(10), " ")}"'
        for k, v in sorted(labels.items())
    )
    return "{" + inner + "}"


class Metrics:
    def __init__(self) -> None:
        self.counters: dict[str, dict[str, float]] = defaultdict(dict)
        self.gauges: dict[str, dict[str, float]] = defaultdict(dict)

    def inc(self, name: str, by: float = 1, labels: dict[str, str] | None = None) -> None:
        key = _fmt_labels(labels)
        d = self.counters[name]
        d[key] = d.get(key, 0) + by

    def set(self, name: str, value: float, labels: dict[str, str] | None = None) -> None:
        self.gauges[name][_fmt_labels(labels)] = value

    def render(self, extra_counters: dict[str, float] | None = None,
               extra_labelled: dict[str, list[tuple[dict[str, str], float]]] | None = None) -> str:
        """The registry in Prometheus text format, plus counters kept elsewhere: unlabelled
        (``extra_counters``) or as (labels, value) pairs (``extra_labelled``)."""
        lines: list[str] = []
        counters = {k: dict(v) for k, v in self.counters.items()}
        for name, value in (extra_counters or {}).items():
            counters.setdefault(name, {})[""] = value
        for name, pairs in (extra_labelled or {}).items():
            for labels, value in pairs:
                counters.setdefault(name, {})[_fmt_labels(labels)] = value
        for kind, table in (("counter", counters), ("gauge", self.gauges)):
            for name in sorted(table):
                full = f"tokenpulse_{name}"
                lines.append(f"# HELP {full} {HELP.get(name, name)}")
                lines.append(f"# TYPE {full} {kind}")
                for shown, value in sorted(table[name].items()):
                    lines.append(f"{full}{shown} {value:g}")
        return "\n".join(lines) + "\n"
