"""Benchmarks: scripts that print numbers (run with ``make bench``); results live in docs/benchmarks.md."""
