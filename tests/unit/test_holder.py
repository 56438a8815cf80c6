"""The worker's backend holder on its own (no Django, no Celery): what it keeps loaded, when it
loads, switches and unloads, and what it tells the dashboard."""

from __future__ import annotations

import pytest

from core.modelfacts import GiB
from core.planner import Device, PlannerSettings, make_plan
from core.results import BackendError
from tests.doubles.fake_backend import FakeBackends
from workers.holder import BackendHolder, Choice

CARD = [Device(0, 16 * GiB, 15 * GiB, (8, 9), "L4")]


def choice(backend: str = "transformers", key: tuple = ("k",), stamp: str = "s1") -> Choice:
    plan = make_plan(CARD if backend != "rapidocr" else None, PlannerSettings(backend=backend))
    return Choice(plan, {"backend": backend, "variant": plan.variant}, key, stamp)


class ManualTimer:
    """threading.Timer's interface, fired by the test."""

    made: list = []

    def __init__(self, seconds, function, args=()):
        self.seconds, self.function, self.args = seconds, function, args
        self.daemon = False
        self.cancelled = False
        ManualTimer.made.append(self)

    def start(self):
        pass

    def cancel(self):
        self.cancelled = True

    def fire(self):
        self.function(*self.args)


@pytest.fixture
def world():
    fakes = FakeBackends()
    published: list[dict] = []
    ManualTimer.made = []
    holder = BackendHolder(
        create=fakes.create, publish=published.append, gpu_index=lambda: 1, idle_seconds=lambda: 600, timer=ManualTimer
    )
    holder.hostname = "gpu@here"
    yield holder, fakes, published
    holder.close()


def states(published) -> list[str]:
    return [body["state"] for body in published]


def test_it_keeps_the_loaded_backend_for_the_same_key(world):
    holder, fakes, published = world
    first = holder.ensure(choice(), progress=None)
    again = holder.ensure(choice(), progress=None)

    assert first is again and len(fakes.created) == 1 and len(first.loads) == 1
    assert states(published) == ["loading", "ready"]


def test_a_new_key_loads_the_same_backend_again_and_another_backend_replaces_it(world):
    holder, fakes, published = world
    transformers = holder.ensure(choice(key=("a",)), progress=None)
    holder.ensure(choice(key=("b",)), progress=None)
    assert len(transformers.loads) == 2 and transformers.unloads == 0

    rapidocr = holder.ensure(choice("rapidocr", key=("rapidocr", "multi")), progress=None)

    assert transformers.unloads == 1 and rapidocr.name == "rapidocr" and holder.backend is rapidocr
    assert "unloaded" in states(published)


def test_a_loaded_dots_backend_is_kept_while_the_settings_are_the_same(world):
    holder, _, _ = world
    chosen = choice(stamp="s1")
    holder.ensure(chosen, progress=None)

    assert holder.kept("s1") is chosen
    assert holder.kept("s2") is None  # the admin changed the settings: plan again
    holder.ensure(choice("rapidocr", key=("rapidocr", "multi")), progress=None)
    assert holder.kept("s1") is None  # the CPU engine is cheap to plan for each job


def test_unloading_gives_the_memory_back_and_says_what_was_loaded(world):
    holder, fakes, published = world
    holder.ensure(choice(), progress=None)

    assert holder.unload("asked to free the GPU") is True
    assert holder.unload("again") is False

    assert fakes.created[0].unloads == 1 and holder.backend is None and holder.held is None
    last = published[-1]
    assert last["state"] == "unloaded" and last["detail"] == "asked to free the GPU"
    assert last["backend"] == "transformers" and last["plan"]["variant"] == "transformers:bf16"


def test_an_idle_backend_is_unloaded_when_its_timer_fires_and_a_new_job_stops_the_timer(world):
    holder, fakes, _ = world
    holder.ensure(choice(), progress=None)
    holder.start_idle_timer()
    first = ManualTimer.made[-1]
    assert first.seconds == 600

    holder.ensure(choice(), progress=None)  # a job came first
    assert first.cancelled
    holder.start_idle_timer()
    ManualTimer.made[-1].fire()

    assert holder.backend is None and fakes.created[0].unloads == 1


def test_a_backend_that_fails_to_load_is_published_as_failed():
    fakes, published = FakeBackends(), []

    def create(name):
        backend = fakes.create(name)
        backend.load = lambda args, progress=None: (_ for _ in ()).throw(BackendError("no CUDA"))
        return backend

    holder = BackendHolder(create=create, publish=published.append)
    with pytest.raises(BackendError):
        holder.ensure(choice(), progress=None)

    assert states(published) == ["loading", "failed"] and published[-1]["detail"] == "no CUDA"
    assert holder.kept("s1") is None


def test_what_it_publishes_names_the_worker_its_gpu_and_the_memory_held(world):
    holder, _, published = world
    holder.ensure(choice(), progress=None)

    ready = published[-1]
    assert ready["worker"] == "gpu@here" and ready["gpu_index"] == 1 and ready["state"] == "ready"
    assert set(ready) == {"worker", "gpu_index", "state", "backend", "detail", "progress", "memory_bytes", "plan"}
