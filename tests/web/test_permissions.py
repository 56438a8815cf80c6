"""Who may see what: everything behind a login, history shared by the team, admin for staff only."""

from __future__ import annotations

import pytest

from ocr_app.models import Job
from tests.web.conftest import image_bytes, stored_files, upload_file

pytestmark = pytest.mark.django_db

JOB_PAGES = [
    "/jobs/{id}/",
    "/jobs/{id}/image",
    "/jobs/{id}/original",
    "/jobs/{id}/thumbnail.jpg",
    "/jobs/{id}/text.txt",
    "/jobs/{id}/result.json",
    "/jobs/{id}/status.json",
]


@pytest.fixture
def secret_job(make_job):
    return make_job(
        name="salary-review.png",
        with_file=True,
        state="succeeded",
        text="Confidential: raise for Carol",
        text_preview="Confidential: raise for Carol",
        result={"lines": [{"text": "Confidential", "box": [[0, 0], [9, 0], [9, 9], [0, 9]], "score": 0.9}]},
    )


def assert_sent_to_login(response, path: str) -> None:
    assert response.status_code == 302
    assert response["Location"] == f"/login/?next={path}"
    body = b"".join(response.streaming_content) if response.streaming else response.content
    assert b"salary" not in body and b"Confidential" not in body
    assert not body.startswith(b"\x89PNG")


@pytest.mark.parametrize("path", ["/", "/history/", "/history/?q=Confidential"])
def test_it_sends_an_anonymous_visitor_of_a_page_to_login(client, secret_job, path):
    response = client.get(path)

    assert_sent_to_login(response, path.replace("?", "%3F").replace("=", "%3D"))


@pytest.mark.parametrize("template", JOB_PAGES)
def test_it_sends_an_anonymous_visitor_of_a_job_to_login(client, secret_job, template):
    path = template.format(id=secret_job.pk)

    response = client.get(path)

    assert_sent_to_login(response, path)


@pytest.mark.parametrize("template", JOB_PAGES)
def test_a_script_asking_for_json_gets_a_401_it_can_read(client, secret_job, template):
    response = client.get(template.format(id=secret_job.pk), headers={"Accept": "application/json"})

    assert response.status_code == 401
    assert response.json() == {"error": "Log in first."}


@pytest.mark.parametrize("template", JOB_PAGES)
def test_it_answers_alike_for_a_job_that_does_not_exist(client, secret_job, template):
    path = template.format(id=secret_job.pk + 1000)

    response = client.get(path)

    assert_sent_to_login(response, path)


def test_it_refuses_an_anonymous_upload_and_stores_nothing(client, sent_tasks, media_root):
    response = client.post(
        "/upload/", {"files": [upload_file("a.png", image_bytes())]}, headers={"Accept": "application/json"}
    )

    assert response.status_code == 401
    assert not Job.objects.exists()
    assert stored_files(media_root) == []
    assert sent_tasks == []


def test_it_lets_the_login_page_through(client):
    response = client.get("/login/")

    assert response.status_code == 200
    assert b'name="password"' in response.content


def test_it_shows_a_colleagues_job_with_the_owners_name(client, bob, secret_job):
    client.force_login(bob)

    history = client.get("/history/").content.decode()
    assert "salary-review.png" in history
    assert "<td>alice</td>" in history

    detail = client.get(f"/jobs/{secret_job.pk}/").content.decode()
    assert "<dt>Owner</dt><dd>alice</dd>" in detail
    assert "Confidential: raise for Carol" in detail


@pytest.mark.parametrize("template", JOB_PAGES)
def test_it_serves_every_job_endpoint_to_a_colleague(client, bob, secret_job, template):
    client.force_login(bob)

    response = client.get(template.format(id=secret_job.pk))

    assert response.status_code == 200


def test_it_answers_404_for_a_missing_job_once_logged_in(alice_client, secret_job):
    for template in JOB_PAGES:
        response = alice_client.get(template.format(id=secret_job.pk + 1000))
        assert response.status_code == 404, template


def test_it_keeps_a_user_who_is_not_staff_out_of_the_admin(client, bob, secret_job):
    client.force_login(bob)

    index = client.get("/admin/")
    changelist = client.get("/admin/ocr_app/job/")

    assert index.status_code == 302
    assert index["Location"].startswith("/admin/login/")
    assert changelist.status_code == 302
    assert changelist["Location"].startswith("/admin/login/")
    assert b"salary" not in changelist.content


def test_it_keeps_an_anonymous_visitor_out_of_the_admin(client, secret_job):
    response = client.get(f"/admin/ocr_app/job/{secret_job.pk}/change/")

    assert response.status_code == 302
    assert b"salary" not in response.content


def test_it_shows_jobs_in_the_admin_to_a_superuser(client, django_user_model, secret_job):
    admin = django_user_model.objects.create_superuser("root", "root@example.com", "secret-pass-123")
    client.force_login(admin)

    response = client.get("/admin/ocr_app/job/")

    assert response.status_code == 200
    assert "salary-review.png" in response.content.decode()


def test_it_offers_no_way_to_add_a_job_in_the_admin(client, django_user_model):
    admin = django_user_model.objects.create_superuser("root", "root@example.com", "secret-pass-123")
    client.force_login(admin)

    response = client.get("/admin/ocr_app/job/add/")

    assert response.status_code == 403


def test_it_logs_out_only_by_post(alice_client):
    assert alice_client.get("/logout/").status_code == 405

    response = alice_client.post("/logout/")

    assert response.status_code == 302
    assert_sent_to_login(alice_client.get("/history/"), "/history/")
