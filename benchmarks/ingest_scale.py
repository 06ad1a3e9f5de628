"""Ingest at real cohort size: a GTEx-v8-shaped GCT.gz and a 10,000-file GDC STAR directory.

Question: does ``gexplain ingest`` take whole public cohorts as downloaded, in how long and in how
much memory?

* **GTEx v8 shape**: 56,200 genes x 17,382 samples GCT 1.2, gzip, with the real header layout
  (``#1.2``, dimensions line, ``Name``/``Description`` columns, versioned Ensembl ids,
  ``GTEX-xxxxx-xxxx-SM-xxxxx`` sample ids) plus a GTEx-style ``SampleAttributesDS.txt`` (SAMPID,
  SMTS, SMTSD, SMUBRID, ... and rows for samples not in the matrix, as the real sheet has) that
  is ingested with ``--ignore-extra-sheet-rows``.
* **GDC STAR**: 10,000 ``<uuid>.rna_seq.augmented_star_gene_counts.tsv.gz`` files (60,660 genes
  each, with the ``# gene-model`` line and the four ``N_*`` STAR summary rows) in per-file UUID
  folders, and a GDC sample sheet. To keep the disk footprint small on a shared machine, the
  10,000 names are hard links to ``--pool`` distinct generated files: the page cache serves
  repeated files, so the number measures parsing and writing rather than disk reads.

Every measurement runs in a fresh child process (``nice -n 10``) that reports its own peak RSS
(``resource.getrusage``); the 1-minute load average is recorded before and after.

Usage::

    python benchmarks/ingest_scale.py generate-gct WORKDIR [--samples N --genes N]
    python benchmarks/ingest_scale.py generate-gdc WORKDIR [--files N --pool N]
    python benchmarks/ingest_scale.py measure WORKDIR gct|gdc
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import resource
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np

MiB = 2**20
GTEX_GENES, GTEX_SAMPLES = 56_200, 17_382
GDC_GENES, GDC_FILES = 60_660, 10_000
TISSUES = [
    ("Adipose Tissue", "Adipose - Subcutaneous", "0002190"),
    ("Blood", "Whole Blood", "0013756"),
    ("Brain", "Brain - Cortex", "0001870"),
    ("Lung", "Lung", "0008952"),
    ("Muscle", "Muscle - Skeletal", "0011907"),
    ("Skin", "Skin - Sun Exposed (Lower leg)", "0004264"),
    ("Thyroid", "Thyroid", "0002046"),
    ("Esophagus", "Esophagus - Mucosa", "0006920"),
]
GTEX_SHEET_COLUMNS = [
    "SAMPID", "SMATSSCR", "SMCENTER", "SMPTHNTS", "SMRIN", "SMTS", "SMTSD", "SMUBRID", "SMTSISCH",
    "SMTSPAX", "SMNABTCH", "SMNABTCHT", "SMNABTCHD", "SMGEBTCH", "SMGEBTCHD", "SMGEBTCHT", "SMAFRZE",
    "SMGTC", "SME2MPRT", "SMCHMPRS", "SMNTRART", "SMNUMGPS", "SMMAPRT", "SMEXNCRT", "SM550NRM",
    "SMGNSDTC", "SMUNMPRT", "SM350NRM", "SMRRNANM", "SMMNCPB",
]  # fmt: skip


def _load() -> float:
    return os.getloadavg()[0]


def _gtex_ids(n: int, rng: np.random.Generator) -> list[str]:
    alnum = np.array(list("0123456789ABCDEFGHJKLMNPQRSTUVWXYZ"))
    donors = [f"GTEX-{''.join(rng.choice(alnum, 5))}" for _ in range(max(1, n // 17))]
    out: set[str] = set()
    while len(out) < n:
        donor = donors[int(rng.integers(len(donors)))]
        out.add(f"{donor}-{int(rng.integers(1, 3300)):04d}-SM-{''.join(rng.choice(alnum, 5))}")
    return sorted(out)


def generate_gct(work: Path, n_samples: int, n_genes: int, seed: int = 0, block: int = 128) -> None:
    """Write ``gtex.gct.gz`` (NB counts, gzip level 1) and ``SampleAttributesDS.txt`` into ``work``."""
    rng = np.random.default_rng(seed)
    samples = _gtex_ids(n_samples + n_samples // 4, rng)
    in_matrix = sorted(rng.choice(len(samples), n_samples, replace=False).tolist())
    matrix_ids = [samples[i] for i in in_matrix]
    with open(work / "SampleAttributesDS.txt", "w") as fh:  # the real sheet lists every release sample
        fh.write("\t".join(GTEX_SHEET_COLUMNS) + "\n")
        for sid in samples:
            smts, smtsd, uberon = TISSUES[int(rng.integers(len(TISSUES)))]
            row = [
                sid,
                str(int(rng.integers(0, 3))),
                "B1",
                "2 pieces, minimal fat",
                f"{rng.uniform(5, 10):.1f}",
            ]
            row += [smts, smtsd, uberon, str(int(rng.integers(100, 1500))), f"{rng.uniform(5, 20):.2f}"]
            row += ["BP-38", "RNA Extraction from Paxgene-derived Lysate Plate Based", "03/14/2013"]
            row += ["LCSET-4822", "07/12/2013", "TrueSeq.v1", "RNASEQ", ""]
            row += [f"{rng.uniform(0.9, 1.0):.7f}" for _ in range(len(GTEX_SHEET_COLUMNS) - len(row))]
            fh.write("\t".join(row) + "\n")
    tokens = np.array([str(i) for i in range(1 << 16)], dtype=object)
    depth = rng.lognormal(0.0, 0.3, n_samples)
    proc = subprocess.Popen(["gzip", "-1"], stdin=subprocess.PIPE, stdout=open(work / "gtex.gct.gz", "wb"))
    assert proc.stdin is not None
    out = proc.stdin
    out.write(f"#1.2\n{n_genes}\t{n_samples}\nName\tDescription\t{chr(9).join(matrix_ids)}\n".encode())
    for start in range(0, n_genes, block):
        stop = min(n_genes, start + block)
        mean = rng.lognormal(1.0, 2.5, stop - start)[:, None] * depth[None, :]
        counts = np.minimum(rng.negative_binomial(2.0, 2.0 / (2.0 + mean)), (1 << 16) - 1)
        lines = [
            f"ENSG{223972 + 7 * (start + i):011d}.{(start + i) % 19 + 1}\tGENE{start + i}\t"
            + "\t".join(tokens[row].tolist())
            for i, row in enumerate(counts)
        ]
        out.write(("\n".join(lines) + "\n").encode())
    out.close()
    proc.wait()


def _star_file(gene_ids: list[str], names: list[str], rng: np.random.Generator) -> bytes:
    n = len(gene_ids)
    mean = rng.lognormal(1.0, 2.5, n)
    un = rng.negative_binomial(2.0, 2.0 / (2.0 + mean))
    first = rng.binomial(un, 0.5)
    tpm = un / np.maximum(un.sum(), 1) * 1e6
    rows = ["# gene-model: GENCODE v36", "gene_id\tgene_name\tgene_type\tunstranded\tstranded_first\t"
            "stranded_second\ttpm_unstranded\tfpkm_unstranded\tfpkm_uq_unstranded"]  # fmt: skip
    rows += [f"{s}\t\t\t{int(rng.integers(1e6, 3e6))}\t{int(rng.integers(1e6, 3e6))}\t{int(rng.integers(1e6, 3e6))}\t\t\t"
             for s in ("N_unmapped", "N_multimapping", "N_noFeature", "N_ambiguous")]  # fmt: skip
    rows += [
        f"{g}\t{nm}\tprotein_coding\t{u}\t{f}\t{u - f}\t{t:.4f}\t{t / 2:.4f}\t{t / 3:.4f}"
        for g, nm, u, f, t in zip(gene_ids, names, un, first, tpm, strict=True)
    ]
    return gzip.compress(("\n".join(rows) + "\n").encode(), compresslevel=6)


def generate_gdc(work: Path, n_files: int, pool: int, n_genes: int = GDC_GENES, seed: int = 0) -> None:
    """Write ``gdc/<uuid>/<uuid>.rna_seq.augmented_star_gene_counts.tsv.gz`` (hard links to ``pool``
    distinct files) and ``gdc_sample_sheet.tsv`` into ``work``."""
    rng = np.random.default_rng(seed)
    gene_ids = [f"ENSG{3 + 11 * i:011d}.{i % 17 + 1}" for i in range(n_genes)]
    names = [f"GENE{i}" for i in range(n_genes)]
    pool_dir = work / "gdc_pool"
    pool_dir.mkdir(parents=True, exist_ok=True)
    pool_files = []
    for k in range(pool):
        p = pool_dir / f"pool{k}.tsv.gz"
        if not p.exists():
            p.write_bytes(_star_file(gene_ids, names, rng))
        pool_files.append(p)
    root = work / "gdc"
    root.mkdir(exist_ok=True)
    projects = [
        ("TCGA-BRCA", "Breast"),
        ("TCGA-LUAD", "Lung"),
        ("TCGA-KIRC", "Kidney"),
        ("TCGA-THCA", "Thyroid"),
    ]
    with open(work / "gdc_sample_sheet.tsv", "w") as sheet:
        sheet.write(
            "File ID\tFile Name\tData Category\tData Type\tProject ID\tCase ID\tSample ID\tSample Type\n"
        )
        for i in range(n_files):
            fid = str(uuid.UUID(int=int(rng.integers(0, 2**63)) << 64 | i))
            name = f"{uuid.UUID(int=int(rng.integers(0, 2**63)) << 64 | i)}.rna_seq.augmented_star_gene_counts.tsv.gz"
            folder = root / fid
            folder.mkdir(exist_ok=True)
            target = folder / name
            if not target.exists():
                os.link(pool_files[i % pool], target)
            project, _ = projects[i % len(projects)]
            case = f"TCGA-{i // 100:02d}-{i:04d}"
            kind = "Solid Tissue Normal" if i % 9 == 0 else "Primary Tumor"
            code = "11A" if kind == "Solid Tissue Normal" else "01A"
            sheet.write(
                f"{fid}\t{name}\tTranscriptome Profiling\tGene Expression Quantification\t{project}\t"
                f"{case}\t{case}-{code}\t{kind}\n"
            )


def child(kind: str, work: str) -> dict:
    """Ingest one generated input in this (fresh) process; return wall time and peak RSS."""
    import shutil

    from gexplain.storage.ingest import ingest

    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out = Path(work) / f"{kind}.zarr"
    shutil.rmtree(out, ignore_errors=True)
    log = open(Path(work) / f"{kind}.progress", "w", buffering=1)  # partial numbers if stopped early
    t0 = time.perf_counter()

    def progress(done: int, total: int) -> None:
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        log.write(
            f"{time.perf_counter() - t0:.1f} s\t{done}/{total} rows\tpeak RSS {rss:.0f} MiB\tload {_load():.1f}\n"
        )

    log.write(f"start (scan), load {_load():.1f}\n")
    if kind == "gct":
        report = ingest(
            Path(work) / "gtex.gct.gz",
            str(out),
            sample_sheets=Path(work) / "SampleAttributesDS.txt",
            ignore_extra_sheet_rows=True,
            on_progress=progress,
        )
    else:
        report = ingest(
            Path(work) / "gdc",
            str(out),
            sample_sheets=Path(work) / "gdc_sample_sheet.tsv",
            on_progress=progress,
        )
    seconds = time.perf_counter() - t0
    store_mib = sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) / MiB
    return {
        "seconds": seconds,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "import_rss_mib": base,
        "shape": [report.n_samples, report.n_genes],
        "store_mib": store_mib,
        "cpu_s": resource.getrusage(resource.RUSAGE_SELF).ru_utime
        + resource.getrusage(resource.RUSAGE_SELF).ru_stime,
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("action", choices=["generate-gct", "generate-gdc", "measure", "child"])
    parser.add_argument("work")
    parser.add_argument("kind", nargs="?", choices=["gct", "gdc"])
    parser.add_argument("--samples", type=int, default=GTEX_SAMPLES)
    parser.add_argument("--genes", type=int, default=GTEX_GENES)
    parser.add_argument("--files", type=int, default=GDC_FILES)
    parser.add_argument("--gdc-genes", type=int, default=GDC_GENES)
    parser.add_argument("--pool", type=int, default=64)
    args = parser.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    if args.action == "generate-gct":
        generate_gct(work, args.samples, args.genes)
        size = (work / "gtex.gct.gz").stat().st_size / MiB
        print(json.dumps({"generated": "gct", "seconds": time.perf_counter() - t0, "mib": size}))
    elif args.action == "generate-gdc":
        generate_gdc(work, args.files, args.pool, args.gdc_genes)
        print(json.dumps({"generated": "gdc", "seconds": time.perf_counter() - t0}))
    elif args.action == "child":
        print(json.dumps(child(args.kind, args.work)))
    else:
        load_before = _load()
        proc = subprocess.run(
            ["nice", "-n", "10", sys.executable, __file__, "child", args.work, args.kind],
            check=True,
            capture_output=True,
            text=True,
        )
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        result.update(kind=args.kind, load_before=load_before, load_after=_load())
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
