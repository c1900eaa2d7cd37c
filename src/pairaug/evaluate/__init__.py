"""Evaluation: the pixel linear probe, zero-shot classification and linear probing of VLP models."""
