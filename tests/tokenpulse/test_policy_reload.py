"""The policy reloader on real policy files, with the entry point's loader (``policy_source``):
a changed file is applied once, an invalid one is reported once with its line and changes
nothing, and the counters and status say so. No secret of the settings ever shows."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from alerts.receivers.slack import SlackConfig
from streams.common.config import StreamConfig
from streams.common.metrics import Metrics
from streams.worker.reload import PolicyReloader
from tests.tokenpulse.hostile import BOMB, at_most
from tokenpulse.policy import MAX_POLICY_BYTES, load_policy
from tokenpulse.runtime import policy_source, stream_config
from tokenpulse.settings import Settings

POLICY = """\
watch: [team]
teams:
  ads: {slack_channel: "#ads"}
budgets:
  - name: ads-daily
    scope: {team: ads}
    amount: 10
    period: day
"""


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        self.t += 1
        return self.t


def _setup(tmp_path: Path) -> tuple[Path, Settings, PolicyReloader, list[tuple[StreamConfig, list[str]]], Metrics]:
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY)
    settings = Settings(policy=path, policy_reload_seconds=2).with_receivers(  # type: ignore[arg-type]
        slack=SlackConfig(token=SecretStr("xoxb-very-secret")))
    source = policy_source(settings, "127.0.0.1:9092", 2)
    assert source is not None and source.interval == 2 and source.path == str(path)
    running = stream_config(settings, load_policy(path), "127.0.0.1:9092", 2)
    calls: list[tuple[StreamConfig, list[str]]] = []
    metrics = Metrics()
    reloader = PolicyReloader(source, running, lambda cfg, applied: calls.append((cfg, applied)), metrics, clock=Clock())
    return path, settings, reloader, calls, metrics


def _count(metrics: Metrics, result: str) -> float:
    return metrics.counters["policy_reloads_total"][f'{{result="{result}"}}']


def test_the_first_check_only_takes_note_of_the_running_policy(tmp_path: Path) -> None:
    _, _, reloader, calls, metrics = _setup(tmp_path)
    assert reloader.check() is None and reloader.check() is None
    assert calls == [] and reloader.last is None and reloader.digest is not None
    assert (_count(metrics, "ok"), _count(metrics, "error")) == (0, 0)  # shown at 0 in /metrics


def test_a_changed_file_is_applied_once_and_restart_sections_are_named(tmp_path: Path, caplog: Any) -> None:
    path, _, reloader, calls, metrics = _setup(tmp_path)
    reloader.check()
    path.write_text(POLICY.replace("amount: 10", "amount: 4").replace("watch: [team]", "watch: [team, org]")
                    + "silences:\n  - {matchers: {team: data}, starts_at: 2026-11-27T01:00:00Z, reason: backfill}\n")
    with caplog.at_level(logging.INFO, logger="tokenpulse.policy"):
        res = reloader.check()
    assert res is not None and res.ok and res.error is None
    assert res.applied == ["budgets", "silences"] and res.restart_required == ["watch"]
    [(cfg, applied)] = calls
    assert applied == res.applied
    assert [b.limit for b in cfg.budgets] == [4 * 10**9]
    assert cfg.watched == frozenset({"team"})  # a restart takes the new watch list
    assert [s["reason"] for s in cfg.alert_policy["silences"]] == ["backfill"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [f"policy {path}: changes in watch take effect only after a restart of the worker"]
    assert reloader.check() is None and len(calls) == 1  # unchanged since
    assert _count(metrics, "ok") == 1
    st = reloader.status()
    assert st["restart_required"] == ["watch"] and st["last_reload"]["applied"] == ["budgets", "silences"]
    assert st["loaded_at"] == res.at
    # the watch list back as it runs: nothing waits for a restart any more
    path.write_text(POLICY.replace("amount: 10", "amount: 4"))
    res = reloader.check()
    assert res is not None and res.ok and res.applied == ["silences"] and res.restart_required == []


def test_an_invalid_policy_keeps_the_running_one_and_is_reported_once_with_its_line(
        tmp_path: Path, caplog: Any) -> None:
    path, _, reloader, calls, metrics = _setup(tmp_path)
    reloader.check()
    before = reloader.running
    loaded_at = reloader.loaded_at
    path.write_text(POLICY.replace("amount: 10", "amount: -3"))
    with caplog.at_level(logging.INFO, logger="tokenpulse.policy"):
        res = reloader.check()
        assert reloader.check() is None  # the same broken content: not again
    assert res is not None and not res.ok
    assert res.error is not None and res.error.startswith(f"{path}:7: budgets.0.amount: ")
    assert calls == [] and reloader.running is before and reloader.loaded_at == loaded_at
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and f"{path}:7:" in errors[0].getMessage()
    assert (_count(metrics, "ok"), _count(metrics, "error")) == (0, 1)
    assert metrics.gauges["policy_last_reload_successful"][""] == 0
    st = reloader.status()
    assert st["last_reload"]["ok"] is False and st["last_reload"]["error"] == res.error
    assert "xoxb" not in repr(st) and "secret" not in repr(st)
    # SIGHUP tries again (still broken), a YAML error names its line too
    path.write_text(POLICY + "  - name: [\n")
    res = reloader.check(force=True, trigger="sighup")
    assert res is not None and not res.ok and res.trigger == "sighup"
    assert res.error is not None and res.error.startswith(f"{path}:") and "not valid YAML" in res.error
    # fixed: applied, and the gauge is back to 1
    path.write_text(POLICY.replace("amount: 10", "amount: 12"))
    res = reloader.check()
    assert res is not None and res.ok and res.applied == ["budgets"]
    assert metrics.gauges["policy_last_reload_successful"][""] == 1
    assert (_count(metrics, "ok"), _count(metrics, "error")) == (1, 2)


HOSTILE = [
    (BOMB.encode(), ":6: YAML aliases are not allowed in a policy file (*a)"),
    (POLICY.encode() + b"# " + b"x" * MAX_POLICY_BYTES + b"\n", ": the policy file is larger than 1,048,576 bytes"),
    (POLICY.encode().replace(b"ads-daily", b"ads-\xe9daily"), ":5: not UTF-8 text: byte(s) e9 at byte offset 75"),
    (POLICY.encode().replace(b"amount: 10", b"amount: .inf"), ":7: budgets.0.amount: Input should be a finite number"),
    (POLICY.encode().replace(b"amount: 10", b"amount: 1e400"), ":7: budgets.0.amount: must be a finite number"),
    (POLICY.encode() + b"watch: [org]\n", ":9: key 'watch' is given twice in one mapping, at lines 1 and 9"),
    (POLICY.encode().replace(b"amount: 10", b"amount: 10\n    amount: 1000"),
     ":8: key 'amount' is given twice in one mapping, at lines 7 and 8"),
    (POLICY.encode() + b"x: " + b"[" * 50_000 + b"]" * 50_000 + b"\n", ":9: nested more than 32 levels deep"),
    (POLICY.encode().replace(b"amount: 10", b"amount: " + b"9" * 5000), ":7: integer out of range (64 bits)"),
]


@pytest.mark.parametrize(("content", "expect"), HOSTILE)
def test_a_hostile_policy_keeps_the_running_one_and_is_reported_with_its_line(
        tmp_path: Path, content: bytes, expect: str) -> None:
    path, _, reloader, calls, metrics = _setup(tmp_path)
    reloader.check()
    before, loaded_at = reloader.running, reloader.loaded_at
    path.write_bytes(content)
    with at_most(200 << 20, seconds=2.0):
        res = reloader.check()
    assert res is not None and not res.ok
    assert res.error is not None and res.error.startswith(f"{path}{expect}"), res.error[:300]
    assert len(res.error) < 2000
    assert calls == [] and reloader.running is before and reloader.loaded_at == loaded_at
    assert (_count(metrics, "ok"), _count(metrics, "error")) == (0, 1)
    assert reloader.status()["last_reload"]["error"] == res.error
    assert reloader.check() is None  # reported once
    res = reloader.check(force=True, trigger="sighup")  # SIGHUP: the same error again, nothing applied
    assert res is not None and not res.ok and calls == [] and reloader.running is before


def test_the_reload_never_reads_past_the_size_cap(tmp_path: Path) -> None:
    path, _, reloader, calls, _ = _setup(tmp_path)
    reloader.check()
    reloader.source = replace(reloader.source, path="/dev/zero")  # a file that never ends
    with at_most(100 << 20, seconds=2.0):
        res = reloader.check()
    assert res is not None and not res.ok and calls == []
    # (named as the loader knows the file)
    assert res.error == f"{path}: the policy file is larger than 1,048,576 bytes (1 MiB), the limit for a policy file"


def test_a_missing_file_is_an_error_once_then_its_return_a_reload(tmp_path: Path) -> None:
    path, _, reloader, calls, metrics = _setup(tmp_path)
    reloader.check()
    path.unlink()
    res = reloader.check()
    assert res is not None and not res.ok and res.error == f"{path}: cannot read the policy file: No such file or directory"
    assert reloader.check() is None
    path.write_text(POLICY)  # the same policy as running: a successful reload that changes nothing
    res = reloader.check()
    assert res is not None and res.ok and res.applied == [] and calls == [(reloader.running, [])]
    assert _count(metrics, "error") == 1


def test_an_apply_that_fails_counts_as_an_error_and_keeps_the_running_config(tmp_path: Path) -> None:
    path, _, reloader, _, metrics = _setup(tmp_path)
    reloader.check()
    before = reloader.running

    def broken(cfg: StreamConfig, applied: list[str]) -> None:
        raise RuntimeError("boom")

    reloader.apply = broken
    path.write_text(POLICY.replace("amount: 10", "amount: 3"))
    res = reloader.check()
    assert res is not None and not res.ok and "RuntimeError" in (res.error or "")
    assert reloader.running is before and _count(metrics, "error") == 1


def test_no_policy_file_means_nothing_to_reload() -> None:
    assert policy_source(Settings(), "127.0.0.1:9092") is None


@pytest.mark.parametrize("interval", ["0", "7.5"])
def test_the_poll_interval_is_a_setting(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, interval: str) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("")
    monkeypatch.setenv("TOKENPULSE_POLICY_RELOAD_SECONDS", interval)
    monkeypatch.setenv("TOKENPULSE_POLICY", str(path))
    source = policy_source(Settings(), "127.0.0.1:9092")
    assert source is not None and source.interval == float(interval)
