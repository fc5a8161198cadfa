"""Every endpoint of the worker, with bad query values: each gets HTTP 400 with a JSON body that
names the parameter (never a 500, never a value silently dropped), and good values still work.

The worker app is the real one (``streams.worker.app.create_app``), served in-process by aiohttp's test
server: nothing connects to Kafka until the app is started, and the views only read its tables
and cores. The endpoints are enumerated from the app, and each view's declared parameters from
the view itself, so an endpoint or a parameter without a row in :data:`TABLE` fails the test."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from yarl import URL

from streams.budgets.ledger import BudgetLedger, BudgetSpec
from streams.common.config import StreamConfig
from streams.ingest.windows import NANO
from streams.reports.core import ReportSpec
from streams.worker.app import create_app
from streams.worker.state import WorkerState

T0 = 1_769_860_800  # 2026-01-31T12:00:00Z

# -- bad values by kind of parameter -----------------------------------------------------------
HUGE = "9" * 5000  # past Python's int-string limit
LONG = "x" * 3000  # longer request lines are refused by aiohttp itself (8190 bytes)
TIME_BAD = ["nan", "NaN", "-nan", "inf", "+inf", "-inf", "Infinity", "1e400", "-1e400", "1e300", "1e12", "-1",
            "4102444801", HUGE, "1_000", "0x10", " 12", "12 ", "\u0661\u0662", "yesterday", "2026-13-01",
            "2026-01-31T25:00:00Z", "9999-12-31T23:59:59Z", "0001-01-01T00:00:00+14:00", "1969-12-31T23:59:59Z",
            "\x00", "\x1b]0;x\x07", LONG]
TIME_GOOD = ["0", "4102444800", str(T0), f"{T0}.5", "1.7e9", "2026-01-31T12:00:00Z", "2026-01-31T13:00:00+01:00",
             "2026-01-31T12:00:00", "2026-01-31"]
NAME_BAD = ["\x00", "a\x1bb", "a\r\nb", "a\u202eb", "a\u200bb", "\ufeffa", "a\u2028b", "\ufffd", "x" * 257]
SERIES_BAD = [*NAME_BAD, "evil", "team", "team=", "=ads", "nope=ads", "team=ads|user=bob", "model=m|team=ads",
              "team=a|model=b|user=c", "org|team=ads", "team=a=b", "team=ads|model=a|b", LONG]


def choice_bad(*good: str) -> list[str]:
    return ["evil", good[0].upper(), f" {good[0]}", f"{good[0]} ", f"{good[0]}\x00", "nan", LONG]


# -- every endpoint: its parameters, each with good and bad values -----------------------------
# {path: {param: (good values, bad values)}}
TABLE: dict[str, dict[str, tuple[list[str], list[str]]]] = {
    "/dashboard": {"series": (["team=ads", "org"], SERIES_BAD)},
    "/healthz": {},
    "/assets/dashboard.js": {},
    "/assets/dashboard.css": {},
    "/assets/uplot.min.js": {},
    "/assets/uplot.min.css": {},
    "/assets/uplot.LICENSE": {},
    "/metrics": {},
    "/api/spend": {
        "group_by": (["team", "model", "provider", "user", "tool", "org", "team×model", "team*model"],
                     [*choice_bad("team"), "team x"]),
        "since": (TIME_GOOD, TIME_BAD),
        "until": (TIME_GOOD, TIME_BAD),
    },
    # since without until must be before now (until's default)
    "/api/mix": {"since": (TIME_GOOD[:1] + TIME_GOOD[2:], TIME_BAD), "until": (TIME_GOOD, TIME_BAD)},
    "/api/status": {},
    "/api/windows": {"series": (["team=ads", "team=ads|model=gpt-4o", "org", "provider=openai"], SERIES_BAD)},
    "/api/silences": {},
    "/api/alerts": {"state": (["firing", "acknowledged", "snoozed", "resolved", "open"],
                              [*choice_bad("firing"), "pending", "acked"])},
    "/api/sinks": {},
    "/api/budgets": {"budget": (["ads-daily"], NAME_BAD), "at": (TIME_GOOD, TIME_BAD)},
    "/api/report": {
        "period": (["day", "week", "daily", "weekly"], [*choice_bad("day"), "fortnight", "month"]),
        "report": (["daily:#ads"], NAME_BAD),
        "at": (TIME_GOOD, TIME_BAD),
        "tz": (["UTC", "Europe/Berlin", "America/Los_Angeles"],
               [*NAME_BAD, "Mars/Olympus", "../../etc/passwd", "/etc/passwd", "UTC ", "x" * 300, "."]),
        "team": (["ads"], [*NAME_BAD, "ads|model=gpt-4o", "a=b"]),
    },
    "/api/policy": {},
    "/api/digests": {},
    "/api/inbox": {},
    "/api/feedback": {"team": (["ads"], [*NAME_BAD, "ads|model=gpt-4o", "a=b"]), "at": (TIME_GOOD, TIME_BAD)},
    "/api/timeseries": {"by": (["team", "model", "provider", "tool"], [*choice_bad("team"), "user", "org"]),
                        "range": (["1h", "24h", "7d", "30d"], [*choice_bad("24h"), "2h", "1d"]),
                        "until": (TIME_GOOD, TIME_BAD)},
    "/api/burndown": {"budget": (["ads-daily"], NAME_BAD), "at": (TIME_GOOD, TIME_BAD)},
    "/api/inhouse": {"range": (["1h", "24h", "7d", "30d"], choice_bad("24h")), "until": (TIME_GOOD, TIME_BAD)},
    "/api/top_users": {"range": (["1h", "30d"], choice_bad("24h")), "until": (TIME_GOOD, TIME_BAD),
                       "limit": (["1", "10", "100"], ["0", "101", "-1", "1.5", "1e2", "x", HUGE])},
}

# What each endpoint needs beside the parameter under test (``/api/report`` takes a period or
# a report, and a report of the policy takes nothing else but ``at``).
BASE: dict[str, dict[str, str]] = {"/api/report": {"period": "day"}}
WITH: dict[tuple[str, str], dict[str, str]] = {("/api/report", "report"): {}, ("/api/report", "period"): {}}
# good values that are still refused for a reason of their own (the request, not the value)
NOT_FOUND = {("/api/windows", "series")}  # no judged windows on this worker: 404


def _config(tmp_path: Path) -> StreamConfig:
    budget = BudgetSpec(name="ads-daily", scope=(("team", "ads"),), unit="usd", limit=10 * NANO, period="day")
    report = ReportSpec(name="daily:#ads", channel="#ads", period="day", team="ads")
    return StreamConfig(bootstrap="127.0.0.1:1", usage_partitions=1, data_dir=str(tmp_path),
                        budgets=(budget,), reports=(report,))


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[tuple[Any, TestClient]]:
    cfg = _config(tmp_path)
    app = create_app(cfg)
    state: WorkerState = app.tokenpulse
    # a budget ledger on the one judge partition, and one closed window of spend
    state.judging.ledgers[0] = BudgetLedger(cfg.window_seconds, list(cfg.budgets))
    state.tables.spend.data[f"team=ads|{T0}"] = {"s": [3 * NANO, 10, 20, 0, 0, 1]}
    async with TestClient(TestServer(app.web.web_app)) as client:
        yield app, client


async def _get(client: TestClient, path: str, params: dict[str, str] | list[tuple[str, str]]) -> tuple[int, Any]:
    resp = await client.get(path, params=params)
    body = await resp.json() if resp.content_type == "application/json" else await resp.text()
    return resp.status, body


def _cases() -> list[tuple[str, str]]:
    return [(path, param) for path, params in TABLE.items() for param in params]


async def test_every_endpoint_and_every_parameter_has_a_row(api: tuple[Any, TestClient]) -> None:
    app, _ = api
    views = app.web.views
    assert set(views) == set(TABLE), "an endpoint without a row in TABLE (or a row without an endpoint)"
    for path, view in views.items():
        query = getattr(view.get, "query", None)
        assert query is not None, f"{path}: declare its parameters with streams.worker.query.takes"
        assert set(query.params) == set(TABLE[path]), f"{path}: parameters without a row in TABLE"


@pytest.mark.parametrize(("path", "param"), _cases())
async def test_bad_values_get_400_naming_the_parameter(api: tuple[Any, TestClient], path: str, param: str) -> None:
    _, client = api
    _good, bad = TABLE[path][param]
    assert bad
    wrong = []
    for value in bad:
        params = {**WITH.get((path, param), BASE.get(path, {})), param: value}
        status, body = await _get(client, path, params)
        if not (status == 400 and isinstance(body, dict) and body.get("param") == param
                and body["error"].startswith(f"{param}: ") and len(body["error"]) < 400):
            wrong.append((value[:40], status, str(body)[:200]))
    assert not wrong, wrong


@pytest.mark.parametrize(("path", "param"), _cases())
async def test_good_values_still_work(api: tuple[Any, TestClient], path: str, param: str) -> None:
    _, client = api
    good, _ = TABLE[path][param]
    for value in good:
        params = {**WITH.get((path, param), BASE.get(path, {})), param: value}
        status, body = await _get(client, path, params)
        expect = 404 if (path, param) in NOT_FOUND else 200
        assert status == expect, (value, body)
        if expect == 404:
            assert body["param"] == param


@pytest.mark.parametrize("path", list(TABLE))
async def test_unknown_and_repeated_parameters_get_400(api: tuple[Any, TestClient], path: str) -> None:
    _, client = api
    status, body = await _get(client, path, {**BASE.get(path, {}), "sinse": "0"})
    assert (status, body["param"]) == (400, "sinse"), body
    assert "unknown parameter" in body["error"]
    status, body = await _get(client, path, {**BASE.get(path, {}), "\x1b[2J" * 100: "0"})
    assert status == 400 and "\x1b" not in body["error"] and len(body["error"]) < 400, body
    # absent and empty are the same
    status, _ = await _get(client, path, {**BASE.get(path, {}), **{p: "" for p in TABLE[path] if p != "period"}})
    assert status == 200
    for param in TABLE[path]:
        good = TABLE[path][param][0][0]
        params = [*((k, v) for k, v in BASE.get(path, {}).items() if k != param), (param, good), (param, good)]
        status, body = await _get(client, path, params)
        assert (status, body["param"]) == (400, param), body
        assert body["error"] == f"{param}: given more than once"


async def test_the_values_of_the_issue(api: tuple[Any, TestClient]) -> None:
    """Issue 10: 500s with a traceback, a dropped ``since=inf`` and an ignored ``state=evil``."""
    _, client = api
    for path, params, param in [
        ("/api/budgets", {"at": "nan"}, "at"),
        ("/api/mix", {"since": "nan"}, "since"),
        ("/api/mix", {"since": "0", "until": "1e12"}, "until"),
        ("/api/report", {"period": "day", "at": "1e300"}, "at"),
        ("/api/spend", {"since": "inf"}, "since"),
        ("/api/alerts", {"state": "evil"}, "state"),
        ("/api/spend", {"group_by": "nope"}, "group_by"),
        ("/api/report", {"period": "fortnight"}, "period"),
    ]:
        status, body = await _get(client, path, params)
        assert (status, body["param"]) == (400, param), (path, params, body)


async def test_a_query_that_is_not_utf8_is_named(api: tuple[Any, TestClient]) -> None:
    _, client = api
    for url, param in [("/api/budgets?budget=%FF", "budget"), ("/api/windows?series=team%3D%ED%A0%80", "series"),
                       ("/api/spend?since=%FF", "since"), ("/api/alerts?state=%C0%AE", "state")]:
        resp = await client.get(URL(url, encoded=True))
        body = await resp.json()
        assert (resp.status, body["param"]) == (400, param), (url, body)


async def test_values_that_contradict_each_other(api: tuple[Any, TestClient]) -> None:
    _, client = api
    for path, params, param in [
        ("/api/spend", {"since": str(T0), "until": str(T0)}, "since"),
        ("/api/mix", {"since": str(T0 + 60), "until": str(T0)}, "since"),
        ("/api/mix", {"since": "4102444800"}, "since"),  # until defaults to now
        ("/api/report", {}, "period"),
        ("/api/report", {"report": "daily:#ads", "period": "day"}, "period"),
        ("/api/report", {"report": "daily:#ads", "tz": "UTC"}, "tz"),
        ("/api/report", {"report": "daily:#ads", "team": "ads"}, "team"),
    ]:
        status, body = await _get(client, path, params)
        assert (status, body["param"]) == (400, param), (path, params, body)


async def test_good_values_select_what_they_say(api: tuple[Any, TestClient]) -> None:
    _, client = api
    status, body = await _get(client, "/api/spend", {"since": "2026-01-31T12:00:00Z", "until": str(T0 + 60)})
    assert status == 200 and body["total"]["cost_usd"] == 3.0 and body["since"] == T0
    status, body = await _get(client, "/api/spend", {"since": str(T0 + 60)})
    assert status == 200 and body["total"]["events"] == 0
    status, body = await _get(client, "/api/spend", {"group_by": "team*model"})
    assert status == 200 and body["group_by"] == "team×model"
    status, body = await _get(client, "/api/budgets", {"budget": "ads-daily", "at": "2026-01-31T12:00:00Z"})
    assert status == 200 and [b["period_id"] for b in body["budgets"]] == ["2026-01-31"]
    status, body = await _get(client, "/api/report", {"period": "daily", "at": "2026-02-01T00:00:00Z", "tz": "UTC"})
    assert status == 200 and body["report"]["period"] == "day"
    status, body = await _get(client, "/api/report", {"report": "daily:#ads", "at": "2026-02-01T00:00:00Z"})
    assert status == 200 and body["report"]["name"] == "daily:#ads"


async def test_lookups_that_find_nothing_are_404_naming_the_parameter(api: tuple[Any, TestClient]) -> None:
    _, client = api
    for path, params, param in [
        ("/api/budgets", {"budget": "nope"}, "budget"),
        ("/api/report", {"report": "nope"}, "report"),
        ("/api/windows", {"series": "team=nope"}, "series"),
    ]:
        status, body = await _get(client, path, params)
        assert (status, body["param"]) == (404, param), (path, params, body)
