"""What the browser tests share: one Chromium per test module, and pages that fail their test
on any uncaught error in the page's scripts."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from ..conftest import launch_chromium


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            yield browser
        finally:
            browser.close()


@contextmanager
def open_page(browser: Browser, timeout_ms: float, url: str | None = None, **context: Any) -> Iterator[Page]:
    """A page in a fresh context (``context``: its options), waiting at most ``timeout_ms`` for
    anything, at ``url`` when given; on leaving, the context is closed and an uncaught error in
    the page fails the test."""
    browsing = browser.new_context(**context)
    page = browsing.new_page()
    page.set_default_timeout(timeout_ms)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    if url is not None:
        page.goto(url)
    try:
        yield page
    finally:
        browsing.close()
    assert errors == [], errors  # no uncaught exception in the page's scripts
