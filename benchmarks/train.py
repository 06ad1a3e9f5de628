"""How fast do the classifiers train, and what do parallel replicates on Ray buy?

Two questions, one run:

1. **Epochs per second at the paper's shape** (Zhao et al.: 27,417 samples x 19,241 genes,
   82 classes; one epoch = the 9:1 train part minus a 10 % validation slice = 22,208 samples,
   without up-sampling). gexplain's training loop (``gexplain.pipelines.models.train.train_steps``: Adam,
   batch 256, standardisation inside the model) runs on random data of that width for a few
   batches, and the time per sample is extrapolated to an epoch; the CNN at 144 x 144 is far too
   slow on a CPU for a whole epoch, so it is timed on small batches and extrapolated the same way
   (the table says which). Side by side: scikit-learn's ``MLPClassifier`` (same width, Adam,
   batch 256, ``partial_fit``), what a user would otherwise reach for.
2. **K replicates in parallel (Ray tasks, one CPU each, the matrix put in the object store once)
   versus one after another in one process**, on a small matrix with a fixed number of epochs;
   the weights of both runs are compared (they must be identical).

Usage::

    python benchmarks/train.py                 # paper shape on this CPU (a few minutes)
    python benchmarks/train.py --quick         # small smoke run
    python benchmarks/train.py --device cuda   # on a GPU machine
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gexplain.cluster.runtime import start_runtime  # noqa: E402
from gexplain.pipelines.models.architectures import build_model  # noqa: E402
from gexplain.pipelines.models.data import TrainingData, stratified_split  # noqa: E402
from gexplain.pipelines.models.persist import state_from_bytes  # noqa: E402
from gexplain.pipelines.models.replicates import replicate_jobs, run_jobs  # noqa: E402
from gexplain.pipelines.models.train import TrainParams, deterministic_torch, train_steps  # noqa: E402
from machine import write_result  # noqa: E402

PAPER = {"samples": 27_417, "genes": 19_241, "classes": 82}


def epoch_samples(n_samples: int) -> int:
    """Training samples per epoch: 90 % train part minus a 10 % validation slice."""
    return int(round(n_samples * 0.9 * 0.9))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_gexplain(
    arch: str, genes: int, classes: int, batch: int, batches: int, device: torch.device, threads: int
) -> float:
    """Seconds per training sample of gexplain's loop (after one warm-up batch)."""
    rng = np.random.default_rng(0)
    x = rng.normal(3.0, 1.0, size=(batch * 2, genes)).astype(np.float32)
    y = rng.integers(0, classes, size=x.shape[0])
    with deterministic_torch(threads):
        torch.manual_seed(0)
        model = build_model(arch, genes, classes, standardize=True).to(device)
        lr = 1e-3 if arch == "mlp" else 6e-4
        opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=1e-3)
        train_steps(model, opt, x, y, np.arange(batch), batch, device)  # warm-up
        _sync(device)
        order = np.resize(np.arange(x.shape[0]), batch * batches)
        t0 = time.perf_counter()
        train_steps(model, opt, x, y, order, batch, device)
        _sync(device)
        return (time.perf_counter() - t0) / order.size


def time_sklearn(genes: int, classes: int, batch: int, batches: int, threads: int) -> float:
    """Seconds per training sample of sklearn's MLPClassifier (Adam, one hidden layer, partial_fit)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(0)
    x = rng.normal(3.0, 1.0, size=(batch * batches, genes)).astype(np.float32)
    y = rng.integers(0, classes, size=x.shape[0])
    clf = MLPClassifier(
        hidden_layer_sizes=(128,), solver="adam", alpha=1e-3, batch_size=batch, learning_rate_init=1e-3
    )
    with warnings.catch_warnings(), threadpool_limits(threads):
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.partial_fit(x[:batch], y[:batch], classes=np.arange(classes))  # warm-up
        t0 = time.perf_counter()
        clf.partial_fit(x, y)
        return (time.perf_counter() - t0) / x.shape[0]


def throughput_table(args: argparse.Namespace, device: torch.device) -> str:
    shape = {"samples": 2_000, "genes": 2_000, "classes": 10} if args.quick else PAPER
    per_epoch = epoch_samples(shape["samples"])
    cnn_batch = 256 if device.type == "cuda" else 8
    rows = []
    plan = [
        ("gexplain MLP", "mlp", 256, 3 if args.quick else 8),
        ("gexplain CNN", "cnn", cnn_batch, 2 if device.type == "cpu" else 10),
    ]
    for name, arch, batch, batches in plan:
        s = time_gexplain(arch, shape["genes"], shape["classes"], batch, batches, device, args.threads)
        rows.append((name, device.type, batch, batch * batches, s))
    if device.type == "cpu":
        s = time_sklearn(shape["genes"], shape["classes"], 256, 3 if args.quick else 8, args.threads)
        rows.append(("scikit-learn MLPClassifier (reference)", "cpu", 256, 256 * (3 if args.quick else 8), s))
    lines = [
        f"Shape: {shape['samples']:,} samples x {shape['genes']:,} genes, {shape['classes']} classes; "
        f"epoch = {per_epoch:,} training samples; torch threads = {args.threads}; "
        f"load average at start {os.getloadavg()[0]:.1f} (shared machine).",
        "",
        "| model | device | batch | samples timed | ms / sample | s / epoch (extrapolated) | epochs / s |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, dev, batch, timed, s in rows:
        epoch_s = s * per_epoch
        lines.append(
            f"| {name} | {dev} | {batch} | {timed} | {s * 1e3:.3f} | {epoch_s:,.1f} | {1 / epoch_s:.3g} |"
        )
    lines.append("")
    lines.append(
        "Each row times a few mini-batches (after a warm-up batch) and extrapolates linearly to a full "
        f"epoch of {per_epoch:,} samples; the CPU CNN rows use batch {cnn_batch} because one batch of 256 "
        "takes minutes there (per-sample cost is nearly independent of batch size on CPU)."
    )
    return "\n".join(lines)


def replicate_table(args: argparse.Namespace, device: torch.device) -> str:
    k = 2 if args.quick else args.replicates
    n, genes, classes = (600, 200, 5) if args.quick else (6_000, 2_000, 10)
    epochs = 2 if args.quick else 5
    rng = np.random.default_rng(1)
    y = np.repeat(np.arange(classes), n // classes)
    x = (rng.normal(3.0, 1.0, size=(y.size, genes)) + (rng.normal(0, 0.5, size=(classes, genes)))[y]).astype(
        np.float32
    )
    data = TrainingData(
        x=x,
        y=y,
        classes=np.array([f"c{i}" for i in range(classes)]),
        genes=np.array([f"g{j}" for j in range(genes)]),
        samples=np.array([f"s{i}" for i in range(y.size)]),
        layer="log_expr",
        label="sample_tissue",
    )
    params = TrainParams(max_epochs=epochs, early_stopping=epochs + 1, device=device.type, threads=1)
    split = stratified_split(y, seed=0)
    jobs = replicate_jobs(split, params, seed=0, k=k)
    warm = replicate_jobs(split, params.model_copy(update={"max_epochs": 1}), seed=99, k=k)
    run_jobs(data, warm[:1], use_ray=False)  # first training in this process pays one-off set-up
    t0 = time.perf_counter()
    sequential = run_jobs(data, jobs, use_ray=False)
    t_seq = time.perf_counter() - t0
    cores = len(os.sched_getaffinity(0))
    runtime = start_runtime(num_cpus=cores, num_gpus=1 if device.type == "cuda" else 0)
    runtime.ensure_ray()
    try:
        run_jobs(data, warm, use_ray=True)  # start K workers and import torch in each before timing
        t0 = time.perf_counter()
        parallel = run_jobs(data, jobs, use_ray=True)
        t_par = time.perf_counter() - t0
    finally:
        runtime.shutdown()
    same = all(
        all(torch.equal(a[key], b[key]) for key in a)
        for a, b in (
            (state_from_bytes(p.weights), state_from_bytes(s.weights))
            for p, s in zip(parallel, sequential, strict=True)
        )
    )
    return "\n".join(
        [
            f"MLP, {y.size:,} samples x {genes:,} genes, {classes} classes, {epochs} epochs each, K = {k} replicates, "
            f"device {device.type}; Ray on {cores} CPUs, 1 CPU per task, workers warmed before timing; "
            f"load average {os.getloadavg()[0]:.1f} after the run (a loaded machine shrinks the speed-up).",
            "",
            "| mode | wall s | speed-up |",
            "|---|---|---|",
            f"| one after another (one process) | {t_seq:.2f} | 1.00 |",
            f"| parallel Ray tasks | {t_par:.2f} | {t_seq / t_par:.2f} |",
            "",
            f"Weights identical between the two modes: {'yes' if same else 'NO'}.",
        ]
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small smoke run")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument(
        "--threads", type=int, default=1, help="torch and BLAS threads for part 1 (training tasks use 1)"
    )
    parser.add_argument("--replicates", type=int, default=4, help="K for part 2")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("--device cuda: no CUDA device here", file=sys.stderr)
        return 2
    gpu = f" ({torch.cuda.get_device_name(0)})" if device.type == "cuda" else ""
    body = "\n".join(
        [
            f"### Epoch throughput{gpu}",
            "",
            throughput_table(args, device),
            "",
            "### K replicates: parallel on Ray versus one after another",
            "",
            replicate_table(args, device),
        ]
    )
    name = "train" if device.type == "cpu" else "train-cuda"
    path = write_result(name, "Training: epochs per second and parallel replicates", body, quick=args.quick)
    print(body)
    print(f"\nwritten to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
