"""Parameters of DE requests: :class:`DeTest` (one method, its design and contrasts) and its parts.

Here, apart from :mod:`gexplain.pipelines.de.stage` and :mod:`gexplain.pipelines.de.analysis`, so
that analysis, calibration and the stage import the model without importing each other. The
method-specific fields of :class:`DeTest` come from the registered methods' option models
(:mod:`gexplain.pipelines.de.registry`): each is declared once, in its method's module.
"""

from __future__ import annotations

from typing import Any, Literal

from gexplain.pipelines.de.registry import methods
from gexplain.pipelines.labels import UnlabelledPolicy
from gexplain.pipelines.params import StageParams, cli, flag
from pydantic import Field, create_model, model_validator
from pydantic.fields import FieldInfo


class OneVsRest(StageParams):
    """One level of ``column`` vs all other samples (every level when ``level`` is unset)."""

    column: str = Field(
        description="COLUMN: each level vs all others.", json_schema_extra=cli("--one-vs-rest")
    )
    level: str | None = Field(
        None, description="With one_vs_rest: only this level.", json_schema_extra=cli("--level")
    )


class PerGroup(StageParams):
    """Within each level of ``by``, ``test`` vs ``ref`` of ``column`` where both exist."""

    by: str
    column: str
    test: str
    ref: str


MethodName = Literal[tuple(methods())]  # type: ignore[valid-type]


class _DeTestBase(StageParams):
    """The fields every method takes."""

    method: MethodName = Field(description="DE method.")
    design: str | None = Field(
        None,
        description="GLM formula (deseq2, edger), e.g. '~ cell + dex'; other methods: the contrast only.",
    )
    contrasts: list[tuple[str, str, str]] = Field(
        default_factory=list,
        description="COLUMN TEST_LEVEL REF_LEVEL, e.g. dex trt untrt (repeatable).",
        json_schema_extra=cli("--contrast"),
    )
    one_vs_rest: OneVsRest | None = None
    per_group: PerGroup | None = Field(
        None, description="BY COLUMN TEST REF, e.g. tissue status tumour normal: within each BY level."
    )
    layer: str | None = Field(
        None, description="Layer tested by methods that do not model counts (default cpm / log_expr)."
    )
    preset: str | None = Field(None, description="Significance call rule, e.g. 'zhao' (FDR<=0.001, FC>=3).")
    alpha: float = Field(0.05, gt=0, lt=1, description="FDR threshold (deseq2 filtering, volcano, counts).")
    gene_block: int = Field(2048, ge=1, description="Genes per block (bounds memory).")
    unlabelled: UnlabelledPolicy = Field(
        "exclude", description="Samples without a level in a contrast column: left out, or an error."
    )

    @model_validator(mode="after")
    def _options_of_the_method(self) -> _DeTestBase:
        own = set(methods()[self.method].options.model_fields)
        for name in OPTION_OWNERS:
            if name not in own and getattr(self, name) is not None:
                owners = ", ".join(OPTION_OWNERS[name])
                raise ValueError(f"{name} ({flag(name)}) is an option of {owners}, not of {self.method}")
        return self


def _option_fields() -> tuple[dict[str, Any], dict[str, list[str]]]:
    """``DeTest`` fields from the methods' options (optional, default None) and each one's methods."""
    fields: dict[str, Any] = {}
    owners: dict[str, list[str]] = {}
    infos: dict[str, FieldInfo] = {}
    for name, entry in methods().items():
        for field, info in entry.options.model_fields.items():
            if field in _DeTestBase.model_fields:
                raise ValueError(f"DE method {name}: option {field!r} clashes with a common DeTest field")
            if field in infos and infos[field].annotation != info.annotation:
                raise ValueError(f"DE option {field!r} has different types in {owners[field]} and {name}")
            owners.setdefault(field, []).append(name)
            if field not in infos:
                infos[field] = info
                extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else None
                fields[field] = (
                    info.annotation | None,
                    Field(None, description=info.description, json_schema_extra=extra),
                )
    return fields, owners


_FIELDS, OPTION_OWNERS = _option_fields()

DeTest = create_model(  # the common fields and every method's options
    "DeTest",
    __base__=_DeTestBase,
    __doc__="One DE method with its design, contrasts and options (see the registry).",
    __module__=__name__,
    **_FIELDS,
)
