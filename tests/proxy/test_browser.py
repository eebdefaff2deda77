"""A real browser through the real proxy: headless Debian Chromium driven by Playwright.

Chromium answers the proxy's digest challenge itself (SHA-256 with userhash, as
measured with Chromium 150); the test checks the page arrives and the tunnel is
recorded as alice's.
"""

from __future__ import annotations

import importlib.util
import os
import re
from pathlib import Path

import pytest

from tests.dns_responder import dns_responder
from tests.proxy.harness import BODY, PASSWORD, proxy, tls_origin

pytestmark = pytest.mark.root

CHROMIUM = Path("/usr/bin/chromium")

# The machine has no outside network: without the background-networking flags
# Chromium keeps trying to reach Google services, which only adds noise and delay.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _skip_without_browser() -> None:
    if not (CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK)):
        pytest.skip(f"{CHROMIUM} is not installed")
    if importlib.util.find_spec("playwright") is None:
        pytest.skip("the playwright Python package is not installed")


def test_chromium_page_through_digest_proxy_is_recorded(tmp_path: Path) -> None:
    _skip_without_browser()
    from playwright.sync_api import sync_playwright

    with (
        tls_origin(tmp_path) as origin,
        dns_responder({"origin.test": ["127.0.0.1"]}) as dns,
        proxy(tmp_path, "--resolver", f"{dns[0]}:{dns[1]}") as running,
    ):
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=str(CHROMIUM),
                args=CHROMIUM_ARGS,
                headless=True,
                timeout=20_000,
                proxy={
                    "server": f"http://127.0.0.1:{running.port}",
                    "username": "alice",
                    "password": PASSWORD,
                },
            )
            try:
                context = browser.new_context(ignore_https_errors=True)
                try:
                    page = context.new_page()
                    page.set_default_timeout(15_000)
                    response = page.goto(f"https://origin.test:{origin.port}/")
                    assert response is not None, running.log.read_text()
                    assert response.status == 200, running.log.read_text()
                    text = response.text()
                    body = page.inner_text("body")
                finally:
                    context.close()
            finally:
                browser.close()
        summaries = running.summaries(1)
        log = running.stop()
    assert text.encode() == BODY
    assert body.strip() == BODY.decode().strip()
    established = [
        s
        for s in summaries
        if s["outcome"] == "established"
        and isinstance(s["origin"], dict)
        and s["origin"].get("host") == "origin.test"
    ]
    assert established, (summaries, log)
    assert all(s["user"] == "alice" for s in established), established
    # Chromium's first CONNECT carries no credentials: that 407 is silent. Any answer
    # it did send must have been accepted (no "auth failed", not even "auth stale").
    assert not re.search(r"auth (failed|stale)", log), log
    assert PASSWORD not in log
