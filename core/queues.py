"""Queue and task names. Every worker takes jobs from the shared queue, and also listens on a queue of
its own: for orders meant for it alone (unload, free the GPU) and for jobs routed to it because
another worker's GPU could not fit them."""

GPU_QUEUE = "gpu"

# The Celery names of the worker's tasks (workers/tasks.py). Messages waiting in Redis carry them,
# and CELERY_TASK_ROUTES matches "workers.tasks.*": they never change.
RUN_JOB_TASK = "workers.tasks.run_job"
UNLOAD_BACKEND_TASK = "workers.tasks.unload_backend"

# Task priorities, as kombu's Redis transport serves them: each queue is one Redis list per
# priority step (0, 3, 6, 9), read in that order. A new job is sent at NEW; a job queued again
# after its worker process died goes FIRST, back to the head of the queue it had reached.
FIRST, NEW = 0, 6
PRIORITY_STEPS = (0, 3, 6, 9)
_PRIORITY_SEP = "\x06\x16"


def priority_keys(queue: str) -> list[str]:
    """The Redis lists that hold a queue's messages, in the order a worker reads them."""
    return [queue if step == 0 else f"{queue}{_PRIORITY_SEP}{step}" for step in PRIORITY_STEPS]


def worker_queue(hostname: str) -> str:
    return f"ocrdash.worker.{hostname}"
