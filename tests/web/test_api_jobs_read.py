"""Reading jobs through the API: the list with its filters and cursor pages, one job with its queue
position, ETA, plan and GPU memory, its result in each format, the GPU and the backend."""

from __future__ import annotations

import json
from datetime import timedelta
from urllib.parse import parse_qs, urlparse

import pytest
from django.utils import timezone

from ocr_app import livestate
from ocr_app.models import Job, JobOrigin
from tests.web.api_support import api_client, error_of

pytestmark = pytest.mark.django_db


@pytest.fixture
def api(alice):
    return api_client(alice)


def ids(response) -> list[int]:
    return [j["id"] for j in response.json()["results"]]


# -- the list ---------------------------------------------------------------------------------------


def test_it_lists_every_users_jobs_newest_first(api, make_jobs, alice, bob):
    jobs = make_jobs(3, owners=[alice, bob])

    response = api.get("/api/v1/jobs")

    assert response.status_code == 200
    assert ids(response) == [j.pk for j in reversed(jobs)]
    assert {j["owner"] for j in response.json()["results"]} == {"alice", "bob"}
    assert response.json()["next"] is None and response.json()["previous"] is None


def test_it_gives_queued_jobs_their_place_in_the_queue(api, make_job):
    first, second = make_job(), make_job()
    make_job(state="succeeded")

    results = api.get("/api/v1/jobs").json()["results"]

    positions = {j["id"]: j["queue_position"] for j in results}
    assert positions[first.pk] == 1 and positions[second.pk] == 2
    assert list(positions.values()).count(None) == 1


def test_the_list_costs_a_fixed_number_of_queries(api, make_jobs, alice, bob, django_assert_max_num_queries):
    make_jobs(60, owners=[alice, bob])

    with django_assert_max_num_queries(6):
        response = api.get("/api/v1/jobs")

    assert len(response.json()["results"]) == 50


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("state=failed", ["failed.png"]),
        ("backend=vllm", ["vllm.png"]),
        ("owner=bob", ["bobs.png"]),
        ("q=invoice", ["invoice-scan.png", "text-match.png"]),
        ("q=INVOICE&state=succeeded", ["text-match.png"]),
    ],
)
def test_it_filters(api, make_job, bob, query, expected):
    make_job(name="failed.png", state="failed")
    make_job(name="vllm.png", state="succeeded", backend="vllm")
    make_job(name="bobs.png", owner=bob)
    make_job(name="invoice-scan.png")
    make_job(name="text-match.png", state="succeeded", text="Invoice 4711")

    response = api.get(f"/api/v1/jobs?{query}")

    assert response.status_code == 200
    assert sorted(j["name"] for j in response.json()["results"]) == expected


def test_it_filters_by_creation_date(api, make_job):
    now = timezone.now()
    old = make_job(name="old.png", created_at=now - timedelta(days=3))
    mid = make_job(name="mid.png", created_at=now - timedelta(days=1))
    make_job(name="new.png", created_at=now)
    after = (now - timedelta(days=2)).isoformat()
    before = (now - timedelta(hours=1)).isoformat()

    response = api.get("/api/v1/jobs", {"created_after": after, "created_before": before})
    by_date = api.get("/api/v1/jobs", {"created_before": (now - timedelta(days=2)).date().isoformat()})

    assert ids(response) == [mid.pk]
    assert ids(by_date) == [old.pk]


@pytest.mark.parametrize(
    ("query", "param"),
    [
        ("state=done", "state"),
        ("backend=tpu", "backend"),
        ("created_after=yesterday", "created_after"),
        ("created_before=2026-13-45", "created_before"),
        ("created_after=2026-02-01&created_before=2026-01-01", "created_before"),
        ("limit=0", "limit"),
        ("limit=500", "limit"),
        ("limit=ten", "limit"),
        ("q=" + "x" * 201, "q"),
    ],
)
def test_a_bad_filter_is_a_400_naming_it(api, make_job, query, param):
    make_job()

    response = api.get(f"/api/v1/jobs?{query}")

    assert response.status_code == 400
    body = error_of(response)
    assert param in body["field_errors"] and param in body["error"]


def test_cursor_pages_walk_every_job_once_forward_and_back(api, make_jobs, alice):
    jobs = make_jobs(7, owners=[alice])
    # Two jobs at the same instant: the cursor must still tell them apart.
    Job.objects.filter(pk__in=[jobs[2].pk, jobs[3].pk]).update(created_at=jobs[2].created_at)

    seen, pages, url = [], [], "/api/v1/jobs?limit=3"
    while url:
        body = api.get(url).json()
        pages.append([j["id"] for j in body["results"]])
        seen += pages[-1]
        url = body["next"]
    back = api.get(api.get(api.get("/api/v1/jobs?limit=3").json()["next"]).json()["previous"]).json()

    assert sorted(seen) == sorted(j.pk for j in jobs) and len(seen) == 7
    assert [len(p) for p in pages] == [3, 3, 1]
    assert [j["id"] for j in back["results"]] == pages[0]


def test_cursor_links_keep_the_filters(api, make_jobs, alice):
    make_jobs(4, owners=[alice], state="failed")
    make_jobs(2, owners=[alice])

    first = api.get("/api/v1/jobs?state=failed&limit=3").json()
    query = parse_qs(urlparse(first["next"]).query)
    second = api.get(first["next"]).json()

    assert query["state"] == ["failed"] and query["limit"] == ["3"]
    assert {j["state"] for j in first["results"] + second["results"]} == {"failed"}
    assert len(second["results"]) == 1


@pytest.mark.parametrize("cursor", ["garbage", "cD0yMDI2", "%%%", ""])
def test_a_bad_cursor_is_a_400(api, make_job, cursor):
    make_job()

    response = api.get("/api/v1/jobs", {"cursor": cursor})

    if cursor == "":
        assert response.status_code == 200  # an empty cursor is the first page
    else:
        assert response.status_code == 400
        assert error_of(response)["code"] == "bad_cursor"


# -- one job ----------------------------------------------------------------------------------------


def finished(make_job, backend="rapidocr", seconds=2.0, **fields):
    end = timezone.now()
    return make_job(state="succeeded", backend=backend, started_at=end - timedelta(seconds=seconds),
                    finished_at=end, **fields)


def test_one_job_has_its_state_times_plan_gpu_memory_and_origin(api, make_job):
    job = finished(
        make_job,
        plan={"backend": "rapidocr", "reasons": ["No NVIDIA GPU visible"]},
        peak_gpu_bytes=123,
        gpu_free_at_start_bytes=456,
        worker="gpu@host",
        text="Hello",
        text_preview="Hello",
    )
    JobOrigin.objects.create(job=job, via="openai", mode="layout_all")

    body = api.get(f"/api/v1/jobs/{job.pk}").json()

    assert body["state"] == "succeeded" and body["ended"] is True and body["queue_position"] is None
    assert body["plan"]["reasons"] == ["No NVIDIA GPU visible"]
    assert body["gpu"] == {"peak_bytes": 123, "free_at_start_bytes": 456}
    assert body["worker"] == "gpu@host" and body["ran_seconds"] == pytest.approx(2.0)
    assert body["origin"] == {"via": "openai", "mode": "layout_all"}
    assert body["eta"] == {"seconds": None, "at": None, "basis": "the job has ended"}
    assert body["permissions"] == {"cancel": False, "retry": True}


def test_the_eta_of_a_queued_job_counts_the_jobs_ahead_at_the_median_pace(api, make_job):
    for seconds in (2.0, 4.0, 30.0):
        finished(make_job, seconds=seconds)
    make_job()
    mine = make_job()

    eta = api.get(f"/api/v1/jobs/{mine.pk}").json()["eta"]

    assert eta["seconds"] == pytest.approx(8.0, abs=0.2)  # 2 jobs × the median of 4 s
    assert "median of the last 3 rapidocr jobs: 4.0 s" in eta["basis"]
    assert eta["at"] is not None


def test_the_eta_of_a_running_job_is_what_is_left_of_the_median(api, make_job):
    for seconds in (10.0, 10.0):
        finished(make_job, seconds=seconds)
    running = make_job(state="running", backend="rapidocr", started_at=timezone.now() - timedelta(seconds=4))

    eta = api.get(f"/api/v1/jobs/{running.pk}").json()["eta"]

    assert eta["seconds"] == pytest.approx(6.0, abs=0.5)


def test_without_history_there_is_no_eta_and_it_says_why(api, make_job):
    job = make_job()

    eta = api.get(f"/api/v1/jobs/{job.pk}").json()["eta"]

    assert eta["seconds"] is None and "no finished" in eta["basis"]


def test_another_users_job_is_readable_but_not_changeable(api, make_job, bob):
    job = make_job(owner=bob)

    body = api.get(f"/api/v1/jobs/{job.pk}").json()

    assert body["owner"] == "bob" and body["permissions"] == {"cancel": False, "retry": False}


@pytest.mark.parametrize("path", ["/api/v1/jobs/999", "/api/v1/jobs/999/result", "/api/v1/jobs/999/wait?timeout=0"])
def test_a_missing_job_is_a_404_in_json(api, path):
    response = api.get(path)

    assert response.status_code == 404
    assert error_of(response) == {"error": "There is no job 999.", "code": "not_found"}


# -- results ----------------------------------------------------------------------------------------


@pytest.fixture
def done(make_job):
    return finished(
        make_job,
        name="letter.png",
        text="Dear team,\nthe GPU is free.",
        text_preview="Dear team,",
        result={"lines": [{"text": "Dear team,", "box": [[0, 0], [9, 0], [9, 9], [0, 9]], "score": 0.9}],
                "image_size": [40, 30]},
    )


def test_the_text_result(api, done):
    response = api.get(f"/api/v1/jobs/{done.pk}/result?format=txt")

    assert response.status_code == 200
    assert response["Content-Type"] == "text/plain; charset=utf-8"
    assert response.content.decode() == "Dear team,\nthe GPU is free."
    assert f"letter-{done.pk}.txt" in response["Content-Disposition"]


@pytest.mark.parametrize("query", ["?format=json", ""])
def test_the_json_result_is_the_default(api, done, query):
    response = api.get(f"/api/v1/jobs/{done.pk}/result{query}")

    assert response.status_code == 200 and response["Content-Type"] == "application/json"
    body = json.loads(response.content)
    assert body["text"] == "Dear team,\nthe GPU is free."
    assert body["result"]["lines"][0]["text"] == "Dear team,"
    assert body["file"]["name"] == "letter.png" and body["job"]["state"] == "succeeded"


def test_it_sends_the_text_whatever_the_accept_header_says(api, done):
    response = api.get(f"/api/v1/jobs/{done.pk}/result?format=txt", HTTP_ACCEPT="text/plain")

    assert response.status_code == 200 and response.content.startswith(b"Dear team")


@pytest.mark.parametrize("fmt", ["PDF", "TXT", "docx", ""])
def test_an_unknown_format_is_a_400_listing_the_available_ones(api, done, fmt):
    response = api.get(f"/api/v1/jobs/{done.pk}/result", {"format": fmt})

    assert response.status_code == 400
    body = error_of(response)
    assert body["code"] == "unknown_format"
    assert body["available"] == ["txt", "md", "md_nohf", "html", "json", "layout", "pdf", "svg"]
    assert "available: txt, md, md_nohf, html, json, layout, pdf, svg" in body["error"]


def test_the_markdown_result_has_each_line_as_a_paragraph(api, done):
    response = api.get(f"/api/v1/jobs/{done.pk}/result?format=md")

    assert response.status_code == 200 and response["Content-Type"] == "text/markdown; charset=utf-8"
    assert response.content.decode().strip() == "Dear team,"
    assert f"letter-{done.pk}.md" in response["Content-Disposition"]


def test_the_html_result_is_a_page_with_the_text_escaped(api, make_job):
    job = finished(
        make_job,
        name="x.png",
        text="<script>alert(1)</script>",
        result={"lines": [{"text": "<script>alert(1)</script>", "box": [[0, 0], [9, 0], [9, 9], [0, 9]],
                           "score": 0.9}], "image_size": [40, 30]},
    )

    response = api.get(f"/api/v1/jobs/{job.pk}/result?format=html")

    page = response.content.decode()
    assert response.status_code == 200 and page.startswith("<!DOCTYPE html>")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "<script>" not in page


@pytest.mark.parametrize(
    ("state", "words"),
    [("queued", "still queued"), ("running", "still running"), ("failed", "it failed: Engine broke"),
     ("cancelled", "cancelled")],
)
def test_a_job_without_a_result_is_a_409_saying_why(api, make_job, state, words):
    job = make_job(state=state, message="Engine broke" if state == "failed" else "")

    response = api.get(f"/api/v1/jobs/{job.pk}/result?format=txt")

    assert response.status_code == 409
    body = error_of(response)
    assert words in body["error"] and body["state"] == state


# -- the GPU and the backend ------------------------------------------------------------------------


def test_gpu_before_the_monitor_has_sent_a_sample(api, redis_client):
    redis_client.delete(livestate.GPU_LATEST)

    body = api.get("/api/v1/gpu").json()

    assert body["sample"] is None and "Waiting for the GPU monitor" in body["message"]


def test_gpu_gives_the_latest_sample(api, redis_client):
    import time

    sample = {"taken_at": time.time() - 2, "driver_version": "550.54.15", "error": None,
              "devices": [{"index": 0, "name": "RTX 3060", "total": 12, "used": 6, "free": 6, "processes": []}]}
    livestate.push_gpu_sample(sample)
    try:
        body = api.get("/api/v1/gpu").json()
    finally:
        redis_client.delete(livestate.GPU_LATEST, livestate.GPU_HISTORY)

    assert body["sample"]["devices"][0]["name"] == "RTX 3060"
    assert 1.5 < body["age_seconds"] < 30 and body["message"] == ""


def test_gpu_when_redis_does_not_answer_is_a_503(api, monkeypatch):
    def down():
        raise ConnectionError("Redis is away")

    monkeypatch.setattr(livestate, "latest_gpu_sample", down)

    response = api.get("/api/v1/gpu")

    assert response.status_code == 503 and "Redis" in error_of(response)["error"]


def test_backend_gives_the_settings_the_plan_and_the_workers(api, redis_client):
    livestate.update_worker("gpu@test-api", backend_status={"state": "ready", "backend": "rapidocr",
                                                            "detail": "", "progress": None, "memory_bytes": 0,
                                                            "plan": {"backend": "rapidocr"}}, gpu_index=0)
    try:
        body = api.get("/api/v1/backend").json()
    finally:
        redis_client.hdel(livestate.WORKERS, "gpu@test-api")

    assert body["settings"]["backend"] == "auto" and body["settings"]["max_new_tokens"] == 24_000
    assert (body["plan"] or body["plan_refused"]) and body["live_state_problem"] == ""
    worker = next(w for w in body["workers"] if w["hostname"] == "gpu@test-api")
    assert worker["state"] == "ready" and worker["backend"] == "rapidocr" and worker["gpu_index"] == 0


def test_backend_without_redis_still_answers_with_the_settings(api, monkeypatch):
    def down():
        raise ConnectionError("Redis is away")

    monkeypatch.setattr(livestate, "latest_gpu_sample", down)

    body = api.get("/api/v1/backend").json()

    assert body["settings"]["backend"] == "auto" and body["workers"] == []
    assert "Redis" in body["live_state_problem"]


@pytest.mark.parametrize(
    ("path", "words"),
    [
        ("/api/v1/jobs/abc", "There is no API endpoint /api/v1/jobs/abc"),
        ("/api/v1/nothing", "/api/docs/"),
        ("/api/v1/jobs/", "Did you mean /api/v1/jobs (no slash at the end)?"),
    ],
)
def test_an_unknown_api_address_is_a_404_in_json(api, path, words):
    response = api.get(path)

    assert response.status_code == 404
    assert words in error_of(response)["error"]
