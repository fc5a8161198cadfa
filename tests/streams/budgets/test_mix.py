from __future__ import annotations

from streams.ingest.windows import NANO
from streams.budgets.mix import is_internal, mix_rows

DAY = 86400


def rec(usd: float) -> dict:
    return {"s": [int(usd * NANO), 0, 0, 0, 0, 1], "v": {}}


def test_internal_models_match_shell_patterns() -> None:
    assert is_internal("acme-llama-70b", ["acme-*"]) and not is_internal("gpt-4o", ["acme-*"])
    assert is_internal("claude-x", ["gpt-*", "claude-?"]) and not is_internal("claude-xy", ["claude-?"])
    assert not is_internal("anything", [])


def test_shares_trend_and_top_third_party_models() -> None:
    items = [
        # this week: ads 1 internal, 3 third-party (2 gpt-4o + 1 claude); search all internal
        (f"team=ads|model=acme-llama|{2 * DAY}", rec(1)),
        (f"team=ads|model=gpt-4o|{2 * DAY}", rec(2)),
        (f"team=ads|model=claude|{3 * DAY}", rec(1)),
        (f"team=search|model=acme-llama|{DAY}", rec(5)),
        # last week: ads 50/50; a team only seen last week
        (f"team=ads|model=acme-llama|{-3 * DAY}", rec(2)),
        (f"team=ads|model=gpt-4o|{-3 * DAY}", rec(2)),
        (f"team=legal|model=gpt-4o|{-DAY}", rec(1)),
        # outside both periods, and series that are not team x model
        (f"team=ads|model=gpt-4o|{-20 * DAY}", rec(100)),
        (f"team=ads|{2 * DAY}", rec(4)),
        (f"model=gpt-4o|{2 * DAY}", rec(2)),
        ("team=ads|model=gpt-4o|60", None),
    ]
    rows = {r["team"]: r for r in mix_rows(items, ["acme-*"], since=0, until=7 * DAY)}
    ads = rows["ads"]
    assert (ads["internal_usd"], ads["third_party_usd"], ads["third_party_share_pct"]) == (1.0, 3.0, 75.0)
    assert ads["previous"]["third_party_share_pct"] == 50.0 and ads["change_pct_points"] == 25.0
    assert ads["top_third_party_models"] == [{"model": "gpt-4o", "usd": 2.0}, {"model": "claude", "usd": 1.0}]
    assert rows["search"]["third_party_share_pct"] == 0.0 and rows["search"]["change_pct_points"] is None
    assert rows["legal"]["third_party_share_pct"] is None and rows["legal"]["previous"]["third_party_share_pct"] == 100.0
