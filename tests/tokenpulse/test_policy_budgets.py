from __future__ import annotations

from decimal import Decimal

import pytest

from streams.budgets.ledger import BudgetSpec
from streams.ingest.windows import NANO
from tokenpulse.policy import PolicyError, parse_policy

FULL = """\
budget_timezone: Europe/Berlin
budgets:
  - name: org-monthly
    scope: org
    amount: 50000.10
    period: month
    thresholds: [50, 80, 100, 120]
    forecast: {margin_pct: 10, min_elapsed_pct: 20}
    allocations:
      - {team: ads, amount: 10000}
      - {team: search, percent: 30, thresholds: [90]}
  - name: ml-platform
    scope: {team: ml}
    parent: org-monthly
    amount: 5000
  - name: bob-daily
    scope: user=bob
    unit: tokens
    amount: 2000000
    period: day
    timezone: America/New_York
    forecast: {enabled: false}
"""


def test_budgets_parse_with_defaults_and_allocations() -> None:
    p = parse_policy(FULL)
    org, ml, bob = p.budgets
    assert org.scope == {} and org.unit == "usd" and org.amount == Decimal("50000.10")
    assert ml.thresholds == [50, 80, 100] and ml.timezone is None
    assert bob.scope == {"user": "bob"} and bob.unit == "tokens"
    # 50000.10 - 10000 - 30 % (15000.03) - 5000 (the child budget)
    assert p.unallocated("org-monthly") == Decimal("20000.07")


def test_budget_specs_for_the_ledger() -> None:
    specs = {s.name: s for s in parse_policy(FULL).budget_specs()}
    assert list(specs) == ["org-monthly", "org-monthly/ads", "org-monthly/search", "ml-platform", "bob-daily"]
    org = specs["org-monthly"]
    assert org == BudgetSpec(
        name="org-monthly", scope=(), unit="usd", limit=50_000_100_000_000_000 // 1000, period="month",
        tz="Europe/Berlin", thresholds=(50.0, 80.0, 100.0, 120.0), forecast_alert=True,
        forecast_margin=0.1, forecast_min_elapsed=0.2,
    )
    assert org.limit == 50_000_100_000_000  # exact nano-dollars, no float on the way
    search = specs["org-monthly/search"]
    assert search.scope == (("team", "search"),) and search.limit == 15_000_030_000_000
    assert search.thresholds == (90.0,) and search.parent == "org-monthly" and search.tz == "Europe/Berlin"
    assert specs["org-monthly/ads"].limit == 10_000 * NANO and specs["org-monthly/ads"].thresholds == org.thresholds
    assert specs["ml-platform"].parent == "org-monthly" and specs["ml-platform"].series == "team=ml"
    bob = specs["bob-daily"]
    assert (bob.unit, bob.limit, bob.tz, bob.forecast_alert) == ("tokens", 2_000_000, "America/New_York", False)
    assert bob.series == "user=bob"


def test_another_orgs_budgets_name_it_and_read_its_series_only() -> None:
    text = ("budgets:\n  - name: acme\n    scope: org=acme\n    amount: 10\n"
            "  - name: acme-ads\n    scope: {org: acme, team: ads}\n    amount: 5\n"
            "  - name: ads\n    scope: org=default|team=ads\n    amount: 5\n")
    specs = {s.name: s for s in parse_policy(text).budget_specs()}
    assert {n: s.series for n, s in specs.items()} == {"acme": "org=acme", "acme-ads": "org=acme|team=ads",
                                                        "ads": "team=ads"}
    assert specs["acme-ads"].matches({"org": "acme", "team": "ads"}) and not specs["ads"].matches(
        {"org": "acme", "team": "ads"})
    with pytest.raises(PolicyError, match="always show"):
        parse_policy("budgets:\n  - name: a\n    amount: 10\n    scope: org=acme|team=ads|user=bob\n")


def test_no_budgets_by_default() -> None:
    p = parse_policy("watch: [org]\n")
    assert p.budgets == [] and p.budget_specs() == [] and p.budget_timezone == "UTC"


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ("budget_timezone: Europe/Berlinn\n", 1, "unknown time zone 'Europe/Berlinn'"),
        ("budgets:\n  - name: a\n    amount: 10\n    timezone: Mars/Base\n", 4, "budgets.0.timezone"),
        ("budgets:\n  - name: a\n    amount: 10\n    period: fortnight\n", 4, "budgets.0.period"),
        ("budgets:\n  - name: a\n    amount: 10\n    unit: eur\n", 4, "budgets.0.unit"),
        ("budgets:\n  - name: a\n    amount: -5\n", 3, "budgets.0.amount"),
        ("budgets:\n  - name: a\n    amount: 10\n    scope: {model: gpt-4o}\n", 4, "unknown scope label(s) model"),
        ("budgets:\n  - name: a\n    amount: 10\n    scope: team\n", 4, "expected 'org' or labels"),
        # scopes ingest keeps no spend for: refused rather than a budget stuck at $0
        ("budgets:\n  - name: a\n    amount: 10\n    scope: {project: apollo}\n", 4,
         "budgets.0.scope: Value error, scope 'project': usage events carry no project"),
        ("budgets:\n  - name: a\n    amount: 10\n  - name: b\n    amount: 5\n    scope: team=ads|user=bob\n", 6,
         "budgets.1.scope: Value error, scope team=ads|user=bob: spend is kept per team and per user, not per team"),
        ("budgets:\n  - name: a\n    amount: 10\n    scope: {user: bob, team: ads}\n", 4, "always show $0"),
        ("budgets:\n  - name: a\n    amount: 10\n    thresholds: [50, 0]\n", 4, "(0, 1000]"),
        ("budgets:\n  - name: a\n    amount: 10\n    thresholds: [50, 50]\n", 4, "must not repeat"),
        ("budgets:\n  - name: a|b\n    amount: 10\n", 2, "may not contain"),
        ("budgets:\n  - name: a\n    amount: 10.5\n    unit: tokens\n", 2, "must be whole"),
        ("budgets:\n  - name: a\n    amount: 0.0000000001\n", 2, "at most 9 decimals"),
        ("budgets:\n  - name: a\n    amount: 10\n    frequency: daily\n", 4, "budgets.0.frequency"),
        (  # allocation with both amount and percent
            "budgets:\n  - name: a\n    amount: 10\n    allocations:\n      - {team: x, amount: 1, percent: 5}\n",
            5, "either amount or percent",
        ),
        (  # allocations only split an org budget
            "budgets:\n  - name: a\n    scope: {team: x}\n    amount: 10\n    allocations:\n      - {team: y, amount: 1}\n",
            2, "only an org budget",
        ),
    ],
)
def test_budget_errors_name_the_line(text: str, line: int, fragment: str) -> None:
    with pytest.raises(PolicyError) as exc:
        parse_policy(text, "p.yaml")
    assert f"p.yaml:{line}:" in str(exc.value) and fragment in str(exc.value), str(exc.value)


OVER = """\
budgets:
  - name: org
    amount: 1000
    allocations:
      - {team: ads, amount: 600}
      - {team: search, percent: 40.01}
"""


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        (OVER, 4, "add up to 1000.10 usd, more than its 1000"),
        (  # a child budget that does not fit next to the allocations
            "budgets:\n  - name: org\n    amount: 1000\n    allocations:\n      - {team: ads, percent: 90}\n"
            "  - name: ml\n    scope: {team: ml}\n    parent: org\n    amount: 101\n",
            9, "add up to 1001",
        ),
        (  # same unit, period and timezone as the parent
            "budgets:\n  - name: org\n    amount: 1000\n  - name: ml\n    scope: {team: ml}\n    parent: org\n"
            "    amount: 10\n    period: week\n",
            6, "parent's unit, period and timezone: usd/week/UTC here, usd/month/UTC",
        ),
        (
            "budgets:\n  - name: org\n    amount: 1000\n  - name: ml\n    scope: {team: ml}\n    parent: nope\n"
            "    amount: 10\n",
            6, "parent 'nope' is not an org budget",
        ),
        (
            "budgets:\n  - name: org\n    amount: 1000\n    allocations: [{team: ml, amount: 1}]\n"
            "  - name: ml\n    scope: {team: ml}\n    parent: org\n    amount: 10\n",
            7, "already has an allocation",
        ),
        (
            "budgets:\n  - name: org\n    amount: 1000\n    allocations:\n      - {team: ml, amount: 1}\n"
            "      - {team: ml, amount: 2}\n",
            6, "allocated twice",
        ),
        ("budgets:\n  - name: x\n    amount: 1\n  - name: x\n    amount: 2\n", 4, "used twice"),
    ],
)
def test_allocations_never_exceed_the_parent(text: str, line: int, fragment: str) -> None:
    with pytest.raises(PolicyError) as exc:
        parse_policy(text, "p.yaml")
    assert f"p.yaml:{line}:" in str(exc.value) and fragment in str(exc.value), str(exc.value)


def test_allocations_may_fill_the_parent_exactly() -> None:
    p = parse_policy(
        "budgets:\n  - name: org\n    amount: 1000\n    allocations:\n"
        "      - {team: ads, amount: 600}\n      - {team: search, percent: 40}\n"
    )
    assert p.unallocated("org") == 0
    assert sum(s.limit for s in p.budget_specs() if s.parent == "org") == 1000 * NANO


def test_commented_budgets_example_in_repo_is_valid() -> None:
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "policy.example.yaml").read_text(encoding="utf-8")
    start = text.index("# budget_timezone:")
    block = "\n".join(line[2:] for line in text[start:].splitlines() if line.startswith("# "))
    p = parse_policy(block, "policy.example.yaml (budgets)")
    assert [s.name for s in p.budget_specs()] == [
        "org-monthly", "org-monthly/ads", "org-monthly/search", "ml-platform", "bob-daily"]
    assert p.unallocated("org-monthly") == Decimal(15000)
