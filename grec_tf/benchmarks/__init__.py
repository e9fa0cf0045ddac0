"""Benchmarks behind ``python -m pipelines.benchmark NAME``; each writes JSON + Markdown results."""
