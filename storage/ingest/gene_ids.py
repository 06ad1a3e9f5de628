"""Gene-id layouts of public matrices: TCGA legacy ``SYMBOL|ENTREZ`` ids and symbol-only panels.

* TCGA legacy RSEM files (``illuminahiseq_rnaseqv2 ... rsem.genes.results``) name genes
  ``TP53|7157``; genes without an HGNC symbol are ``?|100133144``. The id is kept as the gene
  coordinate (it is unique where the symbol is not: ``SLC35E2|728661`` and ``SLC35E2|9906``) and
  split into ``gene_symbol`` (``''`` for ``?``) and ``gene_entrez``.
* Symbol-only matrices (a 260-gene panel of HGNC symbols) have no separate symbol column: the ids
  are copied into ``gene_symbol`` so every stage that shows names finds them.
"""

from __future__ import annotations

import re

import numpy as np
from gexplain.storage.ingest.common import looks_ensembl

_COMBINED = re.compile(r"^([^|]*)\|(\d*)$")
MISSING_SYMBOLS = frozenset({"", "?", "NA", "-"})


def split_combined(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Split ``SYMBOL|ENTREZ`` ids when every id has that form, else return None.

    Parameters
    ----------
    ids
        (gene,) str: gene ids as read.

    Returns
    -------
    (symbols, entrez) or None
        (gene,) object arrays of str; ``?`` (and empty) symbols and empty Entrez ids become ``''``.
    """
    if ids.size == 0:
        return None
    matches = [_COMBINED.match(str(i)) for i in ids]
    if not all(matches):
        return None
    symbols = np.array(["" if m[1] in MISSING_SYMBOLS else m[1] for m in matches if m], dtype=object)
    entrez = np.array([m[2] for m in matches if m], dtype=object)
    return symbols, entrez


def symbols_from_ids(ids: np.ndarray) -> np.ndarray | None:
    """Return the ids as symbols when they are symbols (not Ensembl ids, not numbers), else None.

    Parameters
    ----------
    ids
        (gene,) str: gene ids as read.

    Returns
    -------
    numpy.ndarray or None
        (gene,) object array: the id where it is neither Ensembl-like nor all digits, else ``''``;
        None when most ids look like Ensembl ids.
    """
    ensembl = looks_ensembl(ids)
    if ids.size == 0 or ensembl.mean() >= 0.5:
        return None
    text = [str(i) for i in ids]
    return np.array(
        ["" if (e or t.isdigit() or t in MISSING_SYMBOLS) else t for e, t in zip(ensembl, text, strict=True)],
        dtype=object,
    )


def gene_name_variables(ids: np.ndarray, symbols: np.ndarray | None) -> dict[str, np.ndarray]:
    """The ``gene_symbol`` (and, for combined ids, ``gene_entrez``) variables of a source.

    Parameters
    ----------
    ids
        (gene,) str: gene ids as read.
    symbols
        (gene,) str symbols the source carries (GCT ``Description``, GDC ``gene_name``), or None.

    Returns
    -------
    dict
        ``gene_symbol`` -> (gene,) object str; plus ``gene_entrez`` -> (gene,) object str for
        ``SYMBOL|ENTREZ`` ids. A source's own symbols win; missing ones are ``''``.
    """
    have = None if symbols is None else np.asarray(symbols, dtype=object).astype(str).astype(object)
    if have is not None and (have != "").any():
        return {"gene_symbol": have}
    combined = split_combined(np.asarray(ids))
    if combined is not None:
        return {"gene_symbol": combined[0], "gene_entrez": combined[1]}
    from_ids = symbols_from_ids(np.asarray(ids))
    if from_ids is not None:
        return {"gene_symbol": from_ids}
    return {"gene_symbol": np.full(ids.size, "", dtype=object)}
