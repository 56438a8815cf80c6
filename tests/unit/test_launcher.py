"""The start command's supervisor, with real child processes: a child that dies is started again
after a growing back-off, one that keeps dying at once stops everything, and stopping kills each
child's whole process group (what it started too), after a grace period."""

from __future__ import annotations

import os
import signal
import sys
import time

import pytest

from dashboard import launcher


@pytest.fixture
def supervisor():
    sup = launcher.Supervisor(dict(os.environ))
    yield sup
    for child in sup.children.values():  # whatever a failed test left
        if child.proc is not None:
            launcher._signal_group(child.proc, signal.SIGKILL)
            child.proc.wait()


def py(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def alive(pid: int) -> bool:
    try:
        stat = open(f"/proc/{pid}/stat").read()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_a_child_that_dies_is_started_again_after_a_growing_back_off(supervisor, capsys):
    supervisor.start("web", py("import sys; sys.exit(3)"))
    supervisor.children["web"].proc.wait()
    now = time.monotonic()

    assert supervisor.tend(now) is None
    assert "ocrdash: web exited with code 3; starting it again in 1 s" in capsys.readouterr().out
    assert supervisor.tend(now + 0.5) is None and supervisor.children["web"].restarts == 0  # still waiting
    assert supervisor.tend(now + 1.0) is None
    assert "ocrdash: starting web again (restart 1)" in capsys.readouterr().out
    supervisor.children["web"].proc.wait()
    assert supervisor.tend(now + 1.1) is None
    assert "starting it again in 2 s" in capsys.readouterr().out


def test_a_child_that_ran_a_while_starts_again_after_the_first_back_off(supervisor, capsys):
    supervisor.start("worker", py("import os, signal; os.kill(os.getpid(), signal.SIGKILL)"))
    child = supervisor.children["worker"]
    child.proc.wait()
    child.backoff, child.quick_deaths = 16.0, 3
    child.started_at -= launcher.STABLE_SECONDS

    supervisor.tend()

    assert "ocrdash: worker was killed by SIGKILL; starting it again in 1 s" in capsys.readouterr().out


def test_a_child_that_keeps_dying_at_once_stops_everything(supervisor, capsys):
    supervisor.start("web", py("import sys; sys.exit(1)"))
    child = supervisor.children["web"]
    now = time.monotonic()
    for _ in range(launcher.MAX_QUICK_DEATHS - 1):
        child.proc.wait()
        assert supervisor.tend(now) is None  # back-offs of 1, 2, 4, 8 s
        now = child.restart_at
        supervisor.tend(now)  # starts it again
    child.proc.wait()

    assert supervisor.tend(now) == "web"
    assert "the 5th time in a row within 60 s of its start; stopping everything" in capsys.readouterr().out


def test_stopping_ends_every_child_and_what_it_started(supervisor):
    # A child that starts a grandchild, as Celery starts its pool processes.
    code = "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); " \
           "print('ready', flush=True); time.sleep(60)"
    supervisor.start("worker", py(code))
    supervisor.start("web", py("import time; time.sleep(60)"))
    time.sleep(1.0)
    worker = supervisor.children["worker"].proc.pid
    grandchildren = [int(p) for p in os.listdir("/proc") if p.isdigit() and _ppid(int(p)) == worker]
    assert grandchildren

    supervisor.stop_all()

    assert not any(alive(pid) for pid in [worker, supervisor.children["web"].proc.pid, *grandchildren])


def test_a_child_that_ignores_sigterm_is_killed_after_the_grace_period(supervisor, monkeypatch, capsys):
    monkeypatch.setattr(launcher, "STOP_GRACE_SECONDS", 1)
    supervisor.start("stubborn", py("import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                                    "print('ready', flush=True); time.sleep(60)"))
    time.sleep(0.5)
    started = time.monotonic()

    supervisor.stop_all()

    assert time.monotonic() - started < 5
    assert not alive(supervisor.children["stubborn"].proc.pid)
    assert "ocrdash: stubborn is still running 1 s after SIGTERM; killing it" in capsys.readouterr().out


def test_a_child_gets_sigterm_when_the_launcher_itself_dies():
    """PR_SET_PDEATHSIG: killed with SIGKILL, the launcher cannot stop its children; the kernel does."""
    code = (
        "import os, sys, time\n"
        "from dashboard import launcher\n"
        "sup = launcher.Supervisor(dict(os.environ))\n"
        "p = sup.start('web', [sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        "print(p.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    import subprocess

    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"})
    try:
        child = int(parent.stdout.readline())
        parent.kill()
        parent.wait()
        deadline = time.monotonic() + 5
        while alive(child) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not alive(child)
    finally:
        parent.kill()
        parent.wait()


def _ppid(pid: int) -> int | None:
    try:
        return int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[1])
    except OSError:
        return None


def test_redis_is_stopped_last_once_the_worker_has_handed_its_job_back(supervisor, tmp_path):
    """The worker needs Redis while it stops (it queues its running job again): Redis gets SIGTERM
    only after every other child has ended."""
    supervisor.start("redis", py("import time; time.sleep(60)"))
    redis_pid = supervisor.children["redis"].proc.pid
    seen = tmp_path / "seen"
    supervisor.start("worker", py(
        "import os, signal, sys, time\n"
        "def stop(*_):\n"
        "    time.sleep(1.0)  # handing the job back\n"
        f"    open({str(seen)!r}, 'w').write(open('/proc/{redis_pid}/stat').read().rsplit(')', 1)[1].split()[0])\n"
        "    sys.exit(0)\n"
        "signal.signal(signal.SIGTERM, stop)\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n"
    ))
    time.sleep(0.5)

    supervisor.stop_all()

    assert seen.read_text() in ("S", "R"), "Redis was still running while the worker stopped"
    assert not alive(redis_pid) and not alive(supervisor.children["worker"].proc.pid)
