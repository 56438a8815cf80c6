"""The fault suite: a whole ocrdash of real processes per test (tests/faults/stack.py), killed in
every way the issue of a lost job comes from. Each test is bounded in time, and its processes are
killed by process group when it ends, failed or not."""

from __future__ import annotations

import pytest

from tests.faults.stack import Stack, make_template

pytestmark = pytest.mark.faults


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture(scope="session")
def template_db(tmp_path_factory):
    """A migrated SQLite database with the stack's user and API token, copied by each stack."""
    folder = tmp_path_factory.mktemp("faults-template")
    make_template(folder)
    return folder / "ocrdash.sqlite3"


@pytest.fixture
def make_stack(tmp_path, template_db, request):
    """make_stack(recovery={...}) → a Stack with nothing started yet; all of it is killed at the end."""
    made: list[Stack] = []

    def make(recovery: dict | None = None) -> Stack:
        stack = Stack(tmp_path / f"stack{len(made)}", template_db=template_db, recovery=recovery)
        made.append(stack)
        return stack

    def finish():
        failed = any(getattr(getattr(request.node, f"report_{w}", None), "failed", False) for w in ("setup", "call"))
        for stack in made:
            if failed:
                print(stack.logs_text())
            stack.close()

    request.addfinalizer(finish)
    return make


@pytest.fixture
def stack(make_stack) -> Stack:
    """Redis, the web server and one worker (gpu@faults), started side by side."""
    return make_stack().start_all()
