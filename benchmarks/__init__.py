"""Benchmarks of katapult_async against its simulator: ``python -m benchmarks --help``."""
