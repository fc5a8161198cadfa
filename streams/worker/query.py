"""Query parameters of the worker's JSON API, checked in one place.

Every view says what it takes with :func:`takes` and a :class:`Query` of typed parameters
(:class:`Time`, :class:`Choice`, :class:`Int`, :class:`Bool`, :class:`Name`, :class:`Series`,
:class:`Zone`). Whatever a view cannot use exactly as given is refused with HTTP 400 and
``{"error": "<param>: <why>", "param": "<param>"}``, never a 500 and never silently dropped:

- a value that does not parse, is not finite (``nan``, ``inf``), is out of range
  (``1e12`` seconds is the year 33658: milliseconds, most likely), or is not one of the choices;
- a parameter the view does not take (a typo such as ``?sinse=`` would otherwise be ignored);
- a parameter given twice (``?since=1&since=2``: which one?).

An empty value (``?since=``) is the same as an absent one, as an HTML form sends it. Values
shown in an error are cut to :data:`SHOWN` characters, with control characters escaped.

A lookup that finds nothing (``?budget=`` not in the policy) is the view's own 404, with the
same body: :class:`ParamError` with ``status=404``.
"""

from __future__ import annotations

import functools
import math
import re
import reprlib
import unicodedata
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from streams.common.dimensions import parse_series, series_key, shapes_text
from streams.common.text import UNSAFE_CATEGORIES

__all__ = [
    "SHOWN",
    "TIME_MAX",
    "TIME_MIN",
    "Bool",
    "Choice",
    "Int",
    "Name",
    "Param",
    "ParamError",
    "Query",
    "Series",
    "Time",
    "Zone",
    "shown",
    "takes",
]

#: Characters of a refused value quoted back in an error.
SHOWN = 80

# Event times are refused outside 2000..2100 (streams.ingest.normalize); a query may also start at
# the epoch (``since=0``: everything). Past 2100 is a unit mistake, not a time.
TIME_MIN = 0.0  # 1970-01-01T00:00:00Z
TIME_MAX = 4_102_444_800.0  # 2100-01-01T00:00:00Z

# Epoch seconds as written by people and programs: ASCII digits only (float() would also take
# "nan", "1_0", " 12 " and Arabic-Indic digits).
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)
_INT = re.compile(r"[+-]?\d{1,19}", re.ASCII)
_MAX_TEXT = 64  # longest time or number worth parsing

# The Unicode categories a name may never hold: the ingest's own rule (streams.common.text), so that
# every name the ingest accepts can be asked for, and nothing else can.
_BAD_CATEGORIES = UNSAFE_CATEGORIES


def shown(value: Any) -> str:
    """``value`` as quoted in an error: repr-escaped (no control character reaches a terminal
    or a log line) and cut to about :data:`SHOWN` characters, without ever building the repr
    of a whole large value.

    >>> shown("evil")
    "'evil'"
    >>> print(shown("a\\x1b]0;title\\x07"))
    'a\\x1b]0;title\\x07'
    >>> len(shown("x" * 10_000)) < SHOWN + 30, len(shown([["x" * 999] * 999] * 999)) < SHOWN + 30
    (True, True)
    """
    if isinstance(value, str):
        if len(value) > SHOWN:
            return f"{value[:SHOWN]!r}… ({len(value)} characters)"
        return repr(value)
    text = _REPR.repr(value)
    return text if len(text) <= SHOWN + 10 else f"{text[:SHOWN]}…"


_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = SHOWN
_REPR.maxlevel, _REPR.maxlist, _REPR.maxtuple, _REPR.maxdict, _REPR.maxset = 2, 4, 4, 4, 4
_REPR.maxlong = 40


class ParamError(ValueError):
    """A query parameter the view cannot use: the 400 (or, for a lookup that finds nothing,
    404) response names it. ``reason`` must not hold a whole value: quote it with :func:`shown`."""

    def __init__(self, param: str, reason: str, status: int = 400) -> None:
        super().__init__(f"{param}: {reason}")
        self.param = param
        self.reason = reason
        self.status = status

    def body(self) -> dict[str, Any]:
        return {"error": str(self), "param": self.param}


@dataclass(frozen=True)
class Param:
    """One query parameter: ``parse`` turns its text into the value the view gets, or raises
    ``ValueError`` saying why (the parameter's name is added by :class:`Query`). ``default``
    is what the view gets when it is absent or empty."""

    default: Any = None
    help: str = ""

    def parse(self, text: str) -> Any:  # pragma: no cover - every kind overrides it
        raise NotImplementedError


@dataclass(frozen=True)
class Time(Param):
    """RFC 3339 (``2026-01-31T12:00:00Z``; no zone: UTC) or epoch seconds, finite and in
    ``[lo, hi]``; the view gets epoch seconds (float).

    >>> Time().parse("2026-01-31T12:00:00Z"), Time().parse("1769860800")
    (1769860800.0, 1769860800.0)
    >>> Time().parse("nan")
    Traceback (most recent call last):
    ...
    ValueError: must be RFC 3339 (2026-01-31T12:00:00Z) or epoch seconds, got 'nan'
    >>> Time().parse("1e12")
    Traceback (most recent call last):
    ...
    ValueError: out of range: must be between 1970-01-01T00:00:00Z (0) and 2100-01-01T00:00:00Z (4102444800) in epoch seconds, got '1e12'
    """  # noqa: E501 - a doctest's expected line cannot wrap

    lo: float = TIME_MIN
    hi: float = TIME_MAX

    def parse(self, text: str) -> float:
        if len(text) <= _MAX_TEXT and _NUMBER.fullmatch(text):
            ts = float(text)
        else:
            try:
                if len(text) > _MAX_TEXT:
                    raise ValueError
                dt = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
            except ValueError:
                raise ValueError("must be RFC 3339 (2026-01-31T12:00:00Z) or epoch seconds, "
                                 f"got {shown(text)}") from None
            if dt.tzinfo is None:
                dt = dt.replace(tzinfo=UTC)
            try:
                ts = dt.timestamp()
            except (OverflowError, ValueError, OSError):  # year 1 in a zone west of UTC
                ts = -math.inf
        if not (math.isfinite(ts) and self.lo <= ts <= self.hi):
            raise ValueError(f"out of range: must be between {_iso(self.lo)} ({self.lo:.0f}) and {_iso(self.hi)} "
                             f"({self.hi:.0f}) in epoch seconds, got {shown(text)}")
        return ts


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class Choice(Param):
    """One of ``choices``, exactly (case counts); ``aliases`` map other spellings onto them.

    >>> Choice(choices=("firing", "resolved")).parse("evil")
    Traceback (most recent call last):
    ...
    ValueError: must be one of firing, resolved; got 'evil'
    """

    choices: tuple[str, ...] = ()
    aliases: Mapping[str, str] = field(default_factory=dict)

    def parse(self, text: str) -> str:
        if text in self.choices:
            return text
        if text in self.aliases:
            return self.aliases[text]
        raise ValueError(f"must be one of {', '.join(self.choices)}; got {shown(text)}")


@dataclass(frozen=True)
class Int(Param):
    """A whole number in ``[lo, hi]`` (ASCII digits; no ``1e3``, no ``1_000``).

    >>> Int(lo=1, hi=1000).parse("-5")
    Traceback (most recent call last):
    ...
    ValueError: must be a whole number from 1 to 1000, got '-5'
    """

    lo: int = 0
    hi: int = 2**31 - 1

    def parse(self, text: str) -> int:
        n = int(text) if _INT.fullmatch(text) else None
        if n is None or not self.lo <= n <= self.hi:
            raise ValueError(f"must be a whole number from {self.lo} to {self.hi}, got {shown(text)}")
        return n


@dataclass(frozen=True)
class Bool(Param):
    """``true`` / ``false`` (also ``1`` / ``0``).

    >>> Bool().parse("1"), Bool().parse("false")
    (True, False)
    """

    def parse(self, text: str) -> bool:
        low = text.lower()
        if low in ("true", "1"):
            return True
        if low in ("false", "0"):
            return False
        raise ValueError(f"must be true or false, got {shown(text)}")


@dataclass(frozen=True)
class Name(Param):
    """A name (team, budget, report): NFC-normalised, at most ``max_len`` characters, no
    control, bidi, zero-width or unassigned characters, none of ``forbid`` (the separators of
    series keys, where the name becomes part of one).

    >>> Name().parse("ads")
    'ads'
    >>> Name().parse("ads\\u202e")
    Traceback (most recent call last):
    ...
    ValueError: character U+202E (RIGHT-TO-LEFT OVERRIDE) is not allowed in a name, at position 4
    """

    max_len: int = 256
    forbid: str = ""

    def parse(self, text: str) -> str:
        text = unicodedata.normalize("NFC", text)
        if len(text) > self.max_len:
            raise ValueError(f"longer than {self.max_len} characters ({len(text)})")
        for i, ch in enumerate(text):
            if ch == "\ufffd":  # what the server makes of a query that is not UTF-8
                raise ValueError(f"not valid UTF-8 (U+FFFD REPLACEMENT CHARACTER at position {i + 1})")
            if ch in self.forbid or unicodedata.category(ch) in _BAD_CATEGORIES:
                what = unicodedata.name(ch, "")
                raise ValueError(f"character U+{ord(ch):04X}{f' ({what})' if what else ''} is not allowed in a name, "
                                 f"at position {i + 1}")
        return text


@dataclass(frozen=True)
class Series(Param):
    """A series key as the worker writes it (of one of
    :data:`streams.common.dimensions.DIMENSIONS`), each name by the :class:`Name` rule.

    >>> Series().parse("team=ads|model=gpt-4o")
    'team=ads|model=gpt-4o'
    >>> Series().parse("evil")
    Traceback (most recent call last):
    ...
    ValueError: not a series: expected org, team=T, team=T|model=M, provider=P, model=M, user=U or tool=T; got 'evil'
    """

    def parse(self, text: str) -> str:
        got = parse_series(text)
        if got is None:
            raise ValueError(f"not a series: expected {shapes_text()}; got {shown(text)}")
        _, labels = got
        rule = Name(forbid="|=")
        return series_key({k: rule.parse(v) for k, v in labels.items()})


@dataclass(frozen=True)
class Zone(Param):
    """An IANA time zone (``Europe/Berlin``) of the zone database the worker ships.

    >>> Zone().parse("Europe/Berlin")
    'Europe/Berlin'
    """

    def parse(self, text: str) -> str:
        from streams.common.periods import zone

        name = Name(max_len=64).parse(text)
        try:
            zone(name)
        except (ValueError, OSError):
            raise ValueError(f"unknown time zone {shown(name)} (an IANA name such as 'Europe/Berlin')") from None
        return name


class Query:
    """The parameters a view takes, by name. :meth:`parse` checks a request's query string
    against them; :func:`takes` does it before the view runs."""

    def __init__(self, **params: Param) -> None:
        self.params = params

    def parse(self, query: Any) -> dict[str, Any]:
        """Values by name (every declared parameter: its default when absent or empty);
        :class:`ParamError` on the first parameter that cannot be used. ``query`` is a
        multi-mapping (aiohttp's ``request.query``) or a plain mapping."""
        items = list(query.items()) if hasattr(query, "getall") else list(dict(query).items())
        seen: set[str] = set()
        for key, _ in items:
            if key not in self.params:
                takes = ", ".join(self.params) or "no parameters"
                raise ParamError(_cut(key), f"unknown parameter (this endpoint takes {takes})")
            if key in seen:
                raise ParamError(key, "given more than once")
            seen.add(key)
        given = dict(items)
        out: dict[str, Any] = {}
        for name, param in self.params.items():
            text = given.get(name)
            if text is None or text == "":
                out[name] = param.default
                continue
            try:
                out[name] = param.parse(text)
            except ValueError as exc:
                raise ParamError(name, str(exc)) from None
        return out


def _cut(key: str) -> str:
    """An unknown parameter's name as the error names it: escaped, and quoted when cut."""
    return shown(key)[1:-1] if len(key) <= SHOWN else shown(key)


Handler = Callable[[Any, Any], Awaitable[Any]]


def takes(query: Query) -> Callable[[Callable[[Any, Any, dict[str, Any]], Awaitable[Any]]], Handler]:
    """Decorate a Faust view function ``(web, request, args)`` under ``@app.page``: the
    query string is checked against ``query`` first, and a :class:`ParamError` (from the
    check or raised by the view itself, e.g. ``since`` after ``until``) becomes its JSON
    response. The declared ``query`` stays on the view (``.query``) for the API tests."""

    def decorate(fun: Callable[[Any, Any, dict[str, Any]], Awaitable[Any]]) -> Handler:
        @functools.wraps(fun)
        async def view(web: Any, request: Any) -> Any:
            try:
                return await fun(web, request, query.parse(request.query))
            except ParamError as exc:
                return web.json(exc.body(), status=exc.status)

        view.query = query  # type: ignore[attr-defined]
        return view

    return decorate
