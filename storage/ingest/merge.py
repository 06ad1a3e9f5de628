"""Merge cohort stores (e.g. GTEx + TCGA) on stripped Ensembl ids, reporting the genes dropped.

The merged store keeps the genes present in every cohort, in the first cohort's order; samples
are the cohorts' samples one after another with a ``sample_cohort`` variable. Values are copied
in sample blocks (one block of samples x all genes of one cohort in memory at a time).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import xarray as xr
from gexplain.storage.errors import InputError
from gexplain.storage.ingest.common import discard, sanitize_name
from gexplain.storage.schema import layer_names
from gexplain.storage.store import DEFAULT_CHUNKS, create_store, open_store


@dataclass
class MergeReport:
    """What a merge wrote.

    Attributes
    ----------
    url
        The merged store.
    n_samples, n_genes
        Its dims.
    layer
        The first merged layer (all layers common to every cohort are merged).
    dropped_genes
        Cohort -> stripped gene ids of that cohort that are missing from another cohort.
    label_column
        The merged store's label column (``sample_tissue`` with a label mapping), or None.
    unlabelled
        Cohort -> ids of its samples with an empty label (cohorts without a mapped column, or
        empty entries); empty when every sample has a label.
    """

    url: str
    n_samples: int
    n_genes: int
    layer: str
    dropped_genes: dict[str, list[str]] = field(default_factory=dict)
    label_column: str | None = None
    unlabelled: dict[str, list[str]] = field(default_factory=dict)


MERGED_LABEL = "sample_tissue"


def parse_label_map(
    entries: Sequence[str] | Mapping[str, str] | None, cohorts: Sequence[str]
) -> dict[str, str]:
    """Parse ``COHORT=COLUMN`` entries (or a mapping) into cohort -> sheet column.

    Raises
    ------
    InputError
        A malformed entry or a cohort name that is not one of ``cohorts``.
    """
    if not entries:
        return {}
    pairs: list[tuple[str, str]] = []
    if isinstance(entries, Mapping):
        pairs = [(str(k), str(v)) for k, v in entries.items()]
    else:
        for entry in entries:
            cohort, sep, column = str(entry).partition("=")
            if not sep or not cohort.strip() or not column.strip():
                raise InputError(
                    f"--merge-label {entry!r}: expected COHORT=COLUMN, e.g. GTEx=SMTSD or TCGA=primary_site"
                )
            pairs.append((cohort.strip(), column.strip()))
    out: dict[str, str] = {}
    for cohort, column in pairs:
        if cohort not in cohorts:
            raise InputError(
                f"--merge-label {cohort}={column}: no cohort '{cohort}'; the cohorts are "
                f"{', '.join(cohorts)} (name them with --cohort)"
            )
        out[cohort] = column
    return out


def _label_variable(ds: xr.Dataset, cohort: str, column: str) -> np.ndarray:
    """The values of ``column`` (a sheet column name or its ``sample_*`` variable) in one cohort."""
    candidates = [column, "sample_" + sanitize_name(column)]
    name = next((c for c in candidates if c in ds and ds[c].dims == ("sample",)), None)
    if name is None:
        have = [str(n) for n in ds.data_vars if ds[n].dims == ("sample",)]
        raise InputError(
            f"--merge-label {cohort}={column}: cohort '{cohort}' has no sample column '{column}' (as "
            f"{candidates[1]}); its sample columns are {', '.join(have[:30])}"
        )
    values = np.asarray(ds[name].values)
    if values.dtype.kind == "f":
        return np.array(["" if np.isnan(v) else f"{v:g}" for v in values], dtype=object)
    return values.astype(str).astype(object)


def prefixed(cohort: str, label: str) -> str:
    """``<cohort>_<label>``, unless the label already starts with the cohort's name followed by a
    separator (TCGA's ``Project ID`` ``TCGA-BRCA`` stays ``TCGA-BRCA``, not ``TCGA_TCGA-BRCA``);
    empty labels stay empty (missing)."""
    if not label.strip():
        return ""
    head, rest = label[: len(cohort)], label[len(cohort) :]
    if head.lower() == cohort.lower() and (not rest or rest[0] in "-_ .:/"):
        return label
    return f"{cohort}_{label}"


def merged_labels(
    stores: list[xr.Dataset], cohorts: Sequence[str], mapping: Mapping[str, str], prefix: bool
) -> np.ndarray:
    """One label per merged sample: each cohort's mapped column, optionally ``<cohort>_``-prefixed.

    Returns
    -------
    numpy.ndarray
        (sample,) object str in merged sample order; ``''`` for cohorts without a mapping and for
        empty (or blank) entries, never prefixed (:func:`prefixed`).
    """
    parts = []
    for ds, cohort in zip(stores, cohorts, strict=True):
        if cohort in mapping:
            values = _label_variable(ds, cohort, mapping[cohort])
            if prefix:
                values = np.array([prefixed(cohort, v) for v in values], dtype=object)
        else:
            values = np.full(ds.sizes["sample"], "", dtype=object)
        parts.append(values)
    return np.concatenate(parts)


def _sample_columns(stores: list[xr.Dataset], cohorts: Sequence[str]) -> dict[str, np.ndarray]:
    names: list[str] = []
    for ds in stores:
        names += [str(n) for n in ds.data_vars if ds[n].dims == ("sample",) and str(n) not in names]
    out: dict[str, np.ndarray] = {}
    for name in names:
        pieces = [ds[name].values if name in ds else None for ds in stores]
        numeric = all(p is None or p.dtype.kind in "iufb" for p in pieces)
        filled = [
            (p if p is not None else np.full(ds.sizes["sample"], np.nan if numeric else "", dtype=object))
            for p, ds in zip(pieces, stores, strict=True)
        ]
        joined = np.concatenate([np.asarray(f, dtype=np.float64 if numeric else object) for f in filled])
        out[name] = joined if numeric else joined.astype(str).astype(object)
    out["sample_cohort"] = np.concatenate(
        [np.full(ds.sizes["sample"], c, dtype=object) for ds, c in zip(stores, cohorts, strict=True)]
    )
    return out


def _gene_columns(stores: list[xr.Dataset], index: list[np.ndarray]) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    names: list[str] = []
    for ds in stores:
        names += [str(n) for n in ds.data_vars if ds[n].dims == ("gene",) and str(n) not in names]
    for name in names:
        have = [(ds[name].values[idx]) for ds, idx in zip(stores, index, strict=True) if name in ds]
        merged = np.array(have[0], copy=True)
        for more in have[1:]:
            if merged.dtype.kind == "f":
                gap = np.isnan(merged)
            elif merged.dtype.kind in "OUT":
                gap = merged.astype(str) == ""
            else:
                break
            merged[gap] = more[gap]
        out[name] = merged
    return out


def merge_stores(
    urls: Sequence[str],
    out: str,
    *,
    cohorts: Sequence[str],
    chunks: Mapping[str, int] | None = None,
    overwrite: bool = False,
    attrs: Mapping[str, Any] | None = None,
    labels: Sequence[str] | Mapping[str, str] | None = None,
    label_prefix: bool = False,
    block_bytes: int = 256 * 2**20,
    on_progress: Callable[[int, int], None] | None = None,
) -> MergeReport:
    """Merge complete stores into a new store over the genes they all share.

    Parameters
    ----------
    urls
        Input stores (gene coords already version-stripped, as ingest writes them).
    out
        The merged store to create.
    cohorts
        One name per input, written as ``sample_cohort``.
    chunks
        Chunk shape of the new store.
    overwrite
        Replace an existing store at ``out`` once the merge is complete.
    attrs
        Extra group attrs (e.g. ``sources``).
    labels
        ``COHORT=COLUMN`` entries (or a mapping): each cohort's sample-sheet column (``SMTSD``,
        ``Project ID``, ``primary_site``, or the ``sample_*`` variable name) written into one
        ``sample_tissue`` label column. Cohorts without an entry get empty labels (reported).
    label_prefix
        Prefix the mapped labels with the cohort name (``GTEx_Lung``, ``TCGA_TCGA-LUAD``) so
        cohorts never share a class.
    block_bytes
        Memory bound for one block of samples x all genes of one cohort.
    on_progress
        ``on_progress(samples_done, samples_total)``.

    Raises
    ------
    InputError
        No layer common to every cohort, duplicate sample ids across cohorts, no common genes.
    """
    stores = [open_store(u) for u in urls]
    common = [n for n in layer_names(stores[0]) if all(n in layer_names(ds) for ds in stores[1:])]
    if not common:
        have = "; ".join(f"{c}: {layer_names(ds)}" for c, ds in zip(cohorts, stores, strict=True))
        raise InputError(
            f"the cohorts share no layer ({have}); declare the same value type for every source (--values)"
        )
    sample_ids = np.concatenate([ds["sample"].values.astype(object) for ds in stores])
    seen: dict[str, str] = {}
    for ds, cohort in zip(stores, cohorts, strict=True):
        for sid in ds["sample"].values:
            if str(sid) in seen:
                raise InputError(
                    f"sample id '{sid}' is in cohorts '{seen[str(sid)]}' and '{cohort}'; sample ids must be "
                    "unique across merged cohorts — rename the samples in one sample sheet"
                )
            seen[str(sid)] = cohort
    gene_sets = [set(map(str, ds["gene"].values)) for ds in stores]
    shared = set.intersection(*gene_sets)
    genes = np.array([g for g in map(str, stores[0]["gene"].values) if g in shared], dtype=object)
    if genes.size == 0:
        raise InputError(
            "the cohorts share no gene id (after stripping Ensembl version suffixes); check that every "
            "source uses Ensembl gene ids"
        )
    dropped = {
        c: [g for g in map(str, ds["gene"].values) if g not in shared]
        for c, ds in zip(cohorts, stores, strict=True)
    }
    positions = [{g: i for i, g in enumerate(map(str, ds["gene"].values))} for ds in stores]
    index = [np.array([pos[g] for g in genes], dtype=np.int64) for pos in positions]
    coords: dict[str, tuple[str, np.ndarray]] = {
        **{k: ("gene", v) for k, v in _gene_columns(stores, index).items()},
        **{k: ("sample", v) for k, v in _sample_columns(stores, cohorts).items()},
    }
    mapping = parse_label_map(labels, cohorts)
    if mapping:
        coords[MERGED_LABEL] = ("sample", merged_labels(stores, cohorts, mapping, label_prefix))
        label: str | None = MERGED_LABEL
    else:
        label = next(
            (ds.attrs["label_column"] for ds in stores if ds.attrs.get("label_column") in coords), None
        )
    unlabelled: dict[str, list[str]] = {}
    if label is not None:
        values = np.asarray(coords[label][1]).astype(str)
        cohort_of = coords["sample_cohort"][1]
        for cohort in cohorts:
            empty = (cohort_of == cohort) & (values == "")
            if empty.any():
                unlabelled[cohort] = [str(s) for s in sample_ids[empty]]
    merged_attrs = {
        **(attrs or {}),
        "merge": {
            "cohorts": list(cohorts),
            "genes_kept": int(genes.size),
            "genes_dropped": {c: len(v) for c, v in dropped.items()},
            "labels": {"column": label, "from": mapping, "cohort_prefix": bool(label_prefix)},
            "unlabelled_samples": {c: len(v) for c, v in unlabelled.items()},
        },
        **({"label_column": label} if label else {}),
    }
    layers = {n: stores[0][n].dtype for n in common}
    writer = create_store(
        out,
        sample_ids=sample_ids,
        gene_ids=genes,
        coords=coords,
        layers=layers,
        attrs=merged_attrs,
        chunks={**DEFAULT_CHUNKS, **(chunks or {})},
        overwrite=overwrite,
    )
    try:
        offset = 0
        for ds, idx in zip(stores, index, strict=True):
            n_src_genes = ds.sizes["gene"]
            itemsize = max(np.dtype(d).itemsize for d in layers.values())
            rows = max(1, min(ds.sizes["sample"], block_bytes // max(1, n_src_genes * itemsize)))
            for a in range(0, ds.sizes["sample"], rows):
                b = min(ds.sizes["sample"], a + rows)
                arrays = {n: np.asarray(ds[n][a:b].values)[:, idx] for n in common}
                writer.write_block({"sample": slice(offset + a, offset + b)}, arrays)
                if on_progress is not None:
                    on_progress(offset + b, sample_ids.size)
            offset += ds.sizes["sample"]
        url = writer.commit()
    except BaseException:
        discard(writer)
        raise
    return MergeReport(
        url=url,
        n_samples=int(sample_ids.size),
        n_genes=int(genes.size),
        layer=common[0],
        dropped_genes=dropped,
        label_column=label,
        unlabelled=unlabelled,
    )
