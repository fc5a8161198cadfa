"""Every table's changelog topic is created before Faust starts (``tokenpulse.runtime.prepare_topics``).

Left to Faust, a changelog was declared after the first group join; a group leader whose
metadata still lacked it ("Ignoring missing topic") assigned none of its partitions, and the
survivor of a SIGKILL never recovered the table: with TOKENPULSE_PLACEMENT=series the org's
budget ledger came back empty and counted only the spend after the takeover
(test_failover.py[kafka-series]: $47.53 of $87.09)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from alerts.receivers.slack.config import SlackConfig
from streams.common.config import StreamConfig
from streams.reports.core import ReportSpec
from streams.worker.app import create_app
from streams.worker.tables import changelog_topics


@pytest.mark.parametrize("placement", ["org", "series"])
def test_the_changelog_of_every_table_the_app_makes_is_named(tmp_path: Path, placement: str) -> None:
    # every optional table on: reports in the policy, Slack's signing secret (the feedback table)
    slack = SlackConfig(token=SecretStr("xoxb-made-up"), signing_secret=SecretStr("made-up-signing-secret"))
    cfg = StreamConfig(bootstrap="127.0.0.1:1", usage_partitions=2, data_dir=str(tmp_path), app_id="cl",
                       topic_prefix="cl", placement=placement, receivers={"slack": slack},
                       reports=(ReportSpec(name="daily:#ads", channel="#ads"),))
    app = create_app(cfg)
    made = {table.changelog_topic.get_topic_name() for table in app.tables.values()}
    assert "cl-budgets-changelog" in made and ("cl-org-changelog" in made) == (placement == "series")
    assert made == set(changelog_topics("cl", placement))


@pytest.mark.parametrize("placement", ["org", "series"])
def test_prepare_topics_creates_every_changelog_compacted(monkeypatch: pytest.MonkeyPatch, placement: str) -> None:
    import kafka.admin

    from tokenpulse import broker, runtime
    from tokenpulse import placement as placement_mod
    from tokenpulse.settings import Settings

    made: dict[str, int] = {}
    compacted: set[str] = set()

    def ensure(bootstrap: str, topics: Any, timeout: float = 30.0, compacted_: Any = (), **kw: Any) -> None:
        made.update(dict(topics))
        compacted.update(kw.get("compacted", compacted_))

    class Admin:
        def __init__(self, **kw: Any) -> None:
            pass

        def describe_topics(self, names: list[str]) -> list[dict[str, Any]]:
            return [{"partitions": [0, 1, 2]}]

        def close(self) -> None:
            pass

    monkeypatch.setattr(broker, "check_access", lambda *a, **kw: None)
    monkeypatch.setattr(broker, "ensure_topics", ensure)
    monkeypatch.setattr(placement_mod, "check_placement", lambda *a, **kw: None)
    monkeypatch.setattr(kafka.admin, "KafkaAdminClient", Admin)
    settings = Settings(app_id="cl", topic_prefix="cl", placement=placement)
    assert runtime.prepare_topics(settings, "127.0.0.1:1") == 3
    for name in changelog_topics("cl", placement):
        assert made.get(name) == 3, name  # the usage topic's partition count, as Faust's tables have
        assert name in compacted, name
    assert "cl-budgets-changelog" in made and "cl-digests-changelog" in made
