"""Streaming stages run under an address-space cap smaller than the dense matrix (slow).

Each test runs one stage in a child process that imports only what the stage needs, measures
its virtual memory (``VmSize``) after the imports, then caps its address space with
``resource.setrlimit(RLIMIT_AS)`` at that baseline plus a headroom. The dense matrix is several
times larger than the headroom and larger than the whole cap, so a stage that materialized it
would fail with ``MemoryError``. The answers are checked against independent references that
regenerate the same data from its seed, block by block:

* ingest of a generated GCT.gz: every value, against the generated blocks;
* DESeq2 median-of-ratios size factors on a Dask array over the store: a numpy computation
  (gene-block log geometric means, then per-sample medians) on the first samples;
* Mann-Whitney U per gene: ``scipy.stats.mannwhitneyu`` on the first genes.

Run with ``pytest -m slow tests/test_memory_bounds.py`` (or ``benchmarks/memory_bounds.py``).
Sizes scale with the environment variable ``GEXPLAIN_MEMORY_SCALE`` (default 1: 2,000 samples x
96,000 genes, 732 MiB as int32, 1.4 GiB as float64; at least 0.5 for the size checks to hold).
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from gexplain.storage.store import create_store, open_store
from scipy import stats

pytestmark = pytest.mark.slow

SCALE = float(os.environ.get("GEXPLAIN_MEMORY_SCALE", "1"))
N_SAMPLES = 2000
N_GENES = 1000 * max(1, round(96 * SCALE))
GCT_GENES = N_GENES
GENE_BLOCK = 1000
SEED = 20261121
HEADROOM_MIB = 192
"""Address space allowed above the child's post-import baseline (MiB)."""
CHUNKS = {"sample": 500, "gene": 1000}


def counts_block(block: int, n_samples: int = N_SAMPLES) -> np.ndarray:
    """Negative-binomial counts of gene block ``block``, dims (sample, gene), int32.

    Gene means are log-normal (median ~ 40), sample depths log-normal; dispersion 1/20.
    Deterministic in (SEED, block), so any block can be regenerated independently.
    """
    rng = np.random.default_rng([SEED, block])
    depth = np.random.default_rng([SEED, 1 << 30]).lognormal(0.0, 0.3, n_samples)
    mean = rng.lognormal(3.7, 1.0, GENE_BLOCK)[None, :] * depth[:, None]
    return np.minimum(rng.negative_binomial(20.0, 20.0 / (20.0 + mean)), 65_535).astype(np.int32)


def gene_ids(start: int, stop: int) -> list[str]:
    return [f"ENSG{g:011d}.{g % 7 + 1}" for g in range(start, stop)]


def sample_ids() -> list[str]:
    return [f"S{j:05d}" for j in range(N_SAMPLES)]


CHILD = """
import json, resource, sys, time
spec = json.loads(sys.argv[1])

def vm_mib(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(key)

{imports}
import dask
dask.config.set(scheduler="threads", num_workers=2)
baseline = vm_mib("VmSize")
cap = int((baseline + spec["headroom_mib"]) * 2**20)
resource.setrlimit(resource.RLIMIT_AS, (cap, resource.getrlimit(resource.RLIMIT_AS)[1]))
try:
    bytearray(int(spec["headroom_mib"] * 2**20) + 2**20)
    raise SystemExit("the cap does not bind: a headroom-sized allocation succeeded")
except MemoryError:
    pass
started = time.perf_counter()
{body}
print(json.dumps({{"baseline_vm_mib": baseline, "cap_mib": cap / 2**20, "peak_vm_mib": vm_mib("VmPeak"),
                  "seconds": time.perf_counter() - started}}))
"""


def run_capped(imports: str, body: str, spec: dict[str, Any], *, timeout: float = 600) -> dict[str, Any]:
    """Run ``body`` in a child whose address space is capped at its baseline + HEADROOM_MIB.

    Returns the child's JSON report: ``baseline_vm_mib``, ``cap_mib``, ``peak_vm_mib``, ``seconds``.
    """
    code = CHILD.format(imports=textwrap.dedent(imports), body=textwrap.dedent(body))
    env = {
        **os.environ,
        "MALLOC_ARENA_MAX": "2",
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }
    done = subprocess.run(
        [sys.executable, "-c", code, json.dumps({"headroom_mib": HEADROOM_MIB, **spec})],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
    assert done.returncode == 0, f"capped child failed (rc {done.returncode}):\n{done.stderr[-4000:]}"
    return json.loads(done.stdout.strip().splitlines()[-1])


def record(name: str, report: dict[str, Any], shape: tuple[int, int], **extra: Any) -> None:
    """Check the cap against the dense matrix, then print one JSON line (read by the benchmark).

    The stages compute in float64: the dense float64 matrix must exceed the whole cap, and the
    dense int32 matrix must be at least twice the headroom above the baseline.
    """
    dense_mib = shape[0] * shape[1] * 4 / 2**20
    assert 2 * dense_mib > report["cap_mib"], "the dense float64 matrix must exceed the address-space cap"
    assert dense_mib >= 2 * HEADROOM_MIB, "the dense int32 matrix must be at least twice the headroom"
    assert report["peak_vm_mib"] <= report["cap_mib"] + 1
    row = {
        "test": name,
        "shape": list(shape),
        "dense_int32_mib": dense_mib,
        "dense_float64_mib": 2 * dense_mib,
        "headroom_mib": HEADROOM_MIB,
        **report,
        **extra,
    }
    print("MEMORY_BOUNDS " + json.dumps(row))


@pytest.fixture(scope="module")
def counts_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A (N_SAMPLES, N_GENES) int32 counts store written block by block from :func:`counts_block`."""
    url = str(tmp_path_factory.mktemp("memory") / "counts.zarr")
    n_blocks = N_GENES // GENE_BLOCK
    writer = create_store(
        url,
        sample_ids=np.asarray(sample_ids(), dtype=object),
        gene_ids=np.array([g.split(".")[0] for g in gene_ids(0, n_blocks * GENE_BLOCK)], dtype=object),
        layers={"counts": "int32"},
        chunks=CHUNKS,
    )
    for b in range(n_blocks):
        writer.write_block({"gene": slice(b * GENE_BLOCK, (b + 1) * GENE_BLOCK)}, {"counts": counts_block(b)})
    yield writer.commit()


def write_gct(path: Path, n_genes: int) -> int:
    """Write a GCT.gz (genes x samples) of :func:`counts_block` blocks; return its uncompressed bytes."""
    tokens = np.array([str(i) for i in range(65_536)], dtype=object)
    size = 0
    with gzip.open(path, "wt", compresslevel=1) as fh:
        head = f"#1.2\n{n_genes}\t{N_SAMPLES}\nName\tDescription\t" + "\t".join(sample_ids()) + "\n"
        fh.write(head)
        size += len(head)
        for b in range(n_genes // GENE_BLOCK):
            values = counts_block(b).T
            ids = gene_ids(b * GENE_BLOCK, (b + 1) * GENE_BLOCK)
            text = "".join(
                f"{gid}\tG{gid[4:15]}\t" + "\t".join(tokens[row].tolist()) + "\n"
                for gid, row in zip(ids, values, strict=True)
            )
            fh.write(text)
            size += len(text)
    return size


def test_ingest_gct_under_cap(tmp_path: Path) -> None:
    gct = tmp_path / "big.gct.gz"
    text_bytes = write_gct(gct, GCT_GENES)
    out = str(tmp_path / "ingested.zarr")
    report = run_capped(
        "from gexplain.storage.ingest import ingest",
        """
        ingest(spec["gct"], spec["out"], chunks=spec["chunks"], buffer_bytes=16 * 2**20, parse_bytes=4 * 2**20)
        """,
        {"gct": str(gct), "out": out, "chunks": CHUNKS},
    )
    counts = open_store(out)["counts"]
    assert counts.shape == (N_SAMPLES, GCT_GENES)
    for b in range(GCT_GENES // GENE_BLOCK):
        np.testing.assert_array_equal(
            counts[:, b * GENE_BLOCK : (b + 1) * GENE_BLOCK].values,
            counts_block(b),
            err_msg=f"gene block {b}",
        )
    record(
        "ingest GCT.gz",
        report,
        (N_SAMPLES, GCT_GENES),
        input_mib=gct.stat().st_size / 2**20,
        text_mib=text_bytes / 2**20,
    )


def reference_size_factors(n_first: int) -> np.ndarray:
    """Median-of-ratios size factors of the first ``n_first`` samples, in numpy, block by block.

    log geometric mean per gene = mean over all samples of log(count) (-inf with a zero);
    size factor = exp(median over genes with a finite mean of log(count) - log geometric mean).
    """
    log_means, firsts = [], []
    for b in range(N_GENES // GENE_BLOCK):
        block = counts_block(b).astype(np.float64)
        with np.errstate(divide="ignore"):
            logs = np.log(block)
        log_means.append(logs.mean(axis=0))
        firsts.append(logs[:n_first])
    log_mean = np.concatenate(log_means)
    usable = np.isfinite(log_mean)
    ratios = np.concatenate(firsts, axis=1)[:, usable] - log_mean[usable]
    return np.exp(np.median(ratios, axis=1))


def test_size_factors_under_cap(counts_store: str, tmp_path: Path) -> None:
    out = tmp_path / "size_factors.npy"
    report = run_capped(
        """
        import numpy as np
        from gexplain.pipelines.normalize.size_factors import median_of_ratios
        from gexplain.storage.store import open_store
        """,
        """
        counts = open_store(spec["store"])["counts"].data
        np.save(spec["out"], median_of_ratios(counts, block_bytes=32 * 2**20))
        """,
        {"store": counts_store, "out": str(out)},
    )
    size_factors = np.load(out)
    assert size_factors.shape == (N_SAMPLES,)
    np.testing.assert_allclose(size_factors[:64], reference_size_factors(64), rtol=1e-10)
    record("size factors (median of ratios)", report, (N_SAMPLES, N_GENES))


def test_mannwhitney_under_cap(counts_store: str, tmp_path: Path) -> None:
    out = tmp_path / "pvalues.npy"
    n_test = N_SAMPLES // 2
    report = run_capped(
        """
        import numpy as np
        from gexplain.pipelines.de.contrasts import Contrast
        from gexplain.pipelines.de.mannwhitney import run_mannwhitney
        from gexplain.storage.store import open_store
        """,
        """
        ds = open_store(spec["store"])
        n = ds.sizes["sample"]
        contrast = Contrast("half", "half", "a", "b", np.arange(0, n, 2), np.arange(1, n, 2))
        result = run_mannwhitney(ds, contrast, layer="counts", gene_block=256, parallel=2)
        np.save(spec["out"], np.stack([result["stat"].values, result["pvalue"].values]))
        """,
        {"store": counts_store, "out": str(out)},
    )
    stat, pvalue = np.load(out)
    assert stat.shape == (N_GENES,)
    block = counts_block(0)
    test, ref = block[0::2], block[1::2]
    assert test.shape[0] == n_test
    want = stats.mannwhitneyu(test[:, :200], ref[:, :200], method="asymptotic", axis=0)
    np.testing.assert_allclose(pvalue[:200], want.pvalue, rtol=1e-8, atol=1e-300)
    np.testing.assert_allclose(stat[:200], want.statistic)
    record("Mann-Whitney U", report, (N_SAMPLES, N_GENES))
