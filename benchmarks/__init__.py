"""Benchmarks of the tokenpulse worker (not part of the installed package).

Run from the repository root, e.g. ``python -m benchmarks.throughput``; see
``benchmarks/README.md``.
"""
