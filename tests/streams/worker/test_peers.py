"""One answer from any worker (issue 15 item 4), in process: two real worker apps
(``create_app``) served by aiohttp on loopback, each holding one of two judge partitions, whose
:class:`streams.worker.peers.Peers` see each other through a made-up group layout (the one Faust's
assignment would give). Each answers ``/api/spend`` for both; a silent peer costs the timeout and
is named in ``missing``; the API token goes to the peer and nowhere else; a forwarded request is
answered locally; a PagerDuty webhook that reaches the worker without the alert is handed to the
one holding it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from streams.common.config import StreamConfig
from streams.common.metrics import Metrics
from streams.ingest.windows import NANO
from streams.worker.app import create_app
from streams.worker.pagerduty_webhook import PATH as PD_PATH
from streams.worker.pagerduty_webhook import PageAnswer, PagerDutyVerifier, forward_to_peers, register_pagerduty_webhook
from streams.worker.peers import FORWARDED, PARTITIONS_HEADER, Peers
from tests.streams.worker.test_pagerduty_webhook import ALERT_KEY, SECRET, webhook

T0 = 1_769_860_800
TOKEN = "api-token-of-the-deployment-0123456789"


class Pair:
    """Two workers' apps on loopback, each with its own spend; ``layout`` is the group's map."""

    def __init__(self) -> None:
        self.layout: dict[str, list[int]] = {}
        self.servers: list[TestServer] = []
        self.states: list[Any] = []
        self.seen: list[dict[str, str]] = []  # headers of the requests each worker got


def _noting(seen: list[dict[str, str]]) -> Any:
    @web.middleware
    async def note(request: web.Request, handler: Any) -> web.StreamResponse:
        seen.append(dict(request.headers))
        return await handler(request)

    return note


@pytest.fixture
async def pair(tmp_path: Path) -> AsyncIterator[Pair]:
    p = Pair()
    for i in range(2):
        cfg = StreamConfig(bootstrap="127.0.0.1:1", usage_partitions=2, data_dir=str(tmp_path / str(i)),
                           api_token=TOKEN, peer_timeout=0.5)
        app = create_app(cfg)
        st = app.tokenpulse
        p.states.append(st)
        app.web.web_app.middlewares.insert(0, _noting(p.seen))
        server = TestServer(app.web.web_app, host="127.0.0.1")
        await server.start_server()
        p.servers.append(server)
    for i, (st, server) in enumerate(zip(p.states, p.servers, strict=True)):
        url = str(server.make_url("")).rstrip("/")
        p.layout[url] = [i]
        st.peers = Peers(url, 2, owned=lambda i=i: {i}, layout=lambda: p.layout, timeout=0.5, api_token=TOKEN)
    # worker 0 holds the default org's ads team, worker 1 acme's
    p.states[0].tables.spend.data[f"team=ads|{T0}"] = {"s": [3 * NANO, 10, 20, 0, 0, 1]}
    p.states[1].tables.spend.data[f"team=ads|{T0}"] = {"s": [NANO // 3, 1, 2, 0, 0, 1]}
    p.states[1].tables.spend.data[f"org=acme|team=ads|{T0}"] = {"s": [2 * NANO, 5, 5, 0, 0, 2]}
    try:
        yield p
    finally:
        for st, server in zip(p.states, p.servers, strict=True):
            await st.peers.close()
            await server.close()


async def _get(server: TestServer, path: str, **headers: str) -> tuple[int, Any, Any]:
    # a session of its own: a TestClient would close the server when done
    async with aiohttp.ClientSession() as session, session.get(
            str(server.make_url("")).rstrip("/") + path, headers={"Authorization": f"Bearer {TOKEN}", **headers}) as resp:
        return resp.status, await resp.json(), resp.headers


async def test_each_worker_answers_for_both_partitions(pair: Pair) -> None:
    answers = [await _get(s, "/api/spend?group_by=team") for s in pair.servers]
    for status, body, _ in answers:
        assert status == 200 and body["complete"] is True and body["missing"] == []
        assert [(r["team"], r.get("org"), r["cost_usd"], r["events"]) for r in body["rows"]] == [
            ("ads", None, 3.333333333, 2), ("ads", "acme", 2.0, 2)]
        assert body["total"]["cost_usd"] == 5.333333333 and body["total"]["input_tokens"] == 16
    assert answers[0][1] == answers[1][1]
    # the peer got the token and the forwarded mark; nothing of the token in any answer
    forwarded = [h for h in pair.seen if h.get(FORWARDED)]
    assert len(forwarded) == 2 and all(h["Authorization"] == f"Bearer {TOKEN}" for h in forwarded)
    assert all(TOKEN not in orjson.dumps(b).decode() for _, b, _ in answers)


async def test_a_forwarded_request_is_answered_from_the_own_partitions_only(pair: Pair) -> None:
    status, body, headers = await _get(pair.servers[1], "/api/spend?group_by=team", **{FORWARDED: "1"})
    assert status == 200 and "complete" not in body and headers[PARTITIONS_HEADER] == "1"
    assert sum(r["events"] for r in body["rows"]) == 3
    assert not [h for h in pair.seen if h.get(FORWARDED) and h is not pair.seen[0]]  # it asked no one


async def test_a_silent_peer_costs_the_timeout_and_is_named(pair: Pair) -> None:
    stalled = asyncio.Event()

    async def stall(request: web.Request) -> web.Response:
        await stalled.wait()
        return web.Response()

    silent = web.Application()
    silent.router.add_get("/api/spend", stall)
    server = TestServer(silent, host="127.0.0.1")
    await server.start_server()
    try:
        url = str(server.make_url("")).rstrip("/")
        pair.layout = {str(pair.servers[0].make_url("")).rstrip("/"): [0], url: [1]}
        start = time.monotonic()
        status, body, _ = await _get(pair.servers[0], "/api/spend?group_by=team")
        took = time.monotonic() - start
        assert status == 200 and body["complete"] is False
        assert body["missing"] == [{"partitions": [1], "peer": url, "reason": "no answer within 0.5 s"}]
        assert [r["cost_usd"] for r in body["rows"]] == [3.0]  # what this worker holds, all the same
        assert took < 2.0
        # a partition the group gives to no one (a rebalance) is named too, without a peer
        pair.layout = {str(pair.servers[0].make_url("")).rstrip("/"): [0]}
        _, body, _ = await _get(pair.servers[0], "/api/spend")
        assert body["complete"] is False and [(m["partitions"], m["peer"]) for m in body["missing"]] == [([1], None)]
    finally:
        stalled.set()
        await server.close()


async def test_a_peer_refusing_the_token_is_named_without_its_body(pair: Pair) -> None:
    pair.states[0].peers._token = "a-wrong-token-of-someone-else-000"
    _, body, _ = await _get(pair.servers[0], "/api/spend")
    assert body["complete"] is False and body["missing"][0]["reason"] == "HTTP 401"
    assert "unauthorized" not in orjson.dumps(body).decode()


async def test_bad_parameters_are_refused_before_any_peer_is_asked(pair: Pair) -> None:
    status, body, _ = await _get(pair.servers[0], "/api/spend?group_by=nope")
    assert status == 400 and body["param"] == "group_by"
    assert not [h for h in pair.seen if h.get(FORWARDED)]


async def test_a_series_held_by_the_peer_is_found_there(pair: Pair) -> None:
    pair.states[1].judging.judges[1] = type("J", (), {"recent": {"org=acme|team=ads": [{"w": T0}]},
                                                     "settle": lambda self, series=None: None})()
    status, body, _ = await _get(pair.servers[0], "/api/windows?series=org%3Dacme%7Cteam%3Dads")
    assert status == 200 and body["series"] == {"org=acme|team=ads": [{"w": T0}]} and body["complete"]
    status, body, _ = await _get(pair.servers[0], "/api/windows?series=team%3Dnobody")
    assert status == 404 and body["complete"] is True  # nobody has it, and everybody was asked


async def test_a_pagerduty_webhook_for_the_peers_alert_is_handed_to_it() -> None:
    """Worker A does not hold the alert, B does: a webhook to A is taken by B (outcome
    ``forwarded`` on A), a page of another tool is ``unknown_alert`` on both, and with B silent A
    answers 503 so that PagerDuty delivers it again."""
    verifier = PagerDutyVerifier(SECRET)
    took: list[PageAnswer] = []
    metrics = [Metrics(), Metrics()]
    apps = [web.Application(), web.Application()]
    register_pagerduty_webhook(apps[1], verifier, lambda a: took.append(a) or a.incident_key == ALERT_KEY,
                               metrics[1])
    server_b = TestServer(apps[1], host="127.0.0.1")
    await server_b.start_server()
    url_b = str(server_b.make_url("")).rstrip("/")
    layout = {url_b: [1]}
    # a generous timeout: the silent peer below is a closed port (refused at once), and a loaded
    # machine once took over 0.5 s to forward to the live one (503 where 200 was due)
    peers = Peers("http://a.invalid:1", 2, owned=lambda: {0}, layout=lambda: layout, timeout=10.0)

    register_pagerduty_webhook(apps[0], verifier, lambda a: False, metrics[0], forward=forward_to_peers(lambda: peers))
    try:
        async with TestClient(TestServer(apps[0])) as client:
            async def post(body: bytes) -> int:
                resp = await client.post(PD_PATH, data=body, headers={"X-PagerDuty-Signature": verifier.signature(body)})
                return resp.status

            assert await post(webhook()) == 200
            assert [a.incident_key for a in took] == [ALERT_KEY]
            assert await post(webhook(key="another-tools-page")) == 200
            text = [m.render({}, {}) for m in metrics]
            assert 'outcome="forwarded"' in text[0] and 'outcome="unknown_alert"' in text[0]
            assert 'outcome="accepted"' in text[1] and 'outcome="unknown_alert"' in text[1]
            await server_b.close()
            assert await post(webhook()) == 503
            assert 'outcome="peer_unreachable"' in metrics[0].render({}, {})
    finally:
        await peers.close()
        await server_b.close()


@pytest.mark.parametrize("bad", ["worker-2:6066", "ftp://worker-2:6066", "http://user:pw@worker-2:6066",
                                 "http://worker-2:6066/api", "http://worker-2:6066?x=1", "http://"])
def test_the_advertised_url_is_checked_at_start(monkeypatch: pytest.MonkeyPatch, bad: str) -> None:
    from tokenpulse.policy import Policy
    from tokenpulse.runtime import stream_config
    from tokenpulse.settings import SettingsError, load_settings

    monkeypatch.setenv("TOKENPULSE_ADVERTISED_URL", bad)
    with pytest.raises(SettingsError, match="TOKENPULSE_ADVERTISED_URL"):
        load_settings()
    monkeypatch.setenv("TOKENPULSE_ADVERTISED_URL", "http://worker-2.internal:6066/")
    monkeypatch.setenv("TOKENPULSE_PEER_TIMEOUT_SECONDS", "0.75")
    cfg = stream_config(load_settings(), Policy(), "127.0.0.1:1")
    assert (cfg.advertised_url, cfg.peer_timeout) == ("http://worker-2.internal:6066", 0.75)
    app = create_app(cfg)
    assert str(app.conf.canonical_url) == "http://worker-2.internal:6066"  # what the group hands the peers
    assert app.tokenpulse.peers is not None and app.tokenpulse.peers.url == "http://worker-2.internal:6066"
