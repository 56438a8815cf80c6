"""A double of the `pynvml` module (nvidia-ml-py 13.615.71) for machines without an NVIDIA GPU.

It has the same names as the real module for the calls ocrdash makes: the NVML_* constants,
`NVMLError` and its subclasses (made by the same mechanism as pynvml's
`_extractNVMLErrorsAsClasses`, so `NVMLError(NVML_ERROR_GPU_IS_LOST)` is an
`NVMLError_GpuIsLost`), ctypes structures like `c_nvmlMemory_t`, and process entries with
`.pid` / `.usedGpuMemory` (None when NVML says NVML_VALUE_NOT_AVAILABLE, as pynvml does).

An instance of `FakeNvml` stands where the module would:

    nvml = FakeNvml("rtx3060_shared")             # tests/data/nvml/rtx3060_shared.json
    snapshot = NvmlReader(nvml).read()

Its values come from recordings: one JSON key per NVML call, holding what the call returned,
or {"nvmlError": "NVML_ERROR_NOT_SUPPORTED"} where it failed. Make one on a machine with a GPU:

    .venv/bin/python -m tests.doubles.fake_pynvml record > tests/data/nvml/this_card.json

Faults, as the real library shows them:

    FakeNvml("a100_idle", init_error=NVML_ERROR_LIBRARY_NOT_FOUND)   # no driver: nvmlInit fails
    nvml.lose_gpu(on_call=3)   # the 3rd device call from now raises NVMLError_GpuIsLost, and every
                               # later one, until gpu_returns(); handles from before stay dead
    nvml.gpu_returns()         # works again for handles from a new nvmlInit
    nvml.fail("nvmlDeviceGetPowerUsage", NVML_ERROR_NO_PERMISSION, device=0)
"""

from __future__ import annotations

import copy
import json
import socket
import string
import sys
import time
from ctypes import Structure, c_uint, c_ulonglong
from pathlib import Path
from typing import Any

RECORDINGS = Path(__file__).resolve().parents[1] / "data" / "nvml"

# -- constants, as in pynvml ----------------------------------------------------------------

NVML_TEMPERATURE_GPU = 0
NVML_TEMPERATURE_GPU_MAX = 1
NVML_TEMPERATURE_COUNT = 2

NVML_SUCCESS = 0
NVML_ERROR_UNINITIALIZED = 1
NVML_ERROR_INVALID_ARGUMENT = 2
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_NO_PERMISSION = 4
NVML_ERROR_ALREADY_INITIALIZED = 5
NVML_ERROR_NOT_FOUND = 6
NVML_ERROR_INSUFFICIENT_SIZE = 7
NVML_ERROR_INSUFFICIENT_POWER = 8
NVML_ERROR_DRIVER_NOT_LOADED = 9
NVML_ERROR_TIMEOUT = 10
NVML_ERROR_IRQ_ISSUE = 11
NVML_ERROR_LIBRARY_NOT_FOUND = 12
NVML_ERROR_FUNCTION_NOT_FOUND = 13
NVML_ERROR_CORRUPTED_INFOROM = 14
NVML_ERROR_GPU_IS_LOST = 15
NVML_ERROR_RESET_REQUIRED = 16
NVML_ERROR_OPERATING_SYSTEM = 17
NVML_ERROR_LIB_RM_VERSION_MISMATCH = 18
NVML_ERROR_IN_USE = 19
NVML_ERROR_MEMORY = 20
NVML_ERROR_NO_DATA = 21
NVML_ERROR_VGPU_ECC_NOT_SUPPORTED = 22
NVML_ERROR_INSUFFICIENT_RESOURCES = 23
NVML_ERROR_FREQ_NOT_SUPPORTED = 24
NVML_ERROR_ARGUMENT_VERSION_MISMATCH = 25
NVML_ERROR_DEPRECATED = 26
NVML_ERROR_NOT_READY = 27
NVML_ERROR_GPU_NOT_FOUND = 28
NVML_ERROR_INVALID_STATE = 29
NVML_ERROR_RESET_TYPE_NOT_SUPPORTED = 30
NVML_ERROR_UNKNOWN = 999

NVML_VALUE_NOT_AVAILABLE_ulonglong = c_ulonglong(-1)
NVML_VALUE_NOT_AVAILABLE_uint = c_uint(-1)

nvmlMemory_v2 = 0x02000028


# -- errors, made the way pynvml makes them -------------------------------------------------


class NVMLLibraryMismatchError(Exception):
    pass


class NVMLError(Exception):
    _valClassMapping: dict = dict()
    _errcode_to_string = {
        NVML_ERROR_UNINITIALIZED: "Uninitialized",
        NVML_ERROR_INVALID_ARGUMENT: "Invalid Argument",
        NVML_ERROR_NOT_SUPPORTED: "Not Supported",
        NVML_ERROR_NO_PERMISSION: "Insufficient Permissions",
        NVML_ERROR_ALREADY_INITIALIZED: "Already Initialized",
        NVML_ERROR_NOT_FOUND: "Not Found",
        NVML_ERROR_INSUFFICIENT_SIZE: "Insufficient Size",
        NVML_ERROR_INSUFFICIENT_POWER: "Insufficient External Power",
        NVML_ERROR_DRIVER_NOT_LOADED: "Driver Not Loaded",
        NVML_ERROR_TIMEOUT: "Timeout",
        NVML_ERROR_IRQ_ISSUE: "Interrupt Request Issue",
        NVML_ERROR_LIBRARY_NOT_FOUND: "NVML Shared Library Not Found",
        NVML_ERROR_FUNCTION_NOT_FOUND: "Function Not Found",
        NVML_ERROR_CORRUPTED_INFOROM: "Corrupted infoROM",
        NVML_ERROR_GPU_IS_LOST: "GPU is lost",
        NVML_ERROR_RESET_REQUIRED: "GPU requires restart",
        NVML_ERROR_OPERATING_SYSTEM: "The operating system has blocked the request.",
        NVML_ERROR_LIB_RM_VERSION_MISMATCH: "RM has detected an NVML/RM version mismatch.",
        NVML_ERROR_MEMORY: "Insufficient Memory",
        NVML_ERROR_UNKNOWN: "Unknown Error",
    }

    def __new__(typ, value):
        if typ == NVMLError:
            typ = NVMLError._valClassMapping.get(value, typ)
        obj = Exception.__new__(typ)
        obj.value = value
        return obj

    def __str__(self):
        return NVMLError._errcode_to_string.get(self.value, f"NVML Error with code {self.value}")

    def __eq__(self, other):
        return self.value == other.value

    __hash__ = Exception.__hash__


def nvmlExceptionClass(nvmlErrorCode):
    if nvmlErrorCode not in NVMLError._valClassMapping:
        raise ValueError(f"nvmlErrorCode {nvmlErrorCode} is not valid")
    return NVMLError._valClassMapping[nvmlErrorCode]


def _extractNVMLErrorsAsClasses():
    """NVML_ERROR_GPU_IS_LOST becomes NVMLError_GpuIsLost, a subclass of NVMLError (as in pynvml)."""
    this_module = sys.modules[__name__]
    nvmlErrorsNames = [x for x in dir(this_module) if x.startswith("NVML_ERROR_")]
    for err_name in nvmlErrorsNames:
        class_name = "NVMLError_" + string.capwords(err_name.replace("NVML_ERROR_", ""), "_").replace("_", "")
        err_val = getattr(this_module, err_name)

        def gen_new(val):
            def new(typ, *args):
                obj = NVMLError.__new__(typ, val)
                return obj

            return new

        new_error_class = type(class_name, (NVMLError,), {"__new__": gen_new(err_val)})
        new_error_class.__module__ = __name__
        setattr(this_module, class_name, new_error_class)
        NVMLError._valClassMapping[err_val] = new_error_class


_extractNVMLErrorsAsClasses()


def error_code(name: str) -> int:
    """NVML_ERROR_GPU_IS_LOST (or GPU_IS_LOST) -> 15."""
    return globals()[name if name.startswith("NVML_ERROR_") else "NVML_ERROR_" + name]


def error_name(code: int) -> str:
    """15 -> "NVML_ERROR_GPU_IS_LOST"."""
    for name, value in globals().items():
        if name.startswith("NVML_ERROR_") and value == code:
            return name
    return f"NVML_ERROR_{code}"


# -- return objects, as in pynvml -----------------------------------------------------------


class c_nvmlMemory_t(Structure):
    _fields_ = [("total", c_ulonglong), ("free", c_ulonglong), ("used", c_ulonglong)]


class c_nvmlMemory_v2_t(Structure):
    _fields_ = [
        ("version", c_uint),
        ("total", c_ulonglong),
        ("reserved", c_ulonglong),
        ("free", c_ulonglong),
        ("used", c_ulonglong),
    ]


class c_nvmlUtilization_t(Structure):
    _fields_ = [("gpu", c_uint), ("memory", c_uint)]


class nvmlFriendlyObject:
    """What pynvml returns per running process (pid, usedGpuMemory, gpuInstanceId, computeInstanceId)."""

    def __init__(self, dictionary):
        for x in dictionary:
            setattr(self, x, dictionary[x])

    def __str__(self):
        return self.__dict__.__str__()


class _Handle:
    """Stands for pynvml's c_nvmlDevice_t: opaque, valid for the session that made it."""

    __slots__ = ("index", "session")

    def __init__(self, index: int, session: int):
        self.index = index
        self.session = session

    def __repr__(self) -> str:
        return f"<fake nvmlDevice {self.index} of session {self.session}>"


_NO_MIG = 0xFFFFFFFF
_ERROR_KEY = "nvmlError"


def load_recording(name: str | Path | dict) -> dict:
    """A recording by name ("a100_idle"), by path, or as a dict; always a private copy."""
    if isinstance(name, dict):
        return copy.deepcopy(name)
    path = Path(name)
    if not path.suffix:
        path = RECORDINGS / f"{name}.json"
    return json.loads(path.read_text())


def recording_names() -> list[str]:
    return sorted(p.stem for p in RECORDINGS.glob("*.json"))


class FakeNvml:
    """Stands where the `pynvml` module would; see the module docstring."""

    def __init__(self, recording: str | Path | dict, *, init_error: int | None = None):
        self.recording = load_recording(recording)
        self.devices: list[dict] = self.recording["devices"]
        # nvmlInit raises NVMLError(init_error) while this is set (None: it works).
        self.init_error = init_error
        self.calls: list[str] = []
        self._refcount = 0
        self._session = 0
        self._lost = False
        self._lost_before_session = 0  # handles of sessions up to this one died with the GPU
        self._lose_in: int | None = None
        self._failures: dict[tuple[str, int | None], int] = {}

    # -- fault controls ---------------------------------------------------------------------

    def lose_gpu(self, on_call: int = 1) -> None:
        """The `on_call`-th device call from now raises NVMLError_GpuIsLost, and so does every later one."""
        self._lose_in = on_call

    def gpu_returns(self) -> None:
        """The GPU answers again, but only through handles from a fresh nvmlInit."""
        self._lost = False
        self._lose_in = None

    def fail(self, function: str, error: int, device: int | None = None) -> None:
        """`function` (on `device`, or on every device) raises NVMLError(error) from now on."""
        self._failures[(function, device)] = error

    def heal(self, function: str, device: int | None = None) -> None:
        self._failures.pop((function, device), None)

    @property
    def initialised(self) -> bool:
        return self._refcount > 0

    def count(self, function: str) -> int:
        return self.calls.count(function)

    # -- plumbing ---------------------------------------------------------------------------

    def _enter(self, function: str, handle: _Handle | None = None, device_call: bool = False) -> None:
        self.calls.append(function)
        if self._refcount == 0:
            raise NVMLError(NVML_ERROR_UNINITIALIZED)
        if device_call:
            if self._lose_in is not None:
                self._lose_in -= 1
                if self._lose_in <= 0:
                    self._lose_in = None
                    self._lost = True
                    self._lost_before_session = self._session
            if self._lost or (handle is not None and handle.session <= self._lost_before_session):
                raise NVMLError(NVML_ERROR_GPU_IS_LOST)
        index = handle.index if handle is not None else None
        for key in ((function, index), (function, None)):
            if key in self._failures:
                raise NVMLError(self._failures[key])

    def _device(self, handle: Any) -> dict:
        if not isinstance(handle, _Handle):
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        return self.devices[handle.index]

    @staticmethod
    def _value(recorded: dict, key: str) -> Any:
        if key not in recorded:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        value = recorded[key]
        if isinstance(value, dict) and set(value) == {_ERROR_KEY}:
            raise NVMLError(error_code(value[_ERROR_KEY]))
        return value

    def _device_value(self, function: str, handle: Any, key: str | None = None) -> Any:
        self._enter(function, handle if isinstance(handle, _Handle) else None, device_call=True)
        return self._value(self._device(handle), key or function)

    # -- the pynvml functions ocrdash calls -------------------------------------------------

    def nvmlInitWithFlags(self, flags):
        self.calls.append("nvmlInitWithFlags")
        if self.init_error is not None:
            raise NVMLError(self.init_error)
        if self._refcount == 0:
            self._session += 1
        self._refcount += 1

    def nvmlInit(self):
        self.calls.append("nvmlInit")
        self.nvmlInitWithFlags(0)

    def nvmlShutdown(self):
        self.calls.append("nvmlShutdown")
        if self._refcount == 0:
            raise NVMLError(NVML_ERROR_UNINITIALIZED)
        self._refcount -= 1

    def nvmlErrorString(self, result):
        return NVMLError._errcode_to_string.get(result, "Unknown Error")

    def nvmlSystemGetDriverVersion(self):
        self._enter("nvmlSystemGetDriverVersion")
        return self._value(self.recording, "nvmlSystemGetDriverVersion")

    def nvmlSystemGetProcessName(self, pid):
        self._enter("nvmlSystemGetProcessName")
        names = self.recording.get("nvmlSystemGetProcessName", {})
        if str(pid) not in names:
            raise NVMLError(NVML_ERROR_NOT_FOUND)
        return self._value(names, str(pid))

    def nvmlDeviceGetCount(self):
        self._enter("nvmlDeviceGetCount")
        return len(self.devices)

    def nvmlDeviceGetHandleByIndex(self, index):
        self._enter("nvmlDeviceGetHandleByIndex", device_call=True)
        if not 0 <= index < len(self.devices):
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        return _Handle(index, self._session)

    def nvmlDeviceGetName(self, handle):
        return self._device_value("nvmlDeviceGetName", handle)

    def nvmlDeviceGetUUID(self, handle):
        return self._device_value("nvmlDeviceGetUUID", handle)

    def nvmlDeviceGetMemoryInfo(self, handle, version=None):
        if not version:
            m = self._device_value("nvmlDeviceGetMemoryInfo", handle)
            return c_nvmlMemory_t(total=m["total"], free=m["free"], used=m["used"])
        m = self._device_value("nvmlDeviceGetMemoryInfo", handle, "nvmlDeviceGetMemoryInfo_v2")
        if version != nvmlMemory_v2:
            raise NVMLError(NVML_ERROR_ARGUMENT_VERSION_MISMATCH)
        return c_nvmlMemory_v2_t(
            version=version, total=m["total"], reserved=m["reserved"], free=m["free"], used=m["used"]
        )

    def nvmlDeviceGetUtilizationRates(self, handle):
        u = self._device_value("nvmlDeviceGetUtilizationRates", handle)
        return c_nvmlUtilization_t(gpu=u["gpu"], memory=u["memory"])

    def nvmlDeviceGetTemperature(self, handle, sensor):
        if sensor != NVML_TEMPERATURE_GPU:
            self._enter("nvmlDeviceGetTemperature", handle, device_call=True)
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        return self._device_value("nvmlDeviceGetTemperature", handle)

    def nvmlDeviceGetPowerUsage(self, handle):
        return self._device_value("nvmlDeviceGetPowerUsage", handle)

    def nvmlDeviceGetEnforcedPowerLimit(self, handle):
        return self._device_value("nvmlDeviceGetEnforcedPowerLimit", handle)

    def nvmlDeviceGetCudaComputeCapability(self, handle):
        major, minor = self._device_value("nvmlDeviceGetCudaComputeCapability", handle)
        return (major, minor)

    def _processes(self, function: str, handle: Any, key: str) -> list:
        entries = self._device_value(function, handle, key)
        procs = []
        for entry in entries:
            used = entry.get("usedGpuMemory")
            if used is None or used == NVML_VALUE_NOT_AVAILABLE_ulonglong.value:
                used = None  # pynvml turns NVML_VALUE_NOT_AVAILABLE into None
            procs.append(
                nvmlFriendlyObject(
                    {
                        "pid": entry["pid"],
                        "usedGpuMemory": used,
                        "gpuInstanceId": entry.get("gpuInstanceId", _NO_MIG),
                        "computeInstanceId": entry.get("computeInstanceId", _NO_MIG),
                    }
                )
            )
        return procs

    def _unversioned(self, function: str, handle: Any) -> list:
        # pynvml's throwOnVersionMismatch: an unversioned call the driver lacks raises this instead.
        try:
            return self._processes(function, handle, function)
        except NVMLError as exc:
            if exc.value == NVML_ERROR_FUNCTION_NOT_FOUND:
                raise NVMLLibraryMismatchError(
                    "Unversioned function called and the pyNVML version does not match the NVML lib "
                    f"version. Either use matching pyNVML and NVML lib versions or use a versioned "
                    f"function such as {function}_v2"
                ) from None
            raise

    def nvmlDeviceGetComputeRunningProcesses(self, handle):
        return self._unversioned("nvmlDeviceGetComputeRunningProcesses", handle)

    def nvmlDeviceGetComputeRunningProcesses_v2(self, handle):
        return self._processes(
            "nvmlDeviceGetComputeRunningProcesses_v2", handle, "nvmlDeviceGetComputeRunningProcesses"
        )

    def nvmlDeviceGetGraphicsRunningProcesses(self, handle):
        return self._unversioned("nvmlDeviceGetGraphicsRunningProcesses", handle)

    def nvmlDeviceGetGraphicsRunningProcesses_v2(self, handle):
        return self._processes(
            "nvmlDeviceGetGraphicsRunningProcesses_v2", handle, "nvmlDeviceGetGraphicsRunningProcesses"
        )


# The module's constants, error classes and structures are reachable on an instance too,
# as they are on the real module (nvml.NVMLError_GpuIsLost, nvml.NVML_TEMPERATURE_GPU, ...).
for _name, _value in list(globals().items()):
    if _name.startswith(("NVML", "nvmlMemory_", "c_nvml", "nvmlFriendlyObject", "nvmlExceptionClass")):
        setattr(
            FakeNvml,
            _name,
            _value if not callable(_value) or isinstance(_value, type) else staticmethod(_value),
        )


# -- recording from the real library --------------------------------------------------------

# The per-device calls a recording holds, in the order they are made.
DEVICE_CALLS = (
    "nvmlDeviceGetName",
    "nvmlDeviceGetUUID",
    "nvmlDeviceGetMemoryInfo",
    "nvmlDeviceGetMemoryInfo_v2",
    "nvmlDeviceGetUtilizationRates",
    "nvmlDeviceGetTemperature",
    "nvmlDeviceGetPowerUsage",
    "nvmlDeviceGetEnforcedPowerLimit",
    "nvmlDeviceGetCudaComputeCapability",
    "nvmlDeviceGetComputeRunningProcesses",
    "nvmlDeviceGetGraphicsRunningProcesses",
)


def _plain(value: Any) -> Any:
    if isinstance(value, Structure):
        return {name: getattr(value, name) for name, _ in value._fields_}
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, list):  # running processes
        out = []
        for p in value:
            used = p.usedGpuMemory
            entry = {
                "pid": p.pid,
                "usedGpuMemory": NVML_VALUE_NOT_AVAILABLE_ulonglong.value if used is None else used,
            }
            for extra in ("gpuInstanceId", "computeInstanceId"):
                if getattr(p, extra, _NO_MIG) != _NO_MIG:
                    entry[extra] = getattr(p, extra)
            out.append(entry)
        return out
    return value.decode() if isinstance(value, bytes) else value


def _recorded(nvml: Any, fn: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return _plain(fn(*args, **kwargs))
    except nvml.NVMLError as exc:
        return {_ERROR_KEY: error_name(exc.value)}
    except nvml.NVMLLibraryMismatchError:
        return {_ERROR_KEY: "NVML_ERROR_FUNCTION_NOT_FOUND"}


def record(nvml: Any) -> dict:
    """What `nvml` (the real pynvml) says now, in the form FakeNvml plays back."""
    nvml.nvmlInit()
    try:
        out: dict[str, Any] = {
            "comment": f"recorded on {socket.gethostname()} at {time.strftime('%Y-%m-%d %H:%M:%S %z')}",
            "nvmlSystemGetDriverVersion": _recorded(nvml, nvml.nvmlSystemGetDriverVersion),
            "nvmlSystemGetProcessName": {},
            "devices": [],
        }
        pids: set[int] = set()
        for index in range(nvml.nvmlDeviceGetCount()):
            h = nvml.nvmlDeviceGetHandleByIndex(index)
            device: dict[str, Any] = {}
            for call in DEVICE_CALLS:
                if call == "nvmlDeviceGetMemoryInfo_v2":
                    device[call] = _recorded(
                        nvml, nvml.nvmlDeviceGetMemoryInfo, h, version=nvml.nvmlMemory_v2
                    )
                elif call == "nvmlDeviceGetTemperature":
                    device[call] = _recorded(
                        nvml, nvml.nvmlDeviceGetTemperature, h, nvml.NVML_TEMPERATURE_GPU
                    )
                else:
                    device[call] = _recorded(nvml, getattr(nvml, call), h)
            for call in ("nvmlDeviceGetComputeRunningProcesses", "nvmlDeviceGetGraphicsRunningProcesses"):
                if isinstance(device[call], list):
                    pids.update(p["pid"] for p in device[call])
            out["devices"].append(device)
        for pid in sorted(pids):
            out["nvmlSystemGetProcessName"][str(pid)] = _recorded(nvml, nvml.nvmlSystemGetProcessName, pid)
        return out
    finally:
        nvml.nvmlShutdown()


def main(argv: list[str]) -> int:
    if argv[1:2] != ["record"]:
        print(
            "usage: python -m tests.doubles.fake_pynvml record > tests/data/nvml/NAME.json", file=sys.stderr
        )
        return 2
    import pynvml

    try:
        recorded = record(pynvml)
    except pynvml.NVMLError as exc:
        print(f"nothing to record: NVML says {exc}", file=sys.stderr)
        return 1
    print(json.dumps(recorded, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
