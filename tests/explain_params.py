"""Test helper: explain parameters with per-sample references and explicit repeats.

Many explainer tests compare against references drawn per (sample, repeat) with
:func:`gexplain.pipelines.explain.references.draw_references`; this builds the matching parameters.
"""

from __future__ import annotations

from typing import Any

from gexplain.pipelines.explain.params import ExplainParams

RANGE_KINDS = {"universal": "universal_range", "specific": "specific_range"}


def sample_scope_params(
    explainers: tuple[str, ...] | list[str] = ("integrated_gradients",),
    references: str = "universal",
    n_references: int = 10,
    fast_path: bool = True,
    **fields: Any,
) -> ExplainParams:
    """ExplainParams with ``reference_scope = "sample"`` and explicit repeats.

    ``references`` ``universal``/``specific`` map to the ``*_range`` kinds that
    :func:`draw_references` is called with in these tests; ``fast_path=False`` selects Captum.
    """
    fields.setdefault("repeat_mode", "explicit")
    return ExplainParams(
        explainers=list(explainers),
        references=f"{RANGE_KINDS.get(references, references)}:{n_references}",
        reference_scope="sample",
        backend="auto" if fast_path else "captum",
        **fields,
    )
