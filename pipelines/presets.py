"""Published protocols as presets: ``preset = "zhao"`` in the train and explain parameters.

A preset gives defaults for every option the user does not set (a value set in the config or on
the command line always wins); the params models (:class:`gexplain.pipelines.models.train.TrainParams`,
:class:`gexplain.pipelines.explain.params.ExplainParams`) stay the one declaration of each option.

``zhao``: Zhao et al.'s released code, github.com/zhaopage/model_interpretability, files
``src/mlp_v2.0.0.py``, ``src/cnn_v2.0.0.py`` and ``src/prepareDatasets_v2.0.0.py``. Each value
cites its line; where the paper's text says otherwise (docs/methods.md, "Zhao et al.'s protocol")
the code is followed.
"""

from __future__ import annotations

from typing import Any

_ZHAO_COMMON: dict[str, Any] = {
    "batch_size": 256,  # mlp -b l.707, cnn -b l.833
    "dropout": 0.25,  # mlp -d l.710; cnn nn.Dropout2d(p=0.25) l.82
    "upsample": True,  # mlp -u yes l.712, cnn l.836
    "lr_patience": 5,  # mlp -p l.714, cnn l.838: ReduceLROnPlateau(patience=5), mlp l.893
    "early_stopping": 16,  # stop once best_count > 3 * patience = 15 epochs (mlp l.942, cnn l.1068)
    "weight_decay": 0.001,  # mlp -l l.717 (Adam weight_decay, l.883), cnn l.841
    "noise_share": 0.8,  # -N 0.2: samples with p < 0.2 stay clean (mlp l.195-197, l.720)
    "noise_sigma": 1.0,  # -s 1.00 (mlp l.721, cnn l.845)
    "standardize": False,  # log2(TPM + 1) fed as is (prepareDatasets l.498; no scaling in Net, mlp l.47-66)
    "gene_order": "random",  # every dataset shuffles the gene order (prepareDatasets l.408-410, l.524)
    "split": "zhao",  # 90/5/5 per tissue above 50 samples, else n-10/5/5 (prepareDatasets l.254-261)
}

TRAIN_PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "zhao": {
        "mlp": {
            **_ZHAO_COMMON,
            "hidden": 128,  # -n 128 (mlp l.711)
            "lr": 0.0006,  # -r 0.0006 (mlp l.716); the paper's text gives 0.001 for the MLP
            "lr_factor": 0.25,  # -R 0.25 (mlp l.713)
            "max_epochs": 100,  # -e 100 (mlp l.718)
        },
        "cnn": {
            **_ZHAO_COMMON,
            "lr": 0.001,  # -r 0.001 (cnn l.840); the paper's text gives 0.0006 for the CNN
            "lr_factor": 0.2,  # -R 0.20 (cnn l.837); the paper's text says 0.25
            "max_epochs": 200,  # -e 200 (cnn l.842)
            "channel_dropout": True,  # nn.Dropout2d (cnn l.82)
        },
    }
}
"""Train presets by name and architecture."""

EXPLAIN_PRESETS: dict[str, dict[str, Any]] = {
    "zhao": {
        # 64 references per run (-S 64, mlp l.725) from a pool of 128 (-r 128, prepareDatasets
        # l.541), reshuffled before every run (-y yes, mlp l.727, l.324-326) and shared by all
        # samples; "universal" as the paper prefers for the MLP (the code's -B default is "specific")
        "references": "universal:64",
        "reference_scope": "repeat",
        "reference_pool": 128,
        "repeats": 40,  # the paper: improvement saturates after 40 repeats for the MLP
        # np.abs then np.median over the references of a run (mlp l.648-649); runs and models are
        # averaged afterwards
        "abs": True,
        "reference_reduce": "median",
        "n_steps": 50,  # Captum's IntegratedGradients default (the code sets none)
        "ig_method": "gausslegendre",  # Captum's default
        "saliency_abs": True,  # Captum's Saliency default abs=True (mlp l.368 passes none)
        "nt_samples": 50,  # the paper's 50 pseudo-samples
        "nt_stdev": 1.0,  # N(0, 1) noise: the paper, and Captum NoiseTunnel's default stdevs=1.0
        "repeat_std": False,
    }
}
"""Explain presets by name. ``mode`` stays ``mc_dropout`` (see docs/methods.md: the code's train
mode, ``mode = "paper"``, makes results depend on the batch)."""
