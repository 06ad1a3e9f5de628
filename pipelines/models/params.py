"""Parameters of model training, apart from the training code so that reading them (the CLI's help,
the notebook API's signatures, a config check) imports neither torch nor Ray.

:class:`TrainParams` holds one training run's hyper-parameters (:func:`gexplain.pipelines.models.train.train_model`);
:class:`TrainStageParams` adds what the ``train`` stage trains on and where it stores the models.
"""

from __future__ import annotations

from typing import Any, Literal

from gexplain.pipelines.labels import UnlabelledPolicy
from gexplain.pipelines.params import Name, StageParams, cli
from gexplain.pipelines.presets import TRAIN_PRESETS
from pydantic import BaseModel, ConfigDict, Field, model_validator

DEFAULT_LR = {"mlp": 1e-3, "cnn": 6e-4}


class TrainParams(BaseModel):
    """Hyper-parameters of one training run (defaults as in Zhao et al.'s paper text; ``preset =
    "zhao"`` gives their released code's values, :mod:`gexplain.pipelines.presets`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    preset: Literal["zhao"] | None = Field(
        None,
        description="Defaults of a published protocol for every option not set explicitly: 'zhao' = "
        "Zhao et al.'s released code (pipelines/presets.py cites file and line of each value).",
    )

    arch: Literal["mlp", "cnn", "rule_linear", "rule_circle"] = Field(
        "mlp", description="mlp, cnn, or a fixed decision rule (pipelines/models/rules.py; not trained)"
    )
    hidden: int = Field(128, ge=1, description="MLP hidden width")
    dropout: float = Field(0.25, ge=0.0, lt=1.0)
    batch_norm: bool = Field(True, description="MLP: BatchNorm1d after the first layer (as in the paper)")
    l1: float = Field(
        0.0, ge=0.0, description="L1 penalty on the first layer's weights (sum |W1| x l1) for sparse gene use"
    )
    grid: int | None = Field(
        None, ge=1, description="CNN grid side; None = ceil(sqrt(genes)) rounded up to a multiple of 8"
    )
    gene_order: Literal["stored", "position", "random"] = Field(
        "stored", description="CNN gene placement; random = a permutation drawn from each replicate's seed"
    )
    lr: float | None = Field(None, gt=0, description="Adam learning rate; None = 1e-3 (MLP) / 6e-4 (CNN)")
    weight_decay: float = Field(1e-3, ge=0.0)
    batch_size: int = Field(256, ge=2)
    max_epochs: int = Field(100, ge=1, description="Maximum epochs.", json_schema_extra=cli("--epochs"))
    early_stopping: int = Field(
        10,
        ge=1,
        description="Early-stopping patience: epochs without validation-loss improvement.",
        json_schema_extra=cli("--patience"),
    )
    lr_factor: float = Field(0.25, gt=0.0, lt=1.0, description="ReduceLROnPlateau factor")
    lr_patience: int = Field(5, ge=0, description="ReduceLROnPlateau patience (epochs)")
    split: Literal["fractions", "zhao"] = Field(
        "fractions",
        description="'fractions': test_fraction and val_fraction per class; 'zhao': per class 90/5/5 "
        "% train/test/validation above 50 samples, else n-10/5/5 (prepareDatasets_v2.0.0.py l.254-261).",
    )
    test_fraction: float = Field(0.1, ge=0.0, lt=1.0)
    val_fraction: float = Field(0.1, ge=0.0, lt=1.0, description="of the non-test part, for early stopping")
    standardize: bool = True
    upsample: bool = True
    noise_share: float = Field(
        0.0,
        ge=0.0,
        le=1.0,
        description="Share of each training batch's samples that get N(0, noise_sigma) noise, after which "
        "the batch is made absolute (Zhao et al.'s code: 0.8, mlp_v2.0.0.py l.193-199); 0 = no noise.",
    )
    noise_sigma: float = Field(
        1.0, gt=0.0, description="Standard deviation of the training noise (input units)."
    )
    channel_dropout: bool = Field(
        False,
        description="CNN: drop whole feature maps (nn.Dropout2d, as Zhao et al.'s code) instead of units.",
    )
    jitter: float = Field(
        0.0, ge=0.0, le=1.0, description="per-replicate log-uniform jitter of lr, wd, dropout"
    )
    threads: int = Field(1, ge=1, description="torch intra-op threads per training task")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    eval_batch: int = Field(2048, ge=1)

    @model_validator(mode="before")
    @classmethod
    def _apply_preset(cls, values: Any) -> Any:
        if not isinstance(values, dict) or values.get("preset") is None:
            return values
        name = values["preset"]
        if name not in TRAIN_PRESETS:
            return values  # the Literal check names the allowed presets
        arch = values.get("arch", "mlp")
        preset = TRAIN_PRESETS[name].get(arch, TRAIN_PRESETS[name]["mlp"])
        return {**preset, **values}

    def learning_rate(self) -> float:
        """The effective Adam learning rate."""
        return self.lr if self.lr is not None else DEFAULT_LR[self.arch]


class TrainStageParams(TrainParams, StageParams):
    """Parameters of the ``train`` stage (and of ``gexplain train``): the training hyper-parameters
    (:class:`gexplain.pipelines.models.train.TrainParams`) plus what to train on and where."""

    label: str | None = Field(None, description="Label column; unset = the store's label_column attribute.")
    unlabelled: UnlabelledPolicy = Field(
        "exclude", description="Samples without a label: left out (their number is logged), or an error."
    )
    layer: str = Field("log_expr", description="Store layer to train on.")
    buffer_mb: float = Field(
        1024.0,
        gt=0.0,
        description=(
            "MiB of stored sample chunks each training task holds: half is the shuffle window "
            "(chunks visited in a seeded random order, samples shuffled within the window), half "
            "lets a minibatch span two windows. Changing it changes the epoch order."
        ),
    )
    model_set: Name = Field(
        "default", description="Name of the stored model set: <store>/models/<model_set>."
    )
    replicates: int = Field(1, ge=0, description="Models differing by seed, trained in parallel.")
    cv: int | None = Field(
        None, ge=2, description="k of a k-fold cross-validation (tables in the run folder)."
    )
    seed: int | None = Field(
        None, ge=0, description="Seed; replicate seeds derive from it (default: the run seed)."
    )
    gpus_per_task: float | None = Field(None, gt=0, description="GPU share per task when GPUs exist.")
    ray: bool = Field(
        True, description="Train on Ray tasks; false trains one model after another in this process."
    )
    overwrite: bool = Field(False, description="Replace an existing model set of this name.")
    rule_genes: list[str] | None = Field(
        None,
        description="rule_* archs: the rule's two genes; unset = the store's truth_informative pair.",
    )

    @model_validator(mode="after")
    def _something_to_do(self) -> TrainStageParams:
        if self.replicates == 0 and self.cv is None:
            raise ValueError("replicates is 0 and cv is not set: nothing to train")
        return self

    def train_params(self) -> TrainParams:
        """The hyper-parameters alone."""
        return TrainParams(**self.model_dump(include=set(TrainParams.model_fields)))
