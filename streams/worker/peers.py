"""Which worker holds which partition, and asking the others: one answer from any worker.

Each worker holds the judge partitions the consumer group gave it (the ``windows`` topic's
partitions, and the same partitions of every table's changelog, which Faust co-assigns), and
its views read only those. :class:`Peers` lets the view asked answer for the whole deployment:

- **membership** comes from the group itself. Every worker puts its API address (Faust's
  ``canonical_url``: ``TOKENPULSE_ADVERTISED_URL``, default from the web host and port, see
  :func:`advertised_url`) into its member metadata; the group leader's assignment hands every
  member the map of address -> partitions (Faust's ``external_topics_metadata``). No extra
  topic, no heartbeats of our own: the map changes exactly when the partitions move.
- **fan-out**: :meth:`Peers.ask` sends the same request, in parallel, once to each peer that
  holds a partition this worker lacks, with a short timeout (``TOKENPULSE_PEER_TIMEOUT_SECONDS``).
  A forwarded request carries :data:`FORWARDED` and is answered from the peer's own partitions
  only (it never fans out again); the peer says which partitions it answered for in
  :data:`PARTITIONS_HEADER`, so coverage is what was answered, not what a possibly stale map
  promised.
- **what is missing**: a partition nobody answered for (a peer that timed out, refused, or a
  partition the map gives to nobody during a rebalance) is named in :class:`Fanned` ``missing``;
  the views say ``complete: false``. Nothing waits longer than the timeout.

Secrets: the API token (if any) is sent to the peers only, as ``Authorization: Bearer``; the
asker's own credentials (its cookie, its header) are never passed on, and a peer's error is
reported by status or kind (``timeout``, ``HTTP 401``), never by its body.

The merge of the answers is per endpoint, in one table: :mod:`streams.worker.merge`.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson

__all__ = ["FORWARDED", "PARTITIONS_HEADER", "Fanned", "Peers", "advertised_url", "format_partitions",
           "parse_partitions"]

log = logging.getLogger("tokenpulse.peers")

#: Header of a request one worker forwards to another: answer from your own partitions, do not fan out.
FORWARDED = "X-Tokenpulse-Forwarded"
#: Header of a forwarded answer: the judge partitions it was answered from (``0,2``; empty: none).
PARTITIONS_HEADER = "X-Tokenpulse-Partitions"

# A peer's answer larger than this is refused (a list of every user's spend is far smaller).
MAX_BODY = 64 * 1024 * 1024


def advertised_url(web_host: str, web_port: int, given: str | None = None) -> str:
    """Where peers reach this worker's API: ``given`` (``TOKENPULSE_ADVERTISED_URL``) as it is,
    else ``http://<web_host>:<web_port>``, with this machine's host name for a wildcard bind
    (``0.0.0.0``, ``::``), which no peer can connect to.

    >>> advertised_url("127.0.0.1", 6066)
    'http://127.0.0.1:6066'
    >>> advertised_url("0.0.0.0", 6066, "http://worker-2.internal:6066/")
    'http://worker-2.internal:6066'
    >>> advertised_url("0.0.0.0", 6066) == f"http://{socket.gethostname()}:6066"
    True
    """
    if given:
        return given.rstrip("/")
    host = web_host.strip().strip("[]")
    if host in ("", "0.0.0.0", "::"):
        host = socket.gethostname()
    elif ":" in host:  # an IPv6 literal
        host = f"[{host}]"
    return f"http://{host}:{web_port}"


def format_partitions(parts: Iterable[int]) -> str:
    """:data:`PARTITIONS_HEADER`'s value.

    >>> format_partitions({2, 0})
    '0,2'
    """
    return ",".join(str(p) for p in sorted(parts))


def parse_partitions(text: str | None, n: int) -> set[int] | None:
    """The partitions in a :data:`PARTITIONS_HEADER` value, or None when it is absent or not
    partitions of ``n`` (a peer of another deployment, an old version).

    >>> parse_partitions("0,2", 4), parse_partitions("", 4), parse_partitions("7", 4), parse_partitions(None, 4)
    ({0, 2}, set(), None, None)
    """
    if text is None:
        return None
    out: set[int] = set()
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        if not item.isascii() or not item.isdigit() or int(item) >= n:
            return None
        out.add(int(item))
    return out


@dataclass
class Fanned:
    """What a fan-out got: the answers (the local one first), the partitions they cover, and
    what is missing: ``[{"partitions": [...], "peer": url or None, "reason": ...}]``."""

    bodies: list[dict[str, Any]] = field(default_factory=list)
    partitions: set[int] = field(default_factory=set)
    missing: list[dict[str, Any]] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not self.missing


@dataclass
class _Reply:
    url: str
    expected: set[int]
    status: int | None = None
    body: Any = None
    partitions: set[int] | None = None
    error: str | None = None


class Peers:
    """This worker's view of the group (who holds which judge partition) and its HTTP client
    to the others. One per worker (``WorkerState.peers``); the views use it through
    :func:`streams.worker.web.anyworker`.

    ``owned()`` is this worker's partitions (None: no assignment yet), ``layout()`` the group's
    map of API address -> partitions (Faust's assignor; empty before the first assignment);
    both are read at every request, so a rebalance is seen at once. ``session`` is injected by
    tests; the worker makes its own on first use and closes it on stop."""

    def __init__(self, url: str, n_partitions: int, owned: Callable[[], set[int] | None],
                 layout: Callable[[], Mapping[str, Iterable[int]]], *, timeout: float = 2.0,
                 api_token: str | None = None, session: aiohttp.ClientSession | None = None) -> None:
        self.url = url.rstrip("/")
        self.n = n_partitions
        self.owned = owned
        self.layout = layout
        self.timeout = timeout
        self._token = api_token  # sent to peers only; never in a repr, a log line or an answer
        self._session = session
        self._own_session = session is None

    def __repr__(self) -> str:
        return f"Peers(url={self.url!r}, n={self.n}, timeout={self.timeout})"

    def held(self) -> set[int]:
        """This worker's judge partitions (none before its first assignment)."""
        return set(self.owned() or ())

    def others(self) -> dict[str, set[int]]:
        """Each other worker's address and partitions, as the group's last assignment says."""
        out: dict[str, set[int]] = {}
        try:
            got = self.layout()
        except Exception:  # noqa: BLE001 - no assignment yet: nobody known
            return out
        for url, parts in got.items():
            u = str(url).rstrip("/")
            if u != self.url:
                out.setdefault(u, set()).update(int(p) for p in parts)
        return out

    async def ask(self, path_qs: str, local: dict[str, Any] | None, *, method: str = "GET", body: bytes | None = None,
                  headers: Mapping[str, str] | None = None) -> Fanned:
        """Send ``path_qs`` to every peer holding a partition this worker lacks, in parallel,
        and gather their JSON answers with ``local`` (this worker's own, first; None: it had
        nothing, e.g. its 404). A peer's 404 is an answer with nothing in it; a timeout, a
        refusal or a bad body leaves its partitions in ``missing``."""
        mine = self.held()
        out = Fanned(bodies=[] if local is None else [local], partitions=set(mine))
        need = set(range(self.n)) - mine
        peers = {u: p for u, p in self.others().items() if p & need}
        if need and peers:
            replies = await asyncio.gather(*(self._one(u, p, path_qs, method, body, headers)
                                             for u, p in sorted(peers.items())))
            for r in replies:
                if r.error is not None:
                    continue
                got = r.expected if r.partitions is None else r.partitions
                fresh = got - out.partitions  # a partition answered twice (a move in flight) counts once
                if r.status == 200 and isinstance(r.body, dict) and (fresh or not got):
                    out.bodies.append(r.body)
                out.partitions |= got
            for r in replies:
                lost = (r.expected & need) - out.partitions
                if r.error is not None and lost:
                    out.missing.append({"partitions": sorted(lost), "peer": r.url, "reason": r.error})
        nobody = set(range(self.n)) - out.partitions - {p for m in out.missing for p in m["partitions"]}
        if nobody:
            out.missing.append({"partitions": sorted(nobody), "peer": None,
                                "reason": "no worker holds it (no assignment yet, or a rebalance in progress)"})
        return out

    async def _one(self, url: str, expected: set[int], path_qs: str, method: str, body: bytes | None,
                   headers: Mapping[str, str] | None) -> _Reply:
        r = _Reply(url, expected)
        send = {FORWARDED: "1", "Accept": "application/json", **(headers or {})}
        if self._token:
            send["Authorization"] = f"Bearer {self._token}"
        try:
            async with self.session().request(method, url + path_qs, data=body, headers=send,
                                              timeout=aiohttp.ClientTimeout(total=self.timeout),
                                              allow_redirects=False) as resp:
                r.status = resp.status
                r.partitions = parse_partitions(resp.headers.get(PARTITIONS_HEADER), self.n)
                if resp.status == 404:
                    r.body = None  # it holds nothing of what was asked: an answer all the same
                elif resp.status != 200:
                    r.error = f"HTTP {resp.status}"
                else:
                    raw = await resp.content.read(MAX_BODY + 1)
                    if len(raw) > MAX_BODY:
                        r.error = "answer too large"
                    else:
                        r.body = orjson.loads(raw) if raw else None
                        if r.body is not None and not isinstance(r.body, dict):
                            r.error = "answer is not a JSON object"
        except TimeoutError:
            r.error = f"no answer within {self.timeout:g} s"
        except orjson.JSONDecodeError:
            r.error = "answer is not JSON"
        except aiohttp.ClientError as exc:
            r.error = type(exc).__name__  # the kind only: a message may quote a header
        if r.error is not None:
            log.warning("peer %s did not answer %s: %s", url, path_qs.partition("?")[0], r.error)
        return r

    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
            self._own_session = True
        return self._session

    async def close(self) -> None:
        if self._own_session and self._session is not None and not self._session.closed:
            await self._session.close()


def group_layout(app: Any, topic: str) -> Callable[[], dict[str, list[int]]]:
    """The group's map of API address -> partitions of ``topic`` (the ``windows`` topic), from
    the assignment Faust's leader handed every member (each member's ``canonical_url``)."""

    def layout() -> dict[str, list[int]]:
        got = app.assignor.external_topics_metadata() or {}
        return {str(url): list(tps.get(topic, ())) for url, tps in got.items()}

    return layout

