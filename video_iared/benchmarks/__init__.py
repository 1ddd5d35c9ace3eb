"""Benchmarks and checks: speed tables, the method comparison, end-to-end, loader, precision and GPU checks.

The top of the package: imports the rest, imported by no other package module (tests/test_layering.py).
"""
