"""The dimensions spend is kept and watched by, and the series keys built from them: defined here
once, read by the ingest, the judge's contributors, budgets, the mix share, reports, the API and
the policy.

A *series* is one value of one dimension. Its key is its labels joined in a fixed order; the
org's (all spend) has no label (events of the default org, :data:`DEFAULT_ORG`):

>>> [series_key(d.labels_of(Cell("default", "ads", "openai", "gpt-4o", "bob"))) for d in CELL_DIMENSIONS]
['org', 'team=ads', 'team=ads|model=gpt-4o', 'provider=openai', 'model=gpt-4o', 'user=bob']
>>> parse_series("team=ads|model=gpt-4o")
(Dimension(name='team×model', labels=('team', 'model'), contributors=('user',)), {'team': 'ads', 'model': 'gpt-4o'})

Names never hold ``|`` or ``=`` (the ingest refuses them: :mod:`streams.ingest.normalize`), so
a key parses back unambiguously.

**Tools.** An event's ``tool`` (the agent, IDE or app that made the call) is optional: spend of
events that name none is kept under the tool :data:`NO_TOOL`, never dropped. The ingest sums a
window's spend by tool in :class:`ToolCell` (org, tool) beside the cells, not in them: a tool
in the cell would multiply the cells (users × models × tools) and the work of closing each
window. It counts at most ``limits.max_tools_per_window`` distinct tools per window of a
partition; the spend of further ones goes to :data:`OTHER_TOOL`, so a producer sending made-up
tool names cannot grow the spend records without bound:

>>> [series_key(TOOL.labels_of(c)) for c in (ToolCell("default", ""), ToolCell("acme", "ide"))]
['tool=(none)', 'org=acme|tool=ide']

**Organisations.** One deployment can serve several orgs (business units) without mixing them:
the series of an org other than :data:`DEFAULT_ORG` (the org of events that name none) start
with ``org=<name>``, and their labels hold ``org``. The default org's keep their short names, so
a deployment of one org, its policy, checkpoints and links read as before:

>>> acme = Cell("acme", "ads", "openai", "gpt-4o", "bob")
>>> [series_key(d.labels_of(acme)) for d in CELL_DIMENSIONS][:3]
['org=acme', 'org=acme|team=ads', 'org=acme|team=ads|model=gpt-4o']
>>> parse_series("org=acme|team=ads")[1], org_of("org=acme|team=ads"), org_of("team=ads")
({'org': 'acme', 'team': 'ads'}, 'acme', 'default')
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import NamedTuple

__all__ = [
    "ALIASES",
    "DEFAULT_WATCHED",
    "DIMENSIONS",
    "NAMES",
    "DEFAULT_ORG",
    "NO_TOOL",
    "ORG",
    "OTHER_TOOL",
    "TEAM",
    "TEAM_MODEL",
    "TOOL",
    "ToolCell",
    "CELL_DIMENSIONS",
    "Cell",
    "Dimension",
    "dimension",
    "org_of",
    "org_series",
    "parse_series",
    "series_key",
    "series_of",
    "shapes_text",
]


class Cell(NamedTuple):
    """The labels of a usage event that spend is kept by: the ingest sums each window per cell
    and expands cells into series when the window closes.

    The ingest's hot path builds cells as plain tuples in this field order (a named tuple is
    slower to build, and a tuple equals and hashes like it); read them with this type."""

    org: str
    team: str
    provider: str
    model: str
    user: str


class ToolCell(NamedTuple):
    """What the ingest sums a window's spend by tool in, beside the :class:`Cell` s: its events'
    org and tool ("" for none: the series ``tool=(none)``). A plain 2-tuple on the hot path."""

    org: str
    tool: str


#: the tool of spend whose events name none (its series: ``tool=(none)``)
NO_TOOL = "(none)"
#: the tool of spend past the ingest's ``limits.max_tools_per_window`` distinct tools in a window
OTHER_TOOL = "(other)"


#: The org of events that name none (:func:`streams.ingest.normalize.normalize`): its series
#: keep the short names (``team=ads``); every other org's start with ``org=<name>|``.
DEFAULT_ORG = "default"

# the order of labels in a series key (``org`` first, and only for another org than the default)
_KEY_ORDER = ("team", "provider", "model", "user", "tool")


@dataclass(frozen=True)
class Dimension:
    """One dimension: its ``name`` (in the policy's ``watch`` list and ``/api/spend``'s
    ``group_by``), the ``labels`` of its series in key order (none: the org, all spend), and the
    labels worth naming as top contributors of a series' excess."""

    name: str
    labels: tuple[str, ...]
    contributors: tuple[str, ...] = ()

    def labels_of(self, cell: Cell | ToolCell | tuple[str, ...]) -> dict[str, str]:
        """The labels of the series of this dimension that ``cell`` feeds (the org's is its
        name: ``{"org": "acme"}``). The ``tool`` dimension takes a :class:`ToolCell` (no tool:
        :data:`NO_TOOL`), the others a :class:`Cell`."""
        c: Cell | ToolCell = ToolCell._make(cell) if len(cell) == 2 else Cell._make(cell)
        if not self.labels:
            return {"org": c.org}
        out = {label: getattr(c, label) for label in self.labels}
        if out.get("tool") == "":
            out["tool"] = NO_TOOL
        if c.org != DEFAULT_ORG:
            return {"org": c.org, **out}
        return out


ORG = Dimension("org", (), contributors=("team", "model"))
TEAM = Dimension("team", ("team",), contributors=("user", "model"))
TEAM_MODEL = Dimension("team×model", ("team", "model"), contributors=("user",))
PROVIDER = Dimension("provider", ("provider",), contributors=("team", "model"))
MODEL = Dimension("model", ("model",))
USER = Dimension("user", ("user",))
TOOL = Dimension("tool", ("tool",))

DIMENSIONS: tuple[Dimension, ...] = (ORG, TEAM, TEAM_MODEL, PROVIDER, MODEL, USER, TOOL)
#: the dimensions a :class:`Cell` feeds (all but ``tool``, fed by :class:`ToolCell` s)
CELL_DIMENSIONS: tuple[Dimension, ...] = DIMENSIONS[:-1]
NAMES: tuple[str, ...] = tuple(d.name for d in DIMENSIONS)
#: other spellings of ``team×model`` the policy and the API take
ALIASES: dict[str, str] = {"team*model": "team×model", "team_model": "team×model", "team x model": "team×model"}
#: what the detectors watch unless the policy says otherwise (``model``, ``user`` and ``tool`` are spend-only)
DEFAULT_WATCHED = frozenset({"org", "team", "team×model", "provider"})

_BY_NAME = {d.name: d for d in DIMENSIONS}
_BY_LABELS = {d.labels: d for d in DIMENSIONS}


def dimension(name: str) -> Dimension:
    """The dimension called ``name`` (or one of its :data:`ALIASES`); ``KeyError`` otherwise.

    >>> dimension("team_model").name
    'team×model'
    """
    return _BY_NAME[ALIASES.get(name, name)]


def series_key(labels: Mapping[str, str]) -> str:
    """The key of the series with these labels: ``org`` for none (or only the default org),
    else ``label=value`` pairs in key order joined by ``|``, led by ``org=<name>`` for an org
    other than :data:`DEFAULT_ORG`.

    >>> series_key({}), series_key({"model": "m", "team": "t"}), series_key({"user": "bob", "team": "ads"})
    ('org', 'team=t|model=m', 'team=ads|user=bob')
    >>> series_key({"org": "default", "team": "ads"}), series_key({"org": "acme"}), series_key({"team": "ads", "org": "acme"})
    ('team=ads', 'org=acme', 'org=acme|team=ads')
    """
    parts = [f"{k}={labels[k]}" for k in _KEY_ORDER if k in labels]
    org = labels.get("org")
    if org is not None and org != DEFAULT_ORG:
        parts.insert(0, f"org={org}")
    return "|".join(parts) if parts else "org"


def org_of(key: str) -> str:
    """The org of a series key (of a well-formed one: :func:`parse_series`).

    >>> org_of("org"), org_of("org=acme"), org_of("org=acme|user=bob"), org_of("user=bob")
    ('default', 'acme', 'acme', 'default')
    """
    if key.startswith("org="):
        return key[4:].partition("|")[0]
    return DEFAULT_ORG


def org_series(org: str) -> str:
    """The key of the series of all of ``org``'s spend.

    >>> org_series("default"), org_series("acme")
    ('org', 'org=acme')
    """
    return "org" if org == DEFAULT_ORG else f"org={org}"


def parse_series(key: str) -> tuple[Dimension, dict[str, str]] | None:
    """The dimension and labels of a series key (the org's: no labels); None when ``key`` is
    not the key of a series of one of :data:`DIMENSIONS`.

    Another org's series (``org=acme|team=ads``) has ``org`` in its labels; the default org's
    never does, and ``org=default|…`` is not a key (the default org's keys are the short ones).

    >>> parse_series("org"), parse_series("user=bob")[1], parse_series("team=ads|user=bob")
    ((Dimension(name='org', labels=(), contributors=('team', 'model')), {}), {'user': 'bob'}, None)
    >>> parse_series("org=acme")[0].name, parse_series("org=acme|team=ads|model=m")[1], parse_series("org=default|team=ads")
    ('org', {'org': 'acme', 'team': 'ads', 'model': 'm'}, None)
    """
    if key == "org":
        return ORG, {}
    labels: dict[str, str] = {}
    for part in key.split("|", 3):
        label, eq, value = part.partition("=")
        if not eq or not value or label in labels:
            return None
        labels[label] = value
    org = labels.get("org")
    if org is not None and (org == DEFAULT_ORG or next(iter(labels)) != "org"):
        return None
    dim = _BY_LABELS.get(tuple(k for k in labels if k != "org"))
    return None if dim is None else (dim, labels)


def series_of(cell: Cell | ToolCell | tuple[str, ...], watched: frozenset[str]
              ) -> Iterator[tuple[str, dict[str, str], bool, tuple[tuple[str, str], ...]]]:
    """For every series ``cell`` (a :class:`Cell`, or a :class:`ToolCell`: its ``tool=…``
    series only) feeds: its key, labels, whether the detectors watch it (its dimension is in
    ``watched``; the others are kept for the spend API), and its contributors in ``cell``
    (``(label, value)`` pairs)."""
    if len(cell) == 2:
        labels = TOOL.labels_of(cell)
        yield series_key(labels), labels, TOOL.name in watched, ()
        return
    c = Cell._make(cell)
    for d in CELL_DIMENSIONS:
        labels = d.labels_of(c)
        contrib = tuple((label, getattr(c, label)) for label in d.contributors)
        yield series_key(labels), labels, d.name in watched, contrib


def shapes_text() -> str:
    """The series keys there are, for an error message.

    >>> shapes_text()
    'org, team=T, team=T|model=M, provider=P, model=M, user=U or tool=T'
    """
    shapes = ["|".join(f"{label}={label[0].upper()}" for label in d.labels) or "org" for d in DIMENSIONS]
    return f"{', '.join(shapes[:-1])} or {shapes[-1]}"
