"""Someone who is not logged in sees the login page and gets no live events."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.browser

# Opens the events websocket and tells how it ended: {opened, code}.
TRY_WEBSOCKET = """() => new Promise((resolve) => {
  const ws = new WebSocket("ws://" + location.host + "/ws/events/");
  let opened = false;
  ws.onopen = () => { opened = true; };
  ws.onclose = (e) => resolve({ opened: opened, code: e.code });
  setTimeout(() => resolve({ opened: opened, code: "still open" }), 5000);
})"""


@pytest.mark.django_db(transaction=True)
def test_it_sends_an_anonymous_visitor_to_the_login_page(page):
    page.goto("/")

    expect(page).to_have_url(re.compile(r"/login/\?next=/$"))
    expect(page.locator("h1")).to_have_text("Log in to ocrdash")
    expect(page.locator("input[name=username]")).to_be_visible()
    expect(page.locator("#live-indicator")).to_have_count(0)
    expect(page.locator(".topbar nav")).to_have_count(0)


@pytest.mark.django_db(transaction=True)
def test_it_refuses_an_anonymous_websocket(page):
    page.goto("/login/")

    outcome = page.evaluate(TRY_WEBSOCKET)

    assert outcome == {"opened": False, "code": 1006}, outcome


@pytest.mark.django_db(transaction=True)
def test_it_takes_a_wrong_password_back_to_the_form(page, make_user):
    make_user("alice", password="secret-pass-123")
    page.goto("/login/")
    page.fill("input[name=username]", "alice")
    page.fill("input[name=password]", "not-the-password")
    page.click("button[type=submit]")

    expect(page.locator(".error")).to_contain_text("did not match")
    expect(page).to_have_url(re.compile(r"/login/$"))
