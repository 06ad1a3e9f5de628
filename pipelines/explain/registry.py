"""The registry of explainers: name -> :class:`gexplain.pipelines.explain.rows.Explainer`.

Every explainer is called as ``fn(model, x, baselines, targets, ctx)`` (see
:mod:`gexplain.pipelines.explain.rows`); entries name their implementation (``module:function``),
which loads on first use, so this module is light: the parameter model validates names against it
without importing Captum, and nothing here imports the parameters. ``linear`` marks explainers whose value is linear in the upstream
gradient (so in a dropout mask placed after the last non-linearity): their repeats can be averaged
in one pass with the mean mask (see :mod:`gexplain.pipelines.explain.collapse`).
"""

from __future__ import annotations

from gexplain.pipelines.explain.rows import Explainer

CE = "gexplain.pipelines.explain.captum_explainers:"
SHAP = "gexplain.pipelines.explain.shap_explainers:"


def _build() -> dict[str, Explainer]:
    base = [
        Explainer(
            "saliency", CE + "saliency", "none", expansion=lambda s: 2, linear=True, closed_form="none"
        ),
        Explainer(
            "input_x_gradient",
            CE + "input_x_gradient",
            "none",
            expansion=lambda s: 2,
            linear=True,
            closed_form="input",
        ),
        Explainer("guided_backprop", CE + "guided_backprop", "none", expansion=lambda s: 2),
        Explainer(
            "integrated_gradients",
            CE + "integrated_gradients",
            "each",
            expansion=lambda s: 2 * s.n_steps,
            linear=True,
            closed_form="delta",
        ),
        Explainer(
            "deeplift", CE + "deeplift", "each", expansion=lambda s: 4, linear=True, closed_form="delta"
        ),
        Explainer(
            "deeplift_shap",
            CE + "deeplift",
            "each",
            ref_reduce="mean",
            expansion=lambda s: 4,
            linear=True,
            closed_form="delta",
        ),
        Explainer(
            "gradient_shap",
            CE + "gradient_shap",
            "each",
            ref_reduce="mean",
            expansion=lambda s: 2 * s.gs_samples,
        ),
        Explainer("guided_gradcam", CE + "guided_gradcam", "none", expansion=lambda s: 4, arch="cnn"),
        Explainer(
            "guided_gradcam_pp",
            "gexplain.pipelines.explain.gradcampp:guided_gradcam_pp",
            "none",
            expansion=lambda s: 4,
            arch="cnn",
        ),
    ]
    registry = {e.name: e for e in base}
    for e in base:
        if e.arch is None:
            registry[f"smoothgrad_{e.name}"] = Explainer(
                f"smoothgrad_{e.name}",
                e.impl,
                e.uses_reference,
                ref_reduce=e.ref_reduce,
                expansion=lambda s, inner=e.expansion: s.nt_samples * inner(s),
                smoothed=True,
            )
    registry["shap_gradient"] = Explainer(
        "shap_gradient", SHAP + "shap_gradient", "distribution", expansion=lambda s: 100, per_row=True
    )
    registry["shap_deep"] = Explainer(
        "shap_deep", SHAP + "shap_deep", "distribution", expansion=lambda s: 4, per_row=True
    )
    registry["kernel_shap"] = Explainer(
        "kernel_shap", SHAP + "kernel_shap", "each", expansion=lambda s: 50, per_row=True
    )
    registry["lime"] = Explainer("lime", SHAP + "lime", "each", expansion=lambda s: 50, per_row=True)
    return registry


EXPLAINERS: dict[str, Explainer] = _build()
