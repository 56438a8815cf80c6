"""dots.mocr's tasks through the API, the worker and the downloads: an upload with each new task runs
end to end (the worker in-process on the shared fake backend answering in each task's documented
format), its results download, a task the configured model cannot run is refused naming the models
that can, and the upload page offers only what the configured model can do."""

from __future__ import annotations

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from ocr_app.models import BackendSettings, Job
from tests.doubles.fake_backend import task_answer
from tests.web.api_support import api_client, error_of
from tests.web.conftest import image_bytes
from workers import tasks

pytestmark = pytest.mark.django_db


def choose_model(repo: str) -> None:
    cfg = BackendSettings.load()
    cfg.model = repo
    cfg.save()


def upload(client, mode: str, **extra):
    data = {"file": SimpleUploadedFile("shot.png", image_bytes("PNG", (120, 80)), "image/png"), "mode": mode, **extra}
    return client.post("/api/v1/jobs", data)


def run(job_id: int) -> Job:
    tasks.run_job.apply(args=[job_id])
    return Job.objects.get(pk=job_id)


@pytest.fixture
def worker(fake_worker, dots_installed):
    return fake_worker(gpu="rtx3060_shared", answer=task_answer)


def result(client, job_id: int, fmt: str):
    return client.get(f"/api/v1/jobs/{job_id}/result", {"format": fmt})


@pytest.mark.parametrize(
    "repo, mode, extra",
    [
        ("rednote-hilab/dots.mocr", "web_parsing", {}),
        ("rednote-hilab/dots.mocr", "scene_spotting", {}),
        ("rednote-hilab/dots.mocr", "question", {"question": "What is the total?"}),
        ("rednote-hilab/dots.mocr-svg", "image_to_svg", {}),
    ],
)
def test_an_api_upload_with_each_new_task_runs_and_its_results_download(worker, alice, repo, mode, extra):
    choose_model(repo)
    client = api_client(alice)
    response = upload(client, mode, **extra)
    assert response.status_code == 202, response.content
    job = run(response.json()["jobs"][0]["id"])

    assert job.state == "succeeded", job.message
    assert worker.fakes.calls[-1].mode == mode
    layout = json.loads(result(client, job.pk, "layout").content)
    page = layout["pages"][0]
    assert page["mode"] == mode and (page["width"], page["height"]) == (120, 80)
    for fmt in ("txt", "md", "html", "json"):
        assert result(client, job.pk, fmt).status_code == 200
    if mode == "web_parsing":
        assert [e["category"] for e in page["elements"]] == ["Title", "Text"]
        assert "Total: 42 EUR" in result(client, job.pk, "md").content.decode()
    elif mode == "scene_spotting":
        # Each text's four corners, in the image's pixels (the fake was sent the image as it is).
        assert [e["text"] for e in page["elements"]] == ["OPEN", "24 HOURS"]
        assert page["elements"][0]["polygon"] == [[2, 2], [117, 4], [117, 26], [2, 24]]
        assert page["elements"][0]["bbox"] == [2, 2, 117, 26]
    elif mode == "question":
        assert worker.fakes.calls[-1].question == "What is the total?" and job.question == "What is the total?"
        assert "The total is 42 EUR" in result(client, job.pk, "txt").content.decode()
    else:
        svg = result(client, job.pk, "svg")
        body = svg.content.decode()
        assert svg.status_code == 200 and svg["Content-Type"] == "image/svg+xml"
        assert "sandbox" in svg["Content-Security-Policy"]
        assert "Total 42" in body and body.rstrip().endswith("</svg>")
        for hostile in ("<script", "onload", "foreignObject", "javascript:", "example.com"):
            assert hostile not in body
        assert page["truncated"] is True


def test_a_task_the_configured_model_cannot_run_is_refused_naming_the_models_that_can(alice):
    client = api_client(alice)  # the default model: dots.ocr
    response = upload(client, "scene_spotting")

    assert response.status_code == 400
    assert "dots.mocr" in error_of(response)["error"] and error_of(response)["code"] == "task_not_supported"
    assert not Job.objects.exists()

    choose_model("rednote-hilab/dots.mocr-svg")
    refused = upload(client, "layout_all")
    assert refused.status_code == 400 and "dots.ocr or dots.mocr" in error_of(refused)["error"]


def test_a_question_needs_its_text_and_only_the_question_task_takes_one(alice):
    choose_model("rednote-hilab/dots.mocr")
    client = api_client(alice)

    assert "needs the question" in error_of(upload(client, "question"))["error"]
    assert "not 'web_parsing'" in error_of(upload(client, "web_parsing", question="Why?"))["error"]
    assert "2000 characters" in error_of(upload(client, "question", question="x" * 2001))["error"]
    assert not Job.objects.exists()


def test_the_upload_page_offers_only_what_the_configured_model_can_do(alice_client):
    page = alice_client.get("/upload/").content.decode()
    assert 'value="layout_all"' in page and 'value="scene_spotting"' not in page

    choose_model("rednote-hilab/dots.mocr-svg")
    page = alice_client.get("/upload/").content.decode()
    assert 'value="image_to_svg"' in page and 'value="layout_all"' not in page


def test_the_job_page_shows_the_svg_only_as_an_image_and_scene_outlines_as_polygons(worker, alice, alice_client):
    choose_model("rednote-hilab/dots.mocr")
    client = api_client(alice)
    scene = run(upload(client, "scene_spotting").json()["jobs"][0]["id"])
    page = alice_client.get(f"/jobs/{scene.pk}/").content.decode()
    assert 'points="2,2 117,4 117,26 2,24"' in page

    svg_job = run(upload(client, "image_to_svg").json()["jobs"][0]["id"])
    page = alice_client.get(f"/jobs/{svg_job.pk}/").content.decode()
    assert f'<img id="svg-image" src="/api/v1/jobs/{svg_job.pk}/result?format=svg&amp;page=1"' in page
    assert "Total 42" not in page.split('id="svg-result"')[1].split("</figure>")[0]  # never inlined


def test_manage_models_json_lists_the_catalog_with_the_chosen_model_and_what_is_present(settings, tmp_path):
    from io import StringIO

    from django.core.management import call_command

    settings.OCRDASH_MODEL_DIR = str(tmp_path)
    snapshot = tmp_path / "huggingface" / "models--rednote-hilab--dots.mocr-svg" / "snapshots" / ("b" * 40)
    snapshot.mkdir(parents=True)
    (snapshot / "model.safetensors").write_bytes(b"x")
    choose_model("rednote-hilab/dots.mocr")
    out = StringIO()
    call_command("models", "--json", stdout=out)

    listed = {m["name"]: m for m in json.loads(out.getvalue())}
    assert list(listed) == ["dots.ocr", "dots.mocr", "dots.mocr-svg"]
    assert {"web_parsing", "scene_spotting", "question"} <= set(listed["dots.mocr"]["tasks"])
    assert listed["dots.mocr-svg"]["tasks"] == ["image_to_svg"]
    assert [m["present"] for m in listed.values()] == [False, False, True]
    assert [m["chosen"] for m in listed.values()] == [False, True, False]
    assert all({"repo", "revision", "sampling", "weights_bytes", "vllm_image"} <= set(m) for m in listed.values())


def test_the_admin_chooses_a_catalog_model_and_the_upload_page_follows(client, make_user, alice_client):
    make_user("root", is_staff=True, is_superuser=True)
    client.login(username="root", password="secret-pass-123")
    cfg = BackendSettings.load()
    form = {
        f: getattr(cfg, f)
        for f in (
            "backend",
            "model",
            "revision",
            "vllm_url",
            "reserve_mib",
            "reserve_percent",
            "max_pixels",
            "max_new_tokens",
        )
    }
    form.update(allow_vllm="on", allow_fp8="on", catalog_model="dots.mocr")

    response = client.post("/admin/ocr_app/backendsettings/1/change/", form)

    assert response.status_code == 302, response.content.decode()[:2000]
    assert BackendSettings.load().model == "rednote-hilab/dots.mocr"
    page = client.get("/admin/ocr_app/backendsettings/1/change/").content.decode()
    assert "dots.mocr: Full layout" in page and "Scene text" in page
    assert 'value="scene_spotting"' in alice_client.get("/upload/").content.decode()


def test_staff_cannot_change_the_model_through_the_catalog_choice(client, make_user):
    from django.contrib.auth.models import Permission

    carol = make_user("carol", is_staff=True)
    carol.user_permissions.add(
        *Permission.objects.filter(codename__in=["change_backendsettings", "view_backendsettings"])
    )
    client.login(username="carol", password="secret-pass-123")
    cfg = BackendSettings.load()
    form = {f: getattr(cfg, f) for f in ("backend", "reserve_mib", "reserve_percent", "max_pixels", "max_new_tokens")}
    form.update(allow_vllm="on", allow_fp8="on", catalog_model="dots.mocr-svg")

    response = client.post("/admin/ocr_app/backendsettings/1/change/", form)

    assert response.status_code == 302
    assert BackendSettings.load().model == "rednote-hilab/dots.ocr"
    assert "catalog_model" not in client.get("/admin/ocr_app/backendsettings/1/change/").content.decode()


def test_the_planner_is_given_the_chosen_models_facts():
    from ocr_app import backendconfig

    choose_model("rednote-hilab/dots.mocr-svg")
    assert backendconfig.planner_settings(BackendSettings.load()).facts.name == "rednote-hilab/dots.mocr-svg"
