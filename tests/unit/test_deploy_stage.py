"""The deployment stage's own parts (.ci/deploy/), checked without a Docker engine: the CI's
override changes only what the CI machine cannot have, the merged configuration loses only the
GPU reservations and the published ports, and the stand-in for PyTorch's CPU index serves pip.
The stage itself (`bash .ci/deploy/stage.sh`, run by .ci/run) builds the image and runs the stack."""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import pytest
import yaml

from tests.conftest import skip_or_fail
from tests.unit.test_compose import COMPOSE, compose_command, load

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / ".ci" / "deploy"
CI_OVERRIDE = DEPLOY / "compose.ci.yml"
PORTS = {"CI_WEB_PORT": "18080", "CI_REDIS_PORT": "16390", "CI_POSTGRES_PORT": "15433"}
APP_SERVICES = {"migrate", "web", "worker", "gpumonitor"}


def stack_check():
    spec = importlib.util.spec_from_file_location("stack_check", DEPLOY / "stack_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def ci_override() -> dict:
    text = re.sub(r"\$\{(CI_[A-Z_]+):\?\}", lambda m: PORTS[m.group(1)], CI_OVERRIDE.read_text())
    return yaml.safe_load(text)


# -- the override ------------------------------------------------------------------------------------


def test_every_service_that_starts_by_default_goes_on_the_hosts_network():
    base = load()["services"]
    started = {name for name, service in base.items() if not service.get("profiles")}
    services = ci_override()["services"]
    assert set(services) == started
    assert all(service["network_mode"] == "host" for service in services.values())


def test_the_override_changes_only_addresses_and_ports():
    base = load()["services"]
    services = ci_override()["services"]
    for name in APP_SERVICES:
        assert set(services[name]) == {"network_mode", "environment"}, name
        assert services[name]["environment"] == {
            "OCRDASH_DATABASE_URL": "postgres://ocrdash@127.0.0.1:15433/ocrdash",
            "OCRDASH_REDIS_URL": "redis://127.0.0.1:16390/0",
            "OCRDASH_HOST": "127.0.0.1",
            "OCRDASH_PORT": "18080",
        }
        # The same database and user as the compose file's, only at another address.
        assert base[name]["environment"]["OCRDASH_DATABASE_URL"].endswith("@postgres:5432/ocrdash")
    redis = services["redis"]
    assert set(redis) == {"network_mode", "command", "healthcheck"}
    assert redis["command"] == [*base["redis"]["command"], "--bind", "127.0.0.1", "--port", "16390"]
    assert set(redis["healthcheck"]) == {"test"}
    assert redis["healthcheck"]["test"][1] == base["redis"]["healthcheck"]["test"][1].replace(
        "redis-cli", "redis-cli -p 16390"
    )
    postgres = services["postgres"]
    assert set(postgres) == {"network_mode", "command", "environment"}
    assert postgres["command"] == ["postgres", "-c", "listen_addresses=127.0.0.1"]
    assert postgres["environment"] == {"PGPORT": "15433"}  # the server's port and pg_isready's


def test_the_override_is_valid_against_the_compose_specification():
    import jsonschema

    schema = json.loads((ROOT / "tests" / "data" / "compose-spec.json").read_text())
    assert list(jsonschema.Draft7Validator(schema).iter_errors(ci_override())) == []


# -- what the stage drops from the merged configuration -----------------------------------------------


def test_dropping_the_gpu_reservations_keeps_every_other_resource():
    module = stack_check()
    config = {
        "services": {
            "worker": {"deploy": {"resources": {
                "limits": {"memory": "8g"},
                "reservations": {"memory": "1g", "devices": [{"driver": "nvidia", "capabilities": ["gpu"]}]},
            }}},
            "gpumonitor": {"deploy": {"resources": {"reservations": {"devices": [
                {"driver": "nvidia", "device_ids": ["0"], "capabilities": ["gpu"]}]}}}},
            "web": {"deploy": {"resources": {"limits": {"cpus": "2"}}}},
        }
    }  # fmt: skip
    assert module.without_gpu_reservations(config) == ["worker", "gpumonitor"]
    assert config["services"] == {
        "worker": {"deploy": {"resources": {"limits": {"memory": "8g"}, "reservations": {"memory": "1g"}}}},
        "gpumonitor": {},
        "web": {"deploy": {"resources": {"limits": {"cpus": "2"}}}},
    }


def test_published_ports_go_only_where_the_service_is_on_the_hosts_network():
    module = stack_check()
    config = {"services": {"web": {"network_mode": "host", "ports": ["127.0.0.1:8000:8000"]},
                           "other": {"ports": ["9000:9000"]}}}  # fmt: skip
    assert module.without_published_ports(config) == ["web"]
    assert config["services"] == {"web": {"network_mode": "host"}, "other": {"ports": ["9000:9000"]}}


@pytest.fixture
def project(tmp_path) -> Path:
    shutil.copy(COMPOSE, tmp_path / COMPOSE.name)
    shutil.copy(ROOT / ".env.example", tmp_path / ".env")
    (tmp_path / "secrets").mkdir()
    for name in ("django_secret_key", "postgres_password"):
        (tmp_path / "secrets" / name).write_text("not-a-real-secret\n")
    return tmp_path


def test_the_stack_the_stage_starts_differs_from_the_compose_file_only_there(project):
    """The compose client merges the override; the stage then drops the GPU reservations and the
    web server's published port. Compared with docker-compose.yml as the client reads it alone,
    nothing else differs."""
    command = compose_command()
    if command is None:
        skip_or_fail("no compose client here (`docker compose` or `docker-compose`: apt-get install docker-compose)")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OCRDASH_", "COMPOSE_"))} | PORTS

    def config(*files: str) -> dict:
        args = [arg for f in files for arg in ("-f", f)]
        result = subprocess.run([*command, *args, "config"], cwd=project, capture_output=True, text=True, env=env,
                                timeout=60, check=True)  # fmt: skip
        return yaml.safe_load(result.stdout)

    plain = config("docker-compose.yml")["services"]
    merged = config("docker-compose.yml", str(CI_OVERRIDE))
    module = stack_check()
    assert sorted(module.without_gpu_reservations(merged)) == ["gpumonitor", "vllm", "worker", "worker-gpu1"]
    assert module.without_published_ports(merged) == ["web"]
    assert "nvidia" not in json.dumps(merged)

    override = ci_override()["services"]
    for name, service in merged["services"].items():
        expected = copy.deepcopy(plain[name])
        expected.pop("ports", None)
        if "deploy" in expected:  # the compose file's deploy sections hold the GPU reservation only
            assert expected.pop("deploy")["resources"]["reservations"]["devices"][0]["driver"] == "nvidia"
        changes = override.get(name, {})
        for key, value in changes.items():
            if key == "environment":
                expected[key] = {**expected[key], **value}
            elif key == "healthcheck":
                expected[key] = {**expected[key], "test": value["test"]}
            else:
                expected[key] = value
        assert service == expected, name


# -- the stand-in for PyTorch's CPU index -------------------------------------------------------------


def tiny_wheel(folder: Path, name: str, version: str) -> Path:
    path = folder / f"{name}-{version}-py3-none-any.whl"
    info = f"{name}-{version}.dist-info"
    with zipfile.ZipFile(path, "w") as wheel:
        wheel.writestr(f"{name}/__init__.py", "")
        wheel.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        wheel.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        wheel.writestr(f"{info}/RECORD", "")
    return path


@pytest.fixture
def wheel_index(tmp_path):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    tiny_wheel(wheels, "ocrdash_probe", "1.0+cpu")  # a local version, as torch's "2.13.0+cpu"
    tiny_wheel(wheels, "other_probe", "2.0")
    port_file = tmp_path / "port"
    server = subprocess.Popen([sys.executable, str(DEPLOY / "wheel_index.py"), str(wheels), str(port_file)])
    try:
        deadline = time.monotonic() + 10
        while not (port_file.exists() and port_file.read_text().strip()):
            assert time.monotonic() < deadline and server.poll() is None, "the index did not start"
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port_file.read_text().strip()}/simple"
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_pip_installs_from_the_wheel_index(wheel_index, tmp_path):
    target = tmp_path / "installed"
    result = subprocess.run(
        [sys.executable, "-m", "pip", "--isolated", "install", "--no-deps", "--no-compile", "--index-url", wheel_index,
         "--target", str(target), "ocrdash-probe==1.0"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert (target / "ocrdash_probe" / "__init__.py").exists()
    assert (target / "ocrdash_probe-1.0+cpu.dist-info").is_dir()


def test_the_wheel_index_lists_its_projects_and_knows_no_others(wheel_index):
    with urllib.request.urlopen(f"{wheel_index}/") as answer:
        listing = answer.read().decode()
    assert 'href="ocrdash-probe/"' in listing and 'href="other-probe/"' in listing
    with urllib.request.urlopen(f"{wheel_index}/Other_Probe/") as answer:  # names are normalised
        assert "other_probe-2.0-py3-none-any.whl" in answer.read().decode()
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(f"{wheel_index}/torch/")
    assert missing.value.code == 404
