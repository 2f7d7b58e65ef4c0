"""A real headless Chromium for the report's browser tests, driven by Playwright.

Playwright for Python (the ``testing`` extra) drives the system's Chromium (Debian's
``chromium`` package, installed by ``scripts/setup.sh``) through ``executable_path``: no
browser download. ``KERNELSPEC_CHROMIUM`` picks another binary. The tests are skipped, with a
reason, where either is missing.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

#: Flags for Chromium in a container or CI: no sandbox (needs root-only namespaces), no GPU,
#: nothing that phones home, so a stray request is ours.
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--hide-scrollbars",
)
VIEWPORT = {"width": 1280, "height": 900}


def chromium_path() -> str | None:
    """``$KERNELSPEC_CHROMIUM`` or the first Chromium on PATH (None if there is none)."""
    explicit = os.environ.get("KERNELSPEC_CHROMIUM")
    if explicit:
        return explicit if Path(explicit).exists() else shutil.which(explicit)
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


@dataclass
class OpenPage:
    """A loaded page and what it did while loading: console errors, uncaught exceptions,
    JavaScript dialogs (alert/confirm/prompt, dismissed) and every request it made."""

    page: Any  # playwright.sync_api.Page
    errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)

    def evaluate(self, expression: str) -> Any:
        return self.page.evaluate(expression)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium per test module (closed at the module's end)."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    executable = chromium_path()
    if executable is None:
        pytest.skip("chromium is not installed (apt-get install chromium; CI installs it)")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def open_page(browser) -> Iterator[Callable[..., OpenPage]]:
    """``open_page(path, javascript=True, viewport=VIEWPORT)``: load a local file in a fresh
    context (`viewport`: ``{"width": ..., "height": ...}`` in CSS pixels)."""
    contexts = []

    def _open(
        path: Path, *, javascript: bool = True, viewport: dict[str, int] | None = None
    ) -> OpenPage:
        context = browser.new_context(
            viewport=viewport or VIEWPORT, java_script_enabled=javascript
        )
        contexts.append(context)
        page = context.new_page()
        opened = OpenPage(page)
        page.on("console", lambda m: m.type == "error" and opened.errors.append(m.text))
        page.on("pageerror", lambda exc: opened.errors.append(str(exc)))
        page.on("requestfailed", lambda r: opened.errors.append(f"failed: {r.url}"))
        page.on("request", lambda r: opened.requests.append(r.url))

        def _dialog(dialog: Any) -> None:
            opened.dialogs.append(dialog.message)
            dialog.dismiss()

        page.on("dialog", _dialog)
        page.goto(Path(path).resolve().as_uri(), wait_until="load")
        return opened

    yield _open
    for context in contexts:
        context.close()
