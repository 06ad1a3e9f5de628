"""Attributions: explainers, references, repeat modes, the MLP fast path and streamed aggregation.

The compute half is :func:`gexplain.pipelines.explain.compute.explain_block`; the distributed engine and the
``explain`` stage build on it.
"""
