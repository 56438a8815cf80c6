"""GET /api/v1/jobs/{id}/wait: answers when the job ends (woken by its event) or when the timeout
passes, and never holds up the server meanwhile."""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connection

from ocr_app import events
from ocr_app.api import waiting
from ocr_app.models import Job
from tests.web.api_support import api_client, error_of

pytestmark = pytest.mark.django_db


def test_an_ended_job_is_answered_at_once(alice, make_job):
    job = make_job(state="succeeded", text="Done")

    started = time.monotonic()
    response = api_client(alice).get(f"/api/v1/jobs/{job.pk}/wait?timeout=30")

    assert response.status_code == 200 and response.json()["state"] == "succeeded"
    assert time.monotonic() - started < 2


def test_after_the_timeout_it_answers_with_the_job_as_it_is(alice, make_job):
    job = make_job()

    started = time.monotonic()
    response = api_client(alice).get(f"/api/v1/jobs/{job.pk}/wait?timeout=1")
    took = time.monotonic() - started

    assert response.status_code == 200
    assert response.json()["state"] == "queued" and response.json()["ended"] is False
    assert 0.9 < took < 5


def test_timeout_zero_only_looks(alice, make_job):
    job = make_job()

    started = time.monotonic()
    response = api_client(alice).get(f"/api/v1/jobs/{job.pk}/wait", {"timeout": "0"})

    assert response.json()["state"] == "queued" and time.monotonic() - started < 2


@pytest.mark.parametrize("timeout", ["-1", "301", "soon", "nan", "inf"])
def test_a_bad_timeout_is_a_400(alice, make_job, timeout):
    job = make_job()

    response = api_client(alice).get(f"/api/v1/jobs/{job.pk}/wait", {"timeout": timeout})

    assert response.status_code == 400
    assert "timeout" in error_of(response)["field_errors"]


@pytest.mark.django_db(transaction=True)
def test_it_wakes_up_when_the_job_ends(alice, make_job, monkeypatch):
    """The row is read only every POLL_SECONDS; the event wakes the waiter at once."""
    monkeypatch.setattr(waiting, "POLL_SECONDS", 30.0)
    job = make_job()
    key_client = api_client(alice)

    def finish():
        time.sleep(1.0)
        fresh = Job.objects.select_related("owner").get(pk=job.pk)
        fresh.move_to("running")
        fresh.move_to("succeeded", text="Woken")
        events.publish_job(fresh)
        connection.close()

    threading.Thread(target=finish).start()
    started = time.monotonic()
    response = key_client.get(f"/api/v1/jobs/{job.pk}/wait?timeout=20")
    took = time.monotonic() - started

    assert response.json()["state"] == "succeeded"
    assert 0.9 < took < 5


@pytest.mark.django_db(transaction=True)
def test_without_events_it_still_notices_by_reading_the_row(alice, make_job, monkeypatch):
    monkeypatch.setattr(waiting, "POLL_SECONDS", 0.5)
    job = make_job()

    def finish_quietly():
        time.sleep(1.0)
        Job.objects.filter(pk=job.pk).update(state="failed", message="Quiet")  # no event sent
        connection.close()

    threading.Thread(target=finish_quietly).start()
    started = time.monotonic()
    response = api_client(alice).get(f"/api/v1/jobs/{job.pk}/wait?timeout=20")

    assert response.json()["state"] == "failed" and time.monotonic() - started < 5


def test_the_wait_view_is_a_coroutine_so_waiting_costs_the_server_no_thread():
    import inspect

    from ocr_app.api.openai import ChatCompletionsView
    from ocr_app.api.views import JobWaitView

    for view in (JobWaitView, ChatCompletionsView):
        assert inspect.iscoroutinefunction(view.as_view())
