"""Inference: the batch lookup store, the online feature table and the HTTP service."""
