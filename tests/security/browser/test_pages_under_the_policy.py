"""The API reference (Swagger UI, ReDoc) and the Django admin work in Chromium under the
Content-Security-Policy, with no violation (ReDoc's attribution logo from another site excepted:
the policy blocks it, as it should)."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

REDOC_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"


def collect_violations(page) -> list[str]:
    seen: list[str] = []
    page.on("console", lambda msg: seen.append(msg.text) if "Content Security Policy" in msg.text else None)
    return seen


def test_swagger_ui_and_the_admin_work_under_the_policy(logged_in_page):
    page, _root = logged_in_page("root", is_staff=True, is_superuser=True)

    page.goto("/api/docs/")
    expect(page.locator(".opblock").first).to_be_visible()
    expect(page.locator(".opblock-summary-path", has_text="/api/v1/jobs").first).to_be_visible()

    page.goto("/admin/")
    expect(page.locator("#site-name")).to_be_visible()
    page.goto("/admin/ocr_app/backendsettings/")  # its one row, made on the first visit
    expect(page.locator("select[name=backend]")).to_be_visible()
    expect(page.locator("input[name=model]")).to_be_visible()  # a superuser's field
    page.goto("/admin/auth/user/add/")
    page.fill("input[name=username]", "dora")
    page.fill("input[name=password1]", "short")
    page.fill("input[name=password2]", "short")
    page.click("input[name=_save]")
    expect(page.locator(".errorlist")).to_contain_text("too short")  # the validators, in the admin
    page.goto("/admin/axes/accessattempt/")
    expect(page.locator("#content h1")).to_be_visible()
    # The `page` fixture fails the test on any violation.


def test_redoc_works_under_the_policy_and_loads_nothing_from_elsewhere(browser, live_server_and_worker, make_user):
    from tests.browser.conftest import log_in

    context = browser.new_context(base_url=live_server_and_worker.url)
    page = context.new_page()
    violations = collect_violations(page)
    loaded_elsewhere: list[str] = []
    page.on("requestfinished", lambda r: loaded_elsewhere.append(r.url)
            if not r.url.startswith((live_server_and_worker.url, "data:", "blob:")) else None)  # fmt: skip
    log_in(page, make_user, "alice")

    page.goto("/api/redoc/")
    expect(page.locator("h1", has_text="ocrdash API")).to_be_visible()
    expect(page.get_by_text("/api/v1/jobs").first).to_be_attached()
    page.wait_for_timeout(500)
    context.close()

    assert all(REDOC_LOGO in v for v in violations), violations
    assert loaded_elsewhere == [], loaded_elsewhere
