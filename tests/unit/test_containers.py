"""Matching GPU processes to Docker containers: fake /proc trees, and a double of the Docker SDK client."""

from __future__ import annotations

import inspect

import pytest

from core.containers import (
    ContainerNames,
    container_id_in_cgroup,
    container_of_pid,
    label_processes,
)
from core.gpu import NvmlReader, sample_to_event
from tests.doubles.fake_pynvml import FakeNvml

VLLM_ID = "4f9c2b7e81d35a06c7e1f28b9d40a5c36e8f17b2a9d04c53e6b81f7a2c90d4e1"
WORKER_ID = "a07e5d31c9b84f62e0d7a19c3b58f4e26d0c91b7e8a35f42c6d09b1e7a3f5c28"
K8S_ID = "e2b1c8d47f05a93b6c2e18d4f7a0b95c3e6d28f1a4b07c9e5d3f16a28b0c47e9"

CGROUP_V1_DOCKER = f"""13:misc:/
12:pids:/docker/{VLLM_ID}
11:hugetlb:/docker/{VLLM_ID}
10:net_cls,net_prio:/docker/{VLLM_ID}
9:perf_event:/docker/{VLLM_ID}
8:devices:/docker/{VLLM_ID}
7:cpu,cpuacct:/docker/{VLLM_ID}
6:freezer:/docker/{VLLM_ID}
5:rdma:/
4:memory:/docker/{VLLM_ID}
3:cpuset:/docker/{VLLM_ID}
2:blkio:/docker/{VLLM_ID}
1:name=systemd:/docker/{VLLM_ID}
0::/system.slice/containerd.service
"""
CGROUP_V2_DOCKER = f"0::/system.slice/docker-{VLLM_ID}.scope\n"
CGROUP_V2_CONTAINERD = (
    "0::/kubepods.slice/kubepods-burstable.slice/"
    "kubepods-burstable-pod3c5d7e2a_8f41_4b9e_a6d0_1e2f3a4b5c6d.slice/"
    f"cri-containerd-{K8S_ID}.scope\n"
)
CGROUP_V2_HOST_SHELL = (
    "0::/user.slice/user-1000.slice/user@1000.service/app.slice/app-org.gnome.Terminal.slice/"
    "vte-spawn-5b1f3c2e-9d47-4a08-b6e1-2c7f0d93a5b8.scope\n"
)
CGROUP_V2_HOST_SERVICE = "0::/system.slice/ocrdash-worker.service\n"
CGROUP_V1_HOST = """12:pids:/user.slice/user-1000.slice/session-3.scope
4:memory:/user.slice/user-1000.slice/session-3.scope
1:name=systemd:/user.slice/user-1000.slice/session-3.scope
0::/user.slice/user-1000.slice/session-3.scope
"""


def fake_proc(root, cgroups: dict[int, str]):
    for pid, text in cgroups.items():
        (root / str(pid)).mkdir(parents=True)
        (root / str(pid) / "cgroup").write_text(text)
    return root


# -- a double of the Docker SDK client (docker 7.x: client.containers.list -> Container objects) --


class FakeContainer:
    def __init__(self, id: str, name: str, labels: dict | None = None, status: str = "running"):
        self.id = id
        self.name = name
        self.labels = labels or {}
        self.status = status


class FakeContainerCollection:
    def __init__(self, containers, error: Exception | None = None):
        self.containers = containers
        self.error = error
        self.calls: list[dict] = []

    def list(
        self, all=False, before=None, filters=None, limit=-1, since=None, sparse=False, ignore_removed=False
    ):
        self.calls.append({"all": all, "sparse": sparse, "ignore_removed": ignore_removed})
        if self.error is not None:
            raise self.error
        return [c for c in self.containers if all or c.status == "running"]


class FakeDockerClient:
    def __init__(self, containers=(), error: Exception | None = None):
        self.containers = FakeContainerCollection(list(containers), error)
        self.closed = False

    def close(self):
        self.closed = True


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def engine(*containers, error=None):
    client = FakeDockerClient(containers, error)
    made = []

    def factory():
        made.append(client)
        return client

    return client, made, factory


VLLM = FakeContainer(
    VLLM_ID, "ocrdash-vllm", {"ocrdash.role": "vllm", "com.docker.compose.project": "ocrdash"}
)
OTHER = FakeContainer(WORKER_ID, "jupyter-anna", {"com.docker.compose.project": "lab"})


# -- cgroups --------------------------------------------------------------------------------


def test_it_finds_the_container_of_a_cgroup_v1_process(tmp_path):
    proc = fake_proc(tmp_path, {186077: CGROUP_V1_DOCKER})

    assert container_of_pid(186077, proc) == VLLM_ID


def test_it_finds_the_container_of_a_cgroup_v2_process(tmp_path):
    proc = fake_proc(tmp_path, {186077: CGROUP_V2_DOCKER})

    assert container_of_pid(186077, proc) == VLLM_ID


def test_it_finds_a_containerd_kubernetes_container(tmp_path):
    proc = fake_proc(tmp_path, {4411: CGROUP_V2_CONTAINERD})

    assert container_of_pid(4411, proc) == K8S_ID


def test_it_finds_a_docker_container_under_the_cgroupfs_driver_on_cgroup_v2():
    assert container_id_in_cgroup(f"0::/docker/{VLLM_ID}\n") == VLLM_ID


def test_a_nested_container_is_named_by_the_outer_one():
    assert container_id_in_cgroup(f"0::/docker/{VLLM_ID}/docker/{WORKER_ID}\n") == VLLM_ID


@pytest.mark.parametrize("text", [CGROUP_V2_HOST_SHELL, CGROUP_V2_HOST_SERVICE, CGROUP_V1_HOST, "0::/\n", ""])
def test_a_host_process_has_no_container(tmp_path, text):
    proc = fake_proc(tmp_path, {184532: text})

    assert container_of_pid(184532, proc) is None


def test_a_process_that_is_gone_has_no_container(tmp_path):
    assert container_of_pid(99999, tmp_path) is None


# -- names from the engine ------------------------------------------------------------------


def test_it_names_containers_through_the_engine():
    client, _, factory = engine(VLLM, OTHER)
    names = ContainerNames(factory)

    assert names.names_for([VLLM_ID, None, K8S_ID]) == {VLLM_ID: "ocrdash-vllm"}
    assert names.reason is None
    assert client.containers.calls == [{"all": False, "sparse": False, "ignore_removed": True}]


def test_it_asks_the_engine_once_for_containers_it_knows():
    client, made, factory = engine(VLLM, OTHER)
    names = ContainerNames(factory)

    for _ in range(10):
        assert names.names_for([VLLM_ID, WORKER_ID]) == {VLLM_ID: "ocrdash-vllm", WORKER_ID: "jupyter-anna"}

    assert len(made) == 1
    assert len(client.containers.calls) == 1


def test_an_id_the_engine_does_not_know_is_asked_about_once_a_minute():
    clock = Clock()
    client, _, factory = engine(VLLM)
    names = ContainerNames(factory, clock=clock)

    for _ in range(30):
        clock.now += 1
        assert names.names_for([K8S_ID]) == {}
    assert len(client.containers.calls) == 1

    clock.now += 31
    names.names_for([K8S_ID])
    assert len(client.containers.calls) == 2


def test_a_new_container_is_found_on_the_next_sample():
    client, _, factory = engine(VLLM)
    names = ContainerNames(factory)
    assert names.names_for([VLLM_ID]) == {VLLM_ID: "ocrdash-vllm"}

    client.containers.containers.append(OTHER)

    assert names.names_for([VLLM_ID, WORKER_ID]) == {VLLM_ID: "ocrdash-vllm", WORKER_ID: "jupyter-anna"}


def test_without_an_engine_names_are_empty_and_the_reason_is_kept():
    docker = pytest.importorskip("docker")
    clock = Clock()
    attempts = []

    def no_engine():
        attempts.append(clock.now)
        raise docker.errors.DockerException(
            "Error while fetching server API version: ('Connection aborted.', "
            "FileNotFoundError(2, 'No such file or directory'))"
        )

    names = ContainerNames(no_engine, clock=clock)

    assert names.names_for([VLLM_ID]) == {}
    assert names.reason.startswith("Docker engine not reachable: Error while fetching server API version")
    for _ in range(59):
        clock.now += 1
        assert names.names_for([VLLM_ID]) == {}
    assert len(attempts) == 1  # not once a second

    clock.now += 1
    names.names_for([VLLM_ID])
    assert len(attempts) == 2


def test_an_engine_that_goes_away_gives_empty_names_and_comes_back_later():
    requests = pytest.importorskip("requests")
    clock = Clock()
    client, made, factory = engine(VLLM)
    names = ContainerNames(factory, clock=clock)
    client.containers.error = requests.exceptions.ConnectionError("Connection refused")

    assert names.names_for([VLLM_ID]) == {}
    assert "Connection refused" in names.reason
    assert client.closed

    client.containers.error = None
    clock.now += 60
    assert names.names_for([VLLM_ID]) == {VLLM_ID: "ocrdash-vllm"}
    assert names.reason is None
    assert len(made) == 2


def test_the_real_docker_sdk_without_an_engine_gives_empty_names_and_a_reason():
    docker = pytest.importorskip("docker")
    try:
        docker.from_env(timeout=5).ping()
    except docker.errors.DockerException:
        pass
    else:
        pytest.skip("a Docker engine answers here")

    names = ContainerNames()

    assert names.names_for([VLLM_ID]) == {}
    assert names.reason.startswith("Docker engine not reachable")
    names.close()


def test_the_client_double_takes_the_arguments_of_the_real_list():
    docker = pytest.importorskip("docker")
    real = inspect.signature(docker.models.containers.ContainerCollection.list)

    assert list(inspect.signature(FakeContainerCollection.list).parameters) == list(real.parameters)
    for attribute in ("id", "name", "labels"):
        assert isinstance(getattr(docker.models.containers.Container, attribute), property)


# -- labelling a snapshot -------------------------------------------------------------------


def snapshot_3060():
    with NvmlReader(FakeNvml("rtx3060_shared")) as reader:
        return reader.read()


def test_it_puts_container_names_and_the_vllm_role_on_processes(tmp_path):
    proc = fake_proc(tmp_path, {184532: CGROUP_V2_HOST_SHELL, 186077: CGROUP_V2_DOCKER})
    _, _, factory = engine(VLLM, OTHER)

    labelled = label_processes(snapshot_3060(), ContainerNames(factory), {}, proc_root=proc)

    processes = labelled.devices[0].processes
    assert [(p.pid, p.container, p.role) for p in processes] == [
        (184532, None, None),
        (186077, "ocrdash-vllm", "vllm"),
    ]
    assert [p.used_bytes for p in processes] == [2638217216, 3714056192]
    assert labelled.devices[0].free_bytes == 6238502912


def test_a_container_without_the_ocrdash_label_has_a_name_and_no_role(tmp_path):
    proc = fake_proc(
        tmp_path, {184532: f"0::/system.slice/docker-{WORKER_ID}.scope\n", 186077: CGROUP_V1_HOST}
    )
    _, _, factory = engine(VLLM, OTHER)

    labelled = label_processes(snapshot_3060(), ContainerNames(factory), {}, proc_root=proc)

    assert [(p.container, p.role) for p in labelled.devices[0].processes] == [
        ("jupyter-anna", None),
        (None, None),
    ]


def test_it_marks_this_machines_own_worker_by_pid(tmp_path):
    proc = fake_proc(tmp_path, {184532: CGROUP_V2_HOST_SERVICE, 186077: CGROUP_V2_DOCKER})
    _, _, factory = engine(VLLM)

    labelled = label_processes(snapshot_3060(), ContainerNames(factory), {184532: "worker"}, proc_root=proc)

    assert [(p.pid, p.role) for p in labelled.devices[0].processes] == [(184532, "worker"), (186077, "vllm")]


def test_without_an_engine_the_container_column_is_empty_and_roles_still_come_from_pids(tmp_path):
    proc = fake_proc(tmp_path, {184532: CGROUP_V2_HOST_SERVICE, 186077: CGROUP_V2_DOCKER})

    def no_engine():
        raise ConnectionError("no socket")

    labelled = label_processes(snapshot_3060(), ContainerNames(no_engine), {184532: "worker"}, proc_root=proc)

    assert [(p.container, p.role) for p in labelled.devices[0].processes] == [(None, "worker"), (None, None)]


def test_the_event_carries_the_container_and_the_role(tmp_path):
    proc = fake_proc(tmp_path, {186077: CGROUP_V2_DOCKER})
    _, _, factory = engine(VLLM)

    event = sample_to_event(label_processes(snapshot_3060(), ContainerNames(factory), proc_root=proc))

    assert event["devices"][0]["processes"][1] == {
        "pid": 186077,
        "name": "VLLM::EngineCore",
        "used_bytes": 3714056192,
        "container": "ocrdash-vllm",
        "role": "vllm",
    }


def test_a_snapshot_without_processes_is_returned_as_it_is():
    with NvmlReader(FakeNvml("a100_idle")) as reader:
        snapshot = reader.read()

    def must_not_be_called():
        raise AssertionError("no process, no engine call")

    assert label_processes(snapshot, ContainerNames(must_not_be_called)) is snapshot
