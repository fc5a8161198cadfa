"""Hostile policy files (issue 10): each is refused with a ``PolicyError`` naming the line, quickly
and in little memory, by the loader the worker, its reload and ``tokenpulse policy`` share. Never
a traceback, and never a value quoted whole in the message."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.tokenpulse.hostile import BOMB, at_most
from tokenpulse.cli import app
from tokenpulse.policy import MAX_POLICY_BYTES, PolicyError, load_policy, parse_policy


def _error(text: str | bytes) -> str:
    with pytest.raises(PolicyError) as info:
        parse_policy(text, "p.yaml")
    return str(info.value)


def test_the_alias_bomb_is_refused_at_its_first_alias_quickly_and_in_little_memory() -> None:
    assert len(BOMB) < 600
    with at_most(200 << 20, seconds=1.0):
        msg = _error(BOMB)
    assert msg.startswith("p.yaml:6: YAML aliases are not allowed"), msg


def test_an_alias_anywhere_is_refused_with_its_line() -> None:
    msg = _error("alerts: &defaults {min_excess_usd: 1}\nmix:\n  internal_models: *defaults\n")
    assert msg.startswith("p.yaml:3: YAML aliases are not allowed") and "*defaults" in msg


def test_a_file_over_the_size_cap_is_refused_before_it_is_parsed(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_text("watch: [team]\n" + "# padding\n" * (MAX_POLICY_BYTES // 10 + 1))
    t0 = time.perf_counter()
    with pytest.raises(PolicyError, match=r"big\.yaml: the policy file is larger than 1,048,576 bytes"):
        load_policy(path)
    assert time.perf_counter() - t0 < 0.5
    # the text of a file over the cap too (what a caller read some other way)
    assert "larger than" in _error(path.read_text())
    # a file just under the cap is read
    path.write_text("watch: [team]\n" + "#" * (MAX_POLICY_BYTES - 20) + "\n")
    assert load_policy(path).watch == ["team"]


def test_a_file_that_never_ends_is_read_no_further_than_the_cap() -> None:
    with at_most(100 << 20, seconds=2.0), pytest.raises(PolicyError, match="larger than"):
        load_policy(Path("/dev/zero"))


def test_invalid_utf8_is_named_with_its_line_and_byte_offset(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_bytes(b"watch: [team]\nteams:\n  ads\xff: {}\n")
    with pytest.raises(PolicyError) as info:
        load_policy(path)
    assert str(info.value) == f"{path}:3: not UTF-8 text: byte(s) ff at byte offset 26 (invalid start byte)"
    # a UTF-8 byte order mark is fine
    path.write_bytes(b"\xef\xbb\xbfwatch: [team]\n")
    assert load_policy(path).watch == ["team"]


# Every kind of number in the policy: intervals, dollar and token amounts, thresholds, shares,
# prices and the detectors' own params (free-form): (template, line of {value}, a good value).
NUMBERS = [
    ("alerts:\n  repeat_interval_s: {value}\n", 2, "0.5"),
    ("alerts:\n  group_wait_s: {value}\n", 2, "0.5"),
    ("alerts:\n  min_excess_usd: {value}\n", 2, "0.5"),
    ("prices:\n  acme-1:\n    input: {value}\n    output: 1\n", 3, "0.5"),
    ("budgets:\n  - name: b\n    amount: {value}\n", 3, "0.5"),
    ("budgets:\n  - name: b\n    unit: tokens\n    amount: {value}\n", 4, "5"),
    ("budgets:\n  - name: b\n    amount: 10\n    thresholds: [50, {value}]\n", 4, "0.5"),
    ("budgets:\n  - name: b\n    amount: 10\n    forecast: {{margin_pct: {value}}}\n", 4, "0.5"),
    ("budgets:\n  - name: o\n    amount: 10\n    allocations:\n      - {{team: ads, amount: {value}}}\n", 5, "0.5"),
    ("mix:\n  internal_models: [acme-*]\n  max_third_party_share: {value}\n", 3, "0.5"),
    ("mix:\n  internal_models: [acme-*]\n  teams: {{ads: {value}}}\n", 3, "0.5"),
    ("mix:\n  min_spend_usd: {value}\n", 2, "0.5"),
    ("detector:\n  params:\n    min_excess_usd: {value}\n", 3, "0.5"),
    ("detector:\n  params: {{seasonal: {{threshold: {value}}}}}\n", 2, "0.5"),
    ("detector:\n  overrides:\n    - match: {{team: ads}}\n      params: {{min_excess_usd: {value}}}\n", 4, "0.5"),
]
NOT_FINITE = [".inf", "-.inf", ".nan", ".NaN", "1e400", "1.0e+400", "-1e400", "inf", "'Infinity'", "'nan'"]


@pytest.mark.parametrize(("template", "line", "good"), NUMBERS)
def test_numbers_must_be_finite_everywhere(template: str, line: int, good: str) -> None:
    for value in NOT_FINITE:
        text = template.format(value=value)
        try:
            parse_policy(text, "p.yaml")
        except PolicyError as exc:
            msg = str(exc)
            # YAML 1.1 reads 1e400 (no dot) and inf as strings: in the detectors' free-form
            # params a string is the detector's own error (at its section's line); a negative
            # amount is first refused as not positive
            free = template.startswith("detector") and value in ("1e400", "-1e400", "inf", "'Infinity'", "'nan'")
            assert msg.startswith(f"p.yaml:{line}: ") or (free and msg.startswith("p.yaml:")), (value, msg)
            assert free or "finite" in msg or ("greater than" in msg and value.startswith("-")), (value, msg)
        else:
            pytest.fail(f"accepted {value} in:\n{text}")
    parse_policy(template.format(value=good), "p.yaml")  # a finite value still loads


def test_finite_values_still_load() -> None:
    pol = parse_policy("alerts:\n  repeat_interval_s: 1.5e4\nbudgets:\n  - {name: b, amount: 12.5, thresholds: [50, "
                       "99.5]}\nprices:\n  acme-1: {input: 0.25, output: 1e-1}\n", "p.yaml")
    assert pol.alerts.repeat_interval_s == 15000 and pol.prices["acme-1"].output == 0.1


def test_numbers_past_64_bits_are_refused_with_their_line() -> None:
    msg = _error("budgets:\n  - name: b\n    unit: tokens\n    amount: " + "9" * 5000 + "\n")
    assert msg.startswith("p.yaml:4: integer out of range (64 bits): '999") and len(msg) < 200, msg
    assert _error("alerts:\n  resolve_after_windows: 9223372036854775808\n").startswith("p.yaml:2: integer out of")
    # a USD budget is kept in nano-dollars, 64 bits
    msg = _error("budgets:\n  - {name: b, amount: 1e300}\n")
    assert msg.startswith("p.yaml:2: budgets.0: Value error, too large: at most 9,223,372,036 USD"), msg


@pytest.mark.parametrize(("text", "expect"), [
    ("watch: [team]\nalerts: {}\nwatch: [org]\n", "p.yaml:3: key 'watch' is given twice in one mapping, at lines 1 and 3"),
    ("teams:\n  ads: {slack_channel: '#a'}\n  data: {}\n  ads: {slack_channel: '#b'}\n",
     "p.yaml:4: key 'ads' is given twice in one mapping, at lines 2 and 4"),
    ("budgets:\n  - name: a\n    amount: 10\n    amount: 1000\n",
     "p.yaml:4: key 'amount' is given twice in one mapping, at lines 3 and 4"),
    ("teams: {ads: {}, \"ads\": {}}\n", "p.yaml:1: key 'ads' is given twice in one mapping, at lines 1 and 1"),
    ("prices:\n  1: {input: 1, output: 1}\n  0x1: {input: 2, output: 2}\n",
     "p.yaml:3: key '0x1' is given twice in one mapping, at lines 2 and 3"),
])
def test_a_key_given_twice_is_refused_with_both_lines(text: str, expect: str) -> None:
    assert _error(text) == expect


def test_the_same_key_in_different_mappings_is_fine() -> None:
    pol = parse_policy("teams:\n  ads: {slack_channel: '#a'}\n  data: {slack_channel: '#d'}\n", "p.yaml")
    assert set(pol.teams) == {"ads", "data"}


def test_deep_nesting_is_refused_not_a_recursion_error() -> None:
    assert _error("x: " + "[" * 100_000 + "]" * 100_000 + "\n") == "p.yaml:1: nested more than 32 levels deep"
    deep = "".join("  " * i + f"k{i}:\n" for i in range(40)) + "  " * 40 + "v: 1\n"
    assert _error(deep) == "p.yaml:32: nested more than 32 levels deep"


@pytest.mark.parametrize("text", [
    "subscriptions:\n  - {channel: '#a', mode: daily, daily_at: '" + "9" * 100_000 + "'}\n",
    "budgets:\n  - {name: b, amount: 1, scope: '" + "x" * 100_000 + "'}\n",
    "reports:\n  - {channel: '#a', period: daily, at: '" + "1" * 100_000 + "'}\n",
    "watch: ['" + "x" * 100_000 + "']\n",
    "budget_timezone: '" + "x" * 100_000 + "'\n",
    "teams:\n  '" + "\x1b" * 50_000 + "': {nope: 1}\n",
    "alerts:\n  page_min_severity: '" + "x" * 100_000 + "'\n",
    "silences:\n  - {matchers: {" + ", ".join(f"k{i}: v" for i in range(5000)) + "}, starts_at: 2026-01-01, reason: r}\n",
    "budgets:\n" + "".join(f"  - {{name: b{i}, amount: -1}}\n" for i in range(500)),
])
def test_an_error_never_quotes_a_whole_value(text: str) -> None:
    msg = _error(text)
    assert len(msg) < 25 * 400, msg[:500]  # at most 20 errors and a count, each cut
    assert all(len(line) < 400 for line in msg.splitlines()), max(msg.splitlines(), key=len)[:500]
    assert "\x1b" not in msg


def test_many_errors_are_counted_past_the_first_twenty() -> None:
    msg = _error("budgets:\n" + "".join(f"  - {{name: b{i}, amount: -1}}\n" for i in range(50)))
    lines = msg.splitlines()
    assert len(lines) == 21 and lines[-1] == "p.yaml: … and 30 more errors", lines[-3:]


def test_characters_yaml_does_not_allow_are_named_with_their_line() -> None:
    assert _error("watch: [team]\nteams:\n  a\x00b: {}\n") == "p.yaml:3: not valid YAML: character U+0000 is not allowed"


runner = CliRunner()


@pytest.mark.usefixtures("clean_env")
@pytest.mark.parametrize(("content", "expect"), [
    (BOMB.encode(), ":6: YAML aliases are not allowed"),
    (b"watch: [team]\nteams:\n  ads\xff: {}\n", ":3: not UTF-8 text"),
    (b"alerts:\n  repeat_interval_s: .inf\n", ":2: alerts.repeat_interval_s: Input should be a finite number"),
    (b"watch: [team]\nwatch: [org]\n", ":2: key 'watch' is given twice in one mapping, at lines 1 and 2"),
    (b"# x\n" * (MAX_POLICY_BYTES // 4 + 1), ": the policy file is larger than 1,048,576 bytes"),
    (b"x: " + b"[" * 50_000 + b"]" * 50_000, ":1: nested more than 32 levels deep"),
    (b"alerts:\n  resolve_after_windows: " + b"9" * 5000 + b"\n", ":2: integer out of range"),
])
def test_the_policy_command_names_the_line_without_a_traceback(tmp_path: Path, content: bytes, expect: str) -> None:
    path = tmp_path / "p.yaml"
    path.write_bytes(content)
    res = runner.invoke(app, ["policy", str(path)])
    assert res.exit_code == 2, res.exception  # _fail's exit, not an exception's 1
    assert res.stderr.startswith(f"error: {path}{expect}"), res.stderr[:300]
    assert "Traceback" not in res.output and len(res.stderr) < 2000
