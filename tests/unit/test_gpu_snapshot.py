"""Reading the GPU through NVML, against a double driven by recorded values (tests/data/nvml)."""

from __future__ import annotations

import inspect
import json

import pytest

from core.gpu import (
    GIB,
    GPU_LOST_MESSAGE,
    NO_GPU_MESSAGE,
    GpuSnapshot,
    NvmlReader,
    close_readers,
    free_memory_of,
    read_snapshot,
    sample_to_event,
)
from tests.doubles import fake_pynvml
from tests.doubles.fake_pynvml import FakeNvml, load_recording, record, recording_names

MIB = 1024**2


def read(nvml, **kwargs) -> GpuSnapshot:
    with NvmlReader(nvml, **kwargs) as reader:
        return reader.read()


# -- what is read ---------------------------------------------------------------------------


def test_it_reads_total_used_and_free_per_device():
    gpu = read(FakeNvml("rtx3060_shared")).devices[0]

    assert gpu.total_bytes == 12884901888
    assert gpu.free_bytes == 6238502912
    assert gpu.used_bytes == 6393692160
    assert gpu.reserved_bytes == 252706816
    assert gpu.used_bytes + gpu.reserved_bytes + gpu.free_bytes == gpu.total_bytes


def test_the_seed_situation_leaves_5_81_gib_free():
    snapshot = read(FakeNvml("rtx3060_shared"))

    assert round(free_memory_of(snapshot, 0) / GIB, 2) == 5.81


def test_it_reads_name_uuid_driver_and_compute_capability():
    snapshot = read(FakeNvml("h100_vllm"))
    gpu = snapshot.devices[0]

    assert snapshot.driver_version == "550.54.15"
    assert gpu.index == 0
    assert gpu.name == "NVIDIA H100 80GB HBM3"
    assert gpu.uuid == "GPU-1f7d0b93-c4a2-58e6-0d3f-b8e51c9a2674"
    assert gpu.compute_capability == (9, 0)


def test_it_reads_utilization_temperature_and_power_in_watts():
    gpu = read(FakeNvml("rtx3060_shared")).devices[0]

    assert gpu.utilization_percent == 3
    assert gpu.temperature_c == 46
    assert gpu.power_watts == pytest.approx(21.843)
    assert gpu.power_limit_watts == pytest.approx(170.0)


def test_it_lists_the_processes_holding_memory_with_their_names():
    gpu = read(FakeNvml("rtx3060_shared")).devices[0]

    assert [(p.pid, p.name, p.used_bytes) for p in gpu.processes] == [
        (184532, "python", 2516 * MIB),
        (186077, "VLLM::EngineCore", 3542 * MIB),
    ]
    assert all(p.container is None and p.role is None for p in gpu.processes)


def test_an_idle_card_has_no_processes():
    snapshot = read(FakeNvml("a100_idle"))
    gpu = snapshot.devices[0]

    assert snapshot.error is None
    assert gpu.name == "NVIDIA A100-SXM4-80GB"
    assert gpu.used_bytes == 0
    assert gpu.processes == ()


def test_a_process_with_unknown_memory_is_listed_with_none():
    gpu = read(FakeNvml("wsl_rtx4070_laptop")).devices[0]

    assert [(p.pid, p.name, p.used_bytes) for p in gpu.processes] == [
        (2231, "/python3.11", None),
        (389, "/Xwayland", None),
    ]


def test_it_takes_the_raw_not_available_value_as_unknown_memory():
    class RawNvml(FakeNvml):
        # As a binding that does not turn NVML_VALUE_NOT_AVAILABLE into None would return it.
        def nvmlDeviceGetComputeRunningProcesses(self, handle):
            procs = super().nvmlDeviceGetComputeRunningProcesses(handle)
            for p in procs:
                p.usedGpuMemory = fake_pynvml.NVML_VALUE_NOT_AVAILABLE_ulonglong.value
            return procs

    gpu = read(RawNvml("rtx3060_shared")).devices[0]

    assert [p.used_bytes for p in gpu.processes] == [None, None]


def test_an_unsupported_field_is_none_and_the_rest_is_read():
    nvml = FakeNvml("rtx3060_shared")
    nvml.fail("nvmlDeviceGetTemperature", fake_pynvml.NVML_ERROR_NOT_SUPPORTED)
    nvml.fail("nvmlDeviceGetPowerUsage", fake_pynvml.NVML_ERROR_NO_PERMISSION)

    snapshot = read(nvml)
    gpu = snapshot.devices[0]

    assert snapshot.error is None
    assert gpu.temperature_c is None
    assert gpu.power_watts is None
    assert gpu.power_limit_watts == pytest.approx(170.0)
    assert gpu.free_bytes == 6238502912
    assert len(gpu.processes) == 2
    assert snapshot.details["unavailable"] == [
        "GPU 0 temperature_c: Not Supported",
        "GPU 0 power_watts: Insufficient Permissions",
    ]


def test_a_card_without_a_power_cap_reports_none_for_it():
    snapshot = read(FakeNvml("wsl_rtx4070_laptop"))

    assert snapshot.devices[0].power_limit_watts is None
    assert snapshot.devices[0].power_watts == pytest.approx(9.412)
    assert snapshot.details["unavailable"] == ["GPU 0 power_limit_watts: Not Supported"]


def test_it_uses_memory_v1_where_the_driver_has_no_v2_and_asks_for_v2_only_once():
    recording = load_recording("rtx3060_shared")
    recording["devices"][0]["nvmlDeviceGetMemoryInfo_v2"] = {"nvmlError": "NVML_ERROR_FUNCTION_NOT_FOUND"}
    nvml = FakeNvml(recording)

    with NvmlReader(nvml) as reader:
        snapshots = [reader.read() for _ in range(3)]

    gpu = snapshots[-1].devices[0]
    assert gpu.used_bytes == 6646398976  # v1 counts the reserved memory as used
    assert gpu.free_bytes == 6238502912
    assert gpu.reserved_bytes is None
    assert nvml.count("nvmlDeviceGetMemoryInfo") == 1 + 3


def test_a_process_in_both_lists_is_listed_once():
    recording = load_recording("rtx3060_shared")
    device = recording["devices"][0]
    device["nvmlDeviceGetGraphicsRunningProcesses"] = [
        {"pid": 184532, "usedGpuMemory": 2516 * MIB},
        {"pid": 2101, "usedGpuMemory": 38 * MIB},
    ]
    recording["nvmlSystemGetProcessName"]["2101"] = "/usr/lib/xorg/Xorg"

    gpu = read(FakeNvml(recording)).devices[0]

    assert [(p.pid, p.name) for p in gpu.processes] == [
        (184532, "python"),
        (186077, "VLLM::EngineCore"),
        (2101, "/usr/lib/xorg/Xorg"),
    ]


def test_a_name_nvml_cannot_give_comes_from_proc_then_from_the_pid(tmp_path):
    recording = load_recording("rtx3060_shared")
    recording["nvmlSystemGetProcessName"] = {}
    (tmp_path / "184532").mkdir()
    (tmp_path / "184532" / "comm").write_text("python3\n")

    gpu = read(FakeNvml(recording), proc_root=tmp_path).devices[0]

    assert [p.name for p in gpu.processes] == ["python3", "pid 186077"]


def test_an_old_driver_without_the_newest_process_call_uses_the_older_one():
    nvml = FakeNvml("rtx3060_shared")
    # pynvml raises NVMLLibraryMismatchError when the driver lacks the call the binding makes.
    nvml.fail("nvmlDeviceGetComputeRunningProcesses", fake_pynvml.NVML_ERROR_FUNCTION_NOT_FOUND)

    gpu = read(nvml).devices[0]

    assert [p.pid for p in gpu.processes] == [184532, 186077]
    assert nvml.count("nvmlDeviceGetComputeRunningProcesses_v2") == 1


def test_every_recording_reads_as_a_consistent_device():
    for name in recording_names():
        snapshot = read(FakeNvml(name))
        assert snapshot.error is None, name
        for gpu in snapshot.devices:
            assert gpu.name.startswith("NVIDIA "), name
            assert gpu.uuid.startswith("GPU-"), name
            assert gpu.used_bytes + (gpu.reserved_bytes or 0) + gpu.free_bytes == gpu.total_bytes, name
            known = sum(p.used_bytes for p in gpu.processes if p.used_bytes is not None)
            assert known <= gpu.used_bytes, name


# -- errors and recovery --------------------------------------------------------------------


def test_a_missing_driver_gives_the_no_gpu_message():
    snapshot = read(FakeNvml("a100_idle", init_error=fake_pynvml.NVML_ERROR_LIBRARY_NOT_FOUND))

    assert snapshot.error == NO_GPU_MESSAGE == "No NVIDIA GPU visible: jobs run on the CPU"
    assert snapshot.devices == ()
    assert not snapshot.has_gpu
    assert snapshot.details == {"reason": "NVML Shared Library Not Found"}
    assert free_memory_of(snapshot, 0) == 0


def test_an_unloaded_driver_gives_the_no_gpu_message():
    snapshot = read(FakeNvml("a100_idle", init_error=fake_pynvml.NVML_ERROR_DRIVER_NOT_LOADED))

    assert snapshot.error == NO_GPU_MESSAGE
    assert snapshot.details == {"reason": "Driver Not Loaded"}


def test_a_machine_with_no_device_gives_the_no_gpu_message():
    recording = load_recording("a100_idle")
    recording["devices"] = []
    nvml = FakeNvml(recording)

    snapshot = read(nvml)

    assert snapshot.error == NO_GPU_MESSAGE
    assert snapshot.details == {"reason": "NVML sees no NVIDIA device"}
    assert not nvml.initialised


def test_it_keeps_nvml_initialised_between_reads_and_shuts_it_down_on_close():
    nvml = FakeNvml("rtx3060_shared")
    reader = NvmlReader(nvml)

    for _ in range(5):
        assert reader.read().has_gpu
    assert nvml.count("nvmlInit") == 1
    assert nvml.count("nvmlDeviceGetName") == 1  # what cannot change is read once per session
    assert nvml.initialised

    reader.close()
    assert nvml.count("nvmlShutdown") == 1
    assert not nvml.initialised


def test_it_recovers_when_the_gpu_comes_back_after_being_lost():
    nvml = FakeNvml("rtx3060_shared")
    reader = NvmlReader(nvml)
    assert reader.read().has_gpu

    nvml.lose_gpu(on_call=2)
    lost = reader.read()
    assert lost.error == GPU_LOST_MESSAGE
    assert lost.devices == ()
    assert lost.details == {"reason": "GPU is lost"}
    assert not nvml.initialised  # the reader shut its session down

    assert reader.read().error == GPU_LOST_MESSAGE  # still gone: tries again, no exception

    nvml.gpu_returns()
    back = reader.read()
    assert back.error is None
    assert back.devices[0].free_bytes == 6238502912
    assert nvml.count("nvmlInit") == 3
    reader.close()


def test_it_recovers_when_the_driver_is_reloaded():
    nvml = FakeNvml("rtx3060_shared")
    reader = NvmlReader(nvml)
    assert reader.read().has_gpu

    nvml.lose_gpu(on_call=1)
    nvml.init_error = fake_pynvml.NVML_ERROR_DRIVER_NOT_LOADED
    assert reader.read().error == GPU_LOST_MESSAGE
    unloaded = reader.read()
    assert unloaded.error == NO_GPU_MESSAGE
    assert unloaded.details == {"reason": "Driver Not Loaded"}

    nvml.init_error = None
    nvml.gpu_returns()
    assert reader.read().has_gpu
    reader.close()


@pytest.mark.parametrize(
    "code,reason",
    [
        (fake_pynvml.NVML_ERROR_UNKNOWN, "Unknown Error"),
        (fake_pynvml.NVML_ERROR_UNINITIALIZED, "Uninitialized"),
    ],
)
def test_an_nvml_session_in_a_bad_state_is_started_afresh(code, reason):
    nvml = FakeNvml("rtx3060_shared")
    reader = NvmlReader(nvml)
    assert reader.read().has_gpu

    nvml.fail("nvmlDeviceGetMemoryInfo", code)
    broken = reader.read()
    assert broken.error == GPU_LOST_MESSAGE
    assert broken.details == {"reason": reason}

    nvml.heal("nvmlDeviceGetMemoryInfo")
    assert reader.read().has_gpu
    assert nvml.count("nvmlInit") == 2
    reader.close()


def test_it_never_raises_on_an_error_nvml_does_not_describe():
    class Broken(FakeNvml):
        def nvmlDeviceGetCount(self):
            raise OSError(5, "Input/output error")

    nvml = Broken("a100_idle")
    with NvmlReader(nvml) as reader:
        snapshot = reader.read()

    assert snapshot.error == GPU_LOST_MESSAGE
    assert snapshot.details == {"reason": "OSError: [Errno 5] Input/output error"}
    assert not nvml.initialised


def test_read_snapshot_keeps_the_nvml_session_open_between_calls():
    nvml = FakeNvml("h100_vllm")

    first = read_snapshot(nvml)
    second = read_snapshot(nvml)

    assert first.devices[0].name == second.devices[0].name == "NVIDIA H100 80GB HBM3"
    assert second.taken_at >= first.taken_at
    assert nvml.count("nvmlInit") == 1
    assert nvml.initialised

    other = FakeNvml("a100_idle")
    assert read_snapshot(other).devices[0].name == "NVIDIA A100-SXM4-80GB"
    assert not nvml.initialised  # the session of the previous module was shut down

    close_readers()
    assert not other.initialised


# -- the gpu.sample event -------------------------------------------------------------------


def test_the_event_carries_bytes_percent_degrees_and_watts():
    snapshot = read(FakeNvml("rtx3060_shared"), clock=lambda: 1718000000.25)

    assert sample_to_event(snapshot) == {
        "taken_at": 1718000000.25,
        "driver_version": "550.54.15",
        "error": None,
        "devices": [
            {
                "index": 0,
                "uuid": "GPU-5e2b6c3a-8f0d-4b7e-9c61-2a4f3d9e7b10",
                "name": "NVIDIA GeForce RTX 3060",
                "total": 12884901888,
                "used": 6393692160,
                "free": 6238502912,
                "reserved": 252706816,
                "utilization": 3,
                "temperature": 46,
                "power": 21.84,
                "power_limit": 170.0,
                "compute_capability": "8.6",
                "processes": [
                    {
                        "pid": 184532,
                        "name": "python",
                        "used_bytes": 2638217216,
                        "container": None,
                        "role": None,
                    },
                    {
                        "pid": 186077,
                        "name": "VLLM::EngineCore",
                        "used_bytes": 3714056192,
                        "container": None,
                        "role": None,
                    },
                ],
            }
        ],
    }


def test_the_event_without_a_gpu_says_so_and_has_no_devices():
    snapshot = read(
        FakeNvml("a100_idle", init_error=fake_pynvml.NVML_ERROR_LIBRARY_NOT_FOUND), clock=lambda: 5.0
    )

    assert sample_to_event(snapshot) == {
        "taken_at": 5.0,
        "driver_version": None,
        "error": "No NVIDIA GPU visible: jobs run on the CPU",
        "devices": [],
    }


def test_every_event_survives_json():
    for name in recording_names():
        event = sample_to_event(read(FakeNvml(name)))
        assert json.loads(json.dumps(event)) == event


# -- the double follows the real module -----------------------------------------------------


def test_the_double_has_the_error_classes_and_constants_of_the_real_module():
    pynvml = pytest.importorskip("pynvml")
    real_errors = {n: getattr(pynvml, n) for n in dir(pynvml) if n.startswith("NVMLError_")}
    fake_errors = {n: getattr(fake_pynvml, n) for n in dir(fake_pynvml) if n.startswith("NVMLError_")}

    assert sorted(fake_errors) == sorted(real_errors)
    for name, cls in fake_errors.items():
        assert issubclass(cls, fake_pynvml.NVMLError)
        assert cls(0).value == real_errors[name](0).value
        if cls(0).value in fake_pynvml.NVMLError._errcode_to_string:
            assert str(cls(0)) == str(real_errors[name](0)), name
    assert type(fake_pynvml.NVMLError(fake_pynvml.NVML_ERROR_GPU_IS_LOST)).__name__ == "NVMLError_GpuIsLost"
    for name in (
        "NVML_TEMPERATURE_GPU",
        "nvmlMemory_v2",
        "NVML_ERROR_LIBRARY_NOT_FOUND",
        "NVML_ERROR_DRIVER_NOT_LOADED",
        "NVML_ERROR_GPU_IS_LOST",
        "NVML_ERROR_NOT_SUPPORTED",
        "NVML_ERROR_NO_PERMISSION",
    ):
        assert getattr(FakeNvml, name) == getattr(pynvml, name), name
    assert (
        fake_pynvml.NVML_VALUE_NOT_AVAILABLE_ulonglong.value
        == pynvml.NVML_VALUE_NOT_AVAILABLE_ulonglong.value
    )
    for struct in ("c_nvmlMemory_t", "c_nvmlMemory_v2_t", "c_nvmlUtilization_t"):
        fake_fields = [f[0] for f in getattr(fake_pynvml, struct)._fields_]
        assert fake_fields == [f[0] for f in getattr(pynvml, struct)._fields_], struct


def test_the_double_has_the_signatures_of_the_real_functions():
    pynvml = pytest.importorskip("pynvml")
    functions = [n for n in dir(FakeNvml) if n.startswith("nvml") and callable(getattr(FakeNvml, n))]

    assert "nvmlDeviceGetMemoryInfo" in functions
    for name in functions:
        if name == "nvmlExceptionClass":
            continue
        real = list(inspect.signature(getattr(pynvml, name)).parameters)
        fake = list(inspect.signature(getattr(FakeNvml(recording_names()[0]), name)).parameters)
        assert fake == real, name


def test_recording_the_double_gives_back_its_recording():
    for name in recording_names():
        original = load_recording(name)
        again = record(FakeNvml(name))
        assert again["devices"] == original["devices"], name
        assert again["nvmlSystemGetDriverVersion"] == original["nvmlSystemGetDriverVersion"]
        assert again["nvmlSystemGetProcessName"] == original["nvmlSystemGetProcessName"]


# -- the real library on this machine -------------------------------------------------------


def _real_gpu_present() -> bool:
    try:
        import pynvml
    except ImportError:
        return False
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return False
    try:
        return pynvml.nvmlDeviceGetCount() > 0
    finally:
        pynvml.nvmlShutdown()


@pytest.mark.skipif(_real_gpu_present(), reason="an NVIDIA GPU is visible here")
def test_the_real_nvml_on_a_machine_without_gpu_gives_the_no_gpu_snapshot():
    pytest.importorskip("pynvml")
    snapshot = read_snapshot()
    again = read_snapshot()

    assert snapshot.error == again.error == NO_GPU_MESSAGE
    assert snapshot.devices == ()
    assert snapshot.details["reason"] in (
        "NVML Shared Library Not Found",
        "Driver Not Loaded",
        "NVML sees no NVIDIA device",
    )
    assert sample_to_event(snapshot)["devices"] == []
