"""The compose stack on this machine, used as a team would use it (run by .ci/deploy/stage.sh).

    .venv/bin/python .ci/deploy/stack_check.py WORK

WORK is a copy of the project with .env and secrets/ made as docs/deploy.md says, and the image
(CI_IMAGE) already built. This starts docker-compose.yml with .ci/deploy/compose.ci.yml and
without GPU reservations, waits for every health check, then: reads the first admin's password
from `migrate`'s log, logs in through the login page, makes an API token on the profile page,
uploads a document through the API and checks its text, watches the dashboard's websocket carry
the GPU monitor's samples and the job's states, reads /metrics, restarts the worker mid-job and
checks that the job ends, and takes everything down with `down -v`. It prints one line per
check, the figures, and "deploy: N passed, N failed".
"""

from __future__ import annotations

import io
import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import requests
import yaml
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS  # noqa: E402 (the browser tests' Chromium)
from tests.conftest import text_image  # noqa: E402 (images with known words)

SERVICES_WITH_HEALTH = ("postgres", "redis", "web", "worker", "gpumonitor")
HEALTHY_WITHIN_S = 300
JOB_WITHIN_S = 180
# Words on the uploaded image, and what the text must hold (rapidocr on the CPU).
UPLOAD_LINES = ["Deployment check 4711", "Invoice total 381.40 EUR"]
UPLOAD_WORDS = ["Deployment", "check", "4711", "Invoice", "381.40", "EUR"]
AFTER_RESTART_LINES = ["Read after the restart 0815"]
RESTART_PAGES = 8


class Failed(Exception):
    pass


def say(text: str) -> None:
    print(f"deploy: {text}", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- the files to start ------------------------------------------------------------------------------


def without_gpu_reservations(config: dict) -> list[str]:
    """Drops the GPU devices from every service's reservations; returns the services changed.

    An override file cannot do it: Compose adds an override's devices to the base file's."""
    changed = []
    for name, service in config.get("services", {}).items():
        reservations = service.get("deploy", {}).get("resources", {}).get("reservations", {})
        devices = reservations.get("devices") or []
        kept = [d for d in devices if d.get("driver") != "nvidia" and "gpu" not in d.get("capabilities", [])]
        if len(kept) == len(devices):
            continue
        changed.append(name)
        if kept:
            reservations["devices"] = kept
        else:
            reservations.pop("devices")
        resources = service["deploy"]["resources"]
        if not reservations:
            resources.pop("reservations")
        if not resources:
            service["deploy"].pop("resources")
        if not service["deploy"]:
            service.pop("deploy")
    return changed


def without_published_ports(config: dict) -> list[str]:
    """Drops `ports` from the services on the host's network, where a container's ports are the
    host's already (the Docker API refuses both at once); returns the services changed."""
    changed = []
    for name, service in config.get("services", {}).items():
        if service.get("network_mode") == "host" and service.pop("ports", None) is not None:
            changed.append(name)
    return changed


# -- the stack ---------------------------------------------------------------------------------------


class Stack:
    def __init__(self, work: Path, compose: list[str], env: dict[str, str]):
        self.work = work
        self.compose = compose
        self.env = env

    def run(self, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
        result = subprocess.run([*self.compose, *args], cwd=self.work, env=self.env, capture_output=True,
                                text=True, timeout=timeout)  # fmt: skip
        if check and result.returncode != 0:
            raise Failed(f"{' '.join(self.compose)} {' '.join(args)}: {(result.stderr or result.stdout)[-1500:]}")
        return result

    def prepare(self) -> str:
        """docker-compose.yml with the CI's override, merged by Compose, less what an override
        cannot take away; written to ci-stack.yml, which the later commands use."""
        merged = self.run("-f", "docker-compose.yml", "-f", str(ROOT / ".ci/deploy/compose.ci.yml"), "config").stdout
        config = yaml.safe_load(merged)
        gpu = without_gpu_reservations(config)
        ports = without_published_ports(config)
        (self.work / "ci-stack.yml").write_text(yaml.safe_dump(config, sort_keys=False))
        self.compose = [*self.compose, "-f", "ci-stack.yml"]
        return f"no GPU reservation for {', '.join(gpu) or 'none'}; no published ports for {', '.join(ports) or 'none'}"

    def containers(self, services: tuple[str, ...]) -> dict[str, str]:
        return {service: self.run("ps", "-q", service).stdout.strip() for service in services}

    @staticmethod
    def health(containers: dict[str, str]) -> dict[str, str]:
        """Each container's health (or its state, where it has no health check, or "absent")."""
        found = {service: "absent" for service, cid in containers.items() if not cid}
        present = {cid: service for service, cid in containers.items() if cid}
        if present:
            template = "{{.Id}} {{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{end}}"
            answer = subprocess.run(["docker", "inspect", "-f", template, *present], capture_output=True, text=True)
            for line in answer.stdout.splitlines():
                cid, status, *health = line.split()
                service = next(s for c, s in present.items() if cid.startswith(c))
                found[service] = health[0] if health else status
        return {service: found.get(service, "absent") for service in containers}

    def logs(self, *services: str, tail: int = 25) -> str:
        return self.run("logs", "--no-color", "--tail", str(tail), *services, check=False).stdout


def wait_until_healthy(stack: Stack, started: float) -> dict[str, float]:
    """Waits for every health check to pass; returns the seconds from `started` to each one's first pass."""
    deadline = started + HEALTHY_WITHIN_S
    containers = stack.containers(SERVICES_WITH_HEALTH)
    healthy_after: dict[str, float] = {}
    while True:
        states = stack.health(containers)
        for service, health in states.items():
            if health == "healthy":
                healthy_after.setdefault(service, time.monotonic() - started)
        if len(healthy_after) == len(SERVICES_WITH_HEALTH):
            return healthy_after
        if time.monotonic() > deadline or any(v in ("unhealthy", "exited", "absent", "dead") for v in states.values()):
            bad = [s for s, v in states.items() if v != "healthy"]
            raise Failed(f"not healthy after {time.monotonic() - started:.0f} s: {states}\n{stack.logs(*bad)}")
        time.sleep(1)


def no_tracebacks(stack: Stack) -> str:
    log = stack.run("logs", "--no-color").stdout
    lines = log.splitlines()
    hits = [i for i, line in enumerate(lines) if "Traceback (most recent call last)" in line]
    if hits:
        raise Failed(f"{len(hits)} traceback(s); the first:\n" + "\n".join(lines[hits[0] : hits[0] + 25]))
    return f"{len(lines)} log lines read"


def admin_login(stack: Stack) -> tuple[str, str]:
    log = stack.logs("migrate", tail=200)
    found = re.search(r"as\s+(\S+)\s+with password\s+(\S+)", log)
    if not found:
        raise Failed(f"migrate's log names no admin password:\n{log[-1500:]}")
    return found.group(1), found.group(2)


# -- documents -------------------------------------------------------------------------------------


def pdf(pages: int) -> bytes:
    """A4 pages at 200 dpi (the worker's rendering), each with a screenful of lines to read."""
    lines = [f"line {i}: the quick brown fox jumps over the lazy dog" for i in range(24)]
    images = [Image.open(io.BytesIO(text_image([f"Page {n}", *lines], size=(1654, 2339)))) for n in range(1, pages + 1)]
    out = io.BytesIO()
    images[0].save(out, "PDF", save_all=True, append_images=images[1:], resolution=200)
    return out.getvalue()


# -- the checks --------------------------------------------------------------------------------------


class Run:
    def __init__(self):
        self.passed = 0
        self.failed = 0
        self.figures: dict[str, str] = {}

    def check(self, name: str, step: Callable[[], str | None]):
        started = time.monotonic()
        try:
            detail = step()
        except Failed as exc:
            self.failed += 1
            say(f"FAIL  {name}: {exc}")
            raise
        except Exception as exc:
            self.failed += 1
            say(f"FAIL  {name}: {type(exc).__name__}: {exc}")
            raise Failed(name) from exc
        self.passed += 1
        say(f"ok    {name} ({time.monotonic() - started:.1f} s){': ' + detail if detail else ''}")


class Api:
    def __init__(self, url: str, token: str):
        self.url = url
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {token}"

    def upload(self, name: str, data: bytes, content_type: str) -> dict:
        answer = self.session.post(f"{self.url}/api/v1/jobs", files={"file": (name, data, content_type)}, timeout=60)
        if answer.status_code != 202:
            raise Failed(f"upload answered {answer.status_code}: {answer.text[:500]}")
        return answer.json()["jobs"][0]

    def job(self, job_id: int) -> dict:
        return self.session.get(f"{self.url}/api/v1/jobs/{job_id}", timeout=30).json()

    def wait(self, job: dict, within: float) -> dict:
        deadline = time.monotonic() + within
        while not job["ended"] and time.monotonic() < deadline:
            left = max(1, min(60, int(deadline - time.monotonic())))
            job = self.session.get(job["urls"]["wait"], params={"timeout": left}, timeout=left + 30).json()
        return job

    def text(self, job: dict) -> str:
        answer = self.session.get(job["urls"]["result"], params={"format": "txt"}, timeout=30)
        answer.raise_for_status()
        return answer.text


def main(argv: list[str]) -> int:
    work = Path(argv[0])
    web_port, redis_port, postgres_port = free_port(), free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("OCRDASH_")}
    env.update(CI_WEB_PORT=str(web_port), CI_REDIS_PORT=str(redis_port), CI_POSTGRES_PORT=str(postgres_port))
    stack = Stack(work, os.environ.get("CI_COMPOSE", "docker compose").split(), env)
    url = f"http://127.0.0.1:{web_port}"
    metrics_token = re.search(r"^OCRDASH_METRICS_TOKEN=(\S+)$", (work / ".env").read_text(), re.M).group(1)
    image = os.environ.get("CI_IMAGE", "ocrdash:ci")
    run = Run()
    state: dict = {}

    size = int(subprocess.run(["docker", "image", "inspect", "-f", "{{.Size}}", image], capture_output=True,
                              text=True, check=True).stdout)  # fmt: skip
    run.figures["image"] = f"{image}: {size / 1e9:.2f} GB"
    if os.environ.get("CI_BUILD_SECONDS"):
        run.figures["build"] = f"{float(os.environ['CI_BUILD_SECONDS']):.1f} s"

    def no_build_tools():
        probe = subprocess.run(["docker", "run", "--rm", "--network", "none", "--entrypoint", "sh", image, "-c",
                                "id -u; for t in gcc cc c++ g++ make ld as; do command -v $t; done; true"],
                               capture_output=True, text=True, timeout=60)  # fmt: skip
        lines = probe.stdout.split()
        if probe.returncode != 0 or not lines:
            raise Failed(probe.stderr[-500:])
        if lines[0] != "10001":
            raise Failed(f"the image runs as uid {lines[0]}, not ocrdash (10001)")
        if lines[1:]:
            raise Failed(f"build tools in the runtime image: {lines[1:]}")
        return "runs as uid 10001; no compiler, linker or make"

    def start():
        changed = stack.prepare()
        stack.run("down", "-v", "--remove-orphans", check=False)  # what an interrupted run left
        started = time.monotonic()
        stack.run("up", "-d", "--no-build", timeout=HEALTHY_WITHIN_S)
        healthy_after = wait_until_healthy(stack, started)
        run.figures["up_to_healthy"] = f"{max(healthy_after.values()):.0f} s"
        order = sorted(healthy_after.items(), key=lambda item: item[1])
        each = ", ".join(f"{name} {seconds:.0f} s" for name, seconds in order)
        return f"healthy after: {each} ({changed})"

    def first_admin():
        state["user"], state["password"] = admin_login(stack)
        return f"the first admin is {state['user']!r} (password from `logs migrate`)"

    run.check("the runtime image is lean and unprivileged", no_build_tools)
    try:
        run.check("docker-compose.yml starts and every health check passes", start)
        run.check("migrate created the first admin account", first_admin)
        from playwright.sync_api import sync_playwright

        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                browser_checks(run, browser, stack, url, state, metrics_token)
            finally:
                browser.close()
        run.check("no service logged a traceback", lambda: no_tracebacks(stack))
    except Failed:
        pass
    finally:
        down = stack.run("down", "-v", "--remove-orphans", check=False, timeout=180)
        project = env.get("COMPOSE_PROJECT_NAME", "ocrdashci")
        left = subprocess.run(["docker", "ps", "-aq", "--filter", f"label=com.docker.compose.project={project}"],
                              capture_output=True, text=True).stdout.split()  # fmt: skip
        if down.returncode == 0 and not left:
            run.passed += 1
            say("ok    docker compose down -v removed the containers and volumes")
        else:
            run.failed += 1
            say(f"FAIL  down -v: {down.stderr[-500:]} (left: {left})")

    figures = run.figures
    say(
        f"figures (this machine): image {figures.get('image')}, built in {figures.get('build', '?')}; "
        f"up to healthy {figures.get('up_to_healthy', '?')}; upload to text {figures.get('upload_to_text', '?')}; "
        f"worker restart mid-job: {figures.get('restart', '?')}"
    )
    print(f"deploy: {run.passed} passed, {run.failed} failed", flush=True)
    return 1 if run.failed else 0


def browser_checks(run: Run, browser, stack: Stack, url: str, state: dict, metrics_token: str) -> None:
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(20_000)
    frames: list[dict] = []

    def on_socket(ws):
        def keep(payload):
            try:
                frames.append(json.loads(payload))
            except (TypeError, ValueError):
                pass

        ws.on("framereceived", keep)

    page.on("websocket", on_socket)

    def log_in():
        page.goto(f"{url}/login/")
        page.fill("input[name=username]", state["user"])
        page.fill("input[name=password]", state["password"])
        page.click("button[type=submit]")
        page.wait_for_url(f"{url}/")
        page.wait_for_function("document.getElementById('live-indicator').textContent === 'live'")
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not any(f.get("type") == "gpu.sample" for f in frames):
            page.wait_for_timeout(250)
        samples = [f for f in frames if f.get("type") == "gpu.sample"]
        if not samples:
            raise Failed(f"no gpu.sample over the websocket in 15 s (frames: {[f.get('type') for f in frames]})")
        note = samples[-1].get("error") or "ok"
        return f"dashboard live; the GPU monitor's samples arrive over the websocket ({note})"

    def make_token():
        tokens = context.new_page()
        tokens.goto(f"{url}/profile/")
        tokens.fill("#new-token-form input[name=name]", "deployment check")
        tokens.click("#new-token-form button[type=submit]")
        state["token"] = tokens.input_value("#new-token-key")
        tokens.close()
        if not state["token"]:
            raise Failed("the profile page showed no key")
        return f"key {state['token'][:9]}… made on the profile page"

    def upload():
        api = state["api"] = Api(url, state["token"])
        started = time.monotonic()
        job = api.upload("deployment-check.png", text_image(UPLOAD_LINES), "image/png")
        job = api.wait(job, JOB_WITHIN_S)
        if job["state"] != "succeeded":
            raise Failed(f"job {job['id']} {job['state']}: {job.get('message')}")
        text = api.text(job)
        run.figures["upload_to_text"] = f"{time.monotonic() - started:.1f} s"
        missing = [w for w in UPLOAD_WORDS if w not in text]
        if missing:
            raise Failed(f"the text lacks {missing}: {text!r}")
        state["job"] = job
        return f"job {job['id']} on {job['backend']}: {' / '.join(text.split())!r}"

    def live_job_events():
        job_id = state["job"]["id"]
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            seen = [f["job"]["state"] for f in frames if f.get("type") == "job.status" and f["job"]["id"] == job_id]
            if "succeeded" in seen:
                return f"the open dashboard was told {' → '.join(dict.fromkeys(seen))}"
            page.wait_for_timeout(250)
        raise Failed(f"the dashboard's websocket carried no 'succeeded' for job {job_id}")

    def metrics():
        answer = requests.get(f"{url}/metrics", headers={"Authorization": f"Bearer {metrics_token}"}, timeout=30)
        if answer.status_code != 200:
            raise Failed(f"/metrics answered {answer.status_code}")
        found = re.search(r'^ocrdash_jobs\{[^}]*state="succeeded"[^}]*\} ([0-9.]+)', answer.text, re.M)
        if not found or float(found.group(1)) < 1:
            raise Failed(f"/metrics counts no succeeded job:\n{answer.text[:800]}")
        # OCRDASH_METRICS_ALLOW_FROM=none in .env: no address is let in without the token.
        wrong = requests.get(f"{url}/metrics", headers={"Authorization": "Bearer wrong"}, timeout=30).status_code
        if wrong != 403:
            raise Failed(f"/metrics answered {wrong} to a wrong token")
        return f"{len(answer.text.splitlines())} lines, {found.group(0)}; a wrong token gets 403"

    def restart_mid_job():
        api: Api = state["api"]
        job = api.upload("restart-check.pdf", pdf(RESTART_PAGES), "application/pdf")
        deadline = time.monotonic() + JOB_WITHIN_S
        while True:
            job = api.job(job["id"])
            if job["state"] == "running" and (job.get("page") or 0) >= 2:
                break
            if job["ended"] or time.monotonic() > deadline:
                raise Failed(f"the {RESTART_PAGES}-page job never ran long enough to be cut off: {job['state']}")
            time.sleep(0.3)
        at_page = job.get("page")
        started = time.monotonic()
        restarted_at = datetime.now(UTC)
        stack.run("restart", "-t", "0", "worker")
        ended = api.wait(job, JOB_WITHIN_S)
        took = time.monotonic() - started
        summary = f"{ended['state']} {took:.0f} s after the restart (cut off at page {at_page} of {RESTART_PAGES})"
        run.figures["restart"] = summary
        if not ended["ended"]:
            raise Failed(f"job {job['id']} is still {ended['state']} {took:.0f} s after the worker restarted")
        if ended["state"] == "failed" and not ended.get("message"):
            raise Failed(f"job {job['id']} failed without a reason")
        if ended["state"] not in ("succeeded", "failed"):
            raise Failed(f"job {job['id']} ended {ended['state']}")
        if datetime.fromisoformat(ended["finished_at"]) < restarted_at:
            raise Failed(f"job {job['id']} ended {ended['state']} before the restart: nothing was cut off")
        return summary + (f": {ended['message']!r}" if ended["state"] == "failed" else "")

    def next_job_after_restart():
        api: Api = state["api"]
        job = api.wait(api.upload("after-restart.png", text_image(AFTER_RESTART_LINES), "image/png"), JOB_WITHIN_S)
        if job["state"] != "succeeded" or job["reused_from"] is not None:
            raise Failed(f"job {job['id']} {job['state']} (reused from {job['reused_from']}): {job.get('message')}")
        text = api.text(job)
        if "0815" not in text:
            raise Failed(f"job {job['id']} read {text!r}")
        return f"job {job['id']} read by the restarted worker in {job['ran_seconds']:.1f} s: {text.strip()!r}"

    run.check("log in on the login page; the dashboard's websocket is live", log_in)
    run.check("make an API token on the profile page", make_token)
    run.check("upload through the API; rapidocr reads the text", upload)
    run.check("the dashboard hears the job's states over the websocket", live_job_events)
    run.check("/metrics answers the metrics token", metrics)
    run.check("the worker restarted mid-job: the job ends", restart_mid_job)
    run.check("the restarted worker reads the next upload", next_job_after_restart)
    context.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
