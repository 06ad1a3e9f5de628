"""Simulators that write expression stores with their ground truth: ``cohort``, ``sabbatini``, ``lda``."""

from gexplain.pipelines.simulate.cohort import simulate_cohort
from gexplain.pipelines.simulate.lda import simulate_lda
from gexplain.pipelines.simulate.sabbatini import simulate_sabbatini

__all__ = ["simulate_cohort", "simulate_lda", "simulate_sabbatini"]
