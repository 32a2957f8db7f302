"""How many threads a training process gives its numeric libraries.

Each library defaults to every core. Two processes on one machine then spin against each
other, and a fit beside another runs many times slower than with one thread each. So a
process takes its share, the cores over the jobs the launcher runs at once (``threads`` in
conf/train.yaml overrides it), and every library in it is held to that share.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import torch
from threadpoolctl import threadpool_limits

from movrec.errors import UserError

log = logging.getLogger(__name__)

# The option each thread-pooled peer library reads, by the module its class comes from.
PEER_THREAD_OPTIONS = {"lightgbm": "n_jobs", "catboost": "thread_count", "implicit": "num_threads"}


def available_cores() -> int:
    """The cores this process may run on (its affinity, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def concurrent_jobs(n_jobs: int | None, cores: int) -> int:
    """How many jobs a launcher runs at once, given its ``n_jobs`` (joblib's meaning: a
    negative number counts back from the cores, -1 being all of them; None: one job)."""
    if n_jobs is None or n_jobs == 0:
        return 1
    return max(1, n_jobs if n_jobs > 0 else cores + 1 + n_jobs)


def thread_share(threads: int | None, cores: int, jobs: int) -> int:
    """``threads`` if set, else this job's share of the cores (at least one)."""
    if threads is not None:
        if threads < 1:
            raise UserError(f"threads must be >= 1 or null (a share of the cores), got {threads}")
        return threads
    return max(1, cores // jobs)


def use_threads(threads: int) -> threadpool_limits:
    """Hold torch, BLAS and OpenMP in this process to ``threads`` (the BLAS and OpenMP limits
    are undone by the returned object's ``restore_original_limits``), and flush denormals.

    Denormal floats (below 1.2e-38 in float32) take a slow path in every CPU operation. Weights
    that only weight decay moves and Adam's averages of gradients that stopped sink into that
    range, so without this an ``experiment=recommend`` epoch took 36 s after 15 epochs
    instead of 21 s. A thread inherits the setting from the thread that starts it, so it is
    set before torch's thread pool starts (a run calls this first)."""
    torch.set_flush_denormal(True)
    torch.set_num_threads(threads)
    log.info("%d thread(s) per library in this process", threads)
    return threadpool_limits(limits=threads)


def peer_thread_options(peer_class: type, threads: int) -> dict[str, Any]:
    """The thread option of a peer library whose own pool ignores the limits above."""
    option = PEER_THREAD_OPTIONS.get(peer_class.__module__.split(".")[0])
    return {option: threads} if option else {}
