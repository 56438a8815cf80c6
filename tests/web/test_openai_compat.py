"""POST /v1/chat/completions takes what dots.ocr's client sends to vLLM, makes one job in the shared
queue, and answers like vLLM when it ends; GET /v1/models names dots.ocr. The worker's part is played
here by a stand-in for the wait that finishes the job (the real worker runs it in
tests/integration/test_api_live.py)."""

from __future__ import annotations

import base64
import copy
import json

import pytest
from asgiref.sync import sync_to_async
from django.test import Client
from PIL import Image

from core.dots.prompts import PROMPTS
from ocr_app.api import openai as openai_endpoint
from ocr_app.models import ApiToken, Job
from tests.web.api_support import api_client, token_for
from tests.web.conftest import image_bytes
from workers.backends.vllm.client import VllmClient

pytestmark = pytest.mark.django_db


def dots_request(mode: str = "text", stream: bool = False, **extra) -> dict:
    """The body dots.ocr's client sends, built by the vLLM backend's own client code."""
    image = Image.new("RGB", (64, 48), "white")
    body = VllmClient("http://vllm:8000").request_body(image, PROMPTS[mode], 4096, stream=stream)
    body.update(extra)
    return body


@pytest.fixture
def worker(monkeypatch):
    """Stands in for the wait: the job "runs" and ends as told."""
    outcome = {"state": "succeeded", "text": "Hello from the page", "details": {}, "calls": []}

    def finish(job_id):
        job = Job.objects.get(pk=job_id)
        outcome["calls"].append(job_id)
        if outcome["state"] is None:
            return  # still queued when the wait gives up
        job.move_to("running")
        if outcome["state"] == "succeeded":
            result = {"details": outcome["details"], **({"page": outcome["page"]} if outcome.get("page") else {})}
            job.move_to("succeeded", text=outcome["text"], result=result)
        else:
            job.move_to(outcome["state"], message="The engine failed on this page.")

    async def fake_wait(job_id, timeout):
        await sync_to_async(finish)(job_id)

    monkeypatch.setattr(openai_endpoint, "wait_until_ended", fake_wait)
    return outcome


@pytest.fixture
def openai(alice):
    return api_client(alice)


def chat(client, body, **headers):
    return client.post("/v1/chat/completions", json.dumps(body), content_type="application/json", **headers)


def openai_error(response) -> dict:
    body = response.json()
    assert set(body) == {"error"} and {"message", "type", "param", "code"} <= set(body["error"]), body
    return body["error"]


def test_it_answers_a_dots_ocr_request_in_the_chat_completion_format(openai, worker, alice):
    response = chat(openai, dots_request(model="model"))

    assert response.status_code == 200
    body = response.json()
    job = Job.objects.get()
    assert body["object"] == "chat.completion" and body["id"] == f"chatcmpl-ocrdash-{job.pk}"
    assert body["model"] == "model" and isinstance(body["created"], int)
    assert body["choices"] == [{"index": 0, "message": {"role": "assistant", "content": "Hello from the page"},
                                "finish_reason": "stop", "logprobs": None}]
    assert body["usage"] == {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    assert response["X-Ocrdash-Job"].endswith(f"/jobs/{job.pk}/")
    assert job.owner == alice and job.original_name.startswith("chat-completion-")


def test_the_job_is_in_the_shared_history(openai, worker, bob):
    chat(openai, dots_request())

    page = Client()
    page.force_login(bob)
    listing = page.get("/history/").content.decode()
    api_listing = api_client(bob).get("/api/v1/jobs").json()["results"]

    job = Job.objects.get()
    assert job.original_name in listing
    assert [j["id"] for j in api_listing] == [job.pk] and api_listing[0]["owner"] == "alice"


def test_it_records_the_mode_the_prompt_asked_for_and_the_sampling(openai, worker):
    chat(openai, dots_request("layout_all", temperature=0.1, top_p=0.9))

    origin = Job.objects.get().origin
    assert origin.via == "openai" and origin.mode == "layout_all"
    assert origin.options["max_tokens"] == 4096 and origin.options["temperature"] == 0.1
    assert origin.options["served_mode"] == "layout_all" and Job.objects.get().mode == "layout_all"


def test_it_reads_a_grounding_prompt_and_its_box(openai, worker):
    body = dots_request()
    text_part(body)["text"] = "<|img|><|imgpad|><|endofimg|>" + PROMPTS["grounding"] + "[1, 2, 30, 40]"

    assert chat(openai, body).status_code == 200
    job = Job.objects.get()
    assert job.origin.mode == job.mode == "grounding" and job.origin.options["sent_bbox"] == [1, 2, 30, 40]
    # The box was in the pixels the model sees (64×48 is seen as 56×56); the region is in the image's.
    assert job.region == [1, 2, 34, 34]


@pytest.mark.parametrize(
    "change",
    [
        lambda b: b.pop("model"),
        lambda b: b.update(model="rednote-hilab/dots.ocr"),
        lambda b: b.update(max_tokens=100) or b.pop("max_completion_tokens"),
        lambda b: b["messages"][0]["content"].reverse(),  # prompt first, image second
        lambda b: b["messages"][0]["content"][1].update(text=PROMPTS["text"]),  # without the placeholder
        lambda b: b["messages"][0]["content"][0].update(image_url=b["messages"][0]["content"][0]["image_url"]["url"]),
        lambda b: b["messages"].insert(0, {"role": "system", "content": "You are an OCR engine."}),
        lambda b: b.update(n=1, temperature=0, top_p=1),
    ],
)
def test_it_accepts_the_shapes_clients_send(openai, worker, change):
    body = dots_request()
    change(body)

    response = chat(openai, body)

    assert response.status_code == 200, response.content
    assert response.json()["choices"][0]["message"]["content"] == "Hello from the page"


def test_jpeg_and_webp_data_urls_work_too(openai, worker):
    for fmt, mime in (("JPEG", "image/jpeg"), ("WEBP", "image/webp")):
        body = dots_request()
        data = base64.b64encode(image_bytes(fmt)).decode()
        body["messages"][0]["content"][0]["image_url"]["url"] = f"data:{mime};base64,{data}"
        assert chat(openai, body).status_code == 200
    assert [j.image_format for j in Job.objects.order_by("pk")] == ["JPEG", "WebP"]


def test_usage_and_finish_reason_come_from_the_backend(openai, worker):
    worker["details"] = {"prompt_tokens": 812, "new_tokens": 64, "hit_token_limit": True}

    body = chat(openai, dots_request()).json()

    assert body["usage"] == {"prompt_tokens": 812, "completion_tokens": 64, "total_tokens": 876}
    assert body["choices"][0]["finish_reason"] == "length"


def test_vllm_usage_is_passed_on(openai, worker):
    worker["details"] = {"usage": {"prompt_tokens": 10, "completion_tokens": 5}, "finish_reason": "stop"}

    body = chat(openai, dots_request()).json()

    assert body["usage"]["total_tokens"] == 15 and body["choices"][0]["finish_reason"] == "stop"


def test_streaming_answers_one_chunk_then_done(openai, worker):
    response = chat(openai, dots_request(stream=True))

    assert response.status_code == 200 and response["Content-Type"] == "text/event-stream"
    events = [line[len("data: "):] for line in response.content.decode().split("\n\n") if line]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert chunks[0]["object"] == "chat.completion.chunk"
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": "Hello from the page"}
    assert chunks[0]["choices"][0]["finish_reason"] == "stop"
    # dots.ocr's request asks for the usage (stream_options.include_usage): it comes last, with no choices.
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] == 0
    assert len(chunks) == 2


def test_streaming_without_usage_has_just_the_one_chunk(openai, worker):
    body = dots_request(stream=True)
    body.pop("stream_options")

    events = [e for e in chat(openai, body).content.decode().split("\n\n") if e]

    assert len(events) == 2 and events[1] == "data: [DONE]"


# -- errors -----------------------------------------------------------------------------------------


def broken(mutate) -> dict:
    body = dots_request()
    mutate(body)
    return body


def image_part(body) -> dict:
    return body["messages"][0]["content"][0]


def text_part(body) -> dict:
    return body["messages"][0]["content"][1]


@pytest.mark.parametrize(
    ("body", "param", "words"),
    [
        (broken(lambda b: image_part(b)["image_url"].update(url="https://example.com/page.png")),
         "messages[0].content[0].image_url.url", "upload the image as a data URL"),
        (broken(lambda b: image_part(b)["image_url"].update(url="data:image/png;base64,@@@not base64@@@")),
         "messages[0].content[0].image_url.url", "base64 is damaged"),
        (broken(lambda b: image_part(b)["image_url"].update(url="file:///etc/passwd")),
         "messages[0].content[0].image_url.url", "must be a data URL"),
        (broken(lambda b: image_part(b)["image_url"].update(
            url="data:image/png;base64," + base64.b64encode(b"just text").decode())),
         "messages[0].content[0].image_url.url", "not an image ocrdash can read"),
        (broken(lambda b: image_part(b)["image_url"].update(
            url="data:image/x-portable-pixmap;base64," + base64.b64encode(image_bytes("PPM")).decode())),
         "messages[0].content[0].image_url.url", "PPM images are not accepted"),
        (broken(lambda b: b["messages"][0]["content"].pop(0)), "messages[0].content", "exactly one image"),
        (broken(lambda b: b["messages"][0]["content"].append(copy.deepcopy(image_part(b)))),
         "messages[0].content", "has 2"),
        (broken(lambda b: b["messages"][0]["content"].pop(1)), "messages", "no prompt"),
        (broken(lambda b: text_part(b).update(text="Describe this picture as a poem.")), "messages",
         "needs dots.mocr"),
        (broken(lambda b: b["messages"][0].update(content="What is in the image?")), "messages[0].content",
         "must be a list"),
        (broken(lambda b: b["messages"].append({"role": "assistant", "content": "Sure."})), "messages",
         "exactly one user message"),
        (broken(lambda b: b.update(messages=[])), "messages", "one user message"),
        (broken(lambda b: b.update(n=2)), "n", "n must be 1"),
        (broken(lambda b: b.update(stream="yes")), "stream", "true or false"),
        (broken(lambda b: b.update(temperature=5)), "temperature", "from 0 to 2"),
        (broken(lambda b: b.update(max_completion_tokens=0)), "max_completion_tokens", "whole number"),
        (broken(lambda b: b.update(model=42)), "model", "non-empty string"),
        (broken(lambda b: b["messages"][0]["content"].append({"type": "input_audio"})), "messages[0].content[2]",
         "image_url"),
    ],
)
def test_a_bad_request_is_a_400_in_openais_error_shape(openai, worker, body, param, words):
    response = chat(openai, body)

    assert response.status_code == 400
    error = openai_error(response)
    assert error["type"] == "invalid_request_error" and error["param"] == param and words in error["message"]
    assert not Job.objects.exists() and worker["calls"] == []


@pytest.mark.parametrize("raw", ["not json", "[1, 2]", '"text"', "{"])
def test_a_body_that_is_not_a_json_object_is_a_400(openai, raw):
    response = openai.post("/v1/chat/completions", raw, content_type="application/json")

    assert response.status_code == 400 and openai_error(response)["type"] == "invalid_request_error"


def test_a_form_body_is_a_415(openai):
    response = openai.post("/v1/chat/completions", {"model": "x"})

    assert response.status_code == 415 and "JSON" in openai_error(response)["message"]


def test_an_image_over_the_size_limit_is_a_413(openai, worker, settings):
    settings.MAX_UPLOAD_BYTES = 500
    body = dots_request()
    body["messages"][0]["content"][0]["image_url"]["url"] = (
        "data:image/png;base64," + base64.b64encode(image_bytes("PNG", (300, 300), "RGB") * 3).decode()
    )

    response = chat(openai, body)

    assert response.status_code == 413 and openai_error(response)["code"] == "too_large"


def test_no_token_is_a_401_in_openais_shape(client):
    response = chat(client, dots_request())

    assert response.status_code == 401
    error = openai_error(response)
    assert error["type"] == "authentication_error" and "Authorization: Bearer" in error["message"]


def test_a_revoked_token_is_a_401(alice):
    key = token_for(alice)
    ApiToken.objects.get().revoke()

    response = chat(api_client(key=key), dots_request())

    assert response.status_code == 401 and "revoked" in openai_error(response)["message"]


def test_the_browser_session_is_not_enough(alice_client):
    response = chat(alice_client, dots_request())

    assert response.status_code == 401


def test_a_failed_job_is_a_502_saying_why(openai, worker):
    worker["state"] = "failed"

    response = chat(openai, dots_request())

    assert response.status_code == 502
    error = openai_error(response)
    assert error["type"] == "server_error" and "The engine failed on this page." in error["message"]


def test_a_job_cancelled_meanwhile_is_a_409(openai, worker):
    worker["state"] = "cancelled"

    response = chat(openai, dots_request())

    assert response.status_code == 409 and openai_error(response)["code"] == "job_cancelled"


def test_when_the_job_does_not_end_in_time_it_is_cancelled_and_the_answer_is_504(openai, worker, settings):
    worker["state"] = None
    settings.CHAT_COMPLETION_TIMEOUT = 1

    response = chat(openai, dots_request())

    assert response.status_code == 504
    error = openai_error(response)
    assert error["code"] == "timeout" and "within 1 s" in error["message"]
    assert Job.objects.get().state == "cancelled"


def test_the_real_wait_gives_up_after_the_timeout(openai, settings):
    settings.CHAT_COMPLETION_TIMEOUT = 1

    response = chat(openai, dots_request())

    assert response.status_code == 504 and Job.objects.get().state == "cancelled"


# -- /v1/models -------------------------------------------------------------------------------------


def test_models_names_the_configured_model_first_and_the_rest_of_the_catalog(openai):
    body = openai.get("/v1/models").json()

    assert body["object"] == "list" and [m["id"] for m in body["data"]] == ["dots.ocr", "dots.mocr", "dots.mocr-svg"]
    assert body["data"][0]["tasks"] == ["layout_all", "layout_only", "text", "grounding"]


def test_models_needs_a_token(client):
    response = client.get("/v1/models")

    assert response.status_code == 401 and openai_error(response)["type"] == "authentication_error"


# -- dots.mocr's prompts and the answer's format ------------------------------------------------------


def use_model(repo: str) -> None:
    from ocr_app.models import BackendSettings

    cfg = BackendSettings.load()
    cfg.model = repo
    cfg.save()


def test_each_new_prompt_picks_its_task_and_any_other_text_is_a_question():
    svg = openai_endpoint.parse_request(dots_request(
        "text", messages=[{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}},
            {"type": "text", "text": '<|img|><|imgpad|><|endofimg|>Please generate the SVG code based on the '
                                     'image.viewBox="0 0 640 480"'}]}]))  # fmt: skip
    assert svg["mode"] == "image_to_svg"
    for mode in ("web_parsing", "scene_spotting"):
        assert openai_endpoint.parse_request(dots_request(mode))["mode"] == mode
    body = dots_request("text")
    text_part(body)["text"] = "<|img|><|imgpad|><|endofimg|>What is the total on this invoice?"
    body["messages"].insert(0, {"role": "system", "content": "You are a helpful assistant."})
    asked = openai_endpoint.parse_request(body)
    assert (asked["mode"], asked["question"]) == ("question", "What is the total on this invoice?")
    body["messages"][1]["content"][1]["text"] = "<|img|><|imgpad|><|endofimg|> "  # upstream's prompt_general
    assert openai_endpoint.parse_request(body)["question"] == "Please describe the content of this image."


def test_a_layout_prompt_is_answered_with_layout_json_in_the_pixels_the_model_sees(openai, worker):
    page = {"elements": [{"index": 0, "category": "Title", "bbox": [8, 8, 56, 24], "text": "# Hi", "complete": True}],
            "text": "Hi", "mode": "layout_all", "original_size": [64, 48], "sent_size": [64, 48]}
    worker["details"] = {}
    worker["text"] = "Hi"
    worker["page"] = page

    response = chat(openai, dots_request("layout_all"))

    cells = json.loads(response.json()["choices"][0]["message"]["content"])
    # 64×48 is seen as 56×56: x by 56/64, y by 56/48.
    assert cells == [{"bbox": [7, 9, 49, 28], "category": "Title", "text": "# Hi"}]


def test_a_question_runs_as_the_question_task_when_the_model_can_answer_it(openai, worker):
    use_model("rednote-hilab/dots.mocr")
    body = dots_request("text", model="rednote-hilab/dots.mocr")
    text_part(body)["text"] = "<|img|><|imgpad|><|endofimg|>What colour is the page?"
    body["messages"].insert(0, {"role": "system", "content": "You are a helpful assistant."})
    worker["text"] = "White."

    response = chat(openai, body)

    job = Job.objects.get()
    assert (job.mode, job.question) == ("question", "What colour is the page?")
    assert response.json()["choices"][0]["message"]["content"] == "White."
    assert response.json()["model"] == "rednote-hilab/dots.mocr"
