"""The expression-store schema: every variable's name, dims, dtype and meaning.

The declarations below are the single source of truth. They validate Datasets
(:func:`validate`) and generate ``docs/store.md`` (:func:`render_markdown`), so the docs
cannot drift from the checks.

Naming rule: a name carries its dims. Variables along ``sample`` start with ``sample_``,
variables along ``gene`` with ``gene_`` (or ``truth_`` for simulator ground truth), and
matrices over ``(sample, gene)`` are named for their layer (``counts``, ``tpm``, ...).
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

import numpy as np
import xarray as xr
from gexplain.storage.errors import InputError

SAMPLE = "sample"
GENE = "gene"


@dataclass(frozen=True)
class VariableSpec:
    """Declaration of one store variable (or a family of them, by glob pattern).

    Attributes
    ----------
    name
        Variable name or glob pattern (``sample_*``).
    dims
        Dimension names, in order.
    kinds
        Allowed numpy dtype kinds (``"i"`` signed int, ``"u"`` unsigned, ``"f"`` float,
        ``"b"`` bool, ``"U"``/``"O"``/``"T"`` strings).
    units
        Units of the values (``""`` when dimensionless or categorical).
    description
        What the variable holds.
    """

    name: str
    dims: tuple[str, ...]
    kinds: str
    units: str
    description: str

    def matches(self, name: str) -> bool:
        """Return True when ``name`` is declared by this spec."""
        return fnmatch.fnmatchcase(name, self.name)


STRING_KINDS = "UOT"

SPECS: tuple[VariableSpec, ...] = (
    VariableSpec(SAMPLE, (SAMPLE,), STRING_KINDS, "", "Sample identifier (unique)."),
    VariableSpec(
        GENE, (GENE,), STRING_KINDS, "", "Gene identifier: Ensembl id without version suffix, else symbol."
    ),
    VariableSpec("gene_id_versioned", (GENE,), STRING_KINDS, "", "Gene id exactly as read from the source."),
    VariableSpec("gene_symbol", (GENE,), STRING_KINDS, "", "HGNC symbol ('' when unknown)."),
    VariableSpec("gene_length", (GENE,), "f", "bp", "Effective gene length used for TPM (NaN when unknown)."),
    VariableSpec("gene_chrom", (GENE,), STRING_KINDS, "", "Chromosome of the gene, when known."),
    VariableSpec("gene_start", (GENE,), "if", "bp", "Genomic start position, when known."),
    VariableSpec("gene_*", (GENE,), "iufbUOT", "", "Any other per-gene annotation (e.g. from AnnData var)."),
    VariableSpec(
        "sample_*", (SAMPLE,), "iufbUOT", "", "Sample-sheet column, e.g. sample_tissue, sample_status."
    ),
    VariableSpec("size_factors", (SAMPLE,), "f", "", "DESeq2 median-of-ratios size factors."),
    VariableSpec("counts", (SAMPLE, GENE), "iu", "reads", "Raw read counts."),
    VariableSpec(
        "expected_counts",
        (SAMPLE, GENE),
        "f",
        "reads",
        "RSEM/Salmon estimated counts as read; `counts` holds them rounded (halves to even).",
    ),
    VariableSpec("norm_counts", (SAMPLE, GENE), "f", "reads", "Counts divided by size factors."),
    VariableSpec("tpm", (SAMPLE, GENE), "f", "TPM", "Transcripts per million."),
    VariableSpec("cpm", (SAMPLE, GENE), "f", "CPM", "Counts per million."),
    VariableSpec(
        "log_expr",
        (SAMPLE, GENE),
        "f",
        "log2(x+1)",
        "log2(x + 1) of the layer named in attrs['log_expr_source'] (default tpm).",
    ),
    VariableSpec("log_*", (SAMPLE, GENE), "f", "log2(x+1)", "log2(x + 1) of another layer, e.g. log_cpm."),
    VariableSpec(
        "expr", (SAMPLE, GENE), "f", "", "Continuous expression of unspecified units (generic input)."
    ),
    VariableSpec("truth_informative", (GENE,), "b", "", "Simulators: gene is truly class-informative."),
    VariableSpec("truth_mode", (GENE,), STRING_KINDS, "", "Simulators: 'none', 'linear' or 'nonlinear'."),
    VariableSpec(
        "truth_program", (GENE,), "i", "", "Simulators: programme/topic id of the gene, -1 for none."
    ),
    VariableSpec("truth_*", (GENE,), "iufbUOT", "", "Other simulator ground truth along genes."),
)

LAYERS: tuple[str, ...] = tuple(s.name for s in SPECS if s.dims == (SAMPLE, GENE) and "*" not in s.name)


def spec_for(name: str) -> VariableSpec | None:
    """Return the first spec declaring ``name``, or None."""
    for spec in SPECS:
        if spec.matches(name):
            return spec
    return None


def _is_layer(name: str) -> bool:
    spec = spec_for(name)
    return spec is not None and spec.dims == (SAMPLE, GENE)


def layer_names(ds: xr.Dataset) -> list[str]:
    """Return the names of the (sample, gene) layers present in ``ds``."""
    return [str(n) for n in ds.data_vars if _is_layer(str(n))]


def validate(ds: xr.Dataset, *, require: tuple[str, ...] = (), where: str = "dataset") -> None:
    """Check ``ds`` against the declarations and raise one error listing every problem.

    Parameters
    ----------
    ds
        The Dataset to check (lazy is fine: only metadata is read).
    require
        Variable names that must be present (e.g. ``("counts",)``).
    where
        Name of the store or file, used in the message.

    Raises
    ------
    InputError
        With one line per problem and how to fix it.
    """
    problems: list[str] = []
    for dim in (SAMPLE, GENE):
        if dim not in ds.dims:
            problems.append(f"missing dimension '{dim}' (every store has dims 'sample' and 'gene')")
    for name in list(ds.variables):
        name = str(name)
        var = ds.variables[name]
        spec = spec_for(name)
        if spec is None:
            problems.append(
                f"variable '{name}' is not declared in storage/schema.py; rename it so that it carries its "
                "dims (sample_*, gene_*, truth_*) or use a declared layer name "
                f"({', '.join(LAYERS)})"
            )
            continue
        if tuple(var.dims) != spec.dims:
            problems.append(f"variable '{name}' has dims {tuple(var.dims)}, expected {spec.dims}")
        if var.dtype.kind not in spec.kinds:
            problems.append(
                f"variable '{name}' has dtype {var.dtype}, expected kind in '{spec.kinds}' ({spec.description})"
            )
    for name in require:
        if name not in ds.variables:
            present = ", ".join(layer_names(ds)) or "none"
            problems.append(f"required variable '{name}' is missing (layers present: {present})")
    for dim in (SAMPLE, GENE):
        if dim in ds.indexes and not ds.indexes[dim].is_unique:
            dup = ds.indexes[dim][ds.indexes[dim].duplicated()].tolist()[:5]
            problems.append(f"duplicate {dim} ids, e.g. {dup}; ids along '{dim}' must be unique")
    if problems:
        raise InputError(
            f"{where} does not follow the gexplain store schema:\n  - " + "\n  - ".join(problems)
        )


def to_storable_strings(values: np.ndarray) -> np.ndarray:
    """Return string arrays as fixed-width numpy unicode (``<U<n>``, n = the longest string).

    Stored that way, plain ``xarray.open_zarr``/``zarr`` readers get ordinary numpy unicode back
    (Zarr's variable-length strings read as ``StringDType``, which e.g. ``.astype(str)`` refuses).
    Object arrays are converted when every element is a ``str``; others are returned unchanged.

    Parameters
    ----------
    values
        Any array; non-string arrays are returned unchanged.
    """
    arr = np.asarray(values)
    if arr.dtype.kind == "O" and arr.size and all(isinstance(v, str) for v in arr.ravel()):
        arr = arr.astype(str)
    if arr.dtype.kind in "UT":
        width = max(1, max((len(str(v)) for v in arr.ravel()), default=1))
        return arr.astype(f"<U{width}")
    return arr


def render_markdown() -> str:
    """Render the declarations as the Markdown page ``docs/store.md``."""
    lines = [
        "# Store format",
        "",
        "<!-- generated by `python -m gexplain.storage.schema > docs/store.md`; edit storage/schema.py instead -->",
        "",
        "A gexplain expression store is a Zarr v3 group written and read through xarray, on a local path",
        "or any fsspec URL (`memory://`, `s3://`, `gs://`). Dims are `sample` and `gene`; a variable's",
        "name carries its dims. Group attrs hold provenance: `gexplain_version`, `created`, `sources`",
        "(path + sha256 of each input file), `simulator` (for simulated stores), `label_column`,",
        "`gexplain_complete` (set last, when every block is written) and `gexplain_variables`",
        "(the variables whose data is complete; others are hidden by `open_store`).",
        "",
        "Atomicity: locally a new store is written under a temporary sibling and renamed into place, so",
        "an existing store survives a failed or killed overwrite. On object stores (no rename) the new",
        "store is written in place with `gexplain_complete = false` and flipped at the end; an overwrite",
        "there removes the old store first, so a failed overwrite leaves no store rather than a partial one.",
        "",
        "Integrity: every array's codecs end with Zarr v3's `crc32c` (after `zstd`), and every chunk is",
        "written, including chunks that hold only the fill value, so in an array with that codec a chunk",
        "that is absent is damage, never fill. gexplain reads through a verifying store wrapper",
        "(`gexplain.storage.integrity.GuardedStore`): a missing, truncated or corrupted chunk raises",
        "`DamagedStoreError` naming the store, the array, the chunk and the command that rewrites it;",
        "`open_store` also refuses a layer with a missing chunk before any stage writes. `gexplain verify",
        "STORE` checks every chunk of every array and records its outcome in the group `integrity`",
        "(`gexplain info` shows it). Arrays without `crc32c` (stores written before it) read as before",
        "and are reported as unverifiable.",
        "",
        "| name | dims | dtype kinds | units | meaning |",
        "|---|---|---|---|---|",
    ]
    for s in SPECS:
        lines.append(f"| `{s.name}` | {', '.join(s.dims)} | `{s.kinds}` | {s.units} | {s.description} |")
    lines += [
        "",
        "## Chunking",
        "",
        "Layers are chunked `(sample 2048, gene 2048)` by default (`gexplain.storage.store.DEFAULT_CHUNKS`): 16 MiB",
        "per float32 chunk. Square chunks serve both access patterns: differential expression reads gene",
        "blocks (all samples x 2048 genes) and attribution reads sample blocks (2048 samples x all genes);",
        "either scan reads each stored byte once and never more than one chunk row or column at a time.",
        "See BENCHMARKS.md (chunking) for the measurement behind the choice.",
        "",
        "## Results, models and ledgers inside a store",
        "",
        "Every node below is Zarr (a group with a `zarr.json`, or an array) and strings are stored as",
        "fixed-width unicode, so plain readers get numpy `<U` arrays back (not `StringDType`). What",
        "plain libraries open (checked on a store after simulate, de, train and explain):",
        "",
        "- `zarr.open_group(store, mode='r')`: every node.",
        "- `xarray.open_zarr(store, consolidated=False)`: the root (layers, `sample_*`, `gene_*`);",
        "  `xarray.open_zarr(store, group='results/<kind>/<name>', consolidated=False)`: one result.",
        "- `xarray.open_datatree(store, engine='zarr')` fails: model weights (`models/`) and ledgers are",
        "  plain Zarr arrays without `dimension_names`. Open the root and each result as above, or use",
        "  `gexplain.open(store)`.",
        "- `anndata.read_zarr(store)` does not read a store (it is not AnnData's layout): write one with",
        "  `gexplain export STORE --zarr out.zarr` or `--h5ad out.h5ad`.",
        "",
        "- `results/<kind>/<name>`: result groups (DE tables, attributions, evaluation tables), each with",
        "  `gexplain_complete` set only once fully written. Multi-part results -- `results/evaluate/<name>`",
        "  (one table per group below it) and `results/de/<method>` (one group per contrast) -- carry",
        "  `gexplain_result_set = true` and their own `gexplain_complete`: until it is set none of their",
        "  parts is listed.",
        "- `models/<model_set>`: group with `gexplain_complete` and `replicates`; a set is swapped in whole.",
        "  `models/<model_set>/replicate-<k>`: 1-d `uint8` array of the serialised weights, metadata",
        "  (genes, classes, parameters, metrics, `sha256` of the weights) in its attributes.",
        "  `models/<model_set>/reports/<name>`: group whose attributes hold a report (e.g. `cv`).",
        "- `ledger/<name>/<key>`: one group per finished block of a resumable job (attributes: the key's",
        "  info).",
        "- `leases/<scope>`: writer leases (attributes `gexplain_lease`: `generation`, increased at every",
        "  acquisition; `holders`: owner, host, pid, mode, generation, expiry; `taken`: who entered last),",
        "  scope `store` or `results__<kind>__<name>` or `models__<set>`. Written only by conditional",
        "  writes (`flock` locally, `If-Match`/`If-None-Match` on S3).",
        "- `integrity`: group whose attribute `gexplain_verification` holds the last `gexplain verify`.",
        "- Hidden `.<name>.partial-<host>-<pid>-<hex>` / `.old-` / `.tmp-` entries (beside the store and",
        "  in `models/`) belong to a running writer; once it is gone the next writer or `gexplain gc`",
        "  removes them.",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(render_markdown(), end="")
