"""Benchmarks that compare dosod with other pipelines on the same machine (docs/benchmarks.md)."""
