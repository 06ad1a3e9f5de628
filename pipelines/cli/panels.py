"""Help panels: every option of a command sits in one panel per concern.

``Data`` is what the command reads (inputs, layers, labels, model sets), ``Method`` how it computes
(the default for a params field), ``Runtime`` where and with what resources it runs (cluster
addresses, actors, devices, block sizes), ``Output`` what it writes and where. The panel of a params
field is looked up here by the field's top-level name: the one place that sorts options, so a new
field lands in ``Method`` until it is listed.
"""

from __future__ import annotations

DATA = "Data"
METHOD = "Method"
RUNTIME = "Runtime"
OUTPUT = "Output"
PANEL_ORDER = (DATA, METHOD, RUNTIME, OUTPUT)

_PANELS: dict[str, frozenset[str]] = {
    DATA: frozenset(
        {
            "sources",
            "format",
            "sample_sheets",
            "sample_id_column",
            "orientation",
            "column",
            "layer",
            "values",
            "gene_lengths",
            "gene_annotation",
            "ignore_extra_sheet_rows",
            "merge",
            "cohorts",
            "merge_labels",
            "label_prefix",
            "label",
            "unlabelled",
            "model_set",
            "models",
            "explain_runs",
            "de_methods",
            "evaluation",
        }
    ),
    RUNTIME: frozenset(
        {
            "actors",
            "cpus_per_actor",
            "gpus_per_actor",
            "gpus_per_task",
            "ray",
            "threads",
            "device",
            "allow_tf32",
            "memory_budget_mb",
            "backend",
            "sample_block",
            "repeat_block",
            "gene_block",
            "eval_batch",
            "block",
        }
    ),
    OUTPUT: frozenset(
        {
            "out",
            "name",
            "overwrite",
            "export",
            "volcano",
            "out_dir",
            "chunk_samples",
            "chunk_genes",
            "chunk_sample",
            "chunk_gene",
        }
    ),
}


def panel_of(field: str) -> str:
    """The help panel of a params field (by its top-level name)."""
    return next((panel for panel, names in _PANELS.items() if field in names), METHOD)
