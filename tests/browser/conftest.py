"""Headless Chromium for tests that look at a page as a person would.

The browser is the system's own (Debian's ``chromium`` package, ``/usr/bin/chromium``), driven
by Playwright for Python through ``executable_path``: Playwright's browser download
(``playwright install``) is never used. Without the browser these tests skip with one line
saying how to install it; under CI (``CI`` set) a missing browser is a failure, so a green CI
has really run them. ``TOKENPULSE_CHROMIUM`` names another binary.

Fixtures:

- ``chromium``: the browser, launched once for this package (shared by its modules);
- ``watched_page``: a fresh context and page per test, whose console errors, uncaught page
  errors, dialogs (``alert()``) and network requests are recorded (:class:`WatchedPage`);
  requests to anything but ``file:`` and ``data:`` URLs are answered with an abort unless the
  test allows them (``watched_page.allow("http://127.0.0.1:…")``), so a page cannot reach out;
- ``screenshot``: saves a PNG of a page under the test's tmp dir, and also into the directory
  named by ``TOKENPULSE_SCREENSHOTS`` (``TOKENPULSE_SCREENSHOTS=docs/img`` refreshes the
  README's pictures), as a palette PNG that keeps the file small.

Every test here is marked ``browser`` (``-m "not browser"`` leaves them out).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

INSTALL_HINT = "sudo apt-get install chromium chromium-driver"

# What works here: no sandbox (root, containers), no GPU, and nothing that phones home.
# Playwright adds --headless and a fresh --user-data-dir of its own to every launch.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str | None:
    """The system Chromium binary, or None."""
    named = os.environ.get("TOKENPULSE_CHROMIUM")
    if named:
        return named if os.access(named, os.X_OK) else None
    for cand in ("/usr/bin/chromium", "chromium", "chromium-browser"):
        found = shutil.which(cand)
        if found:
            return found
    return None


def _missing(why: str) -> None:
    msg = f"{why}: {INSTALL_HINT}"
    if os.environ.get("CI"):
        pytest.fail(f"browser tests must run under CI; {msg}", pytrace=False)
    pytest.skip(msg)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.browser)


@pytest.fixture(scope="package")
def chromium() -> Iterator[Any]:
    path = chromium_path()
    if path is None:
        named = os.environ.get("TOKENPULSE_CHROMIUM")
        _missing(f"TOKENPULSE_CHROMIUM={named} is not an executable" if named
                 else "headless Chromium not found (/usr/bin/chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("Playwright for Python is not installed (pip install -e '.[test]'); and the browser")
    # Playwright's sync API marks its own event loop as running while it is up: it lives
    # only as long as this package's tests, none of which is async.
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=path, headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class WatchedPage:
    """A page and what it did: ``console_errors`` (console messages of type error, and
    uncaught exceptions), ``dialogs`` (alert/confirm/prompt texts, dismissed), ``requests``
    (every URL asked for), ``blocked`` (those aborted: neither ``file:``, ``data:`` nor
    allowed)."""

    page: Any
    console_errors: list[str] = field(default_factory=list)
    console: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)
    allowed_prefixes: list[str] = field(default_factory=list)

    def allow(self, prefix: str) -> None:
        """Let requests to URLs starting with ``prefix`` through (a local server under test)."""
        self.allowed_prefixes.append(prefix)

    def problems(self) -> list[str]:
        """Everything a clean page must not do, one line each."""
        return ([f"console error: {m}" for m in self.console_errors]
                + [f"dialog: {m}" for m in self.dialogs]
                + [f"blocked request: {u}" for u in self.blocked])


@pytest.fixture
def watched_page(chromium: Any) -> Iterator[WatchedPage]:
    ctx = chromium.new_context(viewport={"width": 1200, "height": 900}, device_scale_factor=1,
                               service_workers="block")
    page = ctx.new_page()
    w = WatchedPage(page)

    def on_console(msg: Any) -> None:
        w.console.append(f"{msg.type}: {msg.text}")
        if msg.type == "error":
            w.console_errors.append(msg.text)

    def on_dialog(dialog: Any) -> None:
        w.dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    def on_route(route: Any) -> None:
        url = route.request.url
        w.requests.append(url)
        if url.startswith(("file:", "data:")) or any(url.startswith(p) for p in w.allowed_prefixes):
            route.continue_()
        else:
            w.blocked.append(url)
            route.abort("blockedbyclient")

    page.on("console", on_console)
    page.on("pageerror", lambda exc: w.console_errors.append(f"uncaught: {exc}"))
    page.on("dialog", on_dialog)
    ctx.route("**/*", on_route)
    try:
        yield w
    finally:
        ctx.close()


@pytest.fixture
def screenshot(tmp_path: Path) -> Callable[..., Path]:
    """``screenshot(page, "name", full_page=False)``: the PNG's path under the test's tmp dir
    (also written to ``$TOKENPULSE_SCREENSHOTS/name.png`` when that is set)."""

    def take(page: Any, name: str, *, full_page: bool = False, clip: dict[str, float] | None = None) -> Path:
        raw = page.screenshot(full_page=full_page, clip=clip, type="png")
        png = _small_png(raw)
        out = tmp_path / f"{name}.png"
        out.write_bytes(png)
        target = os.environ.get("TOKENPULSE_SCREENSHOTS")
        if target:
            Path(target).mkdir(parents=True, exist_ok=True)
            # written whole, then renamed: a reader never sees half a picture
            fd, tmp = tempfile.mkstemp(dir=target, suffix=".png.part")
            with os.fdopen(fd, "wb") as f:
                f.write(png)
            os.chmod(tmp, 0o644)  # mkstemp's 0600 is for secrets; this is a picture for the docs
            os.replace(tmp, Path(target) / f"{name}.png")
        return out

    return take


def _small_png(raw: bytes) -> bytes:
    """A screenshot as a palette PNG (a page has few colours): a third of the size or less."""
    try:
        import io

        from PIL import Image
    except ImportError:
        return raw
    img = Image.open(io.BytesIO(raw)).convert("RGB")
    buf = io.BytesIO()
    img.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(buf, format="PNG", optimize=True)
    return buf.getvalue()
