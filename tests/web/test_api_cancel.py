"""Cancelling and retrying, through the API and the pages' Cancel button: owners change their own
jobs, staff any; an ended job cannot be cancelled, a waiting one cannot be retried; everyone hears."""

from __future__ import annotations

import pytest

from ocr_app.models import Job
from tests.web.api_support import api_client, error_of

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(make_user):
    return make_user("carol", is_staff=True)


def test_an_owner_cancels_a_queued_job_at_once_and_the_others_move_up(alice, make_job, event_listener):
    mine, behind = make_job(), make_job()

    response = api_client(alice).post(f"/api/v1/jobs/{mine.pk}/cancel")

    assert response.status_code == 200
    body = response.json()
    assert body["state"] == "cancelled" and body["message"] == "Cancelled by alice."
    assert body["permissions"] == {"cancel": False, "retry": True}
    mine.refresh_from_db()
    assert mine.state == "cancelled" and mine.finished_at is not None
    assert event_listener.next_job_event(mine.pk)["job"]["state"] == "cancelled"
    moved_up = event_listener.next_job_event(behind.pk)["job"]
    assert moved_up["state"] == "queued" and moved_up["queue_position"] == 1


def test_an_owner_cancels_a_running_job(alice, make_job, event_listener):
    job = make_job(state="running", backend="cpu")

    response = api_client(alice).post(f"/api/v1/jobs/{job.pk}/cancel")

    assert response.status_code == 200 and response.json()["state"] == "cancelled"
    assert Job.objects.get(pk=job.pk).state == "cancelled"
    assert event_listener.next_job_event(job.pk)["job"]["state"] == "cancelled"


def test_another_user_cannot_cancel(bob, make_job):
    job = make_job()  # alice's

    response = api_client(bob).post(f"/api/v1/jobs/{job.pk}/cancel")

    assert response.status_code == 403
    body = error_of(response)
    assert body["code"] == "not_allowed" and "Only alice" in body["error"]
    assert Job.objects.get(pk=job.pk).state == "queued"


def test_staff_cancel_anyones_job(staff, make_job):
    job = make_job()

    response = api_client(staff).post(f"/api/v1/jobs/{job.pk}/cancel")

    assert response.status_code == 200 and response.json()["message"] == "Cancelled by carol."


@pytest.mark.parametrize("state", ["succeeded", "failed", "cancelled"])
def test_an_ended_job_cannot_be_cancelled(alice, make_job, state):
    job = make_job(state=state)

    response = api_client(alice).post(f"/api/v1/jobs/{job.pk}/cancel")

    assert response.status_code == 409
    body = error_of(response)
    assert body["state"] == state and "already ended" in body["error"]


def test_cancel_wins_against_a_worker_that_starts_the_job_meanwhile(alice, make_job, monkeypatch):
    """The worker moves queued → running between our read and our move: the cancel still lands."""
    from ocr_app import jobactions

    job = make_job()
    original = Job.move_to
    calls = {"n": 0}

    def racing_move(self, new_state, **fields):
        calls["n"] += 1
        if calls["n"] == 1:
            Job.objects.filter(pk=self.pk).update(state="running")  # the worker got there first
        return original(self, new_state, **fields)

    monkeypatch.setattr(Job, "move_to", racing_move)
    jobactions.cancel_job(job, alice)

    assert Job.objects.get(pk=job.pk).state == "cancelled" and calls["n"] == 2


def test_an_owner_retries_an_ended_job(alice, make_job, sent_tasks, django_capture_on_commit_callbacks):
    job = make_job(state="failed", with_file=True, message="Engine broke", text="old", result={"lines": []},
                   peak_gpu_bytes=5)

    with django_capture_on_commit_callbacks(execute=True):
        response = api_client(alice).post(f"/api/v1/jobs/{job.pk}/retry")

    assert response.status_code == 200
    body = response.json()
    assert body["state"] == "queued" and body["queue_position"] == 1 and body["message"] == ""
    job.refresh_from_db()
    assert job.text == "" and job.result is None and job.peak_gpu_bytes is None and job.started_at is None
    assert [t["args"] for t in sent_tasks] == [[job.pk]]


def test_a_retried_job_joins_the_end_of_the_queue(alice, make_job, sent_tasks):
    done = make_job(state="succeeded", with_file=True)
    waiting = make_job()

    api_client(alice).post(f"/api/v1/jobs/{done.pk}/retry")

    assert Job.objects.get(pk=waiting.pk).queue_position() == 1
    assert Job.objects.get(pk=done.pk).queue_position() == 2


@pytest.mark.parametrize("state", ["queued", "running"])
def test_a_job_that_has_not_ended_cannot_be_retried(alice, make_job, state):
    job = make_job(state=state, with_file=True)

    response = api_client(alice).post(f"/api/v1/jobs/{job.pk}/retry")

    assert response.status_code == 409 and error_of(response)["state"] == state


def test_a_job_whose_upload_is_gone_cannot_be_retried(alice, make_job):
    job = make_job(state="failed")  # no stored file

    response = api_client(alice).post(f"/api/v1/jobs/{job.pk}/retry")

    assert response.status_code == 409 and "upload the file again" in error_of(response)["error"]


def test_another_user_cannot_retry_and_staff_can(bob, staff, make_job, sent_tasks):
    job = make_job(state="failed", with_file=True)

    refused = api_client(bob).post(f"/api/v1/jobs/{job.pk}/retry")
    allowed = api_client(staff).post(f"/api/v1/jobs/{job.pk}/retry")

    assert refused.status_code == 403 and error_of(refused)["code"] == "not_allowed"
    assert allowed.status_code == 200 and allowed.json()["state"] == "queued"


@pytest.mark.parametrize("action", ["cancel", "retry"])
def test_cancel_and_retry_take_post_only(alice, make_job, action):
    job = make_job()

    response = api_client(alice).get(f"/api/v1/jobs/{job.pk}/{action}")

    assert response.status_code == 405 and error_of(response)["code"] == "method_not_allowed"


# -- the pages' Cancel button -------------------------------------------------------------------------


def test_the_cancel_button_cancels_and_goes_back(alice_client, make_job):
    job = make_job()

    response = alice_client.post(f"/jobs/{job.pk}/cancel", {"next": "/history/?state=queued"})

    assert response.status_code == 302 and response["Location"] == "/history/?state=queued"
    assert Job.objects.get(pk=job.pk).state == "cancelled"
    page = alice_client.get(response["Location"]).content.decode()
    assert f"Job {job.pk}" in page and "was cancelled" in page


def test_the_cancel_button_goes_back_only_to_this_site(alice_client, make_job):
    job = make_job()

    response = alice_client.post(f"/jobs/{job.pk}/cancel", {"next": "https://evil.example/"})

    assert response["Location"] == f"/jobs/{job.pk}/"


def test_the_cancel_button_of_another_users_job_does_nothing(client, bob, make_job):
    job = make_job()
    client.force_login(bob)

    response = client.post(f"/jobs/{job.pk}/cancel", follow=True)

    assert Job.objects.get(pk=job.pk).state == "queued"
    assert "Only alice" in response.content.decode()


def test_the_cancel_button_needs_post(alice_client, make_job):
    job = make_job()

    assert alice_client.get(f"/jobs/{job.pk}/cancel").status_code == 405


def test_the_job_page_has_a_cancel_button_for_the_owner_while_the_job_can_be_cancelled(alice_client, make_job):
    queued = make_job()
    done = make_job(state="succeeded")

    assert f'action="/jobs/{queued.pk}/cancel"' in alice_client.get(f"/jobs/{queued.pk}/").content.decode()
    assert "/cancel" not in alice_client.get(f"/jobs/{done.pk}/").content.decode()


def test_the_history_shows_cancel_buttons_on_the_users_own_waiting_jobs_only(client, bob, make_job, make_user):
    mine, theirs, ended = make_job(owner=bob), make_job(), make_job(owner=bob, state="failed")
    client.force_login(bob)

    page = client.get("/history/").content.decode()

    assert f'action="/jobs/{mine.pk}/cancel"' in page
    assert f'action="/jobs/{theirs.pk}/cancel"' not in page and f'action="/jobs/{ended.pk}/cancel"' not in page
    staff = make_user("carol", is_staff=True)
    client.force_login(staff)
    assert f'action="/jobs/{theirs.pk}/cancel"' in client.get("/history/").content.decode()


def test_every_page_links_to_the_api_docs_and_the_profile(alice_client):
    page = alice_client.get("/history/").content.decode()

    assert 'href="/api/docs/">API</a>' in page and 'href="/profile/"' in page
