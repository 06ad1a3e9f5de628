"""Evaluation of attributions: reproducibility, saturation, ground truth, faithfulness, biology."""
