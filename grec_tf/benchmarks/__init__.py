"""Benchmarks behind ``python -m pipelines.benchmark NAME`` (SPEC §6); each writes JSON + Markdown results."""
