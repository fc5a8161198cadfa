"""Every relative link in the README and docs/ points at a file that exists, and every
``#anchor`` at a heading of that file, so moving a section cannot leave a dead link behind.

Anchors follow GitHub's rule for headings: lower case, punctuation other than ``-`` and ``_``
dropped, spaces turned into ``-``, ``-1``, ``-2``… appended to repeats. Links inside code
(fenced blocks and backtick spans) are not links and are skipped; so are absolute URLs.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted(
    [ROOT / "README.md", ROOT / "CONTRIBUTING.md", ROOT / "benchmarks" / "README.md", *(ROOT / "docs").glob("*.md")]
)

_FENCE = re.compile(r"^\s*(```|~~~)")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_CODE_SPAN = re.compile(r"(`+)(.+?)\1")
# [text](target) and ![alt](target); the target stops at whitespace or ")" (an optional title
# after a space is ignored). Reference-style links are not used in these pages.
_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def _prose_lines(text: str) -> list[tuple[int, str]]:
    """(line number, line) outside fenced code blocks."""
    out, fenced = [], False
    for n, line in enumerate(text.splitlines(), 1):
        if _FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            out.append((n, line))
    return out


def slug(heading: str) -> str:
    """GitHub's anchor for a heading's text."""
    text = _CODE_SPAN.sub(lambda m: m.group(2), heading)
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)  # a link in a heading: its text
    text = re.sub(r"<[^>]+>", "", text).strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    out: set[str] = set()
    for _, line in _prose_lines(path.read_text(encoding="utf-8")):
        m = _HEADING.match(line)
        if not m:
            continue
        base = slug(m.group(2))
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def links(path: Path) -> list[tuple[int, str]]:
    found = []
    for n, line in _prose_lines(path.read_text(encoding="utf-8")):
        for m in _LINK.finditer(_CODE_SPAN.sub("", line)):
            found.append((n, m.group(1)))
    return found


def test_slug_follows_github() -> None:
    assert slug("A tour of `make run`") == "a-tour-of-make-run"
    assert slug("On NAB (data the project did not generate)") == "on-nab-data-the-project-did-not-generate"
    assert slug("Plausibility (`limits` in the policy)") == "plausibility-limits-in-the-policy"
    assert slug("The demo's gate") == "the-demos-gate"
    assert slug("Figures measured (2 cores, Python 3.11.7)") == "figures-measured-2-cores-python-3117"


def test_link_pattern_skips_code() -> None:
    page = "[a](x.md) `[b](y.md)` ![c](img/z.png \"t\")\n```\n[d](w.md)\n```\n"
    tmp = [m.group(1) for _, line in _prose_lines(page) for m in _LINK.finditer(_CODE_SPAN.sub("", line))]
    assert tmp == ["x.md", "img/z.png"]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page: Path) -> None:
    cache: dict[Path, set[str]] = {}
    broken = []
    for n, target in links(page):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):  # http:, https:, mailto:
            continue
        file_part, _, anchor = target.partition("#")
        dest = (page.parent / file_part).resolve() if file_part else page
        where = f"{page.relative_to(ROOT)}:{n}: {target}"
        if not dest.exists():
            broken.append(f"{where}: no such file")
            continue
        if anchor and dest.suffix == ".md":
            if dest not in cache:
                cache[dest] = anchors(dest)
            if anchor not in cache[dest]:
                broken.append(f"{where}: no heading with anchor #{anchor}")
    assert not broken, "\n".join(broken)
