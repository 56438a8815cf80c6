"""The vLLM backend against a real OpenAI-compatible HTTP server and a double of the Docker engine."""

from __future__ import annotations

import json
import os
import threading
import time

import docker.errors
import docker.types
import pytest
from PIL import Image, ImageDraw

from core.containers import MANAGED_LABEL, ROLE_LABEL, find_managed_container, stop_managed_containers
from core.dots.prompts import PROMPTS
from core.modelfacts import GiB
from core.planner import Device, PlannerSettings, make_plan
from core.results import BackendError, JobCancelled
from tests.doubles.docker_engine import FakeDockerEngine, docker_refused
from tests.doubles.openai_server import DEFAULT_ANSWERS, OpenAIServer
from workers.backends.vllm.backend import VllmBackend
from workers.backends.vllm.client import VllmClient, VllmServerError
from workers.backends.vllm.launcher import VLLM_IMAGE, build_launch, explain_startup_failure, parse_progress

REVISION = "0123456789abcdef0123456789abcdef01234567"
NEVER = lambda: False  # noqa: E731


def page(width: int = 1240, height: int = 1754) -> Image.Image:
    img = Image.new("RGB", (width, height), "white")
    ImageDraw.Draw(img).text((100, 100), "Hello", fill="black")
    return img


@pytest.fixture
def server():
    with OpenAIServer(max_pixels=1_003_520) as s:
        yield s


def external(server: OpenAIServer, **extra) -> VllmBackend:
    backend = VllmBackend()
    plan = {
        "vllm_url": server.url,
        "max_pixels": server.max_pixels,
        "max_new_tokens": 2048,
        "vllm_poll_seconds": 0.02,
        "vllm_health_timeout": 1,
        **extra,
    }
    backend.load(plan)
    return backend


def managed_plan(tmp_path, **extra) -> dict:
    plan = {
        "backend": "vllm",
        "model": "rednote-hilab/dots.ocr",
        "revision": REVISION,
        "cache_dir": str(tmp_path / "hf"),
        "device_index": 1,
        "gpu_memory_utilization": 0.47,
        "max_model_len": 8192,
        "max_num_seqs": 1,
        "max_num_batched_tokens": 5120,
        "dtype": "bfloat16",
        "quantization": "fp8",
        "enforce_eager": True,
        "max_pixels": 1_003_520,
        "max_new_tokens": 2048,
        "vllm_poll_seconds": 0.02,
        "vllm_start_timeout": 10,
        "vllm_stop_timeout": 3,
    }
    plan.update(extra)
    return plan


@pytest.fixture
def engine():
    e = FakeDockerEngine()
    yield e
    e.close()


def flag(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


# -- requests in dots.ocr's format ---------------------------------------------------------------


@pytest.mark.parametrize("mode", ["layout_all", "layout_only", "text"])
def test_it_sends_each_mode_in_dots_ocr_format(server, mode):
    backend = external(server)
    result = backend.ocr(page(), mode, NEVER)

    assert server.problems == []
    req = server.requests[-1]
    assert req.mode == mode
    assert req.stream is True
    text = req.body["messages"][0]["content"][1]["text"]
    assert text == "<|img|><|imgpad|><|endofimg|>" + PROMPTS[mode]
    assert req.body["temperature"] == 0.1 and req.body["top_p"] == 0.9
    assert req.body["max_completion_tokens"] == 2048
    assert result.text == result.raw == DEFAULT_ANSWERS[mode]
    assert result.details["backend"] == "vllm"
    assert result.details["truncated"] is False
    assert result.details["usage"]["completion_tokens"] >= 1
    assert result.details["seconds"] >= 0


def test_it_sends_a_box_given_in_the_sent_images_pixels_as_is(server):
    backend = external(server)
    result = backend.ocr(page(), "grounding", NEVER, sent_bbox=[28, 56, 300, 120])

    assert server.problems == []
    req = server.requests[-1]
    assert req.mode == "grounding"
    assert req.bbox == [28, 56, 300, 120]
    assert req.body["messages"][0]["content"][1]["text"].endswith("Bounding Box:\n[28, 56, 300, 120]")
    assert result.details["bbox_sent"] == [28, 56, 300, 120]


def test_it_scales_a_box_in_the_pages_pixels_to_the_sent_image(server):
    backend = external(server)
    result = backend.ocr(page(2480, 3508), "grounding", NEVER, bbox=[200, 400, 1200, 800])

    sx, sy = result.details["scale"]
    assert sx > 2 and sy > 2
    expected = [round(200 / sx), round(400 / sy), round(1200 / sx), round(800 / sy)]
    assert server.requests[-1].bbox == expected == result.details["bbox_sent"]
    assert server.problems == []


def test_grounding_without_a_box_and_a_box_without_grounding_are_clear_errors(server):
    backend = external(server)
    with pytest.raises(BackendError, match="needs a box"):
        backend.ocr(page(), "grounding", NEVER)
    with pytest.raises(BackendError, match="takes no box"):
        backend.ocr(page(), "text", NEVER, bbox=[0, 0, 10, 10])
    assert server.requests == []


def test_max_pixels_caps_the_image_sent(server):
    backend = external(server)
    result = backend.ocr(page(4000, 3000), "text", NEVER)

    w, h = server.requests[-1].image_size
    assert (w, h) == tuple(result.details["image_size_sent"])
    assert w * h <= 1_003_520 and w % 28 == 0 and h % 28 == 0
    sx, sy = result.details["scale"]
    assert sx == pytest.approx(4000 / w) and sy == pytest.approx(3000 / h)
    assert server.problems == []


def test_the_double_rejects_an_image_over_its_max_pixels():
    with OpenAIServer(max_pixels=100_000) as small:
        backend = external(small, max_pixels=1_003_520)
        with pytest.raises(BackendError, match=r"HTTP 400.*more than max_pixels"):
            backend.ocr(page(2000, 2000), "text", NEVER)
        assert small.problems


def test_a_non_streamed_chat_gives_text_and_usage(server):
    client = VllmClient(server.url, timeout=5)
    text, usage = client.chat(page(560, 560), PROMPTS["text"], max_tokens=100, stream=False)

    assert text == "Hello world"
    assert usage["finish_reason"] == "stop" and usage["truncated"] is False
    assert usage["prompt_tokens"] > 0
    assert server.requests[-1].stream is False and server.problems == []


def test_it_caps_the_answer_budget_to_the_servers_context():
    with OpenAIServer(max_pixels=1_003_520, max_model_len=2000) as s:
        backend = external(s, max_new_tokens=24_000)
        result = backend.ocr(page(560, 560), "text", NEVER)
        # 400 image tokens + 512 for the prompt leave 1,088 of the 2,000
        assert s.requests[-1].max_tokens == 2000 - 400 - 512
        assert result.details["max_tokens"] == 1088


# -- a server that misbehaves --------------------------------------------------------------------


def test_a_server_that_is_down_gives_a_clear_error(server):
    backend = external(server)
    server.stop()
    with pytest.raises(BackendError) as err:
        backend.ocr(page(), "text", NEVER)
    assert server.url in str(err.value)
    assert "connection refused" in str(err.value)


def test_loading_an_external_server_that_is_down_says_so():
    s = OpenAIServer().start()
    url = s.url
    s.stop()
    backend = VllmBackend()
    with pytest.raises(BackendError) as err:
        backend.load({"vllm_url": url + "/v1", "vllm_health_timeout": 0.2, "vllm_poll_seconds": 0.05})
    message = str(err.value)
    assert url in message and "does not answer" in message and "connection refused" in message
    assert "OCRDASH_VLLM_URL" in message
    assert not backend.loaded


def test_a_slow_server_times_out_with_a_clear_error(server):
    backend = external(server, vllm_timeout=0.3)
    server.behaviour, server.slow_seconds = "slow", 1.5
    started = time.monotonic()
    with pytest.raises(BackendError, match=r"did not answer within 0\.3 s") as err:
        backend.ocr(page(), "text", NEVER)
    assert server.url in str(err.value)
    assert time.monotonic() - started < 1.4


@pytest.mark.parametrize("stream", [True, False])
def test_a_server_error_gives_the_status_and_message(server, stream):
    client = VllmClient(server.url, timeout=5)
    server.behaviour = "error500"
    with pytest.raises(BackendError) as err:
        client.chat(page(560, 560), PROMPTS["text"], 100, stream=stream)
    message = str(err.value)
    assert "HTTP 500" in message and "EngineCore encountered an issue" in message and server.url in message


@pytest.mark.parametrize(
    ("behaviour", "stream", "words"),
    [
        ("garbage", True, "not an OpenAI chat stream"),
        ("garbage", False, "not JSON"),
        ("empty_choices", True, "without any choices"),
        ("empty_choices", False, "without any choices"),
        ("empty_content", True, "empty text"),
        ("empty_content", False, "empty text"),
    ],
)
def test_a_garbage_answer_gives_a_clear_error(server, behaviour, stream, words):
    client = VllmClient(server.url, timeout=5)
    server.behaviour = behaviour
    with pytest.raises(BackendError) as err:
        client.chat(page(560, 560), PROMPTS["text"], 100, stream=stream)
    assert words in str(err.value) and server.url in str(err.value)


def test_a_blank_page_the_model_ended_itself_is_an_empty_result(server):
    backend = external(server)
    server.behaviour = "blank"
    result = backend.ocr(page(), "text", NEVER)
    assert result.text == ""
    assert result.details["finish_reason"] == "stop"


def test_an_answer_cut_at_the_budget_is_flagged_truncated(server):
    backend = external(server)
    server.behaviour = "length"
    result = backend.ocr(page(), "layout_all", NEVER)
    assert result.text == DEFAULT_ANSWERS["layout_all"]
    assert result.details["truncated"] is True
    assert result.details["finish_reason"] == "length"
    assert "cut at 2,048 tokens" in result.details["warning"]


def test_a_wrong_api_key_is_named(server):
    server.api_key = "secret"
    with pytest.raises(BackendError, match="refused the API key"):
        VllmBackend().load({"vllm_url": server.url, "vllm_api_key": "wrong"})
    backend = external(server, vllm_api_key="secret")
    assert backend.ocr(page(), "text", NEVER).text == "Hello world"


def test_an_external_server_with_another_model_name_is_used_under_its_name():
    with OpenAIServer(model_name="rednote-hilab/dots.ocr", max_pixels=1_003_520) as s:
        backend = external(s)
        assert backend.client.model_name == "rednote-hilab/dots.ocr"
        backend.ocr(page(), "text", NEVER)
        assert s.problems == []


# -- cancelling ----------------------------------------------------------------------------------


def test_cancel_mid_stream_raises_and_the_server_sees_the_disconnect(server):
    backend = external(server)
    server.behaviour = "slow_stream"
    asked = threading.Event()
    threading.Timer(0.4, asked.set).start()

    started = time.monotonic()
    with pytest.raises(JobCancelled):
        backend.ocr(page(), "text", asked.is_set)
    assert time.monotonic() - started < 1.5

    gone = server.wait_for_disconnect(timeout=3)
    assert gone is not None, "the server never saw the client go"
    assert gone["tokens_sent"] < server.stream_tokens
    assert server.problems == []


def test_a_job_cancelled_before_sending_sends_nothing(server):
    backend = external(server)
    with pytest.raises(JobCancelled):
        backend.ocr(page(), "text", lambda: True)
    assert server.requests == []


# -- the managed container -----------------------------------------------------------------------


def test_managed_start_passes_the_planned_flags_label_mount_gpu_and_local_port(engine, tmp_path):
    backend = VllmBackend(docker_client_factory=engine.client)
    backend.load(managed_plan(tmp_path, vllm_port=None))

    assert len(engine.run_calls) == 1
    call = engine.run_calls[0]
    command = call["command"]
    assert call["image"] == VLLM_IMAGE
    assert call["entrypoint"] == ["vllm", "serve"]
    assert call["detach"] is True
    assert command[0] == "rednote-hilab/dots.ocr"
    assert flag(command, "--revision") == REVISION
    assert flag(command, "--gpu-memory-utilization") == "0.47"
    assert flag(command, "--max-model-len") == "8192"
    assert flag(command, "--max-num-seqs") == "1"
    assert flag(command, "--max-num-batched-tokens") == "5120"
    assert flag(command, "--quantization") == "fp8"
    assert "--enforce-eager" in command
    assert json.loads(flag(command, "--mm-processor-kwargs"))["max_pixels"] == 1_003_520
    assert json.loads(flag(command, "--limit-mm-per-prompt")) == {"image": 1}
    assert flag(command, "--served-model-name") == "dots.ocr"
    assert flag(command, "--chat-template-content-format") == "string"
    assert "--trust-remote-code" in command

    labels = call["labels"]
    assert labels[ROLE_LABEL] == "vllm" and labels[MANAGED_LABEL] == "true"
    assert len(labels["ocrdash.config"]) == 16
    assert call["volumes"] == {str(tmp_path / "hf"): {"bind": "/root/.cache/huggingface", "mode": "rw"}}
    (request,) = call["device_requests"]
    assert isinstance(request, docker.types.DeviceRequest)
    assert request.device_ids == ["1"] and request.capabilities == [["gpu"]]
    host_ip, port = call["ports"]["8000/tcp"]
    assert host_ip == "127.0.0.1"
    assert backend.client.base_url == f"http://127.0.0.1:{port}"
    assert backend.mode == "managed" and backend.loaded

    result = backend.ocr(page(), "layout_all", NEVER)
    assert result.text == DEFAULT_ANSWERS["layout_all"]
    (served,) = engine.servers
    assert served.problems == [] and served.max_pixels == 1_003_520
    backend.unload()


def test_managed_start_uses_the_planners_own_flags(engine, tmp_path):
    plan = make_plan(
        [Device(0, int(11.94 * GiB), int(7.5 * GiB), (8, 9), "RTX 4070")],
        PlannerSettings(backend="vllm", max_new_tokens=4096),
    )
    data = {
        **plan.as_json(),
        "revision": REVISION,
        "cache_dir": str(tmp_path / "hf"),
        "vllm_poll_seconds": 0.02,
    }
    backend = VllmBackend(docker_client_factory=engine.client)
    backend.load(data)

    command = engine.run_calls[0]["command"]
    assert command[command.index("--gpu-memory-utilization") :] == plan.vllm_args()
    assert engine.servers[0].max_pixels == plan.max_pixels
    backend.ocr(page(), "text", NEVER)
    assert engine.servers[0].problems == []
    backend.unload()


def test_progress_reports_the_loading_lines(engine, tmp_path):
    seen = []
    backend = VllmBackend(docker_client_factory=engine.client)
    backend.load(managed_plan(tmp_path), progress=lambda d, t, m: seen.append((d, t, m)))

    assert seen[0][2].startswith(f"Starting the vLLM container ({VLLM_IMAGE}) on GPU 1")
    assert (1, 2, "Loading the model weights: 1/2 checkpoint shards") in seen
    assert (2, 2, "Loading the model weights: 2/2 checkpoint shards") in seen
    assert any(m.startswith("Model loading took 5.7 GiB") for _, _, m in seen), seen
    assert seen[-1][:2] == (1, 1) and seen[-1][2].startswith("vLLM is ready")
    assert backend.log_tail
    backend.unload()


def test_a_container_that_dies_at_start_explains_and_shows_its_log(tmp_path):
    engine = FakeDockerEngine("free_memory")
    backend = VllmBackend(docker_client_factory=engine.client)
    with pytest.raises(BackendError) as err:
        backend.load(managed_plan(tmp_path))
    message = str(err.value)
    assert "vLLM stopped while starting" in message and "exit code 1" in message
    assert "Another program took GPU memory" in message
    assert "Free memory on device cuda:0 (5.81/11.94 GiB)" in message
    assert "Engine core initialization failed" in message
    assert len(message.split("Its last log lines:\n")[1].splitlines()) <= 20
    assert not backend.loaded
    assert engine.containers == []  # removed once its log was read


def test_a_container_that_dies_during_a_page_says_it_ran_out_of_memory(engine, tmp_path):
    backend = VllmBackend(docker_client_factory=engine.client)
    backend.load(managed_plan(tmp_path))
    container = engine.containers[0]
    container.write(
        "(EngineCore_DP0 pid=253) torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2 GiB"
    )
    container.exit(1)

    with pytest.raises(VllmServerError) as err:
        backend.ocr(page(), "text", NEVER)
    assert err.value.out_of_memory is True
    assert "stopped during this page" in str(err.value) and "CUDA out of memory" in str(err.value)
    assert not backend.loaded and engine.containers == []


def test_a_container_that_never_gets_ready_is_stopped_after_the_timeout(tmp_path):
    engine = FakeDockerEngine("silent")
    backend = VllmBackend(docker_client_factory=engine.client)
    with pytest.raises(BackendError, match=r"did not become ready within 0\.3 s"):
        backend.load(managed_plan(tmp_path, vllm_start_timeout=0.3))
    assert engine.containers == [] and len(engine.stopped) == 1


def test_unload_stops_and_removes_only_our_container(engine, tmp_path):
    db = engine.add_container("team-postgres")
    worker = engine.add_container("ocrdash-worker", {ROLE_LABEL: "worker"}, image="ocrdash")
    hand_made = engine.add_container("someones-vllm", {ROLE_LABEL: "vllm"}, image=VLLM_IMAGE)
    backend = VllmBackend(docker_client_factory=engine.client)
    backend.load(managed_plan(tmp_path))
    ours = backend.container.name

    backend.unload()

    assert engine.removed == [ours] and engine.stopped == [ours]
    assert engine.run_calls and not backend.loaded
    assert {db.status, worker.status, hand_made.status} == {"running"}
    assert engine.servers[0].running is False


def test_leftover_managed_containers_are_cleaned_and_others_kept(engine):
    labels = {ROLE_LABEL: "vllm", MANAGED_LABEL: "true", "ocrdash.config": "old"}
    engine.add_container("ocrdash-vllm-old", labels, image=VLLM_IMAGE)
    engine.add_container("ocrdash-vllm-dead", labels, status="exited", image=VLLM_IMAGE)
    engine.add_container("someones-vllm", {ROLE_LABEL: "vllm"}, image=VLLM_IMAGE)
    engine.add_container("team-postgres")

    removed = stop_managed_containers(engine.client(), timeout=1)

    assert sorted(removed) == ["ocrdash-vllm-dead", "ocrdash-vllm-old"]
    assert sorted(c.name for c in engine.containers) == ["someones-vllm", "team-postgres"]


def test_a_running_container_with_the_same_launch_is_adopted(engine, tmp_path):
    first = VllmBackend(docker_client_factory=engine.client)
    first.load(managed_plan(tmp_path))
    config = engine.run_calls[0]["labels"]["ocrdash.config"]
    assert find_managed_container(engine.client(), config) is first.container
    assert find_managed_container(engine.client(), "something-else") is None

    # A worker that restarted finds it instead of loading the model again.
    second = VllmBackend(docker_client_factory=engine.client)
    second.load(managed_plan(tmp_path))
    assert len(engine.run_calls) == 1
    assert second.container.id == first.container.id
    assert second.ocr(page(), "text", NEVER).text == "Hello world"

    # Another launch replaces it: the old one is stopped first (it holds GPU memory).
    third = VllmBackend(docker_client_factory=engine.client)
    third.load(managed_plan(tmp_path, max_new_tokens=1024, max_model_len=7000))
    assert len(engine.run_calls) == 2 and engine.removed == [first.container.name]
    third.unload()


def test_a_known_launch_keeps_its_configuration_hash():
    """Running containers carry this hash (ocrdash.config): a worker that restarts adopts one only
    when the launch it builds hashes the same, so the hash of a given plan never changes."""
    one_page = PlannerSettings(backend="vllm", max_pages_at_once=1)  # the launch the hash was taken of
    plan = make_plan([Device(0, 16 * GiB, 15 * GiB, (8, 9), "L4")], one_page).as_json()
    plan.update(
        model="rednote-hilab/dots.ocr", revision=REVISION, cache_dir="/srv/models/huggingface", device_index=1,
        allow_download=False, hf_token="secret",
    )  # fmt: skip
    assert build_launch(plan).config_hash == "ce1555856d140d0c"
    by_keys = {
        "model": "rednote-hilab/dots.ocr", "revision": REVISION, "cache_dir": "/srv/models/huggingface",
        "gpu_memory_utilization": 0.5, "max_model_len": 8192, "max_num_seqs": 1, "max_num_batched_tokens": 4096,
        "dtype": "bfloat16", "max_pixels": 2_000_000, "quantization": "fp8", "enforce_eager": True,
    }  # fmt: skip
    assert build_launch(by_keys).config_hash == "557f51d67db76291"


def test_a_missing_image_is_pulled_with_progress(tmp_path):
    engine = FakeDockerEngine(images=("something/else:1",))
    seen = []
    backend = VllmBackend(docker_client_factory=engine.client)
    try:
        backend.load(managed_plan(tmp_path), progress=lambda d, t, m: seen.append((d, t, m)))
        assert engine.pulls == [VLLM_IMAGE]
        assert any(m.startswith(f"Downloading the vLLM image {VLLM_IMAGE}") for _, _, m in seen)
        backend.unload()
    finally:
        engine.close()


def test_a_docker_without_gpu_support_gets_a_clear_error(engine, tmp_path):
    engine.run_error = docker.errors.APIError(
        '500 Server Error: Internal Server Error ("could not select device driver "" with capabilities: '
        '[[gpu]]")'
    )
    with pytest.raises(BackendError, match="NVIDIA Container Toolkit"):
        VllmBackend(docker_client_factory=engine.client).load(managed_plan(tmp_path))


def test_a_hub_model_needs_a_pinned_commit(engine, tmp_path):
    backend = VllmBackend(docker_client_factory=engine.client)
    with pytest.raises(BackendError, match="No revision is pinned"):
        backend.load(managed_plan(tmp_path, revision=None))
    with pytest.raises(BackendError, match="not a commit hash"):
        backend.load(managed_plan(tmp_path, revision="main"))
    assert engine.run_calls == []


def test_a_local_model_folder_is_mounted_read_only(engine, tmp_path):
    model = tmp_path / "DotsOCR"
    model.mkdir()
    backend = VllmBackend(docker_client_factory=engine.client)
    backend.load(managed_plan(tmp_path, model=str(model), revision=None, allow_download=False))
    call = engine.run_calls[0]
    assert call["command"][0] == "/model" and "--revision" not in call["command"]
    assert call["volumes"][str(model)] == {"bind": "/model", "mode": "ro"}
    assert call["environment"] == {"HF_HUB_OFFLINE": "1"}
    backend.unload()


# -- no Docker -----------------------------------------------------------------------------------


def test_real_docker_from_env_without_an_engine_gives_the_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    if os.path.exists("/var/run/docker.sock"):
        pytest.skip("this machine has a Docker socket")
    backend = VllmBackend()  # the real docker.from_env()
    with pytest.raises(BackendError) as err:
        backend.load(managed_plan(tmp_path))
    message = str(err.value)
    assert message.startswith("Docker is not available here (")
    assert "set OCRDASH_VLLM_URL to an external vLLM server" in message
    assert "access to the Docker socket" in message


def test_a_refused_docker_socket_gives_the_clear_error(tmp_path):
    backend = VllmBackend(docker_client_factory=docker_refused)
    with pytest.raises(BackendError, match=r"Docker is not available here \(.*Permission denied"):
        backend.load(managed_plan(tmp_path))


# -- reading vLLM's log --------------------------------------------------------------------------


def test_the_shard_progress_bar_is_parsed():
    line = (
        "(Worker pid=57) Loading safetensors checkpoint shards:  50% Completed | 1/2 [00:01<00:01, 1.2s/it]"
    )
    assert parse_progress(line) == (1, 2, "Loading the model weights: 1/2 checkpoint shards")
    assert parse_progress("INFO Starting vLLM API server 0 on http://0.0.0.0:8000") is None


@pytest.mark.parametrize(
    ("log", "words"),
    [
        (
            "ValueError: The model's max seq len (8192) is larger than the maximum number of tokens that "
            "can be stored in KV cache (4096).",
            "KV cache",
        ),
        (
            "ValueError: To serve at least one request with the models's max seq len (8192), (0.2 GiB KV "
            "cache is needed, which is larger than the available KV cache memory (0.1 GiB).",
            "KV cache",
        ),
        ("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB.", "ran out of memory"),
        (
            "ValueError: Free memory on device cuda:0 (5.81/11.94 GiB) on startup is less than desired GPU "
            "memory utilization (0.85, 10.15 GiB).",
            "Another program took GPU memory",
        ),
    ],
)
def test_known_startup_errors_are_explained(log, words):
    assert words in explain_startup_failure(log)


def test_an_unknown_startup_error_has_no_made_up_explanation():
    assert explain_startup_failure("RuntimeError: something new") is None
