"""Chromium for the attack suite: the browser tests' own fixtures (one Chromium for this folder,
the shared real web server and worker)."""

from tests.browser.conftest import (  # noqa: F401  (fixtures)
    browser,
    chromium_available,
    live_server_and_worker,
    logged_in_page,
    page,
)
