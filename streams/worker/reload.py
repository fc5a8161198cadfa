"""Policy reload without a restart, like Prometheus' and Alertmanager's: the worker polls the
policy file (and reloads on SIGHUP), and a valid new policy replaces the sections that can change
under a running worker; an invalid one changes nothing and is reported.

``streams`` does not import the policy model (it sits on top of it), so the entry point injects a
:class:`PolicySource`: the file's path and a function that turns the file's bytes into the
:class:`~streams.common.config.StreamConfig` it gives (raising ``ValueError`` with the policy loader's
``file:line: what`` message: too large, not UTF-8, a YAML alias, a repeated key, a number that
is not finite... each keeps the running policy); the file is never read past ``max_bytes`` + 1.
:class:`PolicyReloader` compares that config with the running one, section by section
(:func:`sections_changed`), and hands the reloadable part (:func:`reloaded_config`) to the
worker's ``apply`` callback.

Applied at once: ``budgets`` (each judge partition's ledger is reconfigured, which logs the change
and re-arms or fires thresholds at the next judged window), ``alerts`` and ``silences`` (the judges'
alert engines get the new policy), ``routes`` and its short forms ``teams`` and ``subscriptions``
(where notifications go; immediate ones) and ``mix`` when only its lines change (``max_third_party_share``, ``teams``,
``min_spend_usd``). Need a restart (logged as a warning and listed in ``/api/policy``): ``watch``,
``prices``, ``detector``, ``reports``, ``digests`` (routes and subscriptions in a digest mode),
``budget_timezone`` as used by reports and ``/api/report`` (budgets take a new zone at once),
``limits`` (the ingest's plausibility bounds), and ``mix`` when ``internal_models``, its period
or zone change or the alert is turned on or off (its counts are kept from the start, by those).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from streams.budgets.ledger import reconfigure_ledgers
from streams.common.config import StreamConfig
from streams.common.metrics import Metrics

log = logging.getLogger("tokenpulse.policy")

__all__ = [
    "RELOADABLE",
    "RESTART_REQUIRED",
    "PolicyReloader",
    "PolicySource",
    "ReloadResult",
    "apply_reload",
    "reloaded_config",
    "sections_changed",
]

RELOADABLE = ("budgets", "alerts", "silences", "teams", "routes", "subscriptions", "mix")
ROUTE_SECTIONS = ("teams", "routes", "subscriptions")
"""The policy sections that write routes (``teams.<t>.slack_channel`` and ``subscriptions``
are short forms of ``routes``)."""
RESTART_REQUIRED = ("watch", "prices", "detector", "reports", "digests", "budget_timezone", "mix", "limits")


@dataclass(frozen=True)
class PolicySource:
    """Where the running policy came from, and how to build a config from a new version of it.

    ``load`` takes the file's bytes (at most ``max_bytes`` + 1 of them: enough for it to tell
    the file is too large) and returns the config it gives, or raises ``ValueError`` naming the
    file and line; ``interval`` is the poll period in seconds (0: SIGHUP only)."""

    path: str
    load: Callable[[bytes], StreamConfig]
    interval: float = 5.0
    max_bytes: int = 1 << 20  # the entry point passes tokenpulse.policy.MAX_POLICY_BYTES


def _routes(cfg: StreamConfig, section: str, digest: bool) -> list[Any]:
    return [r for r in cfg.routes if r.source == section and r.digest == digest]


def _alerts_only(policy: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in policy.items() if k != "silences"}


def _mix_lines_only(old: Any, new: Any) -> bool:
    """Whether the mix alert changes in its lines only (applicable to the running watches)."""
    if old is None or new is None:
        return False
    return (old.internal_models, old.period, old.tz) == (new.internal_models, new.period, new.tz)


def sections_changed(running: StreamConfig, new: StreamConfig) -> tuple[list[str], list[str]]:
    """The policy sections in which ``new`` differs from ``running``: ``(applied at once, need a
    restart)``, each in the order of :data:`RELOADABLE` / :data:`RESTART_REQUIRED`.

    Settings (topics, windows, receivers) are not compared: a reload keeps the settings the
    worker started with."""
    applied: list[str] = []
    restart: list[str] = []
    if running.budgets != new.budgets:
        applied.append("budgets")
    if _alerts_only(running.alert_policy) != _alerts_only(new.alert_policy):
        applied.append("alerts")
    if running.alert_policy.get("silences", []) != new.alert_policy.get("silences", []):
        applied.append("silences")
    for section in ROUTE_SECTIONS:
        if _routes(running, section, digest=False) != _routes(new, section, digest=False):
            applied.append(section)
    mix_changed = running.mix_alert != new.mix_alert or running.internal_models != new.internal_models
    mix_applies = (mix_changed and running.internal_models == new.internal_models
                   and _mix_lines_only(running.mix_alert, new.mix_alert))
    if mix_applies:
        applied.append("mix")
    if running.watched != new.watched:
        restart.append("watch")
    if running.price_overrides != new.price_overrides:
        restart.append("prices")
    if (running.detector_name, running.detector_params, running.detector_overrides, running.not_anomaly_step,
            running.not_anomaly_max_raise, running.not_anomaly_half_life_days, running.new_series,
            running.team_scale_minutes, running.team_corroboration_p, running.team_corroboration_strict_p,
            running.team_week_ratio, running.team_week_shift_h, running.shift_week_ratio) != (
            new.detector_name, new.detector_params, new.detector_overrides, new.not_anomaly_step,
            new.not_anomaly_max_raise, new.not_anomaly_half_life_days, new.new_series,
            new.team_scale_minutes, new.team_corroboration_p, new.team_corroboration_strict_p,
            new.team_week_ratio, new.team_week_shift_h, new.shift_week_ratio):
        restart.append("detector")
    if running.reports != new.reports:
        restart.append("reports")
    if [r for r in running.routes if r.digest] != [r for r in new.routes if r.digest]:
        restart.append("digests")
    if running.report_timezone != new.report_timezone:
        restart.append("budget_timezone")
    if mix_changed and not mix_applies:
        restart.append("mix")
    if running.limits != new.limits:
        restart.append("limits")
    return applied, restart


def reloaded_config(running: StreamConfig, new: StreamConfig) -> StreamConfig:
    """``running`` with the reloadable sections of ``new``; everything that needs a restart (and
    every setting) stays as it is running."""
    # digest routes keep their schedule until a restart (a channel's periods are in its book)
    routes = tuple([r for r in new.routes if not r.digest] + [r for r in running.routes if r.digest])
    mix_alert = running.mix_alert
    if running.internal_models == new.internal_models and _mix_lines_only(running.mix_alert, new.mix_alert):
        mix_alert = new.mix_alert
    return replace(running, budgets=new.budgets, alert_policy=new.alert_policy, routes=routes, mix_alert=mix_alert)


def apply_reload(
    new: StreamConfig, applied: list[str], *, judges: dict[int, Any], ledgers: dict[int, Any],
    mixes: dict[int, Any], deliverer: Any, n_partitions: int,
) -> None:
    """Install the ``applied`` sections of ``new`` (from :func:`reloaded_config`) in a running
    worker's parts: the judges' alert engines (``alerts``, ``silences``), the budget ledgers
    (``budgets``, each at its judge's watermark, so the change log and the re-armed thresholds
    are in event time like the rest of the ledger), the deliverer's routes (``teams``,
    ``routes``, ``subscriptions``) and the mix watches (``mix``). What can fail is built first."""
    from alerts import AlertPolicy

    policy = AlertPolicy(**new.alert_policy) if {"alerts", "silences"} & set(applied) else None
    if "budgets" in applied:
        def now_of(q: int) -> float | None:
            j = judges.get(q)
            wm = j.watermark() if j is not None else None
            return None if wm is None else float(wm)

        for entry in reconfigure_ledgers(ledgers, new.budgets, n_partitions, now_of):
            fields = ", ".join(entry.get("fields", {}))
            log.info("budget %s %s%s", entry["budget"], entry["change"], f": {fields}" if fields else "")
    if policy is not None:
        for j in list(judges.values()):
            j.engine.policy = policy
    if set(ROUTE_SECTIONS) & set(applied) and deliverer is not None:
        deliverer.reconfigure(new)
    if "mix" in applied and new.mix_alert is not None:
        for watch in list(mixes.values()):
            watch.reconfigure(new.mix_alert)


@dataclass
class ReloadResult:
    """One reload attempt: when, whether the new policy was taken, why not, and which sections
    were applied and which wait for a restart."""

    at: float
    ok: bool
    error: str | None = None
    applied: list[str] = field(default_factory=list)
    restart_required: list[str] = field(default_factory=list)
    trigger: str = "poll"  # poll, sighup

    def to_dict(self) -> dict[str, Any]:
        return {"at": self.at, "ok": self.ok, "error": self.error, "applied": list(self.applied),
                "restart_required": list(self.restart_required), "trigger": self.trigger}


class PolicyReloader:
    """Watches the policy file and applies what changed in it to the running worker.

    :meth:`check` reads the file and does nothing while its content (SHA-256) is the one last
    tried, so a file left invalid is reported once, not at every poll; ``force`` (SIGHUP) tries
    again anyway. A new content is built with ``source.load``: an error keeps the running policy
    (logged once, with the loader's file and line, counted as
    ``tokenpulse_policy_reloads_total{result="error"}``); a valid one goes to ``apply(config,
    applied sections)`` with the reloadable sections (:func:`reloaded_config`), and the
    sections that need a restart are logged as a warning. The first check after the start only
    takes note of the file when it gives the running config (the entry point parsed the same
    file a moment before); a difference is applied as a reload.

    ``apply`` must not raise for a config ``load`` accepted; if it does, the reload counts as an
    error and the running config stays what the reloader holds. Not thread-safe: call it from
    the worker's event loop only (the Faust timer and the SIGHUP handler are).
    """

    def __init__(
        self,
        source: PolicySource,
        running: StreamConfig,
        apply: Callable[[StreamConfig, list[str]], None],
        metrics: Metrics,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.source = source
        self.running = running
        self.apply = apply
        self.metrics = metrics
        self.clock = clock
        self.loaded_at = clock()  # when the policy in force was read (the start, or the last good reload)
        self.digest: str | None = None  # SHA-256 of the content in force (None: not read yet)
        self.last: ReloadResult | None = None
        self.restart_required: list[str] = []  # sections of the file that differ from what runs
        self._tried: str | None = None  # the content (or read error) last tried
        for result in ("ok", "error"):
            metrics.inc("policy_reloads_total", 0, labels={"result": result})
        metrics.set("policy_last_reload_successful", 1)

    def check(self, force: bool = False, trigger: str = "poll") -> ReloadResult | None:
        """Reload when the file changed (or ``force``); the result, or None when nothing was tried."""
        path = self.source.path
        try:
            with Path(path).open("rb") as f:
                raw = f.read(self.source.max_bytes + 1)
        except OSError as exc:
            tried = f"unreadable:{exc.strerror}"
            if tried == self._tried and not force:
                return None
            self._tried = tried
            return self._fail(f"{path}: cannot read the policy file: {exc.strerror}", trigger)
        digest = hashlib.sha256(raw).hexdigest()
        if digest == self._tried and not force:
            return None
        first = self._tried is None
        self._tried = digest
        try:
            new = self.source.load(raw)
        except ValueError as exc:
            return self._fail(str(exc), trigger)
        except Exception as exc:  # noqa: BLE001 - a reload must never stop the worker
            return self._fail(f"{path}: the policy could not be loaded ({type(exc).__name__})", trigger)
        applied, restart = sections_changed(self.running, new)
        if first and not applied and not restart:
            self.digest = digest  # the policy the worker started with
            return None
        merged = reloaded_config(self.running, new)
        try:
            self.apply(merged, applied)
        except Exception as exc:  # keep running on the config in force
            log.exception("policy reload from %s: applying it failed; the running policy stays", path)
            return self._fail(f"{path}: applying the policy failed ({type(exc).__name__})", trigger)
        self.running = merged
        self.digest = digest
        self.loaded_at = self.clock()
        self.restart_required = restart
        res = ReloadResult(at=self.loaded_at, ok=True, applied=applied, restart_required=restart, trigger=trigger)
        self.last = res
        self.metrics.inc("policy_reloads_total", labels={"result": "ok"})
        self.metrics.set("policy_last_reload_successful", 1)
        log.info("policy reloaded from %s: applied %s", path, ", ".join(applied) or "nothing (no reloadable change)")
        if restart:
            log.warning("policy %s: changes in %s take effect only after a restart of the worker",
                        path, ", ".join(restart))
        return res

    def _fail(self, error: str, trigger: str) -> ReloadResult:
        res = ReloadResult(at=self.clock(), ok=False, error=error, trigger=trigger)
        self.last = res
        self.metrics.inc("policy_reloads_total", labels={"result": "error"})
        self.metrics.set("policy_last_reload_successful", 0)
        log.error("policy reload failed, the running policy stays in force: %s", error)
        return res

    def status(self) -> dict[str, Any]:
        """For ``/api/policy``: the file, when the policy in force was loaded, the last reload
        (time, result, error, sections applied or waiting for a restart). Never settings."""
        return {
            "path": self.source.path,
            "loaded_at": self.loaded_at,
            "sha256": self.digest,
            "poll_interval_s": self.source.interval,
            "last_reload": None if self.last is None else self.last.to_dict(),
            "restart_required": list(self.restart_required),
            "reloadable": list(RELOADABLE),
        }
