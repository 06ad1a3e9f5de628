"""The faithfulness task: PGI / PGU / floor gaps of one (source, variant, sample block).

Apart from :mod:`gexplain.pipelines.evaluate.tasks` because it imports torch. The task reads the
block's inputs and attributions from the store and loads the model set itself; a worker process
keeps the loaded ensemble for the rest of the evaluation (keyed by model set, gene list and
device), so it loads it once, not once per block. The noise of a sample is keyed by
``(seed, sample id)`` and its floor draws by ``(seed, sample id, draw)``
(:mod:`gexplain.pipelines.evaluate.faithfulness`), so a block's numbers do not depend on which
worker computes it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import torch
from gexplain.pipelines.evaluate.faithfulness import (
    Ensemble,
    perturbation_sample_gaps,
    replacement_sample_gaps,
)
from gexplain.pipelines.evaluate.inputs import ATTR, positions
from gexplain.pipelines.evaluate.tasks import Rows, Where, cached, compact, result, store, store_labels
from gexplain.storage.schema import GENE, SAMPLE


@dataclass(frozen=True)
class FaithfulnessKey:
    """One block of one (source, variant) of the faithfulness table.

    Attributes
    ----------
    run, explainer
        The attribution.
    variant
        ``"openxai"`` or ``"replace"``.
    model_set
        The model set whose ensemble is evaluated.
    rows, store_rows
        The block's samples: positions in the run and in the store.
    ids
        Integer id of each of the block's samples (its position among the evaluated store
        samples): keys its noise and its floor draws.
    label
        The store's label column (targets of ``replace``).
    ks
        The k grid.
    stat
        (gene,) float64: the per-gene noise scale (``openxai``, input units) or the replacement
        reference (``replace``), over the run's genes.
    sigma, n_perturbations, n_random, seed
        As :func:`gexplain.pipelines.evaluate.faithfulness.perturbation_sample_gaps`.
    device
        Torch device of the model passes.
    torch_threads
        Torch threads of this task (0: leave torch's setting).
    """

    run: str
    explainer: str
    variant: str
    model_set: str
    rows: Rows
    store_rows: Rows
    ids: Rows
    label: str
    ks: tuple[int, ...]
    stat: np.ndarray
    sigma: float
    n_perturbations: int
    n_random: int
    seed: int
    device: str
    torch_threads: int = 0


def _ensemble(
    where: Where, model_set: str, genes: np.ndarray, device: str
) -> tuple[Ensemble, list[str], str]:
    """The model set's ensemble aligned to ``genes`` on ``device``, its classes and input layer."""
    from gexplain.pipelines.models.load import load_models

    def load() -> tuple[Ensemble, list[str], str]:
        models = load_models(where.store_url, model_set, genes=genes, fill="mean")
        return Ensemble([m.module for m in models], device=device), list(models[0].classes), models[0].layer

    digest = hashlib.blake2b(genes.tobytes(), digest_size=16).hexdigest()
    return cached(where, ("models", model_set, digest, device), load)


def _positions(index: np.ndarray, wanted: np.ndarray) -> Rows:
    return compact(positions(index, wanted, "gene"))


def faithfulness_block(where: Where, key: FaithfulnessKey) -> np.ndarray:
    """Per-sample gaps of one block, float64 (sample, mask) in
    :func:`gexplain.pipelines.evaluate.faithfulness.mask_layout` order."""
    if key.torch_threads and torch.get_num_threads() != key.torch_threads:
        torch.set_num_threads(key.torch_threads)
    res = result(where, f"explain/{key.run}")
    ds = store(where)
    genes = np.asarray(res[GENE].values).astype(str)
    predict, classes, layer = _ensemble(where, key.model_set, genes, key.device)
    gpos = cached(where, ("gene positions", key.run), lambda: _positions(ds[GENE].values, genes))
    x = np.asarray(ds[layer].isel({SAMPLE: key.store_rows, GENE: gpos}).values).astype(np.float64)
    attr = np.asarray(res[ATTR + key.explainer].isel({SAMPLE: key.rows}).values)
    ids = np.arange(key.ids.start, key.ids.stop) if isinstance(key.ids, slice) else key.ids
    if key.variant == "openxai":
        return perturbation_sample_gaps(
            predict, x, attr, list(key.ks), scale=key.stat, sample_ids=ids, sigma=key.sigma,
            n_perturbations=key.n_perturbations, n_random=key.n_random, seed=key.seed,
        )  # fmt: skip
    labels = store_labels(where, key.label, key.store_rows)
    targets = np.array([classes.index(c) for c in labels])
    return replacement_sample_gaps(
        predict, x, attr, targets, list(key.ks), key.stat, sample_ids=ids, n_random=key.n_random,
        seed=key.seed,
    )  # fmt: skip
