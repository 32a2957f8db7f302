"""Each job's share of the cores, so parallel jobs do not spin against each other."""

from __future__ import annotations

import pytest
import torch
from threadpoolctl import threadpool_info

from movrec.errors import UserError
from movrec.threads import concurrent_jobs, peer_thread_options, thread_share, use_threads


@pytest.mark.parametrize(
    ("n_jobs", "cores", "jobs"),
    [(None, 8, 1), (2, 8, 2), (-1, 8, 8), (-2, 8, 7), (-20, 8, 1), (0, 8, 1)],
)
def test_concurrent_jobs_read_n_jobs_as_joblib_does(n_jobs, cores, jobs):
    assert concurrent_jobs(n_jobs, cores) == jobs


def test_each_job_gets_its_share_of_the_cores_unless_set():
    assert thread_share(None, cores=16, jobs=4) == 4
    assert thread_share(None, cores=2, jobs=2) == 1
    assert thread_share(None, cores=2, jobs=3) == 1  # never none
    assert thread_share(3, cores=2, jobs=2) == 3  # the user's choice wins
    with pytest.raises(UserError, match="threads must be >= 1"):
        thread_share(0, cores=2, jobs=1)


def test_peers_with_their_own_thread_pools_get_the_share():
    lightgbm = pytest.importorskip("lightgbm")
    catboost = pytest.importorskip("catboost")
    assert peer_thread_options(lightgbm.LGBMRegressor, 3) == {"n_jobs": 3}
    assert peer_thread_options(catboost.CatBoostRegressor, 3) == {"thread_count": 3}
    assert peer_thread_options(torch.nn.Linear, 3) == {}  # held by use_threads instead


def test_use_threads_holds_torch_and_blas_to_the_share():
    before = torch.get_num_threads()
    limits = use_threads(1)
    try:
        assert torch.get_num_threads() == 1
        pools = threadpool_info()
        assert pools and all(pool["num_threads"] == 1 for pool in pools)
    finally:
        torch.set_num_threads(before)
        limits.restore_original_limits()


def test_use_threads_flushes_denormals():
    torch.set_flush_denormal(False)  # as a fresh process starts (other tests call use_threads)
    denormal = torch.tensor([1e-39])  # under float32's smallest normal number, 1.2e-38
    assert float(denormal * 1.0) != 0.0
    before = torch.get_num_threads()
    limits = use_threads(1)
    try:
        assert float(denormal * 1.0) == 0.0
    finally:
        torch.set_flush_denormal(False)
        torch.set_num_threads(before)
        limits.restore_original_limits()
