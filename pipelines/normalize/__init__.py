"""Normalization: size factors, CPM, TPM and log transforms of a store's counts."""
