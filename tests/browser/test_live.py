"""The live connection: one websocket per page that stays open while the page is."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.browser

# Two rounds of the channel layer's 5-second blocking read of Redis.
QUIET_SECONDS = 11


@pytest.mark.django_db(transaction=True)
def test_it_keeps_the_websocket_open_while_nothing_happens(logged_in_page, wait_until_live, asgi_server):
    page, _ = logged_in_page("alice")
    sockets = []
    page.on("websocket", lambda ws: sockets.append(ws.url))
    page.reload()
    wait_until_live(page)
    # Playwright may report the socket of the page before the reload only now: count from here,
    # where any new socket is a reconnect.
    page.wait_for_timeout(500)
    sockets.clear()
    page.evaluate("window.__marker = 1")
    log_start = asgi_server.log_path.stat().st_size

    page.wait_for_timeout(QUIET_SECONDS * 1000)

    with asgi_server.log_path.open(errors="replace") as log:
        log.seek(log_start)
        server_log = log.read()
    assert "Traceback" not in server_log, (
        f"the web server failed while the page was open:\n{server_log[-2000:]}"
    )

    assert sockets == [], f"{len(sockets)} new websocket(s) in {QUIET_SECONDS} s: the connection dropped"
    expect(page.locator("#live-indicator")).to_have_text("live")
    # The dashboard (where a login lands) reloads itself after a reconnect: it must not have had to.
    assert page.evaluate("window.__marker") == 1
