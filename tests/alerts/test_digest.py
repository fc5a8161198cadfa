"""Digest periods in a time zone (DST days included), the per-channel book and the message."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from alerts import AlertEngine, Notification, Signal
from alerts.digest import (
    ITEMS_MAX,
    DigestSchedule,
    collect,
    due,
    mark_failed,
    mark_sent,
    parse_clock,
)
from alerts.model import BudgetNotification, MixNotification
from alerts.receivers.slack.render import BLOCKS_MAX, SECTION_MAX, digest_message
from tests.alerts.policies import no_hold
from tests.alerts.test_format import ENTITY, mrkdwn_texts, u16
from tests.fakes.slack_server import check_blocks

BERLIN = ZoneInfo("Europe/Berlin")


def berlin(*a: int, fold: int = 0) -> int:
    return int(datetime(*a, tzinfo=BERLIN, fold=fold).timestamp())  # type: ignore[misc]


# -- periods -------------------------------------------------------------------------------
def test_hourly_periods_are_local_hours_and_the_doubled_hour_is_two_periods() -> None:
    s = DigestSchedule("hourly", "Europe/Berlin")
    p = s.period(berlin(2026, 5, 4, 14, 59, 59))
    assert (p.id, p.start, p.end) == ("2026-05-04T14:00+02:00", berlin(2026, 5, 4, 14), berlin(2026, 5, 4, 15))
    assert s.period(berlin(2026, 5, 4, 15)).start == p.end  # a boundary starts the next period
    # 2026-10-25: 02:00-03:00 happens twice in Berlin; each pass is a period of its own
    first, second = s.period(berlin(2026, 10, 25, 2, 30)), s.period(berlin(2026, 10, 25, 2, 30, fold=1))
    assert first.id == "2026-10-25T02:00+02:00" and second.id == "2026-10-25T02:00+01:00"
    assert first.end == second.start and second.end - second.start == 3600
    # 2026-03-29: 02:00-03:00 does not exist; 01:xx is followed by 03:xx
    a, b = s.period(berlin(2026, 3, 29, 1, 30)), s.period(berlin(2026, 3, 29, 3, 30))
    assert a.end == b.start and b.id == "2026-03-29T03:00+02:00"
    # a half-hour zone: local hours, not UTC hours
    assert DigestSchedule("hourly", "Asia/Kolkata").period(1_777_000_000).start % 3600 == 1800


def test_daily_periods_run_from_daily_at_to_daily_at_across_dst_changes() -> None:
    s = DigestSchedule("daily", "Europe/Berlin", "09:00")
    p = s.period(berlin(2026, 3, 29, 8, 59))  # before 09:00: still the period that began the day before
    assert p.id == "2026-03-28T09:00+01:00" and p.end == berlin(2026, 3, 29, 9)
    assert (p.end - p.start) / 3600 == 23  # the spring-forward day
    autumn = s.period(berlin(2026, 10, 25, 12))
    assert (autumn.start, autumn.end) == (berlin(2026, 10, 25, 9), berlin(2026, 10, 26, 9))
    assert (s.period(berlin(2026, 10, 25, 3)).end - s.period(berlin(2026, 10, 25, 3)).start) / 3600 == 25
    # a daily_at that does not exist on the spring-forward day: an hour later (03:30 CEST)
    gap = DigestSchedule("daily", "Europe/Berlin", "02:30")
    assert gap.period(berlin(2026, 3, 29, 3, 0)).end == berlin(2026, 3, 29, 3, 30)
    # seconds are allowed, and UTC is the default zone
    assert DigestSchedule("daily", daily_at="17:30:15").period(0).end == 17 * 3600 + 30 * 60 + 15


@pytest.mark.parametrize("bad", ["9:00", "24:00", "12:60", "noon", "12", "12:00:00:00", ""])
def test_a_bad_time_of_day_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="HH:MM"):
        parse_clock(bad)


def test_a_bad_mode_or_zone_is_refused() -> None:
    with pytest.raises(ValueError, match="digest mode"):
        DigestSchedule("weekly")
    with pytest.raises(ValueError, match="time zone"):
        DigestSchedule("daily", "Mars/Olympus")


# -- the book ------------------------------------------------------------------------------
def spike_notes(series: str = "team=ads", t0: float = 1_777_000_000.0) -> list[Notification]:
    """A trigger, a worsened update and the resolve, as the engine makes them."""
    engine = AlertEngine(no_hold(warning_excess_usd=2, page_min_excess_usd=50))
    out: list[Notification] = []
    team = series.partition("=")[2]
    for i, spend in enumerate([90.0, 180.0, 3.0, 3.0, 3.0]):
        out.extend(engine.observe(Signal(
            series=series, labels={"team": team}, window_start=t0 + 60 * i, window_end=t0 + 60 * (i + 1),
            observed_usd=spend, expected_usd=3.0, upper_usd=6.0, score=0.9, is_anomaly=spend > 6)))
    return out


def test_collect_files_by_the_period_of_now_and_skips_what_it_has() -> None:
    s = DigestSchedule("hourly", "UTC")
    notes = spike_notes()
    book: dict[str, Any] | None = None
    now = 1_777_000_000.0  # 03:06:40 UTC
    for n in notes:
        book, added = collect(book, n, s, now)
        assert added
    assert book is not None
    book, added = collect(book, notes[0], s, now + 3600)  # redelivered an hour later: still known
    assert not added
    [pid] = book["periods"]
    assert due(book, now) == [] and due(book, book["periods"][pid]["end"]) == [pid]
    failed = mark_failed(book, pid, "slack: ratelimited")
    assert failed["periods"][pid]["failures"] == 1 and book["periods"][pid]["failures"] == 0  # not mutated
    sent = mark_sent(failed, pid, "posted", now + 3600)
    assert sent["periods"] == {} and sent["sent"][-1]["notifications"] == len(notes)
    # once sent, a redelivery does not open a new period
    again, added = collect(sent, notes[1], s, now + 7200)
    assert not added and again["periods"] == {}
    # a new notification goes to the period of now
    later = spike_notes(t0=now + 9000)[0]
    again, added = collect(sent, later, s, now + 7200)
    assert added and list(again["periods"]) == [s.period(now + 7200).id]


def test_the_book_keeps_a_bounded_number_of_items_and_counts_the_rest() -> None:
    s = DigestSchedule("daily", "UTC")
    n = spike_notes()[0]
    book: dict[str, Any] | None = None
    for i in range(ITEMS_MAX + 7):
        book, _ = collect(book, Notification.from_dict({**n.to_dict(), "seq": i}), s, 1_777_000_000.0)
    assert book is not None
    [p] = book["periods"].values()
    assert len(p["items"]) == ITEMS_MAX and p["more"] == 7
    text, blocks = digest_message(p)
    assert f"{ITEMS_MAX + 7} notifications" in text and "7 notifications beyond" in str(blocks)


# -- the message ---------------------------------------------------------------------------
def period_of(notes: list[Notification], mode: str = "hourly", tz: str = "UTC", now: float = 1_777_000_000.0) -> dict[str, Any]:
    s = DigestSchedule(mode, tz)
    book: dict[str, Any] | None = None
    for n in notes:
        book, _ = collect(book, n, s, now)
    assert book is not None
    [p] = book["periods"].values()
    return p


def budget_note(name: str = "ads-daily", threshold: float | None = 80.0, action: str = "trigger") -> BudgetNotification:
    return BudgetNotification(
        key=f"budget:{name}", seq=7, action=action, severity="warning", reason="first", series="team=ads",  # type: ignore[arg-type]
        labels={"team": "ads"}, title=f"Budget {name}: 80% used", started_at=0.0, fired_at=1_777_000_100.0,
        rule="budget_threshold" if threshold is not None else "budget_forecast", budget=name, unit="usd",
        period="day", tz="UTC", period_id="2026-04-24", period_start=0.0, period_end=86400.0, spent=8.0, limit=10.0,
        pct_used=80.0, days_left=0.3, threshold=threshold, projected_total=12.5, projected_pct=125.0,
        exhaustion_ts=None)


def test_a_digest_groups_still_firing_resolved_and_budgets_with_their_numbers() -> None:
    ads = spike_notes("team=ads")  # resolved within the period
    ml = spike_notes("team=ml")[:2]  # still firing at its end
    p = period_of([*ads, *ml, budget_note()])
    text, blocks = digest_message(p, "#ads-digest")
    assert check_blocks(blocks) is None
    assert blocks[0]["type"] == "header" and "Hourly digest: 6 notifications, 1 still firing" in blocks[0]["text"]["text"]
    body = mrkdwn_texts(blocks)
    joined = "\n".join(body)
    firing, resolved, budgets = (joined.index(h) for h in ("Still firing", "Resolved", "Budgets"))
    assert firing < joined.index("*team=ml*") < resolved < joined.index("*team=ads*") < budgets
    assert "triggered (critical, paged): $90.00 vs expected $3.00 per window, excess +$87.00 (+2,900%)" in joined
    assert "worsened" in joined and "resolved after" in joined
    assert "80% reached: spent $8.00 of $10.00 (80.0%), forecast $12.50 (125.0%)" in joined
    assert "2026-04-24 03:00–04:00 UTC" in joined  # the period, in its zone
    assert "still firing" in text and "team=ml" in text


def test_a_daily_digest_in_a_zone_shows_local_times_and_dates() -> None:
    p = period_of(spike_notes()[:1], mode="daily", tz="America/New_York")
    joined = "\n".join(mrkdwn_texts(digest_message(p)[1]))
    assert "2026-04-23 09:00–2026-04-24 09:00 America/New_York" in joined
    assert "Thu 23 23:" in joined  # 03:07 UTC on the 24th is 23:07 on the 23rd in New York


def test_user_text_is_escaped_everywhere() -> None:
    evil = "team=<!channel> & <https://x.example|click>"
    n = spike_notes()[0]
    bad = Notification.from_dict({**n.to_dict(), "series": evil, "key": "cost_spike:" + evil})
    b = budget_note(name="<!here>&")
    text, blocks = digest_message(period_of([bad, b]), "#<!everyone>")
    for t in [text, *mrkdwn_texts(blocks)]:
        assert "<!" not in t and "<https" not in t and not ENTITY.search(t), t
    assert "&lt;!channel&gt; &amp; &lt;https://x.example|click&gt;" in str(blocks)


def test_a_huge_period_stays_within_slacks_limits_and_says_what_it_left_out() -> None:
    notes: list[Notification] = []
    for i in range(80):
        notes.extend(spike_notes(f"team=t{i:02d}"))
    long_series = spike_notes("team=" + "x" * 5000)  # one series whose name alone fills a section
    many = [Notification.from_dict({**spike_notes()[1].to_dict(), "seq": 10_000 + i}) for i in range(40)]
    text, blocks = digest_message(period_of([*notes, *long_series, *many]))
    assert check_blocks(blocks) is None and len(blocks) <= BLOCKS_MAX
    assert all(u16(t) <= SECTION_MAX for t in mrkdwn_texts(blocks))
    joined = "\n".join(mrkdwn_texts(blocks))
    assert "…and " in joined and "more series or budgets" in joined
    assert "more" in next(t for t in mrkdwn_texts(blocks) if "*team=ads*" in t)  # 40 updates of one series
    assert u16(text) <= 3000


def test_a_third_party_share_alert_reads_as_one_and_an_unreadable_item_is_counted_not_shown() -> None:
    mix = MixNotification(
        key="mix:ads:2026-W17", seq=1, action="trigger", severity="warning", reason="first", series="team=ads",
        labels={"team": "ads"}, title="Team ads: third-party models at 62.5% of spend", started_at=0.0,
        fired_at=1_777_000_100.0, period="week", tz="UTC", period_id="2026-W17", period_start=0.0,
        period_end=7 * 86400.0, share_pct=62.5, line_pct=40.0, previous_period_id="2026-W16",
        previous_share_pct=None, internal_usd=3.0, third_party_usd=5.0)
    p = period_of([mix])
    p["items"].append({"key": "cost_spike:team=x", "seq": 1})  # another version's record
    text, blocks = digest_message(p)
    joined = "\n".join(mrkdwn_texts(blocks))
    assert "*team=ads* · third-party share" in joined
    assert "third-party models at 62.5% of the team's spend (line 40.0%)" in joined
    assert "2 notifications" in text and "1 notifications of another tokenpulse version" in joined
