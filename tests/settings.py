"""Settings for the test suite and for the processes it starts (web server, worker).

The suite never touches ./data or a Redis the user runs: it gets its own data folder
and its own Redis server (started by tests/conftest.py), passed on to child processes
through the environment.
"""

import os
import socket
import tempfile


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


if "OCRDASH_TEST_DATA_DIR" not in os.environ:
    os.environ["OCRDASH_TEST_DATA_DIR"] = tempfile.mkdtemp(prefix="ocrdash-test-")
os.environ["OCRDASH_DATA_DIR"] = os.environ["OCRDASH_TEST_DATA_DIR"]
if "OCRDASH_TEST_REDIS_URL" not in os.environ:
    os.environ["OCRDASH_TEST_REDIS_PORT"] = str(_free_port())
    os.environ["OCRDASH_TEST_REDIS_URL"] = f"redis://127.0.0.1:{os.environ['OCRDASH_TEST_REDIS_PORT']}/0"
os.environ["OCRDASH_REDIS_URL"] = os.environ["OCRDASH_TEST_REDIS_URL"]
os.environ.setdefault("OCRDASH_ALLOW_MODEL_DOWNLOAD", "false")

from dashboard.settings import *  # noqa: E402,F403
from dashboard.settings import DATABASES  # noqa: E402

# A process started by a test uses the test database that pytest-django created.
if os.environ.get("OCRDASH_TEST_DB_NAME"):
    DATABASES["default"]["NAME"] = os.environ["OCRDASH_TEST_DB_NAME"]

# A worker process of a test may be given a recorded GPU (tests/doubles/fake_pynvml): the double
# stands where the `pynvml` module would, so the real NVML reading code runs against it.
if os.environ.get("OCRDASH_TEST_NVML_RECORDING"):
    import sys

    from tests.doubles.fake_pynvml import FakeNvml

    sys.modules["pynvml"] = FakeNvml(os.environ["OCRDASH_TEST_NVML_RECORDING"])

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # speed only; never in production

# A test machine may be short of disk: the free-space guard is tested with its own values.
MIN_FREE_DISK_MB = int(os.environ.get("OCRDASH_TEST_MIN_FREE_DISK_MB", "0"))

# Recovery rounds (ocr_app/recovery.py, ocr_app/delivery.py): the worker that tests/conftest.py
# starts shares the test database with tests that hold jobs back from it on purpose, so it must not
# take those for lost; the fault suite (tests/faults/stack.py) gives its own processes real values.
RECOVERY_SWEEP_SECONDS = int(os.environ.get("OCRDASH_TEST_RECOVERY_SWEEP_SECONDS", RECOVERY_SWEEP_SECONDS))  # noqa: F405
RUNNER_LOST_SECONDS = int(os.environ.get("OCRDASH_TEST_RUNNER_LOST_SECONDS", 3600))
RESEND_AFTER_SECONDS = int(os.environ.get("OCRDASH_TEST_RESEND_AFTER_SECONDS", 3600))
# Fault injection: the web process exits between a job's commit and the send of its task.
FAULT_EXIT_BEFORE_SEND = os.environ.get("OCRDASH_TEST_FAULT_EXIT_BEFORE_SEND") == "1"
