"""Issue 19 item 4: ``dask_address = "ray"`` (Dask-on-Ray) runs normalize's Dask work as Ray tasks,
with arrays equal to the local threaded scheduler's (the KubeRay deployment's Dask)."""

from __future__ import annotations

import os

import dask
import numpy as np
from gexplain.cluster.runtime import start_runtime
from gexplain.pipelines.config import ClusterSection, parse_config
from gexplain.pipelines.progress import SILENT
from gexplain.pipelines.runner import run_config
from gexplain.storage.store import open_store

JOB = """
[run]
name = "dor"
out = "{out}"
store = "cohort.zarr"
seed = 3
[[stage]]
kind = "simulate"
[stage.params]
simulator = "cohort"
n_samples = 60
n_genes = 60
n_classes = 2
n_program_genes = 6
n_xor_pairs = 1
n_circle_pairs = 1
chunk_samples = 16
[[stage]]
kind = "normalize"
[stage.params]
layers = ["cpm", "norm_counts"]
"""


def test_dask_on_ray_runs_on_ray_workers_and_matches_local_threads(tmp_path, ray_runtime):
    assert ClusterSection(dask_address="ray").dask_address == "ray"
    on_ray = start_runtime(dask_address="ray")
    with on_ray.dask_scheduler():
        pids = set(dask.compute(*[dask.delayed(os.getpid)() for _ in range(4)]))
    assert os.getpid() not in pids  # Ray worker processes, not this driver's threads
    assert on_ray.describe()["dask"] == "ray"
    stores = {}
    for name, runtime in (("ray", on_ray), ("threads", start_runtime(num_cpus=2))):
        (tmp_path / name).mkdir()
        cfg = tmp_path / name / "job.toml"
        cfg.write_text(JOB.format(out=tmp_path / name / "run"))
        run_config(parse_config(cfg), progress=SILENT, runtime=runtime)
        stores[name] = open_store(str(tmp_path / name / "run" / "cohort.zarr"))
    for var in ("size_factors", "cpm", "norm_counts", "counts"):
        np.testing.assert_array_equal(stores["ray"][var].values, stores["threads"][var].values, err_msg=var)
    on_ray.shutdown()  # started nothing: the session's Ray stays up
    import ray

    assert ray.is_initialized()
