"""Benchmarks: videopoll against a faithful re-implementation of the original per-row poller.

Run `scripts/bench` (full) or `scripts/bench --quick`; see `benchmarks/__main__.py` for the
flags and `benchmarks/RESULTS.md` for the last full run. Not part of the tests.
"""
