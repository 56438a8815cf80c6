"""Queue names. Every worker takes jobs from the shared queue, and also listens on a queue of
its own: for orders meant for it alone (unload, free the GPU) and for jobs routed to it because
another worker's GPU could not fit them."""

GPU_QUEUE = "gpu"


def worker_queue(hostname: str) -> str:
    return f"ocrdash.worker.{hostname}"
