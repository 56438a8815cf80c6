"""docker-compose.yml, its override files, the Dockerfile and the container scripts, read without
a Docker engine: the services, volumes, GPU reservations, health checks, start order, secrets and
the `vllm` profile are what docs/deploy.md promises; the files are valid against the Compose
Specification's schema (tests/data/compose-spec.json); and where a compose client is installed,
`docker compose config` (or the older `docker-compose config`) accepts them."""

from __future__ import annotations

import http.server
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path

import jsonschema
import pytest
import yaml

from dashboard import webserver
from tests.conftest import skip_or_fail

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
OVERRIDES = sorted((ROOT / "docker").glob("compose.*.yml"))
SCHEMA = ROOT / "tests" / "data" / "compose-spec.json"
INTERPOLATION = re.compile(r"(?<!\$)\$\{([A-Z][A-Z0-9_]*)(?::?-([^}]*))?\}")
APP_SERVICES = {"migrate", "web", "worker", "gpumonitor"}
ALL_SERVICES = APP_SERVICES | {"redis", "postgres", "vllm"}


def interpolate(text: str, values: dict[str, str] | None = None) -> str:
    """What compose does with ${VAR:-default} and $$, with `values` standing for .env."""
    values = values or {}
    text = INTERPOLATION.sub(lambda m: values.get(m.group(1)) or m.group(2) or "", text)
    return text.replace("$$", "$")


def load(path: Path = COMPOSE, **values: str) -> dict:
    return yaml.safe_load(interpolate(path.read_text(), values))


@pytest.fixture(scope="module")
def compose() -> dict:
    return load()


def services(compose) -> dict:
    return compose["services"]


def mounts(service: dict) -> list[str]:
    return [v if isinstance(v, str) else f"{v.get('source')}:{v.get('target')}" for v in service.get("volumes", [])]


# -- what is there ---------------------------------------------------------------------------------


def test_it_has_every_service_and_only_vllm_and_a_second_worker_are_behind_profiles(compose):
    assert set(services(compose)) == ALL_SERVICES | {"worker-gpu1"}
    assert services(compose)["vllm"]["profiles"] == ["vllm"]
    assert services(compose)["worker-gpu1"]["profiles"] == ["two-gpus"]
    assert sorted(name for name, s in services(compose).items() if s.get("profiles")) == ["vllm", "worker-gpu1"]


def test_data_lives_on_named_volumes(compose):
    assert set(compose["volumes"]) == {"data", "models", "redis", "postgres"}
    s = services(compose)
    assert "postgres:/var/lib/postgresql/data" in mounts(s["postgres"])
    assert "redis:/data" in mounts(s["redis"]) and "--appendonly" in s["redis"]["command"]
    assert {"data:/data", "models:/models"} <= set(mounts(s["worker"]))  # uploads and the model cache
    assert "data:/data" in mounts(s["web"]) and "data:/data" in mounts(s["migrate"])
    assert "models:/models:ro" in mounts(s["web"])  # the pages say which models the worker has
    assert "models:/models" in mounts(s["vllm"])
    env = s["worker"]["environment"]
    assert env["OCRDASH_DATA_DIR"] == "/data" and env["OCRDASH_MODEL_DIR"] == "/models"
    assert s["vllm"]["environment"]["HF_HUB_CACHE"] == "/models/huggingface"  # where fetch_model puts it


def test_the_images_are_the_ones_named(compose):
    from workers.backends.vllm.launcher import VLLM_IMAGE

    s = services(compose)
    assert s["redis"]["image"].startswith("redis:7")
    assert s["postgres"]["image"].startswith("postgres:17")
    assert s["vllm"]["image"] == VLLM_IMAGE
    assert {s[name]["image"] for name in APP_SERVICES} == {"ocrdash:local"}
    assert all(s[name]["build"]["context"] == "." for name in APP_SERVICES)


def test_the_worker_and_the_gpu_monitor_reserve_the_same_nvidia_gpu(compose):
    s = services(compose)
    for name in ("worker", "gpumonitor"):
        (device,) = s[name]["deploy"]["resources"]["reservations"]["devices"]
        assert device == {"driver": "nvidia", "device_ids": ["0"], "capabilities": ["gpu"]}
        assert s[name]["environment"]["CUDA_VISIBLE_DEVICES"] == "0"
        assert s[name]["environment"]["OCRDASH_GPU_INDEX"] == "0"
        assert s[name]["pid"] == "host"  # NVML's host pids match /proc (core/containers.py)
    assert load(WORKER_GPU="2")["services"]["worker"]["deploy"]["resources"]["reservations"]["devices"][0][
        "device_ids"
    ] == ["2"]
    (vllm_gpu,) = s["vllm"]["deploy"]["resources"]["reservations"]["devices"]
    assert vllm_gpu["driver"] == "nvidia" and vllm_gpu["capabilities"] == ["gpu"]
    assert not any("deploy" in s[name] for name in ("web", "migrate", "redis", "postgres"))


def test_the_worker_is_one_celery_worker_on_queue_gpu_with_concurrency_1():
    text = (ROOT / "docker" / "entrypoint.sh").read_text()
    worker = re.search(r"^\s*worker\)\n(.*?);;", text, re.S | re.M).group(1)
    assert "worker --queues gpu --concurrency 1 --events" in worker and "celery -A dashboard" in worker
    web = re.search(r"^\s*web\)\n(.*?);;", text, re.S | re.M).group(1)
    assert "python -m uvicorn dashboard.asgi:application" in web
    # The same server options as the start command's (dashboard/webserver.py), both sides of the proxy.
    for behind_proxy in (False, True):
        argv = webserver.command("HOST", 1, behind_proxy=behind_proxy)
        options = " ".join(a if a != "*" else "'*'" for a in argv[argv.index("--http") :])
        for option in options.split(" --"):
            assert option.lstrip("-") in web, option


def test_every_long_running_service_has_a_health_check(compose):
    s = services(compose)
    for name, service in s.items():
        check = service.get("healthcheck", {})
        if name == "migrate":
            assert check == {"disable": True}  # a one-shot: the others wait for it to complete
            continue
        assert check.get("test"), f"{name} has no health check"
        assert not check.get("disable")
    joined = {name: " ".join(service["healthcheck"]["test"]) for name, service in s.items() if name != "migrate"}
    assert "docker/healthcheck.py" in joined["web"]
    assert "celery -A dashboard inspect ping -d" in joined["worker"] and "gpu@" in joined["worker"]
    assert "gpumonitor --check" in joined["gpumonitor"]
    assert "redis-cli ping" in joined["redis"]
    assert "pg_isready" in joined["postgres"]
    assert "/health" in joined["vllm"]


def test_the_start_order_waits_for_health_and_for_the_migrations(compose):
    s = services(compose)
    for name in ("web", "worker"):
        depends = s[name]["depends_on"]
        assert depends["migrate"] == {"condition": "service_completed_successfully"}
        assert depends["postgres"] == {"condition": "service_healthy"}
        assert depends["redis"] == {"condition": "service_healthy"}
    assert s["migrate"]["depends_on"] == {
        "postgres": {"condition": "service_healthy"},
        "redis": {"condition": "service_healthy"},
    }
    assert s["gpumonitor"]["depends_on"] == {"redis": {"condition": "service_healthy"}}
    assert s["migrate"]["restart"] == "no" and s["migrate"]["command"] == ["migrate"]
    for name, service in s.items():
        for dependency, rule in service.get("depends_on", {}).items():
            assert rule["condition"] in ("service_healthy", "service_completed_successfully")
            if rule["condition"] == "service_healthy":
                assert s[dependency]["healthcheck"].get("test"), f"{name} waits on {dependency}'s missing check"


def test_secrets_come_from_files_not_variables(compose):
    assert compose["secrets"] == {
        "django_secret_key": {"file": "./secrets/django_secret_key"},
        "postgres_password": {"file": "./secrets/postgres_password"},
    }
    s = services(compose)
    for name in APP_SERVICES:
        assert set(s[name]["secrets"]) == {"django_secret_key", "postgres_password"}
        env = s[name]["environment"]
        assert env["OCRDASH_SECRET_KEY_FILE"] == "/run/secrets/django_secret_key"
        assert env["OCRDASH_DATABASE_PASSWORD_FILE"] == "/run/secrets/postgres_password"
        user = env["OCRDASH_DATABASE_URL"].split("//")[1].split("@")[0]
        assert user == "ocrdash"  # no password in the URL
        assert s[name]["env_file"] == ".env"
    assert s["postgres"]["environment"]["POSTGRES_PASSWORD_FILE"] == "/run/secrets/postgres_password"
    assert s["postgres"]["secrets"] == ["postgres_password"]
    for name, service in s.items():  # no secret is given as a plain variable
        for key in service.get("environment", {}):
            assert not key.endswith(("PASSWORD", "SECRET_KEY", "TOKEN")), f"{name}: {key}"


def test_the_web_server_answers_on_all_interfaces_of_its_container_and_is_published(compose):
    web = services(compose)["web"]
    assert web["command"] == ["web"]
    assert web["environment"]["OCRDASH_HOST"] == "0.0.0.0" and web["environment"]["OCRDASH_PORT"] == "8000"
    assert web["ports"] == ["127.0.0.1:8000:8000"]
    assert load(WEB_BIND="0.0.0.0", WEB_PORT="80")["services"]["web"]["ports"] == ["0.0.0.0:80:8000"]


# -- the Docker socket -------------------------------------------------------------------------------


def test_no_service_gets_the_docker_socket_unless_an_override_says_so(compose):
    assert "docker.sock" not in json.dumps(compose)
    assert "docker.sock" not in json.dumps(load(COMPOSE, COMPOSE_PROFILES="vllm")["services"]["vllm"])
    managed = load(ROOT / "docker" / "compose.managed-vllm.yml")["services"]
    assert "/var/run/docker.sock:/var/run/docker.sock" in managed["worker"]["volumes"]
    assert managed["worker"]["network_mode"] == "host"  # the vLLM container's port is on the host's 127.0.0.1
    names = load(ROOT / "docker" / "compose.container-names.yml")["services"]
    assert names == {"gpumonitor": {"group_add": ["999"], "volumes": ["/var/run/docker.sock:/var/run/docker.sock:ro"]}}


def test_the_managed_vllm_override_gives_the_worker_the_hosts_gpu_numbers():
    worker = load(ROOT / "docker" / "compose.managed-vllm.yml", WORKER_GPU="1")["services"]["worker"]
    assert worker["environment"]["CUDA_VISIBLE_DEVICES"] == worker["environment"]["OCRDASH_GPU_INDEX"] == "1"
    (device,) = worker["deploy"]["resources"]["reservations"]["devices"]
    assert device["count"] == "all"
    model_dir = worker["environment"]["OCRDASH_MODEL_DIR"]
    assert f"{model_dir}:{model_dir}" in worker["volumes"]  # the same path on the host and inside


# -- the vllm profile --------------------------------------------------------------------------------


def vllm_flags(compose) -> dict[str, str | None]:
    script = services(compose)["vllm"]["command"][0]
    serve = script[script.index("exec vllm serve") :].replace("\\\n", " ")
    words = shlex.split(serve)[3:]
    flags: dict[str, str | None] = {}
    for i, word in enumerate(words):
        if word.startswith("--"):
            following = words[i + 1] if i + 1 < len(words) else None
            flags[word] = None if following is None or following.startswith("--") else following
    return flags


def test_the_vllm_service_runs_dots_ocr_with_the_planners_flags(compose):
    from core.planner import Device, PlannerSettings, make_plan
    from workers.backends.vllm.launcher import build_launch

    gib = 1024**3
    plan = make_plan(
        [Device(index=0, total_bytes=24 * gib, free_bytes=23 * gib, compute_capability=(8, 9), name="card")],
        PlannerSettings(backend="vllm"),
    )
    planned = dict(zip(plan.vllm_args()[::2], plan.vllm_args()[1::2], strict=False))
    flags = vllm_flags(compose)

    for flag in ("--max-model-len", "--max-num-seqs", "--max-num-batched-tokens", "--dtype"):
        assert flags[flag] == planned[flag], flag
    for flag in ("--limit-mm-per-prompt", "--mm-processor-kwargs"):
        assert json.loads(flags[flag]) == json.loads(planned[flag]), flag
    assert flags["--gpu-memory-utilization"] == "0.85"  # VLLM_GPU_MEMORY_UTILIZATION
    # The flags ocrdash's own managed container gets, besides the memory ones.
    managed = build_launch({"model": "rednote-hilab/dots.ocr", "revision": "0" * 40}).command
    assert flags["--served-model-name"] == managed[managed.index("--served-model-name") + 1] == "dots.ocr"
    assert "--trust-remote-code" in flags and flags["--chat-template-content-format"] == "string"
    assert flags["--port"] == "8000" and flags["--host"] == "0.0.0.0"
    assert "DOTS_OCR_REVISION" in services(compose)["vllm"]["command"][0]  # refuses to start without a pin


def test_the_vllm_variables_reach_its_flags():
    flags = vllm_flags(load(VLLM_GPU_MEMORY_UTILIZATION="0.4", VLLM_MAX_MODEL_LEN="9000", VLLM_MAX_PIXELS="2000000"))
    assert flags["--gpu-memory-utilization"] == "0.4" and flags["--max-model-len"] == "9000"
    assert json.loads(flags["--mm-processor-kwargs"])["max_pixels"] == 2000000


# -- validity ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def validator():
    return jsonschema.Draft7Validator(json.loads(SCHEMA.read_text()))


@pytest.mark.parametrize("path", [COMPOSE, *OVERRIDES], ids=lambda p: p.name)
def test_the_file_is_valid_against_the_compose_specification(validator, path):
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(load(path))]
    assert errors == []


def test_the_schema_check_does_catch_a_mistake(validator):
    broken = load()
    broken["services"]["web"]["healtcheck"] = broken["services"]["web"].pop("healthcheck")
    assert list(validator.iter_errors(broken))


def compose_command() -> list[str] | None:
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True)
        if probe.returncode == 0:
            return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


@pytest.fixture
def project(tmp_path) -> Path:
    """A copy of the compose files with .env made from .env.example and stand-in secrets."""
    shutil.copy(COMPOSE, tmp_path / COMPOSE.name)
    (tmp_path / "docker").mkdir()
    for path in OVERRIDES:
        shutil.copy(path, tmp_path / "docker" / path.name)
    shutil.copy(ROOT / ".env.example", tmp_path / ".env")
    (tmp_path / "secrets").mkdir()
    for name in ("django_secret_key", "postgres_password"):
        (tmp_path / "secrets" / name).write_text("not-a-real-secret\n")
    return tmp_path


@pytest.mark.parametrize(
    "extra",
    [[], ["--profile", "vllm"], ["-f", "docker-compose.yml", "-f", "docker/compose.managed-vllm.yml"],
     ["-f", "docker-compose.yml", "-f", "docker/compose.container-names.yml"],
     ["-f", "docker-compose.yml", "-f", "docker/compose.two-gpus.yml"]],
    ids=["plain", "vllm-profile", "managed-vllm", "container-names", "two-gpus"],
)  # fmt: skip
def test_the_compose_client_accepts_it(project, extra):
    command = compose_command()
    if command is None:
        skip_or_fail("no compose client here (`docker compose` or `docker-compose`: apt-get install docker-compose)")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OCRDASH_", "COMPOSE_"))}
    result = subprocess.run(
        [*command, *extra, "config", "-q"], cwd=project, capture_output=True, text=True, env=env, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


# -- the image -----------------------------------------------------------------------------------


def test_the_dockerfile_builds_in_stages_without_a_gpu_and_runs_as_a_plain_user():
    text = (ROOT / "Dockerfile").read_text()
    stages = re.findall(r"^FROM (\S+) AS ([\w-]+)", text, re.M)
    names = [name for _, name in stages]
    assert names == ["build", "cuda-toolkit", "gguf-none", "gguf-cpu", "gguf-cuda", "venv", "runtime"]
    # llama.cpp is opt-in: by default the venv stage is the build stage, and nothing more is fetched.
    assert "ARG GGUF=none" in text and ("build", "gguf-none") in stages and ("gguf-${GGUF}", "venv") in stages
    assert "COPY --from=venv /opt/venv /opt/venv" in text
    assert "ARG PYTHON_IMAGE=python:3.11-slim" in text
    assert "ARG VARIANT=cpu" in text and "download.pytorch.org/whl/cpu" in text
    torch_first = text.index("--only torch")
    assert torch_first < text.index("pip install -r /tmp/requirements.txt")
    assert "collectstatic" in text
    assert not re.search(r"^#\s*syntax=", text, re.M)  # a frontend image from a registry: not needed
    assert re.search(r"^USER ocrdash$", text, re.M)
    assert 'ENTRYPOINT ["/app/docker/entrypoint.sh"]' in text
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".git", ".venv", ".env", "secrets", "data"} <= set(ignored)


def test_the_requirements_the_dockerfile_installs_are_the_pins_of_pyproject():
    def run(*args):
        out = subprocess.run([sys.executable, str(ROOT / "ocrdash.py"), "requirements", *args], capture_output=True,
                             text=True, check=True)  # fmt: skip
        return out.stdout.split()

    torch = run("--extras", "dots", "--only", "torch")
    rest = run("--extras", "dots")
    assert len(torch) == 1 and torch[0].startswith("torch==")
    assert torch[0] in rest and "prometheus-client==" in " ".join(rest)
    assert all("==" in req for req in rest)
    assert torch[0] not in run("--extras", "dots", "--without", "torch")


def test_the_entrypoint_knows_every_role_the_compose_file_uses(compose):
    text = (ROOT / "docker" / "entrypoint.sh").read_text()
    roles = set(re.findall(r"^\s{4}([a-z]+)\)$", text, re.M))
    used = {services(compose)[name]["command"][0] for name in APP_SERVICES}
    assert used <= roles and {"web", "worker", "gpumonitor", "migrate", "manage"} <= roles


def test_the_entrypoint_runs_manage_py_commands_and_other_programs():
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    env = {k: v for k, v in env.items() if not k.startswith("OCRDASH_")}
    env.update(DJANGO_SETTINGS_MODULE="dashboard.settings", OCRDASH_SECRET_KEY="x" * 50)
    script = str(ROOT / "docker" / "entrypoint.sh")
    table = subprocess.run(["sh", script, "manage", "settings_table"], cwd=ROOT, env=env, capture_output=True,
                           text=True, timeout=120)  # fmt: skip
    assert table.returncode == 0, table.stderr
    assert "OCRDASH_METRICS_TOKEN" in table.stdout
    echo = subprocess.run(["sh", script, "echo", "hello"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert echo.stdout == "hello\n"


# -- the web container's health check script -----------------------------------------------------


@pytest.fixture
def fake_web():
    """A stand-in for the web server: answers /healthz with `answer`, and records the Host header."""
    state = {"answer": (200, {"ok": True, "db": True, "redis": True}), "hosts": []}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            state["hosts"].append(self.headers["Host"])
            status, body = state["answer"] if self.path == "/healthz" else (404, {})
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = http.server.HTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state["port"] = port
    yield state
    server.shutdown()
    server.server_close()


def healthcheck(port: int, allowed_hosts: str) -> int:
    env = dict(os.environ, OCRDASH_PORT=str(port), OCRDASH_ALLOWED_HOSTS=allowed_hosts)
    script = ROOT / "docker" / "healthcheck.py"
    return subprocess.run([sys.executable, str(script)], env=env, capture_output=True, timeout=30).returncode


def test_the_web_health_check_asks_healthz_with_an_allowed_host_name(fake_web):
    assert healthcheck(fake_web["port"], "ocr.example.com,localhost") == 0
    assert healthcheck(fake_web["port"], ".example.org") == 0
    assert fake_web["hosts"] == ["ocr.example.com", "example.org"]

    fake_web["answer"] = (503, {"ok": False, "db": True, "redis": False})
    assert healthcheck(fake_web["port"], "localhost") == 1
    fake_web["answer"] = (200, {"ok": False})
    assert healthcheck(fake_web["port"], "localhost") == 1


def test_the_two_gpu_override_pins_one_worker_to_each_gpu(project):
    command = compose_command()
    if command is None:
        skip_or_fail("no compose client here (`docker compose` or `docker-compose`: apt-get install docker-compose)")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OCRDASH_", "COMPOSE_"))}
    result = subprocess.run(
        [*command, "-f", "docker-compose.yml", "-f", "docker/compose.two-gpus.yml", "config"],
        cwd=project, capture_output=True, text=True, env={**env, "COMPOSE_PROFILES": "two-gpus"}, timeout=60,
        check=True,
    )
    services = yaml.safe_load(result.stdout)["services"]
    pins = {name: (services[name]["environment"]["CUDA_VISIBLE_DEVICES"],
                   services[name]["environment"]["OCRDASH_GPU_INDEX"]) for name in ("worker", "worker-gpu1")}
    assert pins == {"worker": ("0", "0"), "worker-gpu1": ("1", "1")}
    for name in ("worker", "worker-gpu1", "gpumonitor"):
        devices = services[name]["deploy"]["resources"]["reservations"]["devices"]
        assert devices[0]["device_ids"] == ["0", "1"]
    assert services["worker-gpu1"]["command"] == services["worker"]["command"]
    # Apart from its pin, the second worker is the first one.
    same = {k: v for k, v in services["worker"]["environment"].items() if k not in ("CUDA_VISIBLE_DEVICES",
                                                                                   "OCRDASH_GPU_INDEX", "WORKER_NAME")}
    assert same.items() <= services["worker-gpu1"]["environment"].items()
