"""Access control of the worker's web server (issue 13, item 4), on the real app served in-process
by aiohttp's test server: with ``TOKENPULSE_API_TOKEN`` every path but ``/healthz``, the login
form and the static assets answers 401 without the bearer token or the login cookie; the
metrics token opens ``/metrics`` only; every answer carries the CSP, frame and nosniff headers;
a non-loopback host without a token does not start; no token ever reaches a log or a body."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from streams.common.config import StreamConfig
from streams.worker.access import COOKIE, SECURITY_HEADERS, Access
from streams.worker.app import create_app
from tokenpulse.settings import SettingsError, load_settings

TOKEN = "s3cret-api-token-0123456789abcdef"
METRICS = "metrics-only-token-0123456789abcd"
GUARDED = ["/dashboard", "/api/spend", "/api/alerts", "/api/budgets", "/api/status", "/metrics"]


async def _client(tmp_path: Path, **cfg: Any) -> TestClient:
    app = create_app(StreamConfig(bootstrap="127.0.0.1:1", usage_partitions=1, data_dir=str(tmp_path), **cfg))
    client = TestClient(TestServer(app.web.web_app))
    await client.start_server()
    return client


@pytest.fixture
async def guarded(tmp_path: Path) -> AsyncIterator[TestClient]:
    client = await _client(tmp_path, api_token=TOKEN, metrics_token=METRICS)
    yield client
    await client.close()


@pytest.fixture
async def open_api(tmp_path: Path) -> AsyncIterator[TestClient]:
    client = await _client(tmp_path)
    yield client
    await client.close()


async def test_without_the_token_every_guarded_path_is_401(guarded: TestClient) -> None:
    for path in GUARDED:
        for headers in ({}, {"Authorization": "Bearer wrong-token-0123456789"}, {"Authorization": TOKEN},
                        {"Authorization": f"Basic {TOKEN}"}, {"Cookie": f"{COOKIE}={TOKEN}"}):
            resp = await guarded.get(path, headers={"Accept": "application/json", **headers})
            assert resp.status == 401, (path, headers)
            assert resp.headers["WWW-Authenticate"].startswith("Bearer")
            body = await resp.text()
            assert TOKEN not in body and "TOKENPULSE_API_TOKEN" in body
    # Faust's own pages (its router, its index) are behind the same door
    assert (await guarded.get("/")).status == 401
    assert (await guarded.get("/router/")).status == 401


async def test_the_bearer_token_opens_everything(guarded: TestClient) -> None:
    for path in GUARDED:
        resp = await guarded.get(path, headers={"Authorization": f"Bearer {TOKEN}"})
        assert resp.status == 200, path


async def test_the_metrics_token_opens_metrics_only(guarded: TestClient) -> None:
    auth = {"Authorization": f"Bearer {METRICS}"}
    assert (await guarded.get("/metrics", headers=auth)).status == 200
    for path in GUARDED[:-1]:
        assert (await guarded.get(path, headers=auth)).status == 401, path
    # nor does it log in
    resp = await guarded.post("/login", data={"token": METRICS}, allow_redirects=False)
    assert resp.status == 401


async def test_healthz_and_the_assets_stay_open(guarded: TestClient) -> None:
    resp = await guarded.get("/healthz")
    assert resp.status == 200 and (await resp.json())["status"] == "ok"
    resp = await guarded.get("/assets/dashboard.js")
    assert resp.status == 200 and resp.content_type == "text/javascript"


async def test_a_browser_gets_the_login_form_and_a_strict_httponly_cookie(guarded: TestClient) -> None:
    resp = await guarded.get("/dashboard", headers={"Accept": "text/html"})
    assert resp.status == 401 and 'action="/login"' in await resp.text()
    resp = await guarded.post("/login", data={"token": "nope"}, allow_redirects=False)
    assert resp.status == 401 and "not the API token" in await resp.text()
    assert COOKIE not in resp.cookies

    resp = await guarded.post("/login", data={"token": TOKEN}, allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] == "/dashboard"
    cookie = resp.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
    assert TOKEN not in cookie  # derived from the token, not the token
    value = resp.cookies[COOKIE].value
    assert value == Access(api_token=TOKEN).session_value()

    for path in GUARDED[:-1]:
        resp = await guarded.get(path, headers={"Cookie": f"{COOKIE}={value}"})
        assert resp.status == 200, path
    # the session is for people: a scraper brings a bearer token
    assert (await guarded.get("/metrics", headers={"Cookie": f"{COOKIE}={value}"})).status == 401
    resp = await guarded.get("/logout", allow_redirects=False)
    assert resp.status == 303 and 'tokenpulse_session=""' in resp.headers["Set-Cookie"]


async def test_every_answer_carries_the_security_headers(guarded: TestClient, open_api: TestClient) -> None:
    for client in (guarded, open_api):
        for path in ["/dashboard", "/healthz", "/api/spend", "/login", "/nope", "/assets/dashboard.css"]:
            resp = await client.get(path, allow_redirects=False)
            for name, value in SECURITY_HEADERS.items():
                assert resp.headers.get(name) == value, (path, name)
    csp = SECURITY_HEADERS["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe" not in csp


async def test_without_a_token_loopback_is_open(open_api: TestClient) -> None:
    for path in GUARDED:
        assert (await open_api.get(path)).status == 200, path
    resp = await open_api.get("/login", allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] == "/dashboard"


def test_a_non_loopback_host_without_a_token_does_not_start(tmp_path: Path) -> None:
    base = dict(bootstrap="127.0.0.1:1", usage_partitions=1, data_dir=str(tmp_path), web_host="0.0.0.0")
    with pytest.raises(ValueError, match="TOKENPULSE_API_TOKEN"):
        create_app(StreamConfig(**base))  # type: ignore[arg-type]
    create_app(StreamConfig(**base, api_token=TOKEN))  # type: ignore[arg-type]
    create_app(StreamConfig(**base, allow_unauthenticated=True))  # type: ignore[arg-type]


def test_settings_name_the_setting_and_never_echo_a_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOKENPULSE_WEB_HOST", "0.0.0.0")
    s = load_settings()
    assert "TOKENPULSE_API_TOKEN" in (s.exposure_error() or "")
    monkeypatch.setenv("TOKENPULSE_ALLOW_UNAUTHENTICATED", "1")
    assert load_settings().exposure_error() is None
    monkeypatch.setenv("TOKENPULSE_API_TOKEN", "short")
    with pytest.raises(SettingsError) as err:
        load_settings()
    assert "TOKENPULSE_API_TOKEN" in str(err.value) and "short" not in str(err.value)
    monkeypatch.setenv("TOKENPULSE_API_TOKEN", TOKEN)
    s = load_settings()
    assert TOKEN not in repr(s) and TOKEN not in str(s.model_dump())
    from tokenpulse.policy import Policy
    from tokenpulse.runtime import stream_config

    cfg = stream_config(s, Policy(), "127.0.0.1:1")
    assert cfg.api_token == TOKEN and TOKEN not in repr(cfg)
    monkeypatch.delenv("TOKENPULSE_API_TOKEN")
    monkeypatch.setenv("TOKENPULSE_METRICS_TOKEN", METRICS)
    with pytest.raises(SettingsError, match="TOKENPULSE_API_TOKEN"):
        load_settings()


async def test_no_token_reaches_a_log(guarded: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    await guarded.get("/api/spend", headers={"Authorization": "Bearer wrong-token-0123456789"})
    await guarded.get("/api/spend", headers={"Authorization": f"Bearer {TOKEN}"})
    await guarded.post("/login", data={"token": TOKEN}, allow_redirects=False)
    assert TOKEN not in caplog.text and "wrong-token" not in caplog.text
    metrics = await (await guarded.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})).text()
    assert 'tokenpulse_http_unauthorized_total{path="api"} 1' in metrics
