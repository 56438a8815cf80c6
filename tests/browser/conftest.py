"""Chromium, driven by Playwright, against the real web server (uvicorn) and worker.

Every browser test gets a fresh browser context (its own cookies) on one shared
Chromium. The web server and the worker are started before Chromium, so the
setting Django needs next to Playwright (see `browser`) never reaches them.
"""

from __future__ import annotations

import os
import signal
import threading
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import ROOT, skip_or_fail

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
VIEWPORT = {"width": 1280, "height": 800}
PASSWORD = "secret-pass-123"
ARTIFACTS = ROOT / "test-artifacts"
# Playwright waits this long (ms) for what a test expects to see.
EXPECT_TIMEOUT_MS = 20_000


@pytest.fixture(scope="session")
def chromium_available() -> None:
    """Checked before anything is started, so a machine without Chromium skips at once."""
    if not Path(CHROMIUM).exists():
        skip_or_fail("Chromium is not installed (apt-get install chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        skip_or_fail("the playwright package is not installed (pip install -e '.[test]')")


@pytest.fixture(scope="session")
def live_server_and_worker(asgi_server, celery_worker_process):
    """The web server and the worker, started before Chromium (see `browser`)."""
    return asgi_server


@pytest.fixture(scope="package")
def browser(chromium_available, live_server_and_worker):
    """One Chromium for the browser tests, closed when they are done.

    While Playwright runs, its asyncio loop is visible in this thread, which Django takes for
    an async context and then refuses ORM calls. Tests are synchronous code, so the check is
    switched off in this process for as long as Chromium is open: package scope keeps both
    away from the other test folders, and the server and worker started earlier keep it on.
    """
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=EXPECT_TIMEOUT_MS)
    playwright = sync_playwright().start()
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()
    finally:
        playwright.stop()
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def page(browser, live_server_and_worker):
    """A page in a fresh browser context; fails the test on any uncaught script error and on any
    Content-Security-Policy violation (Chromium reports each on the console)."""
    context = browser.new_context(viewport=VIEWPORT, base_url=live_server_and_worker.url)
    context.set_default_timeout(EXPECT_TIMEOUT_MS)
    tab = context.new_page()
    script_errors: list[str] = []
    violations: list[str] = []
    tab.on("pageerror", lambda exc: script_errors.append(str(exc)))
    tab.on("console", lambda msg: violations.append(msg.text) if "Content Security Policy" in msg.text else None)
    yield tab
    context.close()
    assert not script_errors, f"uncaught script errors on the page: {script_errors}"
    assert not violations, f"Content-Security-Policy violations: {violations}"


def log_in(page, make_user, username: str = "alice", **extra):
    """Create `username` in the database and log in through the real login form."""
    user = make_user(username=username, password=PASSWORD, **extra)
    page.goto("/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    with page.expect_navigation():
        page.click("button[type=submit]")
    assert "/login/" not in page.url, "the login form did not accept the user"
    return user


@pytest.fixture
def logged_in_page(page, make_user):
    """Call it to get `page` logged in as a new user: `page, user = logged_in_page("bob")`."""

    def login(username: str = "alice", **extra):
        user = log_in(page, make_user, username, **extra)
        return page, user

    return login


@pytest.fixture
def wait_until_live():
    """Wait for the page's websocket to be open (events sent before that are missed)."""
    from playwright.sync_api import expect

    def wait(tab):
        expect(tab.locator("#live-indicator")).to_have_text("live")

    return wait


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


def off_the_loop(fn, *args, **kwargs):
    """Run fn in a thread of its own and return what it returns.

    Playwright's event loop lives in the test's thread, and asgiref's async_to_sync (which
    ocr_app.events uses to reach the channel layer) refuses to run in a thread with a loop.
    """
    from django.db import connection

    outcome: dict = {}

    def run():
        try:
            outcome["value"] = fn(*args, **kwargs)
        except BaseException as exc:  # handed to the test's thread
            outcome["error"] = exc
        finally:
            connection.close()  # this thread's own database connection

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


@pytest.fixture
def publish():
    """ocr_app.events.publish_job(job), as the worker calls it after job.move_to(...)."""
    from ocr_app import events

    return lambda job: off_the_loop(events.publish_job, job)


@pytest.fixture
def make_job(monkeypatch):
    """Create a job as an upload does (and announce it), but keep it from the worker: it stays
    queued until the test moves it (job.move_to) and publishes the move (`publish`)."""
    from ocr_app import queueing
    from ocr_app.validation import check_image
    from tests.conftest import text_image

    monkeypatch.setattr(queueing, "send_to_worker", lambda job: None)

    def make(owner, name: str = "scan.png", lines=("Hello world",), language: str = "multi"):
        data = text_image(list(lines))
        checked = check_image(name, data, 10**7, 10**8)
        return off_the_loop(queueing.create_job, owner, name, data, checked, language)

    return make


@pytest.fixture
def worker_held(live_server_and_worker, celery_worker_process):
    """`with worker_held(): ...` keeps the worker from taking jobs (SIGSTOP) until the block ends,
    so a test can see a job waiting in the queue before the worker runs it."""

    @contextmanager
    def hold():
        os.kill(celery_worker_process.pid, signal.SIGSTOP)
        try:
            yield
        finally:
            os.kill(celery_worker_process.pid, signal.SIGCONT)

    return hold
